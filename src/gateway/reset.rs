//! When a refused key may be used again, from every place gateways put it: headers first (they
//! are meant for machines), then the words of the error message. Pure: the clock is passed in.

use std::fmt;

use jiff::{SignedDuration, Timestamp};

/// A reset time further away than this is taken as a month: no budget period is longer, and an
/// absurd value must not set a key aside for years.
pub const LONGEST_RESET: SignedDuration = SignedDuration::from_hours(31 * 24);

/// Where a reset time was read; the event log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetSource {
    /// `retry-after`: seconds or an HTTP date (RFC 9110).
    RetryAfter,
    /// Anthropic's `anthropic-ratelimit-*-reset` (RFC 3339).
    AnthropicReset,
    /// `x-ratelimit-reset` (Envoy AI Gateway: seconds; OpenRouter: epoch milliseconds).
    RateLimitReset,
    /// Kong's `x-ai-ratelimit-retry-after` / `x-ai-ratelimit-reset` (seconds).
    KongReset,
    /// LiteLLM's `reset_at` (`2026-12-01 19:02:53 UTC`).
    ResetAt,
    /// The error message's own words ("Limit resets at: …", "regain access on … at … UTC").
    Message,
}

impl fmt::Display for ResetSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RetryAfter => "retry-after",
            Self::AnthropicReset => "anthropic-ratelimit-*-reset",
            Self::RateLimitReset => "x-ratelimit-reset",
            Self::KongReset => "x-ai-ratelimit-retry-after",
            Self::ResetAt => "reset_at",
            Self::Message => "the error message",
        })
    }
}

/// A reset time and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reset {
    pub at: Timestamp,
    pub from: ResetSource,
}

/// The reset time an answer gives, from the first place that names one (in the order of
/// [`ResetSource`]), clamped to between one second and [`LONGEST_RESET`] from now: a time in the
/// past means "now", which a retry a second later honours.
pub fn reset_time(
    header: &dyn Fn(&str) -> Option<String>,
    message: Option<&str>,
    now: Timestamp,
) -> Option<Reset> {
    let found = header("retry-after")
        .and_then(|v| parse_retry_after(&v, now))
        .map(|at| (at, ResetSource::RetryAfter))
        .or_else(|| anthropic_reset(header).map(|at| (at, ResetSource::AnthropicReset)))
        .or_else(|| {
            header("x-ratelimit-reset")
                .and_then(|v| parse_reset_number(&v, now))
                .map(|at| (at, ResetSource::RateLimitReset))
        })
        .or_else(|| {
            ["x-ai-ratelimit-retry-after", "x-ai-ratelimit-reset"]
                .iter()
                .find_map(|name| header(name).and_then(|v| parse_delta_seconds(&v, now)))
                .map(|at| (at, ResetSource::KongReset))
        })
        .or_else(|| {
            header("reset_at")
                .and_then(|v| parse_utc_words(&v))
                .map(|at| (at, ResetSource::ResetAt))
        })
        .or_else(|| {
            message
                .and_then(reset_in_words)
                .map(|at| (at, ResetSource::Message))
        })?;
    let (at, from) = found;
    Some(Reset {
        at: clamp(at, now)?,
        from,
    })
}

fn clamp(at: Timestamp, now: Timestamp) -> Option<Timestamp> {
    let earliest = now.checked_add(SignedDuration::from_secs(1)).ok()?;
    let latest = now.checked_add(LONGEST_RESET).ok()?;
    Some(at.clamp(earliest, latest))
}

/// `retry-after`: delay seconds (a fraction is rounded up) or an HTTP date.
fn parse_retry_after(value: &str, now: Timestamp) -> Option<Timestamp> {
    parse_delta_seconds(value, now).or_else(|| {
        // An HTTP date: `Wed, 21 Oct 2026 07:28:00 GMT`.
        jiff::fmt::rfc2822::parse(value.trim())
            .ok()
            .map(|zoned| zoned.timestamp())
    })
}

fn parse_delta_seconds(value: &str, now: Timestamp) -> Option<Timestamp> {
    let seconds = value.trim().parse::<f64>().ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    let seconds = seconds.ceil().min(LONGEST_RESET.as_secs() as f64) as i64;
    now.checked_add(SignedDuration::from_secs(seconds)).ok()
}

/// `x-ratelimit-reset`: a delay in seconds (the IETF draft Envoy follows), or an epoch time in
/// seconds or milliseconds (OpenRouter sends milliseconds). A delay is never as large as an epoch
/// time of this century, so the size tells them apart.
fn parse_reset_number(value: &str, now: Timestamp) -> Option<Timestamp> {
    let number = value.trim().parse::<f64>().ok()?;
    if !number.is_finite() || number < 0.0 {
        return None;
    }
    const EPOCH_SECONDS_2001: f64 = 1_000_000_000.0;
    const EPOCH_MILLIS_2001: f64 = EPOCH_SECONDS_2001 * 1000.0;
    if number >= EPOCH_MILLIS_2001 {
        Timestamp::from_millisecond(number as i64).ok()
    } else if number >= EPOCH_SECONDS_2001 {
        Timestamp::from_second(number as i64).ok()
    } else {
        parse_delta_seconds(value, now)
    }
}

/// Of Anthropic's per-limit reset headers: the one whose remaining count is 0, else the latest.
fn anthropic_reset(header: &dyn Fn(&str) -> Option<String>) -> Option<Timestamp> {
    let limits = ["requests", "tokens", "input-tokens", "output-tokens"];
    let resets: Vec<(bool, Timestamp)> = limits
        .iter()
        .filter_map(|l| {
            let reset: Timestamp = header(&format!("anthropic-ratelimit-{l}-reset"))?
                .trim()
                .parse()
                .ok()?;
            let spent = header(&format!("anthropic-ratelimit-{l}-remaining"))
                .is_some_and(|r| r.trim() == "0");
            Some((spent, reset))
        })
        .collect();
    let spent = resets.iter().filter(|(s, _)| *s).map(|(_, t)| *t).max();
    spent.or_else(|| resets.iter().map(|(_, t)| *t).max())
}

/// A time in a message, after the words gateways put before it: LiteLLM's
/// "Limit resets at: 2026-12-01 19:01:52 UTC", Anthropic's "You will regain access on 2026-09-01
/// at 00:00 UTC". Only UTC times are taken: a time without its zone could be anyone's.
pub fn reset_in_words(message: &str) -> Option<Timestamp> {
    let lower = message.to_ascii_lowercase();
    for lead in [
        "resets at:",
        "resets at",
        "regain access on",
        "reset at:",
        "reset at",
    ] {
        let mut from = 0;
        while let Some(i) = lower[from..].find(lead) {
            let start = from + i + lead.len();
            if let Some(at) = parse_utc_words(&message[start..]) {
                return Some(at);
            }
            from = start;
        }
    }
    None
}

/// `2026-12-01 19:01:52 UTC`, `2026-09-01 at 00:00 UTC`, `2026-12-01T19:01:52Z` at the start of
/// `text` (after spaces).
fn parse_utc_words(text: &str) -> Option<Timestamp> {
    let words: Vec<&str> = text
        .split_whitespace()
        .take(4)
        .map(|w| w.trim_end_matches(['.', ',', ';', ')']))
        .collect();
    let date = *words.first()?;
    if let Ok(at) = date.parse::<Timestamp>() {
        return Some(at);
    }
    let date: jiff::civil::Date = date.parse().ok()?;
    let rest: Vec<&str> = words[1..]
        .iter()
        .copied()
        .filter(|w| !w.eq_ignore_ascii_case("at"))
        .collect();
    let (time, zone) = match rest.as_slice() {
        [time, zone, ..] => (*time, *zone),
        _ => return None,
    };
    if !(zone.eq_ignore_ascii_case("UTC") || zone.eq_ignore_ascii_case("GMT")) {
        return None;
    }
    let time: jiff::civil::Time = time.parse().ok()?;
    jiff::tz::TimeZone::UTC
        .to_timestamp(date.to_datetime(time))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::test_headers as headers;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn each_header_gives_its_time_and_is_named() {
        let now = at("2026-12-01T19:00:00Z");
        for (pairs, expected, from) in [
            (
                vec![("retry-after", "17")],
                "2026-12-01T19:00:17Z",
                ResetSource::RetryAfter,
            ),
            (
                vec![("retry-after", "Tue, 01 Dec 2026 20:00:00 GMT")],
                "2026-12-01T20:00:00Z",
                ResetSource::RetryAfter,
            ),
            (
                vec![
                    ("anthropic-ratelimit-tokens-remaining", "0"),
                    ("anthropic-ratelimit-tokens-reset", "2026-12-01T23:00:00Z"),
                    ("anthropic-ratelimit-requests-reset", "2026-12-01T19:00:30Z"),
                ],
                "2026-12-01T23:00:00Z",
                ResetSource::AnthropicReset,
            ),
            (
                vec![("x-ratelimit-reset", "42")],
                "2026-12-01T19:00:42Z",
                ResetSource::RateLimitReset,
            ),
            (
                vec![("x-ratelimit-reset", "1796156400000")],
                "2026-12-01T20:20:00Z",
                ResetSource::RateLimitReset,
            ),
            (
                vec![("x-ai-ratelimit-retry-after", "9")],
                "2026-12-01T19:00:09Z",
                ResetSource::KongReset,
            ),
            (
                vec![("x-ai-ratelimit-reset", "9")],
                "2026-12-01T19:00:09Z",
                ResetSource::KongReset,
            ),
            (
                vec![("reset_at", "2026-12-01 19:02:53 UTC")],
                "2026-12-01T19:02:53Z",
                ResetSource::ResetAt,
            ),
        ] {
            let reset = reset_time(&headers(&pairs), None, now).expect("a reset");
            assert_eq!(reset.at, at(expected), "{pairs:?}");
            assert_eq!(reset.from, from, "{pairs:?}");
        }
    }

    #[test]
    fn retry_after_wins_over_the_others() {
        let h = headers(&[("retry-after", "60"), ("x-ratelimit-reset", "5")]);
        let reset = reset_time(&h, Some("Limit resets at: 2026-12-01 19:30:00 UTC"), t(0)).unwrap();
        assert_eq!(reset.from, ResetSource::RetryAfter);
        assert_eq!(reset.at, t(60));
    }

    #[test]
    fn each_message_form_gives_its_time() {
        let now = at("2026-08-01T00:00:00Z");
        for (message, expected) in [
            (
                "Rate limit exceeded for api_key: 1a2b. Limit type: requests. Current limit: 2, Remaining: 0. Limit resets at: 2026-08-01 00:01:52 UTC",
                "2026-08-01T00:01:52Z",
            ),
            (
                "You have reached your API usage limits: $100. You will regain access on 2026-09-01 at 00:00 UTC.",
                "2026-09-01T00:00:00Z",
            ),
            (
                "You have reached your specified workspace API usage limits. You will regain access on 2026-08-02 at 13:30 UTC.",
                "2026-08-02T13:30:00Z",
            ),
            (
                "limit RESETS AT 2026-08-01T05:00:00Z",
                "2026-08-01T05:00:00Z",
            ),
        ] {
            let reset = reset_time(&headers(&[]), Some(message), now).expect(message);
            assert_eq!(reset.at, at(expected), "{message}");
            assert_eq!(reset.from, ResetSource::Message);
        }
    }

    #[test]
    fn past_times_mean_a_second_from_now_and_far_ones_a_month() {
        let past = reset_time(
            &headers(&[]),
            Some("Limit resets at: 2001-01-01 00:00:00 UTC"),
            t(0),
        )
        .unwrap();
        assert_eq!(past.at, t(1));
        let zero = reset_time(&headers(&[("retry-after", "0")]), None, t(0)).unwrap();
        assert_eq!(zero.at, t(1));
        let far = reset_time(&headers(&[("retry-after", "1e30")]), None, t(0)).unwrap();
        assert_eq!(far.at, t(0).checked_add(LONGEST_RESET).unwrap());
        let epoch_far = reset_time(
            &headers(&[("x-ratelimit-reset", "99999999999")]),
            None,
            t(0),
        );
        assert_eq!(
            epoch_far.unwrap().at,
            t(0).checked_add(LONGEST_RESET).unwrap()
        );
    }

    #[test]
    fn garbage_gives_no_time() {
        for pairs in [
            vec![("retry-after", "-5")],
            vec![("retry-after", "soon")],
            vec![("retry-after", "NaN")],
            vec![("x-ratelimit-reset", "tomorrow")],
            vec![("x-ai-ratelimit-reset", "-1")],
            vec![("reset_at", "2026-12-01 19:02:53")],
            vec![("anthropic-ratelimit-tokens-reset", "in an hour")],
        ] {
            assert_eq!(reset_time(&headers(&pairs), None, t(0)), None, "{pairs:?}");
        }
        for message in [
            "Limit resets at: soon",
            "resets at: 2026-13-45 25:00:00 UTC",
            // A time without its zone could be anyone's.
            "You will regain access on 2026-09-01 at 00:00.",
            "regain access on 2026-09-01 at 00:00 CET",
            "resets at",
            "",
        ] {
            assert_eq!(reset_in_words(message), None, "{message}");
        }
    }

    #[test]
    fn a_garbage_retry_after_gives_way_to_the_next_source() {
        let h = headers(&[("retry-after", "soon"), ("x-ratelimit-reset", "30")]);
        let reset = reset_time(&h, None, t(0)).unwrap();
        assert_eq!((reset.at, reset.from), (t(30), ResetSource::RateLimitReset));
    }
}
