//! A tiny HTTP/1.1 client for the proxy's control paths ([`crate::proxy_protocol`]): asking
//! what answers on the proxy's address, and asking it to stop.
//!
//! Plain std networking, no async runtime: `keyswitch get` probes on every Claude Code start
//! and refresh, and a probe of a running proxy costs one loopback round trip.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use std::time::Instant;

use crate::proxy_protocol::{HEALTH_PATH, Health, SERVICE, SHUTDOWN_PATH};

/// A request to loopback gives up after this: a program that accepts and never answers must
/// not hang Claude Code's helper.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// What answers on the proxy's address.
#[derive(Debug)]
pub enum Probe {
    Ours(Health),
    Nothing,
    /// Something else holds the port (or a keyswitch proxy that does not answer in time).
    Foreign(String),
}

pub fn probe(addr: SocketAddr) -> Probe {
    let mut stream = match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Probe::Nothing,
        Err(e) => return Probe::Foreign(format!("connecting failed: {e}")),
    };
    match exchange(&mut stream, "GET", HEALTH_PATH, None) {
        Ok((200, body)) => match serde_json::from_slice::<Health>(&body) {
            Ok(h) if h.service == SERVICE => Probe::Ours(h),
            _ => Probe::Foreign("it answers, but not as a keyswitch proxy".to_string()),
        },
        Ok((status, _)) => Probe::Foreign(format!("it answers HTTP {status}")),
        Err(e) => Probe::Foreign(format!(
            "it gives no HTTP answer in time ({e}): a stopped or hung proxy, or another program"
        )),
    }
}

/// Asks the proxy at `addr` to stop; returns the HTTP status of its answer.
pub fn request_shutdown(addr: SocketAddr, token: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    exchange(&mut stream, "POST", SHUTDOWN_PATH, Some(token)).map(|(status, _)| status)
}

/// One HTTP/1.1 request with `Connection: close`; returns the status and the body.
fn exchange(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, Vec<u8>)> {
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    let auth = token
        .map(|t| format!("x-api-key: {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: keyswitch\r\n{auth}content-length: 0\r\nconnection: close\r\n\r\n"
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
    let body_at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?
        + 4;
    Ok((status, response[body_at..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_listening_is_told_from_a_foreign_program() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi")
                .unwrap();
        });
        assert!(matches!(probe(addr), Probe::Foreign(_)));
        server.join().unwrap();
        assert!(matches!(probe(addr), Probe::Nothing));
    }
}
