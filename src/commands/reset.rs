//! `keyswitch reset`: end the cooldown of one key, or of every key.

use anyhow::Result;

use super::Context;
use crate::events::Event;
use crate::pool::Pool;

pub fn run(ctx: &Context, name: Option<&str>) -> Result<()> {
    let now = ctx.now.timestamp();
    let mut pool = Pool::lock(ctx.dirs.clone(), now)?;
    let names: Vec<String> = match name {
        Some(name) => vec![pool.config.keys[pool.resolve(name)?].name.clone()],
        None => pool.config.keys.iter().map(|k| k.name.clone()).collect(),
    };
    let mut ended = Vec::new();
    for name in &names {
        if pool
            .state
            .cooldowns
            .remove(name)
            .is_some_and(|c| crate::cooldown::is_cooling(&c, now))
        {
            ended.push(name.clone());
        }
    }
    let logged_key = match name {
        Some(_) => names.first().map(String::as_str),
        None => None,
    };
    let mut event = Event::new(now, "reset", logged_key, Some("manual"));
    if name.is_none() {
        event = event.with_detail("every key");
    }
    pool.log(event);
    let switched_to = pool.note_switch(now, "manual", None);
    super::settle(&mut pool, now)?;
    if ended.is_empty() {
        eprintln!("keyswitch: no cooldown was running; nothing to end");
    } else {
        eprintln!("keyswitch: ended the cooldown of {}", ended.join(", "));
    }
    if let Some(to) = switched_to {
        eprintln!("keyswitch: now handing out {to}");
    }
    Ok(())
}
