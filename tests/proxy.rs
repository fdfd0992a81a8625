//! Proxy mode, end to end through the real binary: `install --proxy`, `get` starting the proxy,
//! and requests through it to loopback stand-ins that answer per key — failover on each class of
//! answer, what is passed through untouched, the token, per-key endpoints, streaming, and the
//! proxy's lifecycle. The keys live in the private Secret Service.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::core_dumps::{core_files, cores_land_in_the_working_folder, with_core_dumps_allowed};
use common::proxy_box::{BODY, ProxyBox, block, client, free_port, install_proxy, send};
use common::upstream::{Reply, Upstream};
use common::{Sandbox, fake_key};
use predicates::prelude::*;
use serde_json::Value;

/// A stand-in where the primary's key gets `primary` and every other key a 200 naming it.
fn stand_in(primary: impl Fn() -> Reply + Send + Sync + 'static) -> Upstream {
    let primary_key = fake_key("primary");
    Upstream::start(move |r| {
        if r.key == primary_key {
            primary()
        } else {
            Reply::ok(&r.key)
        }
    })
}

fn mark_events(s: &Sandbox) -> Vec<Value> {
    s.events("mark")
}

#[test]
fn a_spent_primary_is_answered_from_the_fallback_in_the_same_request() {
    let up = stand_in(|| Reply::rate_limited(Some("7200")));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    let token = p.token();
    assert!(token.starts_with("ksp-"), "{token}");
    assert!(!token.contains("sk-ant"));

    let answer = p.send(&token, BODY);
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(String::from_utf8_lossy(&answer.body).contains(&fake_key("fallback")));
    // The stand-in saw the primary's 429, then the same bytes from the fallback.
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].key, fake_key("primary"));
    assert_eq!(seen[1].key, fake_key("fallback"));
    assert_eq!(seen[0].body, BODY);
    assert_eq!(seen[1].body, BODY);
    assert_eq!(seen[1].path, "/v1/messages?beta=true");
    // Exactly the headers Claude Code put the token in now carry the secret; nothing else moved.
    assert_eq!(
        seen[1].header("x-api-key"),
        Some(fake_key("fallback").as_str())
    );
    assert_eq!(
        seen[1].header("authorization"),
        Some(format!("Bearer {}", fake_key("fallback")).as_str())
    );
    assert_eq!(seen[1].header("anthropic-version"), Some("2023-06-01"));

    // The primary cools until the reset the upstream gave; the log says why and for whom.
    wait_for("the mark to be written", || {
        p.s.list_json()[0]["state"] == "cooling"
    });
    let left = p.s.seconds_left(0);
    assert!((7100..=7200).contains(&left), "{left}");
    let marks = mark_events(&p.s);
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(marks[0]["reason"], "proxy:rate_limit");
    assert_eq!(marks[0]["session_id"], "0b1f2c3d-test-session");
    assert_eq!(
        common::active(&p.s.list_json()).as_deref(),
        Some("fallback")
    );

    // The next request goes straight to the fallback: the spent key is not paid for again.
    assert_eq!(p.send(&token, BODY).status, 200);
    assert_eq!(up.keys().len(), 3);
    assert_eq!(up.keys()[2], fake_key("fallback"));
}

#[test]
fn a_per_minute_limit_cools_for_exactly_as_long_as_the_upstream_said() {
    let up = stand_in(|| Reply::rate_limited(Some("20")));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    let token = p.token();
    assert_eq!(p.send(&token, BODY).status, 200);
    wait_for("the mark", || p.s.list_json()[0]["state"] == "cooling");
    let left = p.s.seconds_left(0);
    assert!((15..=20).contains(&left), "{left}");
}

#[test]
fn a_429_without_a_reset_uses_the_configured_rate_limit_cooldown() {
    let up = stand_in(|| Reply::rate_limited(None));
    let p = ProxyBox::new(
        &up.url(),
        &[("primary", &["--cooldown", "3h"]), ("fallback", &[])],
    );
    assert_eq!(p.send(&p.token(), BODY).status, 200);
    wait_for("the mark", || p.s.list_json()[0]["state"] == "cooling");
    let left = p.s.seconds_left(0);
    assert!((3 * 3600 - 60..=3 * 3600).contains(&left), "{left}");
}

#[test]
fn credit_balance_too_low_fails_over_and_other_400s_pass_untouched() {
    let billing = r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}"#;
    let up = stand_in(move || Reply::json(400, billing));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    let token = p.token();
    assert_eq!(p.send(&token, BODY).status, 200);
    wait_for("the mark", || p.s.list_json()[0]["state"] == "cooling");
    let left = p.s.seconds_left(0);
    assert!(left > 11 * 3600, "the billing cooldown is 12 h: {left}");
    assert_eq!(mark_events(&p.s)[0]["reason"], "proxy:billing_error");
    // Never paid for again meanwhile.
    p.send(&token, BODY);
    assert_eq!(
        up.keys()
            .iter()
            .filter(|k| **k == fake_key("primary"))
            .count(),
        1
    );

    let invalid = r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: 1000000 > 64000"}}"#;
    let up = stand_in(move || Reply::json(400, invalid).with_header("request-id", "req_1"));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    let answer = p.send(&p.token(), BODY);
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body, invalid.as_bytes());
    assert_eq!(answer.headers["request-id"], "req_1");
    assert_eq!(up.keys(), vec![fake_key("primary")]);
    assert!(mark_events(&p.s).is_empty());
}

#[test]
fn a_rejected_key_is_set_aside_and_server_errors_pass_through() {
    let up = stand_in(|| {
        Reply::json(
            401,
            r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
        )
    });
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    assert_eq!(p.send(&p.token(), BODY).status, 200);
    wait_for("the mark", || p.s.list_json()[0]["state"] == "rejected");

    for status in [500u16, 529, 404] {
        let up = stand_in(move || {
            Reply::json(
                status,
                r#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#,
            )
        });
        let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
        let answer = p.send(&p.token(), BODY);
        assert_eq!(answer.status, status);
        assert_eq!(up.keys(), vec![fake_key("primary")], "{status}");
        assert!(mark_events(&p.s).is_empty(), "{status}");
    }
}

#[test]
fn with_every_key_out_the_proxy_answers_when_the_first_returns_and_sends_nothing() {
    let up = Upstream::start(|_| Reply::rate_limited(Some("3600")));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    let token = p.token();
    // Both keys run out within this one request.
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 429);
    assert_eq!(up.keys().len(), 2);
    let json = answer.json();
    assert_eq!(json["type"], "error");
    assert_eq!(json["error"]["type"], "rate_limit_error");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains("primary returns first"), "{message}");
    let retry: u64 = answer.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3500..=3600).contains(&retry), "{retry}");
    assert_eq!(answer.headers["x-should-retry"], "false");

    // Later requests are answered by the proxy alone.
    wait_for("both marks", || mark_events(&p.s).len() == 2);
    let again = p.send(&token, BODY);
    assert_eq!(again.status, 429);
    assert_eq!(up.keys().len(), 2);
}

#[test]
fn requests_without_the_token_are_refused_and_never_forwarded() {
    let up = stand_in(|| Reply::ok("primary"));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let token = p.token();
    // The real token with its last digit changed (to another digit, always).
    let last = if token.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &token[..token.len() - 1]);
    assert_ne!(wrong, token);
    for bad in ["", "sk-ant-test-guess", wrong.as_str()] {
        let answer = p.send(bad, BODY);
        assert_eq!(answer.status, 401, "{bad}");
        assert_eq!(answer.json()["error"]["type"], "authentication_error");
    }
    // The right token in one header and a wrong one in the other is refused too.
    let mixed = send(
        &p.base_url(),
        &token,
        BODY,
        &[("x-api-key", "sk-ant-test-other")],
    );
    assert_eq!(mixed.status, 401);
    assert!(up.requests().is_empty());
    assert_eq!(p.send(&token, BODY).status, 200);
}

#[test]
fn paths_that_climb_out_of_the_upstreams_prefix_are_refused() {
    let up = stand_in(|| Reply::ok("primary"));
    let p = ProxyBox::new(&format!("{}/prefix", up.url()), &[("primary", &[])]);
    let token = p.token();
    // Sent as raw bytes: an HTTP client library would tidy these paths before sending them.
    for path in ["/v1/../../x", "/v1/%2e%2E/x", "/v1\\..\\..\\x"] {
        let answer = p.send_raw(&format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nx-api-key: {token}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
        ));
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
    }
    assert!(up.requests().is_empty(), "{:?}", up.requests());
    assert_eq!(p.send(&token, BODY).status, 200);
}

#[test]
fn trace_is_never_forwarded_in_any_spelling() {
    // An upstream that answers TRACE echoes the request back, with the key the proxy put in;
    // IIS does the same for TRACK, and a lenient server for either in lower case.
    let up = stand_in(|| Reply::ok("primary"));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let token = p.token();
    for method in ["TRACE", "TRACK", "trace", "track", "Trace", "DEBUG"] {
        let answer = p.send_raw(&format!(
            "{method} /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {token}\r\nconnection: close\r\n\r\n"
        ));
        assert!(answer.starts_with("HTTP/1.1 405"), "{method}: {answer}");
    }
    assert!(up.requests().is_empty(), "{:?}", up.requests());
    assert_eq!(p.send(&token, BODY).status, 200);
}

#[test]
fn a_large_body_is_resent_byte_for_byte() {
    let up = stand_in(|| Reply::rate_limited(Some("600")));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    // 6 MB that is not valid UTF-8 and has every byte value: passed through, never decoded.
    let body: Vec<u8> = (0..6 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let answer = p.send(&p.token(), &body);
    assert_eq!(answer.status, 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].body == body && seen[1].body == body);
}

#[test]
fn forty_concurrent_requests_fail_over_together_with_one_mark() {
    let up = stand_in(|| Reply::rate_limited(Some("3600")));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    let token = p.token();
    let base = p.base_url();
    let statuses: Vec<u16> = block(async {
        let client = client();
        let requests = (0..40).map(|_| {
            client
                .post(format!("{base}/v1/messages"))
                .header("x-api-key", &token)
                .body(BODY)
                .send()
        });
        let mut out = Vec::new();
        for r in futures_join(requests.collect()).await {
            out.push(r.unwrap().status().as_u16());
        }
        out
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    wait_for("the mark", || !mark_events(&p.s).is_empty());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(mark_events(&p.s).len(), 1);
    let fallback_answers = up
        .keys()
        .iter()
        .filter(|k| **k == fake_key("fallback"))
        .count();
    assert_eq!(fallback_answers, 40);
}

/// Runs futures concurrently on the current runtime.
async fn futures_join<F: std::future::Future + Send + 'static>(futures: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[test]
fn server_sent_events_stream_through_as_they_are_sent() {
    let events: Vec<String> = (0..4)
        .map(|i| format!("event: content_block_delta\ndata: {{\"i\":{i}}}\n\n"))
        .collect();
    let sent = events.clone();
    let up = Upstream::start(move |_| Reply::Sse {
        events: sent.clone(),
        gap: Duration::from_millis(300),
    });
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let token = p.token();
    let base = p.base_url();
    let arrivals: Vec<(Duration, Vec<u8>)> = block(async {
        let start = Instant::now();
        let mut response = client()
            .post(format!("{base}/v1/messages"))
            .header("x-api-key", &token)
            .body(BODY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut arrivals = Vec::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            arrivals.push((start.elapsed(), chunk.to_vec()));
        }
        arrivals
    });
    let all: Vec<u8> = arrivals.iter().flat_map(|(_, c)| c.clone()).collect();
    assert_eq!(all, events.concat().into_bytes());
    // Each event arrives on its own, as the upstream paced them: nothing is held back. (Spans
    // between arrivals, not absolute times, so a busy machine cannot fail this.)
    assert_eq!(arrivals.len(), events.len(), "{arrivals:?}");
    let span = arrivals.last().unwrap().0 - arrivals[0].0;
    assert!(span >= Duration::from_millis(600), "{span:?}");
}

#[test]
fn a_keys_secret_only_ever_goes_to_its_own_endpoint() {
    let company = Upstream::start(|_| Reply::rate_limited(Some("3600")));
    let own = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(
        &own.url(),
        &[
            ("primary", &["--endpoint", &company.url()]),
            ("fallback", &[]),
        ],
    );
    let answer = p.send(&p.token(), BODY);
    assert_eq!(answer.status, 200);
    assert_eq!(company.keys(), vec![fake_key("primary")]);
    assert_eq!(own.keys(), vec![fake_key("fallback")]);
}

#[test]
fn an_unreachable_upstream_is_passed_over_for_a_key_elsewhere_and_named_when_none_is_left() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let own = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(
        &own.url(),
        &[("primary", &["--endpoint", &dead]), ("fallback", &[])],
    );
    let token = p.token();
    assert_eq!(p.send(&token, BODY).status, 200);
    assert_eq!(own.keys(), vec![fake_key("fallback")]);
    // A network fault is not the key's fault.
    assert!(mark_events(&p.s).is_empty());
    assert_eq!(p.s.list_json()[0]["state"], "ready");

    // The proxy's own upstream gone since install (install refuses one that is dead then).
    let p = ProxyBox::new(&own.url(), &[("primary", &["--endpoint", &dead])]);
    let answer = p.send(&p.token(), BODY);
    assert_eq!(answer.status, 502);
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("127.0.0.1:") && message.contains("connection refused"),
        "{message}"
    );
}

#[test]
fn cli_changes_apply_to_the_very_next_request() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    let token = p.token();
    p.send(&token, BODY);
    p.s.cmd()
        .args(["mark-exhausted", "primary", "--for", "1h"])
        .assert()
        .success();
    p.send(&token, BODY);
    p.s.cmd().args(["reset", "primary"]).assert().success();
    p.send(&token, BODY);
    p.s.cmd().args(["move", "fallback", "1"]).assert().success();
    p.send(&token, BODY);
    p.s.cmd()
        .args(["add", "fallback", "--replace"])
        .write_stdin("sk-ant-test-new-fallback-secret\n")
        .assert()
        .success();
    p.send(&token, BODY);
    assert_eq!(
        up.keys(),
        vec![
            fake_key("primary"),
            fake_key("fallback"),
            fake_key("primary"),
            fake_key("fallback"),
            "sk-ant-test-new-fallback-secret".to_string(),
        ]
    );
}

#[test]
fn get_starts_the_proxy_again_after_stop_and_after_kill() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let token = p.token();
    let first = p.proxy_status();
    assert_eq!(first["running"], true);
    assert_eq!(first["version"], env!("CARGO_PKG_VERSION"));

    p.s.cmd().args(["proxy", "stop"]).assert().success();
    assert_eq!(p.proxy_status()["running"], false);
    assert_eq!(p.token(), token);
    let second = p.proxy_status();
    assert_eq!(second["running"], true);
    assert_ne!(second["pid"], first["pid"]);

    let pid = second["pid"].as_u64().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap();
    wait_for("the proxy to die", || p.proxy_status()["running"] == false);
    assert_eq!(p.token(), token);
    assert_eq!(p.send(&token, BODY).status, 200);
}

#[test]
fn concurrent_gets_end_with_exactly_one_proxy() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    p.s.cmd().args(["proxy", "stop"]).assert().success();
    let children: Vec<_> = (0..8)
        .map(|_| {
            p.s.std_cmd()
                .arg("get")
                .env("ANTHROPIC_BASE_URL", p.base_url())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let tokens: Vec<String> = outputs
        .iter()
        .map(|o| {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        })
        .collect();
    assert!(tokens.windows(2).all(|w| w[0] == w[1]));
    // Exactly one keyswitch proxy process for this sandbox's state folder.
    let state = p.s.state_dir();
    let running = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path().join("cwd")).ok().as_deref() == Some(state.as_path())
                && std::fs::read(e.path().join("cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains("proxy\0run"))
                    .unwrap_or(false)
        })
        .count();
    assert_eq!(running, 1);
}

#[test]
fn a_port_held_by_another_program_fails_get_within_seconds_and_names_it() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    p.s.cmd().args(["proxy", "stop"]).assert().success();
    // Something else takes the port: it accepts and never answers.
    let squatter = TcpListener::bind(("127.0.0.1", p.port)).unwrap();
    let start = Instant::now();
    let out =
        p.s.cmd()
            .arg("get")
            .env("ANTHROPIC_BASE_URL", p.base_url())
            .output()
            .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{}", p.port)) && err.contains("--listen"),
        "{err}"
    );
    drop(squatter);
}

#[test]
fn install_proxy_wires_the_settings_and_uninstall_restores_them() {
    let s = Sandbox::new();
    std::fs::create_dir_all(s.claude_dir()).unwrap();
    std::fs::write(
        s.settings_file(),
        r#"{"env": {"ANTHROPIC_BASE_URL": "https://llm-proxy.corp.test/anthropic"}, "model": "opus"}"#,
    )
    .unwrap();
    let original = s.settings();
    let port = free_port();
    s.add("primary", &fake_key("primary"), &[]);
    s.cmd()
        .args([
            "install",
            "--proxy",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .assert()
        .success();
    let settings = s.settings();
    assert_eq!(
        settings["env"]["ANTHROPIC_BASE_URL"],
        format!("http://127.0.0.1:{port}")
    );
    assert!(settings["apiKeyHelper"].as_str().unwrap().ends_with(" get"));
    assert!(settings["hooks"]["StopFailure"].is_array());
    let proxy: Value =
        serde_json::from_slice(&std::fs::read(s.config_dir().join("proxy.json")).unwrap()).unwrap();
    assert_eq!(proxy["upstream"], "https://llm-proxy.corp.test/anthropic");

    // Moving the proxy to another port stops the one on the old port.
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_err(),
        "install started the proxy"
    );
    let moved = free_port();
    s.cmd()
        .args([
            "install",
            "--proxy",
            "--listen",
            &format!("127.0.0.1:{moved}"),
        ])
        .assert()
        .success();
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "the old proxy stopped"
    );
    assert!(
        TcpListener::bind(("127.0.0.1", moved)).is_err(),
        "the new one runs"
    );
    assert_eq!(
        s.settings()["env"]["ANTHROPIC_BASE_URL"],
        format!("http://127.0.0.1:{moved}")
    );
    let proxy: Value =
        serde_json::from_slice(&std::fs::read(s.config_dir().join("proxy.json")).unwrap()).unwrap();
    assert_eq!(proxy["upstream"], "https://llm-proxy.corp.test/anthropic");

    // Back to helper mode: the user's base URL returns, the proxy stops.
    s.cmd().args(["install", "--helper"]).assert().success();
    assert_eq!(
        s.settings()["env"]["ANTHROPIC_BASE_URL"],
        "https://llm-proxy.corp.test/anthropic"
    );
    assert!(!s.config_dir().join("proxy.json").exists());
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "the proxy stopped"
    );

    s.cmd()
        .args([
            "install",
            "--proxy",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .assert()
        .success();
    s.cmd().arg("uninstall").assert().success();
    assert_eq!(s.settings(), original);
    assert!(!s.config_dir().join("proxy.json").exists());
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "the proxy stopped"
    );
}

#[test]
fn in_proxy_mode_the_hook_marks_nothing_and_get_refuses_other_endpoints() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    p.s.cmd()
        .args(["hook", "stop-failure"])
        .write_stdin(r#"{"session_id":"s1","hook_event_name":"StopFailure","error":"rate_limit"}"#)
        .assert()
        .success();
    assert!(mark_events(&p.s).is_empty());
    assert_eq!(p.s.list_json()[0]["state"], "ready");
    let ignored = p.s.events("hook-ignored");
    assert!(
        ignored[0]["detail"]
            .as_str()
            .unwrap()
            .contains("proxy mode")
    );

    // A session whose base URL is not the proxy never gets the token.
    let out =
        p.s.cmd()
            .arg("get")
            .env(
                "ANTHROPIC_BASE_URL",
                "https://user:pw@elsewhere.test/?token=x",
            )
            .output()
            .unwrap();
    assert!(!out.status.success() && out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hands its token only to a session talking to the proxy")
            && !err.contains("pw")
            && !err.contains("token=x"),
        "{err}"
    );
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn status_in_proxy_mode_claims_no_refresh_delay() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    p.s.cmd()
        .args(["mark-exhausted", "primary", "--for", "1s"])
        .assert()
        .success();
    std::thread::sleep(Duration::from_millis(2_100));
    let out = p.s.cmd().arg("status").output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    // The proxy uses the primary from its very next request: no helper refresh to wait for.
    assert!(line.starts_with("key: primary"), "{line}");
    assert!(!line.contains("running sessions"), "{line}");
    assert_eq!(p.send(&p.token(), BODY).status, 200);
    assert_eq!(up.keys(), vec![fake_key("primary")]);
}

#[test]
fn a_client_that_goes_away_cancels_its_upstream_request() {
    let events: Vec<String> = (0..100).map(|i| format!("data: {i}\n\n")).collect();
    let up = Upstream::start(move |_| Reply::Sse {
        events: events.clone(),
        gap: Duration::from_millis(50),
    });
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let (token, base) = (p.token(), p.base_url());
    block(async {
        let mut response = client()
            .post(format!("{base}/v1/messages"))
            .header("x-api-key", &token)
            .body(BODY)
            .send()
            .await
            .unwrap();
        assert!(response.chunk().await.unwrap().is_some());
        // The client hangs up after the first event, 5 s before the stream would end.
    });
    wait_for("the upstream stream to be cut off", || up.cut_off() == 1);
}

#[test]
fn doctor_reports_proxy_mode_and_a_squatted_port() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let out = p.s.cmd().arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "proxy mode: Claude Code talks to {}",
            p.base_url()
        )),
        "{text}"
    );
    assert!(text.contains("ok    the proxy runs on"), "{text}");

    p.s.cmd().args(["proxy", "stop"]).assert().success();
    let squatter = TcpListener::bind(("127.0.0.1", p.port)).unwrap();
    let out = p.s.cmd().arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "FIX   the keyswitch proxy's port 127.0.0.1:{} is held by another program or another user",
            p.port
        )),
        "{text}"
    );
    assert!(!out.status.success());
    drop(squatter);
}

#[test]
fn a_request_every_key_is_refused_passes_the_refusal_through_and_marks_nothing() {
    // A 403 that belongs to the request (a model this organisation may not use), not the key.
    let forbidden =
        r#"{"type":"error","error":{"type":"permission_error","message":"not for you"}}"#;
    let up = Upstream::start(move |_| Reply::json(403, forbidden));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    let answer = p.send(&p.token(), BODY);
    assert_eq!(answer.status, 403);
    assert_eq!(answer.body, forbidden.as_bytes());
    assert_eq!(up.keys().len(), 2);
    std::thread::sleep(Duration::from_millis(300));
    assert!(mark_events(&p.s).is_empty());
    let states: Vec<Value> = p.s.list_json().iter().map(|k| k["state"].clone()).collect();
    assert_eq!(states, ["ready", "ready"]);
}

#[test]
fn a_reinstall_after_damaged_proxy_settings_forwards_to_the_new_upstream() {
    let old = Upstream::start(|r| Reply::ok(&r.key));
    let new = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&old.url(), &[("primary", &[])]);
    let token = p.token();
    std::fs::write(p.s.config_dir().join("proxy.json"), "{\"listen\":").unwrap();
    p.s.cmd()
        .args([
            "install",
            "--proxy",
            "--listen",
            &format!("127.0.0.1:{}", p.port),
        ])
        .env("ANTHROPIC_BASE_URL", new.url())
        .assert()
        .success();
    assert_eq!(p.token(), token);
    assert_eq!(p.send(&token, BODY).status, 200);
    assert!(old.requests().is_empty(), "{:?}", old.keys());
    assert_eq!(new.keys(), vec![fake_key("primary")]);
}

#[test]
fn a_port_holder_that_trickles_bytes_fails_get_within_seconds() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    p.s.cmd().args(["proxy", "stop"]).assert().success();
    let squatter = TcpListener::bind(("127.0.0.1", p.port)).unwrap();
    std::thread::spawn(move || {
        for stream in squatter.incoming().flatten().take(8) {
            std::thread::spawn(move || {
                let mut stream = stream;
                let _ = std::io::Write::write_all(&mut stream, b"HTTP/1.1 200 OK\r\n");
                for _ in 0..100 {
                    std::thread::sleep(Duration::from_millis(200));
                    if std::io::Write::write_all(&mut stream, b"x: y\r\n").is_err() {
                        return;
                    }
                }
            });
        }
    });
    let start = Instant::now();
    let out =
        p.s.cmd()
            .arg("get")
            .env("ANTHROPIC_BASE_URL", p.base_url())
            .output()
            .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
    assert!(!out.status.success() && out.stdout.is_empty());
}

#[test]
fn without_proxy_settings_a_session_on_the_proxy_address_gets_no_real_key() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    // Stopped first: without its settings nothing would stop it at the end.
    p.s.cmd().args(["proxy", "stop"]).assert().success();
    std::fs::remove_file(p.s.config_dir().join("proxy.json")).unwrap();
    let out =
        p.s.cmd()
            .arg("get")
            .env("ANTHROPIC_BASE_URL", p.base_url())
            .output()
            .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "a key was printed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("install --proxy"));
    // doctor does not call that ready.
    let out = p.s.cmd().arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "FIX   this session's ANTHROPIC_BASE_URL, {}",
            p.base_url()
        )),
        "{text}"
    );
}

#[test]
fn install_refuses_the_proxy_as_its_own_upstream_and_keeps_the_port_on_a_rerun() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("primary"), &[]);
    let port = free_port();
    let out = s
        .cmd()
        .args([
            "install",
            "--proxy",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("ANTHROPIC_BASE_URL", format!("http://localhost:{port}/"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!s.config_dir().join("proxy.json").exists());

    let up = Upstream::start(|r| Reply::ok(&r.key));
    let install = |extra: &[&str]| {
        s.cmd()
            .args(["install", "--proxy"])
            .args(extra)
            .env("ANTHROPIC_BASE_URL", up.url())
            .assert()
            .success();
    };
    install(&["--listen", &format!("127.0.0.1:{port}")]);
    install(&[]);
    assert_eq!(
        s.settings()["env"]["ANTHROPIC_BASE_URL"],
        format!("http://127.0.0.1:{port}")
    );
    s.cmd().args(["proxy", "stop"]).assert().success();

    // Helper mode: the proxy commands say so instead of failing.
    s.cmd().args(["install", "--helper"]).assert().success();
    let out = s
        .cmd()
        .args(["proxy", "status", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["running"], false);
    s.cmd().args(["proxy", "stop"]).assert().success();
}

#[test]
fn an_answer_framed_both_by_chunks_and_by_length_reaches_the_client_as_the_chunks_say() {
    // Transfer-Encoding overrides Content-Length (RFC 9112 6.3), and a proxy must drop the
    // length before passing the message on: kept, it cut the answer short or, rebuilt whole,
    // told the client a length its body did not have.
    let up = Upstream::start(|r| {
        let status = if r.header("x-case") == Some("refused") {
            "401 Unauthorized"
        } else {
            "200 OK"
        };
        Reply::Raw(
            format!(
                "HTTP/1.1 {status}\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"
            )
            .into_bytes(),
        )
    });
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let token = p.token();
    for (case, status) in [("streamed", 200), ("refused", 401)] {
        let answer = send(&p.base_url(), &token, BODY, &[("x-case", case)]);
        assert_eq!(answer.status, status, "{case}");
        assert_eq!(answer.text(), "helloworld", "{case}");
    }
}

#[test]
fn a_request_naming_another_server_still_goes_only_to_the_keys_own_upstream() {
    let own = Upstream::start(|r| Reply::ok(&r.key));
    let other = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&format!("{}/prefix", own.url()), &[("primary", &[])]);
    let token = p.token();
    let other_host = other.url().trim_start_matches("http://").to_string();
    // Sent as raw bytes: an absolute-form target and a Host header, each naming another server.
    for (target, host) in [
        (format!("{}/v1/messages", other.url()), "x".to_string()),
        ("/v1/messages".to_string(), other_host.clone()),
    ] {
        let answer = p.send_raw(&format!(
            "POST {target} HTTP/1.1\r\nhost: {host}\r\nx-api-key: {token}\r\nproxy-authorization: Basic eDp5\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
        ));
        assert!(answer.starts_with("HTTP/1.1 200"), "{target}: {answer}");
    }
    assert!(other.requests().is_empty(), "{:?}", other.requests());
    let seen = own.requests();
    assert_eq!(seen.len(), 2);
    for request in seen {
        assert_eq!(request.path, "/prefix/v1/messages");
        assert_eq!(request.key, fake_key("primary"));
        assert_eq!(
            request.header("host"),
            Some(own.url().trim_start_matches("http://"))
        );
        assert_eq!(request.header("proxy-authorization"), None);
    }
}

/// The status of one request with the token, or `Err` when no answer came within 10 s (a proxy
/// that let the request wait in the kernel's queue).
fn status_within_10s(base: &str, token: &str) -> Result<u16, tokio::time::error::Elapsed> {
    block(async {
        let request = client()
            .post(format!("{base}/v1/messages"))
            .header("x-api-key", token)
            .body(BODY)
            .send();
        tokio::time::timeout(Duration::from_secs(10), request)
            .await
            .map(|r| r.unwrap().status().as_u16())
    })
}

#[test]
fn connections_held_open_without_the_token_do_not_lock_sessions_out() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let token = p.token();
    // Any local program may connect: more idle connections than the proxy's 512 slots, none
    // sending a byte, took every slot for two minutes at a time (and could again after that).
    let held: Vec<std::net::TcpStream> = (0..520)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status_within_10s(&p.base_url(), &token), Ok(200));
    assert_eq!(p.token(), token);
    drop(held);
}

#[cfg(unix)]
#[test]
fn sigterm_stops_the_proxy_even_while_sessions_hold_every_connection_slot() {
    use std::io::{Read, Write};
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let token = p.token();
    let pid = p.proxy_status()["pid"].as_u64().unwrap().to_string();
    // 512 keep-alive connections that each carried the token: none may be closed to make room,
    // so the proxy waits for a slot; a few more wait in the kernel's queue.
    let held: Vec<std::net::TcpStream> = (0..516)
        .map(|i| {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
            if i < 512 {
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                write!(
                    stream,
                    "GET /_keyswitch/health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: {token}\r\n\r\n"
                )
                .unwrap();
                let mut answer = [0u8; 1024];
                let n = stream
                    .read(&mut answer)
                    .unwrap_or_else(|e| panic!("connection {i}: {e}"));
                assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "connection {i}");
            }
            stream
        })
        .collect();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    // It stops listening at once (connections then are refused) and lets the idle ones go.
    // (A connection that waits in a full queue is not refused: it times out.)
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], p.port));
    wait_for("the proxy to stop listening", || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    drop(held);
}

#[test]
fn a_request_body_that_stops_arriving_is_given_up_and_a_slow_steady_one_is_not() {
    use std::io::{Read, Write};
    let up = Upstream::start(|r| Reply::ok(&r.key));
    // Test builds take the idle time from the environment (60 s otherwise).
    let p = ProxyBox::installed(
        &up.url(),
        &[("primary", &[])],
        &[("KEYSWITCH_TEST_BODY_IDLE_MS", "400")],
    );
    let token = p.token();
    let head = |length: usize| {
        format!(
            "POST /v1/messages HTTP/1.1\r\nhost: keyswitch\r\nx-api-key: {token}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
        )
    };
    let connect = || {
        let stream = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    };

    // Pieces 150 ms apart: slower in all than the idle time, never idle that long.
    let mut steady = connect();
    steady.write_all(head(BODY.len()).as_bytes()).unwrap();
    for piece in BODY.chunks(BODY.len() / 4 + 1) {
        std::thread::sleep(Duration::from_millis(150));
        steady.write_all(piece).unwrap();
    }
    let mut answer = [0u8; 256];
    let n = steady.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let bodies = || {
        up.requests()
            .into_iter()
            .map(|r| r.body)
            .collect::<Vec<_>>()
    };
    assert_eq!(bodies(), vec![BODY.to_vec()]);

    // Ten bytes of a thousand, then nothing: a 408, the connection closed, nothing forwarded.
    let mut stuck = connect();
    stuck.write_all(head(1000).as_bytes()).unwrap();
    stuck.write_all(&BODY[..10]).unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    stuck.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("stopped arriving"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(bodies().len(), 1);
}

/// `bytes` as a gzip member holding one stored (uncompressed) deflate block: what an upstream
/// sends with `content-encoding: gzip`, made without a compression library.
fn gzip_stored(bytes: &[u8]) -> Vec<u8> {
    let crc = bytes.iter().fold(!0u32, |mut crc, &b| {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
        crc
    });
    let len = u16::try_from(bytes.len()).unwrap();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.push(1);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out
}

#[test]
fn a_billing_error_the_upstream_would_compress_still_fails_over() {
    // Claude Code asks for compressed answers; an upstream (or the CDN before it) that honours
    // that sent the credit-balance 400 gzipped, the proxy could not read it, and the turn failed
    // on the spent key instead of going to the next one.
    let billing = r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}"#;
    let primary = fake_key("primary");
    let up = Upstream::start(move |r| {
        if r.key != primary {
            return Reply::ok(&r.key);
        }
        if r.header("accept-encoding")
            .is_some_and(|e| e.contains("gzip"))
        {
            Reply::Full {
                status: 400,
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    ("content-encoding".into(), "gzip".into()),
                ],
                body: gzip_stored(billing.as_bytes()),
            }
        } else {
            Reply::json(400, billing)
        }
    });
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    let answer = common::proxy_box::send(
        &p.base_url(),
        &p.token(),
        BODY,
        &[("accept-encoding", "gzip, deflate, br, zstd")],
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        answer.text().contains("hello from sk-ant-test"),
        "{}",
        answer.text()
    );
    wait_for("the mark", || p.s.list_json()[0]["state"] == "cooling");
    assert_eq!(mark_events(&p.s)[0]["reason"], "proxy:billing_error");
}

#[cfg(target_os = "linux")]
#[test]
fn idle_connections_up_to_the_file_descriptor_limit_do_not_lock_sessions_out() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let token = p.token();
    p.s.cmd().args(["proxy", "stop"]).assert().success();
    // macOS gives a program 256 file descriptors; fewer than the proxy's 512 slots. Idle
    // connections without the token took every descriptor, so none was ever closed to make
    // room (the slots were never all taken) and sessions waited in the kernel's queue.
    let out = std::process::Command::new("prlimit")
        .arg("--nofile=64:64")
        .arg("--")
        .arg(assert_cmd::cargo::cargo_bin("keyswitch"))
        .args(["proxy", "start"])
        .env_clear()
        .envs(p.s.env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let held: Vec<std::net::TcpStream> = (0..100)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        assert_eq!(status_within_10s(&p.base_url(), &token), Ok(200));
    }
    drop(held);
}

#[test]
fn a_large_400_that_is_no_billing_error_passes_through_whole() {
    // A 400 is read to find the credit-balance phrase, up to 64 KB; a larger one (a validation
    // error quoting the request, a gateway's page) became the proxy's own 502, which Claude Code
    // retries, and the upstream's answer was lost.
    let message = "x".repeat(100 * 1024);
    let large = format!(
        r#"{{"type":"error","error":{{"type":"invalid_request_error","message":"{message}"}}}}"#
    );
    let sent = large.clone();
    let up = stand_in(move || Reply::json(400, &sent).with_header("request-id", "req_2"));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    let answer = p.send(&p.token(), BODY);
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body, large.as_bytes());
    assert_eq!(answer.headers["request-id"], "req_2");
    assert_eq!(up.keys(), vec![fake_key("primary")]);
    assert!(mark_events(&p.s).is_empty());
}

#[test]
fn a_large_refusal_every_key_gets_is_not_passed_on_empty() {
    // A 401/403 is kept (up to 64 KB) to pass on if every key is refused; a larger one (a
    // company gateway's block page) was passed on empty: the user saw a bare 403.
    let message = "y".repeat(100 * 1024);
    let large = format!(
        r#"{{"type":"error","error":{{"type":"permission_error","message":"{message}"}}}}"#
    );
    let sent = large.clone();
    let up = Upstream::start(move |_| Reply::json(403, &sent));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    let token = p.token();
    let base = p.base_url();
    let answer = block(async {
        let request = async {
            let response = client()
                .post(format!("{base}/v1/messages"))
                .header("x-api-key", &token)
                .body(BODY)
                .send()
                .await?;
            let status = response.status().as_u16();
            response.bytes().await.map(|b| (status, b))
        };
        tokio::time::timeout(Duration::from_secs(10), request).await
    });
    let (status, body) = answer
        .expect("an answer within 10 s")
        .expect("a whole answer");
    assert_eq!(status, 403);
    let text = String::from_utf8_lossy(&body);
    assert!(
        body == large.as_bytes() || text.contains("every key was refused (HTTP 403)"),
        "{}",
        &text[..text.len().min(300)]
    );
    assert_eq!(up.keys(), vec![fake_key("primary"), fake_key("fallback")]);
}

#[test]
fn a_litellm_budget_answer_fails_over_and_the_gateway_is_noted_for_doctor() {
    // LiteLLM's default since 1.104: 422 budget_exceeded, in the OpenAI shape, no retry-after.
    let budget = r#"{"error":{"message":"Budget has been exceeded! Current cost: 0.006, Max budget: 0.005","type":"budget_exceeded","param":null,"code":"422"}}"#;
    let up = stand_in(move || Reply::json(422, budget).with_header("x-litellm-version", "1.108.7"));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    let answer = p.send(&p.token(), BODY);
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(String::from_utf8_lossy(&answer.body).contains(&fake_key("fallback")));
    wait_for("the mark", || !mark_events(&p.s).is_empty());
    let mark = &mark_events(&p.s)[0];
    assert_eq!(mark["key"], "primary");
    assert_eq!(mark["reason"], "proxy:billing_error");
    wait_for("the gateway note", || {
        p.s.state_dir().join("gateways.json").exists()
    });
    let seen: Value =
        serde_json::from_slice(&std::fs::read(p.s.state_dir().join("gateways.json")).unwrap())
            .unwrap();
    let noted: Vec<&Value> = seen.as_object().unwrap().values().collect();
    assert_eq!(noted[0]["name"], "LiteLLM");
    assert_eq!(noted[0]["version"], "1.108.7");
}

/// A sandbox in proxy mode whose proxy is stopped, and `systemd-socket-activate` to run it as
/// systemd's socket unit would; `None` (the test skips, saying why) where the tool is missing.
#[cfg(target_os = "linux")]
fn stopped_for_activation() -> Option<(std::path::PathBuf, Upstream, ProxyBox)> {
    let Ok(tool) = which::which("systemd-socket-activate") else {
        eprintln!("skipped: systemd-socket-activate is missing (Debian package systemd)");
        return None;
    };
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    p.s.cmd().args(["proxy", "stop"]).assert().success();
    Some((tool, up, p))
}

/// `systemd-socket-activate` listening on `port` for `program`, with the sandbox's environment
/// (and `extra`): it hands the program none of its own, so each variable goes with `-E`, as a
/// unit's `Environment=` would. Waits until the port is held.
#[cfg(target_os = "linux")]
fn socket_activate(
    tool: &std::path::Path,
    s: &Sandbox,
    extra: &[(&str, &str)],
    port: u16,
    program: &[&std::ffi::OsStr],
) -> std::process::Child {
    let mut env = s.env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let child = std::process::Command::new(tool)
        .env_clear()
        .args(
            env.iter()
                .flat_map(|(k, v)| ["-E".to_string(), format!("{k}={v}")]),
        )
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .args(program)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("systemd-socket-activate to listen", || {
        TcpListener::bind(("127.0.0.1", port)).is_err()
    });
    child
}

#[cfg(target_os = "linux")]
#[test]
fn a_socket_activated_proxy_answers_through_the_socket_and_the_port_stays_held_after_it_stops() {
    let Some((tool, up, p)) = stopped_for_activation() else {
        return;
    };
    let exited = p.s.dir.path().join("proxy-exited");
    // As systemd's socket unit: the socket is held before the proxy runs, and the process that
    // holds it (here the shell systemd-socket-activate runs, as systemd itself) keeps holding it
    // after the proxy ends. LISTEN_PID names the proxy's own pid, as systemd sets it.
    let script = format!(
        "sh -c 'LISTEN_PID=$$ exec \"$0\" proxy run' \"$KS\"; touch \"{}\"; sleep 30",
        exited.display()
    );
    let ks = assert_cmd::cargo::cargo_bin("keyswitch");
    let mut holder = socket_activate(
        &tool,
        &p.s,
        &[("KS", ks.to_str().unwrap())],
        p.port,
        &["sh".as_ref(), "-c".as_ref(), script.as_ref()],
    );

    // `get`'s probe is the first connection: the proxy starts on it and answers.
    let token = p.token();
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 200, "{}\n{}", answer.text(), p.proxy_log());
    assert_eq!(up.keys(), vec![fake_key("primary")]);
    assert_eq!(p.proxy_status()["running"], true);

    p.s.cmd().args(["proxy", "stop"]).assert().success();
    wait_for("the proxy to exit", || exited.exists());
    assert!(
        TcpListener::bind(("127.0.0.1", p.port)).is_err(),
        "the port must stay held after the proxy exits"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", p.port)).is_ok());
    let _ = holder.kill();
    let _ = holder.wait();
}

#[cfg(target_os = "linux")]
#[test]
fn a_socket_passed_on_another_address_is_refused_with_the_way_out() {
    let Some((tool, _up, p)) = stopped_for_activation() else {
        return;
    };
    let other = free_port();
    let ks = assert_cmd::cargo::cargo_bin("keyswitch");
    let mut child = socket_activate(
        &tool,
        &p.s,
        &[],
        other,
        &[ks.as_ref(), "proxy".as_ref(), "run".as_ref()],
    );
    // The first connection makes it start the proxy.
    let _first = std::net::TcpStream::connect(("127.0.0.1", other)).unwrap();
    wait_for("the proxy to refuse the socket", || {
        child.try_wait().unwrap().is_some()
    });
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("listens on 127.0.0.1:{other}"))
            && stderr.contains(&format!("set up for 127.0.0.1:{}", p.port))
            && stderr.contains("keyswitch install --proxy"),
        "{stderr}"
    );
}

/// A systemd user session as `install` sees one (the manager's socket in `XDG_RUNTIME_DIR`),
/// with a stand-in `systemctl` that logs its arguments, in a folder of its own.
#[cfg(target_os = "linux")]
struct SystemdSession {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

#[cfg(target_os = "linux")]
impl SystemdSession {
    fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let systemctl = bin.join("systemctl");
        std::fs::write(&systemctl, "#!/bin/sh\necho \"$*\" >> \"$SYSTEMCTL_LOG\"\n").unwrap();
        std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
        let runtime = dir.path().join("run");
        std::fs::create_dir_all(runtime.join("systemd")).unwrap();
        std::fs::write(runtime.join("systemd").join("private"), "").unwrap();
        let log = dir.path().join("systemctl.log");
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let env = vec![
            ("PATH".to_string(), path),
            ("XDG_RUNTIME_DIR".to_string(), runtime.display().to_string()),
            ("SYSTEMCTL_LOG".to_string(), log.display().to_string()),
            (
                "KEYSWITCH_TEST_SERVICE_MANAGER".to_string(),
                "1".to_string(),
            ),
        ];
        Self { dir, env }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// `systemctl` calls so far, one a line.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("systemctl.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

#[cfg(target_os = "linux")]
#[test]
fn install_proxy_hands_the_proxy_to_systemd_and_uninstall_takes_out_exactly_that() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let session = SystemdSession::new();
    let mut env = session.env();
    env.push(("HTTPS_PROXY", "http://corp.example:3128"));
    let p = ProxyBox::installed(&up.url(), &[("primary", &[])], &env);
    let s = &p.s;
    let units = s.config_home().join("systemd").join("user");
    let socket = std::fs::read_to_string(units.join("keyswitch-proxy.socket")).unwrap();
    let service = std::fs::read_to_string(units.join("keyswitch-proxy.service")).unwrap();
    assert!(
        socket.contains(&format!("\nListenStream=127.0.0.1:{}\n", p.port)),
        "{socket}"
    );
    let exe = dunce::canonicalize(assert_cmd::cargo::cargo_bin("keyswitch")).unwrap();
    assert!(
        service.contains(&format!("\nExecStart=\"{}\" proxy run\n", exe.display())),
        "{service}"
    );
    // No secret in the units: not the token; the network settings (kept in a 0600 file, the
    // ones proxy.json records) are not in the unit either.
    let token = std::fs::read_to_string(s.state_dir().join("proxy-token")).unwrap();
    for text in [&socket, &service] {
        assert!(
            !text.contains(token.trim()) && !text.contains("corp.example"),
            "{text}"
        );
    }
    let network = s.state_dir().join("proxy-service.env");
    assert!(
        std::fs::read_to_string(&network)
            .unwrap()
            .contains("HTTPS_PROXY=\"http://corp.example:3128\"")
    );
    for call in [
        "--user daemon-reload",
        "--user enable keyswitch-proxy.socket",
        "--user restart keyswitch-proxy.socket",
    ] {
        assert!(session.calls().iter().any(|l| l == call), "{call}");
    }
    let record: Value =
        serde_json::from_slice(&std::fs::read(s.state_dir().join("claude-install.json")).unwrap())
            .unwrap();
    assert_eq!(
        record["service_files"].as_array().map(Vec::len),
        Some(2),
        "{record}"
    );

    let status = s
        .cmd()
        .args(["proxy", "status", "--json"])
        .envs(session.env())
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["managed_by"], "systemd", "{status}");
    let doctor = s.cmd().arg("doctor").envs(session.env()).output().unwrap();
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        report.contains("the proxy is managed by systemd (keyswitch-proxy.socket"),
        "{report}"
    );
    let stop = s
        .cmd()
        .args(["proxy", "stop"])
        .envs(session.env())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&stop.stderr);
    assert!(
        stop.status.success() && said.contains("keyswitch-proxy.socket keeps the port"),
        "{said}"
    );
    assert!(
        session
            .calls()
            .iter()
            .any(|l| l == "--user stop keyswitch-proxy.service")
    );

    s.cmd()
        .args(["proxy", "start"])
        .envs(session.env())
        .assert()
        .success();
    assert!(
        session
            .calls()
            .iter()
            .any(|l| l == "--user start keyswitch-proxy.socket")
    );

    s.cmd()
        .arg("uninstall")
        .envs(session.env())
        .assert()
        .success();
    assert!(!units.join("keyswitch-proxy.socket").exists());
    assert!(!units.join("keyswitch-proxy.service").exists());
    assert!(!network.exists());
    assert!(
        session
            .calls()
            .iter()
            .any(|l| l == "--user disable --now keyswitch-proxy.socket keyswitch-proxy.service"),
        "{:?}",
        session.calls()
    );
}

#[test]
fn without_a_systemd_session_install_writes_no_units_and_stop_warns_a_session_had_the_token() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    assert!(!p.s.config_home().join("systemd").exists());
    // No session was handed the token yet: a quiet stop.
    let quiet = p.s.cmd().args(["proxy", "stop"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("warning"));
    p.token();
    let stop = p.s.cmd().args(["proxy", "stop"]).output().unwrap();
    let said = String::from_utf8_lossy(&stop.stderr);
    assert!(stop.status.success(), "{said}");
    assert!(
        said.contains("was handed the proxy's token") && said.contains("keyswitch proxy start"),
        "{said}"
    );
}

#[test]
fn a_new_port_chosen_from_inside_a_session_keeps_forwarding_to_the_real_upstream() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let mut p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    p.token();
    // As from Claude Code's Bash tool: the session's ANTHROPIC_BASE_URL is the running proxy.
    let new_port = free_port();
    install_proxy(&p.s, new_port)
        .env("ANTHROPIC_BASE_URL", p.base_url())
        .assert()
        .success();
    p.port = new_port;
    let token = p.token();
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(up.keys(), vec![fake_key("primary")]);
}

#[test]
fn install_refuses_as_upstream_an_address_where_a_keyswitch_proxy_answers() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let other = ProxyBox::new(&up.url(), &[("primary", &[])]);
    other.token();
    let s = Sandbox::new();
    s.add("primary", &fake_key("primary"), &[]);
    let out = install_proxy(&s, free_port())
        .env(
            "ANTHROPIC_BASE_URL",
            format!("http://localhost:{}", other.port),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("keyswitch proxy answers"), "{err}");
    assert!(!s.config_dir().join("proxy.json").exists());
    assert!(!s.settings_file().exists());
}

/// The review's reproduction: `uninstall` from inside a session, then `install --proxy` on a
/// new port from the same session, whose ANTHROPIC_BASE_URL is still the stopped proxy's. That
/// freed port must never become the upstream (any user could take it and read every key).
#[test]
fn install_after_uninstall_from_a_session_refuses_the_stopped_proxy_s_address() {
    // Proxy mode left by `uninstall`, or by a helper-mode `install`, from the same session.
    for leave in ["uninstall", "install --helper"] {
        let up = Upstream::start(|r| Reply::ok(&r.key));
        let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
        p.token();
        let session = [("ANTHROPIC_BASE_URL", p.base_url())];
        p.s.cmd()
            .args(leave.split(" "))
            .envs(session.clone())
            .assert()
            .success();
        let out = install_proxy(&p.s, free_port())
            .envs(session)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "after {leave}: {err}");
        assert!(
            err.contains(&format!("nothing answers at {}", p.base_url())),
            "after {leave}: {err}"
        );
        assert!(
            !p.s.config_dir().join("proxy.json").exists(),
            "after {leave}"
        );
    }
}

/// A key's endpoint on the proxy's own address (as 127.0.0.1 or localhost) or on another
/// keyswitch proxy's is refused, by `add` and `add --replace`, before anything changes.
#[test]
fn add_refuses_an_endpoint_that_is_a_keyswitch_proxy() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let other = ProxyBox::new(&up.url(), &[("primary", &[])]);
    other.token();
    let own_localhost = format!("http://localhost:{}", p.port);
    for (args, why) in [
        (
            vec!["loop", "--endpoint", &p.base_url()],
            "the keyswitch proxy's own address",
        ),
        (
            vec!["loop", "--endpoint", &own_localhost],
            "the keyswitch proxy's own address",
        ),
        (
            vec!["primary", "--replace", "--endpoint", &other.base_url()],
            "where a keyswitch proxy answers",
        ),
    ] {
        let out =
            p.s.cmd()
                .arg("add")
                .args(&args)
                .write_stdin(format!("{}\n", fake_key("loop")))
                .output()
                .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    let keys = p.s.list_json();
    assert_eq!(keys.len(), 1);
    assert!(keys[0]["endpoint"].is_null(), "{keys:?}");
}

/// doctor names a key whose plain-http loopback endpoint nothing answers at (perhaps an old
/// proxy's address, free for anyone to take), and says how to fix it.
#[test]
fn doctor_flags_a_loopback_endpoint_where_nothing_answers() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let dead = format!("http://127.0.0.1:{}", free_port());
    let p = ProxyBox::new(&up.url(), &[("primary", &["--endpoint", &dead])]);
    let out = p.s.cmd().arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "FIX   nothing answers at primary's endpoint {dead}"
        )) && text.contains("keyswitch set primary --endpoint URL"),
        "{text}"
    );
    assert!(!out.status.success());
}

#[test]
fn a_lost_state_folder_hands_no_key_to_a_session_on_the_proxy_address() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    p.s.cmd().args(["proxy", "stop"]).assert().success();
    std::fs::remove_dir_all(p.s.state_dir()).unwrap();
    // Proxy mode holds: the session gets a (new) token, never the key.
    let token = p.token();
    assert_ne!(token, fake_key("primary"));
    assert_eq!(p.send(&token, BODY).status, 200);
    assert_eq!(up.keys(), vec![fake_key("primary")]);
}

#[test]
fn helper_mode_hands_no_key_to_a_plain_http_loopback_address_that_is_no_keys_endpoint() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("primary"), &[]);
    let port = free_port();
    for url in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}/"),
    ] {
        let out = s
            .cmd()
            .arg("get")
            .env("ANTHROPIC_BASE_URL", &url)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{url}");
        assert!(out.stdout.is_empty(), "a key was printed for {url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("install --proxy"), "{err}");
    }
    // A key that belongs there is handed out.
    let local = format!("http://127.0.0.1:{port}");
    s.add("local", &fake_key("local"), &["--endpoint", &local]);
    let out = s
        .cmd()
        .arg("get")
        .env("ANTHROPIC_BASE_URL", &local)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        fake_key("local")
    );
}

#[test]
fn install_proxy_puts_the_proxy_in_no_proxy_keeping_the_users_entries_and_uninstall_restores_the_bytes()
 {
    for original in [
        "{\n  \"env\": {\n    \"NO_PROXY\": \"corp.example\"\n  },\n  \"model\": \"opus\"\n}\n",
        "{\n  \"model\": \"opus\"\n}\n",
    ] {
        let s = Sandbox::new();
        std::fs::create_dir_all(s.claude_dir()).unwrap();
        std::fs::write(s.settings_file(), original).unwrap();
        s.add("primary", &fake_key("primary"), &[]);
        let port = free_port();
        let out = install_proxy(&s, port)
            .env("no_proxy", ".internal.example")
            .output()
            .unwrap();
        assert!(out.status.success());
        // Said, since the settings' value now replaces the shell's for Claude Code.
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains(&format!("NO_PROXY and no_proxy in Claude Code's settings include 127.0.0.1 and 127.0.0.1:{port}")),
            "{said}"
        );
        let env = &s.settings()["env"];
        let users = if original.contains("corp.example") {
            "corp.example,"
        } else {
            ""
        };
        let expected = format!("{users}.internal.example,127.0.0.1,127.0.0.1:{port}");
        assert_eq!(env["NO_PROXY"], expected.as_str(), "{original}");
        assert_eq!(env["no_proxy"], expected.as_str(), "{original}");
        s.cmd().arg("uninstall").assert().success();
        assert_eq!(
            std::fs::read_to_string(s.settings_file()).unwrap(),
            original
        );
    }
}

#[test]
fn get_refuses_the_token_to_an_environment_that_would_send_it_through_a_proxy() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let token = p.token();
    let corp = "http://corp-proxy.example:3128";
    let no_proxy_here = format!("127.0.0.1:{}", p.port);
    for env in [
        vec![("HTTPS_PROXY", corp)],
        vec![("http_proxy", corp), ("NO_PROXY", "localhost,corp.example")],
        vec![
            ("HTTPS_PROXY", corp),
            ("NO_PROXY", "127.0.0.1"),
            ("no_proxy", "x.example"),
        ],
    ] {
        let out =
            p.s.cmd()
                .arg("get")
                .env("ANTHROPIC_BASE_URL", p.base_url())
                .envs(env.iter().copied())
                .output()
                .unwrap();
        assert!(!out.status.success(), "{env:?}");
        assert!(out.stdout.is_empty(), "the token was printed for {env:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains("NO_PROXY") && err.contains("127.0.0.1"),
            "{err}"
        );
    }
    for env in [
        vec![("HTTPS_PROXY", corp), ("NO_PROXY", "127.0.0.1")],
        vec![("HTTPS_PROXY", corp), ("no_proxy", no_proxy_here.as_str())],
    ] {
        assert_eq!(p.get(&env), token, "{env:?}");
    }

    // doctor, from a shell with the proxy set and a settings env that no longer covers it.
    let mut settings = p.s.settings();
    settings["env"]["NO_PROXY"] = Value::from("corp.example");
    std::fs::write(p.s.settings_file(), settings.to_string()).unwrap();
    let out =
        p.s.cmd()
            .arg("doctor")
            .env("HTTPS_PROXY", corp)
            .output()
            .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FIX   HTTPS_PROXY is set and NO_PROXY/no_proxy do not cover"),
        "{text}"
    );
}

/// A project whose own settings send its requests through a corporate proxy (its NO_PROXY
/// without the proxy's address): `get` refuses the token there, so doctor, run in the
/// project, says so as a problem, naming the file — not as a mere difference of settings.
#[test]
fn doctor_in_a_project_whose_settings_route_the_proxy_through_https_proxy_names_the_file() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join(".claude")).unwrap();
    let file = project.path().join(".claude").join("settings.json");
    std::fs::write(
        &file,
        r#"{"env":{"NO_PROXY":"corp.example","no_proxy":"corp.example","HTTPS_PROXY":"http://corp.example:3128"}}"#,
    )
    .unwrap();
    let out =
        p.s.cmd()
            .arg("doctor")
            .current_dir(project.path())
            .output()
            .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let fix = text
        .lines()
        .find(|l| l.starts_with("FIX") && l.contains("HTTPS_PROXY"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(fix.contains(&file.display().to_string()), "{fix}");
    assert!(fix.contains(&format!("127.0.0.1:{}", p.port)), "{fix}");

    // `get` there, with Claude Code's helper environment (the user settings' NO_PROXY, which
    // covers the proxy): Claude Code's client would still take the project's, so no token.
    let user_no_proxy = p.s.settings()["env"]["NO_PROXY"]
        .as_str()
        .unwrap()
        .to_string();
    let cases = [
        vec![],
        // Only the project's NO_PROXY; the corporate proxy comes from the shell.
        vec![("HTTPS_PROXY", "http://corp.example:3128")],
    ];
    for (n, shell) in cases.iter().enumerate() {
        if n == 1 {
            std::fs::write(
                &file,
                r#"{"env":{"NO_PROXY":"example.org","no_proxy":"example.org"}}"#,
            )
            .unwrap();
        }
        let out =
            p.s.cmd()
                .arg("get")
                .current_dir(project.path())
                .env("ANTHROPIC_BASE_URL", p.base_url())
                .env("NO_PROXY", &user_no_proxy)
                .env("no_proxy", &user_no_proxy)
                .envs(shell.iter().copied())
                .output()
                .unwrap();
        assert!(!out.status.success(), "case {n}");
        assert!(out.stdout.is_empty(), "the token was printed in case {n}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("NO_PROXY"));
    }
    // Outside the project the same `get` hands out the token.
    assert!(
        !p.get(&[
            ("HTTPS_PROXY", "http://corp.example:3128"),
            ("NO_PROXY", &user_no_proxy),
            ("no_proxy", &user_no_proxy)
        ])
        .is_empty()
    );
}

/// Installing again with nothing changed keeps the running proxy (and the streams it serves).
#[test]
fn a_reinstall_that_changes_nothing_keeps_the_running_proxy() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let pid = p.proxy_status()["pid"].clone();
    assert!(pid.is_u64(), "{pid}");
    install_proxy(&p.s, p.port).assert().success();
    assert_eq!(p.proxy_status()["pid"], pid);
    // Another port is a change: a new proxy there.
    install_proxy(&p.s, free_port()).assert().success();
    assert_ne!(p.proxy_status()["pid"], pid);
}

/// After `uninstall`, the settings' base URL is the user's own again — here a gateway on
/// loopback — and doctor must not call it a lost proxy's address.
#[test]
fn after_uninstall_doctor_does_not_call_the_users_own_loopback_gateway_a_proxy() {
    let gateway = Upstream::start(|r| Reply::ok(&r.key));
    let s = Sandbox::new();
    std::fs::create_dir_all(s.claude_dir()).unwrap();
    let own = serde_json::json!({"env": {"ANTHROPIC_BASE_URL": gateway.url()}});
    std::fs::write(s.settings_file(), own.to_string()).unwrap();
    s.add("primary", &fake_key("primary"), &[]);
    install_proxy(&s, free_port()).assert().success();
    s.cmd().arg("uninstall").assert().success();
    assert_eq!(s.settings()["env"]["ANTHROPIC_BASE_URL"], gateway.url());
    let out = s.cmd().arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("record lost"), "{text}");
}

#[test]
fn uninstall_after_the_state_folder_is_lost_takes_out_the_proxy_address_and_no_proxy_entries() {
    let original =
        "{\n  \"env\": {\n    \"NO_PROXY\": \"corp.example\"\n  },\n  \"model\": \"opus\"\n}\n";
    let s = Sandbox::new();
    std::fs::create_dir_all(s.claude_dir()).unwrap();
    std::fs::write(s.settings_file(), original).unwrap();
    s.add("primary", &fake_key("primary"), &[]);
    install_proxy(&s, free_port()).assert().success();
    s.cmd().args(["proxy", "stop"]).assert().success();
    std::fs::remove_dir_all(s.state_dir()).unwrap();
    s.cmd().arg("uninstall").assert().success();
    assert_eq!(
        std::fs::read_to_string(s.settings_file()).unwrap(),
        original
    );
    assert!(!s.config_dir().join("proxy.json").exists());
}

/// Started by a `get` whose shell allows core files of any size, the proxy allows none, and
/// killed by a crash signal while it holds a key and the token it leaves no core file in its
/// folder.
#[test]
fn a_proxy_that_crashes_leaves_no_core_file_even_where_core_files_are_allowed() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    p.s.cmd().args(["proxy", "stop"]).assert().success();
    let out = with_core_dumps_allowed(&p.s, "get")
        .env("ANTHROPIC_BASE_URL", p.base_url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // The key's secret is now in the proxy's memory.
    assert_eq!(p.send(&token, BODY).status, 200);
    let pid = p.proxy_status()["pid"].as_u64().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let soft_and_hard: Vec<&str> = core.split_whitespace().skip(4).take(2).collect();
    assert_eq!(soft_and_hard, ["0", "0"], "{core}");
    if !cores_land_in_the_working_folder() {
        eprintln!("the crash itself is not checked: core_pattern does not write to the folder");
        return;
    }
    std::process::Command::new("kill")
        .args(["-ABRT", &pid.to_string()])
        .status()
        .unwrap();
    wait_for("the proxy to die", || p.proxy_status()["running"] == false);
    assert_eq!(core_files(&p.s.state_dir()), Vec::<String>::new());
}

/// An editor's half-written save of the config, while sessions are working: the proxy keeps
/// answering from the config it last read, says so once in its log (not once per request), and
/// takes the file up again as soon as it parses.
#[test]
fn a_half_written_config_mid_run_keeps_the_last_good_one_until_it_parses_again() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    let token = p.token();
    assert_eq!(p.send(&token, BODY).status, 200);
    let good = std::fs::read(p.s.config_file()).unwrap();
    std::fs::write(p.s.config_file(), &good[..good.len() / 2]).unwrap();
    for _ in 0..5 {
        let answer = p.send(&token, BODY);
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    assert_eq!(up.keys().last().unwrap(), &fake_key("primary"));
    // A session starting now is handed the token, with a warning: refusing it would fail the
    // session while the proxy serves.
    let out =
        p.s.cmd()
            .arg("get")
            .env("ANTHROPIC_BASE_URL", p.base_url())
            .output()
            .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), token);
    assert!(String::from_utf8_lossy(&out.stderr).contains("last config that parsed"));
    let log = p.proxy_log();
    let said = log.lines().filter(|l| l.contains("keeps serving")).count();
    assert_eq!(said, 1, "{log}");
    // doctor says the proxy serves from the last good config, from its proved health answer.
    let doctor = p.s.cmd().arg("doctor").output().unwrap();
    let told = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        told.contains("serves from the last config that parsed"),
        "{told}"
    );

    // Fixed, with the fallback first: the very next request goes to it.
    let mut config: Value = serde_json::from_slice(&good).unwrap();
    config["keys"].as_array_mut().unwrap().reverse();
    std::fs::write(p.s.config_file(), config.to_string()).unwrap();
    assert_eq!(p.send(&token, BODY).status, 200);
    assert_eq!(up.keys().last().unwrap(), &fake_key("fallback"));
    assert!(p.proxy_log().contains("parses again"), "{}", p.proxy_log());
}

/// An editor that moves the config away before writing the new one leaves a moment with no
/// file: requests meanwhile go on with the last config, not "no keys yet".
#[test]
fn a_config_moved_away_mid_save_keeps_the_last_good_one() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let token = p.token();
    assert_eq!(p.send(&token, BODY).status, 200);
    let aside = p.s.config_file().with_extension("json~");
    std::fs::rename(p.s.config_file(), &aside).unwrap();
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(up.keys().last().unwrap(), &fake_key("primary"));
    std::fs::rename(&aside, p.s.config_file()).unwrap();
    assert_eq!(p.send(&token, BODY).status, 200);
}

/// The proxy's peak resident memory so far (VmHWM), in MiB.
fn peak_memory_mib(pid: u64) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024
}

/// Sixteen sessions sending 20 MB each at once (the API takes up to 32 MB) to an upstream that
/// takes half a second: the proxy stays well under 256 MiB, the requests past its body budget
/// get a 503 to retry in a moment, and the proxy answers on.
#[test]
fn sixteen_concurrent_20_mb_requests_keep_the_proxy_well_under_256_mib() {
    let up = Upstream::start(|r| {
        std::thread::sleep(Duration::from_millis(500));
        Reply::ok(&r.key)
    });
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let token = p.token();
    let pid = p.proxy_status()["pid"].as_u64().unwrap();
    let body = vec![b'x'; 20 * 1024 * 1024];
    let answers: Vec<_> = std::thread::scope(|scope| {
        let sending: Vec<_> = (0..16)
            .map(|_| scope.spawn(|| send(&p.base_url(), &token, &body, &[])))
            .collect();
        sending.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let peak = peak_memory_mib(pid);
    eprintln!("the proxy peaked at {peak} MiB");
    assert!(peak < 200, "the proxy reached {peak} MiB");
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert!(statuses.contains(&200), "{statuses:?}");
    let refused: Vec<_> = answers.iter().filter(|a| a.status == 503).collect();
    assert!(!refused.is_empty(), "{statuses:?}");
    assert_eq!(
        refused.len() + statuses.iter().filter(|s| **s == 200).count(),
        16
    );
    for answer in refused {
        assert_eq!(answer.headers["retry-after"], "2");
        assert_eq!(answer.headers["x-should-retry"], "true");
        assert!(
            answer.message().contains("request_body_budget_mib"),
            "{}",
            answer.text()
        );
    }
    assert_eq!(p.send(&token, BODY).status, 200);
}

/// A key whose secret is gone from the keychain is met by every request: the proxy's log says
/// so once, not once a request.
#[test]
fn a_key_without_a_secret_is_warned_about_once_not_once_a_request() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    let token = p.token();
    std::process::Command::new("secret-tool")
        .args(["clear", "service", &p.s.service, "username", "primary"])
        .status()
        .unwrap();
    // A fresh proxy: the running one may hold the secret from its keychain check already.
    p.s.cmd().args(["proxy", "restart"]).assert().success();
    for _ in 0..30 {
        assert_eq!(p.send(&token, BODY).status, 200);
    }
    assert!(up.keys().iter().all(|k| *k == fake_key("fallback")));
    let log = p.proxy_log();
    let said = log
        .lines()
        .filter(|l| l.contains("primary has no secret"))
        .count();
    assert_eq!(said, 1, "{log}");
}

/// A proxy.log grown past a megabyte (weeks of a proxy's warnings) is cut to its newest lines
/// by the proxy that writes to it, and the proxy's own lines go on at its end.
#[test]
fn the_proxy_keeps_its_log_under_a_megabyte() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    p.s.cmd().args(["proxy", "stop"]).assert().success();
    let log = p.s.state_dir().join("proxy.log");
    let old: String = (0..40_000)
        .map(|n| format!("old line {n:05} {}\n", "x".repeat(60)))
        .collect();
    std::fs::write(&log, old).unwrap();
    let token = p.token();
    // The trim empties the file and then writes the newest lines back: wait for the whole of it,
    // not the moment in between (which a reader may see, and which loses nothing).
    wait_for("the log to be trimmed, keeping its newest lines", || {
        std::fs::metadata(&log).unwrap().len() <= 1024 * 1024
            && std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("old line 39999")
    });
    let text = p.proxy_log();
    assert!(!text.contains("old line 00000"));
    assert!(text.contains("listening on"), "{text}");
    assert_eq!(p.send(&token, BODY).status, 200);
}

/// `list` says where a key without an endpoint goes, not just "default".
#[test]
fn list_names_the_default_endpoint() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let out = p.s.cmd().arg("list").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("default ({}, the proxy's upstream)", up.url())),
        "{text}"
    );
    let helper = Sandbox::new();
    helper.add("primary", &fake_key("primary"), &[]);
    let out = helper.cmd().arg("list").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("default (Claude Code's own base URL)"),
        "{text}"
    );
}

/// Proxy mode is the default: a first `install` with no flag turns it on, on the default port;
/// `--helper` chooses helper mode; and a re-install with no flag keeps whichever mode the user
/// chose last (and, in proxy mode, its port).
#[test]
fn a_first_install_is_proxy_mode_and_a_reinstall_keeps_the_mode_chosen() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("primary"), &[]);
    let base_url = |s: &Sandbox| s.settings()["env"]["ANTHROPIC_BASE_URL"].clone();
    let is_proxy_mode = |s: &Sandbox| s.config_dir().join("proxy.json").exists();

    s.cmd()
        .arg("install")
        .assert()
        .success()
        .stderr(predicate::str::contains("proxy mode"));
    assert_eq!(base_url(&s), "http://127.0.0.1:27329");
    assert!(is_proxy_mode(&s));
    assert!(
        TcpListener::bind(("127.0.0.1", 27329)).is_err(),
        "install started the proxy on the default port"
    );

    s.cmd().args(["install", "--helper"]).assert().success();
    assert_eq!(base_url(&s), Value::Null);
    assert!(!is_proxy_mode(&s));
    s.cmd().arg("install").assert().success();
    assert!(!is_proxy_mode(&s), "a re-install kept helper mode");
    assert_eq!(base_url(&s), Value::Null);

    // `--listen` alone means proxy mode on that port; a re-install keeps the port.
    let port = free_port();
    s.cmd()
        .args(["install", "--listen", &format!("127.0.0.1:{port}")])
        .assert()
        .success();
    s.cmd().arg("install").assert().success();
    assert_eq!(base_url(&s), format!("http://127.0.0.1:{port}"));
    assert!(is_proxy_mode(&s));
    s.cmd()
        .args(["install", "--helper", "--proxy"])
        .assert()
        .code(2);
    s.cmd().arg("uninstall").assert().success();
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "uninstall stopped the proxy"
    );
}

/// Install names where each key's requests go: every key's own endpoint here, so never the
/// default upstream, which is not where any request goes.
#[test]
fn install_names_each_keys_upstream_not_a_default_no_key_uses() {
    let gateway = Upstream::start(|r| Reply::ok(&r.key));
    let s = Sandbox::new();
    s.add(
        "primary",
        &fake_key("primary"),
        &["--endpoint", &gateway.url()],
    );
    s.add(
        "fallback",
        &fake_key("fallback"),
        &["--endpoint", &gateway.url()],
    );
    let out = install_proxy(&s, free_port()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "forwards each key to its upstream: primary → {0}, fallback → {0}",
            gateway.url()
        )),
        "{err}"
    );
    assert!(!err.contains("api.anthropic.com"), "{err}");
    s.cmd().arg("uninstall").assert().success();
}

/// Before any install, and after a purge, there is no mode: `proxy status` does not call that
/// helper mode.
#[test]
fn proxy_status_before_any_install_says_keyswitch_is_not_installed() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("primary"), &[]);
    s.cmd()
        .args(["proxy", "status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("keyswitch is not installed"));
    s.cmd().args(["install", "--helper"]).assert().success();
    s.cmd()
        .args(["proxy", "status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("helper mode"));
}

/// The proxy answers only the loopback names its clients use: another 127.x address is refused
/// at install, before anything changes (its own health check would refuse it).
#[test]
fn install_refuses_a_loopback_address_other_than_127_0_0_1_or_ipv6_loopback() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("primary"), &[]);
    let port = free_port();
    s.cmd()
        .args(["install", "--listen", &format!("127.0.0.2:{port}")])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("127.0.0.1 or [::1] only"));
    assert!(!s.settings_file().exists());
    assert!(!s.config_dir().join("proxy.json").exists());
}

/// proxy.log's start line names where each key goes, as `proxy status` does — not the default
/// upstream for a key that has its own endpoint.
#[test]
fn the_proxy_log_names_each_keys_upstream_when_it_starts() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let gateway = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &["--endpoint", &gateway.url()])]);
    p.token();
    let log = p.proxy_log();
    assert!(
        log.contains(&format!("forwarding to primary → {}", gateway.url())),
        "{log}"
    );
}

/// A secret another program stored that is not text is the key's problem, not the keychain's:
/// the proxy passes over it to the next key (it answered every request 500 as if the keychain
/// could not be read), and says so in its log.
#[test]
fn a_secret_that_is_no_text_is_passed_over_for_the_next_key() {
    let up = stand_in(|| Reply::ok("primary"));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    p.s.store_with_secret_tool("primary", b"sk-ant-test-\xff\xfe", None);
    // A proxy started after it (a running one keeps the secret it read).
    p.s.cmd().args(["proxy", "stop"]).assert().success();
    let token = p.token();
    let answer = p.send(&token, BODY);
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(up.keys(), [fake_key("fallback")]);
    wait_for("the warning", || p.proxy_log().contains("not text"));
}
