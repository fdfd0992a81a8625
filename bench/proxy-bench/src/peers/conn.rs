//! The load generator's side of the `peers` mode: one keep-alive connection to a target (the
//! stand-in directly, or a proxy) that reconnects when the server closed it while idle (uvicorn,
//! under LiteLLM, closes idle connections after 5 s), the request bodies, and one exchange with
//! a timeout. Errors are returned, never panicked on: a peer that fails a request is reported.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;

use crate::client::Sender;

/// Longest any one answer may take; a peer that holds a request longer has failed it.
pub const TIMEOUT: Duration = Duration::from_secs(90);

/// Where requests go and with which credential.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub key: String,
}

/// The bodies, one per stand-in mode; the mode is a marker opening the user turn.
pub struct Bodies {
    pub plain: Bytes,
    pub sse: Bytes,
    pub failover: Bytes,
    pub spent: Bytes,
    pub hold: Bytes,
}

impl Bodies {
    pub fn new(size: usize) -> Bodies {
        Bodies {
            plain: body(size, "none", false),
            sse: body(size, "sse", true),
            failover: body(size, "failover", false),
            spent: body(size, "spent", false),
            hold: body(size, "hold", true),
        }
    }
}

/// A Messages API request body of `size` bytes: one long user turn, opened by `[bench:MODE]`.
fn body(size: usize, mode: &str, stream: bool) -> Bytes {
    let head = format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":{stream},"messages":[{{"role":"user","content":"[bench:{mode}] "#
    );
    let tail = r#""}]}"#;
    let filler = "The quick brown fox jumps over the lazy dog. ";
    let mut text = head;
    while text.len() + tail.len() < size {
        let room = size - tail.len() - text.len();
        text.push_str(&filler[..room.min(filler.len())]);
    }
    text.push_str(tail);
    Bytes::from(text)
}

fn request(target: &Target, body: &Bytes) -> Request<Full<Bytes>> {
    Request::post("/v1/messages?beta=true")
        .header("host", target.addr.to_string())
        .header("x-api-key", &target.key)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .header("user-agent", "claude-cli/2.1.328 (external, cli)")
        .header("x-claude-code-session-id", "0b1f2c3d-bench-session")
        .body(Full::new(body.clone()))
        .unwrap()
}

pub async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_nodelay(true).unwrap();
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake with {addr}: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// What one exchange gave: time from sending to the last byte (or the first, for
/// [`Conn::first_byte`]), the status and the headers.
pub struct Answer {
    pub took: Duration,
    pub status: u16,
    pub headers: HeaderMap,
}

pub struct Conn {
    pub target: Target,
    sender: Option<Sender>,
}

impl Conn {
    pub fn new(target: Target) -> Conn {
        Conn {
            target,
            sender: None,
        }
    }

    /// A connection that is open now: the one kept, or a new one.
    async fn ready(&mut self) -> Result<&mut Sender, String> {
        let usable = match &mut self.sender {
            Some(s) if !s.is_closed() => s.ready().await.is_ok(),
            _ => false,
        };
        if !usable {
            self.sender = Some(connect(self.target.addr).await?);
        }
        Ok(self.sender.as_mut().unwrap())
    }

    /// Sends `body` and reads the whole answer. A connection the server had closed is opened
    /// again and the request sent once more (not timed twice).
    pub async fn exchange(&mut self, body: &Bytes) -> Result<Answer, String> {
        match self.once(body).await {
            Ok(a) => Ok(a),
            Err(_) => {
                self.sender = None;
                self.once(body).await
            }
        }
    }

    async fn once(&mut self, body: &Bytes) -> Result<Answer, String> {
        let (response, start) = self.send(body).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        tokio::time::timeout(TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| "answer not finished within the timeout".to_string())?
            .map_err(|e| format!("answer cut off: {e}"))?;
        Ok(Answer {
            took: start.elapsed(),
            status,
            headers,
        })
    }

    async fn send(&mut self, body: &Bytes) -> Result<(hyper::Response<Incoming>, Instant), String> {
        let request = request(&self.target, body);
        let sender = self.ready().await?;
        let start = Instant::now();
        let response = tokio::time::timeout(TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| "no answer within the timeout".to_string())?
            .map_err(|e| format!("request failed: {e}"))?;
        Ok((response, start))
    }

    /// Sends `body` and waits for the first data of the answer's body (for an event stream,
    /// the first event): the time to it, and the rest of the body still to be read.
    pub async fn first_byte(&mut self, body: &Bytes) -> Result<(Duration, Incoming), String> {
        let (response, start) = match self.send(body).await {
            Ok(r) => r,
            Err(_) => {
                self.sender = None;
                self.send(body).await?
            }
        };
        if response.status() != 200 {
            return Err(format!("a stream was answered {}", response.status()));
        }
        let mut rest = response.into_body();
        loop {
            let frame = tokio::time::timeout(TIMEOUT, rest.frame())
                .await
                .map_err(|_| "no first event within the timeout".to_string())?
                .ok_or("the stream ended before its first event")?
                .map_err(|e| format!("stream failed: {e}"))?;
            if frame.data_ref().is_some_and(|d| !d.is_empty()) {
                return Ok((start.elapsed(), rest));
            }
        }
    }
}
