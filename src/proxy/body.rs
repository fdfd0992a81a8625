//! Bodies: a client's request read whole (bounded, and given up when it stalls) so it can be
//! sent to the next key; an upstream's error answer read while it is small enough to judge; and
//! an answer passed back, streamed or put back together.

use std::convert::Infallible;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};

use super::body_budget::{BodyBudget, Held};
use super::decide::ERROR_BODY_LIMIT;
use super::headers::strip_hop_by_hop;
use super::io::{Body, BoxError};

/// The Messages API refuses requests over 32 MB; the proxy keeps a request's body up to that to
/// re-send it, and refuses larger ones itself.
pub const MAX_REQUEST_BODY: usize = 32 * 1024 * 1024;
/// A request body that stops arriving for this long is given up: its client is gone or stuck,
/// and must not hold a connection slot, nor up to [`MAX_REQUEST_BODY`] of memory, for ever.
/// Claude Code writes a whole body at once over loopback.
pub const BODY_IDLE: Duration = Duration::from_secs(60);

pub enum BodyFault {
    TooLarge,
    /// The bodies of the requests in flight already fill the budget.
    OverBudget,
    /// Nothing more arrived for the idle time.
    Stalled,
    Broken,
}

/// The whole request body, kept to be re-sent to the next key, with its share of `budget`
/// (held until the request is done). `declared` is its `content-length`: a body larger than
/// the API takes, or than the budget has left, is refused before a byte is read. A body that
/// arrives in one piece is kept as it is; one in many is copied once into a buffer of the
/// declared size, so it is never held twice over.
pub async fn read_body<B>(
    body: B,
    idle: Duration,
    budget: &BodyBudget,
    declared: Option<u64>,
) -> Result<(Bytes, Held), BodyFault>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let declared = match declared.map(usize::try_from) {
        Some(Ok(n)) if n <= MAX_REQUEST_BODY => n,
        Some(_) => return Err(BodyFault::TooLarge),
        None => 0,
    };
    let mut body = Limited::new(body, MAX_REQUEST_BODY);
    let Some(mut held) = budget.hold(declared) else {
        return Err(drained(&mut body, idle).await);
    };
    let mut whole = Whole::Empty;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(BodyFault::Stalled),
            Ok(None) => break,
            Ok(Some(Err(e))) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(BodyFault::TooLarge);
            }
            Ok(Some(Err(_))) => return Err(BodyFault::Broken),
            Ok(Some(Ok(frame))) => frame,
        };
        // Trailers are not forwarded (the Messages API has none).
        if let Ok(data) = frame.into_data()
            && !data.is_empty()
        {
            if !held.grow_to(whole.len() + data.len()) {
                drop(whole);
                return Err(drained(&mut body, idle).await);
            }
            whole = whole.and(data, declared);
        }
    }
    Ok((whole.into_bytes(), held))
}

/// The rest of a body the budget has no room for, read and let go, so that a client still
/// writing it reads the 503 that follows rather than meeting a closed connection (a broken
/// pipe, and no answer to retry on). Nothing is kept; a body that stalls or passes the API's
/// limit is left unread, and the connection closes after the answer.
async fn drained<B>(body: &mut Limited<B>, idle: Duration) -> BodyFault
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    while let Ok(Some(Ok(_))) = tokio::time::timeout(idle, body.frame()).await {}
    BodyFault::OverBudget
}

/// A body as it is put together.
enum Whole {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Whole {
    fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(bytes) => bytes.len(),
            Self::Many(bytes) => bytes.len(),
        }
    }

    fn and(self, data: Bytes, declared: usize) -> Self {
        match self {
            Self::Empty => Self::One(data),
            Self::One(first) => {
                let mut joined = BytesMut::with_capacity(declared.max(first.len() + data.len()));
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&data);
                Self::Many(joined)
            }
            Self::Many(mut joined) => {
                joined.extend_from_slice(&data);
                Self::Many(joined)
            }
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Self::Empty => Bytes::new(),
            Self::One(bytes) => bytes,
            Self::Many(bytes) => bytes.freeze(),
        }
    }
}

/// Streams an upstream response back as it arrives: SSE events reach the client as soon as
/// the upstream sends them. Dropping it (the client went away) drops the upstream request.
pub fn stream_back(response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body)
}

/// An upstream answer's status and headers, kept while its body is read.
pub struct Head {
    pub status: StatusCode,
    headers: HeaderMap,
}

impl Head {
    /// A header's value as text, by its lower-case name.
    pub fn header(&self, name: &str) -> Option<String> {
        header_text(&self.headers, name)
    }
}

/// A header's value as text; `None` when absent or not text.
pub fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub enum ErrorBody {
    Whole(Bytes),
    /// Past [`ERROR_BODY_LIMIT`]: what was read, then the rest as it arrives.
    Large(Body),
    CutOff,
}

/// An error answer's head, and its body read whole while it stays small enough to judge —
/// within `deadline` in all: an upstream that sends a head and then trickles (or stalls) must
/// not hold the request, nor its connection, for ever. Past it, the answer counts as cut off.
pub async fn read_error_body(response: Response<Body>, deadline: Duration) -> (Head, ErrorBody) {
    let (mut parts, mut body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let head = Head {
        status: parts.status,
        headers: parts.headers,
    };
    let mut read = Vec::new();
    let deadline = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return (head, ErrorBody::CutOff),
            Ok(None) => return (head, ErrorBody::Whole(Bytes::from(read))),
            Ok(Some(Err(_))) => return (head, ErrorBody::CutOff),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    read.extend_from_slice(&data);
                }
            }
        }
        if read.len() > ERROR_BODY_LIMIT {
            let read = Full::new(Bytes::from(read)).map_err(|never: Infallible| match never {});
            return (head, ErrorBody::Large(Prefixed(Some(read), body).boxed()));
        }
    }
}

/// One body, then another: the part of an answer already read, then the rest.
struct Prefixed<A, B>(Option<A>, B);

impl<A, B> hyper::body::Body for Prefixed<A, B>
where
    A: hyper::body::Body<Data = Bytes, Error = BoxError> + Unpin,
    B: hyper::body::Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        if let Some(first) = self.0.as_mut() {
            match std::pin::Pin::new(first).poll_frame(cx) {
                Poll::Ready(None) => self.0 = None,
                other => return other,
            }
        }
        std::pin::Pin::new(&mut self.1).poll_frame(cx)
    }
}

/// An upstream's answer put back together from its head and its body.
pub fn rebuild(head: Head, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    response
}

/// A body the proxy holds whole.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A body that arrives in `pieces`, and counts how many of them were read.
    struct Pieces {
        left: VecDeque<Bytes>,
        read: Arc<AtomicUsize>,
    }

    impl hyper::body::Body for Pieces {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
            let next = self.left.pop_front();
            if next.is_some() {
                self.read.fetch_add(1, Ordering::SeqCst);
            }
            std::task::Poll::Ready(next.map(|data| Ok(hyper::body::Frame::data(data))))
        }
    }

    fn pieces(n: usize, size: usize) -> (Pieces, Arc<AtomicUsize>) {
        let read = Arc::new(AtomicUsize::new(0));
        let left = (0..n).map(|_| Bytes::from(vec![b'x'; size])).collect();
        (
            Pieces {
                left,
                read: read.clone(),
            },
            read,
        )
    }

    fn read(body: Pieces, budget: &BodyBudget, declared: Option<u64>) -> Result<usize, BodyFault> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(read_body(body, BODY_IDLE, budget, declared))
            .map(|(bytes, _)| bytes.len())
    }

    #[test]
    fn a_body_within_the_budget_is_kept_whole() {
        let (body, _) = pieces(4, 10);
        assert!(matches!(
            read(body, &BodyBudget::new(100), Some(40)),
            Ok(40)
        ));
    }

    /// Refused before it is kept, it is still read to its end: a client still writing it
    /// would otherwise meet a closed connection instead of the 503.
    #[test]
    fn a_declared_body_past_the_budget_is_read_through_and_refused() {
        let budget = BodyBudget::new(100);
        let _taken = budget.hold(90).unwrap();
        let (body, read_pieces) = pieces(4, 10);
        assert!(matches!(
            read(body, &budget, Some(40)),
            Err(BodyFault::OverBudget)
        ));
        assert_eq!(read_pieces.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn an_undeclared_body_that_outgrows_the_budget_is_read_through_and_refused() {
        let budget = BodyBudget::new(25);
        let (body, read_pieces) = pieces(6, 10);
        assert!(matches!(
            read(body, &budget, None),
            Err(BodyFault::OverBudget)
        ));
        assert_eq!(read_pieces.load(Ordering::SeqCst), 6);
        assert!(budget.hold(25).is_some(), "the refused body holds no share");
    }
}
