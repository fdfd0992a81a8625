//! One client request as it arrives: the proxy's own paths (health, shutdown), the token
//! check, the methods and paths it will not forward, and the body read whole before it goes to
//! [`super::forward`].

use std::sync::Arc;

use bytes::Bytes;
use hyper::{Request, Response, StatusCode};

use super::body::{BodyFault, MAX_REQUEST_BODY, read_body};
use super::forward::forward;
use super::io::{Body, BoxError};
use super::own_paths::{health, host_refusal, shutdown};
use super::replies::{api_error, over_budget, plain, refuse_token};
use super::shared::Shared;
use super::upstream::Upstream;
use crate::proxy_protocol::{HEALTH_PATH, SHUTDOWN_PATH};

/// Answers one client request: the proxy's own paths, refusals, or the request forwarded.
pub async fn handle<U, B>(shared: Arc<Shared<U>>, request: Request<B>) -> Response<Body>
where
    U: Upstream,
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let path = request.uri().path();
    if path.starts_with("/_keyswitch/") {
        if let Some(refusal) = host_refusal(request.uri(), request.headers()) {
            return refusal;
        }
        if path == HEALTH_PATH {
            return health(&shared, request.headers()).await;
        }
        if path == SHUTDOWN_PATH && request.method() == hyper::Method::POST {
            return shutdown(&shared, request.headers());
        }
        return plain(StatusCode::NOT_FOUND, "no such keyswitch endpoint\n");
    }
    if !shared.token.admits_after_refresh(request.headers()) {
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
    if !forwarded_method(request.method()) {
        return api_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            &format!(
                "keyswitch proxy: the method {} is not forwarded (only GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS are): TRACE and its kin would echo the key",
                request.method()
            ),
            &[("allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")],
        );
    }
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let (parts, body) = request.into_parts();
    // The share of the body budget is held until the request is done.
    let (body, _held) = match read_body(body, shared.body_idle, &shared.bodies, declared).await {
        Ok(read) => read,
        Err(BodyFault::OverBudget) => return over_budget(shared.bodies.total()),
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

/// The methods the API has use for, spelled as they are standardised. An upstream that
/// answers TRACE (or IIS's TRACK, or either in another case: methods are case-sensitive, so a
/// server may well treat `trace` as TRACE) echoes the request, key included, back to the
/// caller; any other extension method is refused too rather than guessed about.
fn forwarded_method(method: &hyper::Method) -> bool {
    use hyper::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ]
    .contains(method)
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use http_body_util::channel::Channel;
    use tokio::time::{Instant, sleep};

    use super::*;
    use crate::proxy::body::BODY_IDLE;
    use crate::proxy::testing::{TOKEN, collect, key, reply, with_pool};

    fn post(body: Channel<Bytes, Infallible>) -> Request<Channel<Bytes, Infallible>> {
        Request::post("/v1/messages")
            .header("x-api-key", TOKEN)
            .body(body)
            .unwrap()
    }

    #[test]
    fn a_request_body_that_stops_arriving_is_given_up_and_a_slow_steady_one_is_not() {
        const BODY: &[u8] = br#"{"model":"claude","messages":[{"role":"user","content":"hi"}]}"#;
        with_pool(
            &[key("a")],
            |_| reply(200, &[], "ok"),
            async |fx| {
                // Pieces further apart than a test would wait, never as far apart as the idle time.
                let (mut sender, body) = Channel::new(1);
                let (answer, ()) = tokio::join!(handle(fx.shared.clone(), post(body)), async {
                    for piece in BODY.chunks(BODY.len() / 4 + 1) {
                        sleep(BODY_IDLE - Duration::from_secs(1)).await;
                        sender
                            .send_data(Bytes::copy_from_slice(piece))
                            .await
                            .unwrap();
                    }
                    drop(sender);
                });
                assert_eq!(collect(answer).await.0, StatusCode::OK);
                let bodies = || fx.hosts().into_iter().map(|s| s.body).collect::<Vec<_>>();
                assert_eq!(bodies(), [BODY]);

                // Ten bytes, then nothing: a 408 after the idle time, the connection closed, and
                // nothing forwarded.
                let (mut sender, body) = Channel::new(1);
                let started = Instant::now();
                let answered = async {
                    let answer = handle(fx.shared.clone(), post(body)).await;
                    (answer, started.elapsed())
                };
                let ((answer, after), ()) = tokio::join!(answered, async {
                    sender
                        .send_data(Bytes::copy_from_slice(&BODY[..10]))
                        .await
                        .unwrap();
                    sleep(10 * BODY_IDLE).await;
                });
                assert_eq!(after.as_secs(), BODY_IDLE.as_secs());
                let (status, headers, text) = collect(answer).await;
                assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
                assert_eq!(headers["connection"], "close");
                assert!(text.contains("stopped arriving"), "{text}");
                assert_eq!(bodies().len(), 1);
            },
        );
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
}
