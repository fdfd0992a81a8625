//! The event log: one JSON object a line, newest last, bounded in size. It records marks,
//! resets, switches and edits to the pool — never a secret.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::fileio::{Durability, open_for_writing, private_options, read_optional, replace_file};

/// Past this size the log is cut down to its newest [`KEEP_AFTER_TRIM`] events.
const MAX_BYTES: u64 = 256 * 1024;
const KEEP_AFTER_TRIM: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub time: Timestamp,
    /// add, replace, remove, move, mark, reset, switch, hook-ignored, ...
    pub event: String,
    pub key: Option<String>,
    /// manual, hook:rate_limit, cooldown-ended, ...
    pub reason: Option<String>,
    pub session_id: Option<String>,
    /// Anything else worth showing, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Event {
    pub fn new(time: Timestamp, event: &str, key: Option<&str>, reason: Option<&str>) -> Self {
        Self {
            time,
            event: event.to_string(),
            key: key.map(str::to_string),
            reason: reason.map(str::to_string),
            session_id: None,
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_session(mut self, session_id: Option<String>) -> Self {
        self.session_id = session_id;
        self
    }
}

/// Appends events. Call while holding the write lock, which also makes the trim safe.
pub fn append(path: &Path, events: &[Event]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut text = String::new();
    for event in events {
        text.push_str(&serde_json::to_string(event).context("cannot encode an event")?);
        text.push('\n');
    }
    if let Some(dir) = path.parent() {
        crate::paths::ensure_private_dir(dir)?;
    }
    let mut options = private_options();
    options.create(true).append(true);
    let mut file = open_for_writing(&mut options, path, "the event log")?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write the event log {}", path.display()))?;
    if file.metadata().map(|m| m.len()).unwrap_or(0) > MAX_BYTES {
        trim(path)?;
    }
    Ok(())
}

fn trim(path: &Path) -> Result<()> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let keep = &lines[lines.len().saturating_sub(KEEP_AFTER_TRIM)..];
    let mut out = keep.join("\n");
    out.push('\n');
    replace_file(path, out.as_bytes(), Durability::AtomicOnly)
}

/// Reads the log; lines that do not parse (a torn last line after a crash) are skipped.
pub fn read(path: &Path) -> Result<Vec<Event>> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(Vec::new());
    };
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        for i in 0..3_000 {
            let e = Event::new(now, "mark", Some(&format!("key{i}")), Some("manual"));
            append(&path, &[e]).unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= MAX_BYTES + 1024);
        let events = read(&path).unwrap();
        assert!(events.len() >= KEEP_AFTER_TRIM);
        assert_eq!(events.last().unwrap().key.as_deref(), Some("key2999"));
    }

    #[test]
    fn skips_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        append(&path, &[Event::new(now, "reset", Some("a"), None)]).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"time\":")
            .unwrap();
        assert_eq!(read(&path).unwrap().len(), 1);
    }
}
