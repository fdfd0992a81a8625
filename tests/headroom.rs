//! Each key's headroom through the real proxy: the stand-in answers with LiteLLM-style and
//! Anthropic-style headers and a `usage` in JSON and SSE answers, and `list`, `status`, `usage`
//! show exactly what it sent — with many requests at once counted once each, across a restart
//! of the proxy, and nothing shown in helper mode but the way to proxy mode.

mod common;

use std::time::{Duration, Instant};

use common::Sandbox;
use common::proxy_box::{BODY, ProxyBox};
use common::upstream::{Reply, Upstream};
use serde_json::{Value, json};

/// A Messages answer with this usage, and LiteLLM's spend and budget headers.
fn litellm_answer(input: u64, output: u64, cache_write: u64, cache_read: u64) -> Reply {
    let body = json!({"id": "msg_1", "type": "message", "role": "assistant",
        "content": [{"type": "text", "text": "the usage is not \"usage\": {\"input_tokens\": 5}"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": input, "output_tokens": output,
                  "cache_creation_input_tokens": cache_write, "cache_read_input_tokens": cache_read}});
    Reply::json(200, &body.to_string())
        .with_header("x-litellm-key-spend", "4.02")
        .with_header("x-litellm-key-max-budget", "5.0")
}

/// A streamed answer with Anthropic's rate limit headers, its chunks cut every `cut` bytes
/// (mid-line, mid-event) as a network may deliver them.
fn anthropic_stream(input: u64, output: u64, cut: usize) -> Reply {
    let events = common::upstream::message_events("claude-test", "hi", input, output).concat();
    let mut raw = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\
         anthropic-ratelimit-tokens-limit: 400000\r\nanthropic-ratelimit-tokens-remaining: 12000\r\n\
         anthropic-ratelimit-tokens-reset: 2026-12-01T10:00:06Z\r\n\r\n",
    );
    for piece in events.as_bytes().chunks(cut) {
        raw.push_str(&format!(
            "{:x}\r\n{}\r\n",
            piece.len(),
            String::from_utf8_lossy(piece)
        ));
    }
    raw.push_str("0\r\n\r\n");
    Reply::Raw(raw.into_bytes())
}

/// Waits until `done` holds of `list --json`, which the proxy's background writes feed.
fn wait_for_list(s: &Sandbox, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = s.list_json();
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {list:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn today(row: &Value, field: &str) -> u64 {
    row["headroom"]["today"][field].as_u64().unwrap_or(0)
}

fn run(s: &Sandbox, args: &[&str]) -> String {
    let out = s.cmd().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn litellm_spend_and_budget_and_the_tokens_of_json_answers_show_where_people_look() {
    let up = Upstream::start(|_| litellm_answer(1000, 100, 20, 300));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    let token = p.token();
    // Before any answer: honest that nothing is known.
    let list = run(&p.s, &["list"]);
    assert!(list.contains("no figures from this gateway yet"), "{list}");
    for _ in 0..3 {
        assert_eq!(p.send(&token, BODY).status, 200);
    }
    let rows = wait_for_list(&p.s, "3 requests counted", |l| {
        today(&l[0], "requests") == 3
    });
    let primary = &rows[0];
    assert_eq!(primary["headroom"]["reported"]["spend"], 4.02);
    assert_eq!(primary["headroom"]["reported"]["max_budget"], 5.0);
    for (field, each) in [
        ("input", 1000),
        ("output", 100),
        ("cache_write", 20),
        ("cache_read", 300),
    ] {
        assert_eq!(today(primary, field), 3 * each, "{field}");
    }
    assert_eq!(today(primary, "failovers"), 0);
    assert_eq!(rows[1]["headroom"], Value::Null);

    let list = run(&p.s, &["list"]);
    let line = list.lines().find(|l| l.contains("primary")).unwrap();
    assert!(
        line.ends_with("████████░░ $4.02 of $5.00 · 4.2k tokens today"),
        "{list}"
    );
    let fallback = list.lines().find(|l| l.contains("fallback")).unwrap();
    assert!(
        fallback.ends_with("no figures from this gateway yet"),
        "{list}"
    );
    // Not a terminal: no colours.
    assert!(!list.contains('\u{1b}'), "{list:?}");
    let status = run(&p.s, &["status"]);
    assert!(
        status.contains("key: primary · ████░ $4.02/$5.00, 4.2k tok today"),
        "{status}"
    );
    let usage: Value = serde_json::from_str(&run(&p.s, &["usage", "--json"])).unwrap();
    let days = usage["keys"][0]["days"].as_array().unwrap();
    assert_eq!(days.len(), 14);
    assert_eq!(days[13]["tokens"], 3 * 1420);
    let chart = run(&p.s, &["usage"]);
    assert!(chart.contains("4.2k tokens · 3 requests"), "{chart}");
    // Only numbers reach the file: nothing of the body, the text or the headers beyond them.
    let file = std::fs::read_to_string(p.s.state_dir().join("headroom.json")).unwrap();
    assert!(
        !file.contains("msg_1") && !file.contains("usage is not"),
        "{file}"
    );
}

#[test]
fn streamed_usage_and_anthropic_windows_cut_anywhere_count_exactly() {
    let up = Upstream::start(|r| {
        // A different cut for each request, from the body's length: 1 to 40 bytes.
        let cut = 1 + r.body.len() % 40;
        anthropic_stream(1200, 345, cut)
    });
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let token = p.token();
    let mut sent = 0;
    for pad in 0..12 {
        let body = format!(
            r#"{{"model":"claude-test","max_tokens":10,"messages":[],"pad":"{}"}}"#,
            "x".repeat(pad * 3)
        );
        let answer = p.send(&token, body.as_bytes());
        assert_eq!(answer.status, 200);
        // The stream reached the client byte for byte.
        assert!(
            answer.text().contains("event: message_stop"),
            "{}",
            answer.text()
        );
        sent += 1;
    }
    let rows = wait_for_list(&p.s, "the streamed answers counted", |l| {
        today(&l[0], "requests") == sent
    });
    assert_eq!(today(&rows[0], "input"), 1200 * sent);
    assert_eq!(today(&rows[0], "output"), 345 * sent);
    let window = &rows[0]["headroom"]["reported"]["windows"][0];
    assert_eq!(window["name"], "tokens");
    assert_eq!(window["remaining"], 12000);
    assert_eq!(window["limit"], 400000);
    assert_eq!(window["reset"], "2026-12-01T10:00:06Z");
    let list = run(&p.s, &["list"]);
    assert!(list.contains("tokens 12k of 400k left"), "{list}");
}

#[test]
fn many_requests_at_once_across_a_restart_count_every_token_once() {
    let up = Upstream::start(|r| {
        if r.body.ends_with(b"}}") {
            anthropic_stream(7, 11, 5)
        } else {
            litellm_answer(7, 11, 0, 0)
        }
    });
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let token = p.token();
    let burst = |n: usize| {
        std::thread::scope(|scope| {
            for i in 0..n {
                let (p, token) = (&p, &token);
                scope.spawn(move || {
                    let body: &[u8] = if i % 2 == 0 {
                        BODY
                    } else {
                        br#"{"model":"m","messages":[],"x":{}}"#
                    };
                    assert_eq!(p.send(token, body).status, 200);
                });
            }
        });
    };
    burst(32);
    // A restart: the old proxy writes what it counted as it stops, the new one adds to it.
    run(&p.s, &["proxy", "stop"]);
    let token = p.token();
    for _ in 0..8 {
        assert_eq!(p.send(&token, BODY).status, 200);
    }
    burst(16);
    let n = 32 + 8 + 16;
    let rows = wait_for_list(&p.s, "every request counted", |l| {
        today(&l[0], "requests") >= n
    });
    assert_eq!(today(&rows[0], "requests"), n);
    assert_eq!(today(&rows[0], "input"), 7 * n);
    assert_eq!(today(&rows[0], "output"), 11 * n);
    assert_eq!(up.requests().len() as u64, n);
}

#[test]
fn a_failover_is_counted_for_the_key_that_failed_over() {
    let primary = common::fake_key("primary");
    let up = Upstream::start(move |r| {
        if r.key == primary {
            Reply::rate_limited(Some("7200")).with_header("x-litellm-key-spend", "5.0")
        } else {
            litellm_answer(10, 1, 0, 0)
        }
    });
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    let token = p.token();
    assert_eq!(p.send(&token, BODY).status, 200);
    let rows = wait_for_list(&p.s, "both keys counted", |l| {
        today(&l[0], "requests") == 1 && today(&l[1], "requests") == 1
    });
    assert_eq!(today(&rows[0], "failovers"), 1);
    // The error answer's headers count too.
    assert_eq!(rows[0]["headroom"]["reported"]["spend"], 5.0);
    assert_eq!(today(&rows[1], "input"), 10);
}

#[test]
fn helper_mode_points_to_proxy_mode_and_a_damaged_file_is_no_figures() {
    let s = Sandbox::new();
    s.add("primary", &common::fake_key("primary"), &[]);
    s.cmd().args(["install", "--helper"]).assert().success();
    let list = run(&s, &["list"]);
    assert!(
        list.contains("headroom: figures need proxy mode")
            && list.contains("keyswitch install --proxy"),
        "{list}"
    );
    assert!(run(&s, &["usage"]).contains("figures need proxy mode"));
    let usage: Value = serde_json::from_str(&run(&s, &["usage", "--json"])).unwrap();
    assert!(usage["note"].as_str().unwrap().contains("proxy mode"));
    assert_eq!(s.list_json()[0]["headroom"], Value::Null);

    // Proxy mode with a damaged file: no figures, no failure.
    let up = Upstream::start(|_| Reply::ok("x"));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    std::fs::create_dir_all(p.s.state_dir()).unwrap();
    std::fs::write(
        p.s.state_dir().join("headroom.json"),
        b"{\"keys\": {\"primary\": 7",
    )
    .unwrap();
    assert!(run(&p.s, &["list"]).contains("no figures from this gateway yet"));
    assert_eq!(run(&p.s, &["status"]).trim(), "key: primary");
    assert!(run(&p.s, &["usage"]).contains("primary  no figures from this gateway yet"));
}

#[test]
fn doctor_says_when_a_key_is_near_its_budget() {
    let up = Upstream::start(|_| {
        Reply::ok("x")
            .with_header("x-litellm-key-spend", "4.60")
            .with_header("x-litellm-key-max-budget", "5.0")
    });
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let token = p.token();
    assert_eq!(p.send(&token, BODY).status, 200);
    wait_for_list(&p.s, "the report", |l| {
        l[0]["headroom"]["reported"]["spend"] == 4.6
    });
    let out = p.s.cmd().args(["doctor", "--json"]).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "headroom")
        .collect();
    assert_eq!(findings.len(), 2, "{findings:#?}");
    assert_eq!(findings[0]["level"], "info");
    assert!(
        findings[0]["message"]
            .as_str()
            .unwrap()
            .contains("primary has spent $4.60 of its $5.00 budget (92 %)"),
        "{findings:#?}"
    );
    // The only key: a turn may soon find none left.
    assert_eq!(findings[1]["level"], "fix");
}
