//! The load generator's connections: one keep-alive HTTP/1.1 connection each, straight hyper
//! (no pool, no middleware), so what is timed is the server side and the loopback.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

pub type Sender = SendRequest<Full<Bytes>>;

/// Where a request goes and with which credential.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// The `x-api-key`: the proxy's token, or a key when talking to the stand-in directly.
    pub key: String,
}

pub async fn connect(addr: SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    stream.set_nodelay(true).unwrap();
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}

/// A Messages API request as Claude Code sends it.
pub fn request(target: &Target, key: &str, mode: &str, body: &Bytes) -> Request<Full<Bytes>> {
    let mut builder = Request::post("/v1/messages?beta=true")
        .header("host", target.addr.to_string())
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .header("user-agent", "claude-cli/2.1.328 (external, cli)")
        .header("x-claude-code-session-id", "0b1f2c3d-bench-session");
    if !mode.is_empty() {
        builder = builder.header("x-bench-mode", mode);
    }
    builder.body(Full::new(body.clone())).unwrap()
}

/// Sends a request and reads the whole answer: the time from sending to its last byte, and the
/// status.
pub async fn exchange(sender: &mut Sender, request: Request<Full<Bytes>>) -> (Duration, u16) {
    sender.ready().await.expect("connection closed");
    let start = Instant::now();
    let response = sender.send_request(request).await.expect("request failed");
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .expect("answer cut off");
    (start.elapsed(), status)
}

/// Sends a request and waits for the first byte of the answer's body (for an event stream: the
/// first event). Returns the time to it, and the rest of the body still to be read.
pub async fn first_byte(
    sender: &mut Sender,
    request: Request<Full<Bytes>>,
) -> (Duration, hyper::body::Incoming) {
    sender.ready().await.expect("connection closed");
    let start = Instant::now();
    let response = sender.send_request(request).await.expect("request failed");
    assert_eq!(response.status(), 200, "a stream was refused");
    let mut body = response.into_body();
    loop {
        let frame = body
            .frame()
            .await
            .expect("the stream ended before its first event")
            .expect("stream failed");
        if frame.data_ref().is_some_and(|d| !d.is_empty()) {
            return (start.elapsed(), body);
        }
    }
}
