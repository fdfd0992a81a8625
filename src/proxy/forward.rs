//! Forwarding one request to the key that should answer it, and to the next when that key is
//! out, in three phases:
//!
//! ```text
//!            ┌───────────────── TryNext ─────────────────┐
//!            ▼                                           │
//!   view ─▶ choose ─▶ attempt: secret ─▶ send ─▶ judge ──┴─▶ Answer ─▶ client
//!            │
//!            └─ no key left ─▶ settle: the last refusal, the unreachable upstream, or a 429
//! ```
//!
//! [`Attempts`] holds what the request learnt on the way: the keys it tried, the upstream it
//! could not reach or that took the request and went silent ([`super::head_limit`]), the keys
//! the upstream refused.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderMap;
use hyper::http::request::Parts;
use hyper::{Request, Response, Uri};
use jiff::Timestamp;

use super::body::{ErrorBody, Head, full, header_text, read_error_body, rebuild, stream_back};
use super::decide::{self, Verdict};
use super::fault::Fault;
use super::head_limit;
use super::headers::{forwarded_headers, session_id, with_secret};
use super::io::Body;
use super::keys::{Secret, View};
use super::replies::{
    all_unavailable, error_answer_cut_off, internal_error, refusal_not_shown, silent_reply,
    unreachable_reply,
};
use super::shared::Shared;
use super::tap;
use super::upstream::Upstream;
use super::whole_seconds_now;
use crate::config::KeyConfig;
use crate::endpoint::Endpoint;
use crate::failure::Failure;
use crate::select::{Availability, candidates};

/// Tries the keys in order until one answers with something other than "this key is out".
pub async fn forward<U: Upstream>(shared: &Shared<U>, parts: Parts, body: Bytes) -> Response<Body> {
    let request = Outgoing::new(parts, body);
    let mut attempts = Attempts::default();
    loop {
        // A view for each attempt: the marks just made (by this request, another one, or the
        // CLI) and the cooldowns just ended count for the next choice and the final answer.
        let now = whole_seconds_now();
        let view = match shared.keys.view(now) {
            Ok(view) => view,
            Err(e) => return internal_error(&e, &[("x-should-retry", "false")]),
        };
        let Some(choice) = choose(shared, &view, &attempts) else {
            return attempts.settle(&view, now);
        };
        match attempt(shared, &request, &view, choice, &mut attempts).await {
            Step::Answer(response) => return response,
            Step::TryNext => {}
        }
    }
}

/// What one attempt leaves the request with.
enum Step {
    /// The client's answer: nothing more is tried.
    Answer(Response<Body>),
    /// This key could not answer (out, refused, unreachable, without a secret): the next may.
    TryNext,
}

/// The client's request as each attempt sends it, made once whichever keys it goes to.
struct Outgoing {
    parts: Parts,
    body: Bytes,
    /// The client's headers as any upstream gets them, before a key goes in.
    forwarded: HeaderMap,
    session: Option<String>,
}

impl Outgoing {
    fn new(parts: Parts, body: Bytes) -> Self {
        Self {
            forwarded: forwarded_headers(&parts.headers),
            session: session_id(&parts.headers),
            parts,
            body,
        }
    }

    fn path_and_query(&self) -> &str {
        self.parts.uri.path_and_query().map_or("/", |p| p.as_str())
    }

    /// The request for one key at `uri`; made again only if it has to be sent again.
    fn to(&self, uri: &Uri, secret: &str) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.parts.method.clone();
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = with_secret(&self.forwarded, &self.parts.headers, secret);
        request
    }
}

/// What a request learnt from the keys it tried.
#[derive(Default)]
struct Attempts {
    /// By name: no key is tried twice for one request.
    tried: Vec<String>,
    /// The last upstream that could not be reached, and why: named if no key answers.
    unreachable: Option<(Endpoint, Fault)>,
    /// The upstreams that took the request and sent no answer in time, and the time waited:
    /// no other key there is tried (it would wait as long), and if no key elsewhere answers,
    /// Claude Code is told to retry.
    silent: Vec<(Endpoint, std::time::Duration)>,
    /// Keys the upstream refused (401/403): marked only once another key succeeds, so one
    /// request the upstream forbids never sets the whole pool aside.
    refused: Vec<(String, Failure)>,
    /// The last refusal, passed through if no key succeeds.
    last_refusal: Option<Response<Body>>,
}

impl Attempts {
    fn tried(&self, name: &str) -> bool {
        self.tried.iter().any(|n| n == name)
    }

    fn went_silent(&self, upstream: &Endpoint) -> bool {
        self.silent.iter().any(|(e, _)| e == upstream)
    }

    fn refused(&mut self, name: &str, failure: Failure, refusal: Response<Body>) {
        self.refused.push((name.to_string(), failure));
        self.last_refusal = Some(refusal);
    }

    /// Another key succeeded: the keys refused before it were the problem.
    fn succeeded<U>(&mut self, shared: &Shared<U>, session: &Option<String>) {
        for (name, failure) in self.refused.drain(..) {
            shared
                .keys
                .mark(&name, &failure, session.clone(), whole_seconds_now());
        }
    }

    /// The answer when no key is left to try. A key that returns later makes it keyswitch's
    /// own 429 with the time to wait, even when the keys tried were refused; refusals alone are
    /// passed on, told not to be retried: the same keys would meet them again.
    fn settle(self, view: &View, now: Timestamp) -> Response<Body> {
        let one_returns = view
            .availability
            .iter()
            .any(|a| matches!(a, Availability::CoolingUntil(_)));
        // A refusal of this request itself (a model the key may not use) says what is wrong
        // better than "wait for the key that returns": it is passed on.
        let about_the_request = self
            .refused
            .iter()
            .any(|(_, f)| matches!(f, Failure::ThisRequestOnly { .. }));
        let silent = self.silent.into_iter().last();
        match (self.last_refusal, silent, self.unreachable) {
            (Some(_), _, _) if one_returns && !about_the_request => all_unavailable(view, now),
            (Some(mut refusal), _, _) => {
                refusal.headers_mut().insert(
                    "x-should-retry",
                    hyper::header::HeaderValue::from_static("false"),
                );
                refusal
            }
            // The upstream may answer the next try: not a key's fault, and not one to give up on.
            (None, Some((upstream, waited)), _) => silent_reply(&upstream, waited),
            (None, None, Some((upstream, fault))) => unreachable_reply(&upstream, &fault),
            (None, None, None) => all_unavailable(view, now),
        }
    }
}

/// The key an attempt goes to.
struct Choice<'a> {
    index: usize,
    upstream: &'a Endpoint,
    /// The pool's first candidate: the key `get` hands out now.
    active: bool,
}

/// The first key, in the pool's order, that is ready, not yet tried for this request, and on an
/// upstream that is not known to be down — unless nothing else is left to try.
fn choose<'a, U>(shared: &'a Shared<U>, view: &'a View, attempts: &Attempts) -> Option<Choice<'a>> {
    let order = candidates(&view.availability);
    let active = order.first().copied();
    let choice = |index, upstream| Choice {
        index,
        upstream,
        active: Some(index) == active,
    };
    let keys = &view.files.config.keys;
    let mut first_ready = None;
    for index in order {
        if view.availability[index] != Availability::Ready || attempts.tried(&keys[index].name) {
            continue;
        }
        let upstream = upstream_of(shared, &keys[index]);
        if attempts.went_silent(upstream) {
            continue;
        }
        if !shared.is_unreachable(upstream) {
            return Some(choice(index, upstream));
        }
        first_ready.get_or_insert((index, upstream));
    }
    // With every remaining upstream marked down, try once anyway: it may be back, and the
    // alternative is an error. But never a second time within one request.
    let (index, upstream) = first_ready.filter(|_| attempts.tried.is_empty())?;
    Some(choice(index, upstream))
}

fn upstream_of<'a, U>(shared: &'a Shared<U>, key: &'a KeyConfig) -> &'a Endpoint {
    key.endpoint().unwrap_or(&shared.default_upstream)
}

/// One key's try: its secret on the request, sent to its upstream, the answer judged.
async fn attempt<U: Upstream>(
    shared: &Shared<U>,
    request: &Outgoing,
    view: &View,
    choice: Choice<'_>,
    attempts: &mut Attempts,
) -> Step {
    let key = &view.files.config.keys[choice.index];
    attempts.tried.push(key.name.clone());
    let secret = match usable_secret(shared, &key.name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => return Step::TryNext,
        Err(e) => return Step::Answer(internal_error(&e, &[])),
    };
    if choice.active {
        shared.keys.note_active(&key.name, &view.files);
    }
    let Some(uri) = choice.upstream.join(request.path_and_query()) else {
        // The handler let only a plain path through; one that still makes no URI is refused.
        let fault = Fault::Broken("the request's path makes no URL there".to_string());
        return Step::Answer(unreachable_reply(choice.upstream, &fault));
    };
    let sending = shared.client.send(|| request.to(&uri, &secret));
    let head_timeout = view.files.config.response_head_timeout();
    let answer = match head_limit::within(sending, head_timeout, &request.body).await {
        Ok(answer) => answer,
        // Not the key's doing: nothing is marked. Other requests pass the upstream over for a
        // while, as one that cannot be reached.
        Err(silent) => {
            shared.note_unreachable(choice.upstream);
            attempts
                .silent
                .push((choice.upstream.clone(), silent.waited));
            return Step::TryNext;
        }
    };
    let response = match answer {
        Ok(response) => response,
        // Nothing reached the upstream (down, a certificate this network does not trust, proxy
        // settings that cannot work for it): a key elsewhere may still answer; if none does,
        // this is named.
        Err(fault) if fault.reached_nothing() => {
            shared.note_unreachable(choice.upstream);
            attempts.unreachable = Some((choice.upstream.clone(), fault));
            return Step::TryNext;
        }
        Err(fault) => return Step::Answer(unreachable_reply(choice.upstream, &fault)),
    };
    shared.keys.note_gateway(choice.upstream, &|name| {
        header_text(response.headers(), name)
    });
    tap::note_headers(&shared.headroom, &key.name, response.headers());
    let rules = view.files.config.gateway_rules();
    judge(
        shared,
        &request.session,
        &key.name,
        response,
        rules,
        attempts,
    )
    .await
}

/// The key's secret; `None` (and a warning, at most once a minute a key: every request meets
/// it) when the keychain has none, or one that is not text or not a single printable token and
/// so cannot go in a header.
async fn usable_secret<U>(shared: &Shared<U>, name: &str) -> anyhow::Result<Option<Secret>> {
    let read = match shared.keys.secret(name).await {
        Err(e) if crate::store::NotText::is(&e) => {
            shared.warnings.warn(name, format_args!("{e}; skipping it"));
            return Ok(None);
        }
        read => read?,
    };
    match read {
        Some(secret) if crate::validate::secret_problem(&secret).is_some() => {
            shared.warnings.warn(name, format_args!(
                "the secret of {name} in the keychain is not one printable token (a space, line break or control character); skipping it (store it again with `keyswitch add {name} --replace`)"
            ));
            Ok(None)
        }
        Some(secret) => Ok(Some(secret)),
        None => {
            shared.warnings.warn(name, format_args!(
                "{name} has no secret in the keychain; skipping it (store one with `keyswitch add {name} --replace`)"
            ));
            Ok(None)
        }
    }
}

/// What the upstream's answer means for the key `name` that got it, and so for the request.
async fn judge<U>(
    shared: &Shared<U>,
    session: &Option<String>,
    name: &str,
    response: Response<Body>,
    rules: &[crate::gateway::Rule],
    attempts: &mut Attempts,
) -> Step {
    let status = response.status().as_u16();
    if status < 400 {
        attempts.succeeded(shared, session);
        return Step::Answer(stream_back(tap::tapped(response, &shared.headroom, name)));
    }
    let answer = if decide::must_read_body(status, rules) {
        match read_error_body(response, shared.body_idle).await {
            (head, ErrorBody::Whole(bytes)) => Kept::Whole(head, bytes),
            (head, ErrorBody::Large(body)) => Kept::Large(head, body),
            (head, ErrorBody::CutOff) => Kept::CutOff(head),
        }
    } else {
        Kept::Unread(response)
    };
    let now = whole_seconds_now();
    let verdict = decide::judge(status, &|n| answer.header(n), answer.words(), rules, now);
    let failed_over = !matches!(verdict, Verdict::PassThrough);
    tap::count_error(&shared.headroom, name, failed_over);
    match verdict {
        // What the status and headers alone do not settle cannot be passed on: it is gone.
        Verdict::PassThrough if matches!(answer, Kept::CutOff(_)) => {
            Step::Answer(error_answer_cut_off())
        }
        Verdict::PassThrough => Step::Answer(answer.passed_on()),
        Verdict::Failover(failure) => {
            shared.keys.mark(name, &failure, session.clone(), now);
            Step::TryNext
        }
        Verdict::Refused(failure) => {
            attempts.refused(name, failure, answer.refusal(shared.body_idle).await);
            Step::TryNext
        }
    }
}

/// An error answer as far as it was read to judge it.
enum Kept {
    /// Judged by its status and headers alone.
    Unread(Response<Body>),
    /// Read whole: small enough to judge by its words.
    Whole(Head, Bytes),
    /// Larger than an error that says a key is spent: judged by status and headers; what was
    /// read, then the rest as it comes.
    Large(Head, Body),
    /// Broke off or stalled before its end: judged by status and headers; nothing to pass on.
    CutOff(Head),
}

impl Kept {
    fn header(&self, name: &str) -> Option<String> {
        match self {
            Self::Unread(response) => header_text(response.headers(), name),
            Self::Whole(head, _) | Self::Large(head, _) | Self::CutOff(head) => head.header(name),
        }
    }

    /// The words to judge: the body when it was read whole.
    fn words(&self) -> &[u8] {
        match self {
            Self::Whole(_, bytes) => bytes,
            Self::Unread(_) | Self::Large(..) | Self::CutOff(_) => b"",
        }
    }

    /// The answer for the client, as it came.
    fn passed_on(self) -> Response<Body> {
        match self {
            Self::Unread(response) => stream_back(response),
            Self::Whole(head, bytes) => rebuild(head, full(bytes)),
            Self::Large(head, body) => rebuild(head, body),
            Self::CutOff(_) => error_answer_cut_off(),
        }
    }

    /// The refusal kept while other keys are tried: whole, or not at all — an empty body under
    /// the upstream's status told the user nothing.
    async fn refusal(self, deadline: std::time::Duration) -> Response<Body> {
        match self {
            Self::Unread(response) => match read_error_body(response, deadline).await {
                (head, ErrorBody::Whole(bytes)) => rebuild(head, full(bytes)),
                (head, ErrorBody::Large(_) | ErrorBody::CutOff) => refusal_not_shown(head.status),
            },
            Self::Whole(head, bytes) => rebuild(head, full(bytes)),
            Self::Large(head, _) | Self::CutOff(head) => refusal_not_shown(head.status),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jiff::SignedDuration;

    use super::*;
    use crate::proxy::decide::ERROR_BODY_LIMIT;
    use crate::proxy::io::BoxError;
    use crate::proxy::shared::SKIP_UNREACHABLE;
    use crate::proxy::testing::{
        Fixture, Seen, collect, key, messages_request, never_answers, reply, with_pool,
    };
    use Availability::{CoolingUntil, Ready, SetAside};

    const BODY: &[u8] = br#"{"model":"claude","messages":[]}"#;

    async fn send(fx: &Fixture) -> (hyper::StatusCode, HeaderMap, String) {
        collect(forward(&fx.shared, messages_request(), Bytes::from_static(BODY)).await).await
    }

    fn cooling_for(availability: Availability) -> SignedDuration {
        match availability {
            CoolingUntil(until) => until.duration_since(whole_seconds_now()),
            other => panic!("not cooling: {other:?}"),
        }
    }

    #[test]
    fn a_rate_limit_with_a_reset_fails_over_and_the_key_cools_until_then() {
        let script = |s: &Seen| match s.key.as_str() {
            "a" => reply(429, &[("retry-after", "3600")], "{}"),
            _ => reply(200, &[], "from b"),
        };
        with_pool(&[key("a"), key("b")], script, async |fx| {
            let (status, _, body) = send(&fx).await;
            assert_eq!((status.as_u16(), body.as_str()), (200, "from b"));
            assert_eq!(fx.seen(), ["a", "b"]);
            let left = cooling_for(fx.availability()[0]);
            assert!((3598..=3600).contains(&left.as_secs()), "{left:?}");
            assert_eq!(fx.availability()[1], Ready);
        });
    }

    #[test]
    fn a_rate_limit_without_a_reset_fails_over_and_the_key_cools_by_its_reason() {
        let script = |s: &Seen| match s.key.as_str() {
            "a" => reply(429, &[], ""),
            _ => reply(200, &[], "from b"),
        };
        with_pool(&[key("a"), key("b")], script, async |fx| {
            assert_eq!(send(&fx).await.2, "from b");
            assert_eq!(fx.seen(), ["a", "b"]);
            assert!(cooling_for(fx.availability()[0]).is_positive());
        });
    }

    #[test]
    fn a_spent_credit_balance_fails_over() {
        let billing = r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API."}}"#;
        let script = move |s: &Seen| match s.key.as_str() {
            "a" => reply(400, &[], billing),
            _ => reply(200, &[], "from b"),
        };
        with_pool(&[key("a"), key("b")], script, async |fx| {
            assert_eq!(send(&fx).await.2, "from b");
            assert_eq!(fx.seen(), ["a", "b"]);
            assert!(cooling_for(fx.availability()[0]).is_positive());
        });
    }

    #[test]
    fn any_other_bad_request_is_passed_through_with_its_body_and_marks_nothing() {
        let bad = r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"}}"#;
        let script = move |_: &Seen| {
            reply(
                400,
                &[("request-id", "req_1"), ("connection", "close")],
                bad,
            )
        };
        with_pool(&[key("a"), key("b")], script, async |fx| {
            let (status, headers, body) = send(&fx).await;
            assert_eq!((status.as_u16(), body.as_str()), (400, bad));
            assert_eq!(headers["request-id"], "req_1");
            assert!(headers.get("connection").is_none());
            assert_eq!(fx.seen(), ["a"]);
            assert_eq!(fx.availability(), [Ready, Ready]);
        });
    }

    #[test]
    fn a_refused_key_is_set_aside_once_the_next_key_succeeds() {
        for refusal in [401, 403] {
            let script = move |s: &Seen| match s.key.as_str() {
                "a" => reply(refusal, &[], "refused"),
                _ => reply(200, &[], "from b"),
            };
            with_pool(&[key("a"), key("b")], script, async |fx| {
                assert_eq!(send(&fx).await.2, "from b");
                assert_eq!(fx.seen(), ["a", "b"]);
                assert_eq!(fx.availability(), [SetAside, Ready]);
            });
        }
    }

    #[test]
    fn an_old_litellms_401_budget_answer_cools_the_key_instead_of_setting_it_aside() {
        let old = r#"{"error":{"message":"Authentication Error, ExceededTokenBudget: Current spend for token: 10.01; Max Budget for Token: 10.0","type":"auth_error","code":"401"}}"#;
        let script = move |s: &Seen| match s.key.as_str() {
            "a" => reply(401, &[], old),
            _ => reply(200, &[], "from b"),
        };
        with_pool(&[key("a"), key("b")], script, async |fx| {
            assert_eq!(send(&fx).await.2, "from b");
            assert!(cooling_for(fx.availability()[0]).is_positive());
        });
    }

    #[test]
    fn a_request_every_key_is_refused_gets_the_last_refusal_and_marks_nothing() {
        let script = |s: &Seen| reply(401, &[], &format!("{} refused", s.key));
        with_pool(&[key("a"), key("b")], script, async |fx| {
            let (status, _, body) = send(&fx).await;
            assert_eq!((status.as_u16(), body.as_str()), (401, "b refused"));
            assert_eq!(fx.seen(), ["a", "b"]);
            assert_eq!(fx.availability(), [Ready, Ready]);
        });
    }

    #[test]
    fn an_unreachable_upstream_is_passed_over_for_30_s() {
        let script = |s: &Seen| match s.host.as_str() {
            "down.example" => Err(Fault::Unreachable("connection refused".to_string())),
            _ => reply(200, &[], &format!("from {}", s.key)),
        };
        let keys = [
            key("a").at("https://down.example"),
            key("b").at("https://up.example"),
        ];
        with_pool(&keys, script, async |fx| {
            assert_eq!(send(&fx).await.2, "from b");
            assert_eq!(fx.seen(), ["a", "b"]);
            // Within the 30 s, a is not tried; nor is it marked: the key is not at fault.
            tokio::time::advance(SKIP_UNREACHABLE - Duration::from_secs(1)).await;
            assert_eq!(send(&fx).await.2, "from b");
            assert_eq!(fx.seen(), ["a", "b", "b"]);
            assert_eq!(fx.availability(), [Ready, Ready]);
            tokio::time::advance(Duration::from_secs(1)).await;
            send(&fx).await;
            assert_eq!(fx.seen(), ["a", "b", "b", "a", "b"]);
        });
    }

    #[test]
    fn with_every_upstream_down_the_first_key_is_tried_once_anyway_and_named() {
        let script = |_: &Seen| Err(Fault::Unreachable("connection refused".to_string()));
        let keys = [
            key("a").at("https://down.example:8443"),
            key("b").at("https://down.example:8443"),
        ];
        with_pool(&keys, script, async |fx| {
            for round in 1..=2 {
                let (status, headers, body) = send(&fx).await;
                assert_eq!(status.as_u16(), 502);
                assert!(
                    body.contains("cannot reach down.example:8443: connection refused"),
                    "{body}"
                );
                // Down now is not down for good: Claude Code may try again.
                assert!(headers.get("x-should-retry").is_none());
                assert_eq!(fx.seen(), ["a"].repeat(round));
            }
        });
    }

    #[test]
    fn settings_only_the_user_can_fix_are_a_502_not_to_be_retried() {
        for fault in [
            Fault::Tls("TLS failed: the certificate has expired".to_string()),
            Fault::Settings("the proxy wants credentials (407)".to_string()),
        ] {
            let script = move |_: &Seen| Err(fault.clone());
            with_pool(&[key("a")], script, async |fx| {
                let (status, headers, _) = send(&fx).await;
                assert_eq!(status.as_u16(), 502);
                assert_eq!(headers["x-should-retry"], "false");
            });
        }
    }

    #[test]
    fn a_connection_broken_under_the_request_is_named_and_no_other_key_is_tried() {
        // The request may have been processed: sent again, it could be done twice.
        let script = |_: &Seen| Err(Fault::Broken("connection reset".to_string()));
        with_pool(&[key("a"), key("b")], script, async |fx| {
            let (status, _, body) = send(&fx).await;
            assert_eq!(status.as_u16(), 502);
            assert!(body.contains("connection reset"), "{body}");
            assert_eq!(fx.seen(), ["a"]);
        });
    }

    #[test]
    fn with_every_key_cooling_the_proxy_answers_429_with_when_one_returns() {
        let script = |_: &Seen| reply(429, &[("retry-after", "600")], "");
        with_pool(&[key("a"), key("b")], script, async |fx| {
            let (status, headers, body) = send(&fx).await;
            assert_eq!(status.as_u16(), 429);
            assert_eq!(fx.seen(), ["a", "b"]);
            let retry_after: i64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((598..=600).contains(&retry_after), "{retry_after}");
            assert!(headers.contains_key("x-should-retry"));
            assert!(body.contains("rate_limit_error"), "{body}");
            // The next request is answered at once, with nothing sent.
            assert_eq!(send(&fx).await.0.as_u16(), 429);
            assert_eq!(fx.seen(), ["a", "b"]);
        });
    }

    #[test]
    fn a_key_without_a_secret_is_skipped() {
        let script = |s: &Seen| reply(200, &[], &format!("from {}", s.key));
        with_pool(&[key("a").without_secret(), key("b")], script, async |fx| {
            assert_eq!(send(&fx).await.2, "from b");
            assert_eq!(fx.seen(), ["b"]);
            assert_eq!(fx.availability(), [Ready, Ready]);
        });
    }

    #[test]
    fn a_server_error_is_passed_through_and_marks_nothing() {
        let script = |_: &Seen| reply(529, &[], "overloaded");
        with_pool(&[key("a"), key("b")], script, async |fx| {
            let (status, _, body) = send(&fx).await;
            assert_eq!((status.as_u16(), body.as_str()), (529, "overloaded"));
            assert_eq!(fx.seen(), ["a"]);
            assert_eq!(fx.availability(), [Ready, Ready]);
        });
    }

    #[test]
    fn an_answer_streams_through_piece_by_piece() {
        use http_body_util::BodyExt;
        let script = |_: &Seen| {
            let (mut sender, body) = http_body_util::channel::Channel::<Bytes, BoxError>::new(4);
            tokio::spawn(async move {
                for event in ["event: one\n\n", "event: two\n\n"] {
                    sender.send_data(Bytes::from(event)).await.unwrap();
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            });
            let mut response = Response::new(body.boxed());
            response
                .headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            Ok(response)
        };
        with_pool(&[key("a")], script, async |fx| {
            let response = forward(&fx.shared, messages_request(), Bytes::from_static(BODY)).await;
            assert_eq!(response.headers()["content-type"], "text/event-stream");
            let mut body = response.into_body();
            // The first event arrives while the upstream still holds back the second.
            let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
            assert_eq!(first, "event: one\n\n");
            let rest = body.collect().await.unwrap().to_bytes();
            assert_eq!(rest, "event: two\n\n");
        });
    }

    const LITELLM_BUDGET: &str = r#"{"error":{"message":"Budget has been exceeded! Current cost: 0.006, Max budget: 0.005","type":"budget_exceeded","param":null,"code":"422"}}"#;

    #[test]
    fn litellms_budget_answer_fails_over_on_each_status_it_has_used() {
        for status in [422, 400, 429] {
            let script = move |s: &Seen| match s.key.as_str() {
                "a" => reply(status, &[], LITELLM_BUDGET),
                _ => reply(200, &[], "from b"),
            };
            with_pool(&[key("a"), key("b")], script, async |fx| {
                assert_eq!(send(&fx).await.2, "from b", "{status}");
                assert_eq!(fx.seen(), ["a", "b"]);
                // No reset given: the billing_error cooldown, far longer than a rate limit's.
                let left = cooling_for(fx.availability()[0]);
                assert!(left > SignedDuration::from_hours(11), "{status}: {left:?}");
            });
        }
    }

    #[test]
    fn a_rate_limit_said_only_in_the_message_cools_until_that_time() {
        let reset = whole_seconds_now()
            .checked_add(SignedDuration::from_secs(52))
            .unwrap()
            .strftime("%Y-%m-%d %H:%M:%S UTC")
            .to_string();
        let body = format!(
            r#"{{"type":"error","error":{{"type":"rate_limit_error","message":"Rate limit exceeded for api_key: 3f2a. Limit resets at: {reset}"}}}}"#
        );
        let script = move |s: &Seen| match s.key.as_str() {
            "a" => reply(429, &[], &body),
            _ => reply(200, &[], "from b"),
        };
        with_pool(&[key("a"), key("b")], script, async |fx| {
            assert_eq!(send(&fx).await.2, "from b");
            let left = cooling_for(fx.availability()[0]).as_secs();
            assert!((50..=52).contains(&left), "{left}");
        });
    }

    #[test]
    fn a_model_the_key_may_not_use_goes_to_the_next_key_and_marks_nothing() {
        let forbidden = r#"{"type":"error","error":{"type":"permission_error","message":"Your API key does not have permission to use the specified resource."}}"#;
        let script = move |s: &Seen| match s.key.as_str() {
            "a" => reply(403, &[], forbidden),
            _ => reply(200, &[], "from b"),
        };
        with_pool(&[key("a"), key("b")], script, async |fx| {
            assert_eq!(send(&fx).await.2, "from b");
            assert_eq!(fx.seen(), ["a", "b"]);
            tokio::task::yield_now().await;
            assert_eq!(fx.availability(), [Ready, Ready]);
        });
    }

    #[test]
    fn a_403_about_a_budget_cools_the_key_instead_of_setting_it_aside() {
        let budget = r#"{"error":{"code":403,"message":"Workspace monthly budget of $500.00 exceeded. Contact your workspace admin."}}"#;
        let script = move |s: &Seen| match s.key.as_str() {
            "a" => reply(403, &[], budget),
            _ => reply(200, &[], "from b"),
        };
        with_pool(&[key("a"), key("b")], script, async |fx| {
            assert_eq!(send(&fx).await.2, "from b");
            assert!(cooling_for(fx.availability()[0]).is_positive());
        });
    }

    #[test]
    fn a_validation_error_is_passed_through_and_burns_no_fallback() {
        let invalid = r#"{"error":{"message":"[{'type': 'missing', 'loc': ('body', 'messages')}]","type":"None","param":"None","code":"422"}}"#;
        let script = move |_: &Seen| reply(422, &[], invalid);
        with_pool(&[key("a"), key("b")], script, async |fx| {
            let (status, _, body) = send(&fx).await;
            assert_eq!((status.as_u16(), body.as_str()), (422, invalid));
            assert_eq!(fx.seen(), ["a"]);
            assert_eq!(fx.availability(), [Ready, Ready]);
        });
    }

    #[test]
    fn a_refusal_with_a_key_still_to_return_is_keyswitchs_own_429() {
        // a is spent for ten minutes; b, the one left, is refused: waiting for a is the answer,
        // not the refusal Claude Code would retry for minutes.
        let script = |s: &Seen| match s.key.as_str() {
            "a" => reply(429, &[("retry-after", "600")], ""),
            _ => reply(401, &[], "b refused"),
        };
        with_pool(&[key("a"), key("b")], script, async |fx| {
            let (status, headers, body) = send(&fx).await;
            assert_eq!(status.as_u16(), 429, "{body}");
            let retry_after: i64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((598..=600).contains(&retry_after), "{retry_after}");
            assert_eq!(headers["x-should-retry"], "false");
        });
    }

    #[test]
    fn a_refusal_every_key_meets_is_not_to_be_retried() {
        let script = |_: &Seen| reply(401, &[], "refused");
        with_pool(&[key("a"), key("b")], script, async |fx| {
            let (status, headers, _) = send(&fx).await;
            assert_eq!(status.as_u16(), 401);
            assert_eq!(headers["x-should-retry"], "false");
        });
    }

    #[test]
    fn the_users_gateway_rule_decides_before_the_built_in_table() {
        let script = |s: &Seen| match s.key.as_str() {
            "a" => reply(500, &[], r#"{"message":"daily quota used"}"#),
            _ => reply(200, &[], "from b"),
        };
        with_pool(&[key("a"), key("b")], script, async |fx| {
            let config_file = fx.shared.keys.config_path();
            let mut config: serde_json::Value =
                serde_json::from_slice(&std::fs::read(config_file).unwrap()).unwrap();
            config["gateway_rules"] = serde_json::json!([
                {"status": 500, "body_contains": "quota", "meaning": "spent", "cooldown": "2h"}
            ]);
            std::fs::write(config_file, config.to_string()).unwrap();
            assert_eq!(send(&fx).await.2, "from b");
            let left = cooling_for(fx.availability()[0]).as_secs();
            assert!((7190..=7200).contains(&left), "{left}");
        });
    }
    /// An error answer whose head came and whose body trickles for ever (a slowloris upstream,
    /// a gateway stuck mid-answer): the request must not hang on it.
    #[test]
    fn an_error_body_that_never_ends_does_not_hold_the_request_for_ever() {
        use http_body_util::BodyExt;
        for status in [429, 401] {
            let script = move |_: &Seen| {
                let (mut sender, body) =
                    http_body_util::channel::Channel::<Bytes, BoxError>::new(1);
                tokio::spawn(async move {
                    let _ = sender.send_data(Bytes::from_static(b"{\"error\":")).await;
                    // Never another byte, never the end.
                    tokio::time::sleep(Duration::from_secs(365 * 24 * 3600)).await;
                    drop(sender);
                });
                let mut response = Response::new(body.boxed());
                *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                Ok(response)
            };
            with_pool(&[key("a")], script, async |fx| {
                let started = tokio::time::Instant::now();
                let answered = tokio::time::timeout(
                    Duration::from_secs(3600),
                    forward(&fx.shared, messages_request(), Bytes::from_static(BODY)),
                )
                .await;
                assert!(answered.is_ok(), "{status}: still waiting after an hour");
                assert!(started.elapsed() <= fx.shared.body_idle * 2, "{status}");
            });
        }
    }

    /// A 429 whose body breaks off is still a 429: the key is rate-limited, the next key gets
    /// the request.
    #[test]
    fn a_429_whose_body_breaks_off_still_fails_over() {
        let script = |s: &Seen| match s.key.as_str() {
            "a" => {
                let (mut sender, body) =
                    http_body_util::channel::Channel::<Bytes, BoxError>::new(1);
                tokio::spawn(async move {
                    let _ = sender.send_data(Bytes::from_static(b"{\"error\":")).await;
                    sender.abort("connection reset".into());
                });
                let mut response = Response::new(http_body_util::BodyExt::boxed(body));
                *response.status_mut() = hyper::StatusCode::TOO_MANY_REQUESTS;
                response
                    .headers_mut()
                    .insert("retry-after", "30".parse().unwrap());
                Ok(response)
            }
            _ => reply(200, &[], "from b"),
        };
        with_pool(&[key("a"), key("b")], script, async |fx| {
            let (status, _, body) = send(&fx).await;
            assert_eq!((status.as_u16(), body.as_str()), (200, "from b"));
            assert!(cooling_for(fx.availability()[0]).is_positive());
        });
    }

    /// An error body one byte past the limit is judged by status and headers, and passed on
    /// whole when it is not the key's.
    #[test]
    fn an_error_body_past_the_limit_is_passed_on_whole() {
        let big = format!(
            r#"{{"error":{{"message":"Your credit balance is too low {}"}}}}"#,
            "x".repeat(ERROR_BODY_LIMIT)
        );
        let expected = big.clone();
        let script = move |_: &Seen| reply(400, &[], &big);
        with_pool(&[key("a"), key("b")], script, async |fx| {
            let (status, _, body) = send(&fx).await;
            assert_eq!(status.as_u16(), 400);
            assert_eq!(body, expected);
            assert_eq!(fx.seen(), ["a"]);
        });
    }
    /// With one key cooling for hours, a request the last key is refused for its own sake — a
    /// model this key may not use (403 permission_error) — gets that refusal, which says what
    /// is wrong, not keyswitch's "every key is cooling down".
    #[test]
    fn a_model_refusal_is_not_hidden_behind_every_key_is_cooling() {
        let forbidden = r#"{"type":"error","error":{"type":"permission_error","message":"Your API key does not have permission to use the specified resource."}}"#;
        let script = move |s: &Seen| match s.key.as_str() {
            "a" => reply(429, &[("retry-after", "7200")], ""),
            _ => reply(403, &[], forbidden),
        };
        with_pool(&[key("a"), key("b")], script, async |fx| {
            let (status, _, body) = send(&fx).await;
            assert!(body.contains("permission"), "{status}: {body}");
        });
    }

    /// A network's HTML rate-limit page (Cloudflare's "error 1015" for the machine's address)
    /// is met by every key alike: it is passed on for Claude Code to retry, and no key cools.
    #[test]
    fn a_networks_rate_limit_page_is_passed_on_and_cools_no_key() {
        let page = "<html><title>Error 1015</title><body>You are being rate limited</body></html>";
        let script = move |_: &Seen| reply(429, &[("content-type", "text/html")], page);
        with_pool(&[key("a"), key("b")], script, async |fx| {
            let (status, _, body) = send(&fx).await;
            assert_eq!((status.as_u16(), body.as_str()), (429, page));
            assert_eq!(fx.seen(), ["a"]);
            assert_eq!(fx.availability(), [Ready, Ready]);
        });
    }

    const STREAMED: &[u8] = br#"{"model":"claude","messages":[],"stream":true}"#;

    /// `forward` of `body`, with how long it took; given up after an hour.
    async fn timed(
        fx: &Fixture,
        body: &'static [u8],
    ) -> (hyper::StatusCode, HeaderMap, String, Duration) {
        let started = tokio::time::Instant::now();
        let sent = forward(&fx.shared, messages_request(), Bytes::from_static(body));
        let answer = tokio::time::timeout(Duration::from_secs(3600), sent)
            .await
            .expect("no answer within an hour");
        let (status, headers, text) = collect(answer).await;
        (status, headers, text, started.elapsed())
    }

    fn silent_default_upstream(s: &Seen) -> Result<Response<Body>, crate::proxy::fault::Fault> {
        if s.host == "api.example.test" {
            never_answers()
        } else {
            reply(200, &[], &format!("from {}", s.key))
        }
    }

    /// A streamed turn on an upstream that takes it and says nothing: after the head timeout
    /// the key on another upstream answers, and no key is marked.
    #[test]
    fn a_silent_upstream_hands_a_streamed_request_to_a_key_elsewhere_and_marks_nothing() {
        let keys = [
            key("a"),
            key("b"),
            key("c").at("https://other.example.test"),
        ];
        with_pool(&keys, silent_default_upstream, async |fx| {
            let (status, _, body, took) = timed(&fx, STREAMED).await;
            assert_eq!((status.as_u16(), body.as_str()), (200, "from c"));
            assert_eq!(took.as_secs(), 60);
            // b shares a's upstream: it would have waited as long.
            assert_eq!(fx.seen(), ["a", "c"]);
            assert_eq!(fx.availability(), [Ready, Ready, Ready]);
        });
    }

    /// With every key on the silent upstream, Claude Code gets a 504 it retries, at once after
    /// the head timeout, and no key is marked.
    #[test]
    fn a_silent_upstream_every_key_shares_is_a_504_to_retry() {
        with_pool(&[key("a"), key("b")], silent_default_upstream, async |fx| {
            let (status, headers, body, took) = timed(&fx, STREAMED).await;
            assert_eq!(status.as_u16(), 504, "{body}");
            assert_eq!(headers["x-should-retry"], "true");
            assert!(body.contains("response_head_timeout"), "{body}");
            assert_eq!(took.as_secs(), 60);
            assert_eq!(fx.seen(), ["a"]);
            assert_eq!(fx.availability(), [Ready, Ready]);
        });
    }

    /// The config's `response_head_timeout` is the limit; a non-streaming request, whose head
    /// comes only with the whole answer, is waited for as long as Claude Code waits.
    #[test]
    fn the_head_timeout_is_the_configured_one_and_non_streaming_answers_get_ten_minutes() {
        let keys = [key("a"), key("c").at("https://other.example.test")];
        with_pool(&keys, silent_default_upstream, async |fx| {
            let config_file = fx.shared.keys.config_path();
            let mut config: serde_json::Value =
                serde_json::from_slice(&std::fs::read(config_file).unwrap()).unwrap();
            config["response_head_timeout"] = serde_json::json!("5s");
            std::fs::write(config_file, config.to_string()).unwrap();
            let (_, _, body, took) = timed(&fx, STREAMED).await;
            assert_eq!((body.as_str(), took.as_secs()), ("from c", 5));

            tokio::time::advance(SKIP_UNREACHABLE).await;
            let (_, _, body, took) = timed(&fx, BODY).await;
            assert_eq!((body.as_str(), took.as_secs()), ("from c", 600));
        });
    }
}
