//! `keyswitch set`: a key's endpoint and cooldown changed in place — secret and position kept —,
//! what `add` refuses refused here too with nothing changed, the change said exactly, and
//! Claude Code's settings (helper mode) or the proxy (proxy mode) following an endpoint change.

mod common;

use common::proxy_box::{BODY, ProxyBox};
use common::upstream::{Reply, Upstream};
use common::{Sandbox, fake_key, names};
use predicates::prelude::*;

/// Runs `keyswitch set ARGS`; its exit code and stderr.
fn set(s: &Sandbox, args: &[&str]) -> (Option<i32>, String) {
    let out = s.cmd().arg("set").args(args).output().unwrap();
    assert!(out.stdout.is_empty());
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn two_keys() -> Sandbox {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    s
}

#[test]
fn each_option_is_set_and_cleared_keeping_the_secret_and_the_position() {
    let s = two_keys();
    let steps: [(&[&str], &str); 4] = [
        (
            &["fallback", "--endpoint", "https://Gateway.example.com/"],
            "keyswitch: fallback: endpoint default (Claude Code's own base URL) → https://gateway.example.com\n",
        ),
        (
            &["fallback", "--cooldown", "5h"],
            "keyswitch: fallback: cooldown default (1h; 12h for a spent budget) → 5h\n",
        ),
        (
            &["fallback", "--no-endpoint", "--cooldown", "30m"],
            "keyswitch: fallback: endpoint https://gateway.example.com → default (Claude Code's own base URL); cooldown 5h → 30m\n",
        ),
        (
            &["fallback", "--no-cooldown"],
            "keyswitch: fallback: cooldown 30m → default (1h; 12h for a spent budget)\n",
        ),
    ];
    let expected = [
        (Some("https://gateway.example.com"), None),
        (Some("https://gateway.example.com"), Some("5h")),
        (None, Some("30m")),
        (None, None),
    ];
    for ((args, said), (endpoint, cooldown)) in steps.iter().zip(expected) {
        assert_eq!(set(&s, args), (Some(0), said.to_string()), "{args:?}");
        let list = s.list_json();
        assert_eq!(names(&list), ["primary", "fallback"], "{args:?}");
        assert_eq!(list[1]["endpoint"].as_str(), endpoint, "{args:?}");
        assert_eq!(list[1]["cooldown"].as_str(), cooldown, "{args:?}");
        assert_eq!(
            s.secret_tool_lookup("fallback"),
            Some(fake_key("two")),
            "{args:?}"
        );
    }
    assert_eq!(s.events("set").len(), 4);
    // A configured default is the one named.
    let config = std::fs::read_to_string(s.config_file()).unwrap();
    let config = config.replacen('{', "{\"default_cooldown\": \"2h\", ", 1);
    std::fs::write(s.config_file(), config).unwrap();
    assert_eq!(
        set(&s, &["primary", "--cooldown", "1d"]).1,
        "keyswitch: primary: cooldown default (2h; 1h for a rate limit, 12h for a spent budget) → 1d\n"
    );
}

#[test]
fn setting_what_is_already_there_changes_nothing_and_says_so() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &["--cooldown", "1h"]);
    let before = std::fs::read(s.config_file()).unwrap();
    let (code, said) = set(&s, &["primary", "--cooldown", "60m"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        said,
        "keyswitch: primary: nothing changed (cooldown 1h already)\n"
    );
    assert_eq!(std::fs::read(s.config_file()).unwrap(), before);
    assert!(s.events("set").is_empty());
}

#[test]
fn every_refusal_names_the_problem_and_changes_nothing() {
    let s = two_keys();
    set(&s, &["primary", "--endpoint", "https://a.example.com"]);
    let before = std::fs::read(s.config_file()).unwrap();
    let refusals: [(&[&str], &str); 10] = [
        (
            &["primary"],
            "nothing to set for primary: give --endpoint URL or --no-endpoint, and/or --cooldown DURATION or --no-cooldown",
        ),
        (
            &["nope", "--cooldown", "2h"],
            "there is no key named nope: the keys are primary, fallback",
        ),
        (
            &["primary", "--endpoint", "ftp://x.example.com"],
            "is not an http(s) URL",
        ),
        (
            &["primary", "--endpoint", "https://u:pw@x.example.com"],
            "carries a user name or password",
        ),
        (
            &["primary", "--endpoint", "https://x.example.com/?a=b"],
            "has a query or fragment",
        ),
        (&["primary", "--cooldown", "0s"], "0s"),
        (&["primary", "--cooldown", "5"], "has no unit"),
        (&["primary", "--cooldown", "-5m"], "-5m"),
        (
            &[
                "primary",
                "--endpoint",
                "https://b.example.com",
                "--no-endpoint",
            ],
            "cannot be used with",
        ),
        (
            &["primary", "--cooldown", "1h", "--no-cooldown"],
            "cannot be used with",
        ),
    ];
    for (args, why) in refusals {
        let (code, said) = set(&s, args);
        assert_eq!(code, Some(2), "{args:?}: {said}");
        assert!(said.contains(why), "{args:?}: {said}");
        assert_eq!(said.lines().count(), 1, "{args:?}: {said}");
        assert_eq!(std::fs::read(s.config_file()).unwrap(), before, "{args:?}");
    }
    assert!(set(&s, &["primary"]).1.contains("--no-cooldown"));
    assert_eq!(s.events("set").len(), 1);
}

#[test]
fn add_replace_and_add_say_the_options_they_were_given() {
    let s = Sandbox::new();
    s.cmd()
        .args(["add", "primary", "--cooldown", "5h"])
        .write_stdin(fake_key("one"))
        .assert()
        .success()
        .stderr(predicate::str::ends_with("; cooldown 5h\n"));
    s.cmd()
        .args(["add", "primary", "--replace"])
        .args(["--endpoint", "https://a.example.com", "--cooldown", "5h"])
        .write_stdin(fake_key("new"))
        .assert()
        .success()
        .stderr(predicate::str::ends_with(
            "; endpoint default (Claude Code's own base URL) → https://a.example.com; cooldown 5h (unchanged)\n",
        ));
    // Without options, nothing about them.
    s.cmd()
        .args(["add", "primary", "--replace"])
        .write_stdin(fake_key("newer"))
        .assert()
        .success()
        .stderr(predicate::str::contains("endpoint").not());
}

/// Helper mode: `env.ANTHROPIC_BASE_URL` follows the active key's endpoint as `set` changes it,
/// and goes when no key has one.
#[test]
fn helper_mode_settings_follow_an_endpoint_change_of_the_active_key() {
    let s = two_keys();
    s.cmd().args(["install", "--helper"]).assert().success();
    let base_url = |s: &Sandbox| {
        s.settings()["env"]["ANTHROPIC_BASE_URL"]
            .as_str()
            .map(str::to_string)
    };
    assert_eq!(base_url(&s), None);
    set(&s, &["primary", "--endpoint", "https://a.example.com"]);
    assert_eq!(base_url(&s).as_deref(), Some("https://a.example.com"));
    set(&s, &["primary", "--endpoint", "https://b.example.com"]);
    assert_eq!(base_url(&s).as_deref(), Some("https://b.example.com"));
    // Another key's endpoint is not the active key's.
    set(&s, &["fallback", "--endpoint", "https://f.example.com"]);
    assert_eq!(base_url(&s).as_deref(), Some("https://b.example.com"));
    set(&s, &["primary", "--no-endpoint"]);
    assert_eq!(base_url(&s), None);
    set(&s, &["fallback", "--no-endpoint"]);
    assert_eq!(base_url(&s), None);
    s.cmd().arg("uninstall").assert().success();
}

/// Proxy mode: the proxy reads the changed config on its next request; an endpoint that is the
/// proxy itself is refused, as `add` refuses it.
#[test]
fn proxy_mode_sends_the_next_request_to_the_new_endpoint() {
    let first = Upstream::start(|r| Reply::ok(&r.key));
    let second = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&first.url(), &[("primary", &[])]);
    let token = p.token();
    assert_eq!(p.send(&token, BODY).status, 200);
    assert_eq!((first.requests().len(), second.requests().len()), (1, 0));

    let before = std::fs::read(p.s.config_file()).unwrap();
    let (code, said) = set(&p.s, &["primary", "--endpoint", &p.base_url()]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("the keyswitch proxy's own address"), "{said}");
    assert_eq!(std::fs::read(p.s.config_file()).unwrap(), before);
    // The same address, IPv4-mapped.
    let mapped = p.base_url().replace("127.0.0.1", "[::ffff:127.0.0.1]");
    let (code, said) = set(&p.s, &["primary", "--endpoint", &mapped]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("the keyswitch proxy's own address"), "{said}");
    assert_eq!(std::fs::read(p.s.config_file()).unwrap(), before);

    let (code, said) = set(&p.s, &["primary", "--endpoint", &second.url()]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("the proxy's upstream) → http://127.0.0.1:"),
        "{said}"
    );
    assert_eq!(p.send(&token, BODY).status, 200);
    assert_eq!((first.requests().len(), second.requests().len()), (1, 1));
    assert_eq!(second.keys(), [fake_key("primary")]);
}
