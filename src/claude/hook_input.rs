//! The JSON Claude Code gives the StopFailure hook on stdin (claude-code-facts.md).

use serde::Deserialize;

use crate::failure::Failure;
use crate::reason::Reason;

#[derive(Debug, Clone, Deserialize)]
pub struct StopFailure {
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub hook_event_name: Option<String>,
    /// rate_limit, billing_error, authentication_failed, overloaded, ...
    pub error: String,
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

    /// What the reported error means for the key: Claude Code's own category decides, and it
    /// gives no reset time.
    pub fn failure(&self) -> Failure {
        match Reason::parse(&self.error) {
            Some(reason @ (Reason::RateLimit | Reason::BillingError)) => Failure::Spent {
                reason,
                until: None,
                detail: format!("Claude Code reported {reason}"),
                notable: true,
            },
            Some(reason @ Reason::AuthenticationFailed) => Failure::Revoked {
                reason,
                detail: "Claude Code reported authentication_failed".to_string(),
            },
            _ => Failure::NotTheKey,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_measured_input() {
        let input =
            br#"{"session_id": "abc", "transcript_path": "/t", "cwd": "/w", "prompt_id": "p",
            "effort": {"level": "medium"}, "hook_event_name": "StopFailure", "error": "rate_limit",
            "last_assistant_message": "API Error: Request rejected (429)"}"#;
        let parsed = StopFailure::parse(input).unwrap();
        assert_eq!(parsed.session_id.as_deref(), Some("abc"));
        assert!(matches!(
            parsed.failure(),
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
        assert_eq!(other.failure(), Failure::NotTheKey);
        let rejected = StopFailure::parse(br#"{"error": "authentication_failed"}"#).unwrap();
        assert!(matches!(rejected.failure(), Failure::Revoked { .. }));
    }
}
