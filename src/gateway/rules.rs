//! The user's own rules for gateways the built-in table does not know (config `gateway_rules`),
//! checked before it, first match wins. A rule names what to match — a status, words in the
//! body, an error type — and what the answer means:
//!
//! ```json
//! "gateway_rules": [
//!   {"status": 412, "meaning": "spent", "cooldown": "1d"},
//!   {"status": 400, "body_contains": "budget_exceeded", "meaning": "spent"},
//!   {"error_type": "quota_exceeded", "meaning": "rate_limited", "cooldown": "10m"}
//! ]
//! ```

use anyhow::{Result, anyhow, bail};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::Answer;
use crate::failure::Failure;
use crate::reason::Reason;
use crate::timespec::{format_duration, parse_duration};

/// What an answer a rule matches means for the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Meaning {
    /// A budget, credits or a quota ran out: cool down (`billing_error`).
    Spent,
    /// A rate limit: cool down (`rate_limit`).
    RateLimited,
    /// The key itself is refused: set aside until replaced or reset.
    Revoked,
    /// This request is forbidden to this key: try the next key for it, mark nothing.
    ThisRequestOnly,
    /// Not about the key: pass the answer on, mark nothing.
    NotTheKey,
}

impl Meaning {
    const WORDS: &'static str = "spent, rate_limited, revoked, this_request_only, not_the_key";
}

/// One rule, parsed: every field was checked on load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    status: Option<u16>,
    /// As the config spells it; matched without regard to case.
    body_contains: Option<String>,
    error_type: Option<String>,
    meaning: Meaning,
    cooldown: Option<SignedDuration>,
    /// The cooldown as the config spells it, to write it back so.
    cooldown_text: Option<String>,
}

/// A rule as the config file holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    pub meaning: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<String>,
}

impl TryFrom<RuleFile> for Rule {
    type Error = anyhow::Error;

    fn try_from(file: RuleFile) -> Result<Self> {
        let meaning: Meaning = serde_json::from_value(serde_json::Value::String(
            file.meaning.clone(),
        ))
        .map_err(|_| {
            anyhow!(
                "meaning {:?} is not one of {}",
                file.meaning,
                Meaning::WORDS
            )
        })?;
        if let Some(status) = file.status
            && !(400..=599).contains(&status)
        {
            bail!("status {status} is not an error status: give one from 400 to 599");
        }
        let nonempty = |field: &str, value: Option<String>| -> Result<Option<String>> {
            match value {
                Some(v) if v.trim().is_empty() => bail!("{field} is empty"),
                other => Ok(other),
            }
        };
        let body_contains = nonempty("body_contains", file.body_contains)?;
        let error_type = nonempty("error_type", file.error_type)?;
        if file.status.is_none() && body_contains.is_none() && error_type.is_none() {
            bail!("the rule matches every answer: give a status, body_contains or error_type");
        }
        let cooldown = file.cooldown.as_deref().map(parse_duration).transpose()?;
        if cooldown.is_some() && !matches!(meaning, Meaning::Spent | Meaning::RateLimited) {
            bail!("a cooldown is only for a rule meaning spent or rate_limited");
        }
        Ok(Self {
            status: file.status,
            body_contains,
            error_type,
            meaning,
            cooldown,
            cooldown_text: file.cooldown,
        })
    }
}

impl From<&Rule> for RuleFile {
    fn from(rule: &Rule) -> Self {
        Self {
            status: rule.status,
            body_contains: rule.body_contains.clone(),
            error_type: rule.error_type.clone(),
            meaning: serde_json::to_value(rule.meaning)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            cooldown: rule
                .cooldown_text
                .clone()
                .or_else(|| rule.cooldown.map(format_duration)),
        }
    }
}

impl Rule {
    /// Whether an answer with `status` must be read for this rule to judge it.
    pub(super) fn reads(&self, status: u16) -> bool {
        self.status.is_none_or(|s| s == status)
    }

    pub(super) fn matches(&self, answer: &Answer<'_>) -> bool {
        self.status.is_none_or(|s| s == answer.status)
            && self
                .body_contains
                .as_ref()
                .is_none_or(|words| answer.body.to_lowercase().contains(&words.to_lowercase()))
            && self
                .error_type
                .as_ref()
                .is_none_or(|kind| answer.fields.is(kind))
    }

    pub(super) fn failure(&self, answer: &Answer<'_>, now: Timestamp) -> Failure {
        let status = answer.status;
        let reason = match self.meaning {
            Meaning::Spent => Reason::BillingError,
            Meaning::RateLimited => Reason::RateLimit,
            Meaning::Revoked => {
                return Failure::Revoked {
                    reason: Reason::AuthenticationFailed,
                    detail: format!("the upstream answered {status}: revoked, by a gateway rule"),
                };
            }
            Meaning::ThisRequestOnly => {
                return Failure::ThisRequestOnly {
                    detail: format!(
                        "the upstream answered {status}: this request only, by a gateway rule"
                    ),
                };
            }
            Meaning::NotTheKey => return Failure::NotTheKey,
        };
        super::spent_for(answer, reason, "by a gateway rule", self.cooldown, now)
    }

    /// One line for `doctor`: what the rule matches and what it means.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(status) = self.status {
            parts.push(format!("status {status}"));
        }
        if let Some(words) = &self.body_contains {
            parts.push(format!("body containing {words:?}"));
        }
        if let Some(kind) = &self.error_type {
            parts.push(format!("error type {kind}"));
        }
        let meaning = RuleFile::from(self).meaning;
        let cooldown = self
            .cooldown
            .map(|c| format!(", cooling {}", format_duration(c)))
            .unwrap_or_default();
        format!("{} → {meaning}{cooldown}", parts.join(" and "))
    }
}
