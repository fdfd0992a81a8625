use proptest::prelude::*;

use super::*;

/// A streamed answer as the API sends it, with text that looks like the events it is not.
fn stream() -> String {
    let events = [
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"usage":{"input_tokens":1200,"cache_creation_input_tokens":7,"cache_read_input_tokens":30000,"output_tokens":1}}}"#,
        ),
        ("ping", r#"{"type": "ping"}"#),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":999999}}"}}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":345}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ];
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

fn want() -> Usage {
    Usage {
        input: Some(1200),
        output: Some(345),
        cache_write: Some(7),
        cache_read: Some(30000),
    }
}

fn scanned(pieces: &[&[u8]]) -> Option<Usage> {
    let mut scan = SseScan::default();
    for piece in pieces {
        scan.feed(piece);
    }
    scan.usage()
}

#[test]
fn the_usage_is_read_when_the_stream_is_split_at_any_byte() {
    let text = stream();
    let bytes = text.as_bytes();
    assert_eq!(scanned(&[bytes]), Some(want()));
    for cut in 0..=bytes.len() {
        assert_eq!(
            scanned(&[&bytes[..cut], &bytes[cut..]]),
            Some(want()),
            "cut at {cut}"
        );
    }
    // One byte at a time.
    let single: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(scanned(&single), Some(want()));
}

proptest! {
    #[test]
    fn any_split_into_many_pieces_reads_the_same(cuts in proptest::collection::vec(0usize..2000, 0..12)) {
        let text = stream();
        let bytes = text.as_bytes();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in cuts {
            pieces.push(&bytes[from..cut]);
            from = cut;
        }
        pieces.push(&bytes[from..]);
        prop_assert_eq!(scanned(&pieces), Some(want()));
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = scanned(&[&bytes]);
    }
}

#[test]
fn crlf_lines_and_events_without_an_event_line_are_read() {
    let text = stream().replace('\n', "\r\n");
    assert_eq!(scanned(&[text.as_bytes()]), Some(want()));
    // The blank line ends the event: an unnamed one after it is sniffed, not taken as wanted.
    let mut scan = SseScan::default();
    scan.feed(b"event: message_delta\r\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":3}}\r\n\r\n");
    assert_eq!(scan.event, Event::Unnamed);
    scan.feed(b"data: {\"type\":\"content_block_delta\",\"text\":\"not json at all");
    scan.feed(b"\r\n\r\n");
    assert_eq!(scan.usage().and_then(|u| u.output), Some(3));
    let unnamed: String = stream()
        .lines()
        .filter(|l| !l.starts_with("event:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(scanned(&[unnamed.as_bytes()]), Some(want()));
}

#[test]
fn a_malformed_stream_is_given_up_quietly() {
    assert_eq!(scanned(&[b""]), None);
    assert_eq!(
        scanned(&[b"event: message_start\ndata: {not json\n\n"]),
        None
    );
    // Past the bound: given up, not kept growing.
    let mut scan = SseScan::default();
    scan.feed(b"event: message_start\ndata: ");
    for _ in 0..100 {
        scan.feed(&[b'x'; 1024]);
    }
    assert!(scan.given_up);
    assert_eq!(scan.usage(), None);
    // Other events' lines are never kept, however long.
    let mut scan = SseScan::default();
    scan.feed(b"event: content_block_delta\ndata: ");
    for _ in 0..100 {
        scan.feed(&[b'x'; 1024]);
    }
    assert!(!scan.given_up);
    assert!(matches!(scan.line, Line::Skip));
}
