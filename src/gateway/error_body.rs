//! The fields of an error answer that say what went wrong, whichever shape the gateway uses:
//! Anthropic's `{"type":"error","error":{"type","message","details":{"error_code"}}}`, the
//! OpenAI shape LiteLLM uses on every route `{"error":{"message","type","code"}}`, OpenRouter's
//! `{"error":{"code":402,"message","metadata":{"limit_source"}}}`, Kong's `{"message"}`, or a body
//! that is not JSON at all (its text is the message).

use serde_json::Value;

/// Past this many bytes a message is not looked at further: the words that matter come first.
const MAX_MESSAGE: usize = 4096;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// `error.type`: `budget_exceeded`, `billing_error`, `rate_limit_error`, …
    pub kind: Option<String>,
    /// `error.code`, as text (LiteLLM sends `"422"`, OpenRouter `402`).
    pub code: Option<String>,
    /// `error.message` (or a top-level `message`, or the body's text).
    pub message: Option<String>,
    /// Anthropic's `error.details.error_code`, e.g. `enforced_spend_limit_reached`.
    pub error_code: Option<String>,
    /// OpenRouter's `error.metadata.limit_source`.
    pub limit_source: Option<String>,
    /// A `reset_at` in the body (LiteLLM puts one in some answers).
    pub reset_at: Option<String>,
}

impl ErrorFields {
    /// Reads the fields of an error body; never fails (an unreadable body has only a message).
    pub fn parse(body: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => Self::from_json(&value),
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                Self {
                    message: (!text.is_empty()).then(|| bounded(text)),
                    ..Self::default()
                }
            }
        }
    }

    /// The fields of an error the way Claude Code words it for the StopFailure hook: only a
    /// message (`API Error: 422 LiteLLM Virtual Key: …`).
    pub fn from_message(message: &str) -> Self {
        Self {
            message: Some(bounded(message)),
            ..Self::default()
        }
    }

    fn from_json(value: &Value) -> Self {
        let error = value.get("error").unwrap_or(value);
        let text = |v: Option<&Value>| -> Option<String> {
            match v? {
                Value::String(s) => Some(bounded(s)),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let message = text(error.get("message"))
            .or_else(|| text(value.get("message")))
            // An `error` that is itself a string: `{"error": "Budget exceeded"}`.
            .or_else(|| text(value.get("error")))
            .or_else(|| text(value.get("detail")));
        Self {
            kind: text(error.get("type")),
            code: text(error.get("code")),
            message,
            error_code: text(error.pointer("/details/error_code")),
            limit_source: text(error.pointer("/metadata/limit_source")),
            reset_at: text(error.get("reset_at")).or_else(|| text(value.get("reset_at"))),
        }
    }

    /// The message in lower case, for matching words; empty when there is none.
    pub fn message_lower(&self) -> String {
        self.message
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase()
    }

    /// Whether `kind` or `code` is `word` (without regard to case).
    pub fn is(&self, word: &str) -> bool {
        [&self.kind, &self.code]
            .into_iter()
            .flatten()
            .any(|v| v.eq_ignore_ascii_case(word))
    }
}

fn bounded(text: &str) -> String {
    let mut end = text.len().min(MAX_MESSAGE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_shape() {
        let litellm = ErrorFields::parse(
            br#"{"error":{"message":"Budget has been exceeded!","type":"budget_exceeded","param":null,"code":"422"}}"#,
        );
        assert!(litellm.is("budget_exceeded") && litellm.is("422"));
        assert_eq!(
            litellm.message.as_deref(),
            Some("Budget has been exceeded!")
        );
        let anthropic = ErrorFields::parse(
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"m","details":{"error_code":"enforced_spend_limit_reached"}}}"#,
        );
        assert_eq!(
            anthropic.error_code.as_deref(),
            Some("enforced_spend_limit_reached")
        );
        let openrouter = ErrorFields::parse(
            br#"{"error":{"code":402,"message":"m","metadata":{"limit_source":"openrouter_credits"}}}"#,
        );
        assert_eq!(openrouter.code.as_deref(), Some("402"));
        assert_eq!(
            openrouter.limit_source.as_deref(),
            Some("openrouter_credits")
        );
        let kong = ErrorFields::parse(br#"{"message":"AI token rate limit exceeded"}"#);
        assert_eq!(
            kong.message.as_deref(),
            Some("AI token rate limit exceeded")
        );
        let text = ErrorFields::parse(b"  Budget exhausted\n");
        assert_eq!(text.message.as_deref(), Some("Budget exhausted"));
        assert_eq!(ErrorFields::parse(b""), ErrorFields::default());
        assert_eq!(ErrorFields::parse(b"[1,2]"), ErrorFields::default());
    }

    #[test]
    fn a_huge_message_is_cut_on_a_character_boundary() {
        let body = format!(r#"{{"error":{{"message":"{}"}}}}"#, "é".repeat(10_000));
        let fields = ErrorFields::parse(body.as_bytes());
        assert!(fields.message.unwrap().len() <= MAX_MESSAGE);
    }
}
