//! Parsing the durations and times users type, and saying when something happens in words.
//!
//! Durations go through jiff's "friendly" format (`90s`, `30m`, `5h`, `2d`, `1h30m`, also
//! `1 hour 30 minutes` and ISO 8601 `PT5H`), with a day counted as 24 hours. Times are RFC 3339
//! or a local `HH:MM`, meaning its next occurrence.

use jiff::civil::{DateTime, Time};
use jiff::fmt::temporal::Pieces;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{
    RoundMode, SignedDuration, Span, SpanRelativeTo, Timestamp, Unit, ZonedDateTime,
    ZonedDateTimeRound,
};

use crate::error::refuse;

/// The longest cooldown keyswitch accepts: a year. Longer is a typo, and `reset` exists.
const MAX_DURATION: SignedDuration = SignedDuration::from_hours(24 * 366);

/// Parses a strictly positive duration such as `90s`, `30m`, `5h`, `2d` or `1h30m`.
pub fn parse_duration(typed: &str) -> anyhow::Result<SignedDuration> {
    let trimmed = typed.trim();
    // Messages name what was typed cut and escaped: it may be 100 KB, or hold escape sequences.
    let text = &crate::messages::as_typed(typed);
    // A bare number has no unit; a zero one is still the zero mistake, worded as for `0s`.
    let numeric = !trimmed.is_empty()
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+'));
    if let Some(number) = trimmed.parse::<f64>().ok().filter(|_| numeric) {
        return Err(if number == 0.0 {
            zero_duration(text)
        } else if number < 0.0 {
            negative_duration(text)
        } else {
            refuse(format!(
                "'{text}' has no unit: write it like {trimmed}m, {trimmed}h or {trimmed}d"
            ))
        });
    }
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
        return Err(negative_duration(text));
    }
    if duration.is_zero() {
        return Err(zero_duration(text));
    }
    if duration.subsec_nanos() != 0 {
        return Err(refuse(format!(
            "'{text}' has a fraction of a second: keyswitch counts whole seconds, write it like 1s or 90s"
        )));
    }
    if duration > MAX_DURATION {
        return Err(refuse(format!(
            "'{text}' is longer than a year: write a shorter cooldown"
        )));
    }
    Ok(duration)
}

fn negative_duration(text: &str) -> anyhow::Error {
    refuse(format!(
        "'{text}' is a negative duration: a cooldown runs forward, write it like 5h"
    ))
}

fn zero_duration(text: &str) -> anyhow::Error {
    refuse(format!(
        "'{text}' is zero: a cooldown must last at least a second, write it like 30m"
    ))
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

/// Parses a point in time that must lie in the future:
///
/// - RFC 3339 with an offset (`2026-11-25T18:00:00+01:00`, `...Z`), optionally with a zone
///   (`...+01:00[Europe/Berlin]`, where the two must agree);
/// - a date-time with a zone and no offset (`2026-11-25T23:00:00[Europe/Berlin]`): that wall
///   clock time in that zone;
/// - a local date-time or date (`2027-03-01T09:00`, `2027-03-01`): that date, in `now`'s zone;
/// - a local `HH:MM[:SS]`: its next occurrence in `now`'s zone.
///
/// Wall clock times are placed as people expect across daylight saving changes: in a fold (the
/// hour that happens twice) the first occurrence still ahead is meant; in a gap (the hour that is
/// skipped) the time is pushed forward by the gap, so `02:30` means `03:30` after the change.
pub fn parse_future_time(typed: &str, now: &ZonedDateTime) -> anyhow::Result<Timestamp> {
    let trimmed = typed.trim();
    let text = &crate::messages::as_typed(typed);
    let instant = if let Ok(pieces) = Pieces::parse(trimmed) {
        from_pieces(text, &pieces, now)?
    } else if let Ok(clock) = trimmed.parse::<Time>() {
        next_occurrence(clock, now)?
    } else {
        return Err(refuse(format!(
            "'{text}' is not a time: give a local HH:MM, a date-time like 2026-11-25T18:00, or RFC 3339 like 2026-11-25T18:00:00+01:00"
        )));
    };
    if instant <= now.timestamp() {
        return Err(refuse(format!(
            "'{text}' is in the past (it is {} now): give a time after now",
            now.strftime("%Y-%m-%d %H:%M:%S %Z")
        )));
    }
    Ok(instant)
}

fn from_pieces(text: &str, pieces: &Pieces, now: &ZonedDateTime) -> anyhow::Result<Timestamp> {
    let datetime = pieces
        .date()
        .to_datetime(pieces.time().unwrap_or(Time::midnight()));
    let zone = pieces.to_time_zone().map_err(|e| {
        refuse(format!(
            "'{text}' names a time zone keyswitch cannot find: {e}"
        ))
    })?;
    let unplaceable = |e: jiff::Error| refuse(format!("'{text}' cannot be placed in time: {e}"));
    match (pieces.to_numeric_offset(), zone) {
        (Some(offset), zone) => {
            let instant = offset.to_timestamp(datetime).map_err(unplaceable)?;
            if let Some(zone) = zone
                && zone.to_offset(instant) != offset
            {
                return Err(refuse(format!(
                    "'{text}' gives an offset its time zone does not have at that time: drop the offset or the zone"
                )));
            }
            Ok(instant)
        }
        (None, Some(zone)) => wall_clock(datetime, &zone, now.timestamp()).map_err(unplaceable),
        (None, None) => wall_clock(datetime, now.time_zone(), now.timestamp()).map_err(unplaceable),
    }
}

/// The instant a wall clock in `zone` shows `datetime`: in a fold the first one after `now`
/// (else the earlier), in a gap the time pushed forward by the gap ("compatible").
fn wall_clock(
    datetime: DateTime,
    zone: &TimeZone,
    now: Timestamp,
) -> Result<Timestamp, jiff::Error> {
    let ambiguous = zone.to_ambiguous_timestamp(datetime);
    match ambiguous.offset() {
        AmbiguousOffset::Fold { .. } => {
            let earlier = ambiguous.earlier()?;
            if earlier > now {
                Ok(earlier)
            } else {
                ambiguous.later()
            }
        }
        _ => ambiguous.compatible(),
    }
}

fn next_occurrence(clock: Time, now: &ZonedDateTime) -> anyhow::Result<Timestamp> {
    let mut day = now.date();
    // Tomorrow always has the time, but for a zone that once skipped a whole day; so look at most
    // three days ahead.
    for _ in 0..3 {
        let instant = wall_clock(day.to_datetime(clock), now.time_zone(), now.timestamp())
            .map_err(|e| refuse(format!("cannot place {clock} in your time zone: {e}")))?;
        if instant > now.timestamp() {
            return Ok(instant);
        }
        day = day
            .tomorrow()
            .map_err(|e| refuse(format!("cannot place {clock} after today: {e}")))?;
    }
    Err(refuse(format!(
        "cannot place {clock} in your time zone in the next days: give a full date-time"
    )))
}

/// "in 42m", "in 1h 5m", "in 2d 3h", "now" — for `list` and `status`. Rounded up: a key is
/// never said to return before it does, and never "in 0m".
pub fn until_in_words(until: Timestamp, now: Timestamp) -> String {
    let left = until.duration_since(now);
    if left <= SignedDuration::ZERO {
        return "now".to_string();
    }
    format!("in {}", rough(left, Rounding::Up))
}

/// "42m ago" and the like — for the event log. Rounded down: an event is never said to be
/// older than it is.
pub fn ago_in_words(then: Timestamp, now: Timestamp) -> String {
    let past = now.duration_since(then);
    if past < SignedDuration::from_secs(1) {
        return "just now".to_string();
    }
    format!("{} ago", rough(past, Rounding::Down))
}

#[derive(Clone, Copy)]
enum Rounding {
    Up,
    Down,
}

/// At most the two largest units, rounded to the smallest shown.
fn rough(duration: SignedDuration, rounding: Rounding) -> String {
    let secs = duration.as_secs().unsigned_abs();
    if secs < 60 {
        return format!("{secs}s");
    }
    let to = |value: u64, size: u64| match rounding {
        Rounding::Up => value.div_ceil(size),
        Rounding::Down => value / size,
    };
    let mins = to(secs, 60);
    if mins < 60 {
        return format!("{mins}m");
    }
    let (big, small, big_name, small_name) = if mins < 24 * 60 {
        (60, mins, "h", "m")
    } else {
        (24, to(mins, 60), "d", "h")
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

/// Drops the fraction of a second: what the state file keeps. Truncated, never rounded up, so
/// nothing is recorded as happening later than it did.
pub fn to_whole_seconds(at: ZonedDateTime) -> ZonedDateTime {
    let down = ZonedDateTimeRound::new()
        .smallest(Unit::Second)
        .mode(RoundMode::Trunc);
    at.round(down).unwrap_or(at)
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_refused_duration_or_time_is_named_cut_and_escaped() {
        let now = berlin("2026-11-25T12:00:00");
        let huge = format!("{}x", "1".repeat(100_000));
        for message in [
            parse_duration(&huge).unwrap_err().to_string(),
            parse_future_time(&huge, &now).unwrap_err().to_string(),
        ] {
            assert!(message.len() < 400, "{} bytes", message.len());
        }
        for message in [
            parse_duration("1h\u{1b}[31m").unwrap_err().to_string(),
            parse_future_time("18:00\u{1b}[31m", &now)
                .unwrap_err()
                .to_string(),
        ] {
            assert!(!message.contains('\u{1b}'), "{message:?}");
            assert!(message.contains("\\u{1b}[31m"), "{message:?}");
        }
    }
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

    fn berlin(text: &str) -> ZonedDateTime {
        let zone = TimeZone::get("Europe/Berlin").unwrap();
        text.parse::<jiff::civil::DateTime>()
            .unwrap()
            .to_zoned_datetime(zone)
            .unwrap()
    }

    fn refused_message(result: anyhow::Result<Timestamp>) -> String {
        let err = result.expect_err("refused");
        assert!(err.downcast_ref::<crate::error::Refused>().is_some());
        err.to_string()
    }

    #[test]
    fn a_local_date_time_means_that_date() {
        let now = now();
        let at = parse_future_time("2027-03-01T09:00:00", &now).unwrap();
        assert_eq!(at.to_string(), "2027-03-01T09:00:00Z");
        let at = parse_future_time("2026-12-01 09:30", &now).unwrap();
        assert_eq!(at.to_string(), "2026-12-01T09:30:00Z");
        let midnight = parse_future_time("2026-12-01", &now).unwrap();
        assert_eq!(midnight.to_string(), "2026-12-01T00:00:00Z");
    }

    #[test]
    fn a_past_date_time_is_refused() {
        let now = now();
        let message = refused_message(parse_future_time("2026-11-24T09:00:00", &now));
        assert!(message.contains("in the past"), "{message}");
        refused_message(parse_future_time("2026-11-25T11:59:59", &now));
        refused_message(parse_future_time("2025-01-01", &now));
    }

    #[test]
    fn a_named_zone_is_honoured() {
        let now = now();
        let at = parse_future_time("2026-11-25T23:00:00[Europe/Berlin]", &now).unwrap();
        assert_eq!(at.to_string(), "2026-11-25T22:00:00Z");
        let at = parse_future_time("2026-11-25T23:00:00+01:00[Europe/Berlin]", &now).unwrap();
        assert_eq!(at.to_string(), "2026-11-25T22:00:00Z");
        // An offset the zone does not have then is a contradiction, not a guess.
        refused_message(parse_future_time(
            "2026-11-25T23:00:00+05:00[Europe/Berlin]",
            &now,
        ));
        refused_message(parse_future_time("2026-11-25T23:00:00[Mars/Olympus]", &now));
    }

    #[test]
    fn in_the_fall_back_fold_a_clock_time_means_the_next_one() {
        // 02:45 CEST on the night the clocks go back from 03:00 CEST to 02:00 CET.
        let now = berlin("2026-10-25T02:45:00");
        assert_eq!(now.offset().seconds(), 7_200, "still summer time");
        let at = parse_future_time("02:30", &now).unwrap();
        assert_eq!(
            at.duration_since(now.timestamp()),
            SignedDuration::from_mins(45)
        );
        // Before the fold, the first 02:30 is meant.
        let evening = berlin("2026-10-24T22:00:00");
        let at = parse_future_time("02:30", &evening).unwrap();
        assert_eq!(at.to_string(), "2026-10-25T00:30:00Z");
        let at = parse_future_time("2026-10-25T02:30", &evening).unwrap();
        assert_eq!(at.to_string(), "2026-10-25T00:30:00Z");
        // Inside the fold, a date-time means the occurrence still ahead.
        let at = parse_future_time("2026-10-25T02:30", &now).unwrap();
        assert_eq!(at.to_string(), "2026-10-25T01:30:00Z");
    }

    #[test]
    fn in_the_spring_forward_gap_a_skipped_time_moves_forward_by_the_gap() {
        // 01:50 CET; at 02:00 the clocks jump to 03:00 CEST, so 02:30 never shows.
        let now = berlin("2026-03-29T01:50:00");
        let at = parse_future_time("02:30", &now).unwrap();
        // 40 minutes of real time, as the clock said before the jump: 03:30 CEST.
        assert_eq!(
            at.duration_since(now.timestamp()),
            SignedDuration::from_mins(40)
        );
        assert_eq!(at.to_string(), "2026-03-29T01:30:00Z");
    }

    #[test]
    fn fractions_of_a_second_are_refused() {
        for bad in ["1ns", "0.4s", "1.5s", "500ms", "PT0.1S"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(
                err.to_string().contains("fraction of a second"),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            parse_duration("0.5m").unwrap(),
            SignedDuration::from_secs(30)
        );
    }

    #[test]
    fn zero_is_worded_alike_however_it_is_written() {
        let worded = |text: &str| {
            let message = parse_duration(text).unwrap_err().to_string();
            message.replacen(&format!("'{text}'"), "'X'", 1)
        };
        assert_eq!(worded("0"), worded("0s"));
        assert_eq!(worded("00"), worded("0m"));
        assert!(
            parse_duration("5")
                .unwrap_err()
                .to_string()
                .contains("no unit")
        );
        assert!(
            parse_duration("-5")
                .unwrap_err()
                .to_string()
                .contains("negative")
        );
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

    #[test]
    fn words_for_what_has_passed_never_make_it_older() {
        let t0: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let before = |secs: i64| t0.checked_sub(SignedDuration::from_secs(secs)).unwrap();
        assert_eq!(ago_in_words(before(61), t0), "1m ago");
        assert_eq!(ago_in_words(before(3_599), t0), "59m ago");
        assert_eq!(ago_in_words(before(3_600 + 59), t0), "1h ago");
        assert_eq!(ago_in_words(before(86_400 + 3_599), t0), "1d ago");
        assert_eq!(ago_in_words(before(30), t0), "30s ago");
    }

    #[test]
    fn whole_seconds_never_move_a_moment_later() {
        let at: ZonedDateTime = "2026-11-25T12:00:00.9+00:00[UTC]".parse().unwrap();
        assert_eq!(
            to_whole_seconds(at).timestamp().to_string(),
            "2026-11-25T12:00:00Z"
        );
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
