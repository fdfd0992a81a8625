//! A tiny HTTP/1.1 client for the proxy's control paths ([`crate::proxy_protocol`]): asking
//! what answers on the proxy's address, and asking it to stop.
//!
//! Nothing that answers is trusted on its word: a probe sends a fresh nonce and takes the
//! listener for this user's proxy only when its answer proves the token
//! ([`crate::proxy_proof`]); a shutdown carries a proof of the token over a fresh nonce and
//! the time, never the token.
//!
//! Plain std networking, no async runtime: `keyswitch get` probes on every Claude Code start
//! and refresh, and a probe of a running proxy costs one loopback round trip.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use std::time::Instant;

use crate::proxy_proof::{
    NONCE_HEADER, PROOF_HEADER, TIME_HEADER, fresh_nonce, health_proved, shutdown_proof,
    unix_seconds,
};
use crate::proxy_protocol::{HEALTH_PATH, Health, SERVICE, SHUTDOWN_PATH};

/// A request to loopback gives up after this: a program that accepts and never answers must
/// not hang Claude Code's helper.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// What answers on the proxy's address.
#[derive(Debug)]
pub enum Probe {
    /// This user's proxy: its answer proves the token.
    Ours(Health),
    Nothing,
    /// Something answers and proves nothing: never trusted, never sent the token.
    Unproven(Unproven),
}

/// A listener that did not prove it holds the token.
#[derive(Debug)]
pub enum Unproven {
    /// Answers as a keyswitch proxy did before proofs (an older version), or poses as one.
    Legacy { version: String },
    /// Claims to be a keyswitch proxy, and its proof is not of this user's token.
    WrongProof,
    /// Answers, not as a keyswitch proxy.
    Other(String),
    /// Takes the connection and gives no answer in time: a stopped or hung proxy, or another
    /// program.
    Silent(String),
}

impl Unproven {
    /// What it did, for an error message.
    pub fn describe(&self) -> String {
        match self {
            Self::Legacy { version } => format!(
                "it answers like keyswitch proxy {version}, an older version that cannot prove it holds your token"
            ),
            Self::WrongProof => {
                "it answers like a keyswitch proxy but cannot prove it holds your token".to_string()
            }
            Self::Other(what) | Self::Silent(what) => what.clone(),
        }
    }
}

/// Asks what answers at `addr`; `token` is what a proof must be of (it is not sent).
pub fn probe(addr: SocketAddr, token: &str) -> Probe {
    let Ok(nonce) = fresh_nonce() else {
        return Probe::Unproven(Unproven::Other(
            "no random bytes to make a nonce with".to_string(),
        ));
    };
    let mut stream = match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Probe::Nothing,
        Err(e) => return Probe::Unproven(Unproven::Other(format!("connecting failed: {e}"))),
    };
    let answer = match exchange(
        &mut stream,
        addr,
        "GET",
        HEALTH_PATH,
        &[(NONCE_HEADER, &nonce)],
    ) {
        Ok(answer) => answer,
        Err(e) => {
            return Probe::Unproven(Unproven::Silent(format!(
                "it gives no HTTP answer in time ({e}): a stopped or hung proxy, or another program"
            )));
        }
    };
    if answer.status != 200 {
        return Probe::Unproven(Unproven::Other(format!(
            "it answers HTTP {}",
            answer.status
        )));
    }
    let claims = serde_json::from_slice::<Health>(&answer.body)
        .ok()
        .filter(|h| h.service == SERVICE);
    match (answer.header(PROOF_HEADER), claims) {
        (Some(proof), Some(health)) if health_proved(token, &nonce, &answer.body, proof) => {
            Probe::Ours(health)
        }
        (Some(_), _) => Probe::Unproven(Unproven::WrongProof),
        (None, Some(health)) => Probe::Unproven(Unproven::Legacy {
            version: health.version,
        }),
        (None, None) => Probe::Unproven(Unproven::Other(
            "it answers, but not as a keyswitch proxy".to_string(),
        )),
    }
}

/// Asks the proxy at `addr` (one that proved itself) to stop; returns the HTTP status and
/// text of its answer. The token stays here: only a proof over a fresh nonce and the time
/// goes, which no one else can make, use up or play again.
pub fn request_shutdown(addr: SocketAddr, token: &str) -> std::io::Result<(u16, String)> {
    let nonce = fresh_nonce().map_err(std::io::Error::other)?;
    let time = unix_seconds();
    let proof = shutdown_proof(token, &nonce, time);
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    exchange(
        &mut stream,
        addr,
        "POST",
        SHUTDOWN_PATH,
        &[
            (NONCE_HEADER, &nonce),
            (TIME_HEADER, &time.to_string()),
            (PROOF_HEADER, &proof),
        ],
    )
    .map(|answer| {
        let text = String::from_utf8_lossy(&answer.body).trim().to_string();
        (answer.status, text)
    })
}

struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns the status, head and body.
fn exchange(
    stream: &mut TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Answer> {
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    // The proxy answers its own paths only for a loopback Host (DNS rebinding).
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{extra}content-length: 0\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    // One deadline for the whole answer: a program that trickles bytes must not hold `get`.
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || response.len() > 64 * 1024 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no complete answer in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buffer)? {
            0 => break,
            n => response.extend_from_slice(&buffer[..n]),
        }
    }
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let status = response
        .strip_prefix(b"HTTP/1.")
        .and_then(|rest| rest.get(2..))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.parse().ok())
        .ok_or_else(bad)?;
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    Ok(Answer {
        status,
        head: String::from_utf8_lossy(&response[..head_end]).into_owned(),
        body: response[head_end + 4..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener that answers one connection with `answer`.
    fn answering(answer: &'static [u8]) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            s.write_all(answer).unwrap();
            buf[..n].to_vec()
        });
        (addr, server)
    }

    #[test]
    fn nothing_listening_is_told_from_a_foreign_program() {
        let (addr, server) = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi");
        assert!(matches!(
            probe(addr, "ksp-x"),
            Probe::Unproven(Unproven::Other(_))
        ));
        server.join().unwrap();
        assert!(matches!(probe(addr, "ksp-x"), Probe::Nothing));
    }

    #[test]
    fn an_answer_without_a_proof_of_this_token_is_not_ours() {
        let health = b"HTTP/1.1 200 OK\r\n\r\n{\"service\":\"keyswitch-proxy\",\"version\":\"0.9.0\",\"pid\":1,\"listen\":\"x:1\"}";
        let (addr, server) = answering(health);
        assert!(matches!(
            probe(addr, "ksp-x"),
            Probe::Unproven(Unproven::Legacy { .. })
        ));
        let sent = server.join().unwrap();
        let sent = String::from_utf8_lossy(&sent);
        assert!(
            sent.contains(NONCE_HEADER) && !sent.contains("ksp-x"),
            "{sent}"
        );
        assert!(sent.contains(&format!("host: {addr}")), "{sent}");

        let forged = b"HTTP/1.1 200 OK\r\nx-keyswitch-proof: 00\r\n\r\n{\"service\":\"keyswitch-proxy\",\"version\":\"9\",\"pid\":1,\"listen\":\"x\"}";
        let (addr, server) = answering(forged);
        assert!(matches!(
            probe(addr, "ksp-x"),
            Probe::Unproven(Unproven::WrongProof)
        ));
        server.join().unwrap();
    }
}
