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
mod log_bound;
mod network;
mod replies;
mod shared;
mod sparing;
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
    let listener = TcpListener::bind(settings.listen).map_err(|e| {
        if e.kind() != std::io::ErrorKind::AddrInUse {
            anyhow!("cannot listen on {}: {e}", settings.listen)
        } else if let control::Probe::Ours(running) = control::probe(settings.listen) {
            anyhow!(
                "a keyswitch proxy already runs on {} (pid {}): stop it first with `keyswitch proxy stop`",
                settings.listen,
                running.pid
            )
        } else {
            anyhow!(
                "cannot listen on {}: the port is taken by another program; choose another with `keyswitch install --proxy --listen 127.0.0.1:PORT`",
                settings.listen
            )
        }
    })?;
    listener.set_nonblocking(true)?;
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
    runtime.block_on(async move {
        let log_path = dirs.proxy_log();
        let keys = keys::KeyPool::new(dirs);
        // Read the config now, so a save that breaks it before the first request still finds
        // a good one to serve from; the body budget is sized from it.
        let budget = keys.view(whole_seconds_now()).map_or_else(
            |_| crate::config::Config::default().request_body_budget(),
            |view| view.files.config.request_body_budget(),
        );
        let shared = Arc::new(
            shared::Shared::new(
                token,
                keys,
                upstream::Client::new().context("cannot set up the HTTP client")?,
                default_upstream,
                settings.listen,
                body_idle(),
            )
            .with_body_budget(budget),
        );
        tokio::spawn(log_bound::keep_bounded(log_path));
        let listener = tokio::net::TcpListener::from_std(listener)?;
        eprintln!(
            "keyswitch: proxy {} listening on {} (pid {}), forwarding to {}",
            env!("CARGO_PKG_VERSION"),
            settings.listen,
            std::process::id(),
            shared.default_upstream
        );
        accept::serve(listener, shared, accept::connection_limit()).await;
        eprintln!("keyswitch: proxy on {} stopped", settings.listen);
        Ok(())
    })
}

/// [`body::BODY_IDLE`], unless a test says otherwise (see [`crate::failpoints::body_idle`]).
fn body_idle() -> Duration {
    crate::failpoints::body_idle(body::BODY_IDLE)
}
