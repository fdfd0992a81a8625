//! The entries keyswitch wires into Claude Code's settings besides the hook: their names and
//! values, telling keyswitch's own from the user's, refusing entries of the wrong type, and
//! rebuilding a lost install record from what is recognisably keyswitch's.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::command_path::is_ours;
use super::hook_entry::HOOK_EVENT;
use super::install_record::{InstallRecord, Replaced, note_created};
use super::json_doc::RAW_MARK;
use super::slot::Slot;
use crate::no_proxy::{NO_PROXY_VARS, entries, proxy_entries};

pub const HELPER_KEY: &str = "apiKeyHelper";
pub const TTL_VAR: &str = "CLAUDE_CODE_API_KEY_HELPER_TTL_MS";
pub const RETRIES_VAR: &str = "CLAUDE_CODE_MAX_RETRIES";
pub const BASE_URL_VAR: &str = "ANTHROPIC_BASE_URL";
/// Claude Code's status line: `install --statusline` points it at `keyswitch status`.
pub const STATUS_LINE_KEY: &str = "statusLine";
/// The helper TTL keyswitch sets: how late, at most, a running session returns to the primary
/// after its cooldown ends (and notices a change made outside the settings file). `get` costs
/// about 3 ms, so a refresh a minute is nothing; Claude Code's default is 5 minutes.
pub const HELPER_TTL_MS: &str = "60000";

/// The value of `var` in a Claude Code session started from this process's environment with
/// these settings: the settings' `env` over the environment (Claude Code passes both on to the
/// helper, and to the proxy a helper starts).
pub fn session_env(settings: &Map<String, Value>, var: &str) -> Option<String> {
    match Slot::Env(var).get(settings) {
        Some(value) => value.as_str().map(str::to_string),
        None => std::env::var(var).ok(),
    }
}

pub fn is_our_helper(command: &str) -> bool {
    is_ours(command, " get")
}

/// The `statusLine` entry running `status_command` (keyswitch's `status`, by its full path:
/// the bare name is not on PATH for everyone install.sh installs for).
pub fn status_line(status_command: &str) -> Value {
    serde_json::json!({"type": "command", "command": status_command})
}

/// Whether a `statusLine` entry is one `install --statusline` wrote.
pub fn is_our_status_line(value: &Value) -> bool {
    value.get("type").and_then(Value::as_str) == Some("command")
        && value
            .get("command")
            .and_then(Value::as_str)
            .is_some_and(|c| is_ours(c, " status"))
}

/// The entries keyswitch works in, when they have a type Claude Code would not accept:
/// keyswitch refuses such a file rather than replace (and later delete) what the user wrote.
pub fn wrong_type(map: &Map<String, Value>) -> Option<String> {
    let expect = |what: &str, value: Option<&Value>, object: bool| {
        let value = value?;
        let fits = if object {
            value.is_object()
        } else {
            value.is_array()
        };
        (!fits).then(|| {
            format!(
                "\"{what}\" is {}, where Claude Code expects {}",
                type_name(value),
                if object { "an object" } else { "an array" }
            )
        })
    };
    expect("env", map.get("env"), true)
        .or_else(|| expect("hooks", map.get("hooks"), true))
        .or_else(|| {
            let event = map.get("hooks").and_then(|h| h.get(HOOK_EVENT));
            expect("hooks.StopFailure", event, false)
        })
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        // A number beyond serde_json's range is seen as its marked source text.
        Value::String(s)
            if s.strip_prefix(RAW_MARK)
                .is_some_and(|raw| !raw.starts_with('"')) =>
        {
            "a number"
        }
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A record rebuilt without keyswitch's own (it was lost or damaged): an entry for each value
/// that is recognisably keyswitch's, to be replaced by the backup's value (taken before
/// keyswitch first changed the file), or removed when the backup has none. What cannot be told
/// apart from the user's own setting is left alone. `endpoints`: the keys' endpoints; `proxy`:
/// where proxy mode's proxy listens (its record is in the config folder, which outlives the
/// state folder), whose address and NO_PROXY entries are keyswitch's too.
pub fn recovered_record(
    settings: PathBuf,
    map: &Map<String, Value>,
    backup: Option<&Map<String, Value>>,
    endpoints: &[String],
    proxy: Option<SocketAddr>,
) -> InstallRecord {
    let mut record = InstallRecord {
        settings,
        ..InstallRecord::default()
    };
    let proxy_url = proxy.map(|listen| format!("http://{listen}"));
    let holds_proxy_entries = |value: &str| {
        proxy.is_some_and(|listen| {
            proxy_entries(listen)
                .iter()
                .all(|ours| entries(value).any(|e| e == ours))
        })
    };
    let ours = |slot: Slot<'_>, value: &Value| match slot {
        Slot::Top(HELPER_KEY) => value.as_str().is_some_and(is_our_helper),
        Slot::Top(STATUS_LINE_KEY) => is_our_status_line(value),
        Slot::Env(TTL_VAR) => value.as_str() == Some(HELPER_TTL_MS),
        Slot::Env(BASE_URL_VAR) => value
            .as_str()
            .is_some_and(|v| endpoints.iter().any(|e| e == v) || proxy_url.as_deref() == Some(v)),
        Slot::Env(var) if NO_PROXY_VARS.contains(&var) => {
            value.as_str().is_some_and(holds_proxy_entries)
        }
        _ => false,
    };
    for slot in [
        Slot::Top(HELPER_KEY),
        Slot::Top(STATUS_LINE_KEY),
        Slot::Env(TTL_VAR),
        Slot::Env(BASE_URL_VAR),
        Slot::Env(NO_PROXY_VARS[0]),
        Slot::Env(NO_PROXY_VARS[1]),
    ] {
        let Some(current) = slot.get(map) else {
            continue;
        };
        if !ours(slot, current) {
            continue;
        }
        let prior = backup
            .and_then(|b| slot.get(b))
            .filter(|v| !ours(slot, v))
            .cloned();
        record.entries.insert(
            slot.id(),
            Replaced {
                prior,
                ours: current.clone(),
                previous: None,
            },
        );
    }
    // Containers the backup did not have were keyswitch's; they go if they end up empty.
    if let Some(backup) = backup {
        for (what, had) in [
            ("env", backup.contains_key("env")),
            ("hooks", backup.contains_key("hooks")),
            (
                "hooks.StopFailure",
                backup
                    .get("hooks")
                    .and_then(|h| h.get(HOOK_EVENT))
                    .is_some(),
            ),
        ] {
            if !had {
                note_created(&mut record.created, what);
            }
        }
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claude::hook_entry::{ensure_hook, remove_hook};
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn entries_of_the_wrong_type_are_named() {
        assert!(wrong_type(&obj(json!({"env": {}, "hooks": {"StopFailure": []}}))).is_none());
        let problem = wrong_type(&obj(json!({"env": "FOO=bar"}))).unwrap();
        assert!(problem.contains("\"env\" is a string"), "{problem}");
        let problem = wrong_type(&obj(json!({"hooks": {"StopFailure": {}}}))).unwrap();
        assert!(
            problem.contains("\"hooks.StopFailure\" is an object"),
            "{problem}"
        );
    }

    #[test]
    fn a_recovered_record_takes_out_only_what_is_recognisably_ours() {
        let backup = obj(json!({"apiKeyHelper": "mine.sh", "env": {"X": "1"}}));
        let mut map = obj(json!({
            "apiKeyHelper": "/bin/keyswitch get",
            "env": {"X": "1", TTL_VAR: HELPER_TTL_MS, RETRIES_VAR: "2", BASE_URL_VAR: "http://k"},
        }));
        ensure_hook(
            &mut map,
            &mut InstallRecord::default(),
            "/bin/keyswitch hook stop-failure",
        );
        let mut record = recovered_record(
            PathBuf::from("s"),
            &map,
            Some(&backup),
            &["http://k".into()],
            None,
        );
        for id in record.entries.keys().cloned().collect::<Vec<_>>() {
            assert!(record.clone().restore(&mut map, id.slot()).is_none());
        }
        remove_hook(&mut map, &mut record);
        // The retries setting cannot be told apart from the user's own: it stays.
        assert_eq!(
            map,
            obj(json!({"apiKeyHelper": "mine.sh", "env": {"X": "1", RETRIES_VAR: "2"}}))
        );
    }
}
