//! `keyswitch reset`: end the cooldown of one key, or of every key.

use anyhow::Result;

use super::Context;
use crate::pool::Pool;

pub fn run(ctx: &Context, name: Option<&str>) -> Result<()> {
    let now = ctx.now.timestamp();
    let mut pool = Pool::lock(ctx.dirs.clone(), now)?;
    let index = name.map(|name| pool.resolve(name)).transpose()?;
    let (ended, switched_to) = pool.reset(index, now);
    super::settle(&mut pool, now)?;
    if ended.is_empty() {
        say!("keyswitch: no cooldown was running; nothing to end");
    } else {
        say!("keyswitch: ended the cooldown of {}", ended.join(", "));
    }
    if let Some(to) = switched_to {
        say!("keyswitch: now handing out {to}");
    }
    Ok(())
}
