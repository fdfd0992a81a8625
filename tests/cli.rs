//! The commands as a user meets them, against the real (private) Secret Service.

mod common;

use common::{Sandbox, active, fake_key, names};
use predicates::prelude::*;
use serde_json::Value;

#[test]
fn the_first_key_added_is_the_primary_and_get_prints_only_it() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    s.cmd()
        .arg("get")
        .assert()
        .success()
        .stdout(format!("{}\n", fake_key("one")))
        .stderr("");
    let list = s.list_json();
    assert_eq!(names(&list), ["primary", "fallback"]);
    assert_eq!(list[0]["position"], 1);
    assert_eq!(active(&list).as_deref(), Some("primary"));
    // The secret really is in the Secret Service, readable by libsecret's own tool.
    assert_eq!(
        s.secret_tool_lookup("fallback").as_deref(),
        Some(fake_key("two").as_str())
    );
}

#[test]
fn get_with_no_keys_fails_and_says_how_to_add_one() {
    let s = Sandbox::new();
    s.cmd()
        .arg("get")
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("keyswitch add"));
}

#[test]
fn an_exhausted_key_is_skipped_until_reset() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    s.cmd().arg("mark-exhausted").assert().success();
    assert_eq!(s.get(), format!("{}\n", fake_key("two")));
    let list = s.list_json();
    assert_eq!(active(&list).as_deref(), Some("fallback"));
    assert!(list[0]["exhausted_until"].as_str().is_some());
    assert_eq!(list[1]["exhausted_until"], Value::Null);
    s.cmd().args(["reset", "primary"]).assert().success();
    assert_eq!(s.get(), format!("{}\n", fake_key("one")));
}

#[test]
fn the_primary_returns_by_itself_when_its_cooldown_ends() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    s.cmd()
        .args(["mark-exhausted", "primary", "--for", "2s"])
        .assert()
        .success();
    assert_eq!(s.get(), format!("{}\n", fake_key("two")));
    std::thread::sleep(std::time::Duration::from_millis(2_200));
    assert_eq!(s.get(), format!("{}\n", fake_key("one")));
    let log = s.log_json();
    let back = log.iter().rev().find(|e| e["event"] == "switch").unwrap();
    assert_eq!(back["key"], "primary");
    assert_eq!(back["reason"], "cooldown-ended");
}

#[test]
fn when_every_key_cools_down_get_hands_out_the_one_back_first_with_a_warning() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    s.cmd()
        .args(["mark-exhausted", "primary", "--for", "5h"])
        .assert()
        .success();
    // The last key marked: no "now handing out fallback" as if it worked.
    s.cmd()
        .args(["mark-exhausted", "fallback", "--for", "1h"])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("no key is ready")
                .and(predicate::str::contains("fallback returns first"))
                .and(predicate::str::contains("now handing out").not()),
        );
    s.cmd()
        .arg("get")
        .assert()
        .success()
        .stdout(format!("{}\n", fake_key("two")))
        .stderr(
            predicate::str::contains("every key is cooling down")
                .and(predicate::str::contains("\n").count(1)),
        );
}

#[test]
fn marking_never_shortens_a_cooldown() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.cmd()
        .args(["mark-exhausted", "primary", "--for", "5h"])
        .assert()
        .success();
    let before = s.list_json()[0]["exhausted_until"].clone();
    s.cmd()
        .args(["mark-exhausted", "primary", "--for", "1h"])
        .assert()
        .success()
        .stderr(predicate::str::contains("left as is"));
    assert_eq!(s.list_json()[0]["exhausted_until"], before);
    s.cmd()
        .args(["mark-exhausted", "primary", "--for", "6h"])
        .assert()
        .success();
    assert_ne!(s.list_json()[0]["exhausted_until"], before);
}

#[test]
fn a_keys_own_cooldown_and_until_are_honoured() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &["--cooldown", "30m"]);
    s.cmd().arg("mark-exhausted").assert().success();
    let left = s.seconds_left(0);
    assert!((1_700..=1_800).contains(&left), "{left}");

    s.cmd().args(["reset"]).assert().success();
    s.cmd()
        .args(["mark-exhausted", "--until", "2099-01-01T00:00:00Z"])
        .assert()
        .success();
    assert_eq!(s.list_json()[0]["exhausted_until"], "2099-01-01T00:00:00Z");
}

#[test]
fn bad_durations_and_times_are_refused_and_change_nothing() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    let before = s.files();
    for args in [
        &["--for", "0s"][..],
        &["--for", "-5h"],
        &["--for", "5h ago"],
        &["--for", "soon"],
        &["--for", ""],
        &["--until", "2001-01-01T00:00:00Z"],
        &["--until", "yesterday"],
        &["--for", "1h", "--until", "2099-01-01T00:00:00Z"],
    ] {
        s.cmd()
            .arg("mark-exhausted")
            .args(args)
            .assert()
            .code(2)
            .stdout("")
            .stderr(
                predicate::str::starts_with("keyswitch: ")
                    .and(predicate::str::contains("\n").count(1)),
            );
    }
    assert_eq!(s.files(), before);
}

#[test]
fn bad_names_are_refused_and_change_nothing() {
    let s = Sandbox::new();
    let before = s.files();
    let long = "x".repeat(65);
    for name in [
        "",
        "..",
        ".x",
        "a/b",
        "a b",
        "naïve",
        "semi;colon",
        long.as_str(),
    ] {
        s.cmd()
            .args(["add", name])
            .write_stdin(fake_key("x"))
            .assert()
            .code(2)
            .stdout("")
            .stderr(
                predicate::str::contains("key name").and(predicate::str::contains("\n").count(1)),
            );
    }
    // A name that looks like a flag is caught by the parser, also with a one-line error.
    s.cmd()
        .args(["add", "-x"])
        .write_stdin(fake_key("x"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("\n").count(1));
    assert_eq!(s.files(), before);
}

#[test]
fn bad_secrets_are_refused_and_never_echoed() {
    let s = Sandbox::new();
    let before = s.files();
    let too_long = "a".repeat(16_385);
    for secret in [
        "",
        "\n",
        "sk-ant-test-with space",
        "sk-ant-test-\ttab",
        "sk-ant-test-\u{1b}[31m",
        "sk-ant-test-ünicode",
        "sk-ant-test-two\nlines",
        too_long.as_str(),
    ] {
        s.cmd()
            .args(["add", "primary"])
            .write_stdin(secret.to_string())
            .assert()
            .code(2)
            .stdout("")
            .stderr(
                predicate::str::contains("secret")
                    .and(predicate::str::contains("sk-ant-test").not()),
            );
    }
    assert_eq!(s.files(), before);
    assert_eq!(s.secret_tool_lookup("primary"), None);
}

#[test]
fn on_a_terminal_the_secret_is_read_from_a_hidden_prompt() {
    let s = Sandbox::new();
    let transcript = s.dir.path().join("terminal.log");
    let bin = assert_cmd::cargo::cargo_bin("keyswitch");
    // `script` (util-linux) runs the command on a pseudo-terminal and records what it shows.
    let mut script = std::process::Command::new("script");
    script
        .args(["-qfc", &format!("{} add typed", bin.display())])
        .arg(&transcript)
        .env_clear()
        .envs(s.env())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let mut running = script.spawn().expect("script (util-linux) runs");
    // Type only once the prompt is up, as a person would (rpassword turns echo off right after
    // printing it, hence the short pause that follows).
    for _ in 0..200 {
        if std::fs::read_to_string(&transcript).is_ok_and(|t| t.contains("(hidden): ")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    use std::io::Write;
    let stdin = running.stdin.as_mut().unwrap();
    stdin
        .write_all(format!("{}\r", fake_key("typed")).as_bytes())
        .unwrap();
    stdin.flush().unwrap();
    assert!(running.wait().unwrap().success());
    let shown = std::fs::read_to_string(&transcript).unwrap();
    assert!(shown.contains("Secret for typed (hidden)"), "{shown}");
    assert!(
        !shown.contains("sk-ant-test"),
        "the secret was echoed: {shown}"
    );
    assert_eq!(s.get(), format!("{}\n", fake_key("typed")));
}

#[test]
fn a_secret_is_never_taken_from_the_command_line() {
    let s = Sandbox::new();
    s.cmd()
        .args(["add", "primary", &fake_key("argv")])
        .write_stdin(fake_key("one"))
        .assert()
        .code(2);
    assert_eq!(s.secret_tool_lookup("primary"), None);
}

#[test]
fn names_clash_without_regard_to_case_and_replace_keeps_position_and_options() {
    let s = Sandbox::new();
    s.add(
        "primary",
        &fake_key("one"),
        &[
            "--cooldown",
            "30m",
            "--endpoint",
            "https://proxy.example.com",
        ],
    );
    s.add("fallback", &fake_key("two"), &[]);
    s.cmd()
        .args(["add", "PRIMARY"])
        .write_stdin(fake_key("three"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--replace"));
    s.cmd()
        .args(["add", "Primary", "--replace"])
        .write_stdin(fake_key("three"))
        .assert()
        .success();
    let list = s.list_json();
    assert_eq!(names(&list), ["primary", "fallback"]);
    assert_eq!(list[0]["cooldown"], "30m");
    assert_eq!(list[0]["endpoint"], "https://proxy.example.com");
    // The primary belongs to its proxy: it is only handed to a session that uses that proxy.
    s.cmd()
        .arg("get")
        .env("ANTHROPIC_BASE_URL", "https://proxy.example.com/")
        .assert()
        .success()
        .stdout(format!("{}\n", fake_key("three")));
    s.cmd()
        .args(["add", "ghost", "--replace"])
        .write_stdin(fake_key("x"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no key named ghost"));
}

#[test]
fn unknown_keys_and_positions_are_refused() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    let before = s.files();
    for args in [
        &["mark-exhausted", "ghost"][..],
        &["reset", "ghost"],
        &["remove", "ghost"],
        &["move", "ghost", "1"],
        &["move", "primary", "0"],
        &["move", "primary", "2"],
        &["move", "primary", "first"],
    ] {
        s.cmd()
            .args(args)
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains("\n").count(1));
    }
    assert_eq!(s.files(), before);
}

#[test]
fn move_reorders_and_remove_deletes_from_keychain_and_order() {
    let s = Sandbox::new();
    s.add("a", &fake_key("a"), &[]);
    s.add("b", &fake_key("b"), &[]);
    s.add("c", &fake_key("c"), &[]);
    s.cmd().args(["move", "c", "1"]).assert().success();
    assert_eq!(names(&s.list_json()), ["c", "a", "b"]);
    assert_eq!(s.get(), format!("{}\n", fake_key("c")));
    s.cmd().args(["remove", "c"]).assert().success();
    assert_eq!(names(&s.list_json()), ["a", "b"]);
    assert_eq!(s.secret_tool_lookup("c"), None);
    assert_eq!(s.get(), format!("{}\n", fake_key("a")));
}

#[test]
fn list_masks_secrets_and_shows_the_cooldown_end() {
    let s = Sandbox::new();
    s.add("primary", "sk-ant-test-0123456789-WXYZ", &[]);
    s.add("short", "sk-ant-test-tiny", &[]);
    s.cmd()
        .args(["mark-exhausted", "primary", "--for", "42m"])
        .assert()
        .success();
    let out = s.cmd().arg("list").output().unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("…WXYZ"), "{table}");
    assert!(!table.contains("0123456789"), "{table}");
    assert!(!table.contains("tiny"), "{table}");
    assert!(table.contains("in 42m"), "{table}");
    let json = s.list_json();
    assert_eq!(json[0]["secret"], "…WXYZ");
    assert_eq!(json[1]["secret"], "…");
}

#[test]
fn status_is_one_line_and_needs_no_keychain() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    s.cmd()
        .args(["mark-exhausted", "primary", "--for", "42m"])
        .assert()
        .success();
    s.cmd()
        .arg("status")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .assert()
        .success()
        .stdout(
            predicate::str::starts_with("key: fallback")
                .and(predicate::str::contains("primary back"))
                .and(predicate::str::contains("in 42m")),
        )
        .stdout(predicate::str::contains("\n").count(1))
        .stderr("");
}

#[test]
fn an_unreachable_keychain_fails_fast_with_the_way_out() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    let started = std::time::Instant::now();
    s.cmd()
        .arg("get")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .assert()
        .code(1)
        .stdout("")
        .stderr(
            predicate::str::contains("Secret Service").and(predicate::str::contains("keyutils")),
        );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // With no session bus at all, the same.
    let mut cmd = s.cmd();
    cmd.env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("DISPLAY", "");
    cmd.arg("get")
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("Secret Service"));
}

#[test]
fn a_locked_keyring_fails_fast_instead_of_waiting_on_an_unlock_prompt() {
    let s = Sandbox::new();
    // Its own private Secret Service, so locking it cannot disturb the other tests.
    let script = r#"
        set -e
        printf '%s' "$SECRET" | "$KEYSWITCH" add primary
        dbus-send --session --print-reply --dest=org.freedesktop.secrets /org/freedesktop/secrets \
            org.freedesktop.Secret.Service.Lock array:objpath:/org/freedesktop/secrets/collection/login >/dev/null
        start=$(date +%s%N)
        set +e
        "$KEYSWITCH" get >"$OUT/stdout" 2>"$OUT/stderr"
        echo $? >"$OUT/code"
        echo $(( ($(date +%s%N) - start) / 1000000 )) >"$OUT/ms"
        "$KEYSWITCH" status >"$OUT/status"
    "#;
    let out = s.run_in_own_keyring(script, &fake_key("locked"));
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    assert_eq!(read("code").trim(), "1");
    assert_eq!(read("stdout"), "");
    assert!(read("stderr").contains("locked"), "{}", read("stderr"));
    let ms: u64 = read("ms").trim().parse().unwrap();
    assert!(ms < 5_000, "took {ms} ms");
    assert!(read("status").starts_with("key: primary"));
}

#[test]
fn a_key_missing_from_the_keychain_is_skipped_with_a_warning() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    std::process::Command::new("secret-tool")
        .args(["clear", "service", &s.service, "username", "primary"])
        .status()
        .unwrap();
    s.cmd()
        .arg("get")
        .assert()
        .success()
        .stdout(format!("{}\n", fake_key("two")))
        .stderr(predicate::str::contains("primary has no secret"));
}

#[test]
fn a_damaged_state_file_never_locks_the_user_out() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    s.cmd()
        .args(["mark-exhausted", "primary"])
        .assert()
        .success();
    std::fs::write(s.state_file(), "{\"cooldowns\": {\"primary\": ").unwrap();
    // Works as if nothing were cooling down, and warns once.
    s.cmd()
        .arg("get")
        .assert()
        .success()
        .stdout(format!("{}\n", fake_key("one")))
        .stderr(predicate::str::contains("damaged"));
    s.cmd().arg("get").assert().success().stderr("");
    let kept: Vec<_> = std::fs::read_dir(s.state_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
        .collect();
    assert_eq!(kept.len(), 1, "the bad file is kept aside for inspection");
    // The next write repairs it.
    s.cmd()
        .args(["mark-exhausted", "primary"])
        .assert()
        .success();
    assert_eq!(s.get(), format!("{}\n", fake_key("two")));
    let state: Value = serde_json::from_slice(&std::fs::read(s.state_file()).unwrap()).unwrap();
    assert!(state["cooldowns"]["primary"].is_object());
}

#[test]
fn a_damaged_config_is_named_and_never_overwritten() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    let broken = "{\n  \"keys\": [\n    {\"name\": \"primary\",,}\n  ]\n}\n";
    std::fs::write(s.config_file(), broken).unwrap();
    for args in [
        &["get"][..],
        &["list"],
        &["status"],
        &["mark-exhausted"],
        &["remove", "primary"],
    ] {
        s.cmd().args(args).assert().failure().stdout("").stderr(
            predicate::str::contains("config.json").and(predicate::str::contains("line 3")),
        );
    }
    s.cmd()
        .args(["add", "second"])
        .write_stdin(fake_key("two"))
        .assert()
        .failure();
    assert_eq!(std::fs::read_to_string(s.config_file()).unwrap(), broken);
}

#[test]
fn files_are_private_and_never_hold_a_secret() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sandbox::new();
    // Let keyswitch create every folder and file itself (so it uses the default keychain
    // service: the names are unique and removed at the end).
    std::fs::remove_dir_all(s.config_dir()).unwrap();
    let primary = format!("private-{}-a", std::process::id());
    let fallback = format!("private-{}-b", std::process::id());
    s.add(
        &primary,
        &fake_key("one"),
        &["--endpoint", "https://proxy.example.com"],
    );
    s.add(&fallback, &fake_key("two"), &[]);
    s.cmd().arg("mark-exhausted").assert().success();
    s.get();
    s.cmd().arg("reset").assert().success();
    s.cmd().arg("mark-exhausted").assert().success();
    for dir in [s.config_dir(), s.state_dir()] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
    let files = s.files();
    assert!(files.len() >= 4, "{files:?}");
    for (path, bytes) in files {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("sk-ant-test"),
            "{} holds a secret",
            path.display()
        );
    }
    s.cmd().args(["remove", &primary]).assert().success();
    s.cmd().args(["remove", &fallback]).assert().success();
}

#[test]
fn the_log_records_marks_resets_and_switches() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    s.cmd().arg("mark-exhausted").assert().success();
    s.cmd().arg("reset").assert().success();
    let log = s.log_json();
    let events: Vec<&str> = log.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        ["add", "switch", "add", "mark", "switch", "reset", "switch"]
    );
    for e in &log {
        for field in ["time", "event", "key", "reason", "session_id"] {
            assert!(e.get(field).is_some(), "{field} missing in {e}");
        }
    }
    assert_eq!(log[4]["key"], "fallback");
    assert_eq!(log[6]["key"], "primary");
    s.cmd()
        .arg("log")
        .assert()
        .success()
        .stdout(predicate::str::contains("mark"));
}

#[test]
fn secrets_go_to_the_default_keychain_service_by_default() {
    let s = Sandbox::new();
    std::fs::remove_file(s.config_file()).unwrap();
    let name = format!("default-service-{}", std::process::id());
    s.add(&name, &fake_key("dflt"), &[]);
    let out = std::process::Command::new("secret-tool")
        .args(["lookup", "service", "keyswitch", "username", &name])
        .output()
        .unwrap();
    s.cmd().args(["remove", &name]).assert().success();
    assert_eq!(String::from_utf8_lossy(&out.stdout), fake_key("dflt"));
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let s = Sandbox::new();
    for args in [&["frobnicate"][..], &["list", "--jsn"], &["move", "a"]] {
        s.cmd()
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("\n").count(1));
    }
    s.cmd()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("mark-exhausted"));
}

#[test]
fn reauthorize_stores_every_key_again_and_loses_none() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    s.cmd()
        .arg("reauthorize")
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains("stored fallback again"));
    assert_eq!(s.secret_tool_lookup("primary"), Some(fake_key("one")));
    assert_eq!(s.secret_tool_lookup("fallback"), Some(fake_key("two")));
    // No safety copy is left behind.
    let spare = format!("{}.reauthorize", s.service);
    for name in ["primary", "fallback"] {
        let found = std::process::Command::new("secret-tool")
            .args(["lookup", "service", &spare, "username", name])
            .output()
            .unwrap();
        assert!(found.stdout.is_empty(), "a safety copy of {name} was left");
    }
    assert_eq!(s.get(), format!("{}\n", fake_key("one")));
}

#[test]
fn reauthorize_finishes_a_run_cut_short_from_its_safety_copy() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    // A run cut short after deleting the original: only the safety copy holds the secret.
    let spare = format!("{}.reauthorize", s.service);
    let mut store = std::process::Command::new("secret-tool")
        .args([
            "store", "--label", "spare", "service", &spare, "username", "primary",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    store
        .stdin
        .take()
        .unwrap()
        .write_all(fake_key("one").as_bytes())
        .unwrap();
    assert!(store.wait().unwrap().success());
    std::process::Command::new("secret-tool")
        .args(["clear", "service", &s.service, "username", "primary"])
        .status()
        .unwrap();
    assert_eq!(s.secret_tool_lookup("primary"), None);
    s.cmd().arg("reauthorize").assert().success();
    assert_eq!(s.secret_tool_lookup("primary"), Some(fake_key("one")));
    let left = std::process::Command::new("secret-tool")
        .args(["lookup", "service", &spare, "username", "primary"])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty());
    let _ = std::process::Command::new("secret-tool")
        .args(["clear", "service", &spare])
        .output();
}

/// A secret shorter than any API key (a typo, a paste cut short) is stored — some gateways hand
/// out short keys — but `add` says so.
#[test]
fn a_secret_too_short_for_an_api_key_is_stored_with_a_warning() {
    let s = Sandbox::new();
    s.cmd()
        .args(["add", "short"])
        .write_stdin("abcde")
        .assert()
        .success()
        .stderr(predicate::str::contains("only 5 characters"));
    s.cmd().arg("get").assert().success().stdout("abcde\n");
    s.cmd()
        .args(["add", "long"])
        .write_stdin(fake_key("long"))
        .assert()
        .success()
        .stderr(predicate::str::contains("characters, shorter").not());
}

/// `keyswitch … 2>&1 | head`: a command whose stderr is a closed pipe has done its work when it
/// says so, and exits with its own status — never a panic's 101.
#[test]
fn a_closed_stderr_never_turns_a_done_command_into_a_panic() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    for args in [
        &["set", "primary", "--cooldown", "3h"][..],
        &["mark-exhausted", "primary", "--for", "1h"],
        &["reset", "primary"],
        &["add", "nope", "--endpoint", "ftp://x"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let status = s
            .std_cmd()
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(writer)
            .status()
            .unwrap();
        assert_ne!(status.code(), Some(101), "{args:?} panicked");
        let expected = if args[0] == "add" { 2 } else { 0 };
        assert_eq!(status.code(), Some(expected), "{args:?}");
    }
    assert_eq!(s.list_json()[0]["cooldown"], "3h");
}

/// A name with control characters is shown escaped in the refusal, never sent raw to the
/// terminal.
#[test]
fn an_unknown_name_with_control_characters_is_shown_escaped() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    for args in [
        &["set", "a\u{1b}[31mb", "--cooldown", "5h"][..],
        &["mark-exhausted", "a\u{1b}[31mb"],
        &["remove", "a\u{1b}[31mb"],
    ] {
        let out = s.cmd().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains('\u{1b}'), "{args:?}: {err:?}");
        assert!(err.contains("a\\u{1b}[31mb"), "{args:?}: {err:?}");
    }
}

/// An endpoint refused at any length is named in one short line: cut, control characters
/// escaped, never the whole argument (a 100 KB one was echoed whole).
#[test]
fn a_huge_or_unprintable_endpoint_is_refused_in_one_short_line() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    let before = std::fs::read(s.config_file()).unwrap();
    let huge = format!("ftp://gw.example/{}", "a".repeat(100_000));
    let escaped = "https://gw\u{1b}[31m.example\u{7}/v1 x?".to_string();
    for endpoint in [&huge, &escaped] {
        for args in [
            &["add", "second", "--endpoint", endpoint][..],
            &["set", "primary", "--endpoint", endpoint],
        ] {
            let out = s
                .cmd()
                .args(args)
                .write_stdin(format!("{}\n", fake_key("two")))
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
            assert!(err.len() < 600, "{} bytes", err.len());
            assert!(!err.contains(['\u{1b}', '\u{7}']), "{err:?}");
            assert_eq!(std::fs::read(s.config_file()).unwrap(), before);
        }
    }
}
