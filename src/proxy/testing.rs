//! In-process test fixtures: a key pool in a temporary folder with its secrets in a mock
//! keychain, and a scripted stand-in upstream that records what reached it. No sockets; time
//! is paused, so a 30 s skip is checked by moving the clock.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use zeroize::Zeroizing;

use super::body::{BODY_IDLE, full};
use super::fault::Fault;
use super::io::Body;
use super::keys::KeyPool;
use super::live_token::LiveToken;
use super::shared::Shared;
use super::upstream::Upstream;
use crate::config::{Config, KeyConfig, StoreKind};
use crate::paths::Dirs;
use crate::select::Availability;
use crate::store::Keychain;

pub const TOKEN: &str = "ksp-test-token";
pub const DEFAULT_UPSTREAM: &str = "https://api.example.test";

/// One key of the test pool: its secret is `sk-ant-test-<name>` unless taken away.
#[derive(Clone)]
pub struct Key {
    name: &'static str,
    endpoint: Option<&'static str>,
    secret: bool,
}

pub fn key(name: &'static str) -> Key {
    Key {
        name,
        endpoint: None,
        secret: true,
    }
}

impl Key {
    pub fn at(self, endpoint: &'static str) -> Self {
        Self {
            endpoint: Some(endpoint),
            ..self
        }
    }

    pub fn without_secret(self) -> Self {
        Self {
            secret: false,
            ..self
        }
    }
}

/// What reached the stand-in upstream: which key, at which host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The key's name, read back from the secret on the request.
    pub key: String,
    pub host: String,
    pub body: Bytes,
}

type Script = dyn Fn(&Seen) -> Result<Response<Body>, Fault> + Send + Sync;

/// The stand-in upstream: answers as its script says and records each request.
pub struct Fake {
    script: Box<Script>,
    seen: Mutex<Vec<Seen>>,
}

impl Upstream for Fake {
    async fn send(
        &self,
        mut build: impl FnMut() -> Request<Full<Bytes>> + Send,
    ) -> Result<Response<Body>, Fault> {
        let request = build();
        let secret = request
            .headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let seen = Seen {
            key: secret
                .strip_prefix("sk-ant-test-")
                .unwrap_or(secret)
                .to_string(),
            host: request.uri().host().unwrap_or_default().to_string(),
            body: request.body().clone().collect().await.unwrap().to_bytes(),
        };
        self.seen.lock().unwrap().push(seen.clone());
        let answer = (self.script)(&seen);
        if matches!(&answer, Err(Fault::Broken(m)) if m == NEVER_ANSWERS) {
            std::future::pending::<()>().await;
        }
        answer
    }
}

const NEVER_ANSWERS: &str = "the stand-in never answers";

/// For a script: the upstream took the request and never sends an answer's head.
pub fn never_answers() -> Result<Response<Body>, Fault> {
    Err(Fault::Broken(NEVER_ANSWERS.to_string()))
}

/// An answer from the stand-in.
pub fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Result<Response<Body>, Fault> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    for (name, value) in headers {
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap();
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    Ok(response)
}

pub struct Fixture {
    pub shared: Arc<Shared<Fake>>,
}

impl Fixture {
    /// The key names the stand-in saw, in order.
    pub fn seen(&self) -> Vec<String> {
        self.hosts().into_iter().map(|s| s.key).collect()
    }

    pub fn hosts(&self) -> Vec<Seen> {
        self.shared.client.seen.lock().unwrap().clone()
    }

    /// Where each key of the pool stands now, marks made in memory included.
    pub fn availability(&self) -> Vec<Availability> {
        let now = super::whole_seconds_now();
        self.shared.keys.view(now).unwrap().availability
    }
}

/// Runs `test` with a pool of `keys` before an upstream answering as `script` says, in a
/// runtime whose clock is paused. The runtime is built here rather than by
/// `#[tokio::test(start_paused = true)]` so that dropping it — which waits for the blocking
/// threads writing marks to the state file — comes before the pool's folder is removed.
pub fn with_pool<F>(
    keys: &[Key],
    script: impl Fn(&Seen) -> Result<Response<Body>, Fault> + Send + Sync + 'static,
    test: impl FnOnce(Fixture) -> F,
) where
    F: Future<Output = ()>,
{
    let folder = tempfile::tempdir().unwrap();
    let dirs = Dirs {
        config: folder.path().join("config"),
        state: folder.path().join("state"),
    };
    let config = Config::with_keys(
        keys.iter()
            .map(|k| {
                let mut key = KeyConfig::new(k.name);
                if let Some(endpoint) = k.endpoint {
                    key.set_endpoint(endpoint.parse().unwrap());
                }
                key
            })
            .collect(),
    );
    config.save(&dirs.config_file()).unwrap();
    let store: Arc<keyring_core::CredentialStore> = keyring_core::mock::Store::new().unwrap();
    let keychain = Keychain::with_store(store, StoreKind::SecretService, "keyswitch-test");
    for k in keys.iter().filter(|k| k.secret) {
        keychain
            .write(k.name, &format!("sk-ant-test-{}", k.name))
            .unwrap();
    }
    let shared = Shared::new(
        LiveToken::new(dirs.clone(), Zeroizing::new(TOKEN.to_string())),
        KeyPool::with_keychain(dirs, keychain),
        Fake {
            script: Box::new(script),
            seen: Mutex::new(Vec::new()),
        },
        DEFAULT_UPSTREAM.parse().unwrap(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        BODY_IDLE,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(test(Fixture {
        shared: Arc::new(shared),
    }));
    drop(runtime);
    drop(folder);
}

/// A client's POST to the Messages API, with the access token, split as the handler hands it
/// to `forward`.
pub fn messages_request() -> hyper::http::request::Parts {
    Request::post("/v1/messages?beta=true")
        .header("x-api-key", TOKEN)
        .header("content-type", "application/json")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// An answer's status, headers and whole body.
pub async fn collect(response: Response<Body>) -> (StatusCode, hyper::HeaderMap, String) {
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}
