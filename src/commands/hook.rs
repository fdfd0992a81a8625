//! `keyswitch hook stop-failure`: what Claude Code's StopFailure hook runs when a turn ends on
//! an API error. Marks the key the failing session was handed, then moves running sessions on.
//! Always exits 0 and prints nothing on stdout: Claude Code ignores both, and a hook must never
//! get in the way. Problems go to the event log (and stderr).

use std::io::{IsTerminal, Read};

use anyhow::Result;

use super::Context;
use crate::claude::hook_input::{StopFailure, Verdict};
use crate::claude::sessions;
use crate::cooldown::{Length, is_cooling, next_cooldown};
use crate::events::Event;
use crate::pool::Pool;
use crate::timespec::{local_clock, until_in_words};

/// Hook input larger than this is not what Claude Code sends; it is refused unread.
const MAX_INPUT: u64 = 1024 * 1024;

pub fn stop_failure(ctx: &Context) {
    if let Err(e) = run(ctx) {
        eprintln!(
            "keyswitch: hook stop-failure: {}",
            crate::error::one_line(&e)
        );
    }
}

fn run(ctx: &Context) -> Result<()> {
    let now = ctx.now.timestamp();
    let input = read_input();
    let env_session = std::env::var("CLAUDE_CODE_SESSION_ID")
        .ok()
        .filter(|s| !s.is_empty());
    let claude_pid = std::env::var("CLAUDE_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok());

    let mut pool = Pool::lock(ctx.dirs.clone(), now)?;
    let ignored = |pool: &mut Pool, why: String, session: Option<String>| -> Result<()> {
        pool.log(
            Event::new(now, "hook-ignored", None, None)
                .with_detail(why)
                .with_session(session),
        );
        pool.commit()
    };
    let parsed = match input.and_then(|bytes| StopFailure::parse(&bytes)) {
        Ok(parsed) => parsed,
        Err(why) => return ignored(&mut pool, why, env_session),
    };
    let session = parsed.session_id.clone().or(env_session);
    let reason = format!("hook:{}", parsed.error);
    let verdict = parsed.verdict();
    if verdict == Verdict::NotTheKey {
        return ignored(
            &mut pool,
            format!("error {} is not about the key", parsed.error),
            session,
        );
    }

    if crate::mode::Mode::load(&ctx.dirs)?.is_proxy() {
        // The session holds a token, not a key, and the proxy already marked whatever failed:
        // an error that reaches Claude Code was the proxy's own answer.
        return ignored(
            &mut pool,
            format!(
                "proxy mode: the proxy marks keys itself; this {} came from the proxy",
                parsed.error
            ),
            session,
        );
    }

    // The key this session was handed; the active key only when keyswitch has no record.
    let record = claude_pid.and_then(|pid| sessions::handed_to(&ctx.dirs.sessions(), pid));
    let handed = record.as_ref().and_then(|h| pool.config.position(&h.key));
    if let (Some(record), None) = (&record, handed) {
        // Marking the active key instead would punish a key this session never used.
        let why = format!(
            "the key this session was handed, {}, is no longer configured",
            record.key
        );
        return ignored(&mut pool, why, session);
    }
    let Some(index) = handed.or_else(|| pool.active(now)) else {
        return ignored(&mut pool, "no keys are configured".to_string(), session);
    };
    let key = pool.config.keys[index].clone();
    let how_found = if handed.is_some() {
        "the key this session was handed"
    } else {
        "no record of this session's key; marked the active key"
    };

    let previous = pool.state.cooldowns.get(&key.name).cloned();
    let already = previous.as_ref().is_some_and(|c| is_cooling(c, now));
    let cooldown = if verdict == Verdict::Exhausted && already {
        // Another session failing on the same key got here first: one mark is enough.
        pool.log(
            Event::new(now, "already-cooling", Some(&key.name), Some(&reason))
                .with_detail(how_found)
                .with_session(session.clone()),
        );
        previous
    } else {
        let length = match verdict {
            Verdict::Rejected => Length::Indefinite,
            _ => Length::Default(pool.config.cooldown_for(&key, &parsed.error)),
        };
        let cooldown = next_cooldown(previous.as_ref(), length, &reason, now);
        pool.state
            .cooldowns
            .insert(key.name.clone(), cooldown.clone());
        let until = match cooldown.until {
            Some(until) => format!("until {until}"),
            None => "set aside until reset or replaced".to_string(),
        };
        pool.log(
            Event::new(now, "mark", Some(&key.name), Some(&reason))
                .with_detail(format!("{until}; {how_found}"))
                .with_session(session.clone()),
        );
        Some(cooldown)
    };
    let switched_to = pool.note_switch(now, &reason, session.as_deref());
    let active = pool.active_name(now);
    super::settle(&mut pool, now)?;
    sessions::prune(&ctx.dirs.sessions(), now);
    drop(pool);

    let next = active.unwrap_or_else(|| "no key (all set aside)".to_string());
    match verdict {
        Verdict::Rejected => crate::notify::notify(
            &format!("keyswitch: {} was rejected", key.name),
            &format!(
                "The API refused it. It is set aside until you replace it (keyswitch add {} --replace) or reset it. Now using {next}: send your message again.",
                key.name
            ),
        ),
        _ if switched_to.is_some() => {
            let back = cooldown
                .and_then(|c| c.until)
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
                    "{} ran out ({}).{back} Send your last message again.",
                    key.name, parsed.error
                ),
            );
        }
        _ => {}
    }
    Ok(())
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
