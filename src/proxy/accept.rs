//! The accept loop: client connections on the loopback listener, at most as many as the
//! process has file descriptors for, each served by hyper until it closes or the proxy stops;
//! and the signals that stop it.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::handler::handle;
use super::shared::Shared;

/// At most this many client connections at once.
const MAX_CONNECTIONS: usize = 512;
/// File descriptors kept back from client connections: the listener, the runtime's own, the
/// log, the config and state files being read, the keychain's connection.
#[cfg(unix)]
const RESERVED_FDS: u64 = 32;
/// A request's head must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(120);

/// In-flight requests (streams included) get this long to finish when the proxy stops.
const DRAIN: Duration = Duration::from_secs(600);

/// [`MAX_CONNECTIONS`], or fewer where the process may not open two file descriptors for each
/// (the client's and its upstream's) and some to spare. Slots are what make room by closing a
/// connection without the token; with more slots than descriptors (macOS gives a program 256),
/// idle connections would take every descriptor first and sessions would never be let in. The
/// soft limit is raised toward the hard one as far as the proxy needs.
pub fn connection_limit() -> usize {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let wanted = 2 * MAX_CONNECTIONS as u64 + RESERVED_FDS;
        let limit = getrlimit(Resource::Nofile);
        let mut soft = limit.current;
        if let Some(current) = soft
            && current < wanted
        {
            let raised = limit.maximum.map_or(wanted, |hard| hard.min(wanted));
            let new = Rlimit {
                current: Some(raised),
                maximum: limit.maximum,
            };
            if raised > current && setrlimit(Resource::Nofile, new).is_ok() {
                soft = Some(raised);
            }
        }
        soft.map_or(MAX_CONNECTIONS, |n| {
            usize::try_from(n.saturating_sub(RESERVED_FDS) / 2)
                .unwrap_or(MAX_CONNECTIONS)
                .clamp(8, MAX_CONNECTIONS)
        })
    }
    #[cfg(not(unix))]
    MAX_CONNECTIONS
}

pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>, limit: usize) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Claude Code keeps a handful of connections; a program opening thousands must not exhaust
    // the proxy's file descriptors: past this, a connection that never carried the token is
    // closed to make room, and with none such, the next one waits (and those after it, in the
    // kernel's queue).
    let slots = Arc::new(tokio::sync::Semaphore::new(limit));
    let clients = Clients::default();
    let mut last_complaint: Option<std::time::Instant> = None;
    // Made once and polled in every wait below: a stop asked for (or a SIGTERM) while the loop
    // waits for a free slot is seen there too, and none falls between two waits.
    let stop = async {
        tokio::select! {
            () = shared.stop.notified() => {}
            () = terminated() => {}
        }
    };
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like (the whole system's, too): make
                    // room as when every slot is taken, wait a moment, keep serving, and say
                    // so at most once a minute.
                    clients.close_oldest_untrusted();
                    if last_complaint.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        say!("keyswitch: proxy: accept failed: {e}");
                        last_complaint = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // A slot once a connection waits for one, not before: making room closes a connection,
        // and only one waiting makes that worth it (nor is the newest one, still sending its
        // first request, taken for a connection without the token).
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(tokio::sync::TryAcquireError::Closed) => break,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                // Any local program may connect: one that holds connections open without the
                // token must not lock the sessions out, so it is the one that makes room.
                clients.close_oldest_untrusted();
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut stop => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let client = clients.add();
        let on_request = client.clone();
        let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let shared = shared.clone();
            on_request.note(&shared, request.headers());
            async move { Ok::<_, std::convert::Infallible>(handle(shared, request).await) }
        });
        // A client that sends no complete request head in time is disconnected.
        let connection = http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            tokio::select! {
                _ = connection => {}
                () = client.close.notified() => {}
            }
            drop(slot);
        });
    }
    // Stop listening at once (a new proxy may take the port); let requests in flight finish.
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
}

/// One client connection, as the accept loop sees it when every slot is taken.
#[derive(Default)]
struct Client {
    /// Set once a request on it carried the access token: Claude Code's do at once.
    trusted: std::sync::atomic::AtomicBool,
    close: tokio::sync::Notify,
}

impl Client {
    fn note(&self, shared: &Shared, headers: &hyper::HeaderMap) {
        use std::sync::atomic::Ordering;
        if !self.trusted.load(Ordering::Relaxed) && shared.token.admits(headers) {
            self.trusted.store(true, Ordering::Relaxed);
        }
    }
}

/// The open connections, oldest first.
#[derive(Default)]
struct Clients(std::sync::Mutex<std::collections::VecDeque<std::sync::Weak<Client>>>);

impl Clients {
    fn add(&self) -> Arc<Client> {
        let client = Arc::new(Client::default());
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if list.len() >= 2 * MAX_CONNECTIONS {
            list.retain(|c| c.strong_count() > 0);
        }
        list.push_back(Arc::downgrade(&client));
        client
    }

    /// Closes the oldest open connection that never carried the token, if there is one.
    fn close_oldest_untrusted(&self) {
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|c| c.strong_count() > 0);
        let oldest = list.iter().position(|c| {
            c.upgrade()
                .is_some_and(|c| !c.trusted.load(std::sync::atomic::Ordering::Relaxed))
        });
        if let Some(client) = oldest
            .and_then(|i| list.remove(i))
            .and_then(|c| c.upgrade())
        {
            client.close.notify_one();
        }
    }
}

/// Resolves on Ctrl-C, or SIGTERM (what systemd and launchd send to stop a service).
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
