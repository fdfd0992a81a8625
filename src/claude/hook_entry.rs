//! keyswitch's StopFailure hook in Claude Code's settings: adding it (or updating the one a
//! moved binary left), finding it, and taking it out, leaving every other hook as it is.

use serde_json::{Map, Value, json};

use super::command_path::is_ours;
use super::install_record::{InstallRecord, note_created};

pub const HOOK_EVENT: &str = "StopFailure";
/// The StopFailure `error` values that may mean "this key": out of budget, rejected, and the
/// two words Claude Code gives a gateway's budget answer it does not know (LiteLLM's 422 is
/// `unknown`, a 400 `invalid_request`), which the hook then judges from the message.
pub const HOOK_MATCHER: &str =
    "rate_limit|billing_error|authentication_failed|invalid_request|unknown";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claude::slot::Slot;
    use crate::claude::wiring::TTL_VAR;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
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
}
