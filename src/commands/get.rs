//! `keyswitch get`: Claude Code's apiKeyHelper. Prints the key to use now and nothing else.
//!
//! It runs at every session start and refresh, so it reads without locking and writes only
//! when something changed: the session's hand-out record (no fsync), and — rarely — a switch.
//! It is also where the end of a cooldown is noticed, and in subscription-first mode the end of
//! the subscription's hold. A key is only ever printed for a session
//! whose `ANTHROPIC_BASE_URL` is that key's endpoint; when the key that should be active belongs
//! elsewhere, the session gets a usable key of its own endpoint (or nothing) and the settings
//! are moved to the new endpoint, which makes Claude Code run the helper again there.

use std::io::Write;

use anyhow::{Result, anyhow};
use jiff::Timestamp;

use super::{Context, open_keychain};
use crate::claude::install_record::InstallRecord;
use crate::claude::{live, sessions};
use crate::endpoint::{redact_url, session_endpoint};
use crate::handout::{self, Handout};
use crate::messages;
use crate::mode::Mode;
use crate::pool::Pool;
use crate::proxy::control;
use crate::proxy_settings::ProxySettings;
use crate::reason::Cause;
use crate::select::{Availability, candidates};
use crate::timespec::{local_clock, until_in_words};
use crate::validate::secret_problem;

pub fn run(ctx: &Context) -> Result<()> {
    match Mode::load(&ctx.dirs)? {
        Mode::Proxy(proxy) => return hand_out_token(ctx, &proxy),
        // The helper is wired only during a hold; its refresh run is where the hold ends. The
        // key is still printed this once: the request it is for already went out on the last.
        Mode::SubscriptionFirst(_) => super::subscription::end_if_over(ctx),
        Mode::Helper => {}
    }
    let now = ctx.now.timestamp();
    let pool = Pool::read(ctx.dirs.clone(), now)?;
    if pool.config().keys.is_empty() {
        return Err(anyhow!(messages::NO_KEYS_YET));
    }
    let session_url = std::env::var("ANTHROPIC_BASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    // The install record matters only to a session with a base URL of its own, or to keys with
    // endpoints: read once, and only then.
    let record = if session_url.is_some() || pool.config().uses_endpoints() {
        live::load_record(&ctx.dirs).ok().flatten()
    } else {
        None
    };
    refuse_proxy_remnant(session_url.as_deref(), record.as_ref(), pool.config())?;
    // Computed once: everything below reads these.
    let availability = pool.availability(now);
    let order = candidates(&availability);
    let Some(&desired) = order.first() else {
        return Err(anyhow!(messages::ALL_SET_ASIDE));
    };

    let user_default = live::user_default_base_url(record.as_ref());
    let allowed = match handout::for_session(
        &pool.config().keys,
        &availability,
        &order,
        session_url.as_deref(),
        user_default.as_deref(),
    ) {
        Handout::Here(keys) => keys,
        Handout::Elsewhere(usable) => {
            // The session is on another key's endpoint: move the settings to the active key's
            // endpoint, and meanwhile hand out only a key that is usable where the session is.
            move_settings_to_active(ctx, now);
            if usable.is_empty() {
                return Err(anyhow!(
                    "the active key {} belongs to another endpoint than this session's ({}) and no usable key belongs here; the settings were moved to its endpoint, so Claude Code will ask again there",
                    pool.key(desired).name,
                    redact_url(&session_endpoint(session_url.as_deref()))
                ));
            }
            usable
        }
    };

    hand_out_key(ctx, &pool, &allowed, &availability, desired)
}

/// Prints the secret of the first of `allowed` that has a usable one, notes which session got
/// it, and records a switch when it is the active key (`desired`).
fn hand_out_key(
    ctx: &Context,
    pool: &Pool,
    allowed: &[usize],
    availability: &[Availability],
    desired: usize,
) -> Result<()> {
    let now = ctx.now.timestamp();
    let keychain = open_keychain(pool.config())?;
    let mut unusable = None;
    for &index in allowed {
        let name = &pool.key(index).name;
        let read = match keychain.read(name) {
            // Another program stored bytes that are no key: the next key may still be one.
            Err(e) if crate::store::NotText::is(&e) => {
                crate::messages::warn(format_args!("{e}; skipping it"));
                unusable = Some(e.to_string());
                continue;
            }
            read => read?,
        };
        let Some(secret) = read else {
            crate::messages::warn(format_args!(
                "{name} has no secret in {}; skipping it (store one with `keyswitch add {name} --replace`)",
                keychain.kind().describe()
            ));
            continue;
        };
        // A secret another tool stored may hold a line break: printed, it would be two lines.
        if let Some(problem) = secret_problem(&secret) {
            let message = format!(
                "the secret of {name} in {} {problem}, so it is not a usable key: store it again with `keyswitch add {name} --replace`",
                keychain.kind().describe()
            );
            crate::messages::warn(format_args!("{message}; skipping it"));
            unusable = Some(message);
            continue;
        }
        if let Availability::CoolingUntil(until) = availability[index] {
            crate::messages::warn(format_args!(
                "every key is cooling down; handing out {name}, back at {} ({})",
                local_clock(until, &ctx.now),
                until_in_words(until, now)
            ));
        }
        crate::failpoints::crash_point("get-secret-read");
        print_secret(&secret)?;
        if let Err(e) = sessions::remember(&ctx.dirs.sessions(), name, now) {
            crate::messages::warn_failed(format_args!("note which session got {name}"), &e);
        }
        if index == desired {
            record_switch(ctx, pool, name, now);
        }
        return Ok(());
    }
    Err(unusable.map(anyhow::Error::msg).unwrap_or_else(|| {
        anyhow!(
            "no key for this session has a secret in {}: store one with `keyswitch add NAME --replace`",
            keychain.kind().describe()
        )
    }))
}

/// Helper mode, yet the session talks to a plain-HTTP address on this machine that is no key's
/// endpoint (nor the user's own base URL): a keyswitch proxy's address whose proxy mode record
/// was lost. A real key must never go to that port, whoever holds it — a listener there reads
/// it in plain text.
pub(super) fn refuse_proxy_remnant(
    session: Option<&str>,
    record: Option<&InstallRecord>,
    config: &crate::config::Config,
) -> Result<()> {
    let Some(session) = session else {
        return Ok(());
    };
    if crate::loopback::plain_http_loopback(session).is_none() {
        return Ok(());
    }
    let here = session_endpoint(Some(session));
    let a_keys_endpoint = config
        .keys
        .iter()
        .any(|k| k.endpoint().is_some_and(|e| e.as_str() == here));
    let users_own = record
        .and_then(live::users_own_base_url)
        .is_some_and(|own| session_endpoint(Some(&own)) == here);
    if a_keys_endpoint || users_own {
        return Ok(());
    }
    Err(anyhow!(
        "this session's ANTHROPIC_BASE_URL, {0}, is a plain-HTTP address on this machine that is no key's endpoint — a keyswitch proxy's address, with proxy mode's record lost — so no key is handed out: run `keyswitch install --proxy` again (or, if a gateway of yours answers there, add its key with `--endpoint {0}`)",
        redact_url(&here)
    ))
}

/// Proxy mode: the session gets the local access token, never a key, and only when it talks to
/// the proxy; the proxy is started first if it is not running.
fn hand_out_token(ctx: &Context, proxy: &ProxySettings) -> Result<()> {
    match crate::config::Config::load(&ctx.dirs.config_file()) {
        Ok(config) if config.keys.is_empty() => return Err(anyhow!(messages::NO_KEYS_YET)),
        Ok(_) => {}
        // The proxy serves from the last config that parsed (an editor's half-written save):
        // refusing the token here would fail every new session for it.
        Err(e) => messages::warn(format_args!(
            "{}; handing out the proxy's token all the same: the proxy serves from the last config that parsed",
            crate::error::one_line(&e)
        )),
    }
    let session = session_endpoint(std::env::var("ANTHROPIC_BASE_URL").ok().as_deref());
    if session != session_endpoint(Some(&proxy.base_url())) {
        return Err(anyhow!(
            "in proxy mode `get` hands its token only to a session talking to the proxy ({1}), and this one's ANTHROPIC_BASE_URL is {0}: if Claude Code runs this, a project setting or the environment overrides keyswitch's (`keyswitch doctor` finds it)",
            crate::endpoint::redact_url(&session),
            proxy.base_url()
        ));
    }
    // Claude Code gives the helper its own environment, the user settings' env included, but
    // its client takes a project's settings env over it: a request it sends to the proxy
    // would go through the proxy this names.
    let project = crate::claude::project_env::ProjectEnv::here();
    let seen = |v: &str| project.over(v, |v| std::env::var(v).ok());
    if let Some(var) = crate::no_proxy::proxied_by(proxy.listen, seen) {
        return Err(anyhow!(crate::no_proxy::proxied_problem(var, proxy.listen)));
    }
    control::ensure_running(&ctx.dirs, proxy)?;
    let token = control::ensure_token(&ctx.dirs)?;
    print_secret(&token)?;
    crate::token_handouts::note(&ctx.dirs.token_handout(), ctx.now.timestamp());
    Ok(())
}

fn print_secret(secret: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(secret.as_bytes())?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}

/// Records a change of active key noticed here (a cooldown that ended), if the lock is free:
/// a busy lock means another keyswitch is writing, and the next `get` records it instead.
/// Failures must not cost the user the key already printed: reported, then swallowed.
fn record_switch(ctx: &Context, pool: &Pool, name: &str, now: Timestamp) {
    if pool.state().last_active.as_deref() == Some(name) {
        return;
    }
    let result = (|| -> Result<()> {
        let Some(mut locked) = Pool::try_lock(ctx.dirs.clone(), now)? else {
            return Ok(());
        };
        let previous = locked
            .state()
            .last_active
            .as_deref()
            .and_then(|p| locked.config().position(p));
        let reason = match (previous, locked.config().position(name)) {
            (Some(p), Some(n)) if n < p => Cause::CooldownEnded,
            _ => Cause::Failover,
        };
        if let Some(to) = locked.note_switch(now, &reason, None) {
            crate::notify::notify(
                &format!("keyswitch: back to {to}"),
                "Its cooldown ended; new requests use it again.",
            );
        }
        locked.commit()
    })();
    if let Err(e) = result {
        crate::messages::warn_failed(format_args!("record the switch to {name}"), &e);
    }
}

/// Moves the settings to the active key's endpoint (with the lock, which writers hold only
/// briefly), recording the switch. Reported, never fatal: the caller still answers the session.
fn move_settings_to_active(ctx: &Context, now: Timestamp) {
    let result = (|| -> Result<()> {
        let mut locked = Pool::lock(ctx.dirs.clone(), now)?;
        locked.note_switch(now, &Cause::CooldownEnded, None);
        super::settle_with(&mut locked, now, live::Nudge::IfChanged)
    })();
    if let Err(e) = result {
        crate::messages::warn_failed("move the settings to the active key", &e);
    }
}
