//! What keyswitch writes into Claude Code's settings, and how to take exactly that out again.
//!
//! Pure functions over the parsed settings object plus an [`InstallRecord`], which remembers,
//! for every entry keyswitch set, the value it replaced and the value it wrote. Uninstall puts
//! back the replaced value only where the entry still holds keyswitch's value: an entry the user
//! changed since is theirs and is left alone (and reported).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::json_doc::RAW_MARK;

pub const HELPER_KEY: &str = "apiKeyHelper";
pub const TTL_VAR: &str = "CLAUDE_CODE_API_KEY_HELPER_TTL_MS";
pub const RETRIES_VAR: &str = "CLAUDE_CODE_MAX_RETRIES";
pub const BASE_URL_VAR: &str = "ANTHROPIC_BASE_URL";
pub const HOOK_EVENT: &str = "StopFailure";
/// The StopFailure `error` values that mean "this key": out of budget, or rejected.
pub const HOOK_MATCHER: &str = "rate_limit|billing_error|authentication_failed";
/// The helper TTL keyswitch sets: how late, at most, a running session returns to the primary
/// after its cooldown ends (and notices a change made outside the settings file). `get` costs
/// about 3 ms, so a refresh a minute is nothing; Claude Code's default is 5 minutes.
pub const HELPER_TTL_MS: &str = "60000";

/// One entry keyswitch set: what was there before (`None`: nothing) and what keyswitch wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replaced {
    pub prior: Option<Value>,
    pub ours: Value,
    /// While a change is being written: what keyswitch had written before it, which the file
    /// still holds if the write never happened (killed, failed). The record is saved with this
    /// before the settings are touched, and without it once they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Value>,
}

impl Replaced {
    /// Whether `current` is a value keyswitch wrote (or was about to replace with its own).
    fn is_ours(&self, current: Option<&Value>) -> bool {
        current == Some(&self.ours) || (current.is_some() && current == self.previous.as_ref())
    }
}

/// Everything keyswitch changed in one settings file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstallRecord {
    /// The settings file, as named when installing.
    pub settings: PathBuf,
    /// Entries by path: `apiKeyHelper`, `env.CLAUDE_CODE_API_KEY_HELPER_TTL_MS`, ...
    #[serde(default)]
    pub entries: BTreeMap<String, Replaced>,
    /// What keyswitch created (`env`, `hooks`, `hooks.StopFailure`, and `file` for the settings
    /// file itself): removed again on uninstall if keyswitch's entries were all they held.
    #[serde(default)]
    pub created: Vec<String>,
    /// The hook command keyswitch added.
    #[serde(default)]
    pub hook_command: Option<String>,
}

/// Where an entry lives: top level, or inside `env`.
#[derive(Debug, Clone, Copy)]
pub enum Slot<'a> {
    Top(&'a str),
    Env(&'a str),
}

impl Slot<'_> {
    fn id(self) -> String {
        match self {
            Slot::Top(k) => k.to_string(),
            Slot::Env(k) => format!("env.{k}"),
        }
    }

    pub fn get(self, map: &Map<String, Value>) -> Option<&Value> {
        match self {
            Slot::Top(k) => map.get(k),
            Slot::Env(k) => map
                .get("env")
                .and_then(Value::as_object)
                .and_then(|env| env.get(k)),
        }
    }
}

impl InstallRecord {
    /// Sets `slot` to `value`, remembering what it replaces the first time.
    pub fn set(&mut self, map: &mut Map<String, Value>, slot: Slot<'_>, value: Value) {
        let current = slot.get(map).cloned();
        let entry = self.entries.entry(slot.id()).or_insert_with(|| Replaced {
            prior: current.clone(),
            ours: value.clone(),
            previous: None,
        });
        if entry.ours != value {
            // Until the file is written it may still hold the value keyswitch wrote before.
            if entry.is_ours(current.as_ref()) {
                entry.previous = current.clone();
            }
            entry.ours = value.clone();
        }
        if current.as_ref() != Some(&value) {
            write_slot(map, slot, Some(value), &mut self.created);
        }
    }

    /// Puts back what `slot` held before keyswitch, if it still holds keyswitch's value.
    /// Returns a note when the user changed it since (then it is left alone).
    pub fn restore(&mut self, map: &mut Map<String, Value>, slot: Slot<'_>) -> Option<String> {
        let entry = self.entries.remove(&slot.id())?;
        let current = slot.get(map);
        if current == entry.prior.as_ref() {
            // Already as it was (keyswitch's write never happened, or was undone).
            return None;
        }
        if !entry.is_ours(current) {
            return Some(format!(
                "{} was changed since keyswitch set it; left as it is",
                slot.id()
            ));
        }
        write_slot(map, slot, entry.prior, &mut self.created);
        None
    }

    /// The settings now hold what this record says: forget the values keyswitch replaced.
    pub fn finalize(&mut self) {
        for entry in self.entries.values_mut() {
            entry.previous = None;
        }
    }

    /// The value an entry had before keyswitch set it; `None` also when keyswitch never set it.
    pub fn prior(&self, slot: Slot<'_>) -> Option<&Value> {
        self.entries.get(&slot.id()).and_then(|e| e.prior.as_ref())
    }

    /// Forgets an entry the user took over, keeping their value as the new "prior".
    pub fn adopt_user_value(&mut self, map: &Map<String, Value>, slot: Slot<'_>) {
        if let Some(entry) = self.entries.get(&slot.id())
            && !entry.is_ours(slot.get(map))
        {
            self.entries.remove(&slot.id());
        }
    }
}

fn write_slot(
    map: &mut Map<String, Value>,
    slot: Slot<'_>,
    value: Option<Value>,
    created: &mut Vec<String>,
) {
    match slot {
        Slot::Top(k) => match value {
            Some(v) => {
                map.insert(k.to_string(), v);
            }
            None => {
                map.shift_remove(k);
            }
        },
        Slot::Env(k) => {
            if value.is_some() && !map.get("env").is_some_and(Value::is_object) {
                map.insert("env".to_string(), Value::Object(Map::new()));
                note_created(created, "env");
            }
            let Some(env) = map.get_mut("env").and_then(Value::as_object_mut) else {
                return;
            };
            match value {
                Some(v) => {
                    env.insert(k.to_string(), v);
                }
                None => {
                    env.shift_remove(k);
                }
            }
            if env.is_empty() && created.iter().any(|c| c == "env") {
                map.shift_remove("env");
                created.retain(|c| c != "env");
            }
        }
    }
}

pub fn note_created(created: &mut Vec<String>, what: &str) {
    if !created.iter().any(|c| c == what) {
        created.push(what.to_string());
    }
}

/// True for a hook or helper command that runs some keyswitch binary.
fn is_ours(command: &str, tail: &str) -> bool {
    command.contains("keyswitch") && command.trim_end().ends_with(tail)
}

pub fn is_our_helper(command: &str) -> bool {
    is_ours(command, " get")
}

pub fn is_our_hook(command: &str) -> bool {
    is_ours(command, " hook stop-failure")
}

/// Adds keyswitch's StopFailure hook, or updates the one keyswitch added before (a moved
/// binary). Other hooks — other events, other StopFailure groups — are left exactly as they are.
pub fn ensure_hook(map: &mut Map<String, Value>, record: &mut InstallRecord, command: &str) {
    let group = json!({
        "matcher": HOOK_MATCHER,
        "hooks": [{"type": "command", "command": command}],
    });
    if !map.get("hooks").is_some_and(Value::is_object) {
        map.insert("hooks".to_string(), Value::Object(Map::new()));
        note_created(&mut record.created, "hooks");
    }
    let Some(hooks) = map.get_mut("hooks").and_then(Value::as_object_mut) else {
        return;
    };
    if !hooks.get(HOOK_EVENT).is_some_and(Value::is_array) {
        hooks.insert(HOOK_EVENT.to_string(), Value::Array(Vec::new()));
        note_created(&mut record.created, "hooks.StopFailure");
    }
    let Some(groups) = hooks.get_mut(HOOK_EVENT).and_then(Value::as_array_mut) else {
        return;
    };
    match groups.iter().position(group_is_ours) {
        Some(i) if groups[i] == group => {}
        Some(i) => groups[i] = group,
        None => groups.push(group),
    }
    record.hook_command = Some(command.to_string());
}

fn group_is_ours(group: &Value) -> bool {
    group
        .get("hooks")
        .and_then(Value::as_array)
        .is_some_and(|hooks| {
            !hooks.is_empty()
                && hooks.iter().all(|h| {
                    h.get("command")
                        .and_then(Value::as_str)
                        .is_some_and(is_our_hook)
                })
        })
}

/// True when keyswitch's hook is present.
pub fn has_hook(map: &Map<String, Value>) -> bool {
    map.get("hooks")
        .and_then(|h| h.get(HOOK_EVENT))
        .and_then(Value::as_array)
        .is_some_and(|groups| groups.iter().any(group_is_ours))
}

/// Removes keyswitch's hook group, and the containers keyswitch created if they end up empty.
pub fn remove_hook(map: &mut Map<String, Value>, record: &mut InstallRecord) {
    if let Some(hooks) = map.get_mut("hooks").and_then(Value::as_object_mut) {
        if let Some(groups) = hooks.get_mut(HOOK_EVENT).and_then(Value::as_array_mut) {
            groups.retain(|g| !group_is_ours(g));
            if groups.is_empty() && record.created.iter().any(|c| c == "hooks.StopFailure") {
                hooks.shift_remove(HOOK_EVENT);
            }
        }
        if hooks.is_empty() && record.created.iter().any(|c| c == "hooks") {
            map.shift_remove("hooks");
        }
    }
    record
        .created
        .retain(|c| c != "hooks" && c != "hooks.StopFailure");
    record.hook_command = None;
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
/// apart from the user's own setting is left alone. `endpoints`: the keys' endpoints.
pub fn recovered_record(
    settings: PathBuf,
    map: &Map<String, Value>,
    backup: Option<&Map<String, Value>>,
    endpoints: &[String],
) -> InstallRecord {
    let mut record = InstallRecord {
        settings,
        ..InstallRecord::default()
    };
    let ours = |slot: Slot<'_>, value: &Value| match slot {
        Slot::Top(HELPER_KEY) => value.as_str().is_some_and(is_our_helper),
        Slot::Env(TTL_VAR) => value.as_str() == Some(HELPER_TTL_MS),
        Slot::Env(BASE_URL_VAR) => value
            .as_str()
            .is_some_and(|v| endpoints.iter().any(|e| e == v)),
        _ => false,
    };
    for slot in [
        Slot::Top(HELPER_KEY),
        Slot::Env(TTL_VAR),
        Slot::Env(BASE_URL_VAR),
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

/// Writes a path so the shell Claude Code runs the command through reads it as that path:
/// `/bin/sh` on Linux and macOS, quoted when it needs it; see [`windows_command_path`].
pub fn shell_quote(path: &str) -> String {
    if cfg!(windows) {
        windows_command_path(path)
    } else {
        let plain = path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c));
        if plain && !path.is_empty() {
            path.to_string()
        } else {
            format!("'{}'", path.replace('\'', "'\\''"))
        }
    }
}

/// On Windows, Claude Code runs the apiKeyHelper through `cmd.exe` and hooks through Git Bash
/// (PowerShell without it). Git Bash takes the backslashes out of an unquoted `C:\Users\me\..`
/// (a known cause of hooks failing with "command not found"), so the path is written with
/// forward slashes, which all three accept; unquoted when plain (then all three run it), else in
/// double quotes (`cmd.exe` and Git Bash run that; PowerShell would need `&`).
pub fn windows_command_path(path: &str) -> String {
    let path = path.replace('\\', "/");
    // Only what none of the three shells treats specially: `,` and `=` split words in cmd.exe.
    let plain = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-:".contains(c));
    if plain && !path.is_empty() {
        path
    } else {
        format!("\"{path}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn set_then_restore_puts_back_the_prior_value() {
        let mut map =
            obj(json!({"env": {"ANTHROPIC_BASE_URL": "https://mine.example"}, "model": "x"}));
        let original = map.clone();
        let mut record = InstallRecord::default();
        record.set(
            &mut map,
            Slot::Env(BASE_URL_VAR),
            json!("https://proxy.example"),
        );
        record.set(&mut map, Slot::Top(HELPER_KEY), json!("/bin/keyswitch get"));
        assert_eq!(
            Slot::Env(BASE_URL_VAR).get(&map),
            Some(&json!("https://proxy.example"))
        );
        assert!(record.restore(&mut map, Slot::Env(BASE_URL_VAR)).is_none());
        assert!(record.restore(&mut map, Slot::Top(HELPER_KEY)).is_none());
        assert_eq!(map, original);
    }

    #[test]
    fn a_value_the_user_changed_since_is_left_alone() {
        let mut map = obj(json!({}));
        let mut record = InstallRecord::default();
        record.set(&mut map, Slot::Env(TTL_VAR), json!("60000"));
        map["env"]["CLAUDE_CODE_API_KEY_HELPER_TTL_MS"] = json!("5000");
        assert!(record.restore(&mut map, Slot::Env(TTL_VAR)).is_some());
        assert_eq!(Slot::Env(TTL_VAR).get(&map), Some(&json!("5000")));
    }

    #[test]
    fn created_containers_go_away_again() {
        let mut map = obj(json!({"permissions": {"allow": ["Bash(ls)"]}}));
        let original = map.clone();
        let mut record = InstallRecord::default();
        record.set(&mut map, Slot::Env(TTL_VAR), json!("60000"));
        ensure_hook(&mut map, &mut record, "/bin/keyswitch hook stop-failure");
        assert!(has_hook(&map));
        record.restore(&mut map, Slot::Env(TTL_VAR));
        remove_hook(&mut map, &mut record);
        assert_eq!(map, original);
    }

    #[test]
    fn other_hooks_are_kept_and_ours_is_not_duplicated() {
        let mut map = obj(json!({"hooks": {
            "StopFailure": [{"matcher": "overloaded", "hooks": [{"type": "command", "command": "say hi"}]}],
            "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "audit"}]}]
        }}));
        let original = map.clone();
        let mut record = InstallRecord::default();
        ensure_hook(&mut map, &mut record, "/a/keyswitch hook stop-failure");
        ensure_hook(&mut map, &mut record, "/a/keyswitch hook stop-failure");
        assert_eq!(map["hooks"]["StopFailure"].as_array().unwrap().len(), 2);
        ensure_hook(&mut map, &mut record, "/moved/keyswitch hook stop-failure");
        assert_eq!(map["hooks"]["StopFailure"].as_array().unwrap().len(), 2);
        remove_hook(&mut map, &mut record);
        assert_eq!(map, original);
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
        );
        for id in record.entries.keys().cloned().collect::<Vec<_>>() {
            let slot = match id.strip_prefix("env.") {
                Some(var) => Slot::Env(var),
                None => Slot::Top(HELPER_KEY),
            };
            assert!(record.clone().restore(&mut map, slot).is_none());
        }
        remove_hook(&mut map, &mut record);
        // The retries setting cannot be told apart from the user's own: it stays.
        assert_eq!(
            map,
            obj(json!({"apiKeyHelper": "mine.sh", "env": {"X": "1", RETRIES_VAR: "2"}}))
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(
            shell_quote("/usr/local/bin/keyswitch"),
            "/usr/local/bin/keyswitch"
        );
        assert_eq!(shell_quote("/home/a b/keyswitch"), "'/home/a b/keyswitch'");
        assert_eq!(shell_quote("/it's/keyswitch"), "'/it'\\''s/keyswitch'");
    }

    #[test]
    fn windows_paths_are_written_with_forward_slashes() {
        assert_eq!(
            windows_command_path(r"C:\Users\me\AppData\Local\keyswitch\keyswitch.exe"),
            "C:/Users/me/AppData/Local/keyswitch/keyswitch.exe"
        );
        assert_eq!(
            windows_command_path(r"C:\Users\John Doe\bin\keyswitch.exe"),
            "\"C:/Users/John Doe/bin/keyswitch.exe\""
        );
        assert_eq!(
            windows_command_path(r"D:\tools,old\keyswitch.exe"),
            "\"D:/tools,old/keyswitch.exe\""
        );
    }
}
