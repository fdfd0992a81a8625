//! The failover decision: what the proxy does with an upstream answer, from what the gateway
//! classifier (`crate::gateway`) says it means for the key, and what the proxy answers when no
//! key can. Pure functions of status, headers, body and the clock.

use jiff::Timestamp;

use crate::failure::Failure;
use crate::gateway::{self, Answer, ErrorFields, Rule};
use crate::select::Availability;

pub use crate::gateway::{ERROR_BODY_LIMIT, SHORT_LIMIT};

/// What to do with an upstream response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the client untouched.
    PassThrough,
    /// This key cannot answer now: mark it and send the same request to the next key.
    Failover(Failure),
    /// The upstream refused the key (401/403) — or this request for this key (a model it may
    /// not use), which the next key may still answer. Try the next key; a rejected key's mark
    /// holds only if another key then succeeds, so one request the upstream forbids never sets
    /// the whole pool aside.
    Refused(Failure),
}

impl Verdict {
    fn of(failure: Failure) -> Self {
        match failure {
            Failure::Spent { .. } => Self::Failover(failure),
            Failure::Revoked { .. } | Failure::ThisRequestOnly { .. } => Self::Refused(failure),
            Failure::NotTheKey => Self::PassThrough,
        }
    }
}

/// Whether an answer with `status` is to be judged by its words too: its body (small, bounded
/// by [`ERROR_BODY_LIMIT`]) is read first. Never for a success.
pub fn must_read_body(status: u16, rules: &[Rule]) -> bool {
    status >= 400 && gateway::needs_body(status, rules)
}

/// Judges a response by its status, headers and `body` (empty when it was not read, or too
/// large to judge by its words). A success costs a comparison.
pub fn judge(
    status: u16,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    rules: &[Rule],
    now: Timestamp,
) -> Verdict {
    if status < 400 {
        return Verdict::PassThrough;
    }
    let fields = ErrorFields::parse(body);
    let text = String::from_utf8_lossy(body);
    let answer = Answer {
        status,
        header,
        fields: &fields,
        body: &text,
    };
    Verdict::of(gateway::classify(&answer, rules, now))
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
        // Keys that are neither cooling nor set aside were passed over for want of a usable
        // secret: the API never saw them, so "rejected by the API" would not be true.
        None if keys.iter().any(|(_, a)| matches!(a, Availability::Ready)) => Unavailable {
            retry_after: None,
            should_retry: false,
            message: "keyswitch: no key left has a usable secret in the keychain (proxy.log names each): store one with `keyswitch add NAME --replace`".to_string(),
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
    use crate::gateway::test_headers as headers;
    use crate::reason::Reason;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn judged(status: u16, pairs: &[(&str, &str)], body: &str) -> Verdict {
        let body = if must_read_body(status, &[]) {
            body
        } else {
            ""
        };
        judge(status, &headers(pairs), body.as_bytes(), &[], t(0))
    }

    #[test]
    fn a_short_retry_after_cools_for_exactly_that_long() {
        let verdict = judged(429, &[("retry-after", "17")], "");
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
        let h = [
            ("anthropic-ratelimit-tokens-remaining", "0"),
            ("anthropic-ratelimit-tokens-reset", reset.as_str()),
            ("anthropic-ratelimit-requests-remaining", "40"),
            ("anthropic-ratelimit-requests-reset", soon.as_str()),
        ];
        let Verdict::Failover(failure) = judged(429, &h, "") else {
            panic!()
        };
        assert!(matches!(failure, Failure::Spent { until: Some(u), .. } if u == t(5 * 3600)));
        assert!(failure.notable());
    }

    #[test]
    fn a_429_without_a_reset_uses_the_configured_rules() {
        let Verdict::Failover(failure) = judged(429, &[], "") else {
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
    fn only_a_credit_balance_400_fails_over() {
        assert!(must_read_body(400, &[]));
        let billing = r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API."}}"#;
        assert!(matches!(
            judged(400, &[], billing),
            Verdict::Failover(Failure::Spent {
                reason: Reason::BillingError,
                until: None,
                ..
            })
        ));
        let wrapped =
            r#"{"error":{"type":"billing_error","message":"Upstream: CREDIT BALANCE TOO LOW"}}"#;
        assert!(matches!(judged(400, &[], wrapped), Verdict::Failover(_)));
        let typed = r#"{"error":{"type":"billing_error","message":"Add funds."}}"#;
        assert!(matches!(judged(400, &[], typed), Verdict::Failover(_)));
        let other = r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"}}"#;
        assert_eq!(judged(400, &[], other), Verdict::PassThrough);
        // The words alone, as in a message that quotes the request, are not the billing error.
        let echo = r#"{"type":"error","error":{"type":"invalid_request_error","message":"messages.0: 'why is my credit balance low?' exceeds the limit"}}"#;
        assert_eq!(judged(400, &[], echo), Verdict::PassThrough);
        assert_eq!(judged(400, &[], "not json"), Verdict::PassThrough);
    }

    #[test]
    fn litellms_budget_answer_fails_over_on_every_status_it_has_used() {
        for status in [400, 422, 429] {
            let body = format!(
                r#"{{"error":{{"message":"Budget has been exceeded!","type":"budget_exceeded","param":null,"code":"{status}"}}}}"#
            );
            assert!(
                matches!(
                    judged(status, &[], &body),
                    Verdict::Failover(Failure::Spent {
                        reason: Reason::BillingError,
                        ..
                    })
                ),
                "{status}"
            );
        }
    }

    #[test]
    fn rejected_keys_are_set_aside_and_other_errors_pass() {
        assert!(matches!(
            judged(401, &[], ""),
            Verdict::Refused(Failure::Revoked { .. })
        ));
        assert!(matches!(
            judged(403, &[], r#"{"error":{"type":"forbidden","message":"no"}}"#),
            Verdict::Refused(Failure::Revoked { .. })
        ));
        assert!(matches!(
            judged(
                403,
                &[],
                r#"{"type":"error","error":{"type":"permission_error","message":"not this model"}}"#
            ),
            Verdict::Refused(Failure::ThisRequestOnly { .. })
        ));
        for status in [200, 404, 413, 500, 502, 529] {
            assert!(!must_read_body(status, &[]), "{status}");
            assert_eq!(judged(status, &[], ""), Verdict::PassThrough);
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
        assert!(none.message.contains("rejected by the API"));
        // Ready keys passed over (no usable secret) were never sent: not "rejected".
        let unused = [
            ("primary", Availability::Ready),
            ("old", Availability::SetAside),
        ];
        let unused = unavailable(&unused, t(0), &|_| unreachable!());
        assert!(!unused.message.contains("rejected"), "{}", unused.message);
        assert!(
            unused.message.contains("usable secret"),
            "{}",
            unused.message
        );
    }
}
