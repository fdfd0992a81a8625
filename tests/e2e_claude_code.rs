//! End to end with the real Claude Code CLI (npm @anthropic-ai/claude-code, pinned; installed by
//! scripts/test.sh into .cache/claude) against two loopback stand-ins for the Messages API: a
//! company proxy that runs out of budget, and the user's own endpoint. One Claude Code process,
//! several turns: the primary's 429 fails a turn, the StopFailure hook marks it, the next turn
//! succeeds on the fallback in the same process, and after a short cooldown the same process is
//! back on the primary — while neither key ever reaches the other's stand-in.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::claude_code::Session;
use common::{Sandbox, fake_key};
use serde_json::{Value, json};

/// A request the stand-in saw: its path and the key it carried.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    key: String,
}

/// A loopback stand-in for the Messages API that answers as `name` and accepts `key` only.
struct StandIn {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Every key is out of budget.
    out_of_budget: Arc<AtomicBool>,
    /// Only these keys are out of budget.
    spent: Arc<Mutex<Vec<String>>>,
}

impl StandIn {
    fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out_of_budget = Arc::new(AtomicBool::new(false));
        let spent = Arc::new(Mutex::new(Vec::new()));
        let (seen2, budget2, spent2) = (seen.clone(), out_of_budget.clone(), spent.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (seen, budget, spent) = (seen2.clone(), budget2.clone(), spent2.clone());
                std::thread::spawn(move || serve(stream, name, &seen, &budget, &spent));
            }
        });
        Self {
            port,
            seen,
            out_of_budget,
            spent,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn keys_seen(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.key.clone())
            .collect()
    }
}

fn serve(
    stream: TcpStream,
    name: &str,
    seen: &Mutex<Vec<Seen>>,
    out_of_budget: &AtomicBool,
    spent: &Mutex<Vec<String>>,
) {
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let mut length = 0usize;
        let mut key = String::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (field, value) = header.split_once(':').unwrap_or((header, ""));
            let value = value.trim();
            match field.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "x-api-key" => key = value.to_string(),
                "authorization" if key.is_empty() => {
                    key = value.trim_start_matches("Bearer ").to_string()
                }
                _ => {}
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if path.starts_with("/_keyswitch/") {
            // `install --proxy` asks a loopback upstream whether it is a keyswitch proxy; that
            // is no request of Claude Code's.
            if writer
                .write_all(b"HTTP/1.1 404 X\r\ncontent-length: 0\r\n\r\n")
                .is_err()
            {
                return;
            }
            continue;
        }
        seen.lock().unwrap().push(Seen {
            path: path.clone(),
            key: key.clone(),
        });
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let response = if !path.starts_with("/v1/messages")
            || path.starts_with("/v1/messages/count_tokens")
        {
            http(
                404,
                "application/json",
                &[],
                r#"{"type":"error","error":{"type":"not_found_error","message":"stand-in"}}"#,
            )
        } else if out_of_budget.load(Ordering::SeqCst) || spent.lock().unwrap().contains(&key) {
            // As a budget proxy answers; x-should-retry: false fails the turn at once.
            http(
                429,
                "application/json",
                &["x-should-retry: false"],
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"Budget exhausted for this key"}}"#,
            )
        } else if request["stream"] == json!(true) {
            http(
                200,
                "text/event-stream",
                &[],
                &sse(&format!("hello from {name}")),
            )
        } else {
            let message = json!({"id": "msg_standin", "type": "message", "role": "assistant", "model": "claude-standin",
                "content": [{"type": "text", "text": format!("hello from {name}")}],
                "stop_reason": "end_turn", "stop_sequence": null, "usage": {"input_tokens": 1, "output_tokens": 3}});
            http(200, "application/json", &[], &message.to_string())
        };
        if writer.write_all(&response).is_err() {
            return;
        }
    }
}

fn http(status: u16, content_type: &str, extra: &[&str], body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        429 => "Too Many Requests",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n",
        body.len()
    );
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

fn sse(text: &str) -> String {
    common::upstream::message_events("claude-standin", text, 1, 3).concat()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_running_session_fails_over_on_429_and_returns_to_the_primary() {
    let s = Sandbox::new();
    let proxy = StandIn::start("proxy");
    let own = StandIn::start("own-endpoint");
    let (primary, fallback) = (fake_key("primary"), fake_key("fallback"));

    // The user's own endpoint is in their settings; the primary belongs to the company proxy.
    std::fs::create_dir_all(s.claude_dir()).unwrap();
    std::fs::write(
        s.settings_file(),
        serde_json::to_string_pretty(&json!({"env": {"ANTHROPIC_BASE_URL": own.url()}})).unwrap(),
    )
    .unwrap();
    s.add(
        "primary",
        &primary,
        &["--endpoint", &proxy.url(), "--cooldown", "12s"],
    );
    s.add("fallback", &fallback, &[]);
    s.cmd().args(["install", "--helper"]).assert().success();
    assert_eq!(s.settings()["env"]["ANTHROPIC_BASE_URL"], proxy.url());
    // install's helper TTL is a minute: the failover below cannot be a TTL refresh.
    assert_eq!(
        s.settings()["env"]["CLAUDE_CODE_API_KEY_HELPER_TTL_MS"],
        "60000"
    );

    proxy.out_of_budget.store(true, Ordering::SeqCst);
    let mut session = Session::start(&s, &[], &[]);

    // Turn 1: the proxy answers 429; the turn fails and the StopFailure hook marks the primary.
    let first = session.turn("first");
    assert_eq!(first["is_error"], true, "{first}");
    wait_for("the hook to mark the primary", || {
        !s.events("mark").is_empty()
    });
    let mark = &s.events("mark")[0];
    assert_eq!(mark["key"], "primary");
    assert_eq!(mark["reason"], "hook:rate_limit");
    assert!(mark["session_id"].is_string());
    // Found through the real process tree and CLAUDE_PID, not by falling back to the active key.
    assert!(
        mark["detail"]
            .as_str()
            .unwrap()
            .contains("the key this session was handed"),
        "{mark}"
    );
    assert_eq!(s.settings()["env"]["ANTHROPIC_BASE_URL"], own.url());

    // Turn 2, same process: the fallback, on the user's own endpoint. Claude Code notices the
    // settings change within about 3 s (docs/facts/claude-code-facts.md) and re-runs the helper
    // before its next request.
    std::thread::sleep(Duration::from_millis(5_000));
    let second = session.turn("second");
    assert_eq!(second["is_error"], false, "{second}");
    assert_eq!(second["result"], "hello from own-endpoint");

    // A short helper TTL from here on, so the return to the primary fits in a test.
    let mut settings = s.settings();
    settings["env"]["CLAUDE_CODE_API_KEY_HELPER_TTL_MS"] = json!("2000");
    std::fs::write(
        s.settings_file(),
        serde_json::to_string_pretty(&settings).unwrap(),
    )
    .unwrap();

    // The primary's budget is back and its cooldown ends: the same process returns to it.
    proxy.out_of_budget.store(false, Ordering::SeqCst);
    let cooling_until: jiff::Timestamp = s.list_json()[0]["exhausted_until"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let wait = cooling_until
        .duration_since(jiff::Timestamp::now())
        .as_millis()
        .max(0) as u64;
    std::thread::sleep(Duration::from_millis(wait + 2_500));
    let mut answers = Vec::new();
    for turn in 0..8 {
        let result = session.turn(&format!("later {turn}"));
        assert_eq!(result["is_error"], false, "{result}");
        let text = result["result"].as_str().unwrap_or("").to_string();
        answers.push(text.clone());
        if text == "hello from proxy" {
            break;
        }
        std::thread::sleep(Duration::from_millis(3_000));
    }
    assert_eq!(
        answers.last().map(String::as_str),
        Some("hello from proxy"),
        "{answers:?}"
    );
    assert!(
        s.events("switch")
            .iter()
            .any(|e| e["key"] == "primary" && e["reason"] == "cooldown-ended"),
        "{:?}",
        s.log_json()
    );

    // The invariant: no key ever reached an endpoint it does not belong to.
    let at_proxy = proxy.keys_seen();
    let at_own = own.keys_seen();
    assert!(
        at_proxy.iter().all(|k| *k == primary),
        "the proxy saw {at_proxy:?}"
    );
    assert!(
        at_own.iter().all(|k| *k == fallback),
        "the user's endpoint saw {at_own:?}"
    );
    assert!(at_proxy.len() >= 2 && !at_own.is_empty());
    let paths: Vec<String> = proxy
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert!(
        paths.iter().any(|p| p.starts_with("/v1/messages")),
        "{paths:?}"
    );
}

/// Proxy mode with the real Claude Code: the primary runs out mid-session and no turn fails —
/// the stand-in sees the primary's 429 and the fallback answering the same request, the
/// StopFailure hook never fires, and after the cooldown the very next request is on the primary.
#[test]
fn in_proxy_mode_a_spent_primary_never_fails_a_turn() {
    let s = Sandbox::new();
    let api = StandIn::start("api");
    let (primary, fallback) = (fake_key("primary"), fake_key("fallback"));
    std::fs::create_dir_all(s.claude_dir()).unwrap();
    std::fs::write(
        s.settings_file(),
        serde_json::to_string_pretty(&json!({"env": {"ANTHROPIC_BASE_URL": api.url()}})).unwrap(),
    )
    .unwrap();
    s.add("primary", &primary, &["--cooldown", "12s"]);
    s.add("fallback", &fallback, &[]);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    s.cmd()
        .args([
            "install",
            "--proxy",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .assert()
        .success();
    let _stop = StopProxy(&s);
    assert_eq!(
        s.settings()["env"]["ANTHROPIC_BASE_URL"],
        format!("http://127.0.0.1:{port}")
    );

    let mut session = Session::start(&s, &[], &[]);
    let first = session.turn("first");
    assert_eq!(first["is_error"], false, "{first}");
    assert_eq!(first["result"], "hello from api");
    assert!(api.keys_seen().iter().all(|k| *k == primary));

    // The budget runs out mid-session: the very next turn is still answered.
    api.spent.lock().unwrap().push(primary.clone());
    let before = api.seen.lock().unwrap().len();
    let second = session.turn("second");
    assert_eq!(second["is_error"], false, "{second}");
    assert_eq!(second["result"], "hello from api");
    let during: Vec<String> = api.keys_seen()[before..].to_vec();
    assert_eq!(during.first(), Some(&primary), "{during:?}");
    assert!(
        during[1..].iter().all(|k| *k == fallback) && during.len() >= 2,
        "{during:?}"
    );
    wait_for("the proxy's mark", || !s.events("mark").is_empty());
    assert_eq!(s.events("mark")[0]["reason"], "proxy:rate_limit");

    let third = session.turn("third");
    assert_eq!(third["is_error"], false, "{third}");
    assert_eq!(api.keys_seen().last(), Some(&fallback));
    // No turn failed, so the StopFailure hook never ran (it would log in proxy mode).
    assert!(s.events("hook-ignored").is_empty(), "{:?}", s.log_json());

    // The budget is back and the cooldown ends: the very next request is on the primary.
    api.spent.lock().unwrap().clear();
    let until: jiff::Timestamp = s.list_json()[0]["exhausted_until"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let wait = until
        .duration_since(jiff::Timestamp::now())
        .as_millis()
        .max(0) as u64;
    std::thread::sleep(Duration::from_millis(wait + 1_000));
    let before = api.seen.lock().unwrap().len();
    let fourth = session.turn("fourth");
    assert_eq!(fourth["is_error"], false, "{fourth}");
    assert_eq!(api.keys_seen().get(before), Some(&primary));

    // The stand-in never saw the local token, only the keys.
    assert!(
        api.keys_seen()
            .iter()
            .all(|k| *k == primary || *k == fallback),
        "{:?}",
        api.keys_seen()
    );
}

/// Stops the sandbox's proxy when the test ends, however it ends.
struct StopProxy<'a>(&'a Sandbox);

impl Drop for StopProxy<'_> {
    fn drop(&mut self) {
        let _ = self.0.cmd().args(["proxy", "stop"]).output();
    }
}
