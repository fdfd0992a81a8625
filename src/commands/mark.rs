//! `keyswitch mark-exhausted`: start a cooldown. Never shortens one already running.

use anyhow::Result;
use jiff::Timestamp;

use super::Context;
use crate::claude::live::Nudge;
use crate::cooldown::{Length, next_cooldown};
use crate::error::refuse;
use crate::events::Event;
use crate::pool::Pool;
use crate::timespec::{local_clock, parse_duration, parse_future_time, until_in_words};

pub fn run(
    ctx: &Context,
    name: Option<&str>,
    for_duration: Option<&str>,
    until: Option<&str>,
) -> Result<()> {
    let now = ctx.now.timestamp();
    // Parse before locking: bad input changes nothing.
    let explicit = match (for_duration, until) {
        (Some(d), _) => Some(now.checked_add(parse_duration(d)?).map_err(|_| {
            refuse(format!(
                "'{d}' reaches past the end of time: give a shorter duration"
            ))
        })?),
        (None, Some(t)) => Some(parse_future_time(t, &ctx.now)?),
        (None, None) => None,
    };
    let mut pool = Pool::lock(ctx.dirs.clone(), now)?;
    let index = match name {
        Some(name) => pool.resolve(name)?,
        None => pool.active(now).ok_or_else(|| {
            refuse("there is no active key to mark: add one with `keyswitch add NAME`, or name the key to mark")
        })?,
    };
    let key = pool.config.keys[index].clone();
    let length = match explicit {
        Some(until) => Length::Explicit(until),
        None => Length::Default(
            key.cooldown()
                .unwrap_or_else(|| pool.config.default_cooldown()),
        ),
    };
    let previous = pool.state.cooldowns.get(&key.name).cloned();
    let cooldown = next_cooldown(previous.as_ref(), length, "manual", now);
    let unchanged = previous.as_ref() == Some(&cooldown);
    // A mark that changes nothing is recorded as what it was, the same word the hook uses.
    let event = if unchanged { "already-cooling" } else { "mark" };
    pool.state
        .cooldowns
        .insert(key.name.clone(), cooldown.clone());
    pool.log(
        Event::new(now, event, Some(&key.name), Some("manual"))
            .with_detail(describe_until(cooldown.until)),
    );
    let switched_to = pool.note_switch(now, "manual", None);
    let active = pool.active_name(now);
    if unchanged {
        super::settle_with(&mut pool, now, Nudge::IfChanged)?;
    } else {
        super::settle(&mut pool, now)?;
    }

    let when = match cooldown.until {
        Some(until) => format!(
            "until {} ({})",
            local_clock(until, &ctx.now),
            until_in_words(until, now)
        ),
        None => "until you reset or replace it".to_string(),
    };
    if unchanged {
        eprintln!(
            "keyswitch: {} already cools down {when}, longer than asked; left as is",
            key.name
        );
    } else {
        eprintln!("keyswitch: {} cools down {when}", key.name);
    }
    match (switched_to, active) {
        (Some(to), _) => eprintln!("keyswitch: now handing out {to}"),
        (None, Some(active)) if active == key.name => {
            eprintln!(
                "keyswitch: every key is cooling down; {active} returns first and is still handed out"
            )
        }
        _ => {}
    }
    Ok(())
}

fn describe_until(until: Option<Timestamp>) -> String {
    match until {
        Some(until) => format!("until {until}"),
        None => "set aside until reset".to_string(),
    }
}
