//! The headroom file (`headroom.json` in the state folder): per key, the latest figures its
//! upstream reported and a tally per day, for the last [`KEEP_DAYS`] days.
//!
//! Written only by proxies, under a lock of its own (never the pool's): each write reads the
//! file, adds what the proxy counted since its last write, keeps the newer of two reports, and
//! replaces the file atomically — so a proxy restarted while the old one still writes, or two
//! proxies of one user, add up rather than overwrite each other. Readers (`list`, `status`,
//! `usage`, `doctor`) never lock, and a missing or damaged file is read as no figures; the next
//! write moves a damaged one aside and the proxy says so in its log.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::{Reported, Tally};
use crate::fileio::{Durability, WriteLock, read_optional, replace_file, set_aside};

/// Days older than this are dropped.
pub const KEEP_DAYS: i64 = 90;
/// More keys than this (keys removed and added over time): the longest quiet give way.
const MAX_KEYS: usize = 64;

/// A report and when it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub at: Timestamp,
    #[serde(flatten)]
    pub reported: Reported,
}

/// One key's figures.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct KeyFigures {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<Seen>,
    #[serde(default)]
    pub days: BTreeMap<Date, Tally>,
}

impl KeyFigures {
    pub fn day(&self, date: Date) -> Tally {
        self.days.get(&date).copied().unwrap_or_default()
    }

    fn last_active(&self) -> Option<Date> {
        let day = self.days.keys().next_back().copied();
        let seen = self
            .reported
            .as_ref()
            .map(|s| jiff::tz::TimeZone::UTC.to_datetime(s.at).date());
        day.max(seen)
    }
}

/// The whole file: each key's figures by name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Book {
    #[serde(default)]
    pub keys: BTreeMap<String, KeyFigures>,
}

/// What a proxy counted since its last write.
#[derive(Debug, Clone, Default)]
pub struct Delta {
    pub reported: HashMap<String, Seen>,
    pub tallies: HashMap<String, BTreeMap<Date, Tally>>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.reported.is_empty() && self.tallies.is_empty()
    }

    /// Takes `later` in too (a write that failed, put back before what came since).
    pub fn absorb(&mut self, later: Delta) {
        for (name, seen) in later.reported {
            match self.reported.get(&name) {
                Some(old) if old.at > seen.at => {}
                _ => {
                    self.reported.insert(name, seen);
                }
            }
        }
        for (name, days) in later.tallies {
            let mine = self.tallies.entry(name).or_default();
            for (date, tally) in days {
                mine.entry(date).or_default().add(&tally);
            }
        }
    }
}

impl Book {
    /// The file as it is; a missing or damaged file is an empty book.
    pub fn load(path: &Path) -> Self {
        read_optional(path)
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub fn key(&self, name: &str) -> Option<&KeyFigures> {
        self.keys.get(name)
    }

    /// `delta` added; days before `today` minus [`KEEP_DAYS`] and the quietest keys past
    /// [`MAX_KEYS`] dropped.
    pub fn merge(&mut self, delta: &Delta, today: Date) {
        for (name, seen) in &delta.reported {
            let figures = self.keys.entry(name.clone()).or_default();
            if figures
                .reported
                .as_ref()
                .is_none_or(|old| old.at <= seen.at)
            {
                figures.reported = Some(seen.clone());
            }
        }
        for (name, days) in &delta.tallies {
            let figures = self.keys.entry(name.clone()).or_default();
            for (date, tally) in days {
                figures.days.entry(*date).or_default().add(tally);
            }
        }
        let oldest = today
            .checked_sub(jiff::Span::new().days(KEEP_DAYS))
            .unwrap_or(today);
        for figures in self.keys.values_mut() {
            figures.days.retain(|date, _| *date > oldest);
        }
        self.keys
            .retain(|_, f| f.reported.is_some() || !f.days.is_empty());
        while self.keys.len() > MAX_KEYS {
            let quietest = self
                .keys
                .iter()
                .min_by_key(|(_, f)| f.last_active())
                .map(|(name, _)| name.clone());
            match quietest {
                Some(name) => self.keys.remove(&name),
                None => break,
            };
        }
    }
}

/// A damaged headroom file a write found, and where it was moved to keep it for a look.
#[derive(Debug)]
pub struct Damaged {
    pub problem: String,
    pub moved_to: Option<PathBuf>,
}

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = match &self.moved_to {
            Some(aside) => format!("kept as {}", aside.display()),
            None => "it could not be moved aside".to_string(),
        };
        write!(
            f,
            "the headroom file was damaged ({}); {kept}; the keys' figures start again from now",
            self.problem
        )
    }
}

/// Adds `delta` to the file at `path`, under the lock at `lock`. A damaged file is moved aside
/// (and reported) rather than silently written over: the figures in it are then gone from
/// `list` and `usage`, and whoever looks should find out why.
pub fn add(path: &Path, lock: &Path, delta: &Delta, today: Date) -> Result<Option<Damaged>> {
    let _held = WriteLock::acquire(lock)?;
    // A file that cannot be read (a folder in its place, no permission) fails the write, which
    // is tried again later; only one that reads but does not parse is set aside.
    let (mut book, damaged) = match read_optional(path)? {
        None => (Book::default(), None),
        Some(bytes) => match serde_json::from_slice(&bytes) {
            Ok(book) => (book, None),
            Err(e) => {
                let moved_to = set_aside(path, Timestamp::now()).ok();
                let problem = e.to_string();
                (Book::default(), Some(Damaged { problem, moved_to }))
            }
        },
    };
    book.merge(delta, today);
    let mut bytes = serde_json::to_vec(&book).context("cannot encode the headroom figures")?;
    bytes.push(b'\n');
    replace_file(path, &bytes, Durability::AtomicOnly)?;
    Ok(damaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> Date {
        text.parse().unwrap()
    }

    fn delta(name: &str, day: &str, input: u64, at: Option<(&str, f64)>) -> Delta {
        let mut delta = Delta::default();
        let tally = Tally {
            input,
            requests: 1,
            ..Tally::default()
        };
        delta
            .tallies
            .entry(name.to_string())
            .or_default()
            .insert(date(day), tally);
        if let Some((at, spend)) = at {
            let reported = Reported {
                spend: Some(spend),
                max_budget: Some(5.0),
                windows: Vec::new(),
            };
            delta.reported.insert(
                name.to_string(),
                Seen {
                    at: at.parse().unwrap(),
                    reported,
                },
            );
        }
        delta
    }

    #[test]
    fn writes_add_up_and_the_newer_report_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (path, lock) = (dir.path().join("headroom.json"), dir.path().join("lock"));
        let today = date("2026-12-01");
        add(
            &path,
            &lock,
            &delta("a", "2026-12-01", 10, Some(("2026-12-01T10:00:00Z", 1.0))),
            today,
        )
        .unwrap();
        // Another proxy's write, with an older report: its tokens count, its report does not.
        add(
            &path,
            &lock,
            &delta("a", "2026-12-01", 5, Some(("2026-12-01T09:00:00Z", 0.5))),
            today,
        )
        .unwrap();
        add(&path, &lock, &delta("b", "2026-11-30", 7, None), today).unwrap();
        let book = Book::load(&path);
        let a = book.key("a").unwrap();
        assert_eq!(a.day(today).input, 15);
        assert_eq!(a.day(today).requests, 2);
        assert_eq!(a.reported.as_ref().unwrap().reported.spend, Some(1.0));
        assert_eq!(book.key("b").unwrap().day(date("2026-11-30")).input, 7);
        // A damaged file reads as nothing; the next write moves it aside, says so, and starts
        // again.
        std::fs::write(&path, b"{\"keys\": [").unwrap();
        assert_eq!(Book::load(&path), Book::default());
        let damaged = add(&path, &lock, &delta("a", "2026-12-01", 1, None), today)
            .unwrap()
            .expect("the damaged file is reported");
        let aside = damaged.moved_to.clone().expect("moved aside");
        assert_eq!(std::fs::read(&aside).unwrap(), b"{\"keys\": [");
        assert!(damaged.to_string().contains("headroom file was damaged"));
        assert_eq!(Book::load(&path).key("a").unwrap().day(today).input, 1);
        let again = add(&path, &lock, &delta("a", "2026-12-01", 1, None), today).unwrap();
        assert!(again.is_none(), "a good file is not reported");
        assert_eq!(
            Book::load(&dir.path().join("missing.json")),
            Book::default()
        );
    }

    #[test]
    fn only_ninety_days_and_sixty_four_keys_are_kept() {
        let today = date("2026-12-01");
        let mut book = Book::default();
        book.merge(&delta("a", "2026-09-02", 1, None), today);
        book.merge(&delta("a", "2026-09-03", 1, None), today);
        book.merge(&delta("a", "2026-12-01", 1, None), today);
        let days: Vec<Date> = book.key("a").unwrap().days.keys().copied().collect();
        assert_eq!(days, [date("2026-09-03"), date("2026-12-01")]);
        for i in 0..70 {
            let day = today
                .checked_sub(jiff::Span::new().days(i))
                .unwrap()
                .to_string();
            book.merge(&delta(&format!("k{i:02}"), &day, 1, None), today);
        }
        assert_eq!(book.keys.len(), MAX_KEYS);
        assert!(book.key("k00").is_some() && book.key("k69").is_none());
    }

    #[test]
    fn a_failed_write_put_back_loses_nothing() {
        let mut kept = delta("a", "2026-12-01", 10, Some(("2026-12-01T10:00:00Z", 1.0)));
        kept.absorb(delta(
            "a",
            "2026-12-01",
            5,
            Some(("2026-12-01T11:00:00Z", 2.0)),
        ));
        assert_eq!(kept.tallies["a"][&date("2026-12-01")].input, 15);
        assert_eq!(kept.reported["a"].reported.spend, Some(2.0));
    }
}
