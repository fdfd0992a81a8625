//! `keyswitch status`: one short line for a status bar (in subscription-first mode the
//! subscription comes first: `subscription: limited until 20:06 (…) · on primary`). Reads no
//! secret and never touches the keychain, so it works (and is fast) even when the keychain is
//! unavailable. In proxy mode the active key's headroom is one segment of it, read from the
//! headroom file (never locked).

use anyhow::Result;
use jiff::{SignedDuration, Timestamp};

use super::{Context, out};
use crate::claude::wiring::HELPER_TTL_MS;
use crate::pool::Pool;
use crate::select::{Availability, candidates};
use crate::timespec::{local_clock, until_in_words};

pub fn run(ctx: &Context) -> Result<()> {
    let now = ctx.now.timestamp();
    let pool = Pool::read(ctx.dirs.clone(), now)?;
    out(&line(&pool, ctx))
}

fn line(pool: &Pool, ctx: &Context) -> String {
    let now = ctx.now.timestamp();
    if pool.config().keys.is_empty() {
        return "keyswitch: no keys (keyswitch add NAME)".to_string();
    }
    let availability = pool.availability(now);
    let active = candidates(&availability).first().copied();
    // Proxy mode: no wait for sessions to follow, and the headroom the proxy read.
    let mode = crate::mode::Mode::load(&pool.dirs);
    let proxy = crate::mode::proxy_chosen(&mode);
    let names = |i: usize| pool.config().keys[i].name.as_str();
    let mut parts = Vec::new();
    let subscription = mode
        .is_ok_and(|m| m.is_subscription_first())
        .then(|| subscription_part(pool, ctx));
    let on_subscription = subscription.as_ref().is_some_and(|(_, held)| !held);
    if let Some((part, _)) = subscription {
        parts.push(part);
    }
    match active {
        Some(active) => {
            let mut head = match on_subscription {
                true => format!("standby key: {}", names(active)),
                false if parts.is_empty() => format!("key: {}", names(active)),
                false => format!("on {}", names(active)),
            };
            if let Some(settled) = sessions_follow_by(pool, active, now, proxy) {
                // A cooldown that simply ran out touches no settings file: running sessions
                // come back only when their cached key expires.
                head.push_str(&format!(
                    " (running sessions move to it {})",
                    until_in_words(settled, now).replacen("in ", "within ", 1)
                ));
            }
            if let Availability::CoolingUntil(until) = availability[active] {
                head.push_str(&format!(
                    " (all cooling; back {} {})",
                    local_clock(until, &ctx.now),
                    until_in_words(until, now)
                ));
            }
            parts.push(head);
            if proxy {
                parts.extend(headroom(pool, names(active), ctx));
            }
        }
        None => parts.push("key: none usable".to_string()),
    }
    let next_back = availability
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match a {
            Availability::CoolingUntil(until) if Some(i) != active => Some((*until, i)),
            _ => None,
        })
        .min();
    if let Some((until, i)) = next_back {
        parts.push(format!(
            "{} back {} ({})",
            names(i),
            local_clock(until, &ctx.now),
            until_in_words(until, now)
        ));
    }
    let rejected: Vec<&str> = availability
        .iter()
        .enumerate()
        .filter(|(_, a)| **a == Availability::SetAside)
        .map(|(i, _)| names(i))
        .collect();
    if !rejected.is_empty() {
        parts.push(format!(
            "{} rejected: replace or reset",
            rejected.join(", ")
        ));
    }
    parts.join(" · ")
}

/// The active key's headroom segment, when the proxy has figures for it.
fn headroom(pool: &Pool, name: &str, ctx: &Context) -> Option<String> {
    let book = crate::headroom::store::Book::load(&pool.dirs.headroom_file());
    crate::headroom::show::status_segment(book.key(name), ctx.now.date(), ctx.now.timestamp())
}

/// Subscription-first mode's subscription, shown first, and whether it is held (sessions on
/// the keys).
fn subscription_part(pool: &Pool, ctx: &Context) -> (String, bool) {
    let now = ctx.now.timestamp();
    match crate::subscription::hold::load(&pool.dirs) {
        Some(hold) if !hold.is_over(now) => (
            format!(
                "subscription: limited until {} ({}, {})",
                local_clock(hold.until, &ctx.now),
                until_in_words(hold.until, now),
                hold.what()
            ),
            true,
        ),
        Some(_) => (
            "subscription: limit reset (sessions move back at their next helper refresh)"
                .to_string(),
            true,
        ),
        None => ("subscription".to_string(), false),
    }
}

/// When every running session has the active key, if that is still ahead: a cooldown that ended
/// by itself less than one helper refresh interval ago leaves sessions on the key they had until
/// their cached key expires (`get` is asked again only then).
/// In proxy mode there is no such delay: the proxy picks the key per request.
fn sessions_follow_by(
    pool: &Pool,
    active: usize,
    now: Timestamp,
    proxy: bool,
) -> Option<Timestamp> {
    if proxy {
        return None;
    }
    let name = &pool.config().keys[active].name;
    let ended = pool.state().cooldowns.get(name)?.until?;
    let refresh = SignedDuration::from_millis(HELPER_TTL_MS.parse().ok()?);
    let settled = ended.checked_add(refresh).ok()?;
    (ended <= now && settled > now).then_some(settled)
}
