//! The JSON Claude Code gives the StopFailure hook on stdin (docs/facts/claude-code-facts.md).

use serde::Deserialize;

use jiff::Timestamp;

use crate::failure::Failure;
use crate::gateway::{Answer, ErrorFields, Rule, classify};
use crate::reason::Reason;

#[derive(Debug, Clone, Deserialize)]
pub struct StopFailure {
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub hook_event_name: Option<String>,
    /// rate_limit, billing_error, authentication_failed, overloaded, ...
    pub error: String,
    /// What Claude Code showed, e.g. `API Error: 422 LiteLLM Virtual Key: …, exceeded budget…`
    /// or `API Error: Request rejected (429) · <the upstream's message>`.
    #[serde(default)]
    pub last_assistant_message: Option<String>,
    /// The session's transcript (JSONL); its last entry says whether a subscription's usage
    /// limit was reached ([`crate::subscription::limit`]).
    #[serde(default)]
    pub transcript_path: Option<std::path::PathBuf>,
}

impl StopFailure {
    /// Parses the hook input; `Err` says in words what was wrong, for the event log.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let input: Self =
            serde_json::from_slice(bytes).map_err(|e| format!("unreadable hook input: {e}"))?;
        if let Some(event) = &input.hook_event_name
            && event != "StopFailure"
        {
            return Err(format!("hook input is for {event}, not StopFailure"));
        }
        Ok(input)
    }

    /// What the reported error means for the key. Where Claude Code itself calls it a rate
    /// limit, a billing error or a rejected key, its word decides, and the message may add when
    /// the key returns; so does its word for what is not the key's (an overload, a server
    /// error, a missing model). The words that say nothing (`unknown` for LiteLLM's 422 budget
    /// answer, `invalid_request` for a 400) are judged from the message, as the proxy judges an
    /// answer.
    pub fn failure(&self, rules: &[Rule], now: Timestamp) -> Failure {
        let message = self.last_assistant_message.as_deref().unwrap_or_default();
        let shown = ShownError::parse(message);
        let judged = shown
            .as_ref()
            .map(|shown| shown.judge(rules, now))
            .unwrap_or(Failure::NotTheKey);
        match Reason::parse(&self.error) {
            Some(reason @ (Reason::RateLimit | Reason::BillingError)) => {
                let until = match &judged {
                    Failure::Spent { until, .. } => *until,
                    _ => None,
                };
                Failure::Spent {
                    reason,
                    until,
                    detail: match (&judged, until) {
                        (Failure::Spent { detail, .. }, Some(_)) => {
                            format!("Claude Code reported {reason}: {detail}")
                        }
                        _ => format!("Claude Code reported {reason}"),
                    },
                    notable: true,
                }
            }
            // A 401 whose words are a spent budget (older LiteLLM's "Authentication Error,
            // ExceededTokenBudget: …") cools the key rather than setting it aside for good.
            Some(Reason::AuthenticationFailed)
                if matches!(
                    judged,
                    Failure::Spent {
                        reason: Reason::BillingError,
                        ..
                    }
                ) =>
            {
                judged
            }
            Some(reason @ Reason::AuthenticationFailed) => Failure::Revoked {
                reason,
                detail: "Claude Code reported authentication_failed".to_string(),
            },
            // Claude Code's word settles what it names for sure: an overload, a server error, a
            // missing model are not the key's.
            Some(Reason::Overloaded | Reason::ServerError | Reason::ModelNotFound) => {
                Failure::NotTheKey
            }
            _ => match judged {
                Failure::Spent {
                    reason,
                    until,
                    detail,
                    notable,
                } => Failure::Spent {
                    reason,
                    until,
                    detail: format!("Claude Code reported {}: {detail}", self.error),
                    notable,
                },
                // A 401 is authentication_failed to Claude Code; anything else it calls by
                // another word is not enough to set a key aside for good.
                _ => Failure::NotTheKey,
            },
        }
    }
}

/// An API error as Claude Code shows it: its status and the upstream's message (or body).
struct ShownError<'a> {
    status: u16,
    message: &'a str,
}

impl<'a> ShownError<'a> {
    /// `API Error: 422 <message>`, `API Error: Request rejected (429) · <message>`,
    /// `API Error: 400 {"type":"error",…}`.
    fn parse(text: &'a str) -> Option<Self> {
        let rest = text.trim().strip_prefix("API Error:")?.trim_start();
        if let Some(after) = rest.strip_prefix("Request rejected (") {
            let (status, tail) = after.split_once(')')?;
            let message = tail.trim_start().trim_start_matches('·').trim_start();
            return Some(Self {
                status: status.trim().parse().ok()?,
                message,
            });
        }
        let (status, message) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        Some(Self {
            status: status.parse().ok()?,
            message: message.trim(),
        })
    }

    fn judge(&self, rules: &[Rule], now: Timestamp) -> Failure {
        // A message that is the upstream's JSON body is read as one; words are words.
        let fields = if self.message.starts_with('{') {
            ErrorFields::parse(self.message.as_bytes())
        } else {
            ErrorFields::from_message(self.message)
        };
        let no_headers = |_: &str| None;
        classify(
            &Answer {
                status: self.status,
                header: &no_headers,
                fields: &fields,
                body: self.message,
            },
            rules,
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-12-01T19:00:00Z".parse().unwrap()
    }

    fn hook(error: &str, message: &str) -> Failure {
        let input = serde_json::json!({"error": error, "last_assistant_message": message});
        StopFailure::parse(input.to_string().as_bytes())
            .unwrap()
            .failure(&[], now())
    }

    #[test]
    fn litellms_budget_answer_is_spent_though_claude_code_calls_it_unknown() {
        let failure = hook(
            "unknown",
            "API Error: 422 LiteLLM Virtual Key: 9b1c, key_alias: budget, exceeded budget for model=claude-sonnet-4-5",
        );
        assert!(
            matches!(
                failure,
                Failure::Spent {
                    reason: Reason::BillingError,
                    until: None,
                    ..
                }
            ),
            "{failure:?}"
        );
        let json = hook(
            "invalid_request",
            r#"API Error: 400 {"error":{"message":"m","type":"budget_exceeded","param":null,"code":"400"}}"#,
        );
        assert!(matches!(json, Failure::Spent { .. }), "{json:?}");
    }

    #[test]
    fn a_rate_limit_cools_until_the_time_its_message_gives() {
        let failure = hook(
            "rate_limit",
            "API Error: Request rejected (429) · Rate limit exceeded for api_key: 3f2a. Limit resets at: 2026-12-01 19:01:52 UTC",
        );
        let until: Timestamp = "2026-12-01T19:01:52Z".parse().unwrap();
        assert!(
            matches!(failure, Failure::Spent { reason: Reason::RateLimit, until: Some(u), .. } if u == until),
            "{failure:?}"
        );
        // Without a time, Claude Code's word alone: the configured cooldown.
        let plain = hook(
            "rate_limit",
            "API Error: Request rejected (429) · Budget exhausted for this key",
        );
        assert!(
            matches!(
                plain,
                Failure::Spent {
                    reason: Reason::RateLimit,
                    until: None,
                    ..
                }
            ),
            "{plain:?}"
        );
    }

    #[test]
    fn other_failures_mark_nothing() {
        for (error, message) in [
            ("unknown", "API Error: 500 Internal server error"),
            (
                "invalid_request",
                "API Error: 400 prompt is too long: 210000 tokens > 200000 maximum",
            ),
            (
                "unknown",
                "API Error: 422 [{'type': 'missing', 'loc': ('body', 'messages')}]",
            ),
            (
                "unknown",
                "API Error: 403 Your API key does not have permission to use the specified resource.",
            ),
            ("unknown", "API Error: 401 invalid x-api-key"),
            (
                "overloaded",
                "API Error: Request rejected (529) · Overloaded",
            ),
            ("unknown", "Something else entirely"),
            ("unknown", "API Error: nonsense"),
            ("unknown", ""),
        ] {
            assert_eq!(
                hook(error, message),
                Failure::NotTheKey,
                "{error}: {message}"
            );
        }
    }

    #[test]
    fn litellms_other_budget_words_are_spent_whatever_claude_code_calls_them() {
        for (error, message) in [
            (
                "unknown",
                "API Error: 422 ExceededBudget: User=user-7 over budget. Spend=3.7e-05, Budget=0.0",
            ),
            (
                "authentication_failed",
                "API Error: 401 Authentication Error, ExceededTokenBudget: Current spend for token: 10.01; Max Budget for Token: 10.0",
            ),
        ] {
            let failure = hook(error, message);
            assert!(
                matches!(
                    failure,
                    Failure::Spent {
                        reason: Reason::BillingError,
                        ..
                    }
                ),
                "{error}: {failure:?}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Whatever Claude Code (or anything on the hook's stdin) puts in the message, judging
        /// it never panics, and a time in it never sets a key aside past a month.
        #[test]
        fn any_shown_error_is_judged_without_panic(
            error in proptest::sample::select(vec!["unknown", "rate_limit", "billing_error", "authentication_failed", "invalid_request"]),
            lead in proptest::sample::select(vec!["API Error: ", "API Error: Request rejected (", " API Error:", ""]),
            status in ".{0,6}",
            rest in ".{0,200}",
        ) {
            let message = format!("{lead}{status}{rest}");
            if let Failure::Spent { until: Some(until), .. } = hook(error, &message) {
                proptest::prop_assert!(until <= now().checked_add(crate::gateway::reset::LONGEST_RESET).unwrap());
                proptest::prop_assert!(until > now());
            }
        }
    }

    #[test]
    fn reads_the_measured_input() {
        let input =
            br#"{"session_id": "abc", "transcript_path": "/t", "cwd": "/w", "prompt_id": "p",
            "effort": {"level": "medium"}, "hook_event_name": "StopFailure", "error": "rate_limit",
            "last_assistant_message": "API Error: Request rejected (429)"}"#;
        let parsed = StopFailure::parse(input).unwrap();
        assert_eq!(parsed.session_id.as_deref(), Some("abc"));
        assert!(matches!(
            parsed.failure(&[], now()),
            Failure::Spent {
                reason: Reason::RateLimit,
                until: None,
                ..
            }
        ));
    }

    #[test]
    fn refuses_what_it_cannot_trust() {
        assert!(StopFailure::parse(b"").is_err());
        assert!(StopFailure::parse(b"{\"session_id\": 1}").is_err());
        assert!(StopFailure::parse(b"[]").is_err());
        assert!(
            StopFailure::parse(br#"{"hook_event_name": "Stop", "error": "rate_limit"}"#).is_err()
        );
        let other = StopFailure::parse(br#"{"error": "overloaded"}"#).unwrap();
        assert_eq!(other.failure(&[], now()), Failure::NotTheKey);
        let rejected = StopFailure::parse(br#"{"error": "authentication_failed"}"#).unwrap();
        assert!(matches!(
            rejected.failure(&[], now()),
            Failure::Revoked { .. }
        ));
    }
}
