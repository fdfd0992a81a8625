//! The stand-in upstream: a Messages API look-alike on loopback, on a thread and runtime of its
//! own. What it answers is chosen by the request's `x-bench-mode` header:
//! - none: reads the whole body, answers 200 with a small JSON message;
//! - `sse`: a short event stream, the first event sent with the headers;
//! - `hold`: the first event, then the stream stays open until [`StandIn::release`];
//! - `failover`: 429 for a key containing `-primary-`, 200 for any other key. It notes the time
//!   it hands hyper the 429 and the time the next request's head arrives: the failover gap;
//! - `spent`: 429 with `retry-after: 30` for every key (every key has run out).
//!
//! Without the header, the mode is read from a `[bench:MODE]` marker at the start of the user
//! turn (`peers` mode: the peers do not forward unknown headers, but all forward the text). The
//! key is `x-api-key`, or `authorization: Bearer …` (better-ccflare sends that).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::channel::Channel;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

type Body = BoxBody<Bytes, Infallible>;

const MESSAGE: &str = r#"{"id":"msg_bench","type":"message","role":"assistant","model":"claude-bench","content":[{"type":"text","text":"Hello from the stand-in upstream."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12000,"output_tokens":9}}"#;
const RATE_LIMITED: &str = r#"{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed your organization's rate limit."}}"#;
/// A complete Messages API stream (proxies that parse it, as LiteLLM does, need every part).
const FIRST_EVENT: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-bench\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12000,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
const DELTA: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n";
const LAST_EVENT: &str = "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":9}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

#[derive(Default)]
struct Failover {
    last_429: Option<Instant>,
    gaps: Vec<Duration>,
    primary_429s: u64,
    /// Requests in the `failover` and `spent` modes: how many upstream calls a client's one
    /// request cost.
    calls: u64,
}

pub struct StandIn {
    pub addr: SocketAddr,
    failover: Arc<Mutex<Failover>>,
    release: watch::Sender<u64>,
}

impl StandIn {
    pub fn start() -> StandIn {
        StandIn::start_on(0)
    }

    /// On a given loopback port (0: any free one).
    pub fn start_on(port: u16) -> StandIn {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("cannot bind the stand-in to 127.0.0.1:{port}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let failover = Arc::new(Mutex::new(Failover::default()));
        let (release, released) = watch::channel(0u64);
        let shared = failover.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(serve(listener, shared, released));
        });
        StandIn {
            addr,
            failover,
            release,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Ends every held stream.
    pub fn release(&self) {
        self.release.send_modify(|n| *n += 1);
    }

    /// How many 429s the primary got so far.
    pub fn primary_429s(&self) -> u64 {
        self.failover.lock().unwrap().primary_429s
    }

    /// The requests in the `failover` and `spent` modes since the last call.
    pub fn take_calls(&self) -> u64 {
        std::mem::take(&mut self.failover.lock().unwrap().calls)
    }

    /// The failover gaps measured since the last call.
    pub fn take_gaps(&self) -> Vec<Duration> {
        std::mem::take(&mut self.failover.lock().unwrap().gaps)
    }
}

async fn serve(
    listener: std::net::TcpListener,
    failover: Arc<Mutex<Failover>>,
    released: watch::Receiver<u64>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let failover = failover.clone();
        let released = released.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let failover = failover.clone();
                let released = released.clone();
                async move { Ok::<_, Infallible>(answer(request, &failover, released).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    failover: &Mutex<Failover>,
    released: watch::Receiver<u64>,
) -> Response<Body> {
    let arrived = Instant::now();
    let header_mode = header(&request, "x-bench-mode");
    let key = api_key(&request);
    if header_mode == "failover" && !key.contains("-primary-") {
        note_arrival(failover, arrived);
    }
    // Like the real API: the whole request is read before anything is answered.
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mode = if header_mode.is_empty() {
        body_mode(&body)
    } else {
        header_mode.clone()
    };
    if mode == "failover" || mode == "spent" {
        let mut f = failover.lock().unwrap();
        f.calls += 1;
        if mode == "spent" || key.contains("-primary-") {
            if key.contains("-primary-") {
                f.primary_429s += 1;
            }
            f.last_429 = Some(Instant::now());
            return rate_limited();
        }
        drop(f);
        if header_mode.is_empty() {
            note_arrival(failover, arrived);
        }
    }
    match mode.as_str() {
        "sse" => stream(None),
        "hold" => stream(Some(released)),
        _ => Response::builder()
            .header("content-type", "application/json")
            .body(full(MESSAGE))
            .unwrap(),
    }
}

/// A request with another key after a 429: the gap since that 429.
fn note_arrival(failover: &Mutex<Failover>, arrived: Instant) {
    let mut f = failover.lock().unwrap();
    if let Some(sent) = f.last_429.take() {
        f.gaps.push(arrived.saturating_duration_since(sent));
    }
}

fn rate_limited() -> Response<Body> {
    Response::builder()
        .status(429)
        .header("content-type", "application/json")
        .header("retry-after", "30")
        .header("x-should-retry", "true")
        .body(full(RATE_LIMITED))
        .unwrap()
}

/// The `[bench:MODE]` marker, looked for in the first 4 KiB: it opens the user turn, and what a
/// peer puts before that turn (model, limits, metadata) is small.
fn body_mode(body: &[u8]) -> String {
    const MARK: &[u8] = b"[bench:";
    let head = &body[..body.len().min(4096)];
    let Some(at) = head.windows(MARK.len()).position(|w| w == MARK) else {
        return String::new();
    };
    let rest = &head[at + MARK.len()..];
    let end = rest.iter().position(|&b| b == b']').unwrap_or(0);
    String::from_utf8_lossy(&rest[..end]).into_owned()
}

/// An event stream whose first event goes out with the headers; the rest follows at once, or
/// once `hold` changes.
fn stream(hold: Option<watch::Receiver<u64>>) -> Response<Body> {
    let (mut sender, body) = Channel::<Bytes, Infallible>::new(8);
    let _ = sender.try_send(Frame::data(Bytes::from_static(FIRST_EVENT.as_bytes())));
    // Only a release that comes after this stream opened ends it.
    let hold = hold.map(|mut h| {
        h.borrow_and_update();
        h
    });
    tokio::spawn(async move {
        if let Some(mut hold) = hold {
            let _ = hold.changed().await;
        }
        for _ in 0..3 {
            if sender
                .send_data(Bytes::from_static(DELTA.as_bytes()))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = sender
            .send_data(Bytes::from_static(LAST_EVENT.as_bytes()))
            .await;
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(body.boxed())
        .unwrap()
}

/// The client's key: `x-api-key`, else the bearer token.
fn api_key(request: &Request<Incoming>) -> String {
    let key = header(request, "x-api-key");
    if !key.is_empty() {
        return key;
    }
    let auth = header(request, "authorization");
    auth.strip_prefix("Bearer ").unwrap_or(&auth).to_string()
}

fn header(request: &Request<Incoming>, name: &str) -> String {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn full(text: &'static str) -> Body {
    Full::new(Bytes::from_static(text.as_bytes())).boxed()
}
