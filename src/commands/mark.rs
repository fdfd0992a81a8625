//! `keyswitch mark-exhausted`: start a cooldown. Never shortens one already running.

use anyhow::Result;
use jiff::Timestamp;

use super::Context;
use crate::claude::live::Nudge;
use crate::error::refuse;
use crate::pool::{Lasting, Mark, Pool};
use crate::reason::Cause;
use crate::select::Availability;
use crate::timespec::{local_clock, parse_duration, parse_future_time, until_in_words};

/// The end a `--for DURATION` or `--until TIME` asks for; `None` for the configured cooldown.
/// Parsed before anything is locked: bad input changes nothing.
pub fn requested_end(
    now: &jiff::ZonedDateTime,
    for_duration: Option<&str>,
    until: Option<&str>,
) -> Result<Option<Timestamp>> {
    Ok(match (for_duration, until) {
        (Some(d), _) => Some(
            now.timestamp()
                .checked_add(parse_duration(d)?)
                .map_err(|_| {
                    refuse(format!(
                        "'{d}' reaches past the end of time: give a shorter duration"
                    ))
                })?,
        ),
        (None, Some(t)) => Some(parse_future_time(t, now)?),
        (None, None) => None,
    })
}

/// Marks the key called `name` (the active key when `None`) until `until`, or for its
/// configured cooldown.
pub fn run(ctx: &Context, name: Option<&str>, until: Option<Timestamp>) -> Result<()> {
    if name.is_some_and(crate::subscription::is_name) {
        return super::subscription::mark(ctx, until);
    }
    let now = ctx.now.timestamp();
    let mut pool = Pool::lock(ctx.dirs.clone(), now)?;
    let index = match name {
        Some(name) => pool.resolve(name)?,
        None => pool.active(now).ok_or_else(|| {
            refuse("there is no active key to mark: add one with `keyswitch add NAME`, or name the key to mark")
        })?,
    };
    let mark = Mark {
        lasting: until.map_or(Lasting::Configured, Lasting::Until),
        cause: Cause::Manual,
        note: None,
    };
    let marked = pool.mark(index, &mark, None, now);
    if marked.changed {
        super::settle(&mut pool, now)?;
    } else {
        super::settle_with(&mut pool, now, Nudge::IfChanged)?;
    }
    let key = &marked.key;
    let when = match marked.cooldown.until {
        Some(until) => format!(
            "until {} ({})",
            local_clock(until, &ctx.now),
            until_in_words(until, now)
        ),
        None => "until you reset or replace it".to_string(),
    };
    if marked.changed {
        say!("keyswitch: {key} cools down {when}");
    } else {
        say!("keyswitch: {key} already cools down {when}, longer than asked; left as is");
    }
    let availability = pool.availability(now);
    if !availability
        .iter()
        .any(|a| matches!(a, Availability::Ready))
    {
        // "now handing out X" would read as if X worked: no key does until one returns.
        if let Some(first) = pool.active(now) {
            let returns = match availability[first] {
                Availability::CoolingUntil(until) => format!(
                    "at {} ({})",
                    local_clock(until, &ctx.now),
                    until_in_words(until, now)
                ),
                _ => "when you reset or replace it".to_string(),
            };
            say!(
                "keyswitch: no key is ready: every key is cooling down; {} returns first, {returns}, and is handed out meanwhile (`keyswitch add NAME` adds one)",
                pool.key(first).name
            );
        }
    } else if let Some(to) = marked.switched_to {
        say!("keyswitch: now handing out {to}");
    }
    Ok(())
}
