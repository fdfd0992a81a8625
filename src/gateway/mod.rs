//! What an upstream's error answer means for the key that got it — the one place where a status,
//! its headers and its body get a meaning. The proxy asks it of every error answer, the
//! StopFailure hook of the error Claude Code reports. Pure and table-driven: the clock is passed
//! in.
//!
//! ```text
//!   status, headers, body ──▶ the user's rules (config `gateway_rules`), first match
//!                         └─▶ the built-in table below                  ──▶ Failure
//!   reset time: reset.rs (headers first, then the message's words)
//! ```
//!
//! The built-in table, from what real gateways answer (docs/facts/gateway-facts.md):
//! - spent (a budget, credits or a quota; the reason `billing_error`): LiteLLM's
//!   `budget_exceeded` and budget words on any status (a deployment's budget is a 429); Anthropic's `billing_error`, "credit balance is too low",
//!   its workspace and tier spend limits (`enforced_spend_limit_reached`, "API usage limits");
//!   any 402 (Anthropic, OpenRouter); Portkey's 412; a 403 whose message is about a budget, a
//!   quota, credits or a key limit (OpenRouter, Azure API Management) — not an HTML page, a
//!   proxy's block page;
//! - rate-limited (`rate_limit`): any other 429;
//! - revoked (`authentication_failed`): 401, and a 403 that says nothing more;
//! - this request only: a 403 `permission_error` (one model or resource is forbidden to the key);
//! - not the key's fault: everything else — a 400 or 422 about the request, 404, 413, 5xx, 529.

mod error_body;
pub mod reset;
mod rules;
pub mod seen;

use jiff::Timestamp;

pub use error_body::ErrorFields;
use reset::{Reset, reset_time};
pub use rules::{Rule, RuleFile};

use crate::failure::Failure;
use crate::reason::Reason;

/// An error body larger than this is not read to judge it: errors are small, and an answer this
/// large is the request's own (passed on as it came).
pub const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// A rate limit that lifts within this is a per-minute limit, not worth a desktop notification.
pub const SHORT_LIMIT: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// An upstream's error answer as the classifier sees it.
pub struct Answer<'a> {
    pub status: u16,
    /// A response header by its lower-case name.
    pub header: &'a dyn Fn(&str) -> Option<String>,
    /// The body's fields; default when the body was not read.
    pub fields: &'a ErrorFields,
    /// The body as text (lossy), for the user's `body_contains` rules; empty when not read.
    pub body: &'a str,
}

/// Whether an answer with `status` must have its body read before it can be judged: statuses
/// where the words decide (a budget said in a 400, 401, 403 or 422, a reset time only in a 429's
/// message), and any the user's rules name.
pub fn needs_body(status: u16, rules: &[Rule]) -> bool {
    matches!(status, 400 | 401 | 402 | 403 | 412 | 422 | 429)
        || rules.iter().any(|r| r.reads(status))
}

/// What `answer` means for the key that got it.
pub fn classify(answer: &Answer<'_>, rules: &[Rule], now: Timestamp) -> Failure {
    if answer.status < 400 {
        return Failure::NotTheKey;
    }
    if let Some(rule) = rules.iter().find(|r| r.matches(answer)) {
        return rule.failure(answer, now);
    }
    builtin(answer, now)
}

fn builtin(answer: &Answer<'_>, now: Timestamp) -> Failure {
    let status = answer.status;
    let fields = answer.fields;
    // A budget said in words comes first: older LiteLLM sent a key's spent budget as a 401
    // "Authentication Error, ExceededTokenBudget: …", which is no revoked key.
    if let Some(what) = spent_by_its_words(status, fields) {
        return spent(answer, Reason::BillingError, what, now);
    }
    if status == 401 {
        return revoked(status);
    }
    match status {
        402 => spent(answer, Reason::BillingError, "payment required", now),
        412 => spent(answer, Reason::BillingError, "budget exhausted", now),
        // An HTML page is not an API gateway's answer but a network's (Cloudflare's "error
        // 1015" for the machine's address): every key meets it alike, and cooling them all would
        // take the pool out for the rate_limit hour. Claude Code retries it; no key can help.
        429 if is_html(fields) => Failure::NotTheKey,
        429 => spent(answer, Reason::RateLimit, "rate limited", now),
        403 if fields.is("permission_error") => Failure::ThisRequestOnly {
            detail: "the upstream answered 403 permission_error: this key may not use what the request asks for; the next key was tried for it".to_string(),
        },
        403 => revoked(status),
        _ => Failure::NotTheKey,
    }
}

/// Whether the body is an HTML page rather than an API's error.
fn is_html(fields: &ErrorFields) -> bool {
    fields.message.as_deref().is_some_and(|m| {
        let start = m
            .trim_start()
            .get(..9)
            .unwrap_or_default()
            .to_ascii_lowercase();
        start.starts_with("<!doctype") || start.starts_with("<html")
    })
}

fn revoked(status: u16) -> Failure {
    Failure::Revoked {
        reason: Reason::AuthenticationFailed,
        detail: format!("the upstream answered {status}: the key was rejected"),
    }
}

/// A spent budget, said in the answer's own terms: structured fields and LiteLLM's budget words
/// on any status, other words only where the status allows it. Beyond those, a 429's words
/// never make it a spent budget (a per-minute limit says "limit" too): it stays a rate limit,
/// which the reset time bounds.
fn spent_by_its_words(status: u16, fields: &ErrorFields) -> Option<&'static str> {
    if fields.is("budget_exceeded") {
        return Some("budget exceeded");
    }
    if fields.is("billing_error") {
        return Some("billing error");
    }
    if let Some(code) = &fields.error_code
        && matches!(
            code.as_str(),
            "enforced_spend_limit_reached" | "contract_spend_limit_reached"
        )
    {
        return Some("spend limit reached");
    }
    let message = fields.message_lower();
    // LiteLLM's budget words, whatever status it sends them with (a deployment's budget comes as
    // a 429 `rate_limit_error`): "exceeded budget", "crossed budget", "budget has been exceeded";
    // a user's or end user's "ExceededBudget: User=… over budget. Spend=…", a team's "Team=… over
    // budget. Spend=…", and the older per-key "ExceededTokenBudget: Current spend for token: …".
    const BUDGET: [&str; 6] = [
        "exceeded budget",
        "crossed budget",
        "budget has been exceeded",
        "exceededbudget:",
        "exceededtokenbudget:",
        "over budget. spend=",
    ];
    // Not in a validation error's list of what was wrong with the request (pydantic's
    // `'loc': …, 'input': …`), which quotes the request's own words.
    let quotes_the_request = message.contains("'loc':") || message.contains("\"loc\":");
    if !quotes_the_request && BUDGET.iter().any(|phrase| message.contains(phrase)) {
        return Some("budget exceeded");
    }
    if status == 429 {
        return None;
    }
    // Phrases, not words anywhere: a 400 that quotes the request must not pass for a budget.
    const SPENT: [(&str, &str); 5] = [
        ("credit balance is too low", "credit balance too low"),
        ("credit balance too low", "credit balance too low"),
        (
            "reached your specified workspace api usage limits",
            "workspace spend limit reached",
        ),
        (
            "reached your specified api usage limits",
            "spend limit reached",
        ),
        ("reached your api usage limits", "usage limit reached"),
    ];
    if let Some((_, what)) = SPENT.iter().find(|(phrase, _)| message.contains(phrase)) {
        return Some(what);
    }
    // A 403 that is about money rather than the key: OpenRouter's "Workspace monthly budget of
    // $500.00 exceeded", "Key limit exceeded", Azure API Management's token quota.
    const FORBIDDEN_SPENT: [&str; 6] = [
        "budget",
        "quota",
        "key limit exceeded",
        "credit",
        "spend limit",
        "usage limit",
    ];
    // Not in an HTML page: that is a proxy's or firewall's block page, met by every key alike
    // ("your browsing quota"), never a gateway's API error.
    if status == 403 && !is_html(fields) && FORBIDDEN_SPENT.iter().any(|w| message.contains(w)) {
        return Some("a budget or quota ran out");
    }
    if status == 402 && fields.limit_source.is_some() {
        return Some("credit limit reached");
    }
    None
}

/// A key that cannot answer now, until the reset the answer gives, else for the configured
/// cooldown of `reason`.
fn spent(answer: &Answer<'_>, reason: Reason, what: &str, now: Timestamp) -> Failure {
    spent_for(answer, reason, what, None, now)
}

fn spent_for(
    answer: &Answer<'_>,
    reason: Reason,
    what: &str,
    fallback: Option<jiff::SignedDuration>,
    now: Timestamp,
) -> Failure {
    let status = answer.status;
    match answer_reset(answer, now) {
        Some(Reset { at, from }) => {
            let wait = at.duration_since(now);
            let short = reason == Reason::RateLimit && wait <= SHORT_LIMIT;
            Failure::Spent {
                reason,
                until: Some(at),
                detail: if short {
                    format!(
                        "{status}, {what}: a short limit, back in {}s as {from} said",
                        wait.as_secs()
                    )
                } else {
                    format!("{status}, {what}: until {at} as {from} said")
                },
                notable: !short,
            }
        }
        None => match fallback.and_then(|d| now.checked_add(d).ok()) {
            Some(until) => Failure::Spent {
                reason,
                until: Some(until),
                detail: format!("{status}, {what}: no reset time given; the rule's cooldown"),
                notable: true,
            },
            None => Failure::Spent {
                reason,
                until: None,
                detail: format!(
                    "{status}, {what}: no reset time given, so the key's own cooldown, else the {reason} default"
                ),
                notable: true,
            },
        },
    }
}

fn answer_reset(answer: &Answer<'_>, now: Timestamp) -> Option<Reset> {
    let fields = answer.fields;
    let header = |name: &str| {
        (answer.header)(name).or_else(|| {
            // A `reset_at` in the body is as good as the header LiteLLM sends elsewhere.
            (name == "reset_at")
                .then(|| fields.reset_at.clone())
                .flatten()
        })
    };
    reset_time(&header, fields.message.as_deref(), now)
}

/// Test headers: a lookup by lower-case name over `pairs`.
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

#[cfg(test)]
mod tests;
