//! The headroom the proxy reads off each answer as it passes ([`crate::headroom`]): the
//! headers of every answer, success or error, and the `usage` of a successful one's body —
//! each frame is looked at in the same poll that hands it on (no frame waits for the next, none
//! is copied whole), and the answer is counted when its body ends or is dropped (a client that
//! went away mid-stream still used what the stream had said by then).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Response;
use hyper::header::HeaderMap;

use super::io::{Body, BoxError};
use crate::headroom::recorder::Recorder;
use crate::headroom::sse::SseScan;
use crate::headroom::usage::JsonTail;
use crate::headroom::{Tally, headers};

/// Notes what the headers of an answer to the key `name` say about it, if anything.
pub fn note_headers(recorder: &Recorder, name: &str, headers: &HeaderMap) {
    let pairs = headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
    if let Some(reported) = headers::read(pairs, crate::proxy::whole_seconds_now()) {
        recorder.reported(name, reported);
    }
}

/// Counts an answer whose body is not read for usage (an error), and whether it made the
/// proxy move on to the next key.
pub fn count_error(recorder: &Recorder, name: &str, failed_over: bool) {
    let tally = Tally {
        requests: 1,
        failovers: u64::from(failed_over),
        ..Tally::default()
    };
    recorder.counted(name, tally);
}

/// The successful `response` of the key `name`, its body read for usage as it streams back.
pub fn tapped(response: Response<Body>, recorder: &Arc<Recorder>, name: &str) -> Response<Body> {
    let scan = match response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
    {
        Some(t) if t.starts_with(b"text/event-stream") => Scan::Sse(SseScan::default()),
        Some(t) if t.starts_with(b"application/json") => Scan::Json(JsonTail::default()),
        _ => Scan::Off,
    };
    response.map(|inner| {
        Tapped {
            inner,
            scan,
            sink: Some((recorder.clone(), name.to_string())),
        }
        .boxed()
    })
}

enum Scan {
    Sse(SseScan),
    Json(JsonTail),
    Off,
}

struct Tapped {
    inner: Body,
    scan: Scan,
    /// Where the count goes, taken when it is made.
    sink: Option<(Arc<Recorder>, String)>,
}

impl hyper::body::Body for Tapped {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    match &mut self.scan {
                        Scan::Sse(scan) => scan.feed(data),
                        Scan::Json(tail) => tail.feed(data),
                        Scan::Off => {}
                    }
                }
            }
            Poll::Ready(None) => self.count(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Tapped {
    /// Counts the answer once: at its end, or when it is dropped before.
    fn count(&mut self) {
        let Some((recorder, name)) = self.sink.take() else {
            return;
        };
        let usage = match &self.scan {
            Scan::Sse(scan) => scan.usage(),
            Scan::Json(tail) => tail.finish(),
            Scan::Off => None,
        };
        let mut tally = usage.map(|u| u.tally()).unwrap_or_default();
        tally.requests = 1;
        recorder.counted(&name, tally);
    }
}

impl Drop for Tapped {
    fn drop(&mut self) {
        self.count();
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::channel::Channel;

    use super::*;
    use crate::headroom::store::Book;
    use crate::paths::Dirs;

    const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":1200,\"output_tokens\":1}}}\n\n";
    const DELTA: &str = "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":345}}\n\n";

    fn recorder() -> (tempfile::TempDir, Dirs, Arc<Recorder>) {
        let dir = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: dir.path().join("config"),
            state: dir.path().join("state"),
        };
        let recorder = Recorder::new(&dirs);
        (dir, dirs, recorder)
    }

    fn counted(dirs: &Dirs, recorder: &Recorder) -> Tally {
        recorder.write();
        let book = Book::load(&dirs.headroom_file());
        let mut total = Tally::default();
        for tally in book
            .key("a")
            .map(|f| f.days.values().copied().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            total.add(&tally);
        }
        total
    }

    fn stream(body: Channel<Bytes, Infallible>) -> Response<Body> {
        let body = body.map_err(|never: Infallible| match never {}).boxed();
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(body)
            .unwrap()
    }

    #[tokio::test]
    async fn each_frame_passes_as_it_came_and_a_stream_cut_short_counts_what_it_said() {
        let (_dir, dirs, recorder) = recorder();
        let (mut sender, body) = Channel::new(4);
        let mut answer = tapped(stream(body), &recorder, "a").into_body();
        // The first event, cut mid-line: handed on at once, byte for byte, with no wait for the
        // rest of its line.
        let (head, tail) = START.split_at(30);
        sender
            .send_data(Bytes::from_static(head.as_bytes()))
            .await
            .unwrap();
        let frame = answer.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), head.as_bytes());
        sender
            .send_data(Bytes::from_static(tail.as_bytes()))
            .await
            .unwrap();
        let frame = answer.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), tail.as_bytes());
        // The client goes away before the message_delta: the input counts, once.
        drop(answer);
        drop(sender);
        let tally = counted(&dirs, &recorder);
        assert_eq!((tally.input, tally.output, tally.requests), (1200, 1, 1));
    }

    #[tokio::test]
    async fn a_whole_stream_counts_once_at_its_end() {
        let (_dir, dirs, recorder) = recorder();
        let (mut sender, body) = Channel::new(4);
        let mut answer = tapped(stream(body), &recorder, "a").into_body();
        tokio::spawn(async move {
            for event in [START, DELTA] {
                sender
                    .send_data(Bytes::from_static(event.as_bytes()))
                    .await
                    .unwrap();
            }
        });
        while let Some(frame) = answer.frame().await {
            frame.unwrap();
        }
        let tally = counted(&dirs, &recorder);
        drop(answer);
        assert_eq!((tally.input, tally.output, tally.requests), (1200, 345, 1));
        // Dropped after its end: not counted again.
        assert_eq!(counted(&dirs, &recorder).requests, 1);
    }
}
