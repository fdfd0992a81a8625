//! The proxy's own paths ([`crate::proxy_protocol`]): the health answer, which proves the
//! proxy holds the access token ([`crate::proxy_proof`]) and says nothing more than "alive"
//! to a caller that sends no nonce; and the shutdown, which takes a proof over a one-time
//! challenge instead of the token.
//!
//! Both answer only a request whose `Host` is a loopback name: a web page that rebinds its own
//! DNS name to 127.0.0.1 reaches the port, but its requests still say that name.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode};

use super::body::full;
use super::io::Body;
use super::network::advertised_network;
use super::replies::plain;
use super::shared::Shared;
use crate::proxy_proof::{
    CHALLENGE_HEADER, NONCE_HEADER, PROOF_HEADER, fresh_nonce, health_proof, is_nonce,
    shutdown_proved,
};
use crate::proxy_protocol::{BACKGROUND_MARK, Health, SERVICE, VERSION};

/// A challenge handed out in a health answer is good for one shutdown within this.
const CHALLENGE_LIFETIME: Duration = Duration::from_secs(30);
/// At most this many challenges wait at once: any local program may ask for them.
const MAX_CHALLENGES: usize = 16;

/// What an unproved health request learns: that something answers, nothing more.
const ALIVE: &str = "{\"alive\":true}";

/// The challenges handed out and not yet used, oldest first.
#[derive(Default)]
pub struct Challenges(Mutex<VecDeque<(String, Instant)>>);

impl Challenges {
    fn issue(&self) -> Option<String> {
        let challenge = fresh_nonce().ok()?;
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|(_, at)| at.elapsed() < CHALLENGE_LIFETIME);
        if list.len() >= MAX_CHALLENGES {
            list.pop_front();
        }
        list.push_back((challenge.clone(), Instant::now()));
        Some(challenge)
    }

    /// Takes `challenge` out if it was handed out and is still fresh: each is used once.
    fn redeem(&self, challenge: &str) -> bool {
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|(_, at)| at.elapsed() < CHALLENGE_LIFETIME);
        match list.iter().position(|(c, _)| c == challenge) {
            Some(i) => {
                list.remove(i);
                true
            }
            None => false,
        }
    }
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

pub fn refuse_host() -> Response<Body> {
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
            return json(
                report(shared, String::new(), true).as_bytes().to_vec(),
                None,
            );
        }
        return json(ALIVE.as_bytes().to_vec(), None);
    };
    // A `get` that just made a new token file is answered with the file's token.
    shared.token.refresh();
    let keychain = shared.keys.keychain_readable().await;
    let challenge = shared.challenges.issue().unwrap_or_default();
    let body = report(shared, challenge, keychain).into_bytes();
    let proof = health_proof(&shared.token.current(), nonce, &body);
    json(body, Some(proof))
}

fn report<U>(shared: &Shared<U>, challenge: String, keychain: bool) -> String {
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
        challenge,
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

/// Stops the proxy for a request that proves the token over a challenge this proxy handed out.
pub fn shutdown<U>(shared: &Shared<U>, headers: &HeaderMap) -> Response<Body> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(challenge), Some(proof)) = (text(CHALLENGE_HEADER), text(PROOF_HEADER)) else {
        return plain(
            StatusCode::UNAUTHORIZED,
            "a shutdown needs a proof over a challenge of the health answer (`keyswitch proxy stop`)\n",
        );
    };
    shared.token.refresh();
    // Redeemed before the proof is checked: a wrong guess uses the challenge up too.
    if !shared.challenges.redeem(challenge)
        || !shutdown_proved(&shared.token.current(), challenge, proof)
    {
        return plain(
            StatusCode::UNAUTHORIZED,
            "wrong, used or expired shutdown challenge (`keyswitch proxy stop` makes a fresh one)\n",
        );
    }
    shared.stop.notify_one();
    plain(StatusCode::OK, "stopping\n")
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
    fn a_challenge_is_good_once() {
        let challenges = Challenges::default();
        let c = challenges.issue().unwrap();
        assert!(!challenges.redeem("other"));
        assert!(challenges.redeem(&c));
        assert!(!challenges.redeem(&c));
    }
}
