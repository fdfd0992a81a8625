//! `keyswitch set`: changes a key's endpoint or cooldown in the config, keeping its secret
//! (the keychain is not touched) and its position, and says exactly what changed.

use anyhow::Result;

use super::Context;
use super::key_options::{KeyOptions, Words};
use crate::claude::live::Nudge;
use crate::error::refuse;
use crate::pool::Pool;

pub fn run(ctx: &Context, name: &str, options: &KeyOptions) -> Result<()> {
    if !options.any() {
        return Err(refuse(format!(
            "nothing to set for {name}: give --endpoint URL or --no-endpoint, and/or --cooldown DURATION or --no-cooldown"
        )));
    }
    let now = ctx.now.timestamp();
    // An unknown key, or an endpoint that is a keyswitch proxy, before the lock: the check
    // of the endpoint asks what answers there, which takes a moment.
    Pool::read(ctx.dirs.clone(), now)?.resolve(name)?;
    options.check(&ctx.dirs)?;

    let mut pool = Pool::lock(ctx.dirs.clone(), now)?;
    let index = pool.resolve(name)?;
    let words = Words::new(&ctx.dirs, pool.config());
    let Some(before) = pool.set_options(index, |key| options.apply(key), now)? else {
        let key = pool.key(index);
        say!(
            "keyswitch: {}: nothing changed ({} already)",
            key.name,
            words.current(key, options).join(", ")
        );
        return Ok(());
    };
    let changes = words.changes(&before, pool.key(index));
    // Helper mode: Claude Code's base URL follows the active key's endpoint. Proxy mode: the
    // proxy reads the config again on its next request, as the file changed.
    super::settle_with(&mut pool, now, Nudge::IfChanged)?;
    say!("keyswitch: {}: {}", before.name, changes.join("; "));
    Ok(())
}
