//! `keyswitch hook stop-failure`: what Claude Code's StopFailure hook runs when a turn ends on
//! an API error. Marks the key the failing session was handed, then moves running sessions on;
//! in subscription-first mode, first sees whether the session was on the subscription
//! ([`subscription`]).
//! Always exits 0 and prints nothing on stdout: Claude Code ignores both, and a hook must never
//! get in the way. Problems go to the event log (and stderr).

use std::io::{IsTerminal, Read};

use anyhow::Result;

use super::Context;
use crate::claude::hook_input::StopFailure;
use crate::claude::sessions;
use crate::events::{Event, EventKind};
use crate::failure::Failure;
use crate::pool::{Mark, Marked, Pool};
use crate::reason::Source;
use crate::timespec::{local_clock, until_in_words};

mod subscription;

/// Hook input larger than this is not what Claude Code sends; it is refused unread.
const MAX_INPUT: u64 = 1024 * 1024;

pub fn stop_failure(ctx: &Context) {
    if let Err(e) = run(ctx) {
        say!(
            "keyswitch: hook stop-failure: {}",
            crate::error::one_line(&e)
        );
    }
}

fn run(ctx: &Context) -> Result<()> {
    let now = ctx.now.timestamp();
    let input = read_input();
    let mut pool = Pool::lock(ctx.dirs.clone(), now)?;
    if subscription::handled(ctx, &mut pool, &input)? {
        return Ok(());
    }
    let found = match find(ctx, &pool, input, now) {
        Ok(found) => found,
        Err(Ignored { why, session }) => {
            pool.log(
                Event::new(now, EventKind::HookIgnored, None, None)
                    .with_detail(why)
                    .with_session(session),
            );
            return pool.commit();
        }
    };
    let marked = pool.mark(found.index, &found.mark, found.session.as_deref(), now);
    let active = pool.active_name(now);
    super::settle(&mut pool, now)?;
    sessions::prune(&ctx.dirs.sessions(), now);
    drop(pool);
    tell(ctx, &found, &marked, active);
    Ok(())
}

/// A failure the hook marks a key for.
struct Found {
    index: usize,
    mark: Mark,
    failure: Failure,
    /// Claude Code's word for the error, as it reported it.
    error: String,
    session: Option<String>,
}

/// Why the hook marks nothing, for the event log.
struct Ignored {
    why: String,
    session: Option<String>,
}

/// The key the failing session was handed and what its failure means; or why nothing is to be
/// marked.
fn find(
    ctx: &Context,
    pool: &Pool,
    input: Result<Vec<u8>, String>,
    now: jiff::Timestamp,
) -> Result<Found, Ignored> {
    let env_session = std::env::var("CLAUDE_CODE_SESSION_ID")
        .ok()
        .filter(|s| !s.is_empty());
    let parsed = match input.and_then(|bytes| StopFailure::parse(&bytes)) {
        Ok(parsed) => parsed,
        Err(why) => {
            return Err(Ignored {
                why,
                session: env_session,
            });
        }
    };
    let session = parsed.session_id.clone().or(env_session);
    let ignored = |why: String| Ignored {
        why,
        session: session.clone(),
    };
    let failure = parsed.failure(pool.config().gateway_rules(), now);
    if failure.mark(Source::Hook, None).is_none() {
        return Err(ignored(format!(
            "error {} is not about the key",
            parsed.error
        )));
    }
    if crate::mode::Mode::load(&ctx.dirs)
        .map_err(|e| ignored(crate::error::one_line(&e)))?
        .is_proxy()
    {
        // The session holds a token, not a key, and the proxy already marked whatever failed:
        // an error that reaches Claude Code was the proxy's own answer.
        return Err(ignored(format!(
            "proxy mode: the proxy marks keys itself; this {} came from the proxy",
            parsed.error
        )));
    }
    // The key this session was handed; the active key only when keyswitch has no record.
    let claude_pid = std::env::var("CLAUDE_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok());
    let record = claude_pid.and_then(|pid| sessions::handed_to(&ctx.dirs.sessions(), pid));
    let handed = record.as_ref().and_then(|h| pool.config().position(&h.key));
    if let (Some(record), None) = (&record, handed) {
        // Marking the active key instead would punish a key this session never used.
        return Err(ignored(format!(
            "the key this session was handed, {}, is no longer configured",
            record.key
        )));
    }
    let Some(index) = handed.or_else(|| pool.active(now)) else {
        return Err(ignored("no keys are configured".to_string()));
    };
    let how_found = if handed.is_some() {
        "the key this session was handed"
    } else {
        "no record of this session's key; marked the active key"
    };
    let note = match failure.detail() {
        "" => how_found.to_string(),
        detail => format!("{detail}; {how_found}"),
    };
    let mark = failure
        .mark(Source::Hook, Some(note))
        .ok_or_else(|| ignored(format!("error {} is not about the key", parsed.error)))?;
    Ok(Found {
        index,
        mark,
        failure,
        error: parsed.error,
        session,
    })
}

/// A desktop notification of what changed: a rejected key, or a switch to the next key.
fn tell(ctx: &Context, found: &Found, marked: &Marked, active: Option<String>) {
    let now = ctx.now.timestamp();
    let next = active.unwrap_or_else(|| "no key (all set aside)".to_string());
    let key = &marked.key;
    match found.failure {
        Failure::Revoked { .. } => crate::notify::notify(
            &format!("keyswitch: {key} was rejected"),
            &format!(
                "The API refused it. It is set aside until you replace it (keyswitch add {key} --replace) or reset it. Now using {next}: send your message again."
            ),
        ),
        _ if marked.switched_to.is_some() => {
            let back = marked
                .cooldown
                .until
                .map(|u| {
                    format!(
                        " It returns at {} ({}).",
                        local_clock(u, &ctx.now),
                        until_in_words(u, now)
                    )
                })
                .unwrap_or_default();
            crate::notify::notify(
                &format!("keyswitch: now using {next}"),
                &format!(
                    "{key} ran out ({}).{back} Send your last message again.",
                    found.error
                ),
            );
        }
        _ => {}
    }
}

/// The hook's stdin, bounded. A terminal is not Claude Code: reading it would block.
fn read_input() -> Result<Vec<u8>, String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err("no hook input: stdin is a terminal".to_string());
    }
    let mut bytes = Vec::new();
    stdin
        .lock()
        .take(MAX_INPUT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the hook input: {e}"))?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err("hook input larger than 1 MiB".to_string());
    }
    Ok(bytes)
}
