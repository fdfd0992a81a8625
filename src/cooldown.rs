//! Cooldown arithmetic: how long a mark lasts and how it combines with one already running.
//! Pure functions of their inputs and the clock passed in.

use jiff::{SignedDuration, Timestamp};

use crate::reason::Cause;
use crate::state::Cooldown;

/// However often a key runs out, an automatic cooldown grows to at most this (or the key's own
/// base length, when that is longer).
pub const ESCALATION_CAP: SignedDuration = SignedDuration::from_hours(24);

/// How long a requested mark lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// The user said exactly how long (`--for`) or until when (`--until`): taken as given.
    Explicit(Timestamp),
    /// A default length (key, reason or global), which grows when the key keeps running out.
    Default(SignedDuration),
    /// Set aside until the user resets or replaces the key.
    Indefinite,
}

/// The cooldown a key gets when marked at `now`.
///
/// - A running cooldown is never shortened: the later end wins, and a key set aside stays so.
/// - A default-length mark soon after the previous cooldown ended (within that cooldown's own
///   length) doubles the previous length, up to [`ESCALATION_CAP`]: a budget that resets daily
///   then costs one failed turn a day, not one an hour.
pub fn next_cooldown(
    previous: Option<&Cooldown>,
    length: Length,
    reason: &Cause,
    now: Timestamp,
) -> Cooldown {
    let running = previous.filter(|c| c.until.is_none_or(|until| until > now));
    let requested_until = match length {
        Length::Explicit(until) => Some(until),
        Length::Indefinite => None,
        Length::Default(base) => Some(add(now, escalated(previous, base, now))),
    };
    match running {
        Some(current) => {
            let until = match (current.until, requested_until) {
                (None, _) | (_, None) => None,
                (Some(a), Some(b)) => Some(a.max(b)),
            };
            let extended = until != current.until;
            Cooldown {
                until,
                since: current.since,
                reason: if extended {
                    reason.clone()
                } else {
                    current.reason.clone()
                },
            }
        }
        None => Cooldown {
            until: requested_until,
            since: now,
            reason: reason.clone(),
        },
    }
}

fn escalated(previous: Option<&Cooldown>, base: SignedDuration, now: Timestamp) -> SignedDuration {
    let Some(Cooldown {
        until: Some(ended),
        since,
        ..
    }) = previous
    else {
        return base;
    };
    let last_length = ended.duration_since(*since);
    let back_for = now.duration_since(*ended);
    if back_for >= SignedDuration::ZERO && back_for < last_length {
        let cap = ESCALATION_CAP.max(base);
        base.max(last_length.saturating_mul(2)).min(cap)
    } else {
        base
    }
}

fn add(now: Timestamp, length: SignedDuration) -> Timestamp {
    now.checked_add(length).unwrap_or(Timestamp::MAX)
}

/// The cooldown as the clock now allows. One that claims to start after `now` was set while the
/// clock ran ahead; it is taken to start now, so it never lasts longer than its own length from
/// now (a cooldown set a year ahead would otherwise keep its key out for a year).
pub fn as_of_clock(cooldown: &Cooldown, now: Timestamp) -> Cooldown {
    if cooldown.since <= now {
        return cooldown.clone();
    }
    Cooldown {
        until: until_as_of_clock(cooldown, now),
        since: now,
        reason: cooldown.reason.clone(),
    }
}

/// The end of [`as_of_clock`]'s cooldown, without copying it.
pub fn until_as_of_clock(cooldown: &Cooldown, now: Timestamp) -> Option<Timestamp> {
    let until = cooldown.until?;
    if cooldown.since <= now {
        return Some(until);
    }
    Some(add(now, until.duration_since(cooldown.since)))
}

/// How far a cooldown may start after `now` before the clock counts as set back. Commands that
/// race within a second or wait briefly for the lock see a start a little ahead of their `now`:
/// that is not worth rewriting the state (reads still clamp it, see [`until_as_of_clock`]).
const CLOCK_SLACK: SignedDuration = SignedDuration::from_mins(1);

/// True when the clock was set back well past the start of `cooldown`: the state should be
/// written again as [`as_of_clock`] has it, so the clamp stops moving with the clock.
pub fn clock_was_set_back(cooldown: &Cooldown, now: Timestamp) -> bool {
    cooldown.since.duration_since(now) > CLOCK_SLACK
}

/// True while the cooldown keeps the key out of rotation.
pub fn is_cooling(cooldown: &Cooldown, now: Timestamp) -> bool {
    cooldown.until.is_none_or(|until| until > now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::Reason;
    use proptest::prelude::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }
    const H: i64 = 3_600;
    const R: Cause = Cause::Proxy(Reason::RateLimit);

    #[test]
    fn a_fresh_mark_lasts_the_default() {
        let c = next_cooldown(
            None,
            Length::Default(SignedDuration::from_hours(1)),
            &Cause::Manual,
            t(0),
        );
        assert_eq!(c.until, Some(t(H)));
        assert_eq!(c.since, t(0));
    }

    #[test]
    fn never_shortens_a_running_cooldown() {
        let first = next_cooldown(None, Length::Explicit(t(5 * H)), &Cause::Manual, t(0));
        let second = next_cooldown(Some(&first), Length::Explicit(t(H)), &Cause::Manual, t(10));
        assert_eq!(second.until, Some(t(5 * H)));
        let longer = next_cooldown(
            Some(&first),
            Length::Explicit(t(6 * H)),
            &Cause::Hook(Reason::RateLimit),
            t(10),
        );
        assert_eq!(longer.until, Some(t(6 * H)));
        assert_eq!(longer.reason, Cause::Hook(Reason::RateLimit));
    }

    #[test]
    fn set_aside_stays_set_aside() {
        let aside = next_cooldown(
            None,
            Length::Indefinite,
            &Cause::Hook(Reason::AuthenticationFailed),
            t(0),
        );
        let again = next_cooldown(
            Some(&aside),
            Length::Default(SignedDuration::from_hours(1)),
            &Cause::Manual,
            t(10),
        );
        assert_eq!(again.until, None);
    }

    #[test]
    fn running_out_again_soon_doubles_up_to_the_cap() {
        let base = SignedDuration::from_hours(1);
        let first = next_cooldown(None, Length::Default(base), &R, t(0));
        // Back at 1h, out again 10 minutes later: 2h.
        let second = next_cooldown(Some(&first), Length::Default(base), &R, t(H + 600));
        assert_eq!(second.until, Some(t(H + 600 + 2 * H)));
        let mut current = second;
        let mut now = t(H + 600);
        for _ in 0..10 {
            now = current
                .until
                .unwrap()
                .checked_add(SignedDuration::from_secs(60))
                .unwrap();
            current = next_cooldown(Some(&current), Length::Default(base), &R, now);
        }
        assert_eq!(current.until.unwrap().duration_since(now), ESCALATION_CAP);
    }

    #[test]
    fn running_out_long_after_starts_over() {
        let base = SignedDuration::from_hours(1);
        let first = next_cooldown(None, Length::Default(base), &R, t(0));
        let later = next_cooldown(Some(&first), Length::Default(base), &R, t(3 * H));
        assert_eq!(later.until, Some(t(4 * H)));
    }

    #[test]
    fn a_cooldown_set_while_the_clock_ran_ahead_lasts_at_most_its_length_from_now() {
        let year = 366 * 24 * H;
        // Marked for 1h while the clock said a year later than it does now.
        let ahead = next_cooldown(
            None,
            Length::Default(SignedDuration::from_hours(1)),
            &Cause::Manual,
            t(year),
        );
        let fixed = as_of_clock(&ahead, t(0));
        assert_eq!(fixed.since, t(0));
        assert_eq!(fixed.until, Some(t(H)));
        assert!(clock_was_set_back(&ahead, t(0)));
        // A cooldown that started in the past is left alone.
        assert_eq!(as_of_clock(&fixed, t(10)), fixed);
        assert!(!clock_was_set_back(&fixed, t(10)));
        // A start a second ahead is a race between commands, not a clock set back.
        assert!(!clock_was_set_back(&fixed, t(-1)));
        let aside = next_cooldown(None, Length::Indefinite, &R, t(year));
        assert_eq!(as_of_clock(&aside, t(0)).until, None);
    }

    proptest! {
        #[test]
        fn a_mark_never_ends_a_cooldown_earlier(
            first_len in 1i64..100_000,
            second_len in 1i64..100_000,
            gap in 0i64..200_000,
            explicit in any::<bool>(),
        ) {
            let first = next_cooldown(None, Length::Explicit(t(first_len)), &Cause::Manual, t(0));
            let length = if explicit {
                Length::Explicit(t(gap + second_len))
            } else {
                Length::Default(SignedDuration::from_secs(second_len))
            };
            let second = next_cooldown(Some(&first), length, &R, t(gap));
            let second_until = second.until.unwrap();
            prop_assert!(second_until > t(gap));
            if gap < first_len {
                prop_assert!(second_until >= t(first_len));
            }
        }
    }
}
