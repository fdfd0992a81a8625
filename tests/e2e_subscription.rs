//! Subscription-first mode end to end with the real Claude Code CLI (pinned, see
//! tests/e2e_claude_code.rs) and a fake Max login (a test `.credentials.json`): a loopback
//! stand-in answers the subscription's requests (an OAuth bearer) until its 5-hour limit is
//! reached — a 429 with Anthropic's `anthropic-ratelimit-unified-*` headers — and answers keys
//! always. One Claude Code process: the limit fails one turn, the next goes out on the key, and
//! after the reset the same process is back on the subscription.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::claude_code::Session;
use common::upstream::{Reply, Request, Upstream, message_events};
use common::{Sandbox, fake_key};
use serde_json::{Value, json};

const TOKEN: &str = "sk-ant-oat01-test-subscriber";

/// A fake Max login in the sandbox's Claude config folder, as Claude Code keeps one.
pub fn log_in(s: &Sandbox) {
    std::fs::create_dir_all(s.claude_dir()).unwrap();
    let expires = (jiff::Timestamp::now().as_second() + 8 * 3600) * 1000;
    let login = json!({"claudeAiOauth": {"accessToken": TOKEN, "refreshToken": "sk-ant-ort01-test-r",
        "expiresAt": expires, "scopes": ["user:inference", "user:profile", "user:sessions:claude_code"],
        "subscriptionType": "max", "rateLimitTier": "default_claude_max_20x"}});
    let path = s.claude_dir().join(".credentials.json");
    std::fs::write(&path, login.to_string()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// What the stand-in answers the subscription: its limit reached until `reset` (epoch s).
struct Subscription {
    limited: Arc<AtomicBool>,
    reset: Arc<AtomicI64>,
    /// Each /v1/messages request: whether it carried the OAuth bearer, and the key if any.
    seen: Arc<Mutex<Vec<(bool, String)>>>,
}

fn stand_in() -> (Upstream, Subscription) {
    let sub = Subscription {
        limited: Arc::new(AtomicBool::new(false)),
        reset: Arc::new(AtomicI64::new(0)),
        seen: Arc::new(Mutex::new(Vec::new())),
    };
    let (limited, reset, seen) = (sub.limited.clone(), sub.reset.clone(), sub.seen.clone());
    let upstream = Upstream::start(move |r: &Request| {
        if !r.path.starts_with("/v1/messages") || r.path.starts_with("/v1/messages/count_tokens") {
            return Reply::json(
                404,
                r#"{"type":"error","error":{"type":"not_found_error","message":"stand-in"}}"#,
            );
        }
        let bearer = r.header("authorization") == Some(&format!("Bearer {TOKEN}"));
        let key = r.header("x-api-key").unwrap_or_default().to_string();
        seen.lock().unwrap().push((bearer, key.clone()));
        if bearer && limited.load(Ordering::SeqCst) {
            return limit_reached(reset.load(Ordering::SeqCst));
        }
        let from = if bearer { "subscription" } else { "key" };
        let stream = serde_json::from_slice::<Value>(&r.body).is_ok_and(|b| b["stream"] == true);
        if stream {
            Reply::Sse {
                events: message_events("claude-standin", &format!("hello from {from}"), 1, 3),
                gap: Duration::ZERO,
            }
        } else {
            Reply::ok(from)
        }
    });
    (upstream, sub)
}

/// Anthropic's answer to a subscriber whose 5-hour limit is reached.
fn limit_reached(reset: i64) -> Reply {
    let reset = reset.to_string();
    Reply::json(
        429,
        r#"{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed your account's rate limit. Please try again later."}}"#,
    )
    .with_header("anthropic-ratelimit-unified-status", "rejected")
    .with_header("anthropic-ratelimit-unified-reset", &reset)
    .with_header("anthropic-ratelimit-unified-representative-claim", "five_hour")
    .with_header("anthropic-ratelimit-unified-5h-status", "rejected")
    .with_header("anthropic-ratelimit-unified-5h-utilization", "1.0")
    .with_header("anthropic-ratelimit-unified-5h-reset", &reset)
    .with_header("anthropic-ratelimit-unified-overage-status", "rejected")
    .with_header("retry-after", "30")
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_subscriber_goes_on_the_key_at_the_limit_and_back_after_the_reset() {
    let s = Sandbox::new();
    let (api, sub) = stand_in();
    let primary = fake_key("primary");
    std::fs::create_dir_all(s.claude_dir()).unwrap();
    std::fs::write(
        s.settings_file(),
        serde_json::to_string_pretty(&json!({"env": {"ANTHROPIC_BASE_URL": api.url()}})).unwrap(),
    )
    .unwrap();
    log_in(&s);
    s.add("primary", &primary, &[]);
    // No mode flag over a login: subscription first, and no helper wired.
    s.cmd().arg("install").assert().success();
    assert!(
        s.settings().get("apiKeyHelper").is_none(),
        "{}",
        s.settings()
    );
    assert!(s.settings()["hooks"]["StopFailure"].is_array());
    // A short helper TTL from here on, so the return after the reset fits in a test.
    let mut settings = s.settings();
    settings["env"]["CLAUDE_CODE_API_KEY_HELPER_TTL_MS"] = json!("2000");
    std::fs::write(
        s.settings_file(),
        serde_json::to_string_pretty(&settings).unwrap(),
    )
    .unwrap();

    let mut session = Session::start(&s, &[], &[]);
    let first = session.turn("first");
    assert_eq!(first["result"], "hello from subscription", "{first}");

    // The 5-hour limit, resetting in a few seconds: one turn fails, at once.
    let reset = jiff::Timestamp::now().as_second() + 12;
    sub.reset.store(reset, Ordering::SeqCst);
    sub.limited.store(true, Ordering::SeqCst);
    let before = sub.seen.lock().unwrap().len();
    let limited = session.turn("second");
    assert_eq!(limited["is_error"], true, "{limited}");
    assert_eq!(
        sub.seen.lock().unwrap().len(),
        before + 1,
        "Claude Code does not retry the limit"
    );
    wait_for("the hook to hold the subscription", || {
        s.events("mark").iter().any(|e| e["key"] == "subscription")
    });
    let mark = s
        .events("mark")
        .into_iter()
        .find(|e| e["key"] == "subscription")
        .unwrap();
    assert!(
        mark["detail"].as_str().unwrap().contains("5-hour limit"),
        "{mark}"
    );
    let hold: Value = serde_json::from_slice(
        &std::fs::read(s.state_dir().join("subscription-hold.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(hold["claim"], "five_hour");
    assert_eq!(
        hold["until"],
        jiff::Timestamp::from_second(reset).unwrap().to_string()
    );
    assert!(s.settings()["apiKeyHelper"].is_string(), "{}", s.settings());
    assert!(s.events("mark").iter().all(|e| e["key"] != "primary"));

    // The next turn, same process, goes out on the key: no bearer of the login.
    std::thread::sleep(Duration::from_millis(5_000));
    let before = sub.seen.lock().unwrap().len();
    let on_key = session.turn("third");
    assert_eq!(on_key["result"], "hello from key", "{on_key}");
    let during: Vec<(bool, String)> = sub.seen.lock().unwrap()[before..].to_vec();
    assert!(
        !during.is_empty()
            && during
                .iter()
                .all(|(bearer, key)| !bearer && *key == primary),
        "{during:?}"
    );
    let on_key_request = api
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path.starts_with("/v1/messages"))
        .unwrap();
    assert_eq!(
        on_key_request.header("authorization"),
        Some(format!("Bearer {primary}").as_str())
    );
    assert!(
        s.cmd()
            .arg("status")
            .output()
            .unwrap()
            .stdout
            .starts_with(b"subscription: limited until")
    );

    // After the reset, within the helper refresh time, a turn carries the bearer again.
    let wait = (reset - jiff::Timestamp::now().as_second()).max(0) as u64;
    std::thread::sleep(Duration::from_secs(wait + 1));
    sub.limited.store(false, Ordering::SeqCst);
    let mut answers = Vec::new();
    for turn in 0..6 {
        let result = session.turn(&format!("later {turn}"));
        assert_eq!(result["is_error"], false, "{result}");
        answers.push(result["result"].as_str().unwrap_or("").to_string());
        if answers.last().unwrap() == "hello from subscription" {
            break;
        }
        std::thread::sleep(Duration::from_millis(3_000));
    }
    assert_eq!(
        answers.last().map(String::as_str),
        Some("hello from subscription"),
        "{answers:?}"
    );
    assert!(
        s.settings().get("apiKeyHelper").is_none(),
        "{}",
        s.settings()
    );
    assert!(
        s.events("reset")
            .iter()
            .any(|e| e["key"] == "subscription" && e["reason"] == "cooldown-ended"),
        "{:?}",
        s.log_json()
    );
    // The login's token never went anywhere with a key, nor a key with the bearer.
    assert!(api.requests().iter().all(|r| {
        !(r.header("x-api-key").is_some()
            && r.header("authorization") == Some(&format!("Bearer {TOKEN}")))
    }));
}

/// An ordinary 429 on the subscription (no unified headers: not the usage limit) fails the turn
/// and marks nothing: the key stays ready and no helper is wired.
#[test]
fn an_ordinary_429_on_the_subscription_marks_no_key() {
    let s = Sandbox::new();
    let api = Upstream::start(|r: &Request| {
        if r.path.starts_with("/v1/messages") && !r.path.starts_with("/v1/messages/count_tokens") {
            Reply::rate_limited(None).with_header("x-should-retry", "false")
        } else {
            Reply::json(404, "{}")
        }
    });
    std::fs::create_dir_all(s.claude_dir()).unwrap();
    std::fs::write(
        s.settings_file(),
        json!({"env": {"ANTHROPIC_BASE_URL": api.url()}}).to_string(),
    )
    .unwrap();
    log_in(&s);
    s.add("primary", &fake_key("primary"), &[]);
    s.cmd()
        .args(["install", "--subscription-first"])
        .assert()
        .success();
    let mut session = Session::start(&s, &[], &[]);
    let failed = session.turn("first");
    assert_eq!(failed["is_error"], true, "{failed}");
    wait_for("the hook", || !s.events("hook-ignored").is_empty());
    let ignored = &s.events("hook-ignored")[0];
    assert!(
        ignored["detail"]
            .as_str()
            .unwrap()
            .contains("on the subscription"),
        "{ignored}"
    );
    assert!(s.events("mark").is_empty(), "{:?}", s.log_json());
    assert!(s.settings().get("apiKeyHelper").is_none());
    assert!(!s.state_dir().join("subscription-hold.json").exists());
    assert!(
        api.requests()
            .iter()
            .all(|r| r.header("x-api-key").is_none())
    );
}
