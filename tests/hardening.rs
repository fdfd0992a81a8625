//! The worst days: a stuck keychain, unreadable or planted files, a bloated log, piles of
//! session records, credentials in URLs. Each test reproduces a way keyswitch used to hang,
//! lock the user out, grow without bound, trust what it should not, or leak.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::core_dumps::{core_files, cores_land_in_the_working_folder, with_core_dumps_allowed};
use common::{Sandbox, fake_key};
use serde_json::Value;

/// A D-Bus address whose socket accepts connections and never answers, like a stopped
/// dbus-daemon. The listener lives as long as the test process.
fn hung_bus(dir: &Path) -> String {
    let path = dir.join("hung-bus");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for connection in listener.incoming() {
            held.push(connection);
        }
    });
    format!("unix:path={}", path.display())
}

/// Runs a command to completion, but kills it (and fails the test) after `limit`.
fn run_within(mut cmd: Command, stdin: &str, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn get_on_a_bus_that_never_answers_fails_within_seconds() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    let bus = hung_bus(s.dir.path());
    let mut cmd = s.std_cmd();
    cmd.arg("get").env("DBUS_SESSION_BUS_ADDRESS", &bus);
    let (out, took) = run_within(cmd, "", Duration::from_secs(20));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("Secret Service") && err.contains("did not answer within 3 s"),
        "{err}"
    );
}

/// gnome-keyring 42 aborts — every application's keyring with it — when a client's first call
/// is `OpenSession` and overtakes the daemon's own record of the new client (one in a few
/// hundred back-to-back `get`s did). keyswitch's first call is a read that needs no such record,
/// as libsecret's is; the session comes after. Watched with `dbus-monitor` on a bus of its own.
#[test]
fn the_secret_service_is_first_asked_a_read_and_only_then_to_open_a_session() {
    let s = Sandbox::new();
    let script = r#"
        set -e
        printf '%s' "$SECRET" | "$KEYSWITCH" add primary
        dbus-monitor --session "destination=org.freedesktop.secrets" >"$OUT/calls" 2>&1 &
        monitor=$!
        # dbus-monitor says it has joined the bus with a first signal.
        for _ in $(seq 100); do [ -s "$OUT/calls" ] && break; sleep 0.05; done
        "$KEYSWITCH" get >"$OUT/stdout"
        sleep 0.3
        kill "$monitor"
    "#;
    let out = s.run_in_own_keyring(script, &fake_key("first"));
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    assert_eq!(read("stdout"), format!("{}\n", fake_key("first")));
    let calls: Vec<String> = read("calls")
        .lines()
        .filter(|l| l.starts_with("method call"))
        .map(|l| l.split("; ").skip(1).collect::<Vec<_>>().join("; "))
        .collect();
    assert_eq!(
        calls.first().map(String::as_str),
        Some("interface=org.freedesktop.DBus.Properties; member=Get"),
        "{calls:#?}"
    );
    assert!(
        calls.iter().any(|c| c.ends_with("member=OpenSession")),
        "{calls:#?}"
    );
}

/// `add` or `remove` stuck on the keychain must not hold up other writers or the hook.
fn writers_are_not_blocked_while(s: &Sandbox, bus: &str, args: &[&str], stdin: &str) {
    let mut stuck = s.std_cmd();
    stuck
        .args(args)
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut stuck = stuck.spawn().unwrap();
    stuck
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut mark = s.std_cmd();
    mark.args(["mark-exhausted", "primary", "--for", "1h"]);
    let (out, _) = run_within(mark, "", Duration::from_secs(20));
    let marked_after = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    // The stuck command gives up only after 3 s: finishing before it means no waiting on it.
    assert!(
        stuck.try_wait().unwrap().is_none(),
        "mark-exhausted waited for the stuck `{}` ({marked_after:?})",
        args.join(" ")
    );
    let out = stuck.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(stderr(&out).contains("did not answer"), "{}", stderr(&out));
}

#[test]
fn a_stuck_keychain_never_holds_the_pool_lock() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    let bus = hung_bus(s.dir.path());
    let secret = format!("{}\n", fake_key("three"));
    writers_are_not_blocked_while(&s, &bus, &["add", "third"], &secret);
    writers_are_not_blocked_while(&s, &bus, &["remove", "fallback"], "");
    // Neither changed anything.
    let names: Vec<String> = common::names(&s.list_json());
    assert_eq!(names, ["primary", "fallback"]);
    assert_eq!(s.secret_tool_lookup("fallback"), Some(fake_key("two")));
}

/// `get` and `status`, each after `plant` put something that cannot be read as a file where
/// the state goes, carry on (the first reader may set it aside, so it is planted again).
fn get_carries_on(s: &Sandbox, plant: impl Fn()) {
    for args in [&["get"][..], &["status"]] {
        plant();
        let mut cmd = s.std_cmd();
        cmd.args(args);
        let (out, _) = run_within(cmd, "", Duration::from_secs(10));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        if args == ["get"] {
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("{}\n", fake_key("one"))
            );
        }
    }
}

fn clear(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_state_file_that_cannot_be_read_never_locks_get_out() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    // A folder where state.json should be.
    get_carries_on(&s, || {
        clear(&s.state_file());
        std::fs::create_dir(s.state_file()).unwrap();
    });
    // A named pipe: opening it to read would wait for a writer forever.
    get_carries_on(&s, || {
        clear(&s.state_file());
        let made = Command::new("mkfifo").arg(s.state_file()).status().unwrap();
        assert!(made.success());
    });
    // The next write repairs it.
    s.cmd()
        .args(["mark-exhausted", "primary"])
        .assert()
        .success();
    assert!(std::fs::metadata(s.state_file()).unwrap().is_file());
}

#[test]
fn a_file_in_place_of_the_state_folder_never_locks_get_out() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    get_carries_on(&s, || {
        clear(&s.state_dir());
        std::fs::write(s.state_dir(), "not a folder").unwrap();
    });
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_folder_others_can_write_to_is_refused_and_nothing_is_written_through_it() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    // Someone else's file, and a planted link to it where the event log goes.
    let bashrc = s.dir.path().join("bashrc");
    std::fs::write(&bashrc, "# mine\n").unwrap();
    let log = s.state_dir().join("events.jsonl");
    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink(&bashrc, &log).unwrap();
    set_mode(&s.state_dir(), 0o777);
    for args in [&["mark-exhausted", "primary"][..], &["get"]] {
        let out = s.cmd().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains("other users can write to it") && err.contains("chmod go-w"),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
    // Even in a folder of one's own, a link is never written through.
    set_mode(&s.state_dir(), 0o700);
    let out = s
        .cmd()
        .args(["mark-exhausted", "primary"])
        .output()
        .unwrap();
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&bashrc).unwrap(), "# mine\n");
    // A planted lock link never creates a file elsewhere.
    std::fs::remove_file(&log).unwrap();
    let elsewhere = s.dir.path().join("created-elsewhere");
    std::fs::remove_file(s.state_dir().join("lock")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, s.state_dir().join("lock")).unwrap();
    let out = s.cmd().args(["reset"]).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    assert!(!elsewhere.exists());
}

#[test]
fn a_folder_owned_by_another_user_is_refused() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    let chown = |dir: &Path, owner: &str| {
        let done = Command::new("chown")
            .args(["-R", owner])
            .arg(dir)
            .status()
            .unwrap();
        assert!(done.success());
    };
    for dir in [s.state_dir(), s.config_dir()] {
        chown(&dir, "65534");
        let out = s.cmd().arg("get").output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains("belongs to another user (uid 65534)") && err.contains("chown"),
            "{err}"
        );
        chown(&dir, "0");
    }
    assert_eq!(s.get(), format!("{}\n", fake_key("one")));
}

fn session_records(s: &Sandbox) -> usize {
    std::fs::read_dir(s.state_dir().join("sessions"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn session_records_of_ended_processes_do_not_pile_up() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    // Each `get` from its own short-lived parent (`timeout` forks and waits, and is not a
    // shell, so it is taken for Claude Code), as many Claude Code runs would.
    for _ in 0..30 {
        let done = Command::new("timeout")
            .env_clear()
            .envs(s.env())
            .arg("20")
            .arg(assert_cmd::cargo::cargo_bin("keyswitch"))
            .arg("get")
            .output()
            .unwrap();
        assert!(done.status.success());
    }
    let left = session_records(&s);
    assert!(
        left <= 2,
        "{left} session records left after 30 ended sessions"
    );
}

/// Talks to tests/fake_claude.py started as PID 1 of a new PID namespace, as Claude Code is
/// when it is a container's main process.
struct ClaudeAsPid1 {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl ClaudeAsPid1 {
    fn start(s: &Sandbox) -> Option<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_claude.py");
        let mut child = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "python3"])
            .arg(script)
            .env_clear()
            .envs(s.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        Some(Self { child, stdout })
    }

    fn ask(&mut self, request: Value) -> Value {
        use std::io::BufRead;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{request}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("no answer: {line:?}"))
    }
}

impl Drop for ClaudeAsPid1 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn claude_code_as_pid_1_gets_its_own_key_marked() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    let mut claude = ClaudeAsPid1::start(&s).expect("unshare runs (the tests run as root)");
    let got = claude.ask(serde_json::json!({"op": "helper", "command": common::helper_command()}));
    if got["stderr"].as_str().unwrap_or("").contains("unshare") {
        panic!("unshare failed: {got}");
    }
    assert_eq!(got["stdout"], format!("{}\n", fake_key("one")), "{got}");
    // The user sets primary aside by hand; then the session's turn fails on primary.
    s.cmd()
        .args(["mark-exhausted", "primary"])
        .assert()
        .success();
    let input = serde_json::json!({"session_id": "c1", "hook_event_name": "StopFailure", "error": "rate_limit"});
    let ran = claude.ask(serde_json::json!({
        "op": "hook", "command": common::hook_command(), "input": input.to_string(), "session": "c1"
    }));
    assert_eq!(ran["code"], 0, "{ran}");
    // The key it was handed is the one on record, never the active fallback.
    let list = s.list_json();
    assert!(
        list[1]["exhausted_until"].is_null(),
        "fallback was marked: {list:?}"
    );
    let cooling = s.events("already-cooling");
    assert_eq!(cooling.len(), 1, "{:?}", s.log_json());
    assert_eq!(cooling[0]["key"], "primary");
}

#[test]
fn a_huge_hook_error_field_never_bloats_the_event_log() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    let error = "x".repeat(1_000_000);
    let input =
        serde_json::json!({"session_id": "s1", "hook_event_name": "StopFailure", "error": error});
    for _ in 0..5 {
        s.cmd()
            .args(["hook", "stop-failure"])
            .write_stdin(input.to_string())
            .assert()
            .success();
    }
    let size = std::fs::metadata(s.state_dir().join("events.jsonl"))
        .unwrap()
        .len();
    assert!(size < 300 * 1024, "the log is {size} bytes");
    assert_eq!(s.events("hook-ignored").len(), 5);
}

#[test]
fn credentials_in_urls_are_never_echoed() {
    let s = Sandbox::new();
    let out = s
        .cmd()
        .args([
            "add",
            "proxy",
            "--endpoint",
            "https://user:hunter2@proxy.example/?token=tok3n",
        ])
        .write_stdin(format!("{}\n", fake_key("one")))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(!err.contains("hunter2") && !err.contains("tok3n"), "{err}");
    assert!(err.contains("https://***@proxy.example/?***"), "{err}");

    s.add(
        "proxy",
        &fake_key("one"),
        &["--endpoint", "https://proxy.example"],
    );
    let out = s
        .cmd()
        .arg("get")
        .env(
            "ANTHROPIC_BASE_URL",
            "https://user:hunter2@elsewhere.example/v1?token=tok3n",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(!err.contains("hunter2") && !err.contains("tok3n"), "{err}");
    assert!(
        err.contains("https://***@elsewhere.example/v1?***"),
        "{err}"
    );
    let log = std::fs::read_to_string(s.state_dir().join("events.jsonl")).unwrap_or_default();
    assert!(!log.contains("hunter2") && !log.contains("tok3n"));
}

/// A secret another program stored that is not text, or ends in a terminal escape sequence:
/// `get` passes over it to the next key (it stopped there, and the session had no key), and
/// `list` shows its tail escaped (it sent the escape sequence to the terminal).
#[test]
fn a_secret_that_is_no_text_is_passed_over_and_never_shown_raw() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    s.store_with_secret_tool("primary", b"sk-ant-test-\xff\xfe", None);
    let out = s.cmd().arg("get").output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\n", fake_key("two"))
    );
    assert!(
        err.contains("the secret of primary") && err.contains("not text"),
        "{err}"
    );
    s.store_with_secret_tool("primary", "sk-ant-test-aaaaaaaaaaaa\u{1b}[2J", None);
    let out = s.cmd().arg("list").output().unwrap();
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(!shown.contains('\u{1b}'), "{shown:?}");
    assert!(shown.contains("\\u{1b}[2J"), "{shown}");
}

#[test]
fn a_stored_secret_with_a_line_break_is_refused_naming_the_key() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.store_with_secret_tool("primary", "sk-ant-test-a\nsk-ant-test-b", None);
    let out = s.cmd().arg("get").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    let err = stderr(&out);
    assert!(
        err.contains("the secret of primary") && err.contains("line break"),
        "{err}"
    );
    // With a fallback, the session keeps working on it.
    s.add("fallback", &fake_key("two"), &[]);
    assert_eq!(s.get(), format!("{}\n", fake_key("two")));
}

#[test]
fn remove_deletes_every_copy_of_the_secret() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.store_with_secret_tool("primary", fake_key("copy"), Some("session"));
    s.cmd().args(["remove", "primary"]).assert().success();
    assert_eq!(s.secret_tool_lookup("primary"), None);
}

#[test]
fn get_that_crashes_holding_a_key_leaves_no_core_file() {
    if !cores_land_in_the_working_folder() {
        eprintln!("skipped: this machine's core_pattern does not write core files to the folder");
        return;
    }
    let s = Sandbox::new();
    s.add("primary", &fake_key("primary"), &[]);
    let folder = tempfile::tempdir().unwrap();
    let out = with_core_dumps_allowed(&s, "get")
        .env("KEYSWITCH_TEST_CRASH_AT", "get-secret-read")
        .current_dir(folder.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "get did not crash at the failpoint");
    assert_eq!(core_files(folder.path()), Vec::<String>::new());
}

/// `add` holds the secret it is reading from its input: a crash then (here a SIGABRT while it
/// waits for the rest) leaves no core file either — every command, not only `get`.
#[test]
fn add_that_crashes_while_reading_a_secret_leaves_no_core_file() {
    if !cores_land_in_the_working_folder() {
        eprintln!("skipped: this machine's core_pattern does not write core files to the folder");
        return;
    }
    let s = Sandbox::new();
    let folder = tempfile::tempdir().unwrap();
    let mut add = with_core_dumps_allowed(&s, "add second")
        .current_dir(folder.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut input = add.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, fake_key("second").as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let killed = std::process::Command::new("kill")
        .args(["-ABRT", &add.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = add.wait().unwrap();
    drop(input);
    assert!(!status.success(), "add was not killed");
    assert_eq!(core_files(folder.path()), Vec::<String>::new());
}
