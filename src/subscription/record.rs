//! subscription.json: that subscription-first mode is on, and the helper command install wires
//! while a hold is on. In the config folder: it is the user's choice of mode, which must outlive
//! a lost state folder (as proxy.json does). Read through [`crate::mode`].

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::fileio::{Durability, read_optional, replace_file};
use crate::paths::Dirs;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionFirst {
    /// The `apiKeyHelper` command wired while a hold is on (this binary's `get`).
    pub helper: String,
}

/// What subscription.json holds.
#[derive(Debug)]
pub enum Stored {
    Absent,
    Record(SubscriptionFirst),
    /// Not a record keyswitch wrote (the file, and why not).
    Damaged(PathBuf, serde_json::Error),
}

pub fn read(dirs: &Dirs) -> Result<Stored> {
    let path = dirs.subscription_file();
    let Some(bytes) = read_optional(&path)? else {
        return Ok(Stored::Absent);
    };
    Ok(match serde_json::from_slice(&bytes) {
        Ok(record) => Stored::Record(record),
        Err(e) => Stored::Damaged(path, e),
    })
}

pub fn save(dirs: &Dirs, record: &SubscriptionFirst) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(record).context("cannot encode subscription.json")?;
    replace_file(&dirs.subscription_file(), &bytes, Durability::Synced)
}

/// Leaves subscription-first mode: the record and any hold go.
pub fn remove(dirs: &Dirs) -> Result<()> {
    for path in [dirs.subscription_file(), dirs.subscription_hold()] {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", path.display()));
            }
            _ => {}
        }
    }
    Ok(())
}
