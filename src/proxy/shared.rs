//! What every request shares: the access token, the shutdown nonces taken, the key pool, the
//! upstream client, the memory budget for request bodies, which upstreams were found down
//! lately, and the headroom figures read off the answers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::body_budget::BodyBudget;
use super::keys::KeyPool;
use super::live_token::LiveToken;
use super::shutdown_nonces::ShutdownNonces;
use super::sparing::Sparing;
use super::upstream::Client;
use crate::endpoint::Endpoint;
use crate::headroom::recorder::Recorder;

/// An upstream that could not be reached is passed over for this long.
pub const SKIP_UNREACHABLE: Duration = Duration::from_secs(30);

/// `U` is how requests reach an upstream: the real client, or a test's stand-in.
pub struct Shared<U = Client> {
    pub token: LiveToken,
    /// The nonces of the shutdowns taken: each stops the proxy once.
    pub shutdown_nonces: ShutdownNonces,
    pub keys: Arc<KeyPool>,
    pub client: U,
    /// Where keys without an endpoint of their own go.
    pub default_upstream: Endpoint,
    pub listen: SocketAddr,
    pub stop: tokio::sync::Notify,
    /// How long a request body may stop arriving before it is given up.
    pub body_idle: Duration,
    /// The memory every request body held at once draws on.
    pub bodies: BodyBudget,
    /// Warnings every request would repeat, said sparingly.
    pub warnings: Sparing,
    /// Each key's headroom and usage, as the answers say them.
    pub headroom: Arc<Recorder>,
    /// When each upstream was found down; by tokio's clock, so tests can move it on.
    unreachable: Mutex<HashMap<String, Instant>>,
}

impl<U> Shared<U> {
    pub fn new(
        token: LiveToken,
        keys: Arc<KeyPool>,
        client: U,
        default_upstream: Endpoint,
        listen: SocketAddr,
        body_idle: Duration,
    ) -> Self {
        Self {
            headroom: Recorder::new(keys.dirs()),
            token,
            shutdown_nonces: ShutdownNonces::new(crate::proxy_proof::unix_seconds()),
            keys,
            client,
            default_upstream,
            listen,
            stop: tokio::sync::Notify::new(),
            body_idle,
            bodies: BodyBudget::new(crate::config::Config::default().request_body_budget()),
            warnings: Sparing::default(),
            unreachable: Mutex::new(HashMap::new()),
        }
    }

    /// With a body budget of `bytes` (the config's `request_body_budget_mib`).
    pub fn with_body_budget(self, bytes: usize) -> Self {
        Self {
            bodies: BodyBudget::new(bytes),
            ..self
        }
    }

    pub fn is_unreachable(&self, upstream: &Endpoint) -> bool {
        let mut map = self.unreachable.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(upstream.as_str()) {
            Some(since) if since.elapsed() < SKIP_UNREACHABLE => true,
            Some(_) => {
                map.remove(upstream.as_str());
                false
            }
            None => false,
        }
    }

    pub fn note_unreachable(&self, upstream: &Endpoint) {
        self.unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(upstream.as_str().to_string(), Instant::now());
    }
}
