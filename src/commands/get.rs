//! `keyswitch get`: Claude Code's apiKeyHelper. Prints the key to use now and nothing else.
//! It runs at every session start and refresh, so it reads without locking and writes only when
//! the active key changed.

use std::io::Write;

use anyhow::{Result, anyhow};
use jiff::Timestamp;

use super::{Context, open_keychain};
use crate::pool::Pool;
use crate::select::Availability;
use crate::timespec::{local_clock, until_in_words};

pub fn run(ctx: &Context) -> Result<()> {
    let now = ctx.now.timestamp();
    let pool = Pool::read(ctx.dirs.clone(), now)?;
    if pool.config.keys.is_empty() {
        return Err(anyhow!(
            "no keys yet: add one with `keyswitch add primary` (the secret is read from stdin or a hidden prompt)"
        ));
    }
    let order = pool.candidates(now);
    if order.is_empty() {
        return Err(anyhow!(
            "every key was rejected by the API and is set aside: give one a new secret with `keyswitch add NAME --replace`, or `keyswitch reset NAME`"
        ));
    }
    let keychain = open_keychain(&pool.config)?;
    let availability = pool.availability(now);
    for index in order {
        let name = &pool.config.keys[index].name;
        let Some(secret) = keychain.read(name)? else {
            eprintln!(
                "keyswitch: warning: {name} has no secret in {}; skipping it (store one with `keyswitch add {name} --replace`)",
                keychain.kind().describe()
            );
            continue;
        };
        if let Availability::CoolingUntil(until) = availability[index] {
            eprintln!(
                "keyswitch: warning: every key is cooling down; handing out {name}, back at {} ({})",
                local_clock(until, &ctx.now),
                until_in_words(until, now)
            );
        }
        print_secret(&secret)?;
        record_hand_out(ctx, &pool, name, now);
        return Ok(());
    }
    Err(anyhow!(
        "no key has a secret in {}: store one with `keyswitch add NAME --replace`",
        keychain.kind().describe()
    ))
}

fn print_secret(secret: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(secret.as_bytes())?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}

/// Records a change of active key, if the lock is free: a busy lock means another keyswitch is
/// writing, and the next `get` records it instead. Failures here must not cost the user the key
/// already printed, so they are reported and swallowed.
fn record_hand_out(ctx: &Context, pool: &Pool, name: &str, now: Timestamp) {
    if pool.state.last_active.as_deref() == Some(name) {
        return;
    }
    let result = (|| -> Result<()> {
        let Some(mut locked) = Pool::try_lock(ctx.dirs.clone(), now)? else {
            return Ok(());
        };
        let previous = locked
            .state
            .last_active
            .as_deref()
            .and_then(|p| locked.config.position(p));
        let reason = match (previous, locked.config.position(name)) {
            (Some(p), Some(n)) if n < p => "cooldown-ended",
            _ => "failover",
        };
        locked.note_switch(now, reason, None);
        locked.commit()
    })();
    if let Err(e) = result {
        eprintln!(
            "keyswitch: warning: could not record the switch to {name}: {}",
            crate::error::one_line(&e)
        );
    }
}
