//! `keyswitch reset`: end the cooldown of one key, or of every key (and, in subscription-first
//! mode, the subscription's hold: `reset subscription` ends only that).

use anyhow::Result;

use super::Context;
use crate::pool::Pool;

pub fn run(ctx: &Context, name: Option<&str>) -> Result<()> {
    let now = ctx.now.timestamp();
    if name.is_some_and(crate::subscription::is_name) {
        super::subscription::require_mode(ctx)?;
        let mut pool = Pool::lock(ctx.dirs.clone(), now)?;
        return super::subscription::reset(ctx, &mut pool, false);
    }
    let mut pool = Pool::lock(ctx.dirs.clone(), now)?;
    if name.is_none() && crate::mode::Mode::load(&ctx.dirs).is_ok_and(|m| m.is_subscription_first())
    {
        super::subscription::reset(ctx, &mut pool, true)?;
    }
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
