//! What every request shares: the access token, the key pool, the upstream client, and which
//! upstreams were found down lately.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::Uri;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::keys::KeyPool;
use super::upstream::{Bases, Client};

/// An upstream that could not be reached is passed over for this long.
pub const SKIP_UNREACHABLE: Duration = Duration::from_secs(30);

/// `U` is how requests reach an upstream: the real client, or a test's stand-in.
pub struct Shared<U = Client> {
    pub token: Zeroizing<String>,
    pub keys: Arc<KeyPool>,
    pub client: U,
    /// Where keys without an endpoint of their own go.
    pub default_upstream: String,
    pub listen: SocketAddr,
    pub stop: tokio::sync::Notify,
    /// How long a request body may stop arriving before it is given up.
    pub body_idle: Duration,
    /// When each upstream was found down; by tokio's clock, so tests can move it on.
    unreachable: Mutex<HashMap<String, Instant>>,
    bases: Bases,
}

impl<U> Shared<U> {
    pub fn new(
        token: Zeroizing<String>,
        keys: Arc<KeyPool>,
        client: U,
        default_upstream: String,
        listen: SocketAddr,
        body_idle: Duration,
    ) -> Self {
        Self {
            token,
            keys,
            client,
            default_upstream,
            listen,
            stop: tokio::sync::Notify::new(),
            body_idle,
            unreachable: Mutex::new(HashMap::new()),
            bases: Bases::default(),
        }
    }

    /// `upstream` (a base URL, maybe with a path prefix) with a request's path and query on
    /// it; `None` when the upstream is no URL.
    pub fn upstream_uri(&self, upstream: &str, path_and_query: &str) -> Option<Uri> {
        self.bases.join(upstream, path_and_query)
    }

    pub fn is_unreachable(&self, upstream: &str) -> bool {
        let mut map = self.unreachable.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(upstream) {
            Some(since) if since.elapsed() < SKIP_UNREACHABLE => true,
            Some(_) => {
                map.remove(upstream);
                false
            }
            None => false,
        }
    }

    pub fn note_unreachable(&self, upstream: &str) {
        self.unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(upstream.to_string(), Instant::now());
    }
}
