//! Which key was handed to which Claude Code process, so the StopFailure hook marks the key
//! *that session* was using, not whatever is active by then.
//!
//! Claude Code runs the helper through a shell (`/bin/sh -c`, or `cmd /c` on Windows) and gives
//! hooks `CLAUDE_PID=P` (docs/facts/claude-code-facts.md). `get` walks up past shells to find
//! P (process_tree.rs) and writes `sessions/<P>.json` — atomically but without fsync: losing
//! it in a power cut only makes the hook fall back to the active key, while an fsync would
//! cost every `get`.

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
    /// The PID namespace the pids belong to (Linux), so a keyswitch in another container
    /// sharing the folder never judges these pids by its own processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<u64>,
}

/// This process's PID namespace: the inode of /proc/self/ns/pid.
fn own_pid_namespace() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
    }
    #[cfg(not(target_os = "linux"))]
    None
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
    let previous = read_optional(&path)?;
    if let Some(bytes) = &previous
        && let Ok(old) = serde_json::from_slice::<HandOut>(bytes)
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
        pid_ns: own_pid_namespace(),
    };
    replace_file(&path, &serde_json::to_vec(&record)?, Durability::AtomicOnly)?;
    // A new session is the moment to drop the records of ended ones: steady sessions pay
    // nothing, and the folder cannot grow with the number of sessions ever started.
    if previous.is_none() {
        prune(dir, now);
    }
    Ok(())
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
    serde_json::from_slice(&read_optional(path).ok()??).ok()
}

/// At most this many records are kept; past it the oldest go first.
const MAX_RECORDS: usize = 256;
/// A record whose process cannot be checked (no start time, or no /proc) is kept this long.
const UNCHECKABLE_FOR: SignedDuration = SignedDuration::from_hours(7 * 24);

/// Whether the process a record names has ended (or its pid was reused). Only Linux can tell;
/// elsewhere records go by age and count.
fn has_ended(record: &HandOut, now: Timestamp, namespace: Option<u64>) -> bool {
    if cfg!(target_os = "linux") && record.pid_ns == namespace {
        match (inspect(record.pid), record.start) {
            (None, _) => return true,
            (Some(alive), Some(start)) => return alive.start.is_some_and(|s| s != start),
            (Some(_), None) => {}
        }
    }
    now.duration_since(record.at) > UNCHECKABLE_FOR
}

/// Drops records of Claude Code processes that are gone, then the oldest past
/// `MAX_RECORDS`, and temporary files a killed `get` left (only old ones: a `get` running
/// now may own a fresh one).
pub fn prune(dir: &Path, now: Timestamp) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let namespace = own_pid_namespace();
    let mut kept = Vec::new();
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
                Some(h) if !has_ended(&h, now, namespace) => {
                    kept.push((h.at, path.clone()));
                    false
                }
                _ => true,
            }
        };
        if stale {
            let _ = fs::remove_file(&path);
        }
    }
    if kept.len() > MAX_RECORDS {
        kept.sort();
        for (_, path) in &kept[..kept.len() - MAX_RECORDS] {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pid: u32, start: Option<u64>, at: Timestamp) -> HandOut {
        HandOut {
            pid,
            start,
            chain: vec![pid],
            key: "primary".to_string(),
            at,
            pid_ns: own_pid_namespace(),
        }
    }

    fn write(dir: &Path, h: &HandOut) {
        fs::write(record_path(dir, h.pid), serde_json::to_vec(h).unwrap()).unwrap();
    }

    /// A pid no process has: above the kernel's highest (4,194,304).
    const GONE: u32 = 4_000_000_000;

    #[test]
    fn records_without_a_start_time_are_pruned_when_gone_or_old() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let gone = record(GONE, None, now);
        let mine = record(std::process::id(), None, now);
        let ancient = record(
            std::process::id() + 1,
            None,
            now - SignedDuration::from_hours(30 * 24),
        );
        for h in [&gone, &mine, &ancient] {
            write(dir.path(), h);
        }
        prune(dir.path(), now);
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1);
        assert!(record_path(dir.path(), std::process::id()).exists());
    }

    #[test]
    fn the_number_of_records_is_bounded_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        // Many records no check can rule out (a live pid, no start time, recent): only the
        // count bounds them.
        for i in 0..MAX_RECORDS as i64 + 40 {
            let h = record(std::process::id(), None, now - SignedDuration::from_secs(i));
            fs::write(
                dir.path().join(format!("{i}.json")),
                serde_json::to_vec(&h).unwrap(),
            )
            .unwrap();
        }
        prune(dir.path(), now);
        let left = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, MAX_RECORDS);
        assert!(dir.path().join("0.json").exists(), "the newest stays");
    }
}
