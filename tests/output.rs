//! Time as users type it, and output that says what is true: the log, status, doctor and the
//! wording of refusals, against the real (private) Secret Service.

mod common;

use std::time::{Duration, Instant};

use common::{Sandbox, fake_key};
use jiff::{SignedDuration, Timestamp};
use predicates::prelude::*;
use serde_json::{Value, json};

fn stderr_of(s: &Sandbox, args: &[&str]) -> String {
    let out = s.cmd().args(args).output().unwrap();
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn log_escapes_control_characters_from_hook_input() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    let input = json!({
        "hook_event_name": "StopFailure",
        "session_id": "s1\r\n2026-01-01 00:00:00  mark  primary  forged",
        "error": "x\u{1b}]0;owned\u{7}",
    });
    s.cmd()
        .args(["hook", "stop-failure"])
        .write_stdin(input.to_string())
        .assert()
        .success();
    let out = s.cmd().arg("log").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // One line an event: nothing in the hook input started a line of its own.
    assert_eq!(text.lines().count(), s.log_json().len(), "{text:?}");
    assert!(
        text.lines().all(|l| !l.chars().any(|c| c.is_control())),
        "{text:?}"
    );
    assert!(text.contains(r"\u{1b}]0;owned\u{7}"), "{text}");
    assert!(text.contains(r"s1\r\n2026"), "{text}");
}

#[test]
fn until_with_a_date_means_that_date_and_a_past_one_is_refused() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    // A local date-time (the sandbox runs in UTC) a few days ahead, at 09:00.
    let day = Timestamp::now()
        .checked_add(SignedDuration::from_hours(24 * 5))
        .unwrap()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    let until = format!("{day}T09:00:00");
    s.cmd()
        .args(["mark-exhausted", "primary", "--until", &until])
        .assert()
        .success();
    assert_eq!(
        s.list_json()[0]["exhausted_until"],
        format!("{day}T09:00:00Z")
    );

    let before = s.files();
    let past = Timestamp::now()
        .checked_sub(SignedDuration::from_hours(24 * 3))
        .unwrap()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .strftime("%Y-%m-%dT%H:%M:%S")
        .to_string();
    for args in [
        &["--until", past.as_str()][..],
        &["--for", "0.4s"],
        &["--for", "1ns"],
    ] {
        s.cmd()
            .args(["mark-exhausted", "fallback"])
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("\n").count(1));
    }
    assert_eq!(s.files(), before);
}

#[test]
fn until_honours_a_named_zone() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    let day = Timestamp::now()
        .checked_add(SignedDuration::from_hours(24 * 3))
        .unwrap()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    // Tokyo has no daylight saving time: 23:00 there is 14:00 UTC, all year.
    let until = format!("{day}T23:00:00[Asia/Tokyo]");
    s.cmd()
        .args(["mark-exhausted", "primary", "--until", &until])
        .assert()
        .success();
    assert_eq!(
        s.list_json()[0]["exhausted_until"],
        format!("{day}T14:00:00Z")
    );
}

#[test]
fn a_cooldown_set_while_the_clock_ran_a_year_ahead_ends_within_its_length() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    let since = Timestamp::now()
        .checked_add(SignedDuration::from_hours(24 * 365))
        .unwrap();
    let until = since.checked_add(SignedDuration::from_hours(1)).unwrap();
    std::fs::create_dir_all(s.state_dir()).unwrap();
    std::fs::write(
        s.state_file(),
        json!({"cooldowns": {"primary": {
            "until": until.to_string(), "since": since.to_string(), "reason": "manual"}}})
        .to_string(),
    )
    .unwrap();
    assert_eq!(s.get(), format!("{}\n", fake_key("two")));
    let left = s.seconds_left(0);
    assert!((3_000..=3_600).contains(&left), "{left} s left");
    // Written back as the clock now has it, so it does not slide along with the clock.
    let state: Value = serde_json::from_slice(&std::fs::read(s.state_file()).unwrap()).unwrap();
    let stored: Timestamp = state["cooldowns"]["primary"]["until"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // (Commands count whole seconds, rounded: allow one.)
    let ahead = stored.duration_since(Timestamp::now());
    assert!(ahead <= SignedDuration::from_secs(3_601), "{ahead:?}");
    assert_eq!(s.events("clock-set-back").len(), 1);
}

#[test]
fn status_says_running_sessions_follow_a_returned_key_only_at_their_refresh() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    s.cmd()
        .args(["mark-exhausted", "primary", "--for", "1s"])
        .assert()
        .success();
    std::thread::sleep(Duration::from_millis(2_100));
    s.cmd()
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(
            "key: primary (running sessions move to it within ",
        ));
}

#[test]
fn a_missing_argument_is_named() {
    let s = Sandbox::new();
    s.cmd().arg("add").assert().code(2).stderr(
        predicate::str::contains("not provided: <NAME>")
            .and(predicate::str::contains("\n").count(1)),
    );
}

#[test]
fn a_position_that_is_not_a_number_is_called_that() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    let message = stderr_of(&s, &["move", "primary", "x"]);
    assert!(message.contains("not a number"), "{message}");
}

#[test]
fn a_zero_duration_is_worded_alike_for_cooldown_and_for() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    let from_for = stderr_of(&s, &["mark-exhausted", "--for", "0s"]).replace("'0s'", "'X'");
    let out = s
        .cmd()
        .args(["add", "second", "--cooldown", "0"])
        .write_stdin(format!("{}\n", fake_key("two")))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let from_cooldown = String::from_utf8_lossy(&out.stderr).replace("'0'", "'X'");
    assert_eq!(from_for, from_cooldown);
}

#[test]
fn a_mark_that_changes_nothing_is_not_logged_as_a_mark() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.cmd()
        .args(["mark-exhausted", "--for", "5h"])
        .assert()
        .success();
    s.cmd()
        .args(["mark-exhausted", "primary", "--for", "1h"])
        .assert()
        .success()
        .stderr(predicate::str::contains("left as is"));
    assert_eq!(s.events("mark").len(), 1);
    assert_eq!(s.events("already-cooling").len(), 1);
}

#[test]
fn unknown_reasons_in_the_config_are_refused_and_doctor_says_so() {
    let s = Sandbox::new();
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(s.config_file()).unwrap()).unwrap();
    config["reason_cooldowns"] = json!({"ratelimit": "2h"});
    std::fs::write(s.config_file(), config.to_string()).unwrap();
    let out = s.cmd().arg("doctor").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ratelimit") && text.contains("rate_limit"),
        "{text}"
    );
    assert!(!text.contains("keyswitch is ready"), "{text}");
}

#[test]
fn doctor_reports_a_missing_secret_service_even_with_no_keys() {
    let s = Sandbox::new();
    let out = s
        .cmd()
        .arg("doctor")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FIX   the keychain"), "{text}");
    assert!(text.contains("Secret Service"), "{text}");
}

#[test]
fn doctor_flags_a_documentation_endpoint_and_reports_the_retry_setting() {
    let s = Sandbox::new();
    s.add(
        "primary",
        &fake_key("one"),
        &["--endpoint", "https://your-proxy.example.com"],
    );
    s.cmd()
        .args(["install", "--helper", "--max-retries", "2"])
        .assert()
        .success();
    let out = s.cmd().arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FIX   primary's endpoint https://your-proxy.example.com"),
        "{text}"
    );
    assert!(text.contains("CLAUDE_CODE_MAX_RETRIES=2"), "{text}");
}

#[test]
fn doctor_keeps_its_deadline_when_claude_leaves_a_child_holding_the_pipe() {
    let s = Sandbox::new();
    let bin = s.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let claude = bin.join("claude");
    // A wrapper that prints the version and exits, leaving a child with its stdout open.
    std::fs::write(
        &claude,
        "#!/bin/sh\necho '2.1.328 (Claude Code)'\nsleep 30 &\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = Instant::now();
    let out = s.cmd().arg("doctor").env("PATH", path).output().unwrap();
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(took < Duration::from_secs(12), "took {took:?}");
    assert!(text.contains("Claude Code 2.1.328"), "{text}");
}

#[test]
fn install_confirms_the_retry_setting() {
    let s = Sandbox::new();
    s.cmd()
        .args(["install", "--helper", "--max-retries", "2"])
        .assert()
        .success()
        .stderr(predicate::str::contains("CLAUDE_CODE_MAX_RETRIES=2"));
}
