//! The install record: for every entry keyswitch set in Claude Code's settings, the value it
//! replaced and the value it wrote, and what it created — so `uninstall` takes out exactly
//! that. Putting back only where the entry still holds keyswitch's value: an entry the user
//! changed since is theirs and is left alone (and reported). Kept in the state folder
//! ([`Dirs::install_record`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::settings_file::SettingsFile;
pub use super::slot::note_created;
use super::slot::{Slot, SlotId};
use crate::failpoints::fail_point;
use crate::fileio::{Durability, read_optional, replace_file};
use crate::paths::Dirs;

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
    /// Entries by slot: `apiKeyHelper`, `env.CLAUDE_CODE_API_KEY_HELPER_TTL_MS`, ...
    #[serde(default)]
    pub entries: BTreeMap<SlotId, Replaced>,
    /// What keyswitch created (`env`, `hooks`, `hooks.StopFailure`, and `file` for the settings
    /// file itself): removed again on uninstall if keyswitch's entries were all they held.
    #[serde(default)]
    pub created: Vec<String>,
    /// The hook command keyswitch added.
    #[serde(default)]
    pub hook_command: Option<String>,
    /// The service manager's files `install --proxy` wrote (systemd units, a LaunchAgent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_files: Vec<PathBuf>,
}

impl InstallRecord {
    /// The settings file this record is about. A relative path (older versions recorded a
    /// relative `CLAUDE_CONFIG_DIR` as given) names no folder: taken as it is, it would be the
    /// current folder's `.claude/settings.json`, whoever runs the hook there. Refused instead;
    /// `keyswitch install` rewrites the record with the absolute path.
    pub fn settings_file(&self) -> Result<SettingsFile> {
        if self.settings.is_relative() {
            return Err(anyhow!(
                "the install record names the settings file by a relative path, {}, so it cannot tell which folder's file is meant: run `keyswitch install` again (from the folder you installed from, with the same CLAUDE_CONFIG_DIR), which records the absolute path",
                self.settings.display()
            ));
        }
        Ok(SettingsFile {
            path: self.settings.clone(),
        })
    }

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
            slot.write(map, Some(value), &mut self.created);
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
        slot.write(map, entry.prior, &mut self.created);
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

/// What `keyswitch install` changed, if it ran.
pub fn load_record(dirs: &Dirs) -> Result<Option<InstallRecord>> {
    let path = dirs.install_record();
    let Some(bytes) = read_optional(&path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        anyhow!(
            "{} is damaged ({e}): run `keyswitch uninstall`, which sets it aside, takes out what is recognisably keyswitch's and puts back replaced values from the settings backup; then `keyswitch install`",
            path.display()
        )
    })
}

pub fn save_record(dirs: &Dirs, record: &InstallRecord) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(record).context("cannot encode the install record")?;
    fail_point("record-save")?;
    replace_file(&dirs.install_record(), &bytes, Durability::Synced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claude::wiring::{BASE_URL_VAR, HELPER_KEY, TTL_VAR};
    use serde_json::json;

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
    fn a_record_file_reads_and_writes_back_byte_for_byte() {
        let file = r#"{
  "settings": "/home/me/.claude/settings.json",
  "entries": {
    "apiKeyHelper": {
      "prior": null,
      "ours": "/bin/keyswitch get"
    },
    "env.ANTHROPIC_BASE_URL": {
      "prior": "https://gw.example",
      "ours": "http://127.0.0.1:27329",
      "previous": "https://old.example"
    },
    "env.CLAUDE_CODE_API_KEY_HELPER_TTL_MS": {
      "prior": null,
      "ours": "60000"
    }
  },
  "created": [
    "env",
    "hooks"
  ],
  "hook_command": "/bin/keyswitch hook stop-failure"
}"#;
        let record: InstallRecord = serde_json::from_str(file).unwrap();
        assert_eq!(
            record.prior(Slot::Env(BASE_URL_VAR)),
            Some(&json!("https://gw.example"))
        );
        assert!(record.entries.contains_key("apiKeyHelper"));
        assert_eq!(serde_json::to_string_pretty(&record).unwrap(), file);
    }
}
