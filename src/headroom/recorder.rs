//! The proxy's side of the headroom file: what each answer said and used goes into memory at
//! once (a lock held for a map update), and a background task writes it out, coalesced — at
//! most once every [`EVERY`] while answers come, and once more when the proxy stops. A write
//! that fails is put back and tried with the next one; the request path never waits on a file.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::store::{self, Delta, Seen};
use super::{Reported, Tally};
use crate::paths::Dirs;

/// How long figures wait in memory before they are written.
pub const EVERY: Duration = Duration::from_secs(1);

pub struct Recorder {
    path: PathBuf,
    lock: PathBuf,
    /// Read once: the local day a count goes to.
    zone: TimeZone,
    pending: Mutex<Delta>,
    wake: tokio::sync::Notify,
    /// Said once: a disk that keeps refusing would say it every second.
    warned: std::sync::atomic::AtomicBool,
}

fn lock(m: &Mutex<Delta>) -> MutexGuard<'_, Delta> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Recorder {
    pub fn new(dirs: &Dirs) -> Arc<Self> {
        Arc::new(Self {
            path: dirs.headroom_file(),
            lock: dirs.headroom_lock(),
            zone: crate::timespec::local_zone(),
            pending: Mutex::new(Delta::default()),
            wake: tokio::sync::Notify::new(),
            warned: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// What an answer's headers said about the key `name`.
    pub fn reported(&self, name: &str, reported: Reported) {
        let seen = Seen {
            at: Timestamp::now(),
            reported,
        };
        lock(&self.pending).reported.insert(name.to_string(), seen);
        self.wake.notify_one();
    }

    /// What one answer of the key `name` used, on today's tally.
    pub fn counted(&self, name: &str, tally: Tally) {
        let today = self.zone.to_datetime(Timestamp::now()).date();
        {
            let mut pending = lock(&self.pending);
            let days = match pending.tallies.get_mut(name) {
                Some(days) => days,
                None => pending.tallies.entry(name.to_string()).or_default(),
            };
            days.entry(today).or_default().add(&tally);
        }
        self.wake.notify_one();
    }

    /// Writes what came in, [`EVERY`] after it came, for as long as the proxy runs.
    pub async fn keep_writing(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            tokio::time::sleep(EVERY).await;
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.write()).await;
        }
    }

    /// Writes what is pending now (blocking); a failure keeps it for the next write.
    pub fn write(&self) {
        let delta = std::mem::take(&mut *lock(&self.pending));
        if delta.is_empty() {
            return;
        }
        let today = self.zone.to_datetime(Timestamp::now()).date();
        match store::add(&self.path, &self.lock, &delta, today) {
            Ok(None) => {}
            Ok(Some(damaged)) => crate::messages::warn(damaged),
            Err(e) => self.put_back(delta, &e),
        }
    }

    /// A write that failed: its figures go back before what came since, for the next write.
    fn put_back(&self, delta: Delta, e: &anyhow::Error) {
        {
            let mut pending = lock(&self.pending);
            let later = std::mem::replace(&mut *pending, delta);
            pending.absorb(later);
        }
        if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
            crate::messages::warn_failed("write the keys' headroom figures", e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headroom::store::Book;

    #[test]
    fn figures_wait_in_memory_and_a_write_adds_them() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: dir.path().join("config"),
            state: dir.path().join("state"),
        };
        let recorder = Recorder::new(&dirs);
        let one = Tally {
            input: 3,
            requests: 1,
            ..Tally::default()
        };
        recorder.counted("a", one);
        recorder.counted("a", one);
        recorder.reported(
            "a",
            Reported {
                spend: Some(1.5),
                ..Reported::default()
            },
        );
        assert!(!dirs.headroom_file().exists());
        recorder.write();
        recorder.counted("a", one);
        recorder.write();
        let book = Book::load(&dirs.headroom_file());
        let a = book.key("a").unwrap();
        let total: u64 = a.days.values().map(|t| t.input).sum();
        assert_eq!(total, 9);
        assert_eq!(a.reported.as_ref().unwrap().reported.spend, Some(1.5));
        // Nothing pending: no write at all.
        std::fs::remove_file(dirs.headroom_file()).unwrap();
        recorder.write();
        assert!(!dirs.headroom_file().exists());
    }

    #[test]
    fn a_write_that_fails_is_kept_for_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let dirs = Dirs {
            config: dir.path().join("config"),
            state: state.clone(),
        };
        let recorder = Recorder::new(&dirs);
        recorder.counted(
            "a",
            Tally {
                output: 4,
                ..Tally::default()
            },
        );
        // A folder where the file should be: the write fails.
        std::fs::create_dir_all(dirs.headroom_file()).unwrap();
        recorder.write();
        std::fs::remove_dir(dirs.headroom_file()).unwrap();
        recorder.counted(
            "a",
            Tally {
                output: 1,
                ..Tally::default()
            },
        );
        recorder.write();
        let book = Book::load(&dirs.headroom_file());
        let total: u64 = book.key("a").unwrap().days.values().map(|t| t.output).sum();
        assert_eq!(total, 5);
    }
}
