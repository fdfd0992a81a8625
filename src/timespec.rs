//! Parsing the durations and times users type, and saying when something happens in words.
//!
//! Durations go through jiff's "friendly" format (`90s`, `30m`, `5h`, `2d`, `1h30m`, also
//! `1 hour 30 minutes` and ISO 8601 `PT5H`), with a day counted as 24 hours. Times are RFC 3339
//! or a local `HH:MM`, meaning its next occurrence.

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, SpanRelativeTo, Timestamp, Unit, ZonedDateTime};

use crate::error::refuse;

/// The longest cooldown keyswitch accepts: a year. Longer is a typo, and `reset` exists.
const MAX_DURATION: SignedDuration = SignedDuration::from_hours(24 * 366);

/// Parses a strictly positive duration such as `90s`, `30m`, `5h`, `2d` or `1h30m`.
pub fn parse_duration(text: &str) -> anyhow::Result<SignedDuration> {
    let trimmed = text.trim();
    let span: Span = trimmed.parse().map_err(|_| {
        refuse(format!(
            "'{text}' is not a duration: write it like 90s, 30m, 5h, 2d or 1h30m"
        ))
    })?;
    let duration = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| {
            refuse(format!(
                "'{text}' uses months or years, whose length varies: write it in days, like 30d"
            ))
        })?;
    if duration.is_negative() {
        return Err(refuse(format!(
            "'{text}' is a negative duration: a cooldown runs forward, write it like 5h"
        )));
    }
    if duration.is_zero() {
        return Err(refuse(format!(
            "'{text}' is zero: a cooldown must last, write it like 30m (use `keyswitch reset` to end one)"
        )));
    }
    if duration > MAX_DURATION {
        return Err(refuse(format!(
            "'{text}' is longer than a year: write a shorter cooldown"
        )));
    }
    Ok(duration)
}

/// Formats a duration the way `parse_duration` reads it back: `1h30m`, `2d`, `45s`.
pub fn format_duration(duration: SignedDuration) -> String {
    let mut secs = duration.as_secs().max(0);
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// Parses a point in time that must lie in the future: RFC 3339, or local `HH:MM[:SS]`
/// meaning its next occurrence.
pub fn parse_future_time(text: &str, now: &ZonedDateTime) -> anyhow::Result<Timestamp> {
    let trimmed = text.trim();
    let instant = if let Ok(ts) = trimmed.parse::<Timestamp>() {
        ts
    } else if let Ok(clock) = trimmed.parse::<Time>() {
        next_occurrence(clock, now)?
    } else {
        return Err(refuse(format!(
            "'{text}' is not a time: give RFC 3339 like 2026-11-25T18:00:00+01:00, or a local HH:MM"
        )));
    };
    if instant <= now.timestamp() {
        return Err(refuse(format!(
            "'{text}' is in the past: give a time after now ({})",
            now.timestamp()
        )));
    }
    Ok(instant)
}

fn next_occurrence(clock: Time, now: &ZonedDateTime) -> anyhow::Result<Timestamp> {
    let today = now
        .date()
        .to_datetime(clock)
        .to_zoned_datetime(now.time_zone().clone())
        .map_err(|e| refuse(format!("cannot place {clock} in your time zone: {e}")))?;
    if today.timestamp() > now.timestamp() {
        return Ok(today.timestamp());
    }
    let tomorrow = today
        .checked_add(Span::new().days(1))
        .map_err(|e| refuse(format!("cannot place {clock} tomorrow: {e}")))?;
    Ok(tomorrow.timestamp())
}

/// "in 42m", "in 1h 5m", "in 2d 3h", "now" — for `list` and `status`.
pub fn until_in_words(until: Timestamp, now: Timestamp) -> String {
    let left = until.duration_since(now);
    if left <= SignedDuration::ZERO {
        return "now".to_string();
    }
    format!("in {}", rough(left))
}

/// "42m ago" and the like — for the event log.
pub fn ago_in_words(then: Timestamp, now: Timestamp) -> String {
    let past = now.duration_since(then);
    if past < SignedDuration::from_secs(1) {
        return "just now".to_string();
    }
    format!("{} ago", rough(past))
}

/// At most the two largest units, rounded up to the smallest shown (never "in 0m").
fn rough(duration: SignedDuration) -> String {
    let secs = duration.as_secs().unsigned_abs();
    if secs < 60 {
        return format!("{secs}s");
    }
    let mins = secs.div_ceil(60);
    if mins < 60 {
        return format!("{mins}m");
    }
    let (big, small, big_name, small_name) = if mins < 24 * 60 {
        (60, mins, "h", "m")
    } else {
        (24, mins.div_ceil(60), "d", "h")
    };
    let (whole, rest) = (small / big, small % big);
    if rest == 0 {
        format!("{whole}{big_name}")
    } else {
        format!("{whole}{big_name} {rest}{small_name}")
    }
}

/// A timestamp in the local zone, to the minute when it is today, with the date otherwise.
pub fn local_clock(at: Timestamp, now: &ZonedDateTime) -> String {
    let zone: TimeZone = now.time_zone().clone();
    let local = at.to_zoned_datetime(zone);
    if local.date() == now.date() {
        local.strftime("%H:%M").to_string()
    } else {
        local.strftime("%Y-%m-%d %H:%M").to_string()
    }
}

/// The local time zone, found cheaply.
///
/// jiff's own lookup resolves `/etc/localtime` to an IANA name and then lists the whole zoneinfo
/// folder to find it (dozens of syscalls, most of `status`'s run time). Reading the TZif file
/// `/etc/localtime` points to gives the same rules without the listing. `TZ`, when set, is left
/// to jiff, which understands all its forms.
pub fn local_zone() -> TimeZone {
    match std::env::var("TZ") {
        Ok(tz) if tz == "UTC" || tz == "UTC0" || tz == ":UTC" => TimeZone::UTC,
        Ok(tz) if !tz.is_empty() => TimeZone::system(),
        _ => read_localtime().unwrap_or_else(TimeZone::system),
    }
}

fn read_localtime() -> Option<TimeZone> {
    if !cfg!(unix) {
        return None;
    }
    let bytes = std::fs::read("/etc/localtime").ok()?;
    TimeZone::tzif("Local", &bytes).ok()
}

/// Drops the fraction of a second: what the state file keeps.
pub fn to_whole_seconds(at: ZonedDateTime) -> ZonedDateTime {
    at.round(Unit::Second).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> ZonedDateTime {
        "2026-11-25T12:00:00+00:00[UTC]".parse().unwrap()
    }

    #[test]
    fn reads_the_documented_forms() {
        assert_eq!(
            parse_duration("90s").unwrap(),
            SignedDuration::from_secs(90)
        );
        assert_eq!(
            parse_duration("30m").unwrap(),
            SignedDuration::from_mins(30)
        );
        assert_eq!(parse_duration("5h").unwrap(), SignedDuration::from_hours(5));
        assert_eq!(
            parse_duration("2d").unwrap(),
            SignedDuration::from_hours(48)
        );
        assert_eq!(
            parse_duration("1h30m").unwrap(),
            SignedDuration::from_mins(90)
        );
    }

    #[test]
    fn refuses_zero_negative_and_nonsense() {
        for bad in [
            "0s", "0", "-5h", "5h ago", "", "soon", "5x", "1y", "3mo", "400d",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(
                err.downcast_ref::<crate::error::Refused>().is_some(),
                "{bad}"
            );
        }
    }

    #[test]
    fn times_must_be_in_the_future() {
        let now = now();
        assert!(parse_future_time("2026-11-25T13:00:00Z", &now).is_ok());
        assert!(parse_future_time("2026-11-25T11:00:00Z", &now).is_err());
        assert!(parse_future_time("2026-11-25T12:00:00Z", &now).is_err());
        assert!(parse_future_time("tomorrow-ish", &now).is_err());
    }

    #[test]
    fn clock_times_mean_their_next_occurrence() {
        let now = now();
        let later_today = parse_future_time("18:30", &now).unwrap();
        assert_eq!(later_today.to_string(), "2026-11-25T18:30:00Z");
        let tomorrow = parse_future_time("09:00", &now).unwrap();
        assert_eq!(tomorrow.to_string(), "2026-11-26T09:00:00Z");
        let exactly_now = parse_future_time("12:00", &now).unwrap();
        assert_eq!(exactly_now.to_string(), "2026-11-26T12:00:00Z");
    }

    #[test]
    fn words_for_what_is_left() {
        let t0: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let after = |secs: i64| t0.checked_add(SignedDuration::from_secs(secs)).unwrap();
        assert_eq!(until_in_words(after(42 * 60), t0), "in 42m");
        assert_eq!(until_in_words(after(41 * 60 + 1), t0), "in 42m");
        assert_eq!(until_in_words(after(3_600 + 5 * 60), t0), "in 1h 5m");
        assert_eq!(
            until_in_words(after(2 * 86_400 + 3 * 3_600), t0),
            "in 2d 3h"
        );
        assert_eq!(until_in_words(after(30), t0), "in 30s");
        assert_eq!(until_in_words(after(-5), t0), "now");
        assert_eq!(until_in_words(after(3_600 + 59 * 60 + 30), t0), "in 2h");
        assert_eq!(until_in_words(after(3_599), t0), "in 1h");
        assert_eq!(until_in_words(after(86_399), t0), "in 1d");
    }

    proptest! {
        #[test]
        fn formatted_durations_read_back(secs in 1i64..(366 * 86_400)) {
            let d = SignedDuration::from_secs(secs);
            prop_assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }

        #[test]
        fn parsed_durations_are_positive(text in "-?[0-9]{1,4}(s|m|h|d)") {
            if let Ok(d) = parse_duration(&text) {
                prop_assert!(d.is_positive());
            }
        }
    }
}
