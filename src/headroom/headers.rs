//! The header families gateways put a key's headroom in, read into a [`Reported`]:
//!
//! - LiteLLM: `x-litellm-key-spend`, `x-litellm-key-max-budget` (US dollars; `None` when unset),
//!   `x-litellm-key-remaining-{requests,tokens}-MODEL` (the key's own rate limits);
//! - Anthropic: `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,
//!   remaining,reset}` (reset as RFC 3339);
//! - OpenAI-style (OpenRouter, Envoy AI Gateway): `x-ratelimit-{limit,remaining,reset}`
//!   with or without a `-WINDOW` suffix; the reset as seconds from now, a Unix time in seconds or
//!   milliseconds (OpenRouter), or a duration like `6m0s` — except from LiteLLM, where they are
//!   the gateway's own upstream key's;
//! - Kong AI rate limiting: `x-ai-ratelimit-{limit,remaining}-WINDOW-PROVIDER` and
//!   `x-ai-ratelimit-reset` (seconds) for all of them.
//!
//! Values that are not plain non-negative numbers (or times) are skipped, never guessed at; a
//! provider's headers a gateway passes on under a prefix (LiteLLM's `llm_provider-…`) are about
//! the gateway's own key, not the user's, and match nothing here.

use jiff::{SignedDuration, Timestamp};

use super::{Reported, Window};

/// At most this many windows are kept from one answer.
const MAX_WINDOWS: usize = 8;
/// A window's name is cut to this many characters.
const MAX_NAME: usize = 24;
/// Dollar figures past this are no budget anyone set.
const MAX_MONEY: f64 = 1e12;

/// What `headers` (lower-case names, as hyper keeps them) say about the key, if anything.
pub fn read<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    now: Timestamp,
) -> Option<Reported> {
    let mut reported = Reported::default();
    let mut windows = Windows::default();
    // LiteLLM turns its own upstream key's rate limits into `x-ratelimit-*`: behind it those
    // are the gateway's key, shared by every user, so they count only from other gateways.
    let mut openai_style = Windows::default();
    let mut litellm = false;
    for (name, value) in headers {
        // Most headers start with none of these: one byte settles it.
        if !matches!(name.as_bytes().first(), Some(b'x' | b'a')) {
            continue;
        }
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        let value = value.trim();
        if let Some(rest) = name.strip_prefix("x-litellm-") {
            litellm = true;
            match rest {
                "key-spend" => reported.spend = money(value),
                "key-max-budget" => reported.max_budget = money(value),
                // Per model group: `x-litellm-key-remaining-requests-claude-sonnet-4-5`.
                _ if rest.starts_with("key-remaining-requests-") => {
                    windows.set("", "requests", "remaining", value, now);
                }
                _ if rest.starts_with("key-remaining-tokens-") => {
                    windows.set("", "tokens", "remaining", value, now);
                }
                _ => {}
            }
        } else if let Some(rest) = name.strip_prefix("anthropic-ratelimit-") {
            if let Some((window, field)) = rest.rsplit_once('-') {
                windows.set("", window, field, value, now);
            }
        } else if let Some(rest) = name.strip_prefix("x-ratelimit-") {
            let (field, window) = rest.split_once('-').unwrap_or((rest, "rate"));
            openai_style.set("", window, field, value, now);
        } else if let Some(rest) = name.strip_prefix("x-ai-ratelimit-") {
            let (field, window) = rest.split_once('-').unwrap_or((rest, ""));
            windows.set("kong ", window, field, value, now);
        }
    }
    reported.windows = windows.finish();
    if !litellm {
        for window in openai_style.finish() {
            if reported.windows.len() < MAX_WINDOWS
                && !reported.windows.iter().any(|w| w.name == window.name)
            {
                reported.windows.push(window);
            }
        }
    }
    (!reported.is_empty()).then_some(reported)
}

/// The windows as they are found, and a reset said for all of a family's at once (Kong's).
#[derive(Default)]
struct Windows {
    found: Vec<Window>,
    kong_reset: Option<Timestamp>,
}

impl Windows {
    fn set(&mut self, family: &str, window: &str, field: &str, value: &str, now: Timestamp) {
        if window.is_empty() {
            if family == "kong " && field == "reset" {
                self.kong_reset = reset_at(value, now);
            }
            return;
        }
        let slot = match field {
            "limit" | "remaining" | "reset" => field,
            _ => return,
        };
        let name = window_name(family, window);
        let index = match self.found.iter().position(|w| w.name == name) {
            Some(index) => index,
            None if self.found.len() < MAX_WINDOWS => {
                self.found.push(Window {
                    name,
                    limit: None,
                    remaining: None,
                    reset: None,
                });
                self.found.len() - 1
            }
            None => return,
        };
        let window = &mut self.found[index];
        match slot {
            "limit" => window.limit = count(value),
            "remaining" => window.remaining = count(value),
            _ => window.reset = reset_at(value, now),
        }
    }

    fn finish(mut self) -> Vec<Window> {
        for window in &mut self.found {
            if window.name.starts_with("kong ") && window.reset.is_none() {
                window.reset = self.kong_reset;
            }
        }
        self.found
            .retain(|w| w.limit.is_some() || w.remaining.is_some());
        self.found
    }
}

fn window_name(family: &str, window: &str) -> String {
    let clean: String = window
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(MAX_NAME)
        .collect();
    // A header's name is the gateway's to choose: one that carries what looks like a key (a
    // gateway echoing the key into it) is kept under no name of its own.
    if looks_like_a_key(&clean) {
        return format!("{family}other");
    }
    format!("{family}{clean}")
}

/// `sk-…`, or a long run of letters and digits no window or model name has.
fn looks_like_a_key(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("sk-")
        || lower.contains("-sk-")
        || name.split('-').any(|part| part.len() > 16)
}

/// A count: digits only (a `12.0` some gateways write is read as 12); of the IETF draft's
/// `100, 100;w=60` (Envoy's), the first number.
fn count(value: &str) -> Option<u64> {
    let value = value.split([',', ';']).next().unwrap_or(value).trim();
    if let Ok(n) = value.parse::<u64>() {
        return Some(n);
    }
    let float: f64 = value.parse().ok()?;
    (float.is_finite() && float >= 0.0 && float.fract() == 0.0 && float < 1e18)
        .then_some(float as u64)
}

/// An amount of money: finite, not negative, not absurd.
fn money(value: &str) -> Option<f64> {
    let amount: f64 = value.parse().ok()?;
    (amount.is_finite() && (0.0..MAX_MONEY).contains(&amount)).then_some(amount)
}

/// When a window refills: an RFC 3339 time, a Unix time (seconds or milliseconds), seconds
/// from now, or a duration (`1m30s`, `20ms`).
fn reset_at(value: &str, now: Timestamp) -> Option<Timestamp> {
    if let Ok(at) = value.parse::<Timestamp>() {
        return Some(at);
    }
    if let Ok(number) = value.parse::<f64>() {
        if !number.is_finite() || number < 0.0 {
            return None;
        }
        return if number >= 1e11 {
            Timestamp::from_millisecond(number as i64).ok()
        } else if number >= 1e9 {
            Timestamp::from_second(number as i64).ok()
        } else {
            now.checked_add(SignedDuration::try_from_secs_f64(number).ok()?)
                .ok()
        };
    }
    now.checked_add(go_duration(value)?).ok()
}

/// A duration as OpenAI-style gateways write it: `6m0s`, `1h2m3.5s`, `20ms`.
fn go_duration(text: &str) -> Option<SignedDuration> {
    let mut total = 0.0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, after) = if let Some(after) = rest.strip_prefix("ms") {
            (0.001, after)
        } else if let Some(after) = rest.strip_prefix('h') {
            (3600.0, after)
        } else if let Some(after) = rest.strip_prefix('m') {
            (60.0, after)
        } else if let Some(after) = rest.strip_prefix('s') {
            (1.0, after)
        } else {
            return None;
        };
        total += number * unit;
        rest = after;
    }
    SignedDuration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;
