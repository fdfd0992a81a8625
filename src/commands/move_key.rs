//! `keyswitch move`: reorder; position 1 is the primary.

use anyhow::Result;

use super::Context;
use crate::error::refuse;
use crate::events::Event;
use crate::pool::Pool;

pub fn run(ctx: &Context, name: &str, position: &str) -> Result<()> {
    let now = ctx.now.timestamp();
    let mut pool = Pool::lock(ctx.dirs.clone(), now)?;
    let from = pool.resolve(name)?;
    let count = pool.config.keys.len();
    let to = position
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|p| (1..=count).contains(p))
        .ok_or_else(|| {
            refuse(format!(
                "position '{position}' is out of range: give a number from 1 to {count} (1 is the primary)"
            ))
        })?;
    let key = pool.config.keys.remove(from);
    let moved = key.name.clone();
    pool.config.keys.insert(to - 1, key);
    pool.save_config()?;
    pool.log(
        Event::new(now, "move", Some(&moved), Some("manual"))
            .with_detail(format!("to position {to}")),
    );
    let switched_to = pool.note_switch(now, "manual", None);
    super::settle(&mut pool, now)?;
    eprintln!(
        "keyswitch: {moved} is now key {to}{}",
        if to == 1 { ", the primary" } else { "" }
    );
    if let Some(to) = switched_to {
        eprintln!("keyswitch: now handing out {to}");
    }
    Ok(())
}
