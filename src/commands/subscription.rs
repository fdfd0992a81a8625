//! The subscription's hold in subscription-first mode, as the commands change it: the hook
//! starts one on the usage limit, `mark-exhausted subscription` starts one by hand, `reset
//! subscription` ends one, and `get` ends one whose reset time has passed. Each change is
//! logged under the name `subscription` and settled like a key's: the settings follow (the
//! helper wired while a hold is on), so running sessions switch on their next turn.

use anyhow::Result;
use jiff::{SignedDuration, Timestamp};

use super::Context;
use crate::error::refuse;
use crate::events::{Event, EventKind};
use crate::mode::Mode;
use crate::pool::Pool;
use crate::reason::Cause;
use crate::subscription::hold::{self, Hold};
use crate::subscription::limit::Claim;
use crate::subscription::{NAME, limit::Limit};
use crate::timespec::{local_clock, until_in_words};

/// How long a hold lasts when Claude Code said no reset time: the next turn after it tries the
/// subscription again (and fails once more if it is still limited).
const UNKNOWN_RESET_HOLD: SignedDuration = SignedDuration::from_hours(1);
/// How long a hold lasts when the reset time given has just passed while the limit still held.
const JUST_RESET_HOLD: SignedDuration = SignedDuration::from_mins(1);

/// Starts (or lengthens) the hold for `limit`, wires the helper and tells the user.
pub fn limit_reached(
    ctx: &Context,
    pool: &mut Pool,
    limit: &Limit,
    session: Option<String>,
) -> Result<()> {
    let now = ctx.now.timestamp();
    let until = match limit.resets {
        Some(resets) if resets > now => resets,
        // Shown to the minute, the reset may lie just behind: still limited now.
        Some(_) => now.checked_add(JUST_RESET_HOLD)?,
        None => now.checked_add(UNKNOWN_RESET_HOLD)?,
    };
    let cause = Cause::Hook(crate::reason::Reason::RateLimit);
    let hold = start(ctx, pool, until, limit.claim.clone(), cause, session)?;
    let on = pool
        .active_name(now)
        .map_or_else(|| "no key".to_string(), |k| format!("key {k}"));
    crate::notify::notify(
        &format!(
            "keyswitch: subscription limit until {} — on {on}",
            local_clock(hold.until, &ctx.now)
        ),
        &format!(
            "Your {} is reached; sessions use your API keys until it resets ({}), billed to the key. Send your last message again: the first turn on the key rebuilds the prompt cache and keeps the session's model.",
            hold.what(),
            until_in_words(hold.until, now)
        ),
    );
    Ok(())
}

/// Writes the hold (never shortening one on now), logs it and settles. Returns the hold.
fn start(
    ctx: &Context,
    pool: &mut Pool,
    until: Timestamp,
    claim: Option<Claim>,
    cause: Cause,
    session: Option<String>,
) -> Result<Hold> {
    let now = ctx.now.timestamp();
    let current = hold::load(&pool.dirs).filter(|h| !h.is_over(now));
    let hold = Hold {
        since: current.as_ref().map_or(now, |h| h.since),
        until: current.as_ref().map_or(until, |h| h.until.max(until)),
        claim: claim.or_else(|| current.and_then(|h| h.claim)),
        cause: cause.clone(),
    };
    hold::save(&pool.dirs, &hold)?;
    pool.log(
        Event::new(now, EventKind::Mark, Some(NAME), Some(cause))
            .with_detail(format!(
                "{} until {}; sessions use the API keys meanwhile",
                hold.what(),
                hold.until
            ))
            .with_session(session),
    );
    super::settle(pool, now)?;
    Ok(hold)
}

/// Ends the hold, if one is on: logs it and settles (the helper goes). Returns the hold ended.
fn end(ctx: &Context, pool: &mut Pool, cause: Cause) -> Result<Option<Hold>> {
    let now = ctx.now.timestamp();
    let Some(ended) = hold::load(&pool.dirs) else {
        return Ok(None);
    };
    hold::remove(&pool.dirs)?;
    pool.log(
        Event::new(now, EventKind::Reset, Some(NAME), Some(cause)).with_detail(format!(
            "{} over; sessions are back on the subscription",
            ended.what()
        )),
    );
    super::settle(pool, now)?;
    Ok(Some(ended))
}

/// `get`, in subscription-first mode: a hold whose reset time has passed ends here (nothing
/// runs in the background), so sessions are back on the subscription within one helper refresh
/// time of the reset. Reported, never fatal: the session still gets its key this once.
pub fn end_if_over(ctx: &Context) {
    let now = ctx.now.timestamp();
    if !hold::load(&ctx.dirs).is_some_and(|h| h.is_over(now)) {
        return;
    }
    let result = (|| -> Result<()> {
        let mut pool = Pool::lock(ctx.dirs.clone(), now)?;
        // Another `get` may have ended it, or the hook lengthened it, meanwhile.
        if !hold::load(&pool.dirs).is_some_and(|h| h.is_over(now)) {
            return Ok(());
        }
        if let Some(ended) = end(ctx, &mut pool, Cause::CooldownEnded)? {
            crate::notify::notify(
                "keyswitch: back on your subscription",
                &format!(
                    "Your {} reset; sessions use your subscription again from their next turn.",
                    ended.what()
                ),
            );
        }
        Ok(())
    })();
    if let Err(e) = result {
        crate::messages::warn_failed("take the sessions back to the subscription", &e);
    }
}

/// `mark-exhausted subscription --for|--until`: the subscription set aside by hand.
pub fn mark(ctx: &Context, until: Option<Timestamp>) -> Result<()> {
    require_mode(ctx)?;
    let Some(until) = until else {
        return Err(refuse(
            "say until when the subscription is set aside: `keyswitch mark-exhausted subscription --for 5h` or `--until 20:06`",
        ));
    };
    let now = ctx.now.timestamp();
    let mut pool = Pool::lock(ctx.dirs.clone(), now)?;
    if pool.config().keys.is_empty() {
        return Err(refuse(crate::messages::NO_KEYS_YET));
    }
    let hold = start(ctx, &mut pool, until, None, Cause::Manual, None)?;
    let longer = if hold.until > until {
        " (a hold already ran longer; left as is)"
    } else {
        ""
    };
    say!(
        "keyswitch: subscription set aside until {} ({}){longer}; sessions use {} meanwhile, from their next turn",
        local_clock(hold.until, &ctx.now),
        until_in_words(hold.until, now),
        pool.active_name(now)
            .unwrap_or_else(|| "no key".to_string())
    );
    Ok(())
}

/// `reset subscription` (and `reset` of everything): sessions go back to the subscription.
pub fn reset(ctx: &Context, pool: &mut Pool, quiet_when_none: bool) -> Result<()> {
    match end(ctx, pool, Cause::Manual)? {
        Some(ended) => say!(
            "keyswitch: ended the subscription's hold ({}); sessions go back to the subscription from their next turn",
            ended.what()
        ),
        None if !quiet_when_none => {
            say!("keyswitch: the subscription is not held; nothing to end");
        }
        None => {}
    }
    Ok(())
}

/// The subscription is a name only in subscription-first mode.
pub fn require_mode(ctx: &Context) -> Result<()> {
    if Mode::load(&ctx.dirs)?.is_subscription_first() {
        return Ok(());
    }
    Err(refuse(
        "`subscription` is no key here: keyswitch is not in subscription-first mode (`keyswitch install --subscription-first` turns it on)",
    ))
}
