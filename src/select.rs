//! The rule "which key now": pure, no I/O, the clock passed in.
//!
//! Keys whose cooldown has ended come first, in the configured order; then, for when every key
//! is cooling down, the cooling keys by when they return. Keys set aside (rejected by the
//! upstream) are never handed out. The first candidate is the *active* key.

use jiff::Timestamp;

use crate::cooldown::until_as_of_clock;
use crate::state::Cooldown;

/// Where one key stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Ready,
    CoolingUntil(Timestamp),
    /// Out until the user resets or replaces it.
    SetAside,
}

impl Availability {
    pub fn of(cooldown: Option<&Cooldown>, now: Timestamp) -> Self {
        let Some(cooldown) = cooldown else {
            return Self::Ready;
        };
        match until_as_of_clock(cooldown, now) {
            None => Self::SetAside,
            Some(until) if until > now => Self::CoolingUntil(until),
            Some(_) => Self::Ready,
        }
    }
}

/// Key indexes in the order `get` should try them; empty when no key may be handed out.
pub fn candidates(keys: &[Availability]) -> Vec<usize> {
    let ready = keys
        .iter()
        .enumerate()
        .filter(|(_, a)| **a == Availability::Ready)
        .map(|(i, _)| i);
    let mut cooling: Vec<(Timestamp, usize)> = keys
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match a {
            Availability::CoolingUntil(until) => Some((*until, i)),
            _ => None,
        })
        .collect();
    // Stable on ties: the earlier key in the order wins.
    cooling.sort();
    ready.chain(cooling.into_iter().map(|(_, i)| i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Availability::*;
    use proptest::prelude::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn primary_first_when_ready() {
        assert_eq!(candidates(&[Ready, Ready]), vec![0, 1]);
    }

    #[test]
    fn skips_cooling_keys() {
        assert_eq!(
            candidates(&[CoolingUntil(t(10)), Ready, Ready]),
            vec![1, 2, 0]
        );
    }

    #[test]
    fn all_cooling_gives_the_one_back_first() {
        assert_eq!(
            candidates(&[
                CoolingUntil(t(30)),
                CoolingUntil(t(10)),
                CoolingUntil(t(20))
            ]),
            vec![1, 2, 0]
        );
    }

    #[test]
    fn set_aside_keys_are_never_candidates() {
        assert_eq!(candidates(&[SetAside, CoolingUntil(t(5))]), vec![1]);
        assert!(candidates(&[SetAside]).is_empty());
        assert!(candidates(&[]).is_empty());
    }

    #[test]
    fn an_ended_cooldown_is_ready() {
        let ended = Cooldown {
            until: Some(t(0)),
            since: t(-10),
            reason: crate::reason::Cause::Manual,
        };
        assert_eq!(Availability::of(Some(&ended), t(0)), Ready);
        assert_eq!(Availability::of(Some(&ended), t(-1)), CoolingUntil(t(0)));
    }

    #[test]
    fn a_cooldown_from_a_clock_that_ran_ahead_ends_within_its_length() {
        let ahead = Cooldown {
            until: Some(t(366 * 86_400 + 3_600)),
            since: t(366 * 86_400),
            reason: crate::reason::Cause::Manual,
        };
        assert_eq!(Availability::of(Some(&ahead), t(0)), CoolingUntil(t(3_600)));
    }

    fn availability() -> impl Strategy<Value = Availability> {
        prop_oneof![
            Just(Ready),
            Just(SetAside),
            (0i64..1000).prop_map(|s| CoolingUntil(t(s))),
        ]
    }

    proptest! {
        #[test]
        fn the_active_key_is_the_first_ready_one_else_the_earliest_back(keys in prop::collection::vec(availability(), 0..8)) {
            let order = candidates(&keys);
            let first_ready = keys.iter().position(|a| *a == Ready);
            match first_ready {
                Some(i) => prop_assert_eq!(order.first(), Some(&i)),
                None => {
                    let earliest = keys.iter().filter_map(|a| match a { CoolingUntil(u) => Some(*u), _ => None }).min();
                    match earliest {
                        Some(u) => prop_assert_eq!(keys[order[0]], CoolingUntil(u)),
                        None => prop_assert!(order.is_empty()),
                    }
                }
            }
            // Every key that is not set aside appears exactly once.
            let expected = keys.iter().filter(|a| **a != SetAside).count();
            prop_assert_eq!(order.len(), expected);
        }
    }
}
