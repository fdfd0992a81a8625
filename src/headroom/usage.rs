//! The `usage` block of a Messages answer (input, output and both cache kinds of tokens), read
//! from an answer's JSON as it passes: only the last two frames are kept (by reference, not
//! copied), and only the end of them is looked at once the answer is whole — the Messages API
//! puts `usage` last.

use bytes::Bytes;
use serde_json::Value;

use super::Tally;

/// How much of a JSON answer's end is looked at for its `usage`.
const TAIL: usize = 4096;

/// The most tokens of one kind one answer can report.
const MAX_TOKENS_PER_ANSWER: u64 = 100_000_000;

/// Token counts as an answer reports them; each the latest seen (a stream's `message_delta`
/// carries cumulative counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub cache_write: Option<u64>,
    pub cache_read: Option<u64>,
}

impl Usage {
    /// Takes the counts `usage` (a JSON `usage` object) holds, keeping the others.
    pub fn update(&mut self, usage: &Value) {
        // No one answer holds more than this (a context window is a few million tokens): a
        // count past it is garbage, and would spoil the day's tally for 90 days.
        let field = |name: &str| {
            usage
                .get(name)
                .and_then(Value::as_u64)
                .filter(|n| *n <= MAX_TOKENS_PER_ANSWER)
        };
        let fields = [
            (&mut self.input, "input_tokens"),
            (&mut self.output, "output_tokens"),
            (&mut self.cache_write, "cache_creation_input_tokens"),
            (&mut self.cache_read, "cache_read_input_tokens"),
        ];
        for (slot, name) in fields {
            if let Some(n) = field(name) {
                *slot = Some(n);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// As a day's tally of one request.
    pub fn tally(&self) -> Tally {
        Tally {
            input: self.input.unwrap_or(0),
            output: self.output.unwrap_or(0),
            cache_write: self.cache_write.unwrap_or(0),
            cache_read: self.cache_read.unwrap_or(0),
            requests: 0,
            failovers: 0,
        }
    }
}

/// The end of a JSON answer as it passes: its last two frames.
#[derive(Default)]
pub struct JsonTail {
    before: Bytes,
    last: Bytes,
}

impl JsonTail {
    pub fn feed(&mut self, frame: &Bytes) {
        if frame.is_empty() {
            return;
        }
        self.before = std::mem::replace(&mut self.last, frame.clone());
    }

    /// The answer's `usage`, read from its end; `None` when there is none or it does not parse.
    pub fn finish(&self) -> Option<Usage> {
        let last = &self.last[self.last.len().saturating_sub(TAIL)..];
        let wanted = TAIL - last.len();
        let before = &self.before[self.before.len().saturating_sub(wanted)..];
        let mut tail = Vec::with_capacity(before.len() + last.len());
        tail.extend_from_slice(before);
        tail.extend_from_slice(last);
        usage_in(&tail)
    }
}

/// The object after the last `"usage":` in `text`.
fn usage_in(text: &[u8]) -> Option<Usage> {
    const KEY: &[u8] = b"\"usage\"";
    let at = text.windows(KEY.len()).rposition(|w| w == KEY)?;
    let rest = text[at + KEY.len()..].trim_ascii_start();
    let rest = rest.strip_prefix(b":")?;
    let value = serde_json::Deserializer::from_slice(rest)
        .into_iter::<Value>()
        .next()?
        .ok()?;
    value.is_object().then_some(())?;
    let mut usage = Usage::default();
    usage.update(&value);
    (!usage.is_empty()).then_some(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = r#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"the \"usage\": {\"input_tokens\": 999} here is text"}],"stop_reason":"end_turn","usage":{"input_tokens":1000,"cache_creation_input_tokens":20,"cache_read_input_tokens":30000,"output_tokens":100}}"#;

    fn fed(pieces: &[&[u8]]) -> Option<Usage> {
        let mut tail = JsonTail::default();
        for piece in pieces {
            tail.feed(&Bytes::copy_from_slice(piece));
        }
        tail.finish()
    }

    #[test]
    fn the_usage_at_the_end_of_an_answer_is_read_however_it_is_cut() {
        let want = Usage {
            input: Some(1000),
            output: Some(100),
            cache_write: Some(20),
            cache_read: Some(30000),
        };
        let bytes = ANSWER.as_bytes();
        for cut in 0..=bytes.len() {
            assert_eq!(
                fed(&[&bytes[..cut], &bytes[cut..]]),
                Some(want),
                "cut at {cut}"
            );
        }
        assert_eq!(want.tally().tokens(), 31120);
    }

    #[test]
    fn a_long_answer_keeps_only_its_end() {
        let text = "x".repeat(100_000);
        let answer = format!(
            r#"{{"content":[{{"type":"text","text":"{text}"}}],"usage":{{"input_tokens":5,"output_tokens":6}}}}"#
        );
        let frames: Vec<&[u8]> = answer.as_bytes().chunks(16 * 1024).collect();
        assert_eq!(fed(&frames).unwrap().output, Some(6));
    }

    #[test]
    fn no_usage_or_garbage_is_nothing() {
        assert_eq!(fed(&[]), None);
        assert_eq!(fed(&[b"{\"type\":\"error\"}"]), None);
        assert_eq!(fed(&[b"\"usage\": {\"input_tokens\": 1"]), None);
        assert_eq!(fed(&[b"\"usage\": 5}"]), None);
        assert_eq!(fed(&[b"\"usage\": {\"input_tokens\": -1}"]), None);
        assert_eq!(
            fed(&[b"\"usage\": {\"input_tokens\": 18446744073709551615}"]),
            None
        );
        assert_eq!(fed(&[&[0xff, 0xfe, b'"']]), None);
    }
}
