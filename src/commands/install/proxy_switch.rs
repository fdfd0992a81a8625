//! Starting, keeping or stopping the proxy when install changes the mode or its settings,
//! and saying where it forwards each key.

use anyhow::Result;

use crate::config::Config;
use crate::paths::Dirs;
use crate::proxy::control;
use crate::proxy_settings::{self, ProxySettings};

/// A running proxy keeps the listen address and upstream it started with: stop it, and in
/// proxy mode start the new one now, so a problem shows here rather than in Claude Code.
pub(super) fn switch_proxy(
    dirs: &Dirs,
    previous: Option<ProxySettings>,
    proxy: Option<&ProxySettings>,
) -> Result<()> {
    // Nothing changes for the proxy (a re-install with the same settings, where the service
    // manager, if any, runs it already): the running proxy stays, and so do its streams.
    let same = matches!((proxy, previous.as_ref()), (Some(new), Some(old)) if new == old);
    if let Some(proxy) = proxy
        .filter(|_| same && (crate::service::installed().is_some() || !crate::service::available()))
    {
        return match control::ensure_running(dirs, proxy) {
            Ok(health) => {
                say!(
                    "keyswitch: proxy mode: the keyswitch proxy on {} (pid {}) goes on, forwarding {}",
                    health.listen,
                    health.pid,
                    upstreams_in_words(dirs, proxy)
                );
                Ok(())
            }
            Err(e) => {
                crate::messages::warn(format_args!(
                    "the proxy did not start: {}; `keyswitch get` tries again",
                    crate::error::one_line(&e)
                ));
                Ok(())
            }
        };
    }
    // One a service manager runs is stopped through it: its socket would start it again.
    let had_service = crate::service::release();
    let had_proxy = previous.is_some_and(|p| stop_proxy(dirs, &p)) || had_service;
    match proxy {
        Some(proxy) => {
            let managed = crate::service::take_over(dirs, proxy);
            // The settings' NO_PROXY replaces the shell's for Claude Code: say it was written.
            say!(
                "keyswitch: NO_PROXY and no_proxy in Claude Code's settings include {} and {}, so Claude Code reaches the proxy directly even with an HTTPS_PROXY set (uninstall puts back what was there)",
                proxy.listen.ip(),
                proxy.listen
            );
            match control::ensure_running(dirs, proxy) {
                Ok(health) => say!(
                    "keyswitch: proxy mode: Claude Code talks to the keyswitch proxy on {} (pid {}), which forwards {}{}",
                    health.listen,
                    health.pid,
                    upstreams_in_words(dirs, proxy),
                    managed.map_or_else(String::new, |m| format!("; {}", m.describe()))
                ),
                Err(e) => crate::messages::warn(format_args!(
                    "the proxy did not start: {}; `keyswitch get` tries again",
                    crate::error::one_line(&e)
                )),
            }
        }
        None => {
            crate::service::remove(dirs, &[]);
            proxy_settings::remove(dirs)?;
            if had_proxy {
                say!("keyswitch: stopped the proxy; sessions no longer go through it");
            }
        }
    }
    Ok(())
}

/// Where the proxy sends each key's requests: "to URL" with no keys yet, else "each key to its
/// upstream: primary → URL, …" (the proxy's upstream alone when the config cannot be read: the
/// proxy serves from the last one that parsed).
fn upstreams_in_words(dirs: &Dirs, proxy: &ProxySettings) -> String {
    match Config::load(&dirs.config_file()) {
        Ok(config) if !config.keys.is_empty() => format!(
            "each key to its upstream: {}",
            crate::key_upstreams::describe(&config, &proxy.upstream)
        ),
        _ => format!("to {}", crate::endpoint::redact_url(&proxy.upstream)),
    }
}

/// Stops the proxy running with `current` settings; true when one did. Best effort: a proxy
/// that does not stop is reported, and its settings go anyway.
pub(in crate::commands) fn stop_proxy(dirs: &Dirs, current: &ProxySettings) -> bool {
    let stopped =
        crate::proxy_token::ensure_token(dirs).and_then(|t| control::stop_at(current.listen, &t));
    match stopped {
        Ok(stopped) => stopped,
        Err(e) => {
            crate::messages::warn(format_args!(
                "could not stop the proxy on {}: {}",
                current.listen,
                crate::error::one_line(&e)
            ));
            false
        }
    }
}
