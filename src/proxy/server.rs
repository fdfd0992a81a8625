//! The loopback server: checks the local token, forwards each request to the key that should
//! answer it, and — when that key is out — sends the same bytes to the next one.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use jiff::Timestamp;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::decide::{self, ERROR_BODY_LIMIT, Verdict};
use super::keys::{KeyPool, View};
use super::upstream::{Bases, Client, Fault};
use super::whole_seconds_now;
use crate::endpoint::Endpoint;
use crate::proxy_protocol::{HEALTH_PATH, Health, SERVICE, SHUTDOWN_PATH};
use crate::select::{Availability, candidates};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

/// The Messages API refuses requests over 32 MB; the proxy keeps a request's body up to that to
/// re-send it, and refuses larger ones itself.
pub const MAX_REQUEST_BODY: usize = 32 * 1024 * 1024;
/// An upstream that could not be reached is passed over for this long.
const SKIP_UNREACHABLE: Duration = Duration::from_secs(30);
const SESSION_HEADER: &str = "x-claude-code-session-id";
/// A request body that stops arriving for this long is given up: its client is gone or stuck,
/// and must not hold a connection slot, nor up to [`MAX_REQUEST_BODY`] of memory, for ever.
/// Claude Code writes a whole body at once over loopback.
const BODY_IDLE: Duration = Duration::from_secs(60);

/// [`BODY_IDLE`]; test builds take `KEYSWITCH_TEST_BODY_IDLE_MS` so a test need not wait a minute.
fn body_idle() -> Duration {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("KEYSWITCH_TEST_BODY_IDLE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Duration::from_millis(ms);
    }
    BODY_IDLE
}

pub struct Shared {
    pub token: Zeroizing<String>,
    pub keys: Arc<KeyPool>,
    pub client: Client,
    /// Where keys without an endpoint of their own go.
    pub default_upstream: String,
    pub listen: SocketAddr,
    pub stop: tokio::sync::Notify,
    unreachable: Mutex<HashMap<String, Instant>>,
    bases: Bases,
    body_idle: Duration,
}

impl Shared {
    pub fn new(
        token: Zeroizing<String>,
        keys: Arc<KeyPool>,
        client: Client,
        default_upstream: String,
        listen: SocketAddr,
    ) -> Self {
        Self {
            token,
            keys,
            client,
            default_upstream,
            listen,
            stop: tokio::sync::Notify::new(),
            unreachable: Mutex::new(HashMap::new()),
            bases: Bases::default(),
            body_idle: body_idle(),
        }
    }

    fn is_unreachable(&self, upstream: &str) -> bool {
        let mut map = self.unreachable.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(upstream) {
            Some(since) if since.elapsed() < SKIP_UNREACHABLE => true,
            Some(_) => {
                map.remove(upstream);
                false
            }
            None => false,
        }
    }

    fn note_unreachable(&self, upstream: &str) {
        self.unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(upstream.to_string(), Instant::now());
    }
}

pub async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path();
    if path == HEALTH_PATH {
        return health(&shared);
    }
    if path == SHUTDOWN_PATH && request.method() == hyper::Method::POST {
        if !authorized(&shared.token, request.headers()) {
            return refuse_token();
        }
        shared.stop.notify_one();
        return plain(StatusCode::OK, "stopping\n");
    }
    if path.starts_with("/_keyswitch/") {
        return plain(StatusCode::NOT_FOUND, "no such keyswitch endpoint\n");
    }
    if !authorized(&shared.token, request.headers()) {
        return refuse_token();
    }
    if !plain_path(request.uri().path()) {
        // `OPTIONS *`, or `..` segments that would climb out of an upstream's path prefix.
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "keyswitch proxy: the request path must start with / and hold no . or .. segments",
            &[],
        );
    }
    if request.method() == hyper::Method::TRACE {
        // An upstream that answers TRACE echoes the request, key included, back to the caller.
        return api_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "keyswitch proxy: TRACE is not forwarded: the answer would echo the key",
            &[],
        );
    }
    let (parts, body) = request.into_parts();
    let body = match read_body(body, shared.body_idle).await {
        Ok(body) => body,
        Err(BodyFault::TooLarge) => {
            return api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                &format!(
                    "keyswitch: the request is larger than {} MB, the API's own limit",
                    MAX_REQUEST_BODY / (1024 * 1024)
                ),
                &[],
            );
        }
        Err(BodyFault::Stalled) => {
            return api_error(
                StatusCode::REQUEST_TIMEOUT,
                "timeout_error",
                &format!(
                    "keyswitch: the request body stopped arriving for {} s; nothing was forwarded",
                    shared.body_idle.as_secs_f64()
                ),
                &[("connection", "close")],
            );
        }
        // The client went away while sending: nobody is left to answer.
        Err(BodyFault::Broken) => {
            return plain(StatusCode::BAD_REQUEST, "incomplete request body\n");
        }
    };
    forward(&shared, parts, body).await
}

enum BodyFault {
    TooLarge,
    /// Nothing more arrived for the idle time.
    Stalled,
    Broken,
}

/// The whole request body, kept to be re-sent to the next key. A body that arrives in one
/// piece (as a loopback client's usually does) is kept as it is, not copied.
async fn read_body(body: Incoming, idle: Duration) -> Result<Bytes, BodyFault> {
    let mut body = Limited::new(body, MAX_REQUEST_BODY);
    let mut pieces: Vec<Bytes> = Vec::new();
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
            pieces.push(data);
        }
    }
    Ok(match pieces.len() {
        0 => Bytes::new(),
        1 => pieces.pop().unwrap_or_default(),
        _ => pieces.concat().into(),
    })
}

/// Tries the keys in order until one answers with something other than "this key is out".
async fn forward(
    shared: &Arc<Shared>,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> Response<Body> {
    let session = session_id(&parts.headers);
    let forwarded = forwarded_headers(&parts.headers);
    let mut tried: Vec<String> = Vec::new();
    let mut network_fault: Option<(String, Fault)> = None;
    // Keys the upstream refused during this request, marked only once another key succeeds,
    // and the last refusal, passed through if none does.
    let mut refused: Vec<(String, decide::Mark)> = Vec::new();
    let mut last_refusal: Option<Response<Body>> = None;
    loop {
        let now = whole_seconds_now();
        let view = match shared.keys.view(now) {
            Ok(view) => view,
            Err(e) => {
                return api_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    &format!("keyswitch: {}", crate::error::one_line(&e)),
                    &[("x-should-retry", "false")],
                );
            }
        };
        let Some((index, upstream)) = next_key(shared, &view, &tried) else {
            return match (last_refusal, network_fault) {
                (Some(refusal), _) => refusal,
                (None, Some((upstream, fault))) => unreachable_reply(&upstream, &fault),
                (None, None) => all_unavailable(&view, now),
            };
        };
        let key = &view.files.config.keys[index];
        tried.push(key.name.clone());
        let secret = match shared.keys.secret(&key.name).await {
            Ok(Some(secret)) if crate::validate::secret_problem(&secret).is_some() => {
                eprintln!(
                    "keyswitch: warning: the secret of {} in the keychain is not one printable token (a space, line break or control character); skipping it (store it again with `keyswitch add {} --replace`)",
                    key.name, key.name
                );
                continue;
            }
            Ok(Some(secret)) => secret,
            Ok(None) => {
                eprintln!(
                    "keyswitch: warning: {} has no secret in the keychain; skipping it (store one with `keyswitch add {} --replace`)",
                    key.name, key.name
                );
                continue;
            }
            Err(e) => {
                return api_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    &format!("keyswitch: {}", crate::error::one_line(&e)),
                    &[],
                );
            }
        };
        if Some(index) == candidates(&view.availability).first().copied() {
            shared.keys.note_active(&key.name, &view.files);
        }
        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let headers = with_secret(&forwarded, &parts.headers, &secret);
        let Some(uri) = shared.bases.join(&upstream, path_and_query) else {
            // Config and state are validated on load: only a damaged file gets here.
            let fault = Fault::Broken("its address is not a usable URL".to_string());
            return unreachable_reply(&upstream, &fault);
        };
        // The headers are made again only if the request has to be sent again.
        let mut headers = Some(headers);
        let build = || {
            let mut request = Request::new(Full::new(body.clone()));
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = uri.clone();
            *request.headers_mut() = headers
                .take()
                .unwrap_or_else(|| with_secret(&forwarded, &parts.headers, &secret));
            request
        };
        let response = match shared.client.send(build).await {
            Ok(response) => response,
            Err(fault) => match fault {
                // Nothing reached the upstream (down, a certificate this network does not trust,
                // proxy settings that cannot work for it): a key elsewhere may still answer; if
                // none does, this is named.
                fault @ (Fault::Unreachable(_) | Fault::Tls(_) | Fault::Settings(_)) => {
                    shared.note_unreachable(&upstream);
                    network_fault = Some((upstream, fault));
                    continue;
                }
                fault => return unreachable_reply(&upstream, &fault),
            },
        };
        let status = response.status().as_u16();
        let lookup = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let verdict = decide::judge(status, &lookup, whole_seconds_now());
        let (verdict, buffered) = match verdict {
            Verdict::Refused(mark) => {
                let head = head_of(&response);
                last_refusal = Some(match read_error_body(response).await {
                    ErrorBody::Whole(bytes) => rebuild(head, full(bytes)),
                    // Kept whole while other keys are tried, or not at all: an empty body
                    // under the upstream's status told the user nothing.
                    ErrorBody::Large(_) | ErrorBody::CutOff => api_error(
                        head.status,
                        if head.status == StatusCode::UNAUTHORIZED {
                            "authentication_error"
                        } else {
                            "permission_error"
                        },
                        &format!(
                            "keyswitch proxy: every key was refused (HTTP {}); the upstream's answer was cut off or larger than {} KB and is not shown",
                            head.status.as_u16(),
                            ERROR_BODY_LIMIT / 1024
                        ),
                        &[],
                    ),
                });
                refused.push((key.name.clone(), mark));
                continue;
            }
            Verdict::ReadBody => {
                let head = head_of(&response);
                match read_error_body(response).await {
                    ErrorBody::Whole(bytes) => {
                        (decide::billing_verdict(&bytes), Some((head, bytes)))
                    }
                    // A billing error is small: a larger answer is the request's own, and its
                    // client gets it as it came.
                    ErrorBody::Large(body) => return rebuild(head, body),
                    ErrorBody::CutOff => {
                        return api_error(
                            StatusCode::BAD_GATEWAY,
                            "api_error",
                            "keyswitch: the upstream's error answer was cut off or too large",
                            &[],
                        );
                    }
                }
            }
            other => {
                if other == Verdict::PassThrough {
                    if response.status().as_u16() < 400 {
                        // Another key succeeded: the keys refused before it were the problem.
                        for (name, mark) in refused.drain(..) {
                            shared
                                .keys
                                .mark(&name, &mark, session.clone(), whole_seconds_now());
                        }
                    }
                    return stream_back(response);
                }
                (other, None)
            }
        };
        match (verdict, buffered) {
            (Verdict::Failover(mark), _) => {
                shared
                    .keys
                    .mark(&key.name, &mark, session.clone(), whole_seconds_now());
                continue;
            }
            (_, Some((head, bytes))) => return rebuild(head, full(bytes)),
            // judge never says ReadBody twice, and PassThrough streamed above.
            (_, None) => continue,
        }
    }
}

/// The first key, in the pool's order, that is ready, not yet tried for this request, and on an
/// upstream that is not known to be down — unless nothing else is left to try.
fn next_key(shared: &Shared, view: &View, tried: &[String]) -> Option<(usize, String)> {
    let order = candidates(&view.availability);
    let ready: Vec<(usize, String)> = order
        .into_iter()
        .filter(|&i| view.availability[i] == Availability::Ready)
        .filter(|&i| !tried.contains(&view.files.config.keys[i].name))
        .map(|i| (i, upstream_of(shared, &view.files.config.keys[i])))
        .collect();
    let reachable = ready
        .iter()
        .find(|(_, u)| !shared.is_unreachable(u))
        .cloned();
    // With every remaining upstream marked down, try once anyway: it may be back, and the
    // alternative is an error. But never a second time within one request.
    reachable.or_else(|| {
        if tried.is_empty() {
            ready.into_iter().next()
        } else {
            None
        }
    })
}

fn upstream_of(shared: &Shared, key: &crate::config::KeyConfig) -> String {
    key.endpoint()
        .map(|e: Endpoint| e.as_str().to_string())
        .unwrap_or_else(|| shared.default_upstream.clone())
}

/// A path the proxy may join onto an upstream: absolute, with no `.` or `..` segment, however
/// spelled (`%2e`), so a request never reaches outside the upstream's path prefix.
fn plain_path(path: &str) -> bool {
    // URL parsers read `\` as `/` in http(s) URLs, so `\..\` climbs like `/../`.
    path.starts_with('/') && !path.split(['/', '\\']).any(dot_segment)
}

/// `.` or `..`, each dot possibly written `%2e` or `%2E`.
fn dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return false,
        };
        dots += 1;
    }
    dots == 1 || dots == 2
}

/// Whether every credential header the client sent carries the local token (and it sent one).
pub(super) fn authorized(token: &str, headers: &HeaderMap) -> bool {
    let mut seen = false;
    for value in headers.get_all(API_KEY_HEADER) {
        seen = true;
        if !bool::from(value.as_bytes().ct_eq(token.as_bytes())) {
            return false;
        }
    }
    for value in headers.get_all(header::AUTHORIZATION) {
        seen = true;
        let bytes = value.as_bytes();
        let credential = match bytes.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => &bytes[7..],
            _ => return false,
        };
        if !bool::from(credential.ct_eq(token.as_bytes())) {
            return false;
        }
    }
    seen
}

/// Hop-by-hop headers (RFC 9110 7.6.1) are the connection's, not the message's.
/// Names, not text: removing by name skips parsing it again for every request.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the connection's own headers: the hop-by-hop ones and any its `Connection` header
/// names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // A message framed by chunks had any length it also gave overridden (RFC 9112 6.3): passed
    // on, that length would cut the body short or misframe it once the chunking is gone.
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    for name in listed {
        headers.remove(name);
    }
}

/// The client's headers as any upstream gets them, before a key goes in: the connection's own
/// headers and the token gone, and the host and length left to the new request. Made once per
/// request, whichever keys it then goes to.
fn forwarded_headers(client: &HeaderMap) -> HeaderMap {
    let mut headers = client.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    // The body is already here in full: the upstream is not to be asked to wait for it.
    headers.remove(header::EXPECT);
    headers.remove(API_KEY_HEADER);
    headers.remove(header::AUTHORIZATION);
    // A 400 is read to tell a spent balance from a bad request, and the proxy decodes no
    // compression: asked for gzip (Claude Code asks for it, and for br and zstd), an upstream
    // that compressed its credit-balance error sent the turn down on the spent key. Answers
    // (output tokens) are small beside the requests, so little is lost on the upstream's link.
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    headers
}

const API_KEY_HEADER: &str = "x-api-key";

/// The headers for one key: its secret in exactly the credential headers that carried the
/// token. Decided on the client's own headers, so a `Connection` header naming a credential
/// header cannot strip the key and leave the request without one.
fn with_secret(forwarded: &HeaderMap, client: &HeaderMap, secret: &str) -> HeaderMap {
    let mut headers = forwarded.clone();
    for (name, value) in [
        (
            HeaderName::from_static(API_KEY_HEADER),
            Zeroizing::new(secret.to_string()),
        ),
        (
            header::AUTHORIZATION,
            Zeroizing::new(format!("Bearer {secret}")),
        ),
    ] {
        if !client.contains_key(&name) {
            continue;
        }
        // A secret that cannot be a header value goes nowhere, and neither does the token.
        if let Ok(mut value) = HeaderValue::from_str(&value) {
            value.set_sensitive(true);
            headers.insert(name, value);
        }
    }
    headers
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(SESSION_HEADER)?.to_str().ok()?;
    let clean: String = value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

/// Streams an upstream response back as it arrives: SSE events reach the client as soon as
/// the upstream sends them. Dropping it (the client went away) drops the upstream request.
fn stream_back(response: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed())
}

struct Head {
    status: StatusCode,
    headers: HeaderMap,
}

fn head_of(response: &Response<Incoming>) -> Head {
    let mut headers = response.headers().clone();
    strip_hop_by_hop(&mut headers);
    Head {
        status: response.status(),
        headers,
    }
}

enum ErrorBody {
    Whole(Bytes),
    /// Past [`ERROR_BODY_LIMIT`]: what was read, then the rest as it arrives.
    Large(Body),
    CutOff,
}

/// A 400's body, read whole while it stays small enough to judge.
async fn read_error_body(response: Response<Incoming>) -> ErrorBody {
    let mut body = response.into_body();
    let mut read = Vec::new();
    loop {
        match body.frame().await {
            None => return ErrorBody::Whole(Bytes::from(read)),
            Some(Err(_)) => return ErrorBody::CutOff,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    read.extend_from_slice(&data);
                }
            }
        }
        if read.len() > ERROR_BODY_LIMIT {
            let rest = body.map_err(|e| Box::new(e) as BoxError);
            let read = Full::new(Bytes::from(read)).map_err(|never: Infallible| match never {});
            return ErrorBody::Large(Prefixed(Some(read), rest).boxed());
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
fn rebuild(head: Head, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    response
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// An error in the Messages API's own shape, so Claude Code shows its message.
fn api_error(
    status: StatusCode,
    kind: &str,
    message: &str,
    extra: &[(&str, &str)],
) -> Response<Body> {
    let body = serde_json::json!({
        "type": "error",
        "error": {"type": kind, "message": message},
    });
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in extra {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    response
}

fn refuse_token() -> Response<Body> {
    api_error(
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        "keyswitch proxy: missing or wrong access token; Claude Code gets it from `keyswitch get` (its apiKeyHelper)",
        &[],
    )
}

fn health(shared: &Shared) -> Response<Body> {
    let health = Health {
        service: SERVICE.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        listen: shared.listen.to_string(),
        network: super::upstream::advertised_network(&shared.token),
        upstream: shared.default_upstream.clone(),
    };
    let mut response = Response::new(full(serde_json::to_vec(&health).unwrap_or_default()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn all_unavailable(view: &View, now: Timestamp) -> Response<Body> {
    let keys: Vec<(&str, Availability)> = view
        .files
        .config
        .keys
        .iter()
        .zip(&view.availability)
        .map(|(k, a)| (k.name.as_str(), *a))
        .collect();
    let zone = crate::timespec::local_zone();
    let local_now = now.to_zoned_datetime(zone);
    let describe = |until: Timestamp| {
        format!(
            "{} ({})",
            crate::timespec::local_clock(until, &local_now),
            crate::timespec::until_in_words(until, now)
        )
    };
    let answer = decide::unavailable(&keys, now, &describe);
    let retry_after = answer.retry_after.map(|s| s.to_string());
    let mut extra = vec![(
        "x-should-retry",
        if answer.should_retry { "true" } else { "false" },
    )];
    if let Some(seconds) = &retry_after {
        extra.push(("retry-after", seconds.as_str()));
    }
    api_error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_error",
        &answer.message,
        &extra,
    )
}

/// A 502 that names the upstream's host and what went wrong — never a bare 503.
fn unreachable_reply(upstream: &str, fault: &Fault) -> Response<Body> {
    let host = url::Url::parse(upstream)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| {
                format!(
                    "{h}{}",
                    u.port().map(|p| format!(":{p}")).unwrap_or_default()
                )
            })
        })
        .unwrap_or_else(|| "the upstream".to_string());
    // Claude Code would retry a 502 for minutes; settings only the user can fix are said at once.
    let permanent = matches!(fault, Fault::Tls(_) | Fault::Settings(_));
    api_error(
        StatusCode::BAD_GATEWAY,
        "api_error",
        &format!("keyswitch proxy: cannot reach {host}: {}", fault.describe()),
        if permanent {
            &[("x-should-retry", "false")]
        } else {
            &[]
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_token_must_be_in_every_credential_header() {
        let t = "ksp-abc";
        assert!(authorized(t, &map(&[("x-api-key", t)])));
        assert!(authorized(t, &map(&[("authorization", "Bearer ksp-abc")])));
        assert!(authorized(
            t,
            &map(&[("x-api-key", t), ("authorization", "bearer ksp-abc")])
        ));
        assert!(!authorized(t, &map(&[])));
        assert!(!authorized(t, &map(&[("x-api-key", "ksp-abd")])));
        assert!(!authorized(
            t,
            &map(&[("x-api-key", t), ("authorization", "Bearer sk-ant-test-x")])
        ));
        assert!(!authorized(t, &map(&[("authorization", "Basic ksp-abc")])));
        assert!(!authorized(t, &map(&[("x-api-key", "ksp-ab")])));
    }

    fn upstream_headers(client: &HeaderMap, secret: &str) -> HeaderMap {
        with_secret(&forwarded_headers(client), client, secret)
    }

    #[test]
    fn the_secret_replaces_the_token_only_where_it_was() {
        let client = map(&[
            ("x-api-key", "ksp-abc"),
            ("anthropic-version", "2023-06-01"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("host", "127.0.0.1:1"),
            ("content-length", "5"),
            ("te", "trailers"),
        ]);
        let out = upstream_headers(&client, "sk-ant-test-secret");
        assert_eq!(out["x-api-key"], "sk-ant-test-secret");
        assert!(out.get(header::AUTHORIZATION).is_none());
        assert_eq!(out["anthropic-version"], "2023-06-01");
        assert_eq!(out["accept-encoding"], "identity");
        for gone in ["connection", "x-private", "host", "content-length", "te"] {
            assert!(out.get(gone).is_none(), "{gone}");
        }
        // A `Connection` header naming the credential header does not strip the key.
        let sneaky = upstream_headers(
            &map(&[
                ("x-api-key", "ksp-abc"),
                ("connection", "x-api-key"),
                ("expect", "100-continue"),
            ]),
            "sk-ant-test-secret",
        );
        assert_eq!(sneaky["x-api-key"], "sk-ant-test-secret");
        assert!(sneaky.get("expect").is_none());
        let bearer = upstream_headers(
            &map(&[("authorization", "Bearer ksp-abc")]),
            "sk-ant-test-s",
        );
        assert_eq!(bearer[header::AUTHORIZATION], "Bearer sk-ant-test-s");
        assert!(bearer.get("x-api-key").is_none());
    }

    #[test]
    fn only_plain_paths_are_forwarded() {
        assert!(plain_path("/v1/messages"));
        assert!(plain_path("/v1/messages/count_tokens"));
        assert!(plain_path("/v1/a.b/..c"));
        assert!(plain_path("/v1/.../x"));
        assert!(plain_path("/v1/%2e%2e%2e"));
        assert!(plain_path("/v1/%2f"));
        for bad in [
            "*",
            "",
            "/v1/../x",
            "/v1/%2e%2E/x",
            "/./v1",
            "/v1/%2E",
            "/v1/.%2e",
            "/v1/..",
            "/v1\\..\\..\\x",
            "/v1/..\\x",
        ] {
            assert!(!plain_path(bad), "{bad}");
        }
    }

    #[test]
    fn session_ids_are_cleaned() {
        let h = map(&[(SESSION_HEADER, "0b1f-<b>\"x")]);
        assert_eq!(session_id(&h).as_deref(), Some("0b1f-bx"));
    }
}
