//! Proxy mode: a loopback HTTP proxy between Claude Code and the API. Claude Code is handed a
//! local access token instead of a key; the proxy puts the right key's secret on each request
//! and, when that key is out of budget, answers the same request from the next key — so the
//! user never sees a failed turn.
//!
//! `control` is what `get` and the CLI use (std only, fast); the rest runs inside the proxy.

mod accept;
mod body;
mod body_budget;
mod clues;
mod connect;
pub mod control;
pub mod decide;
mod fault;
mod forward;
mod handler;
mod head_limit;
mod headers;
mod io;
mod keys;
mod live_token;
mod log_bound;
pub(crate) mod network;
mod own_paths;
pub mod reach;
mod replies;
mod shared;
mod shutdown_nonces;
mod sparing;
mod tap;
#[cfg(test)]
mod testing;
mod tls;
mod upstream;
#[cfg(windows)]
mod windows_stdio;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use crate::endpoint::Endpoint;
use crate::paths::Dirs;
use crate::proxy_settings::ProxySettings;

/// Now, in whole seconds: what the state file and the event log keep, as everywhere else.
pub(crate) fn whole_seconds_now() -> jiff::Timestamp {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).unwrap_or(now)
}

/// Runs the proxy in the foreground until `keyswitch proxy stop`, SIGTERM or Ctrl-C.
pub fn run(dirs: Dirs, settings: &ProxySettings) -> Result<()> {
    let token = control::ensure_token(&dirs)?;
    let inherited = inherited_listener(settings.listen)?;
    let activated = inherited.is_some();
    let listener = match inherited {
        Some(listener) => listener,
        None => bind(settings, &token)?,
    };
    listener.set_nonblocking(true)?;
    // Only a hint for naming a stopped proxy: a proxy that cannot write it still serves.
    let _recorded = crate::proxy_pid_record::record(&dirs.proxy_pid_file(), settings.listen)
        .map_err(|e| say!("keyswitch: warning: {e:#}"))
        .ok();
    let default_upstream = Endpoint::parse(&settings.upstream)
        .with_context(|| format!("the proxy's upstream {}", settings.upstream))?;
    // One thread: a request's work is ~0.1 ms of CPU, so one core serves thousands a second,
    // and it never hops between workers (measured: p99 at 32 concurrent requests 2.8 ms against
    // 4.7 ms with a worker per core on 2 cores). Keychain reads and state writes go to blocking
    // threads, so they never stall it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .context("cannot start the proxy's runtime")?;
    let mut headroom = None;
    let served = runtime.block_on(async {
        let log_path = dirs.proxy_log();
        let keys = keys::KeyPool::new(dirs.clone());
        // Read the config now, so a save that breaks it before the first request still finds
        // a good one to serve from; the body budget is sized from it.
        let budget = keys.view(whole_seconds_now()).map_or_else(
            |_| crate::config::Config::default().request_body_budget(),
            |view| view.files.config.request_body_budget(),
        );
        let shared = Arc::new(
            shared::Shared::new(
                live_token::LiveToken::new(dirs.clone(), token),
                keys,
                upstream::Client::new().context("cannot set up the HTTP client")?,
                default_upstream,
                settings.listen,
                body_idle(),
            )
            .with_body_budget(budget),
        );
        tokio::spawn(log_bound::keep_bounded(log_path));
        tokio::spawn(shared.headroom.clone().keep_writing());
        headroom = Some(shared.headroom.clone());
        let listener = tokio::net::TcpListener::from_std(listener)?;
        say!(
            "keyswitch: proxy {} listening on {}{} (pid {}), forwarding to {}",
            env!("CARGO_PKG_VERSION"),
            settings.listen,
            if activated {
                " (socket from the service manager)"
            } else {
                ""
            },
            std::process::id(),
            // Each key's own endpoint, else the default: as `proxy status` says it.
            match crate::config::Config::load(&dirs.config_file()) {
                Ok(config) =>
                    crate::key_upstreams::describe(&config, shared.default_upstream.as_str()),
                Err(_) => crate::endpoint::redact_url(shared.default_upstream.as_str()),
            }
        );
        accept::serve(listener, shared, accept::connection_limit()).await;
        Ok(())
    });
    // The streams still open went with the runtime: what they used is counted by now.
    drop(runtime);
    if let Some(headroom) = headroom {
        headroom.write();
    }
    if served.is_ok() {
        say!("keyswitch: proxy on {} stopped", settings.listen);
    }
    served
}

/// The listening socket a service manager passed (systemd's socket unit holds the port from
/// login on), if any: systemd's, so Linux only.
fn inherited_listener(listen: std::net::SocketAddr) -> Result<Option<TcpListener>> {
    #[cfg(target_os = "linux")]
    return crate::service::activation::inherited_listener(listen);
    #[cfg(not(target_os = "linux"))]
    {
        let _ = listen;
        Ok(None)
    }
}

/// Listens on the configured address itself; the error names who holds it when it is taken.
fn bind(settings: &ProxySettings, token: &str) -> Result<TcpListener> {
    TcpListener::bind(settings.listen).map_err(|e| {
        if e.kind() != std::io::ErrorKind::AddrInUse {
            anyhow!("cannot listen on {}: {e}", settings.listen)
        } else {
            match control::probe(settings.listen, token) {
                control::Probe::Ours(running) => anyhow!(
                    "a keyswitch proxy already runs on {} (pid {}): stop it first with `keyswitch proxy stop`",
                    settings.listen,
                    running.pid
                ),
                control::Probe::Unproven(unproven) => control::not_ours(settings.listen, &unproven),
                control::Probe::Nothing => anyhow!(
                    "cannot listen on {}: the port is taken (a socket still closing?); try again, or choose another with `keyswitch install --proxy --listen 127.0.0.1:PORT`",
                    settings.listen
                ),
            }
        }
    })
}

/// [`body::BODY_IDLE`], unless a test says otherwise (see [`crate::failpoints::body_idle`]).
fn body_idle() -> Duration {
    crate::failpoints::body_idle(body::BODY_IDLE)
}
