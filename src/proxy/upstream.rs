//! The client side: one HTTP client for every upstream (hyper-util's connection pool, HTTP/2 by
//! ALPN, connections opened by [`super::connect`]) behind the [`Upstream`] trait, and the
//! upstream base URLs it joins request paths onto.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::PROXY_AUTHORIZATION;
use hyper::http::uri::Scheme;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::connect::{Connector, proxies};
use super::fault::{Fault, find_source};
use super::io::{Body, BoxError};
use super::tls::Tls;

/// Upstream base URLs, parsed once: parsing the whole URL again for each request (host rules
/// and all) costs a tenth of the proxy's CPU per request (scripts/bench-proxy.sh).
#[derive(Default)]
pub struct Bases(Mutex<HashMap<String, Option<url::Url>>>);

/// Upstreams are the default and the keys' endpoints; more than this means the config kept
/// changing, and the cache starts over.
const MAX_BASES: usize = 64;

impl Bases {
    /// `https://host/prefix` + `/v1/messages?beta=true`: the same URL as parsing the two joined
    /// as text, without parsing the upstream again. `None` when the upstream is no URL.
    pub fn join(&self, upstream: &str, path_and_query: &str) -> Option<Uri> {
        let base = {
            let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get(upstream) {
                Some(base) => base.clone()?,
                None => {
                    if cache.len() >= MAX_BASES {
                        cache.clear();
                    }
                    let base = url::Url::parse(upstream).ok();
                    cache.insert(upstream.to_string(), base.clone());
                    base?
                }
            }
        };
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let mut url = base.clone();
        url.set_path(&format!("{}{path}", base.path().trim_end_matches('/')));
        url.set_query(query);
        url.as_str().parse().ok()
    }
}

/// The client every request to an upstream goes through.
pub struct Client(legacy::Client<Connector, Full<Bytes>>);

impl Client {
    pub fn new() -> Result<Self> {
        let connector = Connector::new(Tls::new()?);
        let client = legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self(client))
    }
}

/// How a request reaches an upstream: the proxy's [`Client`], or a test's stand-in.
pub trait Upstream: Send + Sync + 'static {
    /// Sends the request `build` makes (as often as the request has to go out again) and waits
    /// for the answer's head; its body streams on. A [`Fault`] when no answer came.
    fn send(
        &self,
        build: impl FnMut() -> Request<Full<Bytes>> + Send,
    ) -> impl Future<Output = Result<Response<Body>, Fault>> + Send;
}

impl Upstream for Client {
    /// Redirects are the client's business: they pass through as they are. `build` is called
    /// again for each attempt after an upstream refused the request unprocessed (see
    /// [`unprocessed`]).
    async fn send(
        &self,
        mut build: impl FnMut() -> Request<Full<Bytes>> + Send,
    ) -> Result<Response<Body>, Fault> {
        let mut retries = 0;
        loop {
            let mut request = build();
            let uri = request.uri().clone();
            if uri.scheme() == Some(&Scheme::HTTP)
                && let Some(auth) = proxies()
                    .intercept(&uri)
                    .and_then(|p| p.basic_auth().cloned())
            {
                // Plain HTTP through a proxy: the proxy's credentials go with each request (a
                // tunnel carries them in its CONNECT instead).
                request.headers_mut().insert(PROXY_AUTHORIZATION, auth);
            }
            match self.0.request(request).await {
                Ok(response) => {
                    return Ok(response.map(|body| body.map_err(BoxError::from).boxed()));
                }
                Err(e) if retries < UNPROCESSED_RETRIES && unprocessed(&e) => retries += 1,
                Err(e) => return Err(Fault::classify(&e, &uri)),
            }
        }
    }
}

/// How many times a request is sent again after the upstream refused it unprocessed: enough
/// to get past connections being recycled or a stream limit, and no loop against a server that
/// refuses every stream.
const UNPROCESSED_RETRIES: usize = 2;

/// Whether HTTP/2 says the upstream did not process the request at all, so sending it again
/// (even a POST) cannot do it twice (RFC 9113 8.7): its stream was refused (REFUSED_STREAM: a
/// server at its stream limit, or shedding load), or it was above the last stream a server
/// going away gracefully (GOAWAY, NO_ERROR: connections being recycled) will answer. hyper's
/// pool then hands out another connection; without this the turn would fail with a 502.
fn unprocessed(error: &legacy::Error) -> bool {
    find_source::<h2::Error>(error).is_some_and(|e| {
        e.is_remote()
            && ((e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR))
                || (e.is_reset() && e.reason() == Some(h2::Reason::REFUSED_STREAM)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joined_url_is_the_url_of_the_joined_text() {
        let bases = Bases::default();
        for upstream in [
            "https://api.anthropic.com",
            "https://proxy.corp/anthropic/",
            "https://proxy.corp/anthropic",
            "http://127.0.0.1:9",
            "https://bücher.example:8443/a%20b/",
        ] {
            for path_and_query in [
                "/",
                "/v1/messages?beta=true",
                "/v1/messages?",
                "/v1/messages/count_tokens?beta=true&x=%2F",
                "/v1/a%20b/c?q=1?2",
                "/v1/~user/é",
            ] {
                let text = format!("{}{path_and_query}", upstream.trim_end_matches('/'));
                let expected: Uri = url::Url::parse(&text).unwrap().as_str().parse().unwrap();
                // Twice: the first parses the upstream, the second comes from the cache.
                for _ in 0..2 {
                    assert_eq!(
                        bases.join(upstream, path_and_query).as_ref(),
                        Some(&expected),
                        "{upstream} + {path_and_query}"
                    );
                }
            }
        }
        assert_eq!(bases.join("not a url", "/v1/messages"), None);
    }
}
