//! Which key was handed to which Claude Code process, so the StopFailure hook marks the key
//! *that session* was using, not whatever is active by then.
//!
//! Claude Code runs the helper through a shell (`/bin/sh -c`, or `cmd /c` on Windows) and gives
//! hooks `CLAUDE_PID=P` (claude-code-facts.md). `get` walks up past shells to find P
//! (process_tree.rs) and writes
//! `sessions/<P>.json` — atomically but without fsync: losing it in a power cut only makes the
//! hook fall back to the active key, while an fsync would cost every `get`.

use std::fs;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::process_tree::{self, inspect};
use crate::fileio::{Durability, TEMP_PREFIX, read_optional, replace_file};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandOut {
    /// The process taken to be Claude Code.
    pub pid: u32,
    /// Its start time as the OS counts it (Linux: clock ticks since boot), against pid reuse.
    pub start: Option<u64>,
    /// The helper's ancestors, nearest first, for a hook whose P is not `pid`.
    pub chain: Vec<u32>,
    pub key: String,
    pub at: Timestamp,
}

fn record_path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("{pid}.json"))
}

/// Remembers that `key` was handed to the calling Claude Code process. Writes only when that
/// changes, so a steady session costs one small read.
pub fn remember(dir: &Path, key: &str, now: Timestamp) -> anyhow::Result<()> {
    let Some(process_tree::Ancestry {
        claude: pid,
        claude_start: start,
        chain,
    }) = process_tree::find_claude()
    else {
        return Ok(());
    };
    let path = record_path(dir, pid);
    if let Some(bytes) = read_optional(&path)?
        && let Ok(old) = serde_json::from_slice::<HandOut>(&bytes)
        && old.key == key
        && old.start == start
    {
        return Ok(());
    }
    let record = HandOut {
        pid,
        start,
        chain,
        key: key.to_string(),
        at: now,
    };
    replace_file(&path, &serde_json::to_vec(&record)?, Durability::AtomicOnly)
}

/// The key last handed to Claude Code process `pid`, if keyswitch knows it.
pub fn handed_to(dir: &Path, pid: u32) -> Option<HandOut> {
    let alive_start = inspect(pid).and_then(|p| p.start);
    let same_process =
        |h: &HandOut| h.start.is_none() || alive_start.is_none() || h.start == alive_start;
    if let Some(record) = read_record(&record_path(dir, pid)).filter(same_process) {
        return Some(record);
    }
    // A helper behind a wrapper the walk did not recognise: look for P among the ancestors.
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| read_record(&e.path()))
        .filter(|h| h.chain.contains(&pid))
        .max_by_key(|h| h.at)
}

fn read_record(path: &Path) -> Option<HandOut> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

/// Drops records of Claude Code processes that are gone, and temporary files a killed `get`
/// left (only old ones: a `get` running now may own a fresh one).
pub fn prune(dir: &Path, now: Timestamp) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        let stale = if name.starts_with(TEMP_PREFIX) {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| Timestamp::try_from(m).ok())
                .is_some_and(|m| now.duration_since(m) > SignedDuration::from_mins(1))
        } else {
            match read_record(&path) {
                Some(h) => {
                    cfg!(target_os = "linux") && inspect(h.pid).and_then(|p| p.start) != h.start
                }
                None => true,
            }
        };
        if stale {
            let _ = fs::remove_file(&path);
        }
    }
}
