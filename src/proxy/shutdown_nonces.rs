//! Which shutdown requests the proxy takes by their time and nonce: one made within
//! [`WINDOW`] of the proxy's clock, not before the proxy started, with a nonce not taken
//! before. Only nonces of proved requests are kept (the caller checks the proof first), and
//! each only while its time is within the window, so the set stays as small as the user's own
//! stops make it: no other program can fill it or push anything out of it.

use std::collections::HashMap;
use std::sync::Mutex;

/// How far a shutdown's time may be from the proxy's clock: a stop is sent at once after the
/// client reads the clock, so this only has to cover a slow machine.
pub const WINDOW: u64 = 30;
/// How much earlier than the proxy's start a shutdown's time may be: a clock set back a
/// little (NTP) must not keep the user from stopping a proxy just started, while a shutdown
/// recorded for an earlier proxy must not stop this one.
const START_SLACK: u64 = 2;

/// Why a shutdown's time and nonce were not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// More than [`WINDOW`] from the proxy's clock, or older than the proxy.
    OutOfTime,
    /// Taken before: a shutdown played again.
    Used,
}

/// The nonces of the shutdowns taken, with their times; and when the proxy started.
pub struct ShutdownNonces {
    started: u64,
    used: Mutex<HashMap<String, u64>>,
}

impl ShutdownNonces {
    /// For a proxy that started at unix second `started`.
    pub fn new(started: u64) -> Self {
        Self {
            started,
            used: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `nonce` of a proved shutdown made at `time`, the clock now saying `now`.
    pub fn take(&self, nonce: &str, time: u64, now: u64) -> Result<(), Refusal> {
        if time.abs_diff(now) > WINDOW || time.saturating_add(START_SLACK) < self.started {
            return Err(Refusal::OutOfTime);
        }
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        // What is out of the window would be refused by its time anyway.
        used.retain(|_, at| at.abs_diff(now) <= WINDOW);
        if used.contains_key(nonce) {
            return Err(Refusal::Used);
        }
        used.insert(nonce.to_string(), time);
        Ok(())
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.used.lock().map(|u| u.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_taken_once_and_only_in_time() {
        let nonces = ShutdownNonces::new(1_000);
        assert_eq!(nonces.take("a", 1_000, 1_000), Ok(()));
        assert_eq!(nonces.take("a", 1_000, 1_005), Err(Refusal::Used));
        assert_eq!(
            nonces.take("b", 1_000 + WINDOW + 1, 1_000),
            Err(Refusal::OutOfTime)
        );
        assert_eq!(
            nonces.take("b", 1_100, 1_100 + WINDOW + 1),
            Err(Refusal::OutOfTime)
        );
        assert_eq!(nonces.take("b", 1_100, 1_100 + WINDOW), Ok(()));
        // Made for a proxy that ran before this one.
        assert_eq!(nonces.take("c", 990, 1_001), Err(Refusal::OutOfTime));
        assert_eq!(nonces.take("c", 999, 1_001), Ok(()));
    }

    #[test]
    fn only_nonces_still_in_the_window_are_kept() {
        let nonces = ShutdownNonces::new(0);
        for n in 0..100u64 {
            assert_eq!(nonces.take(&n.to_string(), n * 10, n * 10), Ok(()));
        }
        assert!(nonces.kept() <= 4, "{}", nonces.kept());
    }
}
