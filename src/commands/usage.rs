//! `keyswitch usage`: each key's tokens per day for the last [`DAYS`] days as a small bar
//! chart, under what its gateway last reported (budget spent, the tightest rate window), from
//! the headroom file the proxy writes; `--json` for scripts. Never locks, never reads a secret.

use anyhow::Result;
use jiff::civil::Date;
use jiff::{Span, Timestamp};
use serde_json::{Value, json};

use super::{Context, out};
use crate::headroom::Tally;
use crate::headroom::show::{self, NEED_PROXY, NOTHING_YET, tokens};
use crate::headroom::store::{Book, KeyFigures};
use crate::pool::Pool;

/// Days shown, today included.
pub const DAYS: i64 = 14;
/// The widest bar, in cells.
const BAR: usize = 24;

pub fn run(ctx: &Context, json: bool) -> Result<()> {
    let pool = Pool::read(ctx.dirs.clone(), ctx.now.timestamp())?;
    let names: Vec<&str> = pool.config().keys.iter().map(|k| k.name.as_str()).collect();
    let proxy = crate::mode::proxy_chosen(&crate::mode::Mode::load(&ctx.dirs));
    let book = if proxy {
        Book::load(&ctx.dirs.headroom_file())
    } else {
        Book::default()
    };
    let today = ctx.now.date();
    if json {
        let mut value = to_json(&book, &names, today);
        if !proxy {
            value["note"] = json!(NEED_PROXY);
        }
        return out(&serde_json::to_string_pretty(&value)?);
    }
    if names.is_empty() {
        say!("keyswitch: {}", crate::messages::NO_KEYS_YET);
        return Ok(());
    }
    if !proxy {
        return out(&format!("keyswitch usage: {NEED_PROXY}"));
    }
    let colour = show::colour_on_stdout();
    for line in chart(&book, &names, today, ctx.now.timestamp(), colour) {
        out(&line)?;
    }
    Ok(())
}

/// The days shown, oldest first.
fn days(today: Date) -> Vec<Date> {
    (0..DAYS)
        .rev()
        .filter_map(|back| today.checked_sub(Span::new().days(back)).ok())
        .collect()
}

/// The chart as lines: for each key, what its gateway reported, then a bar a day.
pub fn chart(
    book: &Book,
    names: &[&str],
    today: Date,
    now: Timestamp,
    colour: bool,
) -> Vec<String> {
    let days = days(today);
    let most = names
        .iter()
        .filter_map(|name| book.key(name))
        .flat_map(|f| days.iter().map(|d| f.day(*d).tokens()))
        .max()
        .unwrap_or(0)
        .max(1);
    let mut lines = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            lines.push(String::new());
        }
        let figures = book.key(name);
        let reported = figures
            .and_then(|f| f.reported.as_ref())
            .and_then(|seen| show::report_words(seen, 10, now, colour));
        let has_days = figures.is_some_and(|f| !f.days.is_empty());
        match (reported, has_days) {
            (Some(words), _) => lines.push(format!("{name}  {words}")),
            (None, true) => lines.push(name.to_string()),
            (None, false) => {
                lines.push(format!("{name}  {NOTHING_YET}"));
                continue;
            }
        }
        let figures = figures.cloned().unwrap_or_default();
        lines.extend(day_rows(&figures, &days, most, colour));
    }
    lines
}

/// One line a day: the date, the bar, the tokens and the requests.
fn day_rows(figures: &KeyFigures, days: &[Date], most: u64, colour: bool) -> Vec<String> {
    let mut total = Tally::default();
    let mut rows: Vec<String> = days
        .iter()
        .map(|date| {
            let tally = figures.day(*date);
            total.add(&tally);
            let label = date.strftime("%a %b %d");
            if tally.is_empty() {
                return format!("  {label}  {:BAR$}  -", "");
            }
            let bar = bar_of(tally.tokens(), most, colour);
            format!("  {label}  {bar}  {}", counts(&tally))
        })
        .collect();
    rows.push(format!(
        "  {:10}  {:BAR$}  {}",
        format!("{DAYS} days"),
        "",
        counts(&total)
    ));
    rows
}

/// A bar of `tokens` against `most`, in eighths, padded to [`BAR`] cells.
fn bar_of(tokens: u64, most: u64, colour: bool) -> String {
    const EIGHTHS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    let eighths = ((tokens as f64 / most as f64) * (BAR * 8) as f64).round() as usize;
    // A day with any tokens shows at least a sliver.
    let eighths = eighths.max(usize::from(tokens > 0));
    let (full, part) = (eighths / 8, eighths % 8);
    let text = "█".repeat(full) + EIGHTHS[part];
    let pad = " ".repeat(BAR.saturating_sub(full + usize::from(part > 0)));
    if colour {
        format!("\x1b[36m{text}\x1b[0m{pad}")
    } else {
        text + &pad
    }
}

/// "1.2M tokens · 340 requests · 2 failovers" (failovers only when there were any).
fn counts(tally: &Tally) -> String {
    let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let mut text = format!(
        "{} tokens · {}",
        tokens(tally.tokens()),
        plural(tally.requests, "request")
    );
    if tally.failovers > 0 {
        text.push_str(&format!(" · {}", plural(tally.failovers, "failover")));
    }
    text
}

/// `--json`: the days, and for each key its last report and a tally a day.
fn to_json(book: &Book, names: &[&str], today: Date) -> Value {
    let days = days(today);
    let keys: Vec<Value> = names
        .iter()
        .map(|name| {
            let figures = book.key(name);
            let per_day: Vec<Value> = days
                .iter()
                .map(|date| {
                    let tally = figures.map(|f| f.day(*date)).unwrap_or_default();
                    let mut one = json!(tally);
                    one["date"] = json!(date.to_string());
                    one["tokens"] = json!(tally.tokens());
                    one
                })
                .collect();
            json!({
                "name": name,
                "reported": figures.and_then(|f| f.reported.as_ref()),
                "days": per_day,
            })
        })
        .collect();
    json!({"today": today.to_string(), "keys": keys})
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
