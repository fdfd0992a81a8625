//! When `get` last handed proxy mode's token to a session: sessions that have it send every
//! request to the proxy, and fail (after minutes of Claude Code's retries) while it is down —
//! so `proxy stop` warns when that was recently.
//!
//! One small file holding the time, rewritten at most once a minute (a stat per `get`
//! otherwise) and never fsynced: losing it costs a warning, not a key.

use std::path::Path;
use std::time::{Duration, SystemTime};

use jiff::Timestamp;

use crate::fileio::{Durability, read_optional, replace_file};

/// How often the time is rewritten at most: a finer time says nothing more to a warning.
const REWRITE_AFTER: Duration = Duration::from_secs(REWRITE_SECONDS as u64);
const REWRITE_SECONDS: i64 = 60;

/// A hand-out this recent means a session may still be running on the token.
pub const RECENT: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// Notes a hand-out at `now`, unless one was noted within the last minute. Best effort.
pub fn note(path: &Path, now: Timestamp) {
    let fresh = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < REWRITE_AFTER);
    if !fresh {
        let _ = replace_file(path, now.to_string().as_bytes(), Durability::AtomicOnly);
    }
}

/// The last hand-out noted, if any.
pub fn last(path: &Path) -> Option<Timestamp> {
    let bytes = read_optional(path).ok()??;
    String::from_utf8_lossy(&bytes).trim().parse().ok()
}

/// The warning `proxy stop` gives when a session had the token recently: what happens to it
/// and how to start the proxy again.
pub fn stop_warning(path: &Path, now: Timestamp) -> Option<String> {
    let at = last(path)?;
    if now.duration_since(at) > RECENT {
        return None;
    }
    Some(format!(
        "a session was handed the proxy's token within the last {}: sessions still running send every request to the proxy, and fail (after about 3 minutes of retries) until it runs again; start it with `keyswitch proxy start` (a new session's start does it too)",
        // The time kept is the first hand-out of its minute, so later ones fall within this.
        crate::timespec::format_duration(
            now.duration_since(at)
                .max(jiff::SignedDuration::from_secs(REWRITE_SECONDS))
        )
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recent_hand_out_warns_and_an_old_one_or_none_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token-handout");
        let now: Timestamp = "2026-01-02T10:00:00Z".parse().unwrap();
        assert_eq!(stop_warning(&path, now), None);
        note(&path, now);
        let later = now + jiff::SignedDuration::from_mins(5);
        let warning = stop_warning(&path, later).unwrap();
        assert!(warning.contains("within the last 5m"), "{warning}");
        let soon = stop_warning(&path, now + jiff::SignedDuration::from_secs(5)).unwrap();
        assert!(soon.contains("within the last 1m"), "{soon}");
        assert!(warning.contains("keyswitch proxy start"), "{warning}");
        let next_day = now + jiff::SignedDuration::from_hours(25);
        assert_eq!(stop_warning(&path, next_day), None);
    }

    #[test]
    fn a_second_hand_out_within_the_minute_rewrites_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token-handout");
        let first: Timestamp = "2026-01-02T10:00:00Z".parse().unwrap();
        note(&path, first);
        note(&path, first + jiff::SignedDuration::from_secs(30));
        assert_eq!(last(&path), Some(first));
    }
}
