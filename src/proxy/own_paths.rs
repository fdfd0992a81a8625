//! The proxy's own paths ([`crate::proxy_protocol`]): the health answer, which proves the
//! proxy holds the access token ([`crate::proxy_proof`]) and says nothing more than "alive"
//! to a caller that sends no nonce; and the shutdown, which takes a proof of the token over
//! the client's own nonce and time instead of the token.
//!
//! Both answer only a request whose `Host` is a loopback name: a web page that rebinds its own
//! DNS name to 127.0.0.1 reaches the port, but its requests still say that name.

use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode, Uri};

use super::body::full;
use super::io::Body;
use super::network::advertised_network;
use super::replies::plain;
use super::shared::Shared;
use super::shutdown_nonces::Refusal;
use crate::proxy_proof::{
    NONCE_HEADER, PROOF_HEADER, TIME_HEADER, health_proof, is_nonce, shutdown_proved, unix_seconds,
};
use crate::proxy_protocol::{BACKGROUND_MARK, Health, SERVICE, VERSION};

/// What an unproved health request learns: that something answers, nothing more.
const ALIVE: &str = "{\"alive\":true}";

/// The answer for a request to the proxy's own paths whose `Host` will not do: `None` when it
/// is one loopback name. Two `Host` headers, or one that disagrees with an absolute request
/// URI, make the request ambiguous (RFC 9112 3.2): 400, whatever the first one says.
pub fn host_refusal(uri: &Uri, headers: &HeaderMap) -> Option<Response<Body>> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    let disagrees = match (uri.authority(), host.and_then(|h| h.to_str().ok())) {
        (Some(authority), Some(host)) => !authority.as_str().eq_ignore_ascii_case(host),
        _ => false,
    };
    if hosts.next().is_some() || disagrees {
        return Some(plain(
            StatusCode::BAD_REQUEST,
            "a request to the keyswitch proxy's own paths needs exactly one Host, agreeing with the request URI\n",
        ));
    }
    (!loopback_host(headers)).then(refuse_host)
}

/// Whether `Host` names loopback: 127.0.0.1, localhost or `[::1]`, with or without a port.
pub fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((name, "")) => name,
            Some((name, port)) if port.strip_prefix(':').is_some_and(valid_port) => name,
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if valid_port(port) => name,
            Some(_) => return false,
            None => host,
        },
    };
    name == "127.0.0.1" || name == "::1" || name.eq_ignore_ascii_case("localhost")
}

fn valid_port(text: &str) -> bool {
    text.parse::<u16>().is_ok()
}

fn refuse_host() -> Response<Body> {
    plain(
        StatusCode::FORBIDDEN,
        "the keyswitch proxy answers its own paths only for a loopback Host (127.0.0.1, localhost, [::1])\n",
    )
}

/// The health answer: to a request with a nonce, everything the CLI decides on, with a proof
/// over exactly these bytes; to any other, only that the proxy is alive.
pub async fn health<U>(shared: &Shared<U>, headers: &HeaderMap) -> Response<Body> {
    let nonce = headers
        .get(NONCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|n| is_nonce(n));
    let legacy = crate::failpoints::legacy_health();
    let Some(nonce) = nonce.filter(|_| !legacy) else {
        if legacy {
            return json(report(shared, true).as_bytes().to_vec(), None);
        }
        return json(ALIVE.as_bytes().to_vec(), None);
    };
    // A `get` that just made a new token file is answered with the file's token.
    shared.token.refresh();
    let keychain = shared.keys.keychain_readable().await;
    let body = report(shared, keychain).into_bytes();
    let proof = health_proof(&shared.token.current(), nonce, &body);
    json(body, Some(proof))
}

fn report<U>(shared: &Shared<U>, keychain: bool) -> String {
    let token = shared.token.current();
    let health = Health {
        service: SERVICE.to_string(),
        version: VERSION.to_string(),
        pid: std::process::id(),
        listen: shared.listen.to_string(),
        network: advertised_network(&token, std::env::var_os(BACKGROUND_MARK).is_some()),
        upstream: shared.default_upstream.to_string(),
        keychain,
        // When it began; doctor reads the file's problem itself.
        config_problem: shared
            .keys
            .config_trouble()
            .map(|t| format!("since {}", t.since.strftime("%Y-%m-%d %H:%M:%S UTC"))),
    };
    serde_json::to_string(&health).unwrap_or_default()
}

fn json(body: Vec<u8>, proof: Option<String>) -> Response<Body> {
    let mut response = Response::new(full(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(proof) = proof.and_then(|p| HeaderValue::from_str(&p).ok()) {
        headers.insert(PROOF_HEADER, proof);
    }
    response
}

/// Stops the proxy for a request that proves the token over its own fresh nonce and time
/// ([`crate::proxy_proof::shutdown_proof`]).
pub fn shutdown<U>(shared: &Shared<U>, headers: &HeaderMap) -> Response<Body> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let nonce = text(NONCE_HEADER).filter(|n| is_nonce(n));
    let time = text(TIME_HEADER).and_then(|t| t.parse::<u64>().ok());
    let (Some(nonce), Some(time), Some(proof)) = (nonce, time, text(PROOF_HEADER)) else {
        return plain(
            StatusCode::UNAUTHORIZED,
            "a shutdown needs a nonce, a time and a proof of the token over them (`keyswitch proxy stop` sends them)\n",
        );
    };
    shared.token.refresh();
    if !shutdown_proved(&shared.token.current(), nonce, time, proof) {
        return plain(
            StatusCode::UNAUTHORIZED,
            "the shutdown's proof is not of this proxy's token (its token file changed? `keyswitch proxy stop` again)\n",
        );
    }
    // Only now, with the proof good, is the nonce kept: no one else can fill the set.
    match shared.shutdown_nonces.take(nonce, time, unix_seconds()) {
        Ok(()) => {
            shared.stop.notify_one();
            plain(StatusCode::OK, "stopping\n")
        }
        Err(Refusal::OutOfTime) => plain(
            StatusCode::UNAUTHORIZED,
            "the shutdown's time is too far from the proxy's clock, or before the proxy started: a recorded request, or a clock set wrong\n",
        ),
        Err(Refusal::Used) => plain(
            StatusCode::UNAUTHORIZED,
            "this shutdown was taken before: a request played again (`keyswitch proxy stop` makes a fresh one)\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, value.parse().unwrap());
        h
    }

    #[test]
    fn only_a_loopback_host_is_answered() {
        for good in [
            "127.0.0.1",
            "127.0.0.1:8082",
            "localhost",
            "LocalHost:1",
            "[::1]",
            "[::1]:8082",
        ] {
            assert!(loopback_host(&host(good)), "{good}");
        }
        for bad in [
            "evil.example",
            "evil.example:8082",
            "127.0.0.1.evil.example",
            "localhost.evil.example:80",
            "127.0.0.2",
            "[::1]x",
            "[::1]8082",
            "[::2]:80",
            "127.0.0.1:port",
            "",
        ] {
            assert!(!loopback_host(&host(bad)), "{bad}");
        }
        assert!(!loopback_host(&HeaderMap::new()));
    }

    #[test]
    fn two_hosts_or_a_host_that_disagrees_with_the_uri_is_a_bad_request() {
        let status = |uri: &str, hosts: &[&str]| {
            let mut h = HeaderMap::new();
            for value in hosts {
                h.append(header::HOST, value.parse().unwrap());
            }
            host_refusal(&uri.parse().unwrap(), &h).map(|r| r.status())
        };
        let path = "/_keyswitch/health";
        assert_eq!(status(path, &["127.0.0.1:8082"]), None);
        assert_eq!(
            status(
                "http://127.0.0.1:8082/_keyswitch/health",
                &["127.0.0.1:8082"]
            ),
            None
        );
        let bad = Some(StatusCode::BAD_REQUEST);
        assert_eq!(status(path, &["127.0.0.1", "evil.example"]), bad);
        assert_eq!(status(path, &["127.0.0.1", "127.0.0.1"]), bad);
        assert_eq!(
            status("http://evil.example/_keyswitch/health", &["127.0.0.1"]),
            bad
        );
        assert_eq!(
            status("http://127.0.0.1/_keyswitch/health", &["evil.example"]),
            bad
        );
        assert_eq!(status(path, &["evil.example"]), Some(StatusCode::FORBIDDEN));
        assert_eq!(status(path, &[]), Some(StatusCode::FORBIDDEN));
    }
}
