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
//! could not reach, the keys the upstream refused.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderMap;
use hyper::http::request::Parts;
use hyper::{Request, Response, Uri};
use jiff::Timestamp;

use super::body::{ErrorBody, full, read_error_body, rebuild, stream_back};
use super::decide::{self, Mark, Verdict};
use super::fault::Fault;
use super::headers::{forwarded_headers, session_id, with_secret};
use super::io::Body;
use super::keys::{Secret, View};
use super::replies::{
    all_unavailable, error_answer_cut_off, internal_error, refusal_not_shown, unreachable_reply,
};
use super::shared::Shared;
use super::upstream::Upstream;
use super::whole_seconds_now;
use crate::config::KeyConfig;
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
    unreachable: Option<(String, Fault)>,
    /// Keys the upstream refused (401/403): marked only once another key succeeds, so one
    /// request the upstream forbids never sets the whole pool aside.
    refused: Vec<(String, Mark)>,
    /// The last refusal, passed through if no key succeeds.
    last_refusal: Option<Response<Body>>,
}

impl Attempts {
    fn tried(&self, name: &str) -> bool {
        self.tried.iter().any(|n| n == name)
    }

    fn refused(&mut self, name: &str, mark: Mark, refusal: Response<Body>) {
        self.refused.push((name.to_string(), mark));
        self.last_refusal = Some(refusal);
    }

    /// Another key succeeded: the keys refused before it were the problem.
    fn succeeded<U>(&mut self, shared: &Shared<U>, session: &Option<String>) {
        for (name, mark) in self.refused.drain(..) {
            shared
                .keys
                .mark(&name, &mark, session.clone(), whole_seconds_now());
        }
    }

    /// The answer when no key is left to try.
    fn settle(self, view: &View, now: Timestamp) -> Response<Body> {
        match (self.last_refusal, self.unreachable) {
            (Some(refusal), _) => refusal,
            (None, Some((upstream, fault))) => unreachable_reply(&upstream, &fault),
            (None, None) => all_unavailable(view, now),
        }
    }
}

/// The key an attempt goes to.
struct Choice {
    index: usize,
    upstream: String,
    /// The pool's first candidate: the key `get` hands out now.
    active: bool,
}

/// The first key, in the pool's order, that is ready, not yet tried for this request, and on an
/// upstream that is not known to be down — unless nothing else is left to try.
fn choose<U>(shared: &Shared<U>, view: &View, attempts: &Attempts) -> Option<Choice> {
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
        if !shared.is_unreachable(&upstream) {
            return Some(choice(index, upstream));
        }
        first_ready.get_or_insert((index, upstream));
    }
    // With every remaining upstream marked down, try once anyway: it may be back, and the
    // alternative is an error. But never a second time within one request.
    let (index, upstream) = first_ready.filter(|_| attempts.tried.is_empty())?;
    Some(choice(index, upstream))
}

fn upstream_of<U>(shared: &Shared<U>, key: &KeyConfig) -> String {
    key.endpoint()
        .map(|e| e.as_str().to_string())
        .unwrap_or_else(|| shared.default_upstream.clone())
}

/// One key's try: its secret on the request, sent to its upstream, the answer judged.
async fn attempt<U: Upstream>(
    shared: &Shared<U>,
    request: &Outgoing,
    view: &View,
    choice: Choice,
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
    let Some(uri) = shared.upstream_uri(&choice.upstream, request.path_and_query()) else {
        // Config and state are validated on load: only a damaged file gets here.
        let fault = Fault::Broken("its address is not a usable URL".to_string());
        return Step::Answer(unreachable_reply(&choice.upstream, &fault));
    };
    let response = match shared.client.send(|| request.to(&uri, &secret)).await {
        Ok(response) => response,
        // Nothing reached the upstream (down, a certificate this network does not trust, proxy
        // settings that cannot work for it): a key elsewhere may still answer; if none does,
        // this is named.
        Err(fault) if fault.reached_nothing() => {
            shared.note_unreachable(&choice.upstream);
            attempts.unreachable = Some((choice.upstream, fault));
            return Step::TryNext;
        }
        Err(fault) => return Step::Answer(unreachable_reply(&choice.upstream, &fault)),
    };
    judge(shared, &request.session, &key.name, response, attempts).await
}

/// The key's secret; `None` (and a warning) when the keychain has none, or one that is not a
/// single printable token and so cannot go in a header.
async fn usable_secret<U>(shared: &Shared<U>, name: &str) -> anyhow::Result<Option<Secret>> {
    match shared.keys.secret(name).await? {
        Some(secret) if crate::validate::secret_problem(&secret).is_some() => {
            eprintln!(
                "keyswitch: warning: the secret of {name} in the keychain is not one printable token (a space, line break or control character); skipping it (store it again with `keyswitch add {name} --replace`)"
            );
            Ok(None)
        }
        Some(secret) => Ok(Some(secret)),
        None => {
            eprintln!(
                "keyswitch: warning: {name} has no secret in the keychain; skipping it (store one with `keyswitch add {name} --replace`)"
            );
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
    attempts: &mut Attempts,
) -> Step {
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match decide::judge(status.as_u16(), &header, whole_seconds_now()) {
        Verdict::PassThrough => {
            if status.as_u16() < 400 {
                attempts.succeeded(shared, session);
            }
            Step::Answer(stream_back(response))
        }
        Verdict::Failover(mark) => {
            shared
                .keys
                .mark(name, &mark, session.clone(), whole_seconds_now());
            Step::TryNext
        }
        Verdict::Refused(mark) => {
            let refusal = match read_error_body(response).await {
                (head, ErrorBody::Whole(bytes)) => rebuild(head, full(bytes)),
                // Kept whole while other keys are tried, or not at all.
                (head, ErrorBody::Large(_) | ErrorBody::CutOff) => refusal_not_shown(head.status),
            };
            attempts.refused(name, mark, refusal);
            Step::TryNext
        }
        Verdict::ReadBody => match read_error_body(response).await {
            (head, ErrorBody::Whole(bytes)) => match decide::billing_verdict(&bytes) {
                Verdict::Failover(mark) => {
                    shared
                        .keys
                        .mark(name, &mark, session.clone(), whole_seconds_now());
                    Step::TryNext
                }
                // Not a spent balance: the request's own error, for its client.
                _ => Step::Answer(rebuild(head, full(bytes))),
            },
            // A billing error is small: a larger answer is the request's own, and its client
            // gets it as it came.
            (head, ErrorBody::Large(body)) => Step::Answer(rebuild(head, body)),
            (_, ErrorBody::CutOff) => Step::Answer(error_answer_cut_off()),
        },
    }
}
