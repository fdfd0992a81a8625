//! Subscription-first mode through the command line, with a fake login (a test
//! `.credentials.json`): what install wires over a login, the hook's hold at the usage limit
//! (from the transcript and from the message), `get` ending it after the reset,
//! `mark-exhausted subscription`, `reset subscription`, and uninstall during a hold.
//! tests/e2e_subscription.rs drives the same with the real Claude Code.

mod common;

use common::{Sandbox, fake_key};
use predicates::prelude::*;
use serde_json::{Value, json};

fn log_in(s: &Sandbox) {
    std::fs::create_dir_all(s.claude_dir()).unwrap();
    std::fs::write(
        s.claude_dir().join(".credentials.json"),
        r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-test-x","scopes":["user:inference"],"subscriptionType":"max"}}"#,
    )
    .unwrap();
}

fn hold_file(s: &Sandbox) -> std::path::PathBuf {
    s.state_dir().join("subscription-hold.json")
}

fn hold(s: &Sandbox) -> Value {
    serde_json::from_slice(&std::fs::read(hold_file(s)).unwrap()).unwrap()
}

fn has_helper(s: &Sandbox) -> bool {
    s.settings().get("apiKeyHelper").is_some()
}

/// Installed subscription first over a login, with one key.
fn installed(s: &Sandbox, key: &str) {
    log_in(s);
    s.add("primary", key, &[]);
    s.cmd()
        .args(["install", "--subscription-first"])
        .assert()
        .success();
}

fn hook(s: &Sandbox, input: &Value) {
    s.cmd()
        .args(["hook", "stop-failure"])
        .write_stdin(input.to_string())
        .assert()
        .success();
}

#[test]
fn install_over_a_login_is_subscription_first_and_key_modes_need_a_choice() {
    let s = Sandbox::new();
    log_in(&s);
    s.add("primary", &fake_key("one"), &[]);
    for mode in ["--helper", "--proxy"] {
        s.cmd()
            .args(["install", mode])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("--subscription-first"))
            .stderr(predicate::str::contains("--keys-only"));
        assert!(!s.settings_file().exists(), "{mode}");
    }
    s.cmd()
        .arg("install")
        .assert()
        .success()
        .stderr(predicate::str::contains("subscription first"));
    assert!(!has_helper(&s), "{}", s.settings());
    assert!(s.settings()["hooks"]["StopFailure"].is_array());
    assert_eq!(
        s.settings()["env"]["CLAUDE_CODE_API_KEY_HELPER_TTL_MS"],
        "60000"
    );
    assert!(s.config_dir().join("subscription.json").exists());
    // A re-install keeps the mode; leaving it for a key mode needs --keys-only too.
    s.cmd().arg("install").assert().success();
    assert!(!has_helper(&s));
    // doctor's way to proxy mode is a command that works here (plain --proxy is refused).
    let out = s.cmd().arg("doctor").output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("subscription-first mode"), "{said}");
    assert!(said.contains("install --proxy --keys-only"), "{said}");
    let before = std::fs::read(s.settings_file()).unwrap();
    s.cmd()
        .args(["install", "--helper"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--keys-only"));
    assert_eq!(std::fs::read(s.settings_file()).unwrap(), before);
    s.cmd()
        .args(["install", "--helper", "--keys-only"])
        .assert()
        .success()
        .stderr(predicate::str::contains("billed to them"));
    assert!(has_helper(&s));
    assert!(!s.config_dir().join("subscription.json").exists());
    // Helper mode chosen: a re-install keeps it, saying what it costs.
    s.cmd()
        .arg("install")
        .assert()
        .success()
        .stderr(predicate::str::contains("--subscription-first"));
    assert!(has_helper(&s));
    s.cmd()
        .args(["install", "--subscription-first", "--keys-only"])
        .assert()
        .code(2);
}

#[test]
fn the_usage_limit_in_the_transcript_holds_the_subscription_until_get_sees_the_reset() {
    let s = Sandbox::new();
    let key = fake_key("primary");
    installed(&s, &key);
    let reset = jiff::Timestamp::now().as_second() + 3;
    let transcript = s.dir.path().join("session.jsonl");
    let entries = [
        json!({"type": "user", "message": {"role": "user", "content": "hi"}}),
        json!({"type": "assistant", "isApiErrorMessage": true, "apiError": "usage_limit_reached",
            "quotaLimits": {"status": "rejected", "resetsAt": reset, "rateLimitType": "five_hour"}}),
    ];
    let text: Vec<String> = entries.iter().map(Value::to_string).collect();
    std::fs::write(&transcript, text.join("\n") + "\n").unwrap();
    hook(
        &s,
        &json!({"hook_event_name": "StopFailure", "session_id": "s1", "error": "rate_limit",
            "last_assistant_message": "You've hit your 5-hour limit · resets 8:25pm (UTC)",
            "transcript_path": transcript}),
    );
    assert_eq!(hold(&s)["claim"], "five_hour");
    assert_eq!(
        hold(&s)["until"],
        jiff::Timestamp::from_second(reset).unwrap().to_string()
    );
    assert!(has_helper(&s), "{}", s.settings());
    let mark = &s.events("mark")[0];
    assert_eq!(mark["key"], "subscription");
    assert_eq!(mark["reason"], "hook:rate_limit");
    let status = s.cmd().arg("status").output().unwrap();
    let status = String::from_utf8(status.stdout).unwrap();
    assert!(
        status.starts_with("subscription: limited until") && status.contains("on primary"),
        "{status}"
    );
    let list = s.list_json();
    assert_eq!(list[0]["name"], "subscription");
    assert_eq!(list[0]["state"], "limited");
    assert_eq!(list[0]["claim"], "five_hour");
    assert_eq!(list[1]["active"], true);

    // Before the reset `get` keeps the hold; after it, the same run takes the helper out.
    assert_eq!(s.get().trim_end(), key);
    assert!(has_helper(&s));
    std::thread::sleep(std::time::Duration::from_millis(3_500));
    assert_eq!(s.get().trim_end(), key, "the key is printed this once");
    assert!(!has_helper(&s), "{}", s.settings());
    assert!(!hold_file(&s).exists());
    assert!(
        s.events("reset")
            .iter()
            .any(|e| e["key"] == "subscription" && e["reason"] == "cooldown-ended")
    );
    let list = s.list_json();
    assert_eq!(
        (&list[0]["state"], &list[1]["active"]),
        (&json!("ready"), &json!(false))
    );
}

#[test]
fn the_message_alone_holds_the_subscription_and_other_errors_mark_nothing() {
    let s = Sandbox::new();
    installed(&s, &fake_key("primary"));
    // An ordinary error of a session on the subscription: no key is marked, nothing wired.
    hook(
        &s,
        &json!({"error": "rate_limit", "last_assistant_message": "API Error: Request rejected (429) · rate limited"}),
    );
    assert!(s.events("mark").is_empty());
    assert!(
        s.events("hook-ignored")[0]["detail"]
            .as_str()
            .unwrap()
            .contains("on the subscription")
    );
    assert!(!has_helper(&s) && !hold_file(&s).exists());
    // No transcript: the message says which limit and when it resets.
    hook(
        &s,
        &json!({"error": "rate_limit", "last_assistant_message": "You've hit your weekly Opus limit · resets Dec 8, 8pm (UTC)",
            "transcript_path": s.dir.path().join("missing.jsonl")}),
    );
    assert_eq!(hold(&s)["claim"], "seven_day_opus");
    let until: jiff::Timestamp = hold(&s)["until"].as_str().unwrap().parse().unwrap();
    assert!(until > jiff::Timestamp::now());
    assert!(has_helper(&s));
    // During the hold, a session the hook has no record of handing a key is still on the
    // subscription: nothing is marked for it.
    hook(
        &s,
        &json!({"error": "billing_error", "last_assistant_message": "API Error: 400 credit balance is too low"}),
    );
    assert!(s.events("mark").iter().all(|e| e["key"] == "subscription"));
}

#[test]
fn mark_exhausted_and_reset_work_on_the_subscription() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("primary"), &[]);
    s.cmd()
        .args(["mark-exhausted", "subscription", "--for", "1h"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--subscription-first"));
    s.cmd()
        .args(["add", "Subscription"])
        .write_stdin(format!("{}\n", fake_key("x")))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("another name"));
    let s = Sandbox::new();
    installed(&s, &fake_key("primary"));
    s.cmd()
        .args(["mark-exhausted", "subscription"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--for"));
    assert!(!hold_file(&s).exists());
    s.cmd()
        .args(["mark-exhausted", "subscription", "--for", "1h"])
        .assert()
        .success()
        .stderr(predicate::str::contains("sessions use primary"));
    assert!(has_helper(&s));
    assert_eq!(hold(&s)["cause"], "manual");
    s.cmd()
        .args(["reset", "subscription"])
        .assert()
        .success()
        .stderr(predicate::str::contains("back to the subscription"));
    assert!(!has_helper(&s) && !hold_file(&s).exists());
    s.cmd()
        .args(["reset", "subscription"])
        .assert()
        .success()
        .stderr(predicate::str::contains("not held"));
    // `reset` of everything ends the hold as well.
    s.cmd()
        .args(["mark-exhausted", "subscription", "--for", "1h"])
        .assert()
        .success();
    s.cmd().arg("reset").assert().success();
    assert!(!has_helper(&s));
}

#[test]
fn uninstall_during_a_hold_restores_the_settings_exactly() {
    let s = Sandbox::new();
    std::fs::create_dir_all(s.claude_dir()).unwrap();
    let own = "{\n  \"model\": \"opus\",\n  \"env\": {\"ANTHROPIC_BASE_URL\": \"https://gw.example\"}\n}\n";
    std::fs::write(s.settings_file(), own).unwrap();
    installed(&s, &fake_key("primary"));
    s.cmd()
        .args(["mark-exhausted", "subscription", "--until", "23:59"])
        .assert()
        .success();
    assert!(has_helper(&s));
    s.cmd().arg("uninstall").assert().success();
    assert_eq!(std::fs::read_to_string(s.settings_file()).unwrap(), own);
    assert!(!hold_file(&s).exists());
    assert!(!s.config_dir().join("subscription.json").exists());
}

/// During a hold, a session that was handed a key is on that key: its key's failure marks the
/// key as in helper mode, while a session still on the subscription marks nothing.
#[test]
fn during_a_hold_a_key_failure_of_a_session_on_the_key_marks_the_key() {
    let s = Sandbox::new();
    let key = fake_key("primary");
    installed(&s, &key);
    s.add("fallback", &fake_key("fallback"), &[]);
    let mut on_subscription = common::FakeClaude::start(&s, &[]);
    let mut on_key = common::FakeClaude::start(&s, &[]);
    s.cmd()
        .args(["mark-exhausted", "subscription", "--for", "1h"])
        .assert()
        .success();
    on_key.helper(&[]).assert_printed(&key);
    let failed = on_subscription.stop_failure("rate_limit", "s-sub");
    assert_eq!(failed.code, 0, "{}", failed.stderr);
    assert!(s.events("mark").iter().all(|e| e["key"] == "subscription"));
    on_key.stop_failure("rate_limit", "s-key");
    let marks: Vec<Value> = s
        .events("mark")
        .into_iter()
        .filter(|e| e["key"] == "primary")
        .collect();
    assert_eq!(marks.len(), 1, "{:?}", s.log_json());
    assert_eq!(marks[0]["session_id"], "s-key");
    assert!(has_helper(&s), "the hold goes on, on the fallback");
}

/// Only a rate limit is the usage limit; a reset past the longest limit there is (a week) is
/// cut to it; and the limit's name, from the upstream's header, never brings control characters
/// to the status line.
#[test]
fn only_a_rate_limit_starts_a_hold_cut_to_a_week_and_named_in_plain_words() {
    let s = Sandbox::new();
    installed(&s, &fake_key("primary"));
    hook(
        &s,
        &json!({"error": "invalid_request", "last_assistant_message": "API Error: 400 prompt says: You've hit your limit · resets 9pm (UTC)"}),
    );
    assert!(!has_helper(&s) && !hold_file(&s).exists());
    let transcript = s.dir.path().join("far.jsonl");
    std::fs::write(
        &transcript,
        json!({"type": "assistant", "apiError": "usage_limit_reached",
            "quotaLimits": {"resetsAt": 99_999_999_999_i64, "rateLimitType": "\u{1b}]0;pwned\u{7}five_hour"}})
        .to_string()
            + "\n",
    )
    .unwrap();
    hook(
        &s,
        &json!({"error": "rate_limit", "last_assistant_message": "You've hit your limit", "transcript_path": transcript}),
    );
    let until: jiff::Timestamp = hold(&s)["until"].as_str().unwrap().parse().unwrap();
    let week_and_a_day = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(8 * 24 + 1);
    assert!(until < week_and_a_day, "{until}");
    assert_eq!(hold(&s)["claim"], "unknown");
    let status = s.cmd().arg("status").output().unwrap();
    let status = String::from_utf8(status.stdout).unwrap();
    assert!(
        !status.contains('\u{1b}') && !status.contains('\u{7}'),
        "{status:?}"
    );
}
