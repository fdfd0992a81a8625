//! The JSON Claude Code gives the StopFailure hook on stdin (claude-code-facts.md).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct StopFailure {
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub hook_event_name: Option<String>,
    /// rate_limit, billing_error, authentication_failed, overloaded, ...
    pub error: String,
}

/// What a failure means for the key that was in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Out of budget for now: cool down.
    Exhausted,
    /// Rejected (revoked, mistyped): set aside until the user acts.
    Rejected,
    /// Not about the key (overloaded, server error, ...): leave it alone.
    NotTheKey,
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

    pub fn verdict(&self) -> Verdict {
        match self.error.as_str() {
            "rate_limit" | "billing_error" => Verdict::Exhausted,
            "authentication_failed" => Verdict::Rejected,
            _ => Verdict::NotTheKey,
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
        assert_eq!(parsed.verdict(), Verdict::Exhausted);
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
        assert_eq!(other.verdict(), Verdict::NotTheKey);
        let rejected = StopFailure::parse(br#"{"error": "authentication_failed"}"#).unwrap();
        assert_eq!(rejected.verdict(), Verdict::Rejected);
    }
}
