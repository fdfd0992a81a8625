//! `keyswitch proxy run|start|stop|restart|status`: the local proxy of proxy mode.

use anyhow::Result;

use super::{Context, out};
use crate::claude::install_record::load_record;
use crate::claude::wiring::session_env;
use crate::cli::ProxyAction;
use crate::error::refuse;
use crate::mode::Mode;
use crate::port_owner;
use crate::proxy::control;
use crate::proxy_client::{Probe, Unproven, probe};
use crate::proxy_settings::{self, ProxySettings};
use crate::proxy_token::ensure_token;

pub fn run(ctx: &Context, action: ProxyAction) -> Result<()> {
    let Mode::Proxy(settings) = Mode::load(&ctx.dirs)? else {
        // Helper mode: nothing runs, so status says so and stop has nothing to do.
        return match action {
            ProxyAction::Status { json: true } => out(
                &serde_json::json!({"running": false, "pid": null, "listen": null, "version": null})
                    .to_string(),
            ),
            ProxyAction::Status { json: false } if !installed(ctx) => out(
                "not running: keyswitch is not installed in Claude Code (`keyswitch install` turns proxy mode on)",
            ),
            ProxyAction::Status { json: false } => {
                out("not running: helper mode (`keyswitch install --proxy` turns proxy mode on)")
            }
            ProxyAction::Stop => {
                say!("keyswitch: helper mode: no proxy to stop");
                Ok(())
            }
            ProxyAction::Run | ProxyAction::Start | ProxyAction::Restart => Err(refuse(
                "proxy mode is off: turn it on with `keyswitch install --proxy`",
            )),
        };
    };
    match action {
        ProxyAction::Run => {
            // It holds every key's secret and the token for as long as it runs.
            crate::proxy::run(ctx.dirs.clone(), &settings)
        }
        ProxyAction::Start => {
            crate::service::start();
            let health = control::ensure_running(&ctx.dirs, &settings)?;
            say!(
                "keyswitch: proxy {} running on {} (pid {})",
                health.version,
                health.listen,
                health.pid
            );
            Ok(())
        }
        ProxyAction::Stop => stop(ctx, &settings),
        ProxyAction::Restart => restart(ctx, settings),
        ProxyAction::Status { json } => status(ctx, &settings, json),
    }
}

/// Stops the proxy (through the service manager when one runs it), warning when sessions were
/// handed the token lately.
fn stop(ctx: &Context, settings: &ProxySettings) -> Result<()> {
    if let Some(stopped) = crate::service::stop() {
        say!("keyswitch: {}", stopped?);
        return Ok(());
    }
    let token = ensure_token(&ctx.dirs)?;
    if control::stop_at(settings.listen, &token)? {
        say!("keyswitch: stopped the proxy on {}", settings.listen);
        let now = ctx.now.timestamp();
        if let Some(warning) = crate::token_handouts::stop_warning(&ctx.dirs.token_handout(), now) {
            crate::messages::warn(format_args!("{warning}"));
        }
    } else {
        say!("keyswitch: no keyswitch proxy runs on {}", settings.listen);
    }
    Ok(())
}

/// Records this shell's network settings and starts the proxy again from here.
fn restart(ctx: &Context, settings: ProxySettings) -> Result<()> {
    let settings = with_network_from_here(ctx, settings)?;
    proxy_settings::save(&ctx.dirs, &settings)?;
    crate::service::refresh_network(&ctx.dirs, &settings)?;
    let token = ensure_token(&ctx.dirs)?;
    control::stop_at(settings.listen, &token)?;
    let health = control::ensure_running(&ctx.dirs, &settings)?;
    say!(
        "keyswitch: proxy {} running on {} (pid {}) with this shell's network settings",
        health.version,
        health.listen,
        health.pid
    );
    Ok(())
}

/// Whether the proxy runs (proved), is stopped (Ctrl-Z), or not; `json` for scripts.
fn status(ctx: &Context, settings: &ProxySettings, json: bool) -> Result<()> {
    let token = ensure_token(&ctx.dirs)?;
    let answer = probe(settings.listen, &token);
    let stopped = match &answer {
        Probe::Unproven(Unproven::Silent(_)) => stopped_proxy(settings.listen),
        _ => None,
    };
    let held_by_another = matches!(answer, Probe::Unproven(_)) && stopped.is_none();
    if let (Probe::Unproven(unproven), None) = (&answer, stopped) {
        crate::messages::warn(format_args!(
            "{:#}",
            control::not_ours(settings.listen, unproven)
        ));
    }
    let health = match answer {
        Probe::Ours(health) => Some(health),
        _ => None,
    };
    let manager = crate::service::installed();
    if json {
        let value = serde_json::json!({
            "running": health.is_some(),
            "stopped": stopped.is_some(),
            "pid": health.as_ref().map(|h| h.pid).or(stopped),
            "listen": settings.listen.to_string(),
            "version": health.as_ref().map(|h| h.version.clone()),
            "managed_by": manager.map(crate::service::Manager::name),
        });
        out(&value.to_string())
    } else {
        let managed = manager.map_or_else(String::new, |m| format!("; {}", m.describe()));
        match (health, stopped) {
            (Some(h), _) => out(&format!(
                "running on {} (pid {}, version {}), forwarding {}{managed}",
                h.listen,
                h.pid,
                h.version,
                forwarding(ctx, settings)
            )),
            (None, Some(pid)) => out(&format!(
                "stopped (pid {pid}, e.g. by Ctrl-Z or SIGSTOP): `kill -CONT {pid}`; it holds {} and answers nothing meanwhile{managed}",
                settings.listen
            )),
            // `get` cannot start it while something else holds the port (said above).
            (None, None) if held_by_another => out(&format!(
                "not running: another program holds {} (see above){managed}",
                settings.listen
            )),
            (None, None) => out(&format!(
                "not running (listens on {} once started; `keyswitch get` starts it){managed}",
                settings.listen
            )),
        }
    }
}

/// The pid of a stopped process of this user's that holds `listen` and gives no answer: a
/// proxy stopped by Ctrl-Z or SIGSTOP, alive but silent, which is not "not running".
fn stopped_proxy(listen: std::net::SocketAddr) -> Option<u32> {
    port_owner::holder(listen)
        .filter(port_owner::Holder::is_ours)
        .and_then(|h| h.pid)
        .filter(|pid| port_owner::is_stopped(*pid))
}

/// Proxy mode's settings with the network settings a session started from here has: the
/// Claude Code settings' `env` (keyswitch's NO_PROXY included) over this shell's.
fn with_network_from_here(ctx: &Context, mut settings: ProxySettings) -> Result<ProxySettings> {
    let map = match load_record(&ctx.dirs)? {
        Some(record) => record.settings_file()?.read()?.map,
        None => serde_json::Map::new(),
    };
    settings.network = crate::proxy::network::to_record(|var| session_env(&map, var))?;
    Ok(settings)
}

/// Where the proxy sends each key's requests ("primary → https://gw/v1, fallback → …"); with
/// the config unreadable, where keys without an endpoint go.
fn forwarding(ctx: &Context, settings: &ProxySettings) -> String {
    match crate::config::Config::load(&ctx.dirs.config_file()) {
        Ok(config) if !config.keys.is_empty() => {
            crate::key_upstreams::describe(&config, &settings.upstream)
        }
        _ => format!(
            "keys without an endpoint to {}",
            crate::endpoint::redact_url(&settings.upstream)
        ),
    }
}

/// Whether keyswitch is wired into Claude Code's settings: without proxy mode's record that is
/// helper mode; without the install record, no mode at all.
pub(super) fn installed(ctx: &Context) -> bool {
    crate::claude::install_record::load_record(&ctx.dirs).is_ok_and(|r| r.is_some())
}
