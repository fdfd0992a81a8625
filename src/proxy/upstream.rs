//! The client side: one HTTP client for every upstream (hyper-util's connection pool, HTTP/2 by
//! ALPN, connections opened by [`super::connect`]), and telling network faults apart so the
//! caller knows whether another upstream may help.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::PROXY_AUTHORIZATION;
use hyper::http::uri::Scheme;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::connect::{CONNECT_TIMEOUT, Connector, ProxyTls, UnsupportedProxy, proxies};
use super::tls::Tls;

/// Upstream base URLs, parsed once: parsing the whole URL again for each request (host rules
/// and all) was a tenth of the proxy's CPU per request.
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

    /// Sends the request `build` makes and waits for the answer's head. Redirects are the
    /// client's business: they pass through as they are. `build` is called again for each
    /// attempt after an upstream refused the request unprocessed (see [`unprocessed`]).
    pub async fn send(
        &self,
        mut build: impl FnMut() -> Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, Fault> {
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
                Ok(response) => return Ok(response),
                Err(e) if retries < UNPROCESSED_RETRIES && unprocessed(&e) => retries += 1,
                Err(e) => return Err(Fault::classify(&e, &uri)),
            }
        }
    }
}

/// How many times a request is sent again after the upstream refused it unprocessed: what
/// reqwest (the client before this one) did.
const UNPROCESSED_RETRIES: usize = 2;

/// Whether HTTP/2 says the upstream did not process the request at all, so sending it again
/// (even a POST) cannot do it twice (RFC 9113 8.7): its stream was refused (REFUSED_STREAM: a
/// server at its stream limit, or shedding load), or it was above the last stream a server
/// going away gracefully (GOAWAY, NO_ERROR: connections being recycled) will answer. hyper's
/// pool then hands out another connection; without this the turn failed with a 502.
fn unprocessed(error: &legacy::Error) -> bool {
    find_source::<h2::Error>(error).is_some_and(|e| {
        e.is_remote()
            && ((e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR))
                || (e.is_reset() && e.reason() == Some(h2::Reason::REFUSED_STREAM)))
    })
}

/// Why an upstream could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Nothing to reach: refused, no such host, connect timeout. Another upstream may work.
    Unreachable(String),
    /// The TLS handshake failed (certificate, protocol): fix the trust settings.
    Tls(String),
    /// The network's proxy settings cannot work as they are (a SOCKS proxy, credentials the
    /// proxy wants or refuses): fix them; trying again will not help.
    Settings(String),
    /// The connection broke after the request went out: it may have been processed.
    Broken(String),
}

impl Fault {
    /// Why sending to `uri` failed: errors while connecting (TCP, the network's proxy, TLS)
    /// reached nothing; any other means the connection broke with the request under way.
    pub fn classify(error: &legacy::Error, uri: &Uri) -> Self {
        let chain = chain_text(error);
        let lower = chain.to_ascii_lowercase();
        let tls = ["certificate", "tls", "handshake", "unknownissuer", "ssl"]
            .iter()
            .any(|w| lower.contains(w));
        if error.is_connect() && tls {
            // Through a tunnel TLS is still end to end: the certificate is the upstream's (or
            // the inspecting proxy's), so the cure is the same. An https:// proxy's own
            // certificate is named as the proxy's: the upstream was never contacted.
            let cause = tls_cause(&lower, &chain);
            match proxy_for(uri).filter(|_| find_source::<ProxyTls>(error).is_some()) {
                Some(proxy) => Self::Tls(format!(
                    "TLS to the proxy {} (from {}) failed: {cause}",
                    proxy.address, proxy.setting
                )),
                None => Self::Tls(format!("TLS failed: {cause}")),
            }
        } else if error.is_connect() {
            // Behind a proxy, everything up to the tunnel is the proxy's doing: name it, or
            // the user hunts for a fault in an upstream that was never contacted.
            match proxy_for(uri) {
                Some(proxy) => {
                    let cause = proxy_cause(&proxy, error, &lower, &chain);
                    let settings = find_source::<UnsupportedProxy>(error).is_some()
                        || lower.contains("proxy authorization required");
                    if settings {
                        Self::Settings(cause)
                    } else {
                        Self::Unreachable(cause)
                    }
                }
                None => Self::Unreachable(direct_cause(error, &lower, &chain)),
            }
        } else {
            Self::Broken(chain)
        }
    }

    pub fn describe(&self) -> &str {
        match self {
            Self::Unreachable(s) | Self::Tls(s) | Self::Settings(s) | Self::Broken(s) => s,
        }
    }
}

fn direct_cause(error: &legacy::Error, lower: &str, chain: &str) -> String {
    if has_io_kind(error, std::io::ErrorKind::ConnectionRefused) {
        "connection refused".to_string()
    } else if lower.contains("dns") || lower.contains("lookup") {
        "DNS lookup failed (no such host, or no DNS server answered)".to_string()
    } else if has_io_kind(error, std::io::ErrorKind::TimedOut) || lower.contains("timed out") {
        format!("no connection within {}s", CONNECT_TIMEOUT.as_secs())
    } else {
        chain.to_string()
    }
}

/// The proxy a request goes through, as the connector picks it.
struct ProxyUse {
    /// host:port, never the credentials a proxy URL may carry.
    address: String,
    /// Where the setting came from: the variable's name.
    setting: &'static str,
    /// Whether the setting carries credentials for the proxy.
    with_credentials: bool,
}

fn proxy_for(uri: &Uri) -> Option<ProxyUse> {
    let intercept = proxies().intercept(uri)?;
    let proxy = intercept.uri();
    let address = match proxy.port_u16() {
        Some(port) => format!("{}:{port}", proxy.host()?),
        None => proxy.host()?.to_string(),
    };
    let names: [&'static str; 4] = if uri.scheme() == Some(&Scheme::HTTPS) {
        ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
    } else {
        ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
    };
    let setting = names
        .into_iter()
        .find(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
        .unwrap_or("the system's proxy settings");
    Some(ProxyUse {
        address,
        setting,
        with_credentials: intercept.basic_auth().is_some(),
    })
}

fn proxy_cause(proxy: &ProxyUse, error: &legacy::Error, lower: &str, chain: &str) -> String {
    let ProxyUse {
        address,
        setting,
        with_credentials,
    } = proxy;
    let which = format!("the proxy {address} (from {setting})");
    if let Some(unsupported) = find_source::<UnsupportedProxy>(error) {
        format!(
            "{which} is a {}:// proxy, and keyswitch speaks only to HTTP proxies: set {setting} to an http:// or https:// proxy, or add this host to NO_PROXY",
            unsupported.scheme
        )
    } else if lower.contains("proxy authorization required") && *with_credentials {
        format!(
            "{which} refused the credentials in {setting} (407): check the user name and password there"
        )
    } else if lower.contains("proxy authorization required") {
        format!(
            "{which} wants credentials (407): put them in {setting} as http://USER:PASSWORD@{address}"
        )
    } else if lower.contains("tunnel error: unsuccessful") {
        format!(
            "{which} would not open a tunnel to it; if this host is to be reached directly, add it to NO_PROXY"
        )
    } else if has_io_kind(error, std::io::ErrorKind::ConnectionRefused) {
        format!("{which} refused the connection: is it running, and is {setting} right?")
    } else if lower.contains("dns") || lower.contains("lookup") {
        format!("{which}: its host name was not found (DNS): is {setting} right?")
    } else if has_io_kind(error, std::io::ErrorKind::TimedOut) || lower.contains("timed out") {
        format!(
            "{which} did not answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        )
    } else {
        format!("through {which}: {chain}")
    }
}

fn tls_cause(lower: &str, chain: &str) -> String {
    if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
        "the certificate is signed by an unknown authority (set SSL_CERT_FILE or NODE_EXTRA_CA_CERTS to your company's CA file)".to_string()
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        "the certificate is not valid for this host name".to_string()
    } else if lower.contains("expired") {
        "the certificate has expired".to_string()
    } else {
        chain.to_string()
    }
}

/// `error`'s causes, nearest first (the client's own error says only "client error").
fn causes(error: &legacy::Error) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(error.source(), |e: &&(dyn std::error::Error + 'static)| {
        (*e).source()
    })
}

/// The first error of type `E` among `error`'s causes.
fn find_source<E: std::error::Error + 'static>(error: &legacy::Error) -> Option<&E> {
    causes(error).find_map(|e| e.downcast_ref::<E>())
}

fn has_io_kind(error: &legacy::Error, kind: std::io::ErrorKind) -> bool {
    causes(error)
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == kind)
}

/// The error and its causes on one line, without the URL (which the caller names by host).
fn chain_text(error: &legacy::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for text in causes(error).map(|e| e.to_string()) {
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    if parts.is_empty() {
        parts.push("request failed".to_string());
    }
    parts
        .join(": ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
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
