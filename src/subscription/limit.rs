//! Recognising the subscription's usage limit in what Claude Code reports on a failed turn
//! (`../shared/subscription-facts.md`): the transcript's last assistant entry
//! (`"apiError":"usage_limit_reached"`, `"quotaLimits":{"resetsAt":<epoch s>,
//! "rateLimitType":"five_hour",…}`), else the message it showed ("You've hit your 5-hour limit ·
//! resets 8:25pm (UTC)"). Anything else is not the limit: an ordinary 429 or error on the
//! subscription marks nothing.

use std::path::Path;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan, ZonedDateTime};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which of the subscription's limits was reached: Anthropic's
/// `anthropic-ratelimit-unified-representative-claim` (the transcript's `rateLimitType`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Claim {
    FiveHour,
    SevenDay,
    SevenDayOpus,
    SevenDaySonnet,
    SevenDayOverageIncluded,
    Overage,
    /// A claim this keyswitch does not know, kept as sent.
    Other(String),
}

const WORDS: [(Claim, &str, &str); 6] = [
    (Claim::FiveHour, "five_hour", "5-hour limit"),
    (Claim::SevenDay, "seven_day", "weekly limit"),
    (Claim::SevenDayOpus, "seven_day_opus", "weekly Opus limit"),
    (
        Claim::SevenDaySonnet,
        "seven_day_sonnet",
        "weekly Sonnet limit",
    ),
    (
        Claim::SevenDayOverageIncluded,
        "seven_day_overage_included",
        "weekly limit (extra usage included)",
    ),
    (Claim::Overage, "overage", "extra-usage limit"),
];

impl Claim {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(word) => word,
            known => WORDS.iter().find(|(c, ..)| c == known).map_or("", |w| w.1),
        }
    }

    /// The limit in words, for messages and notifications.
    pub fn describe(&self) -> String {
        match self {
            Self::Other(word) => format!("{word} limit"),
            known => WORDS
                .iter()
                .find(|(c, ..)| c == known)
                .map_or_else(String::new, |w| w.2.to_string()),
        }
    }

    /// From the words Claude Code shows before "limit": "5-hour", "weekly", "Opus", …; `None`
    /// when it names none.
    fn from_shown(words: &str) -> Option<Self> {
        let lower = words.to_ascii_lowercase();
        Some(if lower.contains("opus") {
            Self::SevenDayOpus
        } else if lower.contains("sonnet") {
            Self::SevenDaySonnet
        } else if lower.contains("5-hour") || lower.contains("session") {
            Self::FiveHour
        } else if lower.contains("week") {
            Self::SevenDay
        } else {
            Self::Other(plain(words)?)
        })
    }
}

/// A claim's word as it may be shown and kept: a few plain characters. The word comes from a
/// header the upstream sends; control characters must never reach a terminal or status line.
fn plain(word: &str) -> Option<String> {
    let word = word.trim();
    (!word.is_empty()
        && word.len() <= 32
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' ')))
    .then(|| word.to_string())
}

impl From<String> for Claim {
    fn from(word: String) -> Self {
        WORDS.iter().find(|(_, w, _)| *w == word).map_or_else(
            || Self::Other(plain(&word).unwrap_or_else(|| "unknown".to_string())),
            |(c, ..)| c.clone(),
        )
    }
}

impl From<Claim> for String {
    fn from(claim: Claim) -> Self {
        claim.as_str().to_string()
    }
}

/// The limit Claude Code reported: which one (when it said) and when it resets (when it said).
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub claim: Option<Claim>,
    pub resets: Option<Timestamp>,
}

/// Transcripts are long; the entry that matters is the last one.
const TRANSCRIPT_TAIL: u64 = 1024 * 1024;

/// The limit in the transcript's last assistant entry, if that entry is the usage limit.
pub fn from_transcript(path: &Path) -> Option<Limit> {
    let bytes = crate::fileio::read_tail(path, TRANSCRIPT_TAIL).ok()??;
    let text = String::from_utf8_lossy(&bytes);
    let entry = text
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|entry| entry["type"] == "assistant")?;
    from_entry(&entry)
}

fn from_entry(entry: &Value) -> Option<Limit> {
    if entry["apiError"] != "usage_limit_reached" {
        return None;
    }
    let quota = &entry["quotaLimits"];
    Some(Limit {
        claim: quota["rateLimitType"]
            .as_str()
            .filter(|w| !w.is_empty())
            .map(|w| Claim::from(w.to_string())),
        resets: quota["resetsAt"]
            .as_i64()
            .or_else(|| quota["resetsAt"].as_f64().map(|f| f as i64))
            .and_then(|s| Timestamp::from_second(s).ok()),
    })
}

/// The limit in the message Claude Code showed: "You've hit your 5-hour limit · resets 8:25pm
/// (UTC)". The reset time is read in the zone named in brackets (the local zone without one),
/// at its next occurrence after an hour ago (a time just passed is the reset rounded down).
pub fn from_message(message: &str, now: &ZonedDateTime) -> Option<Limit> {
    let message = message.replace('\u{2019}', "'");
    let at = message.find("You've hit your ")?;
    let rest = &message[at + "You've hit your ".len()..];
    let end = rest.find("limit")?;
    let claim = Claim::from_shown(&rest[..end]);
    let after = &rest[end + "limit".len()..];
    let resets = after
        .find("resets ")
        .and_then(|i| reset_clock(&after[i + "resets ".len()..], now));
    Some(Limit { claim, resets })
}

/// "8:25pm (UTC)", "8pm (Europe/Berlin)", "Dec 8, 8pm (UTC)", "Dec 8 at 8:25pm": the next such
/// time after an hour ago.
fn reset_clock(text: &str, now: &ZonedDateTime) -> Option<Timestamp> {
    let (when, zone) = match text.split_once('(') {
        Some((when, rest)) => (when, TimeZone::get(rest.split_once(')')?.0.trim()).ok()?),
        None => (text, now.time_zone().clone()),
    };
    let words: Vec<&str> = when
        .split_whitespace()
        .map(|w| w.trim_end_matches([',', '.', '·']))
        .filter(|w| !w.is_empty() && !w.eq_ignore_ascii_case("at"))
        .collect();
    let (clock, date_words) = words.split_last()?;
    let time = clock_time(clock)?;
    let here = now.with_time_zone(zone.clone());
    let date = match date_words {
        [] => here.date(),
        [month, day] => month_day(month, day, here.year())?,
        _ => return None,
    };
    let mut at = date.to_datetime(time).to_zoned_datetime(zone).ok()?;
    // Claude Code shows the reset to the minute: one up to an hour ago is today's, just passed
    // (or about to), not tomorrow's.
    let earliest = now
        .timestamp()
        .checked_sub(SignedDuration::from_hours(1))
        .ok()?;
    while at.timestamp() <= earliest {
        at = at
            .checked_add(if date_words.is_empty() {
                1.day()
            } else {
                1.year()
            })
            .ok()?;
    }
    Some(at.timestamp())
}

/// "8:25pm", "8pm", "20:25".
fn clock_time(word: &str) -> Option<Time> {
    let lower = word.to_ascii_lowercase();
    let (digits, shift) = match (lower.strip_suffix("pm"), lower.strip_suffix("am")) {
        (Some(d), _) => (d, Some(12)),
        (_, Some(d)) => (d, Some(0)),
        _ => (lower.as_str(), None),
    };
    let (hour, minute) = digits.split_once(':').unwrap_or((digits, "0"));
    let (mut hour, minute): (i8, i8) = (hour.parse().ok()?, minute.parse().ok()?);
    if let Some(shift) = shift {
        if !(1..=12).contains(&hour) {
            return None;
        }
        hour = hour % 12 + shift;
    }
    Time::new(hour, minute, 0, 0).ok()
}

fn month_day(month: &str, day: &str, year: i16) -> Option<Date> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let lower = month.to_ascii_lowercase();
    let month = MONTHS.iter().position(|m| lower.starts_with(m))? as i8 + 1;
    Date::new(year, month, day.parse().ok()?).ok()
}

#[cfg(test)]
#[path = "limit_tests.rs"]
mod tests;
