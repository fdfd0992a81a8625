//! keyswitch as Claude Code meets it: the settings it writes, the hook it answers, the sessions
//! it tells apart. Claude Code's part is played faithfully by tests/fake_claude.py; the real
//! Claude Code CLI runs in tests/e2e_claude_code.rs.

mod common;

use std::time::Duration;

use common::{FakeClaude, Sandbox, fake_key};
use predicates::prelude::*;
use serde_json::{Value, json};

/// A settings file like a real user's, written as Claude Code writes it (two-space JSON).
fn realistic_settings(base_url: Option<&str>) -> String {
    let mut settings = json!({
        "permissions": {"allow": ["Bash(npm run test:*)", "Read(~/notes/**)"], "deny": ["Bash(rm -rf:*)"]},
        "env": {"DISABLE_TELEMETRY": "1"},
        "statusLine": {"type": "command", "command": "~/.claude/statusline.sh", "padding": 0},
        "hooks": {
            "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "audit-log --json"}]}],
            "StopFailure": [{"matcher": "overloaded", "hooks": [{"type": "command", "command": "say overloaded"}]}]
        },
        "model": "opus",
        "includeCoAuthoredBy": false
    });
    if let Some(url) = base_url {
        settings["env"]["ANTHROPIC_BASE_URL"] = json!(url);
    }
    format!("{}\n", serde_json::to_string_pretty(&settings).unwrap())
}

fn write_settings(s: &Sandbox, text: &str) {
    std::fs::create_dir_all(s.claude_dir()).unwrap();
    std::fs::write(s.settings_file(), text).unwrap();
}

fn our_hooks(settings: &Value) -> Vec<Value> {
    settings["hooks"]["StopFailure"]
        .as_array()
        .map(|groups| {
            groups
                .iter()
                .filter(|g| {
                    g["hooks"][0]["command"]
                        .as_str()
                        .unwrap_or("")
                        .ends_with("hook stop-failure")
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn install_wires_helper_hook_and_ttl_and_keeps_everything_else() {
    let s = Sandbox::new();
    let original = realistic_settings(None);
    write_settings(&s, &original);
    s.cmd().args(["install", "--helper"]).assert().success();
    let after = s.settings();
    let helper = after["apiKeyHelper"].as_str().unwrap();
    assert!(
        helper.starts_with('/') && helper.ends_with("keyswitch get"),
        "{helper}"
    );
    let ours = our_hooks(&after);
    assert_eq!(ours.len(), 1);
    assert_eq!(
        ours[0]["matcher"],
        "rate_limit|billing_error|authentication_failed|invalid_request|unknown"
    );
    assert_eq!(after["env"]["CLAUDE_CODE_API_KEY_HELPER_TTL_MS"], "60000");
    // Everything else, in meaning and in key order.
    let before: Value = serde_json::from_str(&original).unwrap();
    for key in ["permissions", "statusLine", "model", "includeCoAuthoredBy"] {
        assert_eq!(after[key], before[key], "{key}");
    }
    assert_eq!(after["env"]["DISABLE_TELEMETRY"], "1");
    assert_eq!(after["hooks"]["PreToolUse"], before["hooks"]["PreToolUse"]);
    assert_eq!(
        after["hooks"]["StopFailure"][0],
        before["hooks"]["StopFailure"][0]
    );
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&after)[..6], keys(&before)[..]);
    // No ANTHROPIC_BASE_URL while no key has an endpoint.
    assert!(after["env"].get("ANTHROPIC_BASE_URL").is_none());
    // A one-time backup of the original.
    let backup = s.claude_dir().join("settings.json.keyswitch-backup");
    assert_eq!(std::fs::read_to_string(backup).unwrap(), original);
}

#[test]
fn installing_twice_is_byte_identical_and_uninstall_restores_the_file() {
    let s = Sandbox::new();
    let original = realistic_settings(Some("https://my-gateway.example.com"));
    write_settings(&s, &original);
    s.cmd().args(["install", "--helper"]).assert().success();
    let once = std::fs::read(s.settings_file()).unwrap();
    s.cmd().args(["install", "--helper"]).assert().success();
    assert_eq!(std::fs::read(s.settings_file()).unwrap(), once);
    let out = s.cmd().arg("uninstall").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(s.settings_file()).unwrap(),
        original
    );
    // Said as it is: the file is what it was, not "your edits since are kept".
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("byte for byte what it was"), "{said}");
    assert!(!said.contains("your edits since"), "{said}");
}

#[test]
fn install_creates_a_missing_settings_file_and_uninstall_removes_it_again() {
    let s = Sandbox::new();
    s.cmd().args(["install", "--helper"]).assert().success();
    assert!(s.settings()["apiKeyHelper"].is_string());
    s.cmd().arg("uninstall").assert().success();
    assert!(!s.settings_file().exists());
    // One the user has written to since is kept.
    s.cmd().args(["install", "--helper"]).assert().success();
    let mut edited = s.settings();
    edited["model"] = json!("opus");
    std::fs::write(
        s.settings_file(),
        serde_json::to_string_pretty(&edited).unwrap(),
    )
    .unwrap();
    s.cmd().arg("uninstall").assert().success();
    assert_eq!(s.settings(), json!({"model": "opus"}));
}

#[test]
fn a_foreign_helper_stops_install_unless_forced_and_comes_back_on_uninstall() {
    let s = Sandbox::new();
    let original = "{\n  \"apiKeyHelper\": \"~/bin/my-helper.sh\",\n  \"model\": \"opus\"\n}\n";
    write_settings(&s, original);
    s.cmd()
        .args(["install", "--helper"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("--force").and(predicate::str::contains("my-helper").not()),
        );
    assert_eq!(
        std::fs::read_to_string(s.settings_file()).unwrap(),
        original
    );
    s.cmd()
        .args(["install", "--helper", "--force"])
        .assert()
        .success();
    assert!(
        s.settings()["apiKeyHelper"]
            .as_str()
            .unwrap()
            .ends_with("keyswitch get")
    );
    s.cmd().arg("uninstall").assert().success();
    assert_eq!(
        std::fs::read_to_string(s.settings_file()).unwrap(),
        original
    );
}

#[test]
fn invalid_settings_are_named_with_the_position_and_left_untouched() {
    let s = Sandbox::new();
    let broken = "{\n  \"model\": \"opus\",\n  \"env\": {\"A\": 1,}\n}\n";
    write_settings(&s, broken);
    for cmd in ["install", "uninstall"] {
        s.cmd().arg(cmd).assert().failure().stderr(
            predicate::str::contains("settings.json").and(predicate::str::contains("line 3")),
        );
    }
    assert_eq!(std::fs::read_to_string(s.settings_file()).unwrap(), broken);
}

#[test]
fn a_symlinked_settings_file_stays_a_symlink() {
    let s = Sandbox::new();
    let dotfiles = s.dir.path().join("dotfiles");
    std::fs::create_dir_all(&dotfiles).unwrap();
    std::fs::write(
        dotfiles.join("claude-settings.json"),
        realistic_settings(None),
    )
    .unwrap();
    std::fs::create_dir_all(s.claude_dir()).unwrap();
    std::os::unix::fs::symlink("../dotfiles/claude-settings.json", s.settings_file()).unwrap();
    s.cmd().args(["install", "--helper"]).assert().success();
    assert!(
        std::fs::symlink_metadata(s.settings_file())
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let target: Value =
        serde_json::from_slice(&std::fs::read(dotfiles.join("claude-settings.json")).unwrap())
            .unwrap();
    assert!(target["apiKeyHelper"].is_string());
}

#[test]
fn uninstall_keeps_the_users_edits_since_install() {
    let s = Sandbox::new();
    write_settings(&s, &realistic_settings(None));
    s.cmd().args(["install", "--helper"]).assert().success();
    // The user (or Claude Code) edits the file afterwards.
    let mut edited = s.settings();
    edited["permissions"]["allow"]
        .as_array_mut()
        .unwrap()
        .push(json!("Bash(cargo test:*)"));
    edited["env"]["CLAUDE_CODE_API_KEY_HELPER_TTL_MS"] = json!("5000");
    std::fs::write(
        s.settings_file(),
        serde_json::to_string_pretty(&edited).unwrap(),
    )
    .unwrap();
    s.cmd()
        .arg("uninstall")
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "CLAUDE_CODE_API_KEY_HELPER_TTL_MS was changed",
        ));
    let after = s.settings();
    assert!(after.get("apiKeyHelper").is_none());
    assert!(our_hooks(&after).is_empty());
    assert_eq!(after["hooks"]["StopFailure"].as_array().unwrap().len(), 1);
    assert_eq!(after["permissions"]["allow"][2], "Bash(cargo test:*)");
    assert_eq!(after["env"]["CLAUDE_CODE_API_KEY_HELPER_TTL_MS"], "5000");
}

#[test]
fn max_retries_is_off_by_default_and_set_when_asked() {
    let s = Sandbox::new();
    s.cmd().args(["install", "--helper"]).assert().success();
    assert!(s.settings()["env"].get("CLAUDE_CODE_MAX_RETRIES").is_none());
    s.cmd()
        .args(["install", "--helper", "--max-retries", "2"])
        .assert()
        .success();
    assert_eq!(s.settings()["env"]["CLAUDE_CODE_MAX_RETRIES"], "2");
    s.cmd()
        .args(["install", "--helper", "--max-retries", "lots"])
        .assert()
        .code(2);
}

#[test]
fn install_warns_when_a_credential_would_override_the_helper() {
    let s = Sandbox::new();
    write_settings(&s, "{\"env\": {\"ANTHROPIC_AUTH_TOKEN\": \"x\"}}\n");
    s.cmd()
        .args(["install", "--helper"])
        .env("ANTHROPIC_API_KEY", "sk-ant-test-env")
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "ANTHROPIC_API_KEY is set in your environment",
        ))
        .stderr(predicate::str::contains(
            "ANTHROPIC_AUTH_TOKEN is set in the env block",
        ))
        .stderr(predicate::str::contains("sk-ant-test-env").not());
}

#[test]
fn the_hook_marks_the_key_that_session_was_handed_and_the_session_moves_on() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    s.cmd().args(["install", "--helper"]).assert().success();
    let mut claude = FakeClaude::start(&s, &[]);
    claude.helper(&[]).assert_printed(&fake_key("one"));
    let before = std::fs::metadata(s.settings_file())
        .unwrap()
        .modified()
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let hook = claude.stop_failure("rate_limit", "session-a");
    assert_eq!((hook.code, hook.stdout.as_str()), (0, ""));
    let marks = s.events("mark");
    assert_eq!(marks.len(), 1);
    assert_eq!(marks[0]["key"], "primary");
    assert_eq!(marks[0]["reason"], "hook:rate_limit");
    assert_eq!(marks[0]["session_id"], "session-a");
    // The settings file changed (here: only its mtime), so the running session asks again.
    let after = std::fs::metadata(s.settings_file())
        .unwrap()
        .modified()
        .unwrap();
    assert!(after > before);
    claude.helper(&[]).assert_printed(&fake_key("two"));
    // A per-reason default: rate_limit cools down for an hour.
    let left = s.seconds_left(0);
    assert!((3_500..=3_600).contains(&left), "{left}");
}

#[test]
fn two_sessions_failing_together_mark_the_primary_once_and_never_the_fallback() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    s.cmd().args(["install", "--helper"]).assert().success();
    let mut a = FakeClaude::start(&s, &[]);
    let mut b = FakeClaude::start(&s, &[]);
    a.helper(&[]).assert_printed(&fake_key("one"));
    b.helper(&[]).assert_printed(&fake_key("one"));
    let (ra, rb) = std::thread::scope(|scope| {
        let ta = scope.spawn(|| a.stop_failure("rate_limit", "session-a"));
        let tb = scope.spawn(|| b.stop_failure("rate_limit", "session-b"));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    assert_eq!((ra.code, rb.code), (0, 0));
    let marks = s.events("mark");
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(marks[0]["key"], "primary");
    let list = s.list_json();
    assert!(list[0]["exhausted_until"].is_string());
    assert_eq!(
        list[1]["exhausted_until"],
        Value::Null,
        "the fallback was never used, so never marked"
    );
    a.helper(&[]).assert_printed(&fake_key("two"));
    b.helper(&[]).assert_printed(&fake_key("two"));
}

#[test]
fn a_session_already_on_the_fallback_marks_the_fallback_when_it_fails() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    s.add("third", &fake_key("three"), &[]);
    let mut a = FakeClaude::start(&s, &[]);
    let mut b = FakeClaude::start(&s, &[]);
    a.helper(&[]);
    a.stop_failure("rate_limit", "a");
    b.helper(&[]).assert_printed(&fake_key("two"));
    // Session a never fetched again, so it still holds the primary: a late failure of a marks
    // nothing new; b's failure marks the fallback it was handed.
    b.stop_failure("billing_error", "b");
    let marks = s.events("mark");
    let marked: Vec<&str> = marks.iter().map(|m| m["key"].as_str().unwrap()).collect();
    assert_eq!(marked, ["primary", "fallback"]);
    let left = s.seconds_left(1);
    assert!(
        (12 * 3600 - 100..=12 * 3600).contains(&left),
        "billing_error cools 12h, got {left}s"
    );
    b.helper(&[]).assert_printed(&fake_key("three"));
}

#[test]
fn without_a_record_of_the_session_the_hook_marks_the_active_key() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    let mut claude = FakeClaude::start(&s, &[]);
    claude.stop_failure("rate_limit", "never-fetched");
    let marks = s.events("mark");
    assert_eq!(marks[0]["key"], "primary");
    assert!(marks[0]["detail"].as_str().unwrap().contains("no record"));
}

#[test]
fn a_session_whose_key_was_removed_marks_nothing() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    let mut claude = FakeClaude::start(&s, &[]);
    claude.helper(&[]);
    s.cmd().args(["remove", "primary"]).assert().success();
    let ran = claude.stop_failure("rate_limit", "s");
    assert_eq!((ran.code, ran.stdout.as_str()), (0, ""));
    assert!(
        s.events("mark").is_empty(),
        "the fallback was not what this session used"
    );
    let ignored = s.events("hook-ignored");
    assert!(
        ignored[0]["detail"]
            .as_str()
            .unwrap()
            .contains("no longer configured")
    );
}

#[test]
fn malformed_or_unrelated_hook_input_changes_nothing_and_is_logged() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    let mut claude = FakeClaude::start(&s, &[]);
    claude.helper(&[]);
    let state_before = std::fs::read(s.state_file()).unwrap();
    for input in [
        "",
        "not json",
        "{\"error\": 42}",
        "[1,2]",
        "{\"hook_event_name\": \"Stop\", \"error\": \"rate_limit\"}",
    ] {
        let ran = claude.hook_raw(input, "s");
        assert_eq!((ran.code, ran.stdout.as_str()), (0, ""), "{input}");
    }
    let ran = claude.stop_failure("overloaded", "s");
    assert_eq!((ran.code, ran.stdout.as_str()), (0, ""));
    assert_eq!(std::fs::read(s.state_file()).unwrap(), state_before);
    assert_eq!(s.events("hook-ignored").len(), 6);
    assert!(s.events("mark").is_empty());
}

#[test]
fn a_rejected_key_is_set_aside_until_replaced_and_said_so_plainly() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    let mut claude = FakeClaude::start(&s, &[]);
    claude.helper(&[]);
    claude.stop_failure("authentication_failed", "s");
    let list = s.list_json();
    assert_eq!(list[0]["state"], "rejected");
    assert_eq!(list[0]["exhausted_until"], Value::Null);
    s.cmd()
        .arg("status")
        .assert()
        .stdout(predicate::str::contains("primary rejected"));
    s.cmd()
        .arg("list")
        .assert()
        .stdout(predicate::str::contains("rejected by the API"));
    s.cmd()
        .arg("doctor")
        .assert()
        .stdout(predicate::str::contains("primary was rejected"));
    claude.helper(&[]).assert_printed(&fake_key("two"));
    // A rate limit on the fallback now leaves nothing usable but the fallback itself.
    claude.stop_failure("rate_limit", "s");
    claude.helper(&[]).assert_printed(&fake_key("two"));
    // A new secret brings it back.
    s.cmd()
        .args(["add", "primary", "--replace"])
        .write_stdin(fake_key("new"))
        .assert()
        .success();
    claude.helper(&[]).assert_printed(&fake_key("new"));
}

#[test]
fn cooldowns_come_from_the_key_then_the_reason_then_the_default() {
    let s = Sandbox::new();
    std::fs::write(
        s.config_file(),
        format!(
            "{{\"keychain_service\": \"{}\", \"reason_cooldowns\": {{\"rate_limit\": \"20m\"}}, \"default_cooldown\": \"3h\"}}",
            s.service
        ),
    )
    .unwrap();
    s.add("own", &fake_key("one"), &["--cooldown", "7m"]);
    s.add("plain", &fake_key("two"), &[]);
    s.add("third", &fake_key("three"), &[]);
    let mut claude = FakeClaude::start(&s, &[]);
    let left = |i: usize| s.seconds_left(i);
    claude.helper(&[]);
    claude.stop_failure("rate_limit", "s");
    assert!((400..=420).contains(&left(0)), "the key's own 7m");
    claude.helper(&[]);
    claude.stop_failure("rate_limit", "s");
    assert!(
        (1_150..=1_200).contains(&left(1)),
        "the configured rate_limit 20m"
    );
    s.cmd().args(["mark-exhausted", "third"]).assert().success();
    assert!((10_700..=10_800).contains(&left(2)), "the global 3h");
}

#[test]
fn a_key_that_runs_out_again_soon_cools_down_longer() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &["--cooldown", "2s"]);
    s.add("fallback", &fake_key("two"), &[]);
    let mut claude = FakeClaude::start(&s, &[]);
    claude.helper(&[]);
    claude.stop_failure("rate_limit", "s");
    std::thread::sleep(Duration::from_millis(2_100));
    claude.helper(&[]).assert_printed(&fake_key("one"));
    claude.stop_failure("rate_limit", "s");
    let state: Value = serde_json::from_slice(&std::fs::read(s.state_file()).unwrap()).unwrap();
    let c = &state["cooldowns"]["primary"];
    let since: jiff::Timestamp = c["since"].as_str().unwrap().parse().unwrap();
    let until: jiff::Timestamp = c["until"].as_str().unwrap().parse().unwrap();
    assert_eq!(until.duration_since(since).as_secs(), 4, "doubled from 2s");
}

#[test]
fn a_switch_notifies_the_desktop() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    let bin = s.dir.path().join("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    let seen = s.dir.path().join("notified.txt");
    let script = bin.join("notify-send");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\n", seen.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut claude = FakeClaude::start(&s, &[("PATH", path.as_str())]);
    claude.helper(&[]);
    claude.stop_failure("rate_limit", "s");
    let mut text = String::new();
    for _ in 0..50 {
        text = std::fs::read_to_string(&seen).unwrap_or_default();
        if !text.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(text.contains("now using fallback"), "{text}");
    assert!(
        text.contains("send your last message again")
            || text.contains("Send your last message again"),
        "{text}"
    );
    assert!(
        !text.contains("sk-ant-test"),
        "a notification never shows a key"
    );
}

#[test]
fn keys_never_reach_an_endpoint_they_do_not_belong_to() {
    let s = Sandbox::new();
    let proxy = "http://127.0.0.1:18001";
    let mine = "http://127.0.0.1:18002";
    write_settings(&s, &realistic_settings(Some(mine)));
    s.add("primary", &fake_key("one"), &["--endpoint", proxy]);
    s.add("fallback", &fake_key("two"), &[]);
    s.cmd().args(["install", "--helper"]).assert().success();
    assert_eq!(
        s.settings()["env"]["ANTHROPIC_BASE_URL"],
        proxy,
        "install points at the active key's endpoint"
    );
    let mut claude = FakeClaude::start(&s, &[]);
    let at_proxy = [("ANTHROPIC_BASE_URL", proxy)];
    let at_mine = [("ANTHROPIC_BASE_URL", mine)];
    assert_eq!(
        claude.helper(&at_proxy).stdout,
        format!("{}\n", fake_key("one"))
    );

    // The primary runs out: the settings go back to the user's own endpoint.
    claude.stop_failure("rate_limit", "s");
    assert_eq!(s.settings()["env"]["ANTHROPIC_BASE_URL"], mine);
    // A session still on the proxy gets nothing rather than the fallback.
    let stale = claude.helper(&at_proxy);
    assert_ne!(stale.code, 0);
    assert_eq!(stale.stdout, "");
    // On the user's own endpoint it gets the fallback.
    assert_eq!(
        claude.helper(&at_mine).stdout,
        format!("{}\n", fake_key("two"))
    );

    // The primary's cooldown ends: a session on the user's endpoint keeps the fallback for now
    // and the settings move to the proxy; asked again there, it gets the primary.
    s.cmd().args(["reset", "primary"]).assert().success();
    s.cmd()
        .args(["mark-exhausted", "fallback", "--for", "1h"])
        .assert()
        .success();
    s.cmd().args(["reset", "fallback"]).assert().success();
    assert_eq!(s.settings()["env"]["ANTHROPIC_BASE_URL"], proxy);
    std::fs::write(
        s.settings_file(),
        serde_json::to_string_pretty(&{
            let mut v = s.settings();
            v["env"]["ANTHROPIC_BASE_URL"] = json!(mine);
            v
        })
        .unwrap(),
    )
    .unwrap();
    // (The user put their own endpoint back by hand: keyswitch takes that as their new default.)
    assert_eq!(
        claude.helper(&at_mine).stdout,
        format!("{}\n", fake_key("two"))
    );
    assert_eq!(s.settings()["env"]["ANTHROPIC_BASE_URL"], proxy);
    assert_eq!(
        claude.helper(&at_proxy).stdout,
        format!("{}\n", fake_key("one"))
    );

    // Uninstall puts the user's own endpoint back.
    s.cmd().arg("uninstall").assert().success();
    assert_eq!(s.settings()["env"]["ANTHROPIC_BASE_URL"], mine);
}

#[test]
fn a_switch_killed_at_any_step_never_loses_the_users_endpoint() {
    let proxy = "http://127.0.0.1:18021";
    let mine = "http://127.0.0.1:18022";
    for point in [
        "record-intent-saved",
        "settings-before-rename",
        "settings-written",
    ] {
        let s = Sandbox::new();
        write_settings(&s, &realistic_settings(Some(mine)));
        s.add("primary", &fake_key("one"), &["--endpoint", proxy]);
        s.add("fallback", &fake_key("two"), &[]);
        s.cmd().args(["install", "--helper"]).assert().success();
        // Each switch is killed at `point` (where it gets there), then done again.
        for (cmd, url) in [
            (["mark-exhausted", "primary"], mine),
            (["reset", "primary"], proxy),
            (["mark-exhausted", "primary"], mine),
        ] {
            let _ = s
                .std_cmd()
                .args(cmd)
                .env("KEYSWITCH_TEST_CRASH_AT", point)
                .output()
                .unwrap();
            s.cmd().args(cmd).assert().success();
            assert_eq!(s.settings()["env"]["ANTHROPIC_BASE_URL"], url, "{point}");
        }
        s.cmd().arg("uninstall").assert().success();
        assert_eq!(s.settings()["env"]["ANTHROPIC_BASE_URL"], mine, "{point}");
    }
}

#[test]
fn without_endpoints_anthropic_base_url_is_never_touched() {
    let s = Sandbox::new();
    write_settings(&s, &realistic_settings(Some("http://127.0.0.1:18003")));
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    s.cmd().args(["install", "--helper"]).assert().success();
    let mut claude = FakeClaude::start(&s, &[]);
    claude.helper(&[]);
    claude.stop_failure("rate_limit", "s");
    s.cmd().arg("reset").assert().success();
    assert_eq!(
        s.settings()["env"]["ANTHROPIC_BASE_URL"],
        "http://127.0.0.1:18003"
    );
    let state = std::fs::read_to_string(s.state_dir().join("claude-install.json")).unwrap();
    assert!(!state.contains("ANTHROPIC_BASE_URL"), "{state}");
}

#[test]
fn doctor_explains_what_is_missing_and_passes_when_wired() {
    let s = Sandbox::new();
    let bindir = assert_cmd::cargo::cargo_bin("keyswitch")
        .parent()
        .unwrap()
        .display()
        .to_string();
    let path = format!("{bindir}:/usr/bin:/bin");
    s.cmd()
        .arg("doctor")
        .env("PATH", &path)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FIX   no keys"))
        .stdout(predicate::str::contains("no apiKeyHelper"));
    s.add("primary", &fake_key("one"), &[]);
    s.cmd().args(["install", "--helper"]).assert().success();
    // doctor connects to the key's upstream: here (offline) the shell's base URL, a listener.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://127.0.0.1:{}", upstream.local_addr().unwrap().port());
    s.cmd()
        .arg("doctor")
        .env("PATH", &path)
        .env("ANTHROPIC_BASE_URL", &base_url)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "ok    apiKeyHelper runs keyswitch",
        ))
        .stdout(predicate::str::contains("keyswitch is ready"));
    // A project's own settings that override keyswitch are found.
    let project = s.dir.path().join("project");
    std::fs::create_dir_all(project.join(".claude")).unwrap();
    std::fs::write(
        project.join(".claude/settings.local.json"),
        "{\"env\": {\"ANTHROPIC_BASE_URL\": \"http://x\"}}",
    )
    .unwrap();
    s.cmd()
        .arg("doctor")
        .current_dir(&project)
        .env("PATH", &path)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "settings.local.json sets ANTHROPIC_BASE_URL",
        ));
}

// ---- The settings file is never lost, reordered or rewritten where keyswitch does not act ----

/// A user's settings with an apiKeyHelper of their own (which `install --force` replaces).
fn settings_with_own_helper() -> String {
    let mut settings: Value = serde_json::from_str(&realistic_settings(None)).unwrap();
    settings["apiKeyHelper"] = json!("~/bin/my-helper.sh");
    format!("{}\n", serde_json::to_string_pretty(&settings).unwrap())
}

fn record_file(s: &Sandbox) -> std::path::PathBuf {
    s.state_dir().join("claude-install.json")
}

#[test]
fn a_failed_record_write_leaves_the_settings_untouched_and_uninstall_restores_them() {
    let s = Sandbox::new();
    let original = settings_with_own_helper();
    write_settings(&s, &original);
    // The record cannot be written (a full disk; simulated, as root ignores permissions).
    s.cmd()
        .args(["install", "--helper", "--force"])
        .env("KEYSWITCH_TEST_FAIL_AT", "record-save")
        .assert()
        .failure();
    assert_eq!(
        std::fs::read_to_string(s.settings_file()).unwrap(),
        original,
        "the settings changed although nothing records the helper they replaced"
    );
    s.cmd()
        .args(["install", "--helper", "--force"])
        .assert()
        .success();
    s.cmd().arg("uninstall").assert().success();
    assert_eq!(
        std::fs::read_to_string(s.settings_file()).unwrap(),
        original
    );
}

#[test]
fn install_killed_at_any_step_is_undone_by_uninstall() {
    let s = Sandbox::new();
    let original = settings_with_own_helper();
    for point in [
        "record-intent-saved",
        "settings-before-rename",
        "settings-written",
    ] {
        for again in [false, true] {
            write_settings(&s, &original);
            s.cmd()
                .args(["install", "--helper", "--force"])
                .env("KEYSWITCH_TEST_CRASH_AT", point)
                .assert()
                .failure();
            let now = std::fs::read_to_string(s.settings_file()).unwrap();
            assert!(
                now == original || record_file(&s).exists(),
                "{point}: wired settings without a record"
            );
            if again {
                // A later install must not take keyswitch's own helper for the user's.
                s.cmd()
                    .args(["install", "--helper", "--force"])
                    .assert()
                    .success();
            }
            s.cmd().arg("uninstall").assert().success();
            assert_eq!(
                std::fs::read_to_string(s.settings_file()).unwrap(),
                original,
                "{point}, install again: {again}"
            );
            assert!(!record_file(&s).exists());
        }
    }
}

/// A small pseudo-random sequence (no extra crate for one test).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

#[test]
fn install_killed_at_random_instants_never_loses_the_users_helper() {
    let s = Sandbox::new();
    let original = settings_with_own_helper();
    write_settings(&s, &original);
    // How long a whole install takes here, to spread the kills over it.
    let started = std::time::Instant::now();
    s.cmd()
        .args(["install", "--helper", "--force"])
        .assert()
        .success();
    let span = started.elapsed().as_micros() as u64;
    s.cmd().arg("uninstall").assert().success();

    let mut random = Lcg(std::process::id() as u64 ^ span);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut kills = 0;
    while kills < 150 && std::time::Instant::now() < deadline {
        write_settings(&s, &original);
        let mut child = s
            .std_cmd()
            .args(["install", "--helper", "--force"])
            // What it says is not the point here, and would fill the test output.
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(random.below(span)));
        let _ = child.kill();
        let _ = child.wait();
        kills += 1;
        if random.below(2) == 0 {
            s.cmd()
                .args(["install", "--helper", "--force"])
                .assert()
                .success();
        }
        s.cmd().arg("uninstall").assert().success();
        assert_eq!(
            std::fs::read_to_string(s.settings_file()).unwrap(),
            original,
            "after kill {kills}"
        );
    }
    eprintln!("{kills} installs killed at random instants: the user's helper always came back");
    assert!(kills >= 20, "only {kills} kills in the time allowed");
}

#[test]
fn a_damaged_install_record_has_a_way_out_that_loses_nothing() {
    let s = Sandbox::new();
    let original = settings_with_own_helper();
    write_settings(&s, &original);
    s.cmd()
        .args(["install", "--helper", "--force"])
        .assert()
        .success();
    std::fs::write(record_file(&s), "{\"settings\": ").unwrap();
    s.cmd()
        .args(["install", "--helper", "--force"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("keyswitch uninstall"));
    s.cmd()
        .arg("uninstall")
        .assert()
        .success()
        .stderr(predicate::str::contains("damaged"));
    // keyswitch's entries are gone and the helper it replaced is back, from the backup.
    assert_eq!(
        std::fs::read_to_string(s.settings_file()).unwrap(),
        original
    );
    // The damaged record is kept aside, not deleted.
    let aside = std::fs::read_dir(s.state_dir())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains("corrupt"));
    assert!(aside);
    s.cmd()
        .args(["install", "--helper", "--force"])
        .assert()
        .success();
}

#[test]
fn a_lost_install_record_never_makes_keyswitch_its_own_prior() {
    let s = Sandbox::new();
    let original = settings_with_own_helper();
    write_settings(&s, &original);
    s.cmd()
        .args(["install", "--helper", "--force"])
        .assert()
        .success();
    // The state folder is wiped; the settings stay wired.
    std::fs::remove_file(record_file(&s)).unwrap();
    s.cmd()
        .args(["install", "--helper", "--force"])
        .assert()
        .success();
    s.cmd().arg("uninstall").assert().success();
    assert_eq!(
        std::fs::read_to_string(s.settings_file()).unwrap(),
        original
    );
}

#[test]
fn settings_of_the_wrong_type_are_refused_and_left_alone() {
    let s = Sandbox::new();
    for (settings, key, found) in [
        (r#"{"hooks": []}"#, "\"hooks\"", "an array"),
        (r#"{"env": "FOO=bar"}"#, "\"env\"", "a string"),
        (r#"{"env": null}"#, "\"env\"", "null"),
        (r#"{"env": ["FOO=bar"]}"#, "\"env\"", "an array"),
        (
            r#"{"hooks": {"StopFailure": {"matcher": "x", "hooks": []}}}"#,
            "\"hooks.StopFailure\"",
            "an object",
        ),
    ] {
        write_settings(&s, settings);
        for cmd in ["install", "uninstall"] {
            let out = s.cmd().arg(cmd).assert().failure();
            let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
            assert!(
                stderr.contains(key) && stderr.contains(found) && stderr.lines().count() == 1,
                "{cmd} {settings}: {stderr}"
            );
            assert_eq!(
                std::fs::read_to_string(s.settings_file()).unwrap(),
                settings
            );
        }
    }
}

#[test]
fn order_numbers_and_strings_are_kept_as_written() {
    let s = Sandbox::new();
    // Numbers and strings JavaScript's JSON.parse accepts and serde_json cannot hold as written.
    let original = "{\n  \"A\": 123456789012345678901234567890,\n  \"huge\": 1e400,\n  \"f\": 1.50,\n  \"lone\": \"\\ud800\",\n  \"esc\": \"caf\\u00e9\"\n}\n";
    write_settings(&s, original);
    s.cmd().args(["install", "--helper"]).assert().success();
    let wired = std::fs::read_to_string(s.settings_file()).unwrap();
    for part in [
        "123456789012345678901234567890",
        "1e400",
        "1.50",
        "\"\\ud800\"",
        "\"caf\\u00e9\"",
    ] {
        assert!(wired.contains(part), "{part} not kept: {wired}");
    }
    // Keys added after install keep their order through uninstall.
    let added = wired.replacen("\n}\n", ",\n  \"B\": 1,\n  \"C\": 2\n}\n", 1);
    std::fs::write(s.settings_file(), &added).unwrap();
    s.cmd().arg("uninstall").assert().success();
    assert_eq!(
        std::fs::read_to_string(s.settings_file()).unwrap(),
        original.replacen("\n}\n", ",\n  \"B\": 1,\n  \"C\": 2\n}\n", 1)
    );
}

#[test]
fn a_replaced_helper_only_javascript_can_read_comes_back_as_written() {
    let s = Sandbox::new();
    let original = "{\n  \"apiKeyHelper\": \"~/bin/helper-\\ud800.sh\",\n  \"n\": 1e400\n}\n";
    write_settings(&s, original);
    s.cmd()
        .args(["install", "--helper", "--force"])
        .assert()
        .success();
    s.cmd().arg("uninstall").assert().success();
    assert_eq!(
        std::fs::read_to_string(s.settings_file()).unwrap(),
        original
    );
}

#[test]
fn temporary_copies_a_killed_write_left_are_swept() {
    let s = Sandbox::new();
    write_settings(&s, &realistic_settings(None));
    let stale = s.claude_dir().join(".keyswitch-tmp-killed");
    std::fs::write(&stale, realistic_settings(None)).unwrap();
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    s.cmd().args(["install", "--helper"]).assert().success();
    assert!(!stale.exists());
}

#[test]
fn the_backup_is_the_file_before_keyswitch_first_touched_it() {
    let s = Sandbox::new();
    // First install creates the file: there is nothing to back up.
    s.cmd().args(["install", "--helper"]).assert().success();
    let backup = s.claude_dir().join("settings.json.keyswitch-backup");
    assert!(!backup.exists());
    // A second install finds a wired file: that is not "the file as it was".
    s.cmd()
        .args(["install", "--helper", "--max-retries", "2"])
        .assert()
        .success();
    assert!(!backup.exists(), "a wired file was backed up");
    s.cmd().arg("uninstall").assert().success();
    // A file keyswitch never touched is backed up, and said to be exactly that.
    let original = realistic_settings(None);
    write_settings(&s, &original);
    s.cmd()
        .args(["install", "--helper"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "before keyswitch first changed it",
        ));
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), original);
}

#[test]
fn an_edit_made_while_keyswitch_rewrites_the_settings_is_never_lost() {
    let s = Sandbox::new();
    write_settings(&s, &realistic_settings(None));
    s.add(
        "primary",
        &fake_key("one"),
        &["--endpoint", "http://127.0.0.1:18011"],
    );
    s.add(
        "fallback",
        &fake_key("two"),
        &["--endpoint", "http://127.0.0.1:18012"],
    );
    s.cmd().args(["install", "--helper"]).assert().success();

    // Another writer (Claude Code saving a permission) adds entries, replacing the file
    // atomically as Claude Code does, while keyswitch moves ANTHROPIC_BASE_URL back and forth.
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    let path = s.settings_file();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut added = 0;
            while added < 1500 && std::time::Instant::now() < deadline {
                let mut settings: Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                settings["permissions"]["allow"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!(format!("Bash(entry-{added})")));
                let temp = path.with_file_name("settings.json.writer-tmp");
                std::fs::write(&temp, serde_json::to_vec_pretty(&settings).unwrap()).unwrap();
                std::fs::rename(&temp, &path).unwrap();
                added += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            added
        })
    };
    let mut cycles = 0;
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        s.cmd()
            .args(["mark-exhausted", "primary"])
            .assert()
            .success();
        s.cmd().args(["reset", "primary"]).assert().success();
        cycles += 1;
    }
    let added = writer.join().unwrap();
    let allow = s.settings()["permissions"]["allow"].clone();
    let kept = (0..added)
        .filter(|i| {
            allow
                .as_array()
                .unwrap()
                .contains(&json!(format!("Bash(entry-{i})")))
        })
        .count();
    eprintln!("{added} entries written alongside {cycles} mark/reset cycles: {kept} kept");
    assert!(cycles >= 20, "only {cycles} cycles");
    assert_eq!(kept, added, "{} lost", added - kept);
}

#[test]
fn doctor_flags_a_hook_from_an_older_keyswitch_and_install_updates_it() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.cmd().args(["install", "--helper"]).assert().success();
    // The matcher an older keyswitch wrote: it never fires on LiteLLM's 422 (`unknown`).
    let mut settings = s.settings();
    settings["hooks"]["StopFailure"][0]["matcher"] =
        json!("rate_limit|billing_error|authentication_failed");
    std::fs::write(s.settings_file(), settings.to_string()).unwrap();
    s.cmd()
        .arg("doctor")
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "FIX   the StopFailure hook is an older keyswitch's",
        ));
    s.cmd().args(["install", "--helper"]).assert().success();
    assert_eq!(
        s.settings()["hooks"]["StopFailure"][0]["matcher"],
        "rate_limit|billing_error|authentication_failed|invalid_request|unknown"
    );
    s.cmd()
        .arg("doctor")
        .assert()
        .stdout(predicate::str::contains("FIX   the StopFailure hook").not());
}

#[test]
fn doctor_names_the_gateway_the_proxy_saw_and_the_users_rules() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(s.config_file()).unwrap()).unwrap();
    config["gateway_rules"] = json!([{"status": 412, "meaning": "spent", "cooldown": "1d"}]);
    std::fs::write(s.config_file(), config.to_string()).unwrap();
    std::fs::write(
        s.state_dir().join("gateways.json"),
        r#"{"http://127.0.0.1:4000": {"name": "LiteLLM", "version": "1.108.7", "seen": "2026-12-01T19:00:00Z"}}"#,
    )
    .unwrap();
    s.cmd()
        .arg("doctor")
        .assert()
        .stdout(predicate::str::contains(
            "ok    http://127.0.0.1:4000 is LiteLLM 1.108.7: its budget and rate-limit answers are recognised",
        ))
        .stdout(predicate::str::contains(
            "info  gateway_rules[0]: status 412 → spent, cooling 1d",
        ))
        .stdout(predicate::str::contains(format!(
            "info  the config file is {}",
            s.config_file().display()
        )));
}

#[test]
fn in_helper_mode_litellms_budget_answer_marks_the_key_though_claude_code_calls_it_unknown() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    let mut claude = FakeClaude::start(&s, &[]);
    claude.helper(&[]);
    let input = json!({
        "session_id": "s", "hook_event_name": "StopFailure", "error": "unknown",
        "last_assistant_message": "API Error: 422 LiteLLM Virtual Key: 9b1c, key_alias: budget, exceeded budget for model=claude-sonnet-4-5"
    });
    let ran = claude.hook_raw(&input.to_string(), "s");
    assert_eq!((ran.code, ran.stdout.as_str()), (0, ""));
    let marks = s.events("mark");
    assert_eq!(marks.len(), 1, "{:?}", s.log_json());
    assert_eq!(marks[0]["key"], "primary");
    assert_eq!(marks[0]["reason"], "hook:billing_error");
    let detail = marks[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("budget exceeded") && detail.contains("the key this session was handed"),
        "{detail}"
    );
    // The billing cooldown, not a rate limit's hour.
    assert!(s.seconds_left(0) > 11 * 3600, "{}", s.seconds_left(0));
    claude.helper(&[]).assert_printed(&fake_key("two"));
    // A 422 about the request marks nothing.
    let invalid = json!({
        "session_id": "s", "hook_event_name": "StopFailure", "error": "unknown",
        "last_assistant_message": "API Error: 422 [{'type': 'missing', 'loc': ('body', 'messages')}]"
    });
    claude.hook_raw(&invalid.to_string(), "s");
    assert_eq!(s.events("mark").len(), 1);
}

/// Two project folders, `a` and `b`, each with a `.claude/settings.json` of its own.
fn two_projects(s: &Sandbox) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = s.claude_dir().parent().unwrap().to_path_buf();
    let (a, b) = (root.join("a"), root.join("b"));
    for dir in [&a, &b] {
        std::fs::create_dir_all(dir.join(".claude")).unwrap();
        std::fs::write(dir.join(".claude/settings.json"), "{\"model\": \"x\"}\n").unwrap();
    }
    (a, b)
}

/// Two keys on endpoints of their own, so a switch rewrites the user settings' base URL.
fn keys_on_two_endpoints(s: &Sandbox) {
    s.add(
        "primary",
        &fake_key("primary"),
        &["--endpoint", "https://a.example"],
    );
    s.add(
        "fallback",
        &fake_key("fallback"),
        &["--endpoint", "https://b.example"],
    );
}

/// keyswitch run from `dir` with `CLAUDE_CONFIG_DIR=.claude`, relative, as a user may set it.
fn from_folder(s: &Sandbox, dir: &std::path::Path, args: &[&str]) {
    s.cmd()
        .current_dir(dir)
        .env("CLAUDE_CONFIG_DIR", ".claude")
        .args(args)
        .assert()
        .success();
}

fn recorded_settings(s: &Sandbox) -> String {
    let record: Value =
        serde_json::from_slice(&std::fs::read(s.state_dir().join("claude-install.json")).unwrap())
            .unwrap();
    record["settings"].as_str().unwrap().to_string()
}

#[test]
fn a_relative_claude_config_dir_is_recorded_absolute_and_another_folder_is_never_rewritten() {
    let s = Sandbox::new();
    keys_on_two_endpoints(&s);
    let (a, b) = two_projects(&s);
    from_folder(&s, &a, &["install", "--helper"]);
    let a_settings = a.join(".claude/settings.json");
    assert_eq!(recorded_settings(&s), a_settings.display().to_string());
    let b_before = std::fs::read(b.join(".claude/settings.json")).unwrap();

    // The hook, `mark-exhausted` and `reset` run from another project, as Claude Code runs them.
    for args in [&["mark-exhausted", "primary"][..], &["reset"][..]] {
        from_folder(&s, &b, args);
    }
    assert_eq!(
        std::fs::read(b.join(".claude/settings.json")).unwrap(),
        b_before
    );
    let a_now: Value = serde_json::from_slice(&std::fs::read(&a_settings).unwrap()).unwrap();
    assert_eq!(a_now["env"]["ANTHROPIC_BASE_URL"], "https://a.example");
    assert!(a_now["apiKeyHelper"].as_str().is_some());
}

#[test]
fn a_relative_record_left_by_an_older_version_rewrites_no_settings_until_install_repairs_it() {
    let s = Sandbox::new();
    keys_on_two_endpoints(&s);
    let (a, b) = two_projects(&s);
    from_folder(&s, &a, &["install", "--helper"]);
    // As older versions wrote it.
    let record_file = s.state_dir().join("claude-install.json");
    let mut record: Value = serde_json::from_slice(&std::fs::read(&record_file).unwrap()).unwrap();
    record["settings"] = json!(".claude/settings.json");
    std::fs::write(&record_file, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    let b_before = std::fs::read(b.join(".claude/settings.json")).unwrap();

    let out = s
        .cmd()
        .current_dir(&b)
        .args(["mark-exhausted", "primary"])
        .output()
        .unwrap();
    // The mark itself stands; the settings are left alone, with the way out named.
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("relative") && err.contains("keyswitch install"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(b.join(".claude/settings.json")).unwrap(),
        b_before
    );

    from_folder(&s, &a, &["install", "--helper"]);
    assert_eq!(
        recorded_settings(&s),
        a.join(".claude/settings.json").display().to_string()
    );
}

/// The retry wording is true: Claude Code retries for minutes only a 429 without a
/// retry-after; a long one fails the turn at once.
#[test]
fn install_and_doctor_say_when_the_retries_take_minutes() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("primary"), &[]);
    let out = s.cmd().args(["install", "--helper"]).output().unwrap();
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("without a retry-after"), "{said}");
    let out = s.cmd().arg("doctor").output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("without a retry-after"), "{said}");
}

#[test]
fn install_statusline_wires_the_full_path_keeps_it_on_reinstall_and_uninstall_takes_it_out() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    write_settings(&s, "{\"model\": \"opus\"}\n");
    let before = s.settings();
    s.cmd()
        .args(["install", "--helper", "--statusline"])
        .assert()
        .success()
        .stderr(predicate::str::contains("status line"));
    let line = s.settings()["statusLine"].clone();
    assert_eq!(line["type"], "command");
    let command = line["command"].as_str().unwrap().to_string();
    let binary = assert_cmd::cargo::cargo_bin("keyswitch");
    assert_eq!(command, format!("{} status", binary.display()));
    // Claude Code runs it through the shell, with JSON on stdin: it prints the active key.
    let ran = std::process::Command::new("/bin/sh")
        .args(["-c", &command])
        .envs(s.env())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&ran.stdout).contains("primary"));
    // A re-install without the flag keeps it.
    s.cmd().args(["install", "--helper"]).assert().success();
    assert_eq!(s.settings()["statusLine"], line);
    s.cmd().arg("uninstall").assert().success();
    assert_eq!(s.settings(), before);
}

#[test]
fn install_statusline_replaces_the_users_own_only_with_force_and_uninstall_puts_it_back() {
    let s = Sandbox::new();
    let own = "{\n  \"statusLine\": {\"type\": \"command\", \"command\": \"~/bin/my-line\"}\n}\n";
    write_settings(&s, own);
    s.cmd()
        .args(["install", "--helper", "--statusline"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("statusLine of its own")
                .and(predicate::str::contains("--force")),
        );
    assert_eq!(std::fs::read_to_string(s.settings_file()).unwrap(), own);
    // Without --statusline the user's own is not touched at all.
    s.cmd().args(["install", "--helper"]).assert().success();
    assert_eq!(s.settings()["statusLine"]["command"], "~/bin/my-line");
    s.cmd()
        .args(["install", "--helper", "--statusline", "--force"])
        .assert()
        .success();
    assert!(
        s.settings()["statusLine"]["command"]
            .as_str()
            .unwrap()
            .ends_with("keyswitch status")
    );
    s.cmd().arg("uninstall").assert().success();
    assert_eq!(s.settings(), serde_json::from_str::<Value>(own).unwrap());
}

/// A settings file written its own way (compact, no final newline) comes back byte for byte
/// after install and uninstall, and uninstall says so rather than "your edits since are kept".
#[test]
fn uninstall_gives_back_a_compact_settings_file_byte_for_byte() {
    let s = Sandbox::new();
    let own = "{\"theme\":\"dark\",\"permissions\":{\"allow\":[\"Bash(ls:*)\"]}}";
    write_settings(&s, own);
    s.cmd().args(["install", "--helper"]).assert().success();
    assert_ne!(std::fs::read_to_string(s.settings_file()).unwrap(), own);
    s.cmd()
        .arg("uninstall")
        .assert()
        .success()
        .stderr(predicate::str::contains("byte for byte"))
        .stderr(predicate::str::contains("your edits since").not());
    assert_eq!(std::fs::read_to_string(s.settings_file()).unwrap(), own);
}

/// A subscriber is never moved onto API billing silently: a first install over a login (its
/// file, or CLAUDE_CODE_OAUTH_TOKEN) is refused unless `--keys-only` says so, and changes
/// nothing; with it, install says what it costs.
#[test]
fn install_over_a_subscription_login_needs_keys_only() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    std::fs::create_dir_all(s.claude_dir()).unwrap();
    let login = s.claude_dir().join(".credentials.json");
    std::fs::write(
        &login,
        r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-test-x"}}"#,
    )
    .unwrap();
    for mode in ["--helper", "--proxy"] {
        s.cmd()
            .args(["install", mode])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("subscription login"))
            .stderr(predicate::str::contains("--keys-only"))
            .stderr(predicate::str::contains("sk-ant-oat01").not());
        assert!(!s.settings_file().exists(), "{mode}");
    }
    std::fs::remove_file(&login).unwrap();
    s.cmd()
        .args(["install", "--helper"])
        .env("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-test-y")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("CLAUDE_CODE_OAUTH_TOKEN is set"));
    assert!(!s.settings_file().exists());
    s.cmd()
        .args(["install", "--helper", "--keys-only"])
        .env("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-test-y")
        .assert()
        .success()
        .stderr(predicate::str::contains("billed to them"));
    assert!(s.settings()["apiKeyHelper"].is_string());
}
