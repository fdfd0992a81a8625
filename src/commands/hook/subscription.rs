//! The StopFailure hook in subscription-first mode. A session on the subscription that reached
//! its usage limit starts the hold (the helper is wired, sessions go on the keys); any other
//! failure of a session on the subscription marks nothing — it is no key's. A session that was
//! handed a key during the hold is judged as in helper mode.

use anyhow::Result;

use super::Context;
use crate::claude::hook_input::StopFailure;
use crate::claude::sessions;
use crate::events::{Event, EventKind};
use crate::mode::Mode;
use crate::pool::Pool;
use crate::subscription::hold;
use crate::subscription::limit::{self, Limit};

/// Whether the hook's work is done here; `false` leaves it to the key marking of helper mode.
pub(super) fn handled(
    ctx: &Context,
    pool: &mut Pool,
    input: &Result<Vec<u8>, String>,
) -> Result<bool> {
    let now = ctx.now.timestamp();
    if !Mode::load(&ctx.dirs).is_ok_and(|m| m.is_subscription_first()) {
        return Ok(false);
    }
    let Ok(parsed) = input
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|b| StopFailure::parse(b))
    else {
        return Ok(false);
    };
    let session = parsed.session_id.clone().or_else(|| {
        std::env::var("CLAUDE_CODE_SESSION_ID")
            .ok()
            .filter(|s| !s.is_empty())
    });
    if let Some(limit) = subscription_limit(&parsed, &ctx.now) {
        if pool.config().keys.is_empty() {
            ignore(
                pool,
                now,
                session,
                format!(
                    "the subscription's {} is reached, and no API key is configured to go on with (`keyswitch add primary`)",
                    limit
                        .claim
                        .as_ref()
                        .map_or("usage limit".to_string(), |c| c.describe())
                ),
            );
            return pool.commit().map(|()| true);
        }
        super::super::subscription::limit_reached(ctx, pool, &limit, session)?;
        return Ok(true);
    }
    if on_a_key(ctx) {
        return Ok(false);
    }
    ignore(
        pool,
        now,
        session,
        format!(
            "subscription-first mode: this session is on the subscription, and {} is not its usage limit; no key is marked",
            parsed.error
        ),
    );
    pool.commit().map(|()| true)
}

/// The usage limit, from the transcript (with the reset time as a timestamp) or else from the
/// message Claude Code showed.
fn subscription_limit(parsed: &StopFailure, now: &jiff::ZonedDateTime) -> Option<Limit> {
    // Claude Code reports the usage limit as a rate limit; any other failure (a 400 whose text
    // quotes the limit's words, say) is not one.
    if parsed.error != "rate_limit" {
        return None;
    }
    let mut limit = found_limit(parsed, now)?;
    // Weekly is the longest limit there is: a reset further out is no reset to wait for.
    let latest = now.timestamp() + jiff::SignedDuration::from_hours(8 * 24);
    limit.resets = limit.resets.map(|at| at.min(latest));
    // "You've hit your limit" names none: it is the usage limit all the same.
    limit
        .claim
        .get_or_insert_with(|| limit::Claim::Other("usage".to_string()));
    Some(limit)
}

fn found_limit(parsed: &StopFailure, now: &jiff::ZonedDateTime) -> Option<Limit> {
    let shown = parsed
        .last_assistant_message
        .as_deref()
        .and_then(|m| limit::from_message(m, now));
    match parsed
        .transcript_path
        .as_deref()
        .and_then(limit::from_transcript)
    {
        Some(mut found) => {
            // The transcript's epoch is exact; the message may still name the claim.
            if found.claim.is_none() {
                found.claim = shown.and_then(|s| s.claim);
            }
            Some(found)
        }
        None => shown,
    }
}

/// Whether the failing session was handed a key during the hold on now: only then is the
/// failure a key's. Without a hold every session is on the subscription.
fn on_a_key(ctx: &Context) -> bool {
    let Some(hold) = hold::load(&ctx.dirs) else {
        return false;
    };
    let claude_pid = std::env::var("CLAUDE_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok());
    claude_pid
        .and_then(|pid| sessions::handed_to(&ctx.dirs.sessions(), pid))
        .is_some_and(|h| h.at >= hold.since)
}

fn ignore(pool: &mut Pool, now: jiff::Timestamp, session: Option<String>, why: String) {
    pool.log(
        Event::new(now, EventKind::HookIgnored, None, None)
            .with_detail(why)
            .with_session(session),
    );
}
