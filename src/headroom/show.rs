//! The headroom figures as people read them: money, token counts, a bar of the budget spent,
//! the cell `list` shows for a key, the segment of the status line, the words for a report
//! that is old. Colours only when asked for (the caller knows whether it writes to a terminal).

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};

use super::store::{KeyFigures, Seen};
use super::{Reported, Window};
use crate::timespec::ago_in_words;

/// What `list` says for a key the proxy has no figures for.
pub const NOTHING_YET: &str = "no figures from this gateway yet";
/// What is said where the figures would be, in helper mode.
pub const NEED_PROXY: &str = "figures need proxy mode, whose proxy reads them off each answer (keyswitch install --proxy; over a subscription login with --keys-only, which bills every request to the keys)";
/// A report older than this is shown with its age.
const FRESH: SignedDuration = SignedDuration::from_hours(1);

/// Whether stdout is a terminal that takes colours (`NO_COLOR` unset).
pub fn colour_on_stdout() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// "$4.02"; "$0.0042" below a cent, where two decimals would say nothing.
pub fn money(amount: f64) -> String {
    if amount > 0.0 && amount < 0.01 {
        format!("${amount:.4}")
    } else {
        format!("${amount:.2}")
    }
}

/// "999", "12k", "1.2M", "3.4B".
pub fn tokens(n: u64) -> String {
    let scaled = |n: u64, size: f64, unit: &str| {
        let value = n as f64 / size;
        if value < 10.0 {
            format!("{:.1}{unit}", (value * 10.0).floor() / 10.0)
        } else {
            format!("{}{unit}", value.floor())
        }
    };
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => scaled(n, 1e3, "k"),
        1_000_000..1_000_000_000 => scaled(n, 1e6, "M"),
        _ => scaled(n, 1e9, "B"),
    }
}

/// `width` cells filled by `share` (0 to 1), in eighths: `█████▍░░░░`.
pub fn bar(share: f64, width: usize, colour: bool) -> String {
    const EIGHTHS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    let share = if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let eighths = (share * width as f64 * 8.0).round() as usize;
    let (full, part) = (eighths / 8, eighths % 8);
    let mut text = "█".repeat(full);
    text.push_str(EIGHTHS[part]);
    let used = full + usize::from(part > 0);
    let rest = "░".repeat(width.saturating_sub(used));
    if !colour {
        return text + &rest;
    }
    let code = if share >= 0.9 {
        "31"
    } else if share >= 0.75 {
        "33"
    } else {
        "32"
    };
    format!("\x1b[{code}m{text}\x1b[0m{rest}")
}

/// The bar and "$4.02 of $5.00", or "$4.02 spent" without a budget.
pub fn budget(reported: &Reported, width: usize, colour: bool) -> Option<String> {
    match (reported.spend, reported.max_budget) {
        (Some(spend), Some(max)) if max > 0.0 => Some(format!(
            "{} {} of {}",
            bar(spend / max, width, colour),
            money(spend),
            money(max)
        )),
        (Some(spend), _) => Some(format!("{} spent", money(spend))),
        (None, Some(max)) => Some(format!("budget {}", money(max))),
        (None, None) => None,
    }
}

/// The window with the least left, as "tokens 27k of 30k left".
pub fn tightest(reported: &Reported) -> Option<String> {
    let share = |w: &Window| match (w.remaining, w.limit) {
        (Some(left), Some(limit)) if limit > 0 => left as f64 / limit as f64,
        _ => 1.0,
    };
    let window = reported
        .windows
        .iter()
        .filter(|w| w.remaining.is_some())
        .min_by(|a, b| share(a).total_cmp(&share(b)))?;
    let left = tokens(window.remaining?);
    Some(match window.limit {
        Some(limit) => format!("{} {left} of {} left", window.name, tokens(limit)),
        None => format!("{} {left} left", window.name),
    })
}

/// " (as of 3h ago)" for a report older than an hour; nothing for a fresh one.
fn age(seen: &Seen, now: Timestamp) -> String {
    if now.duration_since(seen.at) < FRESH {
        String::new()
    } else {
        format!(" (as of {})", ago_in_words(seen.at, now))
    }
}

/// What the gateway last said, in words: the budget, else the tightest window.
pub fn report_words(seen: &Seen, width: usize, now: Timestamp, colour: bool) -> Option<String> {
    let words = budget(&seen.reported, width, colour).or_else(|| tightest(&seen.reported))?;
    Some(words + &age(seen, now))
}

/// `list`'s cell for a key: "████████░░ $4.02 of $5.00 · 1.2M tokens today".
pub fn list_cell(
    figures: Option<&KeyFigures>,
    today: Date,
    now: Timestamp,
    colour: bool,
) -> String {
    let Some(figures) = figures else {
        return NOTHING_YET.to_string();
    };
    let mut parts = Vec::new();
    if let Some(words) = figures
        .reported
        .as_ref()
        .and_then(|seen| report_words(seen, 10, now, colour))
    {
        parts.push(words);
    }
    let used = figures.day(today).tokens();
    if used > 0 || !figures.days.is_empty() {
        parts.push(format!("{} tokens today", tokens(used)));
    }
    if parts.is_empty() {
        return NOTHING_YET.to_string();
    }
    parts.join(" · ")
}

/// The status line's one segment for the active key: "████░ $4.02/$5.00, 1.2M tok today"
/// (with the report's age when it is old); `None` when nothing is known.
pub fn status_segment(figures: Option<&KeyFigures>, today: Date, now: Timestamp) -> Option<String> {
    let figures = figures?;
    let mut parts = Vec::new();
    if let Some(seen) = &figures.reported {
        let r = &seen.reported;
        let words = match (r.spend, r.max_budget) {
            (Some(spend), Some(max)) if max > 0.0 => Some(format!(
                "{} {}/{}",
                bar(spend / max, 5, false),
                money(spend),
                money(max)
            )),
            (Some(spend), _) => Some(format!("{} spent", money(spend))),
            _ => tightest(r),
        };
        if let Some(words) = words {
            let old = now.duration_since(seen.at) >= FRESH;
            parts.push(match old {
                true => format!("{words} ({})", ago_in_words(seen.at, now)),
                false => words,
            });
        }
    }
    let used = figures.day(today).tokens();
    if used > 0 {
        parts.push(format!("{} tok today", tokens(used)));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headroom::Tally;

    fn figures(spend: Option<f64>, max: Option<f64>, today_tokens: u64) -> KeyFigures {
        let mut f = KeyFigures {
            reported: Some(Seen {
                at: "2026-12-01T09:30:00Z".parse().unwrap(),
                reported: Reported {
                    spend,
                    max_budget: max,
                    windows: Vec::new(),
                },
            }),
            ..KeyFigures::default()
        };
        f.days.insert(
            "2026-12-01".parse().unwrap(),
            Tally {
                input: today_tokens,
                ..Tally::default()
            },
        );
        f
    }

    fn today() -> Date {
        "2026-12-01".parse().unwrap()
    }

    fn now() -> Timestamp {
        "2026-12-01T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(money(4.02), "$4.02");
        assert_eq!(money(0.0042), "$0.0042");
        assert_eq!(money(0.0), "$0.00");
        assert_eq!(tokens(999), "999");
        assert_eq!(tokens(1_234), "1.2k");
        assert_eq!(tokens(34_999), "34k");
        assert_eq!(tokens(1_250_000), "1.2M");
        assert_eq!(tokens(3_400_000_000), "3.4B");
        assert_eq!(bar(0.804, 10, false), "████████░░");
        assert_eq!(bar(0.55, 10, false), "█████▌░░░░");
        assert_eq!(bar(2.0, 4, false), "████");
        assert_eq!(bar(f64::NAN, 3, false), "░░░");
        assert_eq!(bar(0.95, 2, true), "\u{1b}[31m█▉\u{1b}[0m");
    }

    #[test]
    fn the_list_cell_and_the_status_segment() {
        let f = figures(Some(4.02), Some(5.0), 1_200_000);
        assert_eq!(
            list_cell(Some(&f), today(), now(), false),
            "████████░░ $4.02 of $5.00 · 1.2M tokens today"
        );
        assert_eq!(
            status_segment(Some(&f), today(), now()).unwrap(),
            "████░ $4.02/$5.00, 1.2M tok today"
        );
        // An old report says how old it is; no budget says the spend alone.
        let later: Timestamp = "2026-12-01T13:45:00Z".parse().unwrap();
        let f = figures(Some(4.02), None, 0);
        assert_eq!(
            list_cell(Some(&f), today(), later, false),
            "$4.02 spent (as of 4h 15m ago) · 0 tokens today"
        );
        assert_eq!(
            status_segment(Some(&f), today(), later).unwrap(),
            "$4.02 spent (4h 15m ago)"
        );
        assert_eq!(list_cell(None, today(), now(), false), NOTHING_YET);
        assert_eq!(status_segment(None, today(), now()), None);
        assert_eq!(
            list_cell(Some(&KeyFigures::default()), today(), now(), false),
            NOTHING_YET
        );
    }

    #[test]
    fn without_a_budget_the_tightest_window_is_shown() {
        let mut f = KeyFigures::default();
        let window = |name: &str, remaining, limit| Window {
            name: name.into(),
            remaining: Some(remaining),
            limit: Some(limit),
            reset: None,
        };
        f.reported = Some(Seen {
            at: now(),
            reported: Reported {
                windows: vec![window("requests", 40, 50), window("tokens", 3_000, 30_000)],
                ..Reported::default()
            },
        });
        assert_eq!(
            list_cell(Some(&f), today(), now(), false),
            "tokens 3.0k of 30k left"
        );
    }
}
