//! The hold: the subscription's usage limit was reached, and until it resets sessions run on the
//! API keys (the helper is wired). Kept in the state folder as subscription-hold.json; present
//! exactly while keyswitch means the helper to be wired. A damaged file is a hold that is over:
//! the worst that follows is one more failed turn on the subscription, never a key billed
//! while the subscription works.

use anyhow::{Context, Result};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::limit::Claim;
use crate::fileio::{Durability, read_optional, replace_file};
use crate::paths::Dirs;
use crate::reason::Cause;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    /// When the limit was reached (or the user set the subscription aside).
    pub since: Timestamp,
    /// When the subscription is usable again.
    pub until: Timestamp,
    /// Which of the subscription's limits it is; `None` when the user set it aside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
    pub cause: Cause,
}

impl Hold {
    pub fn is_over(&self, now: Timestamp) -> bool {
        now >= self.until
    }

    /// The limit in words: "5-hour limit", "weekly Opus limit", "set aside".
    pub fn what(&self) -> String {
        self.claim
            .as_ref()
            .map_or_else(|| "set aside".to_string(), Claim::describe)
    }
}

/// The hold on now (possibly over, for `get` to end); a damaged file reads as one that is over.
pub fn load(dirs: &Dirs) -> Option<Hold> {
    let bytes = read_optional(&dirs.subscription_hold()).ok().flatten()?;
    Some(serde_json::from_slice(&bytes).unwrap_or(Hold {
        since: Timestamp::UNIX_EPOCH,
        until: Timestamp::UNIX_EPOCH,
        claim: None,
        cause: Cause::Other("unreadable hold".to_string()),
    }))
}

pub fn save(dirs: &Dirs, hold: &Hold) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(hold).context("cannot encode the subscription hold")?;
    replace_file(&dirs.subscription_hold(), &bytes, Durability::Synced)
}

/// Ends the hold; whether there was one.
pub fn remove(dirs: &Dirs) -> Result<bool> {
    let path = dirs.subscription_hold();
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_reads_back_and_a_damaged_one_is_over() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: dir.path().join("config"),
            state: dir.path().join("state"),
        };
        assert!(load(&dirs).is_none());
        let hold = Hold {
            since: "2026-12-01T19:00:00Z".parse().unwrap(),
            until: "2026-12-01T20:06:00Z".parse().unwrap(),
            claim: Some(Claim::SevenDayOpus),
            cause: Cause::Manual,
        };
        save(&dirs, &hold).unwrap();
        assert_eq!(load(&dirs), Some(hold.clone()));
        assert!(!hold.is_over("2026-12-01T20:05:59Z".parse().unwrap()));
        assert!(hold.is_over(hold.until));
        std::fs::write(dirs.subscription_hold(), "{\"since\":").unwrap();
        assert!(load(&dirs).unwrap().is_over(hold.since));
        assert!(remove(&dirs).unwrap());
        assert!(!remove(&dirs).unwrap());
    }
}
