//! A programmable loopback stand-in for the Messages API (or any upstream): it records every
//! request it gets — method, path, headers, body, the key it carried — and answers as the test's
//! closure says, including SSE streams paced in time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The credential it carried: `x-api-key`, else the bearer token.
    pub key: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub enum Reply {
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Chunked SSE: each event written and flushed, then a pause.
    Sse { events: Vec<String>, gap: Duration },
    /// These bytes exactly, head and body, as a faulty upstream might send them.
    Raw(Vec<u8>),
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Self {
        Self::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let Self::Full { headers, .. } = &mut self {
            headers.push((name.to_string(), value.to_string()));
        }
        self
    }

    pub fn ok(from: &str) -> Self {
        Self::json(
            200,
            &format!(
                r#"{{"id":"msg_standin","type":"message","role":"assistant","content":[{{"type":"text","text":"hello from {from}"}}],"stop_reason":"end_turn","usage":{{"input_tokens":1,"output_tokens":3}}}}"#
            ),
        )
    }

    pub fn rate_limited(retry_after: Option<&str>) -> Self {
        let reply = Self::json(
            429,
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"Budget exhausted for this key"}}"#,
        );
        match retry_after {
            Some(v) => reply.with_header("retry-after", v),
            None => reply,
        }
    }
}

type Answer = dyn Fn(&Request) -> Reply + Send + Sync;

pub struct Upstream {
    pub port: u16,
    seen: Arc<Mutex<Vec<Request>>>,
    /// Responses whose writing failed: the other side went away mid-answer.
    cut_off: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn start(answer: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer: Arc<Answer> = Arc::new(answer);
        let cut_off = Arc::new(AtomicUsize::new(0));
        let (seen2, cut_off2) = (seen.clone(), cut_off.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (seen, answer, cut_off) = (seen2.clone(), answer.clone(), cut_off2.clone());
                std::thread::spawn(move || {
                    if serve(stream, &seen, &*answer).is_err() {
                        cut_off.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Self {
            port,
            seen,
            cut_off,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }

    pub fn cut_off(&self) -> usize {
        self.cut_off.load(Ordering::SeqCst)
    }

    pub fn keys(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.key).collect()
    }
}

/// Serves one connection; an error when an answer could not be written whole.
fn serve(stream: TcpStream, seen: &Mutex<Vec<Request>>, answer: &Answer) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (k, v) = header.split_once(':').unwrap_or((header, ""));
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return Ok(());
        }
        let key = headers
            .iter()
            .find(|(k, _)| k == "x-api-key")
            .map(|(_, v)| v.clone())
            .or_else(|| {
                headers
                    .iter()
                    .find(|(k, _)| k == "authorization")
                    .map(|(_, v)| v.trim_start_matches("Bearer ").to_string())
            })
            .unwrap_or_default();
        let request = Request {
            method,
            path,
            headers,
            body,
            key,
        };
        if request.path.starts_with("/_keyswitch/") {
            // `install --proxy` asks a loopback upstream whether it is a keyswitch proxy; that
            // is no request of the test's.
            writer.write_all(b"HTTP/1.1 404 X\r\ncontent-length: 0\r\n\r\n")?;
            continue;
        }
        seen.lock().unwrap().push(request.clone());
        let written = match answer(&request) {
            Reply::Full {
                status,
                headers,
                body,
            } => {
                let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                writer
                    .write_all(head.as_bytes())
                    .and_then(|()| writer.write_all(&body))
            }
            Reply::Sse { events, gap } => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                let mut result = writer.write_all(head.as_bytes());
                for event in events {
                    if result.is_err() {
                        break;
                    }
                    result = writer
                        .write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes())
                        .and_then(|()| writer.flush());
                    std::thread::sleep(gap);
                }
                result.and_then(|()| writer.write_all(b"0\r\n\r\n"))
            }
            Reply::Raw(bytes) => writer.write_all(&bytes),
        };
        written?;
    }
}

/// A streamed Messages API answer of `text` as Claude Code expects it (docs/facts/
/// claude-code-facts.md), one string an event, with a `usage` block a gateway can price.
pub fn message_events(
    model: &str,
    text: &str,
    input_tokens: u64,
    output_tokens: u64,
) -> Vec<String> {
    let events = [
        (
            "message_start",
            serde_json::json!({"type": "message_start", "message": {"id": "msg_standin", "type": "message",
                "role": "assistant", "model": model, "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        ),
        (
            "content_block_stop",
            serde_json::json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "message_delta",
            serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": output_tokens}}),
        ),
        ("message_stop", serde_json::json!({"type": "message_stop"})),
    ];
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}
