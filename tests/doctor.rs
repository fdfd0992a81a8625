//! `keyswitch doctor` runs the chain for real and exits 1 on whatever would fail a turn: a proxy
//! that cannot read the keychain, managed settings that override keyswitch's base URL, every
//! key cooling, an upstream that cannot be reached (nothing listening, or no TLS), an
//! `HTTPS_PROXY` that would carry the proxy's traffic; it names a subscription login the helper
//! overrides, prints JSON for scripts, and passes when all is well.
//! Linux only, like the private Secret Service and the TLS stand-ins the tests use.
#![cfg(target_os = "linux")]

mod common;
#[path = "common/network.rs"]
mod network;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::proxy_box::{ProxyBox, free_port};
use common::upstream::{Reply, Upstream};
use common::{Sandbox, fake_key};
use network::{Pki, TlsUpstream};
use serde_json::Value;

/// What doctor printed, and its exit code.
struct Told {
    code: i32,
    text: String,
}

impl Told {
    #[track_caller]
    fn has(&self, part: &str) {
        assert!(
            self.text.contains(part),
            "doctor did not say {part:?}:\n{}",
            self.text
        );
    }

    /// The one FIX line that contains `part`.
    #[track_caller]
    fn fix_line(&self, part: &str) -> &str {
        self.text
            .lines()
            .find(|l| l.starts_with("FIX") && l.contains(part))
            .unwrap_or_else(|| panic!("no FIX line with {part:?}:\n{}", self.text))
    }
}

fn doctor(s: &Sandbox, env: &[(&str, &str)]) -> Told {
    let out = s
        .cmd()
        .arg("doctor")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    Told {
        code: out.status.code().unwrap_or(-1),
        text: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// PATH with this keyswitch first, so doctor finds itself there.
fn path_with_keyswitch() -> String {
    let bindir = assert_cmd::cargo::cargo_bin("keyswitch")
        .parent()
        .unwrap()
        .display()
        .to_string();
    format!("{bindir}:/usr/bin:/bin")
}

/// Helper mode with one key tied to a TLS gateway the sandbox trusts (through SSL_CERT_FILE).
fn helper_on_tls_gateway() -> (Sandbox, Pki, TlsUpstream) {
    let pki = Pki::new();
    let gateway = TlsUpstream::http1(&pki);
    let s = Sandbox::new();
    s.add(
        "primary",
        &fake_key("one"),
        &["--endpoint", &gateway.url("127.0.0.1")],
    );
    s.cmd().args(["install", "--helper"]).assert().success();
    (s, pki, gateway)
}

#[test]
fn a_doctor_that_finds_nothing_wrong_exits_0_and_checked_the_gateway() {
    let (s, pki, gateway) = helper_on_tls_gateway();
    let ca = pki.ca_file().display().to_string();
    let told = doctor(
        &s,
        &[("PATH", &path_with_keyswitch()), ("SSL_CERT_FILE", &ca)],
    );
    assert_eq!(told.code, 0, "{}", told.text);
    told.has(&format!(
        "ok    {} answers (primary)",
        gateway.url("127.0.0.1")
    ));
    told.has("keyswitch is ready");
    // Only a handshake: no request reached the gateway.
    assert!(gateway.requests().is_empty());
}

#[test]
fn json_has_ok_and_one_finding_per_line() {
    let (s, pki, _gateway) = helper_on_tls_gateway();
    let ca = pki.ca_file().display().to_string();
    let out = s
        .cmd()
        .args(["doctor", "--json"])
        .env("PATH", path_with_keyswitch())
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    assert_eq!(report["ok"], true);
    let findings = report["findings"].as_array().unwrap();
    assert!(findings.iter().all(|f| {
        ["ok", "fix", "info"].contains(&f["level"].as_str().unwrap())
            && f["check"].is_string()
            && f["message"].is_string()
    }));
    assert!(
        findings
            .iter()
            .any(|f| f["check"] == "upstreams" && f["level"] == "ok"),
        "{report}"
    );

    // A problem: ok is false, the finding carries its fix, and the exit code is 1.
    let out = s
        .cmd()
        .args(["doctor", "--json"])
        .env("PATH", path_with_keyswitch())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let fix = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["level"] == "fix")
        .expect("a fix");
    assert_eq!(fix["check"], "upstreams", "{report}");
    assert!(
        fix["fix"].as_str().unwrap().contains("--endpoint"),
        "{report}"
    );
}

#[test]
fn an_endpoint_where_nothing_listens_is_named_with_its_key() {
    let s = Sandbox::new();
    let closed = format!("https://127.0.0.1:{}", free_port());
    s.add("primary", &fake_key("one"), &["--endpoint", &closed]);
    s.cmd().args(["install", "--helper"]).assert().success();
    let told = doctor(&s, &[]);
    assert_eq!(told.code, 1);
    let line = told.fix_line(&closed);
    assert!(line.contains("the upstream of primary"), "{line}");
    assert!(line.contains("connection refused"), "{line}");
}

#[test]
fn a_tls_endpoint_that_never_speaks_tls_fails_within_the_bound() {
    let s = Sandbox::new();
    // Accepts connections (the kernel does) and never answers the handshake.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://127.0.0.1:{}", silent.local_addr().unwrap().port());
    s.add("primary", &fake_key("one"), &["--endpoint", &url]);
    s.add("fallback", &fake_key("two"), &["--endpoint", &url]);
    s.cmd().args(["install", "--helper"]).assert().success();
    let started = Instant::now();
    let told = doctor(&s, &[]);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(told.code, 1);
    let line = told.fix_line(&url);
    assert!(line.contains("primary, fallback"), "{line}");
    assert!(line.contains("no TLS handshake within 3s"), "{line}");
}

#[test]
fn a_proxy_that_cannot_read_the_keychain_fails_doctor() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    p.s.cmd().args(["proxy", "stop"]).assert().success();
    // Started by a `get` from a shell without the session's D-Bus, as over ssh.
    p.s.cmd()
        .arg("get")
        .env("ANTHROPIC_BASE_URL", p.base_url())
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .assert()
        .success();
    let told = doctor(&p.s, &[]);
    assert_eq!(told.code, 1, "{}", told.text);
    let line = told.fix_line("cannot read the keychain");
    assert!(
        line.contains("keyswitch proxy restart from a shell that has the keychain"),
        "{line}"
    );
}

#[test]
fn proxy_mode_under_a_managed_base_url_is_a_fix_that_says_what_can_work() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let managed = p.s.dir.path().join("etc/managed-settings.json");
    std::fs::create_dir_all(managed.parent().unwrap()).unwrap();
    std::fs::write(
        &managed,
        r#"{"env": {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}}"#,
    )
    .unwrap();
    let managed_path = managed.display().to_string();
    let told = doctor(&p.s, &[("KEYSWITCH_TEST_MANAGED_SETTINGS", &managed_path)]);
    assert_eq!(told.code, 1, "{}", told.text);
    let line = told.fix_line("sessions never reach the proxy");
    assert!(line.contains(&managed_path), "{line}");
    assert!(line.contains("keyswitch install --helper"), "{line}");
    assert!(line.contains("--endpoint http://127.0.0.1:9"), "{line}");
    assert!(line.contains("ask IT"), "{line}");

    // A fragment in managed-settings.d that turns hooks off is read too (proxy mode: only said).
    let drop_in = managed.with_file_name("managed-settings.d");
    std::fs::create_dir_all(&drop_in).unwrap();
    std::fs::write(
        drop_in.join("50-hooks.json"),
        r#"{"disableAllHooks": true}"#,
    )
    .unwrap();
    let told = doctor(&p.s, &[("KEYSWITCH_TEST_MANAGED_SETTINGS", &managed_path)]);
    told.has("with managed-settings.d) sets disableAllHooks");

    // Without the override there are none on this machine's test run.
    let told = doctor(&p.s, &[]);
    assert!(
        !told.text.contains("sessions never reach the proxy"),
        "{}",
        told.text
    );
}

#[test]
fn every_key_cooling_is_a_fix_that_says_when_the_first_returns() {
    let (s, pki, _gateway) = helper_on_tls_gateway();
    s.add("fallback", &fake_key("two"), &[]);
    for (name, hours) in [("primary", "3h"), ("fallback", "2h")] {
        s.cmd()
            .args(["mark-exhausted", name, "--for", hours])
            .assert()
            .success();
    }
    let ca = pki.ca_file().display().to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let default = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let told = doctor(
        &s,
        &[("SSL_CERT_FILE", &ca), ("ANTHROPIC_BASE_URL", &default)],
    );
    assert_eq!(told.code, 1, "{}", told.text);
    told.has("info  primary is cooling down until");
    let line = told.fix_line("no key is usable");
    assert!(line.contains("(in 2h)"), "{line}");

    s.cmd().args(["reset", "fallback"]).assert().success();
    let told = doctor(
        &s,
        &[("SSL_CERT_FILE", &ca), ("ANTHROPIC_BASE_URL", &default)],
    );
    assert!(!told.text.contains("no key is usable"), "{}", told.text);
    told.has("ok    1 of 2 key(s) ready");
}

#[test]
fn an_https_proxy_without_no_proxy_for_the_proxy_is_a_fix() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    // Covered while the settings' env keeps the NO_PROXY install added.
    let told = doctor(&p.s, &[("HTTPS_PROXY", "http://127.0.0.1:9")]);
    assert!(!told.text.contains("do not cover"), "{}", told.text);
    let mut settings = p.s.settings();
    let env = settings["env"].as_object_mut().unwrap();
    env.remove("NO_PROXY");
    env.remove("no_proxy");
    std::fs::write(p.s.settings_file(), settings.to_string()).unwrap();
    let told = doctor(&p.s, &[("HTTPS_PROXY", "http://127.0.0.1:9")]);
    assert_eq!(told.code, 1, "{}", told.text);
    let line = told.fix_line("HTTPS_PROXY is set and NO_PROXY/no_proxy do not cover");
    assert!(line.contains(&format!("127.0.0.1:{}", p.port)), "{line}");
}

#[test]
fn a_subscription_login_is_named_as_billed_to_the_keys() {
    let (s, pki, _gateway) = helper_on_tls_gateway();
    let ca = pki.ca_file().display().to_string();
    let told = doctor(&s, &[("SSL_CERT_FILE", &ca)]);
    assert!(!told.text.contains("subscription login"), "{}", told.text);
    let login = s.claude_dir().join(".credentials.json");
    std::fs::write(
        &login,
        r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-test-x"}}"#,
    )
    .unwrap();
    let told = doctor(&s, &[("SSL_CERT_FILE", &ca)]);
    told.has(&format!(
        "info  a Claude subscription login is here ({})",
        login.display()
    ));
    told.has("billed to them");
    assert!(!told.text.contains("sk-ant-oat01"), "{}", told.text);
    let told = doctor(
        &s,
        &[
            ("SSL_CERT_FILE", &ca),
            ("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-test-y"),
        ],
    );
    told.has("CLAUDE_CODE_OAUTH_TOKEN is set");
}

#[test]
fn proxy_status_and_doctor_name_each_keys_upstream() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let gateway = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(
        &up.url(),
        &[
            ("primary", &["--endpoint", &gateway.url()]),
            ("fallback", &[]),
        ],
    );
    p.token();
    let each = format!("primary → {}, fallback → {}", gateway.url(), up.url());
    let out = p.s.cmd().args(["proxy", "status"]).output().unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains(&format!("forwarding {each}")), "{status}");
    let told = doctor(&p.s, &[]);
    told.has(&format!("which forwards {each}"));
    // Both loopback upstreams were looked at, and said to answer.
    told.has(&format!("ok    the proxy's upstream {} answers", up.url()));
    told.has(&format!(
        "ok    primary's endpoint {} answers",
        gateway.url()
    ));
}

#[test]
fn without_a_secret_service_doctor_shows_the_routes_and_the_exact_config_line() {
    let s = Sandbox::new();
    let told = doctor(
        &s,
        &[("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")],
    );
    assert_eq!(told.code, 1);
    let line = told.fix_line("no Secret Service answers");
    assert!(line.contains("dbus-run-session -- sh -c"), "{line}");
    // The sandbox's config file exists (it names the test's keychain service): the line to add.
    assert!(
        line.contains(&format!(
            "add the line \"store\": \"keyutils\", right after the opening {{ of {}",
            s.config_file().display()
        )),
        "{line}"
    );
}

/// Helper mode, the user's own base URL in the settings, and the key without an endpoint active
/// (keyswitch put the user's base URL back): that key goes to the user's gateway, as `get` and
/// `list` say — not to the public API, which doctor must not call unreachable.
#[test]
fn helper_mode_checks_the_users_own_base_url_while_a_key_without_an_endpoint_is_active() {
    let own = Upstream::start(|r| Reply::ok(&r.key));
    let other = Upstream::start(|r| Reply::ok(&r.key));
    let s = Sandbox::new();
    std::fs::create_dir_all(s.claude_dir()).unwrap();
    std::fs::write(
        s.settings_file(),
        format!(
            "{{\"env\": {{\"ANTHROPIC_BASE_URL\": \"{}\"}}}}\n",
            own.url()
        ),
    )
    .unwrap();
    s.add("primary", &fake_key("one"), &["--endpoint", &other.url()]);
    s.add("fallback", &fake_key("two"), &[]);
    s.cmd().args(["install", "--helper"]).assert().success();
    s.cmd()
        .args(["mark-exhausted", "primary", "--for", "2h"])
        .assert()
        .success();
    assert_eq!(s.settings()["env"]["ANTHROPIC_BASE_URL"], own.url());
    let told = doctor(&s, &[("PATH", &path_with_keyswitch())]);
    told.has(&format!("ok    {} answers (fallback)", own.url()));
    assert!(!told.text.contains("api.anthropic.com"), "{}", told.text);
}

/// Run from the home folder, `~/.claude/settings.json` is both the user settings and the home
/// "project"'s: keyswitch's own base URL there is no project override to remove.
#[test]
fn doctor_in_the_home_folder_does_not_take_the_user_settings_for_a_project_override() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let home = p.s.claude_dir().parent().unwrap().join("home-as-project");
    std::fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::symlink(p.s.claude_dir(), home.join(".claude")).unwrap();
    let out = p.s.cmd().arg("doctor").current_dir(&home).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("which wins over the endpoint keyswitch sets"),
        "{text}"
    );
    // A real project file in that folder is still read.
    std::fs::write(
        home.join(".claude/settings.local.json"),
        "{\"env\": {\"ANTHROPIC_BASE_URL\": \"https://elsewhere.example.net\"}}",
    )
    .unwrap();
    let out = p.s.cmd().arg("doctor").current_dir(&home).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("settings.local.json sets ANTHROPIC_BASE_URL"),
        "{text}"
    );
}
