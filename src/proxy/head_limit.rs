//! How long an upstream has to start answering. An upstream that takes the request and then
//! says nothing (a gateway stuck behind a dead backend, a network that drops the answer) must
//! not hold a turn until Claude Code gives up: past the limit the upstream counts as silent, and
//! a key on another upstream gets the request.
//!
//! - A streaming request (`"stream": true`: every turn Claude Code sends) has its answer's head
//!   within seconds, since the head goes out before the first token: it gets the config's
//!   `response_head_timeout`, 60 s by default.
//! - A non-streaming answer's head comes only once the whole answer is written, which for a long
//!   one takes minutes: it gets [`NON_STREAMING_HEAD_LIMIT`], the time Claude Code itself waits
//!   (it sends `X-Stainless-Timeout: 600`). A shorter limit would send a slow but working
//!   request to a second upstream, paid twice, and fail it there the same way.
//!
//! Whether a request streams is read from its body only once the streaming limit has passed:
//! the answers that come in time cost nothing.

use std::time::Duration;

use serde::Deserialize;

/// How long a non-streaming answer's head may take: as long as Claude Code waits for it.
pub const NON_STREAMING_HEAD_LIMIT: Duration = Duration::from_secs(600);

/// The upstream took the request and sent no head within its limit.
#[derive(Debug)]
pub struct Silent {
    /// How long it was waited for.
    pub waited: Duration,
}

/// `sending`'s answer, unless it takes longer than the limit for this request (`body` tells
/// whether it streams; `streaming` is the limit when it does).
pub async fn within<T>(
    sending: impl Future<Output = T>,
    streaming: Duration,
    body: &[u8],
) -> Result<T, Silent> {
    let mut sending = std::pin::pin!(sending);
    if let Ok(answer) = tokio::time::timeout(streaming, &mut sending).await {
        return Ok(answer);
    }
    if streams(body) || streaming >= NON_STREAMING_HEAD_LIMIT {
        return Err(Silent { waited: streaming });
    }
    tokio::time::timeout(NON_STREAMING_HEAD_LIMIT - streaming, sending)
        .await
        .map_err(|_| Silent {
            waited: NON_STREAMING_HEAD_LIMIT,
        })
}

/// Whether the request asks for a streamed answer. A body that is not a JSON object (not a
/// Messages API request) does not.
fn streams(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Flag {
        stream: Option<bool>,
    }
    serde_json::from_slice::<Flag>(body).is_ok_and(|flag| flag.stream == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_streams_only_when_its_body_says_so() {
        assert!(streams(br#"{"model":"m","messages":[],"stream":true}"#));
        assert!(streams(br#"{"stream": true, "x": {"stream": false}}"#));
        assert!(!streams(br#"{"model":"m","messages":[]}"#));
        assert!(!streams(br#"{"messages":[{"content":"\"stream\":true"}]}"#));
        assert!(!streams(br#"{"stream":"yes"}"#));
        assert!(!streams(b"not json"));
        assert!(!streams(b""));
    }
}
