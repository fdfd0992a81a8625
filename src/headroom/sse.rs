//! The `usage` of a streamed Messages answer, read as its bytes pass: the scanner looks at each
//! line's start to tell `event:` and `data:` lines apart, copies only the `data:` line of a
//! `message_start` or `message_delta` event (a few hundred bytes), and skips every other line
//! (the text deltas) without copying a byte. It never holds anything back: it reads each frame
//! as it is handed on, and needs no later frame to let one go. Anything it does not understand (a line past its bound, data
//! that does not parse) makes it give up for the rest of the stream, quietly.

use serde_json::Value;

use super::usage::Usage;

/// A `message_start` or `message_delta` line longer than this is not one the API sends.
const MAX_LINE: usize = 64 * 1024;
/// How much of a `data:` line without an `event:` line before it is looked at for its type.
const SNIFF: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// No `event:` line in this event yet.
    Unnamed,
    Wanted,
    Other,
}

enum Line {
    /// The first bytes of a line, until they tell what it is.
    Start {
        prefix: [u8; 6],
        len: usize,
    },
    EventName(Vec<u8>),
    /// A `data:` line kept to be parsed.
    Data(Vec<u8>),
    /// A `data:` line of an unnamed event: its first bytes, to see its type.
    Sniff(Vec<u8>),
    Skip,
}

pub struct SseScan {
    line: Line,
    event: Event,
    usage: Usage,
    given_up: bool,
}

impl Default for SseScan {
    fn default() -> Self {
        Self {
            line: Line::Start {
                prefix: [0; 6],
                len: 0,
            },
            event: Event::Unnamed,
            usage: Usage::default(),
            given_up: false,
        }
    }
}

impl SseScan {
    /// The counts read so far; `None` when none were, or the scanner gave up.
    pub fn usage(&self) -> Option<Usage> {
        (!self.given_up && !self.usage.is_empty()).then_some(self.usage)
    }

    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.given_up {
            bytes = self.step(bytes);
        }
    }

    /// Takes what it can of `bytes` in the current line's state; returns the rest.
    fn step<'b>(&mut self, bytes: &'b [u8]) -> &'b [u8] {
        let end = bytes.iter().position(|&b| b == b'\n');
        let (piece, rest, ends) = match end {
            Some(i) => (&bytes[..i], &bytes[i + 1..], true),
            None => (bytes, &[][..], false),
        };
        match &mut self.line {
            Line::Start { prefix, len } => {
                // Byte by byte only up to six bytes a line.
                for (i, &b) in piece.iter().enumerate() {
                    if *len == prefix.len() {
                        break;
                    }
                    prefix[*len] = b;
                    *len += 1;
                    if let Some(next) = classify(&prefix[..*len], self.event) {
                        // The rest of the line (its end too) goes to the new state.
                        self.line = next;
                        return &bytes[i + 1..];
                    }
                }
                if ends {
                    let blank = *len == 0 || prefix[..*len] == *b"\r";
                    self.end_line(blank);
                }
                rest
            }
            Line::Skip => {
                if ends {
                    self.end_line(false);
                }
                rest
            }
            Line::EventName(buf) | Line::Data(buf) | Line::Sniff(buf) => {
                if buf.len() + piece.len() > MAX_LINE {
                    self.given_up = true;
                    return &[];
                }
                buf.extend_from_slice(piece);
                if let Line::Sniff(buf) = &mut self.line
                    && (buf.len() >= SNIFF || ends)
                {
                    let buf = std::mem::take(buf);
                    self.line = if wanted_type(&buf) {
                        Line::Data(buf)
                    } else {
                        Line::Skip
                    };
                }
                if ends {
                    self.end_line(false);
                }
                rest
            }
        }
    }

    /// A line ended: what it held takes effect.
    fn end_line(&mut self, blank: bool) {
        let line = std::mem::replace(
            &mut self.line,
            Line::Start {
                prefix: [0; 6],
                len: 0,
            },
        );
        match line {
            _ if blank => self.event = Event::Unnamed,
            Line::EventName(name) => {
                self.event = match name.trim_ascii() {
                    b"message_start" | b"message_delta" => Event::Wanted,
                    _ => Event::Other,
                };
            }
            Line::Data(data) => self.data(&data),
            _ => {}
        }
    }

    fn data(&mut self, data: &[u8]) {
        let Ok(value) = serde_json::from_slice::<Value>(data) else {
            self.given_up = true;
            return;
        };
        let usage = match value.get("type").and_then(Value::as_str) {
            Some("message_start") => value.get("message").and_then(|m| m.get("usage")),
            Some("message_delta") => value.get("usage"),
            _ => None,
        };
        if let Some(usage) = usage {
            self.usage.update(usage);
        }
    }
}

/// What a line starting with `prefix` is, once its first bytes say; `None` while they could
/// still be either field.
fn classify(prefix: &[u8], event: Event) -> Option<Line> {
    if prefix == b"event:" {
        return Some(Line::EventName(Vec::new()));
    }
    if prefix == b"data:" {
        return Some(match event {
            Event::Wanted => Line::Data(Vec::new()),
            Event::Unnamed => Line::Sniff(Vec::new()),
            Event::Other => Line::Skip,
        });
    }
    // A blank line of a stream that ends its lines with CRLF: its end says it is blank.
    if prefix == b"\r" {
        return None;
    }
    let could_be = |field: &[u8]| field.starts_with(prefix);
    if could_be(b"event:") || could_be(b"data:") {
        None
    } else {
        Some(Line::Skip)
    }
}

/// Whether the start of an unnamed event's data says it is a `message_start` or
/// `message_delta`.
fn wanted_type(start: &[u8]) -> bool {
    let has = |word: &[u8]| start.windows(word.len()).any(|w| w == word);
    has(b"\"message_start\"") || has(b"\"message_delta\"")
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
