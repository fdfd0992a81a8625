//! `keyswitch proxy run|start|stop|status`: the local proxy of proxy mode.

use anyhow::Result;

use super::{Context, out};
use crate::cli::ProxyAction;
use crate::error::refuse;
use crate::mode::Mode;
use crate::proxy::control;
use crate::proxy_client::{Probe, probe};
use crate::proxy_token::ensure_token;

pub fn run(ctx: &Context, action: ProxyAction) -> Result<()> {
    let Mode::Proxy(settings) = Mode::load(&ctx.dirs)? else {
        // Helper mode: nothing runs, so status says so and stop has nothing to do.
        return match action {
            ProxyAction::Status { json: true } => out(
                &serde_json::json!({"running": false, "pid": null, "listen": null, "version": null})
                    .to_string(),
            ),
            ProxyAction::Status { json: false } => {
                out("not running: helper mode (`keyswitch install --proxy` turns proxy mode on)")
            }
            ProxyAction::Stop => {
                eprintln!("keyswitch: helper mode: no proxy to stop");
                Ok(())
            }
            ProxyAction::Run | ProxyAction::Start => Err(refuse(
                "proxy mode is off: turn it on with `keyswitch install --proxy`",
            )),
        };
    };
    match action {
        ProxyAction::Run => {
            // It holds every key's secret and the token for as long as it runs.
            crate::no_core_dumps::forbid();
            crate::proxy::run(ctx.dirs.clone(), &settings)
        }
        ProxyAction::Start => {
            let health = control::ensure_running(&ctx.dirs, &settings)?;
            eprintln!(
                "keyswitch: proxy {} running on {} (pid {})",
                health.version, health.listen, health.pid
            );
            Ok(())
        }
        ProxyAction::Stop => {
            let token = ensure_token(&ctx.dirs)?;
            if control::stop_at(settings.listen, &token)? {
                eprintln!("keyswitch: stopped the proxy on {}", settings.listen);
            } else {
                eprintln!("keyswitch: no keyswitch proxy runs on {}", settings.listen);
            }
            Ok(())
        }
        ProxyAction::Status { json } => {
            let answer = probe(settings.listen);
            if let Probe::Foreign(what) = &answer {
                crate::messages::warn(format_args!(
                    "another program holds {} ({what}): choose another port with `keyswitch install --proxy --listen 127.0.0.1:PORT`",
                    settings.listen
                ));
            }
            let health = match answer {
                Probe::Ours(health) => Some(health),
                _ => None,
            };
            if json {
                let value = serde_json::json!({
                    "running": health.is_some(),
                    "pid": health.as_ref().map(|h| h.pid),
                    "listen": settings.listen.to_string(),
                    "version": health.as_ref().map(|h| h.version.clone()),
                });
                out(&value.to_string())
            } else {
                match health {
                    Some(h) => out(&format!(
                        "running on {} (pid {}, version {}), forwarding to {}",
                        h.listen, h.pid, h.version, settings.upstream
                    )),
                    None => out(&format!(
                        "not running (listens on {} once started; `keyswitch get` starts it)",
                        settings.listen
                    )),
                }
            }
        }
    }
}
