//! Why a key was marked and who marked it, as typed values. On disk (the state file's cooldowns,
//! the event log's `reason` column) they are the short strings keyswitch has always written:
//! `manual`, `hook:rate_limit`, `proxy:billing_error`, `cooldown-ended`, `failover`.

use std::fmt;

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};

/// A failure's category, in the words of the `error` field Claude Code gives its StopFailure
/// hook (docs/facts/claude-code-facts.md); the proxy files what it sees under the same words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    RateLimit,
    Overloaded,
    AuthenticationFailed,
    BillingError,
    InvalidRequest,
    ModelNotFound,
    ServerError,
    Unknown,
}

impl Reason {
    pub const ALL: [Reason; 8] = [
        Self::RateLimit,
        Self::Overloaded,
        Self::AuthenticationFailed,
        Self::BillingError,
        Self::InvalidRequest,
        Self::ModelNotFound,
        Self::ServerError,
        Self::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimit => "rate_limit",
            Self::Overloaded => "overloaded",
            Self::AuthenticationFailed => "authentication_failed",
            Self::BillingError => "billing_error",
            Self::InvalidRequest => "invalid_request",
            Self::ModelNotFound => "model_not_found",
            Self::ServerError => "server_error",
            Self::Unknown => "unknown",
        }
    }

    /// The reason a word names; `None` for a word keyswitch does not know.
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == word)
    }

    /// The built-in cooldown for the reason, used when neither the key nor `reason_cooldowns` in
    /// the config says otherwise. A rate limit from a budget proxy usually lifts within the hour;
    /// a billing error ("credit balance too low") needs someone to pay, so retrying every hour
    /// would only cost failed turns.
    pub fn builtin_cooldown(self) -> Option<SignedDuration> {
        match self {
            Self::RateLimit => Some(SignedDuration::from_hours(1)),
            Self::BillingError => Some(SignedDuration::from_hours(12)),
            _ => None,
        }
    }

    /// Every reason's word, for messages that list them.
    pub fn words() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who marked a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The user, with a command.
    Manual,
    /// Claude Code's StopFailure hook, in helper mode.
    Hook,
    /// The proxy, on the upstream's answer.
    Proxy,
}

/// The `reason` of a cooldown or an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Cause {
    /// The user, with a command (`manual`).
    Manual,
    /// A failure the StopFailure hook reported (`hook:rate_limit`).
    Hook(Reason),
    /// A failure the proxy saw (`proxy:rate_limit`).
    Proxy(Reason),
    /// The key came back because its cooldown ended (`cooldown-ended`).
    CooldownEnded,
    /// `get` handed out a key after the active one (`failover`).
    Failover,
    /// A word this keyswitch does not write, read from a file another version wrote: kept as it
    /// was, so reading and writing the file again loses nothing.
    Other(String),
}

impl Cause {
    /// The cause of a mark by `source` for `reason`; a manual mark has no failure behind it.
    pub fn mark(source: Source, reason: Reason) -> Self {
        match source {
            Source::Manual => Self::Manual,
            Source::Hook => Self::Hook(reason),
            Source::Proxy => Self::Proxy(reason),
        }
    }

    /// The failure behind a mark, if it was one.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Self::Hook(reason) | Self::Proxy(reason) => Some(*reason),
            _ => None,
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Manual => f.write_str("manual"),
            Self::Hook(reason) => write!(f, "hook:{reason}"),
            Self::Proxy(reason) => write!(f, "proxy:{reason}"),
            Self::CooldownEnded => f.write_str("cooldown-ended"),
            Self::Failover => f.write_str("failover"),
            Self::Other(text) => f.write_str(text),
        }
    }
}

impl From<String> for Cause {
    fn from(text: String) -> Self {
        let failure = |prefix: &str| text.strip_prefix(prefix).and_then(Reason::parse);
        match text.as_str() {
            "manual" => Self::Manual,
            "cooldown-ended" => Self::CooldownEnded,
            "failover" => Self::Failover,
            _ => {
                if let Some(reason) = failure("hook:") {
                    Self::Hook(reason)
                } else if let Some(reason) = failure("proxy:") {
                    Self::Proxy(reason)
                } else {
                    Self::Other(text)
                }
            }
        }
    }
}

impl From<Cause> for String {
    fn from(cause: Cause) -> Self {
        match cause {
            Cause::Other(text) => text,
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_reason_reads_back_from_its_word() {
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{reason}\""));
        }
        assert_eq!(Reason::parse("ratelimit"), None);
    }

    #[test]
    fn causes_are_written_as_before() {
        for (cause, text) in [
            (Cause::Manual, "manual"),
            (Cause::Hook(Reason::RateLimit), "hook:rate_limit"),
            (Cause::Proxy(Reason::BillingError), "proxy:billing_error"),
            (Cause::CooldownEnded, "cooldown-ended"),
            (Cause::Failover, "failover"),
            (Cause::Other("hook:frobnicated".into()), "hook:frobnicated"),
        ] {
            assert_eq!(String::from(cause.clone()), text);
            assert_eq!(Cause::from(text.to_string()), cause);
        }
    }

    proptest! {
        #[test]
        fn any_text_survives_a_round_trip(text in ".{0,40}") {
            prop_assert_eq!(String::from(Cause::from(text.clone())), text);
        }
    }
}
