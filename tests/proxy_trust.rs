//! The proxy proves who it is: what answers on the proxy's port is never sent the token unless
//! it proves it holds it, another user's listener is refused by name, the health path tells a
//! stranger nothing, and the proxy heals itself (a lost token file, a keychain it could not
//! reach, a Ctrl-Z). Real proxies, real sockets, the private Secret Service.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
#[cfg(target_os = "linux")]
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
#[cfg(target_os = "linux")]
use std::time::Instant;

#[cfg(target_os = "linux")]
use common::other_user::OtherUserListener;
use common::proxy_box::{BODY, ProxyBox};
use common::upstream::{Reply, Upstream};

/// A program of this user's on the proxy's port: answers each request with `answer(request)`
/// and keeps every byte it was sent.
struct Squatter {
    heard: Arc<Mutex<Vec<u8>>>,
}

impl Squatter {
    fn start(port: u16, answer: fn(&str) -> String) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let kept = heard.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                stream
                    .set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                // Everything up to the end of the head (the control requests have no body).
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                kept.lock().unwrap().extend_from_slice(&request);
                let _ = stream.write_all(answer(&String::from_utf8_lossy(&request)).as_bytes());
            }
        });
        Self { heard }
    }

    fn heard(&self) -> String {
        String::from_utf8_lossy(&self.heard.lock().unwrap()).into_owned()
    }
}

fn http_json(body: &str, extra: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Answers as the released keyswitch proxy did: its health to anyone, and "stopping" to a
/// shutdown (for which that version took the token).
fn like_an_older_keyswitch(request: &str) -> String {
    if request.starts_with("POST /_keyswitch/shutdown") {
        return http_json("", "");
    }
    http_json(
        &format!(
            r#"{{"service":"keyswitch-proxy","version":"0.0.1","pid":{},"listen":"127.0.0.1:1","network":"","upstream":""}}"#,
            std::process::id()
        ),
        "",
    )
}

/// Answers as this version does, with a proof it cannot make (it has no token).
fn like_this_version(request: &str) -> String {
    if request.starts_with("POST /_keyswitch/shutdown") {
        return http_json("", "");
    }
    http_json(
        &format!(
            r#"{{"service":"keyswitch-proxy","version":"{}","pid":1,"listen":"127.0.0.1:1","network":"","upstream":"","keychain":true}}"#,
            env!("CARGO_PKG_VERSION"),
        ),
        &format!("x-keyswitch-proof: {}\r\n", "cd".repeat(32)),
    )
}

/// A proxy box whose proxy was stopped after handing out its token: the port is free for a
/// squatter, and the token file holds what a squatter is after.
fn stopped_box(up: &Upstream) -> (ProxyBox, String) {
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let token = p.token();
    p.s.cmd().args(["proxy", "stop"]).assert().success();
    (p, token)
}

fn get(p: &ProxyBox) -> std::process::Output {
    p.s.cmd()
        .arg("get")
        .env("ANTHROPIC_BASE_URL", p.base_url())
        .output()
        .unwrap()
}

fn squatted_port_is_refused_without_the_token(answer: fn(&str) -> String) {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let (p, token) = stopped_box(&up);
    let squatter = Squatter::start(p.port, answer);

    let out = get(&p);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "get must refuse: {stderr}");
    assert!(out.stdout.is_empty(), "nothing printed");
    assert!(
        stderr.contains(&format!(
            "the keyswitch proxy's port 127.0.0.1:{} is held by another program or another user",
            p.port
        )) && stderr.contains("--listen 127.0.0.1:PORT"),
        "{stderr}"
    );
    let out = p.s.cmd().args(["proxy", "stop"]).output().unwrap();
    assert!(!out.status.success());
    // status does not say `get` would start it: it cannot while the port is held.
    let out = p.s.cmd().args(["proxy", "status"]).output().unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("another program holds"), "{status}");
    assert!(!status.contains("starts it"), "{status}");
    let out = p.s.cmd().arg("doctor").output().unwrap();
    let doctor = String::from_utf8_lossy(&out.stdout);
    assert!(
        doctor.contains("FIX   the keyswitch proxy's port"),
        "{doctor}"
    );
    assert!(!doctor.contains("ok    the proxy runs"), "{doctor}");

    let heard = squatter.heard();
    assert!(heard.contains("GET /_keyswitch/health"), "{heard}");
    assert!(
        !heard.contains(&token),
        "the squatter got the token: {heard}"
    );
    assert!(!heard.contains("ksp-"), "the squatter got a token: {heard}");
    assert!(!heard.contains("POST /_keyswitch/shutdown"), "{heard}");
}

#[test]
fn a_squatter_answering_like_an_older_keyswitch_never_gets_the_token() {
    squatted_port_is_refused_without_the_token(like_an_older_keyswitch);
}

#[test]
fn a_squatter_answering_like_this_version_never_gets_the_token() {
    squatted_port_is_refused_without_the_token(like_this_version);
}

/// Root only (CI runs as root): a listener of uid 65534, started through `setpriv`.
#[cfg(target_os = "linux")]
#[test]
fn a_listener_of_another_user_is_refused_by_name() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let (p, token) = stopped_box(&up);
    // It answers like an older keyswitch and prints what it was sent.
    let body = format!(
        r#"{{"service":"keyswitch-proxy","version":"0.0.1","pid":1,"listen":"127.0.0.1:{}"}}"#,
        p.port
    );
    let Some(other) = OtherUserListener::start(p.port, &body) else {
        return;
    };

    let out = get(&p);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let heard = other.heard();
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another user (uid 65534) holds the keyswitch proxy's port 127.0.0.1:{}",
            p.port
        )),
        "{stderr}"
    );
    assert!(
        !heard.contains(&token),
        "another user got the token: {heard}"
    );
}

/// The raw answer to a health request with these extra header lines.
fn health(p: &ProxyBox, host: &str, extra: &str) -> String {
    p.send_raw(&format!(
        "GET /_keyswitch/health HTTP/1.1\r\nhost: {host}\r\n{extra}connection: close\r\n\r\n"
    ))
}

#[test]
fn the_health_path_tells_a_stranger_only_that_it_is_alive_and_answers_only_a_loopback_host() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let token = p.token();
    let local = format!("127.0.0.1:{}", p.port);
    let pid = p.proxy_status()["pid"].to_string();

    let with_token = format!("x-api-key: {token}\r\n");
    for extra in ["", "x-keyswitch-nonce: zz\r\n", with_token.as_str()] {
        let answer = health(&p, &local, extra);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n{\"alive\":true}"), "{answer}");
        assert!(
            !answer.contains(&pid) && !answer.contains("version"),
            "{answer}"
        );
    }
    let nonce = format!("x-keyswitch-nonce: {}\r\n", "0f".repeat(32));
    let proved = health(&p, &local, &nonce);
    assert!(proved.contains("x-keyswitch-proof: "), "{proved}");
    assert!(proved.contains(&format!("\"pid\":{pid}")), "{proved}");
    for host in ["localhost", "[::1]:1", "127.0.0.1"] {
        assert!(health(&p, host, "").starts_with("HTTP/1.1 200"), "{host}");
    }

    // A web page that rebound its name to 127.0.0.1 still says its name.
    let with_port = format!("evil.example:{}", p.port);
    for host in ["evil.example", with_port.as_str(), "127.0.0.1.nip.io"] {
        let answer = health(&p, host, &nonce);
        assert!(answer.starts_with("HTTP/1.1 403"), "{host}: {answer}");
        assert!(!answer.contains(&pid), "{answer}");
    }

    // Two Host headers (the first loopback), or one that disagrees with the request URI.
    let twice = format!("{local}\r\nhost: evil.example");
    let answer = health(&p, &twice, &nonce);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let absolute = p.send_raw(&format!(
        "GET http://evil.example/_keyswitch/health HTTP/1.1\r\nhost: {local}\r\n{nonce}connection: close\r\n\r\n"
    ));
    assert!(absolute.starts_with("HTTP/1.1 400"), "{absolute}");
    for answer in [answer, absolute] {
        assert!(!answer.contains(&pid), "{answer}");
    }

    // The token alone does not stop it: a shutdown takes a proof over a nonce and the time.
    let stop = p.send_raw(&format!(
        "POST /_keyswitch/shutdown HTTP/1.1\r\nhost: {local}\r\nx-api-key: {token}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    ));
    assert!(stop.starts_with("HTTP/1.1 401"), "{stop}");
    assert_eq!(p.proxy_status()["running"], true);
    p.s.cmd().args(["proxy", "stop"]).assert().success();
    assert_eq!(p.proxy_status()["running"], false);
}

#[test]
fn a_deleted_token_file_is_recreated_and_the_running_proxy_takes_it_up() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let old = p.token();
    let pid = p.proxy_status()["pid"].clone();
    std::fs::remove_file(p.s.state_dir().join("proxy-token")).unwrap();

    let new = p.token();
    assert_ne!(new, old, "a new token file");
    let answer = p.send(&new, BODY);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        p.proxy_status()["pid"],
        pid,
        "the same proxy took the new token"
    );
    assert_eq!(p.send(&old, BODY).status, 401, "the old token is gone");
    let out = p.s.cmd().arg("doctor").output().unwrap();
    let doctor = String::from_utf8_lossy(&out.stdout);
    assert!(doctor.contains("ok    the proxy runs on"), "{doctor}");

    // Deleted again, and a session's request comes before any `get`: the proxy puts its own
    // token back, so the next `get` hands out the one it accepts.
    std::fs::remove_file(p.s.state_dir().join("proxy-token")).unwrap();
    assert_eq!(p.send("ksp-wrong", BODY).status, 401);
    assert_eq!(p.token(), new);
    p.s.cmd().args(["proxy", "stop"]).assert().success();
    assert_eq!(p.proxy_status()["running"], false);
}

/// A token file others could read (a chmod, a backup restored with other modes) holds a token
/// that may be known: the next `get` replaces it with a new one, 0600, which the running proxy
/// takes up, and the old one opens nothing any more.
#[cfg(unix)]
#[test]
fn a_token_file_others_could_read_is_replaced_and_the_old_token_refused() {
    use std::os::unix::fs::PermissionsExt;
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let old = p.token();
    let file = p.s.state_dir().join("proxy-token");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

    let out =
        p.s.cmd()
            .arg("get")
            .env("ANTHROPIC_BASE_URL", p.base_url())
            .output()
            .unwrap();
    assert!(out.status.success());
    let new = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("could be read by other users"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(new, old);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(p.send(&new, BODY).status, 200);
    assert_eq!(p.send(&old, BODY).status, 401);
}

/// As from an ssh shell without the desktop session's bus: `get` starts the proxy there, and
/// hands out the token.
fn start_without_dbus(p: &ProxyBox) -> String {
    let out =
        p.s.cmd()
            .arg("get")
            .env("ANTHROPIC_BASE_URL", p.base_url())
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .output()
            .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_proxy_started_without_dbus_is_replaced_by_the_next_get_that_has_it() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let (p, _) = stopped_box(&up);
    let token = start_without_dbus(&p);
    let broken = p.proxy_status()["pid"].clone();
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 500, "{}", answer.text());
    let message = answer.message();
    assert!(
        message.contains("the proxy was started where the keychain was unreachable")
            && message.contains("DBUS_SESSION_BUS_ADDRESS")
            && message.contains("keyswitch proxy restart"),
        "{message}"
    );
    assert!(!message.contains("start a Secret Service"), "{message}");

    // The session's own `get`, which reaches the keychain, replaces it.
    assert_eq!(p.token(), token);
    assert_ne!(p.proxy_status()["pid"], broken, "replaced");
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 200, "{}", answer.text());
}

#[test]
fn proxy_restart_starts_the_proxy_again_with_this_shells_environment() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let (p, _) = stopped_box(&up);
    let token = start_without_dbus(&p);
    let broken = p.proxy_status()["pid"].clone();
    assert_eq!(p.send(&token, BODY).status, 500);

    let out = p.s.cmd().args(["proxy", "restart"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("running on 127.0.0.1:"), "{stderr}");
    let status = p.proxy_status();
    assert_eq!(status["running"], true, "{status}");
    assert_ne!(status["pid"], broken, "{status}");
    let answer = p.send(&token, BODY);
    assert_eq!(answer.status, 200, "{}", answer.text());
}

#[cfg(target_os = "linux")]
#[test]
fn a_stopped_proxy_is_told_from_a_dead_one() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let pid = p.proxy_status()["pid"].as_u64().unwrap();
    let signal = |which: &str| {
        std::process::Command::new("kill")
            .args([which, &pid.to_string()])
            .status()
            .unwrap();
    };
    signal("-STOP");
    let out = p.s.cmd().args(["proxy", "status"]).output().unwrap();
    let status = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = p.proxy_status();
    let out = get(&p);
    let doctor = p.s.cmd().arg("doctor").output().unwrap();
    signal("-CONT");
    let doctor = String::from_utf8_lossy(&doctor.stdout).into_owned();
    let fix = doctor
        .lines()
        .find(|l| l.contains(&format!("`kill -CONT {pid}`")))
        .unwrap_or_else(|| panic!("{doctor}"));
    assert!(fix.starts_with("FIX "), "{fix}");
    assert!(
        fix.ends_with(&format!("`kill -CONT {pid}`")),
        "advice for another program: {fix}"
    );
    assert!(
        status.contains(&format!(
            "stopped (pid {pid}, e.g. by Ctrl-Z or SIGSTOP): `kill -CONT {pid}`"
        )),
        "{status}"
    );
    assert_eq!(json["stopped"], true, "{json}");
    assert_eq!(json["pid"], pid, "{json}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("`kill -CONT {pid}`")), "{stderr}");
    assert_eq!(p.proxy_status()["running"], true);
    // The record that names it where its fds cannot be read (two profiles' proxies), until a
    // clean exit.
    let record = p.s.state_dir().join("proxy.pid");
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        format!("{pid} 127.0.0.1:{}\n", p.port)
    );
    p.s.cmd().args(["proxy", "stop"]).assert().success();
    // Removed as the process ends, just after it stopped answering.
    let deadline = Instant::now() + Duration::from_secs(5);
    while record.exists() {
        assert!(Instant::now() < deadline, "the record outlived the proxy");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An older keyswitch proxy (stood in by this build answering health as the released version
/// did) cannot prove itself; being this user's `keyswitch proxy run`, it is stopped by signal
/// and replaced, and was never sent the token.
#[cfg(target_os = "linux")]
#[test]
fn an_older_keyswitch_proxy_of_this_user_is_replaced_by_signal_without_the_token() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let (p, token) = stopped_box(&up);
    let mut old =
        p.s.std_cmd()
            .args(["proxy", "run"])
            .env("KEYSWITCH_TEST_LEGACY_HEALTH", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.proxy_status()["running"] == true
        || std::net::TcpStream::connect(("127.0.0.1", p.port)).is_err()
    {
        assert!(Instant::now() < deadline, "the old proxy never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(p.token(), token);
    let exited = (0..500).find_map(|_| {
        std::thread::sleep(Duration::from_millis(10));
        old.try_wait().unwrap()
    });
    assert!(exited.is_some(), "the old proxy was not stopped");
    let status = p.proxy_status();
    assert_eq!(status["running"], true, "{status}");
    assert_ne!(status["pid"], old.id(), "{status}");
    assert_eq!(p.send(&token, BODY).status, 200);
}

/// Health requests with nonces from several threads, as another local user can send them, go
/// on until `stop` is set.
fn flood_health(
    port: u16,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..6u64)
        .map(|thread| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let nonce = format!("{thread:032x}{n:032x}");
                    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                        continue;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = s.write_all(
                        format!(
                            "GET /_keyswitch/health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-keyswitch-nonce: {nonce}\r\nconnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                    let _ = s.read_to_end(&mut Vec::new());
                }
            })
        })
        .collect()
}

#[test]
fn a_flood_of_health_probes_does_not_keep_the_proxy_from_stopping() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = flood_health(p.port, &stop);
    let mut failures = Vec::new();
    for round in 0..10 {
        p.token();
        let out = p.s.cmd().args(["proxy", "stop"]).output().unwrap();
        if !out.status.success() {
            failures.push(format!(
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    // A `get` replacing a proxy that cannot read the keychain stops it the same way.
    for round in 0..3 {
        // Tried again until it stops: the `get` below is what this round is about.
        let stopped = (0..50).any(|_| {
            let out = p.s.cmd().args(["proxy", "stop"]).output().unwrap();
            out.status.success()
        });
        assert!(stopped, "the proxy never stopped");
        start_without_dbus(&p);
        let broken = p.proxy_status()["pid"].clone();
        let out =
            p.s.cmd()
                .arg("get")
                .env("ANTHROPIC_BASE_URL", p.base_url())
                .output()
                .unwrap();
        if !out.status.success() || p.proxy_status()["pid"] == broken {
            failures.push(format!(
                "get, round {round}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for thread in flood {
        thread.join().unwrap();
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The shutdown request `proxy stop` sends, made here from the token: nonce, time, proof.
fn shutdown_request(port: u16, token: &str, nonce: &str, time: u64) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(b"keyswitch-proxy shutdown v2\0");
    mac.update(nonce.as_bytes());
    mac.update(b"\0");
    mac.update(time.to_string().as_bytes());
    let proof: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "POST /_keyswitch/shutdown HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nx-keyswitch-nonce: {nonce}\r\nx-keyswitch-time: {time}\r\nx-keyswitch-proof: {proof}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
}

#[test]
fn a_shutdown_is_refused_when_replayed_or_out_of_time() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let token = p.token();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (nonce, time) in [("1a".repeat(32), now - 300), ("2b".repeat(32), now + 300)] {
        let answer = p.send_raw(&shutdown_request(p.port, &token, &nonce, time));
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.contains("clock"), "{answer}");
    }
    let wrong = p.send_raw(&shutdown_request(
        p.port,
        "ksp-not-the-token",
        &"3c".repeat(32),
        now,
    ));
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    assert_eq!(p.proxy_status()["running"], true);

    let pid = p.proxy_status()["pid"].clone();
    // Played twice at once to the same proxy: it stops once, and refuses the second.
    let request = shutdown_request(p.port, &token, &"4d".repeat(32), now);
    let both = std::thread::scope(|scope| {
        let first = scope.spawn(|| p.send_raw(&request));
        let second = scope.spawn(|| p.send_raw(&request));
        [first.join().unwrap(), second.join().unwrap()]
    });
    let taken = both
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 200"))
        .count();
    assert_eq!(taken, 1, "{both:#?}");
    assert!(
        both.iter()
            .any(|a| a.is_empty() || a.contains("taken before")),
        "{both:#?}"
    );
    // The next proxy (same token) does not take the recorded request either.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while p.proxy_status()["running"] == true {
        assert!(std::time::Instant::now() < deadline, "it never stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(3));
    p.token();
    let next = p.proxy_status()["pid"].clone();
    assert_ne!(next, pid);
    let again = p.send_raw(&request);
    assert!(again.starts_with("HTTP/1.1 401"), "{again}");
    assert_eq!(p.proxy_status()["pid"], next);
}

/// The token file as it can be found broken: each error says what to do with it, once.
#[test]
fn a_token_file_that_cannot_be_read_names_the_fix_once() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[])]);
    let file = p.s.state_dir().join("proxy-token");
    std::fs::remove_file(&file).unwrap();
    // Unreadable (root reads any mode, so a link to itself stands in for "Permission denied").
    std::os::unix::fs::symlink(&file, &file).unwrap();
    let out = p.s.cmd().args(["proxy", "stop"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("proxy-token") && stderr.contains("delete it; keyswitch makes a new one"),
        "{stderr}"
    );
    let doctor = p.s.cmd().arg("doctor").output().unwrap();
    let doctor = String::from_utf8_lossy(&doctor.stdout).into_owned();
    assert_eq!(doctor.matches("makes a new one").count(), 1, "{doctor}");

    std::fs::remove_file(&file).unwrap();
    std::fs::write(&file, "damaged").unwrap();
    let doctor = p.s.cmd().arg("doctor").output().unwrap();
    let doctor = String::from_utf8_lossy(&doctor.stdout).into_owned();
    assert!(doctor.contains("is damaged"), "{doctor}");
    assert_eq!(doctor.matches("makes a new one").count(), 1, "{doctor}");

    std::fs::remove_file(&file).unwrap();
    p.s.cmd().args(["proxy", "stop"]).assert().success();
}

/// Root only: an upstream port held by another user (one that took a port freed by a stopped
/// proxy or gateway) is sent no key and no prompt; the next key on another upstream answers,
/// and with none left the 502 names that user and says not to retry. No key is marked.
#[cfg(target_os = "linux")]
#[test]
fn an_upstream_port_another_user_listens_on_never_gets_a_key() {
    let port = common::proxy_box::free_port();
    let Some(other) = OtherUserListener::start(port, r#"{"type":"message","content":[]}"#) else {
        return;
    };
    let foreign = format!("http://127.0.0.1:{port}");
    let own = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(
        &own.url(),
        &[("primary", &["--endpoint", &foreign]), ("fallback", &[])],
    );
    let answer = p.send(&p.token(), BODY);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(own.keys(), vec![common::fake_key("fallback")]);
    assert_eq!(p.s.list_json()[0]["state"], "ready");

    let alone = ProxyBox::new(&own.url(), &[("primary", &["--endpoint", &foreign])]);
    let answer = alone.send(&alone.token(), BODY);
    let doctor = alone.s.cmd().arg("doctor").output().unwrap();
    let heard = other.heard();
    let doctor = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        doctor.contains(&format!(
            "FIX   another user (uid 65534) listens on primary's endpoint {foreign}"
        )),
        "{doctor}"
    );
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert_eq!(answer.headers["x-should-retry"], "false");
    assert!(
        answer.message().contains(&format!(
            "another user (uid 65534) listens on 127.0.0.1:{port}"
        )),
        "{}",
        answer.message()
    );
    assert!(
        !heard.contains("sk-ant-test") && !heard.contains("claude-test"),
        "another user got a key or the prompt: {heard}"
    );
    assert_eq!(alone.s.list_json()[0]["state"], "ready");
}
