//! The client side: one HTTP client for every upstream (hyper-util's connection pool, HTTP/2 by
//! ALPN, connections opened by [`super::connect`]) behind the [`Upstream`] trait.

use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::PROXY_AUTHORIZATION;
use hyper::http::uri::Scheme;
use hyper::{Request, Response};
use hyper_util::client::legacy;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::connect::{Connector, proxies};
use super::fault::{Fault, find_source};
use super::io::{Body, BoxError};
use super::tls::Tls;

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
