//! Warnings that every request would otherwise repeat (a key without a secret is met by each
//! one): said the first time, then at most once a minute with how often they were met in
//! between, so the log says what is wrong without growing a line a request.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A warning about one thing is said at most this often.
pub const SAY_AGAIN_AFTER: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Sparing {
    /// By what the warning is about: when it was last said, and how often met since.
    said: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Sparing {
    /// Says `message` (a warning about `about`) unless it was said less than a minute ago.
    pub fn warn(&self, about: &str, message: impl Display) {
        let mut said = self.said.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match said.get_mut(about) {
            Some((last, since)) if now.duration_since(*last) < SAY_AGAIN_AFTER => *since += 1,
            Some((last, since)) => {
                let met = std::mem::take(since);
                *last = now;
                crate::messages::warn(format_args!(
                    "{message} (and {met} more times in the last {} s)",
                    SAY_AGAIN_AFTER.as_secs()
                ));
            }
            None => {
                said.insert(about.to_string(), (now, 0));
                crate::messages::warn(message);
            }
        }
    }
}
