//! `keyswitch log`: the event log, newest last.
//!
//! Fields can come from Claude Code's hook input, so text output escapes control characters:
//! a log line must never move the cursor, retitle the terminal or forge a line of its own.

use anyhow::Result;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};
use serde_json::json;

use super::{Context, out};
use crate::events::{self, Event};
use crate::reason::Cause;
use crate::timespec::ago_in_words;

pub fn run(ctx: &Context, json: bool) -> Result<()> {
    let events = events::read(&ctx.dirs.event_log())?;
    if json {
        // serde_json escapes control characters itself.
        let rows: Vec<_> = events
            .iter()
            .map(|e| {
                json!({
                    "time": e.time.to_string(),
                    "event": e.event,
                    "key": e.key,
                    "reason": e.reason,
                    "session_id": e.session_id,
                    "detail": e.detail,
                })
            })
            .collect();
        return out(&serde_json::to_string_pretty(&rows)?);
    }
    if events.is_empty() {
        say!("keyswitch: the event log is empty");
        return Ok(());
    }
    for line in lines(&events, &ctx.now) {
        out(&line)?;
    }
    Ok(())
}

/// The log as aligned text lines, every time in `now`'s zone.
fn lines(events: &[Event], now: &ZonedDateTime) -> Vec<String> {
    let zone = now.time_zone();
    let rows: Vec<[String; 4]> = events
        .iter()
        .map(|e| {
            [
                local(e.time, zone),
                printable(e.event.as_str()),
                printable(e.key.as_deref().unwrap_or("-")),
                printable(&e.reason.as_ref().map_or("-".to_string(), Cause::to_string)),
            ]
        })
        .collect();
    let mut widths = [0usize; 4];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    rows.iter()
        .zip(events)
        .map(|(row, e)| {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(widths) {
                line.push_str(&format!("{cell:<width$}  "));
            }
            if let Some(detail) = &e.detail {
                line.push_str(&format!("{}  ", printable(&local_times(detail, zone))));
            }
            if let Some(session) = &e.session_id {
                line.push_str(&format!("[session {}]  ", printable(session)));
            }
            line.push_str(&format!("({})", ago_in_words(e.time, now.timestamp())));
            line
        })
        .collect()
}

fn local(at: Timestamp, zone: &TimeZone) -> String {
    at.to_zoned_datetime(zone.clone())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Details were written with UTC timestamps (`until 2026-11-25T13:00:00Z`); shown in the same
/// local time as the first column.
fn local_times(detail: &str, zone: &TimeZone) -> String {
    detail
        .split(' ')
        .map(|word| match word.parse::<Timestamp>() {
            Ok(at) => local(at, zone),
            Err(_) => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` with every control character, and every character that reorders or hides text
/// (bidirectional overrides, zero-width marks), written as a visible escape like `\u{1b}`.
pub fn printable(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || is_invisible_format(c) {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> ZonedDateTime {
        "2026-11-25T12:00:00+01:00[Europe/Berlin]".parse().unwrap()
    }

    fn event(event: &str, key: &str, reason: &str) -> Event {
        Event::new(
            "2026-11-25T10:00:00Z".parse().unwrap(),
            event.to_string().into(),
            Some(key),
            Some(reason.to_string().into()),
        )
    }

    #[test]
    fn control_characters_are_escaped() {
        let e = event("mark", "primary", "hook:\u{1b}]0;owned\u{7}")
            .with_session(Some("s\r\nfake line".into()))
            .with_detail("a\u{202E}b\tc");
        let line = &lines(&[e], &now())[0];
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        assert!(line.contains(r"hook:\u{1b}]0;owned\u{7}"), "{line}");
        assert!(line.contains(r"s\r\nfake line"), "{line}");
        assert!(line.contains(r"a\u{202e}b\tc"), "{line}");
    }

    #[test]
    fn columns_line_up_whatever_the_lengths() {
        let events = [
            event("mark", "a", "manual"),
            event(
                "already-cooling",
                "a-much-longer-key-name",
                "hook:rate_limit",
            ),
            event("switch", "b", "cooldown-ended"),
        ];
        let lines = lines(&events, &now());
        let starts = |needle: &str| -> Vec<usize> {
            lines
                .iter()
                .map(|l| l.find(needle).expect(needle))
                .collect()
        };
        // The reason column starts at the same place on every line.
        let reasons: Vec<usize> = lines
            .iter()
            .zip(["manual", "hook:rate_limit", "cooldown-ended"])
            .map(|(l, r)| l.find(r).unwrap())
            .collect();
        assert!(reasons.windows(2).all(|w| w[0] == w[1]), "{lines:#?}");
        let ago = starts("(");
        assert!(ago.windows(2).all(|w| w[0] == w[1]), "{lines:#?}");
    }

    #[test]
    fn every_time_is_local() {
        let e = event("mark", "a", "manual").with_detail("until 2026-11-25T13:00:00Z");
        let line = &lines(&[e], &now())[0];
        // 10:00Z and 13:00Z in Berlin (UTC+1).
        assert!(line.starts_with("2026-11-25 11:00:00"), "{line}");
        assert!(line.contains("until 2026-11-25 14:00:00"), "{line}");
        assert!(!line.contains('Z'), "{line}");
    }
}
