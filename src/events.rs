//! The event log: one JSON object a line, newest last, bounded in bytes — each field and the
//! whole file — so no input (a hook's error text is whatever Claude Code passes on) can make it
//! grow, or make writing it slow. It records marks, resets, switches and edits to the pool —
//! never a secret.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::fileio::{Durability, open_for_writing, private_options, read_tail, replace_file};
use crate::reason::Cause;

/// Past this size the log is cut down to its newest [`KEEP_AFTER_TRIM`] bytes of whole lines.
const MAX_BYTES: u64 = 256 * 1024;
const KEEP_AFTER_TRIM: u64 = MAX_BYTES / 2;
/// Each text field is cut to this many bytes; real values are a few dozen.
const MAX_FIELD_BYTES: usize = 512;
/// `read` looks at no more than this much of the end of the log (an old, oversized log).
const MAX_READ_BYTES: u64 = 4 * MAX_BYTES;

/// What happened, as the log's `event` column names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum EventKind {
    Add,
    Replace,
    /// A key's options (endpoint, cooldown) changed; its secret and position stayed.
    Set,
    Remove,
    Move,
    /// A key was put on cooldown (or set aside).
    Mark,
    /// A mark that changed nothing: the key already cooled down at least as long.
    AlreadyCooling,
    Reset,
    /// The active key changed.
    Switch,
    /// The StopFailure hook ran and marked nothing; the detail says why.
    HookIgnored,
    /// The clock was set back past a cooldown's start; the cooldown was moved to now.
    ClockSetBack,
    /// A word this keyswitch does not write, read from a log another version wrote.
    Other(String),
}

impl EventKind {
    const WORDS: [(EventKind, &'static str); 11] = [
        (Self::Add, "add"),
        (Self::Replace, "replace"),
        (Self::Set, "set"),
        (Self::Remove, "remove"),
        (Self::Move, "move"),
        (Self::Mark, "mark"),
        (Self::AlreadyCooling, "already-cooling"),
        (Self::Reset, "reset"),
        (Self::Switch, "switch"),
        (Self::HookIgnored, "hook-ignored"),
        (Self::ClockSetBack, "clock-set-back"),
    ];

    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(text) => text,
            known => Self::WORDS
                .iter()
                .find(|(kind, _)| kind == known)
                .map_or("", |(_, word)| word),
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for EventKind {
    fn from(text: String) -> Self {
        Self::WORDS
            .iter()
            .find(|(_, word)| *word == text)
            .map_or(Self::Other(text), |(kind, _)| kind.clone())
    }
}

impl From<EventKind> for String {
    fn from(kind: EventKind) -> Self {
        match kind {
            EventKind::Other(text) => text,
            known => known.as_str().to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub time: Timestamp,
    pub event: EventKind,
    pub key: Option<String>,
    pub reason: Option<Cause>,
    pub session_id: Option<String>,
    /// Anything else worth showing, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Event {
    pub fn new(
        time: Timestamp,
        event: EventKind,
        key: Option<&str>,
        reason: Option<Cause>,
    ) -> Self {
        Self {
            time,
            event,
            key: key.map(str::to_string),
            reason,
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

    /// The event with every text field cut to [`MAX_FIELD_BYTES`].
    fn bounded(mut self) -> Self {
        if let EventKind::Other(text) = &mut self.event {
            cut(text);
        }
        if let Some(Cause::Other(text)) = &mut self.reason {
            cut(text);
        }
        for text in [&mut self.key, &mut self.session_id, &mut self.detail]
            .into_iter()
            .flatten()
        {
            cut(text);
        }
        self
    }
}

/// Cuts `text` to at most [`MAX_FIELD_BYTES`] bytes on a character boundary, marking the cut.
fn cut(text: &mut String) {
    const MARK: &str = "…";
    if text.len() <= MAX_FIELD_BYTES {
        return;
    }
    let mut end = MAX_FIELD_BYTES - MARK.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(MARK);
}

/// Appends events. Call while holding the write lock, which also makes the trim safe.
pub fn append(path: &Path, events: &[Event]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut text = String::new();
    for event in events {
        let event = event.clone().bounded();
        text.push_str(&serde_json::to_string(&event).context("cannot encode an event")?);
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

/// Keeps the newest whole lines that fit in [`KEEP_AFTER_TRIM`] bytes, reading only those.
fn trim(path: &Path) -> Result<()> {
    let Some(bytes) = read_tail(path, KEEP_AFTER_TRIM)? else {
        return Ok(());
    };
    replace_file(path, &bytes, Durability::AtomicOnly)
}

/// Reads the log; lines that do not parse (a torn last line after a crash) are skipped.
pub fn read(path: &Path) -> Result<Vec<Event>> {
    let Some(bytes) = read_tail(path, MAX_READ_BYTES)? else {
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
            let e = Event::new(
                now,
                EventKind::Mark,
                Some(&format!("key{i}")),
                Some(Cause::Manual),
            );
            append(&path, &[e]).unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= MAX_BYTES + 1024);
        let events = read(&path).unwrap();
        assert!(events.len() >= 500);
        assert_eq!(events.last().unwrap().key.as_deref(), Some("key2999"));
    }

    #[test]
    fn huge_fields_are_cut_and_the_file_stays_bounded_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let huge = "é".repeat(50_000);
        let started = std::time::Instant::now();
        for i in 0..200 {
            let e = Event::new(
                now,
                EventKind::Other(huge.clone()),
                Some(&huge),
                Some(Cause::Other(huge.clone())),
            )
            .with_detail(format!("{i} {huge}"))
            .with_session(Some(huge.clone()));
            append(&path, &[e]).unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= MAX_BYTES + 4 * 1024);
        let events = read(&path).unwrap();
        let last = events.last().unwrap();
        assert!(last.detail.as_ref().unwrap().starts_with("199 "));
        let reason = last.reason.as_ref().map(Cause::to_string);
        let kind = Some(last.event.to_string());
        for field in [&last.key, &reason, &kind, &last.session_id, &last.detail] {
            let text = field.as_ref().unwrap();
            assert!(text.len() <= MAX_FIELD_BYTES && text.ends_with('…'));
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn every_kind_reads_back_from_its_word() {
        for (kind, word) in EventKind::WORDS {
            assert_eq!(String::from(kind.clone()), word);
            assert_eq!(EventKind::from(word.to_string()), kind);
        }
        let other = EventKind::from("frobnicated".to_string());
        assert_eq!(other, EventKind::Other("frobnicated".into()));
        assert_eq!(other.to_string(), "frobnicated");
    }

    #[test]
    fn skips_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        append(&path, &[Event::new(now, EventKind::Reset, Some("a"), None)]).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"time\":")
            .unwrap();
        assert_eq!(read(&path).unwrap().len(), 1);
    }
}
