//! The failover decision: what an upstream answer means for the key that got it, and what the
//! proxy answers when no key can. Pure functions of status, headers, body and the clock.

use jiff::{SignedDuration, Timestamp};

use crate::failure::Failure;
use crate::reason::Reason;
use crate::select::Availability;

/// An upstream reset time further away than this is taken as a month: no budget period is
/// longer, and an absurd header must not set a key aside for years.
const LONGEST_RESET: SignedDuration = SignedDuration::from_hours(31 * 24);
/// Rate limits that lift within this are per-minute limits, not a spent budget.
pub const SHORT_LIMIT: SignedDuration = SignedDuration::from_secs(60);
/// 400 bodies are read up to this to recognise "credit balance is too low"; such errors are small.
pub const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// What an upstream answer means for the key that got it: the verdict the hook shares.
pub use crate::failure::Failure as Mark;

/// What to do with an upstream response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the client untouched.
    PassThrough,
    /// A 400: read the (small) body, then ask [`billing_verdict`].
    ReadBody,
    /// This key cannot answer now: mark it and send the same request to the next key.
    Failover(Failure),
    /// The upstream refused the key (401/403) — or the request itself, which every key would
    /// meet. Try the next key; the mark holds only if another key then succeeds, so one
    /// request the upstream forbids never sets the whole pool aside.
    Refused(Failure),
}

/// Judges a response by its status and headers.
pub fn judge(status: u16, header: &dyn Fn(&str) -> Option<String>, now: Timestamp) -> Verdict {
    match status {
        429 => Verdict::Failover(rate_limit_mark(header, now)),
        400 => Verdict::ReadBody,
        401 | 403 => Verdict::Refused(Failure::Revoked {
            reason: Reason::AuthenticationFailed,
            detail: format!("the upstream answered {status}: the key was rejected"),
        }),
        _ => Verdict::PassThrough,
    }
}

/// A 400 fails over only when it says the credit balance is too low (Anthropic's billing error).
pub fn billing_verdict(body: &[u8]) -> Verdict {
    if is_credit_balance_error(body) {
        Verdict::Failover(Failure::Spent {
            reason: Reason::BillingError,
            until: None,
            detail: "the upstream answered 400: credit balance too low".to_string(),
            notable: true,
        })
    } else {
        Verdict::PassThrough
    }
}

/// How Anthropic words it ("Your credit balance is too low to access the Anthropic API…"),
/// and the shorter form a gateway may use. The phrase, not the two words anywhere: a 400 that
/// echoes a prompt's text must not send every key into the long billing cooldown.
const CREDIT_BALANCE_PHRASES: [&str; 2] = ["credit balance is too low", "credit balance too low"];

fn is_credit_balance_error(body: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let error = |field: &str| {
        value
            .pointer(&format!("/error/{field}"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_ascii_lowercase)
    };
    error("type").as_deref() == Some("billing_error")
        || error("message").is_some_and(|m| CREDIT_BALANCE_PHRASES.iter().any(|p| m.contains(p)))
}

fn rate_limit_mark(header: &dyn Fn(&str) -> Option<String>, now: Timestamp) -> Failure {
    let reason = Reason::RateLimit;
    match reset_time(header, now) {
        Some(until) => {
            let wait = until.duration_since(now);
            let short = wait <= SHORT_LIMIT;
            Failure::Spent {
                reason,
                until: Some(until),
                detail: if short {
                    format!(
                        "429, a short limit: back in {}s as the upstream said",
                        wait.as_secs()
                    )
                } else {
                    format!("429, spent until {until} as the upstream said")
                },
                notable: !short,
            }
        }
        None => Failure::Spent {
            reason,
            until: None,
            detail: "429 without a reset time: the configured rate_limit cooldown".to_string(),
            notable: true,
        },
    }
}

/// When the upstream says the key may be used again: `retry-after` (seconds or an HTTP date)
/// first; else the `anthropic-ratelimit-*-reset` of a limit whose remaining count is 0, else the
/// latest of them. Never before one second from now, never past [`LONGEST_RESET`].
pub fn reset_time(header: &dyn Fn(&str) -> Option<String>, now: Timestamp) -> Option<Timestamp> {
    let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v, now));
    let at = retry_after.or_else(|| {
        let limits = ["requests", "tokens", "input-tokens", "output-tokens"];
        let resets: Vec<(bool, Timestamp)> = limits
            .iter()
            .filter_map(|l| {
                let reset = header(&format!("anthropic-ratelimit-{l}-reset"))?;
                let reset: Timestamp = reset.trim().parse().ok()?;
                let spent = header(&format!("anthropic-ratelimit-{l}-remaining"))
                    .is_some_and(|r| r.trim() == "0");
                Some((spent, reset))
            })
            .collect();
        let spent = resets.iter().filter(|(s, _)| *s).map(|(_, t)| *t).max();
        spent.or_else(|| resets.iter().map(|(_, t)| *t).max())
    })?;
    let earliest = now.checked_add(SignedDuration::from_secs(1)).ok()?;
    let latest = now.checked_add(LONGEST_RESET).ok()?;
    Some(at.clamp(earliest, latest))
}

fn parse_retry_after(value: &str, now: Timestamp) -> Option<Timestamp> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        if !seconds.is_finite() || seconds < 0.0 {
            return None;
        }
        let seconds = seconds.ceil().min(LONGEST_RESET.as_secs() as f64) as i64;
        return now.checked_add(SignedDuration::from_secs(seconds)).ok();
    }
    // An HTTP date: `Wed, 21 Oct 2026 07:28:00 GMT`.
    jiff::fmt::rfc2822::parse(value)
        .ok()
        .map(|zoned| zoned.timestamp())
}

/// The proxy's own answer when no key can take the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// Seconds until the first key returns; `None` when none will by itself.
    pub retry_after: Option<u64>,
    /// False when waiting is pointless for Claude Code: more than a minute, or never.
    pub should_retry: bool,
    pub message: String,
}

/// Words for when a key returns, e.g. `14:05 (in 42m)`: supplied by the caller, which knows
/// the local time zone.
pub type DescribeTime<'a> = &'a dyn Fn(Timestamp) -> String;

/// What to answer when every key is cooling down or set aside.
pub fn unavailable(
    keys: &[(&str, Availability)],
    now: Timestamp,
    describe: DescribeTime<'_>,
) -> Unavailable {
    // On a tie the key earlier in the order returns first, as `get` would hand it out.
    let first_back = keys
        .iter()
        .enumerate()
        .filter_map(|(i, (name, a))| match a {
            Availability::CoolingUntil(until) => Some((*until, i, *name)),
            _ => None,
        })
        .min();
    match first_back {
        Some((until, _, name)) => {
            let seconds = until.duration_since(now).as_secs().max(1) as u64;
            Unavailable {
                retry_after: Some(seconds),
                should_retry: seconds <= SHORT_LIMIT.as_secs() as u64,
                message: format!(
                    "keyswitch: every key is cooling down; {name} returns first, at {}. Add a key with `keyswitch add NAME`, or `keyswitch reset {name}` if its budget is back",
                    describe(until)
                ),
            }
        }
        None if keys.is_empty() => Unavailable {
            retry_after: None,
            should_retry: false,
            message: format!("keyswitch: {}", crate::messages::NO_KEYS_YET),
        },
        None => Unavailable {
            retry_after: None,
            should_retry: false,
            message: format!("keyswitch: {}", crate::messages::ALL_SET_ASIDE),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    #[test]
    fn a_short_retry_after_cools_for_exactly_that_long() {
        let verdict = judge(429, &headers(&[("retry-after", "17")]), t(0));
        let Verdict::Failover(failure) = verdict else {
            panic!("{verdict:?}")
        };
        let Failure::Spent { reason, until, .. } = &failure else {
            panic!("{failure:?}")
        };
        assert_eq!(*until, Some(t(17)));
        assert_eq!(*reason, Reason::RateLimit);
        assert!(!failure.notable());
    }

    #[test]
    fn a_spent_budget_cools_until_the_reset_the_upstream_gave() {
        let reset = t(5 * 3600).to_string();
        let soon = t(30).to_string();
        let h = headers(&[
            ("anthropic-ratelimit-tokens-remaining", "0"),
            ("anthropic-ratelimit-tokens-reset", &reset),
            ("anthropic-ratelimit-requests-remaining", "40"),
            ("anthropic-ratelimit-requests-reset", &soon),
        ]);
        let Verdict::Failover(failure) = judge(429, &h, t(0)) else {
            panic!()
        };
        assert!(matches!(failure, Failure::Spent { until: Some(u), .. } if u == t(5 * 3600)));
        assert!(failure.notable());
    }

    #[test]
    fn a_429_without_a_reset_uses_the_configured_rules() {
        let Verdict::Failover(failure) = judge(429, &headers(&[]), t(0)) else {
            panic!()
        };
        assert!(matches!(
            failure,
            Failure::Spent {
                reason: Reason::RateLimit,
                until: None,
                ..
            }
        ));
    }

    #[test]
    fn retry_after_as_an_http_date() {
        let h = headers(&[("retry-after", "Fri, 15 Jan 2027 08:00:00 GMT")]);
        let now: Timestamp = "2027-01-15T07:00:00Z".parse().unwrap();
        assert_eq!(
            reset_time(&h, now),
            Some("2027-01-15T08:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn absurd_or_past_resets_are_clamped() {
        let far = reset_time(&headers(&[("retry-after", "1e30")]), t(0)).unwrap();
        assert_eq!(far, t(0).checked_add(LONGEST_RESET).unwrap());
        let past = reset_time(&headers(&[("retry-after", "0")]), t(0)).unwrap();
        assert_eq!(past, t(1));
        assert_eq!(reset_time(&headers(&[("retry-after", "-5")]), t(0)), None);
        assert_eq!(reset_time(&headers(&[("retry-after", "soon")]), t(0)), None);
    }

    #[test]
    fn only_a_credit_balance_400_fails_over() {
        assert_eq!(judge(400, &headers(&[]), t(0)), Verdict::ReadBody);
        let billing = br#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API."}}"#;
        assert!(matches!(
            billing_verdict(billing),
            Verdict::Failover(Failure::Spent {
                reason: Reason::BillingError,
                until: None,
                ..
            })
        ));
        let wrapped =
            br#"{"error":{"type":"billing_error","message":"Upstream: CREDIT BALANCE TOO LOW"}}"#;
        assert!(matches!(billing_verdict(wrapped), Verdict::Failover(_)));
        let typed = br#"{"error":{"type":"billing_error","message":"Add funds."}}"#;
        assert!(matches!(billing_verdict(typed), Verdict::Failover(_)));
        let other = br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"}}"#;
        assert_eq!(billing_verdict(other), Verdict::PassThrough);
        // The words alone, as in a message that quotes the request, are not the billing error.
        let echo = br#"{"type":"error","error":{"type":"invalid_request_error","message":"messages.0: 'why is my credit balance low?' exceeds the limit"}}"#;
        assert_eq!(billing_verdict(echo), Verdict::PassThrough);
        assert_eq!(billing_verdict(b"not json"), Verdict::PassThrough);
    }

    #[test]
    fn rejected_keys_are_set_aside_and_other_errors_pass() {
        for status in [401, 403] {
            assert!(matches!(
                judge(status, &headers(&[]), t(0)),
                Verdict::Refused(Failure::Revoked { .. })
            ));
        }
        for status in [200, 404, 413, 500, 502, 529] {
            assert_eq!(judge(status, &headers(&[]), t(0)), Verdict::PassThrough);
        }
    }

    #[test]
    fn the_unavailable_answer_names_the_first_key_back() {
        let keys = [
            ("primary", Availability::CoolingUntil(t(3600))),
            ("fallback", Availability::CoolingUntil(t(30))),
            ("old", Availability::SetAside),
        ];
        let soon = unavailable(&keys, t(0), &|_| "soon".to_string());
        assert_eq!(soon.retry_after, Some(30));
        assert!(soon.should_retry);
        assert!(soon.message.contains("fallback returns first"));
        let later = unavailable(&keys[..1], t(0), &|_| "later".to_string());
        assert_eq!(later.retry_after, Some(3600));
        assert!(!later.should_retry);
        let tie = [
            ("primary", Availability::CoolingUntil(t(60))),
            ("fallback", Availability::CoolingUntil(t(60))),
        ];
        let tied = unavailable(&tie, t(0), &|_| String::new());
        assert!(
            tied.message.contains("primary returns first"),
            "{}",
            tied.message
        );
        let none = unavailable(&keys[2..], t(0), &|_| unreachable!());
        assert_eq!(none.retry_after, None);
        assert!(none.message.contains("--replace"));
    }
}
