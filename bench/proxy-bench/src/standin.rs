//! The stand-in upstream: a Messages API look-alike on loopback, on a thread and runtime of its
//! own. What it answers is chosen by the request's `x-bench-mode` header:
//! - none: reads the whole body, answers 200 with a small JSON message;
//! - `sse`: a short event stream, the first event sent with the headers;
//! - `hold`: the first event, then the stream stays open until [`StandIn::release`];
//! - `failover`: 429 for a key containing `-primary-`, 200 for any other key. It notes the time
//!   it hands hyper the 429 and the time the next request's head arrives: the failover gap.

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
const FIRST_EVENT: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-bench\"}}\n\n";
const DELTA: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n";
const LAST_EVENT: &str = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

#[derive(Default)]
struct Failover {
    last_429: Option<Instant>,
    gaps: Vec<Duration>,
    primary_429s: u64,
}

pub struct StandIn {
    pub addr: SocketAddr,
    failover: Arc<Mutex<Failover>>,
    release: watch::Sender<u64>,
}

impl StandIn {
    pub fn start() -> StandIn {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the stand-in");
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
    let mode = header(&request, "x-bench-mode");
    let key = header(&request, "x-api-key");
    if mode == "failover" {
        let mut f = failover.lock().unwrap();
        if key.contains("-primary-") {
            drop(f);
            let _ = request.into_body().collect().await;
            let mut f = failover.lock().unwrap();
            f.primary_429s += 1;
            f.last_429 = Some(Instant::now());
            return Response::builder()
                .status(429)
                .header("content-type", "application/json")
                .header("retry-after", "30")
                .header("x-should-retry", "true")
                .body(full(RATE_LIMITED))
                .unwrap();
        }
        if let Some(sent) = f.last_429.take() {
            f.gaps.push(arrived.saturating_duration_since(sent));
        }
    }
    // Like the real API: the whole request is read before anything is answered.
    let _ = request.into_body().collect().await;
    match mode.as_str() {
        "sse" => stream(None),
        "hold" => stream(Some(released)),
        _ => Response::builder()
            .header("content-type", "application/json")
            .body(full(MESSAGE))
            .unwrap(),
    }
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
