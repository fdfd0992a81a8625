//! Where in Claude Code's settings an entry keyswitch sets lives — top level, or inside `env` —
//! and its id in the install record (`apiKeyHelper`, `env.ANTHROPIC_BASE_URL`).

use std::borrow::Borrow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Where an entry lives: top level, or inside `env`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot<'a> {
    Top(&'a str),
    Env(&'a str),
}

/// A slot's id, as the install record's keys hold it: the entry's name at top level, `env.` and
/// the variable's name inside `env`. Ordered as its text, so the record file's entries keep the
/// order they had when they were plain strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SlotId(String);

const ENV_PREFIX: &str = "env.";

impl Slot<'_> {
    pub fn id(self) -> SlotId {
        SlotId(match self {
            Slot::Top(k) => k.to_string(),
            Slot::Env(k) => format!("{ENV_PREFIX}{k}"),
        })
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

    /// Sets (`Some`) or removes (`None`) the entry, creating `env` when needed (noted in
    /// `created`) and removing it again when keyswitch created it and it ends up empty.
    pub(crate) fn write(
        self,
        map: &mut Map<String, Value>,
        value: Option<Value>,
        created: &mut Vec<String>,
    ) {
        match self {
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
}

impl SlotId {
    /// The slot this id names.
    pub fn slot(&self) -> Slot<'_> {
        match self.0.strip_prefix(ENV_PREFIX) {
            Some(var) => Slot::Env(var),
            None => Slot::Top(&self.0),
        }
    }
}

impl std::fmt::Display for SlotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lets a record's entries be looked up by the id's text, as the file spells it.
impl Borrow<str> for SlotId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Notes that install created `what` (a settings file, an `env` object, a hooks list), so
/// uninstall removes it again only if it is still keyswitch's and empty.
pub fn note_created(created: &mut Vec<String>, what: &str) {
    if !created.iter().any(|c| c == what) {
        created.push(what.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_written_as_before_and_read_back_as_the_same_slot() {
        for (slot, text) in [
            (Slot::Top("apiKeyHelper"), "\"apiKeyHelper\""),
            (
                Slot::Env("ANTHROPIC_BASE_URL"),
                "\"env.ANTHROPIC_BASE_URL\"",
            ),
        ] {
            let id = slot.id();
            assert_eq!(serde_json::to_string(&id).unwrap(), text);
            let back: SlotId = serde_json::from_str(text).unwrap();
            assert_eq!(back, id);
            assert_eq!(back.slot(), slot);
        }
    }

    #[test]
    fn a_map_of_ids_keeps_the_order_of_its_text() {
        let mut map = std::collections::BTreeMap::new();
        for slot in [
            Slot::Env("CLAUDE_CODE_API_KEY_HELPER_TTL_MS"),
            Slot::Top("apiKeyHelper"),
            Slot::Env("ANTHROPIC_BASE_URL"),
        ] {
            map.insert(slot.id(), 1);
        }
        assert_eq!(
            serde_json::to_string(&map).unwrap(),
            r#"{"apiKeyHelper":1,"env.ANTHROPIC_BASE_URL":1,"env.CLAUDE_CODE_API_KEY_HELPER_TTL_MS":1}"#
        );
        assert!(map.contains_key("env.ANTHROPIC_BASE_URL"));
    }
}
