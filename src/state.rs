//! The state file: cooldowns and which key was last active. It is a cache of what happened, so a
//! damaged one must never lock the user out: it is set aside for inspection, keyswitch carries on
//! as if no key were cooling down, and the next write repairs it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::fileio::{Durability, read_optional, replace_file, set_aside};
use crate::reason::Cause;

/// One key's cooldown. Kept after it ends, so a key exhausted again soon can be given a longer one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cooldown {
    /// When it ends; `None` sets the key aside until the user resets or replaces it
    /// (the upstream rejected the key itself).
    pub until: Option<Timestamp>,
    /// When it started.
    pub since: Timestamp,
    /// Why: `manual`, `hook:rate_limit`, ...
    pub reason: Cause,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Cooldowns by key name (as spelled in the config).
    #[serde(default)]
    pub cooldowns: BTreeMap<String, Cooldown>,
    /// The key `get` last handed out, to notice switches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active: Option<String>,
    /// Bumped whenever a secret in the keychain changes (add, replace), so a running
    /// proxy knows to drop the secrets it holds in memory.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub secrets_epoch: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A state file that could not be read, and where it was put.
#[derive(Debug)]
pub struct Damaged {
    pub path: PathBuf,
    pub moved_to: Option<PathBuf>,
    pub problem: String,
}

impl Damaged {
    pub fn warning(&self) -> String {
        let whereabouts = match &self.moved_to {
            Some(aside) => format!("kept aside as {}", aside.display()),
            None => "left in place".to_string(),
        };
        format!(
            "keyswitch: warning: the state file {} was damaged ({}); {whereabouts}; carrying on as if no key were cooling down",
            self.path.display(),
            self.problem
        )
    }
}

impl State {
    /// Reads the state. A damaged file yields an empty state plus a [`Damaged`] report; when
    /// `may_set_aside` (the caller holds the write lock) the file is also moved aside, so the
    /// warning is given once.
    pub fn load(
        path: &Path,
        now: Timestamp,
        may_set_aside: bool,
    ) -> Result<(Self, Option<Damaged>)> {
        // A state file that cannot be read at all (a folder or a named pipe in its place, no
        // permission, its folder a file) is damaged too: never a reason to refuse a key.
        let parsed = match read_optional(path) {
            Ok(None) => return Ok((Self::default(), None)),
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
            Err(e) => Err(crate::error::one_line(&e)),
        };
        match parsed {
            Ok(state) => Ok((state, None)),
            Err(problem) => {
                let moved_to = if may_set_aside {
                    set_aside(path, now).ok()
                } else {
                    None
                };
                let damaged = Damaged {
                    path: path.to_path_buf(),
                    moved_to,
                    problem,
                };
                Ok((Self::default(), Some(damaged)))
            }
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).context("cannot encode the state")?;
        bytes.push(b'\n');
        replace_file(path, &bytes, Durability::Synced)
    }

    /// Forgets everything about a key that is no longer configured.
    pub fn forget(&mut self, name: &str) {
        self.cooldowns.remove(name);
        if self.last_active.as_deref() == Some(name) {
            self.last_active = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_state_is_set_aside_and_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{\"cooldowns\": {\"a\": tru").unwrap();
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let (state, damaged) = State::load(&path, now, true).unwrap();
        assert_eq!(state, State::default());
        let damaged = damaged.expect("damage reported");
        let aside = damaged.moved_to.clone().expect("moved aside");
        assert!(aside.exists() && !path.exists());
        assert!(damaged.warning().contains("state.json"));
    }

    #[test]
    fn readers_without_the_lock_leave_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "not json").unwrap();
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let (_, damaged) = State::load(&path, now, false).unwrap();
        assert!(damaged.unwrap().moved_to.is_none());
        assert!(path.exists());
    }
}
