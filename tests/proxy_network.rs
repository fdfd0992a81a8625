//! Proxy mode on an enterprise network, through the real binary: an HTTPS upstream signed by a
//! private CA (trusted through `NODE_EXTRA_CA_CERTS` or `SSL_CERT_FILE`, and what the user sees
//! when it is not), an `HTTPS_PROXY` CONNECT tunnel and `NO_PROXY`, HTTP/2 by ALPN, DNS
//! failures, and a proxy left running by an older keyswitch. The proxy process gets the network
//! settings `install --proxy` recorded from its terminal, whichever session's `get` starts it;
//! a proxy URL with credentials goes only to a proxy the user runs.
//! Linux only, like the private Secret Service the tests run against.
#![cfg(target_os = "linux")]

mod common;
#[path = "common/network.rs"]
mod network;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fake_key;
use common::proxy_box::{BODY, ProxyBox, free_port, install_proxy};
use common::upstream::{Reply, Upstream};
use network::{ConnectProxy, H2Trick, Pki, RawH2Upstream, TlsConnectProxy, TlsUpstream};
use serde_json::Value;

/// Proxy mode installed from a terminal with `upstream` as the user's base URL, and the proxy
/// that install started stopped again: the next `get` starts one.
fn net_box(upstream: &str, keys: &[&str]) -> ProxyBox {
    net_box_with(upstream, keys, &[])
}

/// As [`net_box`], installed from a terminal with `env`: the network settings proxy mode
/// records.
fn net_box_with(upstream: &str, keys: &[&str], env: &[(&str, &str)]) -> ProxyBox {
    let b = installed(upstream, keys, env);
    b.s.cmd().args(["proxy", "stop"]).assert().success();
    b
}

/// The network settings changed as a user changes them — `install --proxy` again, from a
/// terminal with `env`, which proxy mode records for every proxy `get` starts — and then the
/// token a session gets.
fn token_with(p: &ProxyBox, env: &[(&str, &str)]) -> String {
    install_proxy(&p.s, p.port)
        .envs(env.iter().copied())
        .assert()
        .success();
    p.get(&[])
}

/// A proxy the user runs in the foreground with `env`, as under a service manager — the way to
/// give it a proxy URL with credentials, which `install` does not record. Killed when dropped.
struct UserRun(std::process::Child);

fn user_run(p: &ProxyBox, env: &[(&str, &str)]) -> UserRun {
    p.s.cmd().args(["proxy", "stop"]).assert().success();
    let child =
        p.s.std_cmd()
            .args(["proxy", "run"])
            .envs(env.iter().copied())
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(p.s.state_dir().join("proxy.log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
    let run = UserRun(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.proxy_status()["pid"] != run.0.id() {
        assert!(Instant::now() < deadline, "the proxy did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    run
}

impl Drop for UserRun {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `install --proxy` run with `env`; its proxy is left running.
fn installed(upstream: &str, keys: &[&str], env: &[(&str, &str)]) -> ProxyBox {
    let keys: Vec<(&str, &[&str])> = keys.iter().map(|k| (*k, &[][..])).collect();
    ProxyBox::installed(upstream, &keys, env)
}

/// No key was marked and every key is still ready.
fn assert_nothing_marked(p: &ProxyBox) {
    assert!(p.s.events("mark").is_empty(), "{:?}", p.s.events("mark"));
    assert!(p.s.list_json().iter().all(|k| k["state"] == "ready"));
}

fn path_str(path: &std::path::Path) -> String {
    path.display().to_string()
}

#[test]
fn a_private_ca_in_node_extra_ca_certs_is_trusted() {
    let pki = Pki::new();
    let up = TlsUpstream::http1(&pki);
    let p = net_box(&up.url("127.0.0.1"), &["primary"]);
    let ca = path_str(&pki.ca_file());
    let token = token_with(&p, &[("NODE_EXTRA_CA_CERTS", &ca)]);
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.text().contains(&fake_key("primary")));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].key, fake_key("primary"));
    assert_eq!(seen[0].path, "/v1/messages?beta=true");
}

#[test]
fn a_private_ca_in_ssl_cert_file_is_trusted() {
    let pki = Pki::new();
    let up = TlsUpstream::http1(&pki);
    let p = net_box(&up.url("localhost"), &["primary"]);
    let ca = path_str(&pki.ca_file());
    let token = token_with(&p, &[("SSL_CERT_FILE", &ca)]);
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(up.requests().len(), 1);
}

#[test]
fn an_untrusted_certificate_is_a_final_502_that_names_the_host_and_the_certificate() {
    let pki = Pki::new();
    let up = TlsUpstream::http1(&pki);
    let p = net_box(&up.url("127.0.0.1"), &["primary", "fallback"]);
    let token = p.get(&[]);
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 502, "{}", answer.text());
    let json: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(json["type"], "error");
    assert_eq!(json["error"]["type"], "api_error");
    let message = answer.message();
    assert!(
        message.contains(&format!("127.0.0.1:{}", up.port))
            && message.contains("certificate")
            && message.contains("NODE_EXTRA_CA_CERTS"),
        "{message}"
    );
    // Retrying cannot help until the trust settings change.
    assert_eq!(answer.headers["x-should-retry"], "false");
    assert!(up.requests().is_empty());
    assert_nothing_marked(&p);
}

#[test]
fn a_key_whose_endpoint_is_not_trusted_is_passed_over_for_a_key_elsewhere() {
    let pki = Pki::new();
    let gateway = TlsUpstream::http1(&pki);
    let own = Upstream::start(|r| Reply::ok(&r.key));
    let p = net_box(&own.url(), &[]);
    p.s.add(
        "primary",
        &fake_key("primary"),
        &["--endpoint", &gateway.url("127.0.0.1")],
    );
    p.s.add("fallback", &fake_key("fallback"), &[]);
    // The session lacks the gateway's CA: the fallback answers, and nothing is marked.
    let token = p.get(&[]);
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(own.keys(), vec![fake_key("fallback")]);
    assert!(gateway.requests().is_empty());
    assert_nothing_marked(&p);
}

#[test]
fn a_certificate_for_another_name_or_out_of_date_is_named_as_such() {
    for (pki, expect) in [
        (
            Pki::issuing(&["api.example.test"], false),
            "not valid for this host name",
        ),
        (Pki::issuing(&["127.0.0.1"], true), "has expired"),
    ] {
        let up = TlsUpstream::http1(&pki);
        let p = net_box(&up.url("127.0.0.1"), &["primary"]);
        let ca = path_str(&pki.ca_file());
        let answer = p.send(&token_with(&p, &[("NODE_EXTRA_CA_CERTS", &ca)]), BODY);
        assert_eq!(answer.status, 502, "{}", answer.text());
        let message = answer.message();
        assert!(
            message.contains(&format!("127.0.0.1:{}", up.port)) && message.contains(expect),
            "{message}"
        );
        assert_eq!(answer.headers["x-should-retry"], "false");
        assert!(up.requests().is_empty());
    }
}

#[test]
fn https_proxy_tunnels_to_the_upstream_and_no_proxy_goes_around_it() {
    let pki = Pki::new();
    let up = TlsUpstream::http1(&pki);
    let tunnel = ConnectProxy::start();
    let p = net_box(&up.url("localhost"), &["primary"]);
    let ca = path_str(&pki.ca_file());
    let via = tunnel.url();
    let token = token_with(&p, &[("NODE_EXTRA_CA_CERTS", &ca), ("HTTPS_PROXY", &via)]);
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(up.requests().len(), 1);
    // The proxy asked the tunnel for the upstream by name (the tunnel resolves it).
    assert_eq!(tunnel.targets(), vec![format!("localhost:{}", up.port)]);

    // The same session settings with the host in NO_PROXY: straight to the upstream.
    p.s.cmd().args(["proxy", "stop"]).assert().success();
    let token = token_with(
        &p,
        &[
            ("NODE_EXTRA_CA_CERTS", &ca),
            ("https_proxy", &via),
            ("NO_PROXY", "example.test,localhost"),
        ],
    );
    assert_eq!(p.send(&token, BODY).status, 200);
    assert_eq!(up.requests().len(), 2);
    assert_eq!(tunnel.targets().len(), 1, "{:?}", tunnel.targets());
}

#[test]
fn http_proxy_takes_a_plain_http_upstream_by_its_whole_url_with_the_proxy_credentials() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let proxy = ConnectProxy::start();
    let p = net_box(&up.url(), &["primary"]);
    let via = format!("http://alice:pw@127.0.0.1:{}", proxy.port);
    let _run = user_run(&p, &[("HTTP_PROXY", &via)]);
    let token = p.get(&[]);
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        answer.text().contains("the plain-HTTP proxy"),
        "{}",
        answer.text()
    );
    assert!(up.requests().is_empty(), "went around the proxy");
    assert_eq!(
        proxy.targets(),
        vec![format!("{}/v1/messages?beta=true", up.url())]
    );
    // alice:pw, as Basic credentials.
    assert_eq!(proxy.credentials(), vec!["Basic YWxpY2U6cHc=".to_string()]);
}

#[test]
fn an_https_proxy_that_offers_http2_is_spoken_to_in_http1() {
    // TLS to the proxy itself, which offers h2 first by ALPN (as Envoy and others do): the
    // CONNECT inside is HTTP/1.1, so the proxy must not be told h2 is welcome.
    let pki = Pki::new();
    let up = TlsUpstream::http1(&pki);
    let proxy = TlsConnectProxy::start(&pki);
    let p = net_box(&up.url("localhost"), &["primary"]);
    let ca = path_str(&pki.ca_file());
    let token = token_with(
        &p,
        &[
            ("NODE_EXTRA_CA_CERTS", &ca),
            ("HTTPS_PROXY", &proxy.url("localhost")),
        ],
    );
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(proxy.alpn(), vec![None]);
    assert_eq!(proxy.targets(), vec![format!("localhost:{}", up.port)]);
    assert_eq!(up.requests().len(), 1);
}

#[test]
fn an_https_proxy_with_an_untrusted_certificate_is_named_as_the_proxy() {
    let pki = Pki::new();
    let up = TlsUpstream::http1(&pki);
    // The proxy's certificate comes from a CA the session does not trust; the upstream's does.
    let proxy = TlsConnectProxy::start(&Pki::new());
    let p = net_box(&up.url("localhost"), &["primary"]);
    let ca = path_str(&pki.ca_file());
    let token = token_with(
        &p,
        &[
            ("NODE_EXTRA_CA_CERTS", &ca),
            ("HTTPS_PROXY", &proxy.url("127.0.0.1")),
        ],
    );
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 502, "{}", answer.text());
    let message = answer.message();
    assert!(
        message.contains(&format!(
            "TLS to the proxy 127.0.0.1:{} (from HTTPS_PROXY) failed",
            proxy.port
        )) && message.contains("certificate"),
        "{message}"
    );
    assert_eq!(answer.headers["x-should-retry"], "false");
    assert!(proxy.targets().is_empty());
    assert!(up.requests().is_empty());
    assert_nothing_marked(&p);
}

#[test]
fn a_socks_proxy_setting_is_a_named_502_and_nothing_is_sent_to_it() {
    let pki = Pki::new();
    let up = TlsUpstream::http1(&pki);
    let socks = TcpListener::bind("127.0.0.1:0").unwrap();
    let socks_port = socks.local_addr().unwrap().port();
    socks.set_nonblocking(true).unwrap();
    let p = net_box(&up.url("localhost"), &["primary"]);
    let ca = path_str(&pki.ca_file());
    let via = format!("socks5://alice:s3cret-pw@127.0.0.1:{socks_port}");
    let _run = user_run(&p, &[("NODE_EXTRA_CA_CERTS", &ca), ("HTTPS_PROXY", &via)]);
    let token = p.get(&[]);
    let started = Instant::now();
    let answer = p.send(&token, BODY);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(answer.status, 502, "{}", answer.text());
    let message = answer.message();
    assert!(
        message.contains(&format!("127.0.0.1:{socks_port}"))
            && message.contains("socks5://")
            && message.contains("HTTPS_PROXY")
            && message.contains("NO_PROXY")
            && !message.contains("s3cret"),
        "{message}"
    );
    // Only the user can fix this: Claude Code is told not to retry.
    assert_eq!(answer.headers["x-should-retry"], "false");
    // An HTTP CONNECT (with the proxy's credentials) would have gone to a SOCKS server.
    assert!(
        socks.accept().is_err(),
        "something connected to the SOCKS proxy"
    );
    assert!(up.requests().is_empty());
    assert_nothing_marked(&p);
}

#[test]
fn an_untrusted_certificate_behind_a_tunnel_is_still_named_as_the_certificate() {
    let pki = Pki::new();
    let up = TlsUpstream::http1(&pki);
    let tunnel = ConnectProxy::start();
    let p = net_box(&up.url("localhost"), &["primary"]);
    let token = token_with(&p, &[("HTTPS_PROXY", &tunnel.url())]);
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 502, "{}", answer.text());
    let message = answer.message();
    assert!(
        message.contains(&format!("localhost:{}", up.port)) && message.contains("certificate"),
        "{message}"
    );
    assert_eq!(answer.headers["x-should-retry"], "false");
    assert_eq!(tunnel.targets().len(), 1);
    assert_nothing_marked(&p);
}

#[test]
fn a_dead_https_proxy_is_named_as_the_proxy_not_the_upstream() {
    let pki = Pki::new();
    let up = TlsUpstream::http1(&pki);
    let p = net_box(&up.url("localhost"), &["primary"]);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let ca = path_str(&pki.ca_file());
    let token = token_with(&p, &[("NODE_EXTRA_CA_CERTS", &ca), ("HTTPS_PROXY", &dead)]);
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 502, "{}", answer.text());
    let message = answer.message();
    assert!(
        message.contains(&dead.replace("http://", "")) && message.contains("HTTPS_PROXY"),
        "{message}"
    );
    // A proxy that is down may be back in a moment: Claude Code may retry.
    assert!(answer.headers.get("x-should-retry").is_none());
    assert!(up.requests().is_empty());
    assert_nothing_marked(&p);
}

#[test]
fn a_proxy_that_never_answers_the_connect_is_named_within_the_connect_timeout() {
    let pki = Pki::new();
    let up = TlsUpstream::http1(&pki);
    // Takes the connection and the CONNECT, and says nothing: the TCP connect succeeds, so
    // only the bound over the whole connect (tunnel and TLS included) ends the wait.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let held2 = held.clone();
    std::thread::spawn(move || {
        for stream in silent.incoming().flatten() {
            held2.lock().unwrap().push(stream);
        }
    });
    let p = net_box(&up.url("localhost"), &["primary"]);
    let ca = path_str(&pki.ca_file());
    let via = format!("http://alice:s3cret-pw@127.0.0.1:{silent_port}");
    let _run = user_run(&p, &[("NODE_EXTRA_CA_CERTS", &ca), ("HTTPS_PROXY", &via)]);
    let token = p.get(&[]);
    let started = Instant::now();
    let answer = p.send(&token, BODY);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(15),
        "{took:?}"
    );
    assert_eq!(answer.status, 502, "{}", answer.text());
    let message = answer.message();
    assert!(
        message.contains(&format!(
            "the proxy 127.0.0.1:{silent_port} (from HTTPS_PROXY)"
        )) && message.contains("did not answer within 10s")
            && !message.contains("s3cret"),
        "{message}"
    );
    assert_eq!(held.lock().unwrap().len(), 1);
    assert!(up.requests().is_empty());
    assert!(!p.proxy_log().contains("s3cret"));
    assert_nothing_marked(&p);
}

#[test]
fn a_tunnel_the_proxy_refuses_says_what_the_proxy_answered() {
    let pki = Pki::new();
    let up = TlsUpstream::http1(&pki);
    let tunnel = ConnectProxy::refusing("407 Proxy Authentication Required");
    let p = net_box(&up.url("localhost"), &["primary"]);
    let ca = path_str(&pki.ca_file());
    let token = token_with(
        &p,
        &[("NODE_EXTRA_CA_CERTS", &ca), ("HTTPS_PROXY", &tunnel.url())],
    );
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 502, "{}", answer.text());
    let message = answer.message();
    assert!(
        message.contains(&format!("127.0.0.1:{}", tunnel.port))
            && message.contains("HTTPS_PROXY")
            && message.contains("credentials"),
        "{message}"
    );
    // Only the user can fix this: Claude Code is told not to retry for minutes.
    assert_eq!(answer.headers["x-should-retry"], "false");
    assert_eq!(tunnel.targets().len(), 1);
    assert_nothing_marked(&p);

    // Credentials the proxy turns down are called that, and never shown.
    p.s.cmd().args(["proxy", "stop"]).assert().success();
    let with_password = format!("http://alice:s3cret-pw@127.0.0.1:{}", tunnel.port);
    let _run = user_run(
        &p,
        &[
            ("NODE_EXTRA_CA_CERTS", &ca),
            ("HTTPS_PROXY", &with_password),
        ],
    );
    let token = p.get(&[]);
    let message = p.send(&token, BODY).message();
    assert!(
        message.contains("refused the credentials in HTTPS_PROXY")
            && !message.contains("s3cret")
            && !message.contains("alice"),
        "{message}"
    );
    assert!(!p.proxy_log().contains("s3cret"));
}

#[test]
fn http2_is_used_where_the_upstream_offers_it() {
    let pki = Pki::new();
    let ca = path_str(&pki.ca_file());
    let h2 = TlsUpstream::http2(&pki);
    let h1 = TlsUpstream::http1(&pki);
    let p = net_box(&h2.url("127.0.0.1"), &["primary"]);
    // The fallback's own endpoint speaks HTTP/1.1 only.
    p.s.add(
        "fallback",
        &fake_key("fallback"),
        &["--endpoint", &h1.url("127.0.0.1")],
    );
    let token = token_with(&p, &[("NODE_EXTRA_CA_CERTS", &ca)]);
    for _ in 0..2 {
        let answer = p.send(&token, BODY);
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    let seen = h2.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.version == "HTTP/2.0"), "{seen:?}");

    p.s.cmd()
        .args(["mark-exhausted", "primary", "--for", "1h"])
        .assert()
        .success();
    assert_eq!(p.send(&token, BODY).status, 200);
    let seen = h1.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].version, "HTTP/1.1");
    assert_eq!(seen[0].key, fake_key("fallback"));
}

#[test]
fn a_stream_an_http2_upstream_refused_unprocessed_is_sent_again() {
    let pki = Pki::new();
    let up = RawH2Upstream::start(&pki, H2Trick::RefuseEveryOther);
    let p = net_box(&up.url("127.0.0.1"), &["primary", "fallback"]);
    let ca = path_str(&pki.ca_file());
    let token = token_with(&p, &[("NODE_EXTRA_CA_CERTS", &ca)]);
    for _ in 0..3 {
        let answer = p.send(&token, BODY);
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert!(answer.text().contains("hello over raw h2"));
    }
    assert_eq!((up.refused(), up.answered()), (3, 3));
    assert_nothing_marked(&p);
}

#[test]
fn a_request_an_http2_upstream_went_away_before_is_sent_on_a_new_connection() {
    let pki = Pki::new();
    // Each connection answers one request, then says GOAWAY to the next.
    let up = RawH2Upstream::start(&pki, H2Trick::GoAwayAfter(1));
    let p = net_box(&up.url("127.0.0.1"), &["primary", "fallback"]);
    let ca = path_str(&pki.ca_file());
    let token = token_with(&p, &[("NODE_EXTRA_CA_CERTS", &ca)]);
    for _ in 0..4 {
        let answer = p.send(&token, BODY);
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    assert_eq!(up.answered(), 4);
    assert_nothing_marked(&p);
}

#[test]
fn many_requests_at_once_reach_an_http2_upstream_that_allows_one_stream_at_a_time() {
    let pki = Pki::new();
    let up = TlsUpstream::http2_one_stream_at_a_time(&pki);
    let p = net_box(&up.url("127.0.0.1"), &["primary", "fallback"]);
    let ca = path_str(&pki.ca_file());
    let token = token_with(&p, &[("NODE_EXTRA_CA_CERTS", &ca)]);
    let base = p.base_url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let statuses: Vec<u16> = runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let request = client
                .post(format!("{base}/v1/messages"))
                .header("x-api-key", &token)
                .body(BODY);
            requests.spawn(async move { request.send().await.unwrap().status().as_u16() });
        }
        requests.join_all().await
    });
    assert_eq!(statuses, vec![200; 16]);
    let seen = up.requests();
    assert_eq!(seen.len(), 16);
    assert!(seen.iter().all(|r| r.version == "HTTP/2.0"), "{seen:?}");
    assert_nothing_marked(&p);
}

#[test]
fn events_stream_through_as_an_http2_upstream_sends_them() {
    let pki = Pki::new();
    let events: Vec<String> = (0..4)
        .map(|i| format!("event: content_block_delta\ndata: {{\"i\":{i}}}\n\n"))
        .collect();
    let up = TlsUpstream::http2_streaming(&pki, events.clone(), Duration::from_millis(300));
    let p = net_box(&up.url("127.0.0.1"), &["primary"]);
    let ca = path_str(&pki.ca_file());
    let token = token_with(&p, &[("NODE_EXTRA_CA_CERTS", &ca)]);
    let base = p.base_url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let arrivals: Vec<(Duration, Vec<u8>)> = runtime.block_on(async {
        let start = Instant::now();
        let mut response = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
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
    assert_eq!(up.requests()[0].version, "HTTP/2.0");
    let all: Vec<u8> = arrivals.iter().flat_map(|(_, c)| c.clone()).collect();
    assert_eq!(all, events.concat().into_bytes());
    // The first event arrives long before the last was sent: HTTP/2 frames are not held back.
    // (Measured between events, so the TLS set-up on a loaded machine does not count.)
    let spread = arrivals.last().unwrap().0 - arrivals[0].0;
    assert!(spread >= Duration::from_millis(800), "{arrivals:?}");
}

#[test]
fn an_unknown_host_is_a_502_naming_the_host_and_dns() {
    let p = net_box("https://api.keyswitch-test.invalid", &["primary"]);
    let token = p.get(&[]);
    let started = Instant::now();
    let answer = p.send(&token, BODY);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(answer.status, 502, "{}", answer.text());
    let message = answer.message();
    assert!(
        message.contains("api.keyswitch-test.invalid") && message.contains("DNS"),
        "{message}"
    );
    assert_nothing_marked(&p);
}

#[test]
fn the_proxy_takes_the_network_settings_recorded_at_install_not_each_sessions() {
    let pki = Pki::new();
    let up = TlsUpstream::http1(&pki);
    let ca = path_str(&pki.ca_file());
    // Installed from a terminal with the company's CA; the proxy it started is stopped.
    let p = net_box_with(
        &up.url("127.0.0.1"),
        &["primary"],
        &[("NODE_EXTRA_CA_CERTS", &ca)],
    );
    // A session without it starts the proxy, which trusts the CA all the same.
    let token = p.get(&[]);
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 200, "{}", answer.text());
}

#[test]
fn sessions_with_alternating_network_settings_start_the_proxy_at_most_once() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = net_box(&up.url(), &["primary"]);
    let tunnel = ConnectProxy::start();
    let via = tunnel.url();
    let starts = || p.proxy_log().matches("listening on").count();
    let before = starts();
    let mut pids = Vec::new();
    for round in 0..6 {
        let env: &[(&str, &str)] = if round % 2 == 0 {
            &[("HTTPS_PROXY", &via), ("NO_PROXY", "127.0.0.1")]
        } else {
            &[("NODE_EXTRA_CA_CERTS", "/nonexistent/ca.pem")]
        };
        let token = p.get(env);
        assert_eq!(p.send(&token, BODY).status, 200);
        pids.push(p.proxy_status()["pid"].clone());
    }
    assert!(pids.windows(2).all(|w| w[0] == w[1]), "{pids:?}");
    assert_eq!(starts() - before, 1, "{}", p.proxy_log());
    // The proxy kept the settings recorded at install: straight to the upstream.
    assert!(tunnel.targets().is_empty(), "{:?}", tunnel.targets());
}

#[test]
fn a_proxy_the_user_runs_keeps_its_own_network_settings() {
    let pki = Pki::new();
    let up = TlsUpstream::http1(&pki);
    let p = net_box(&up.url("127.0.0.1"), &["primary"]);
    // As under a systemd unit: `proxy run` in the foreground, with the settings the user gave it.
    let ca = path_str(&pki.ca_file());
    let run = user_run(&p, &[("NODE_EXTRA_CA_CERTS", &ca)]);
    // A session with other settings (none) is handed the token; the user's proxy stays.
    let token = p.get(&[]);
    assert_eq!(p.proxy_status()["pid"], run.0.id());
    assert_eq!(p.send(&token, BODY).status, 200);
}

#[test]
fn a_proxy_url_with_credentials_is_refused_at_install_and_nothing_changes() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = net_box(&up.url(), &["primary"]);
    let settings = std::fs::read(p.s.settings_file()).unwrap();
    let recorded = std::fs::read(p.s.config_dir().join("proxy.json")).unwrap();
    let out =
        p.s.cmd()
            .args(["install", "--proxy"])
            .env("HTTPS_PROXY", "http://alice:s3cret-pw@corp.example:3128")
            .output()
            .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("HTTPS_PROXY") && err.contains("proxy run") && !err.contains("s3cret"),
        "{err}"
    );
    assert_eq!(std::fs::read(p.s.settings_file()).unwrap(), settings);
    assert_eq!(
        std::fs::read(p.s.config_dir().join("proxy.json")).unwrap(),
        recorded
    );
}

#[test]
fn a_damaged_certificate_in_the_ca_file_is_skipped_and_the_rest_are_trusted() {
    let pki = Pki::new();
    let up = TlsUpstream::http1(&pki);
    let p = net_box(&up.url("127.0.0.1"), &["primary"]);
    // Valid PEM around bytes that are no certificate, then the company's CA.
    let bundle = format!(
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGUgYXQgYWxs\n-----END CERTIFICATE-----\n{}",
        pki.ca_pem
    );
    let file = path_str(&pki.file("bundle.pem", &bundle));
    let token = token_with(&p, &[("NODE_EXTRA_CA_CERTS", &file)]);
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 200, "{}", answer.text());
    let log = p.proxy_log();
    assert!(log.contains("NODE_EXTRA_CA_CERTS"), "{log}");
}
