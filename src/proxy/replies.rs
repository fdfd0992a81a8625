//! The answers the proxy writes itself: plain text for its own paths, and errors in the
//! Messages API's shape (so Claude Code shows their message) for a wrong token, a request it
//! will not forward, no key to answer, or an upstream it cannot reach.

use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use jiff::Timestamp;

use super::body::full;
use super::decide::{self, ERROR_BODY_LIMIT};
use super::fault::Fault;
use super::io::Body;
use super::keys::View;
use crate::endpoint::Endpoint;
use crate::select::Availability;

pub fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// An error in the Messages API's own shape, so Claude Code shows its message.
pub fn api_error(
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

pub fn refuse_token() -> Response<Body> {
    api_error(
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        "keyswitch proxy: missing or wrong access token; Claude Code gets it from `keyswitch get` (its apiKeyHelper)",
        &[],
    )
}

pub fn all_unavailable(view: &View, now: Timestamp) -> Response<Body> {
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
pub fn unreachable_reply(upstream: &Endpoint, fault: &Fault) -> Response<Body> {
    let host = upstream.host_and_port();
    // Claude Code would retry a 502 for minutes; settings only the user can fix are said at once.
    let permanent = fault.is_permanent();
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

/// An upstream that took the request and sent no answer within `waited`, with no key on
/// another upstream left to try. Told to retry: the upstream may answer the next time (a
/// gateway's own 504 would say the same).
pub fn silent_reply(upstream: &Endpoint, waited: std::time::Duration) -> Response<Body> {
    api_error(
        StatusCode::GATEWAY_TIMEOUT,
        "api_error",
        &format!(
            "keyswitch proxy: {} took the request and sent no answer within {} s, and no key on another upstream is left to try (`response_head_timeout` in the config sets how long a streamed answer may take to start)",
            upstream.host_and_port(),
            waited.as_secs()
        ),
        &[("x-should-retry", "true")],
    )
}

/// The request bodies in flight already fill the proxy's memory budget (`total` bytes): the
/// request is to be sent again in a moment, when they are done. The connection is closed, as
/// a body that stalled or passed the API's limit is left unread.
pub fn over_budget(total: usize) -> Response<Body> {
    api_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded_error",
        &format!(
            "keyswitch proxy: the requests in flight already hold {} MiB of request bodies, its memory budget (`request_body_budget_mib` in the config); try again in a moment",
            total / (1024 * 1024)
        ),
        &[
            ("retry-after", "2"),
            ("x-should-retry", "true"),
            ("connection", "close"),
        ],
    )
}

/// keyswitch's own trouble (its files, the keychain), in words; `extra` headers as
/// [`api_error`] takes them.
pub fn internal_error(error: &anyhow::Error, extra: &[(&str, &str)]) -> Response<Body> {
    api_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "api_error",
        &format!("keyswitch: {}", crate::error::one_line(error)),
        extra,
    )
}

/// A refusal (401/403) whose body could not be kept whole while other keys were tried: an
/// empty body under the upstream's status would tell the user nothing.
pub fn refusal_not_shown(status: StatusCode) -> Response<Body> {
    api_error(
        status,
        if status == StatusCode::UNAUTHORIZED {
            "authentication_error"
        } else {
            "permission_error"
        },
        &format!(
            "keyswitch proxy: every key was refused (HTTP {}); the upstream's answer was cut off or larger than {} KB and is not shown",
            status.as_u16(),
            ERROR_BODY_LIMIT / 1024
        ),
        &[],
    )
}

/// A 400 whose body broke off before it could be judged.
pub fn error_answer_cut_off() -> Response<Body> {
    api_error(
        StatusCode::BAD_GATEWAY,
        "api_error",
        "keyswitch: the upstream's error answer was cut off or too large",
        &[],
    )
}
