//! `keyswitch uninstall --purge`: after it, nothing of keyswitch's is left — no keychain item
//! of its service (safety copies included), no config or state folder, no service unit, no
//! proxy running — and Claude Code's settings are byte for byte what they were before the first
//! install. Without a terminal it wants --yes; an unreachable keychain deletes nothing; twice
//! is fine.

mod common;

use std::path::{Path, PathBuf};

use common::proxy_box::ProxyBox;
use common::upstream::{Reply, Upstream};
use common::{Sandbox, fake_key};

/// Every item the Secret Service holds under `service`, as libsecret's own tool finds them.
/// Every item of `service` in the keyring, as sorted lines: secret-tool lists items in no fixed
/// order, so two listings of the same items are compared line by line.
fn items_of(service: &str) -> String {
    let out = std::process::Command::new("secret-tool")
        .args(["search", "--all", "service", service])
        .output()
        .expect("secret-tool runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // secret-tool prints the attributes on stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut lines: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines().filter(|l| l.starts_with("attribute.")))
        .collect();
    lines.sort_unstable();
    lines.join("\n")
}

fn store_spare(s: &Sandbox, name: &str, secret: &str) {
    use std::io::Write as _;
    let spare = format!("{}.reauthorize", s.service);
    let mut store = std::process::Command::new("secret-tool")
        .args([
            "store", "--label", "spare", "service", &spare, "username", name,
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    store
        .stdin
        .take()
        .unwrap()
        .write_all(secret.as_bytes())
        .unwrap();
    assert!(store.wait().unwrap().success());
}

/// Settings of the user's own, in the layout Claude Code writes them.
fn users_settings(s: &Sandbox) -> Vec<u8> {
    let text =
        "{\n  \"model\": \"opus\",\n  \"env\": {\n    \"DISABLE_TELEMETRY\": \"1\"\n  }\n}\n";
    std::fs::create_dir_all(s.claude_dir()).unwrap();
    std::fs::write(s.settings_file(), text).unwrap();
    text.as_bytes().to_vec()
}

fn purge(s: &Sandbox, extra: &[&str]) -> (Option<i32>, String) {
    let out = s
        .cmd()
        .args(["uninstall", "--purge"])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.stdout.is_empty());
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Files with their bytes.
type Files = Vec<(PathBuf, Vec<u8>)>;

/// Everything a purge could touch: keyswitch's files, the settings folder, the keychain items.
/// Asserts nothing of `before` changed, naming the part that did (the file, or the keyring).
#[track_caller]
fn assert_unchanged(s: &Sandbox, before: &(Files, Files, String, String)) {
    let now = snapshot(s);
    let names = |files: &Files| files.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    for (now_files, before_files) in [(&now.0, &before.0), (&now.1, &before.1)] {
        assert_eq!(names(now_files), names(before_files), "the files changed");
        for ((path, now_bytes), (_, before_bytes)) in now_files.iter().zip(before_files) {
            assert_eq!(
                String::from_utf8_lossy(now_bytes),
                String::from_utf8_lossy(before_bytes),
                "{} changed",
                path.display()
            );
        }
    }
    assert_eq!(now.2, before.2, "the keyring items changed");
    assert_eq!(now.3, before.3, "the safety copies changed");
}

fn snapshot(s: &Sandbox) -> (Files, Files, String, String) {
    let mut claude = Vec::new();
    for entry in std::fs::read_dir(s.claude_dir()).unwrap().flatten() {
        claude.push((entry.path(), std::fs::read(entry.path()).unwrap()));
    }
    claude.sort();
    (
        s.files(),
        claude,
        items_of(&s.service),
        items_of(&format!("{}.reauthorize", s.service)),
    )
}

fn installed_with_two_keys() -> Sandbox {
    let s = Sandbox::new();
    users_settings(&s);
    s.cmd().args(["install", "--helper"]).assert().success();
    s.add(
        "primary",
        &fake_key("one"),
        &["--endpoint", "https://a.example.com"],
    );
    s.add("fallback", &fake_key("two"), &[]);
    s.cmd()
        .args(["mark-exhausted", "primary", "--for", "2h"])
        .assert()
        .success();
    s
}

#[test]
fn purge_leaves_nothing_of_keyswitch_and_the_settings_as_they_were() {
    let s = Sandbox::new();
    let original = users_settings(&s);
    s.cmd().args(["install", "--helper"]).assert().success();
    s.add(
        "primary",
        &fake_key("one"),
        &["--endpoint", "https://a.example.com"],
    );
    s.add("fallback", &fake_key("two"), &[]);
    s.cmd()
        .args(["mark-exhausted", "primary", "--for", "2h"])
        .assert()
        .success();
    // A safety copy an interrupted `reauthorize` left.
    store_spare(&s, "primary", &fake_key("one"));
    assert!(items_of(&s.service).contains("fallback"));
    assert!(s.state_dir().join("events.jsonl").exists());

    let (code, said) = purge(&s, &["--yes"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(
            "deleted the secrets of 2 keys (primary, fallback) from the Secret Service keychain"
        ),
        "{said}"
    );
    assert_eq!(items_of(&s.service), "", "keychain items left");
    assert_eq!(
        items_of(&format!("{}.reauthorize", s.service)),
        "",
        "safety copies left"
    );
    assert!(!s.config_dir().exists(), "the config folder is left");
    assert!(!s.state_dir().exists(), "the state folder is left");
    assert_eq!(std::fs::read(s.settings_file()).unwrap(), original);
    let in_claude: Vec<_> = std::fs::read_dir(s.claude_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(in_claude, ["settings.json"], "the settings copy is left");

    // Twice is fine, and creates nothing.
    let (code, said) = purge(&s, &["--yes"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("nothing of keyswitch's is left to remove"),
        "{said}"
    );
    assert!(!s.config_dir().exists() && !s.state_dir().exists());
    assert_eq!(std::fs::read(s.settings_file()).unwrap(), original);
}

#[test]
fn a_settings_file_install_created_goes_with_the_purge() {
    let s = Sandbox::new();
    s.cmd().args(["install", "--helper"]).assert().success();
    s.add("primary", &fake_key("one"), &[]);
    let (code, said) = purge(&s, &["--yes"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(!s.settings_file().exists());
    assert_eq!(items_of(&s.service), "");
}

#[test]
fn without_a_terminal_or_yes_it_refuses_and_changes_nothing() {
    let s = installed_with_two_keys();
    let before = snapshot(&s);
    let (code, said) = purge(&s, &[]);
    assert_eq!(code, Some(2), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("add --yes"), "{said}");
    assert!(
        said.contains("the secrets of 2 keys (primary, fallback)"),
        "{said}"
    );
    assert!(
        said.contains(&s.state_dir().display().to_string()),
        "{said}"
    );
    assert!(said.contains("nothing was changed"), "{said}");
    assert_unchanged(&s, &before);
    // `--yes` is for the purge only.
    s.cmd().args(["uninstall", "--yes"]).assert().code(2);
    assert_unchanged(&s, &before);
}

#[test]
fn an_unreachable_keychain_deletes_nothing() {
    let s = installed_with_two_keys();
    let before = snapshot(&s);
    let out = s
        .cmd()
        .args(["uninstall", "--purge", "--yes"])
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("DISPLAY", "")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("Secret Service") && said.contains("nothing was deleted"),
        "{said}"
    );
    // Not the advice to move to another store: the keys stay in this one.
    assert!(!said.contains("keyutils"), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
    assert_unchanged(&s, &before);
}

#[test]
fn purge_in_proxy_mode_stops_the_proxy() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let p = ProxyBox::new(&up.url(), &[("primary", &[]), ("fallback", &[])]);
    p.token();
    assert_eq!(p.proxy_status()["running"], true);
    let pid = p.proxy_status()["pid"].as_u64().unwrap();
    let (code, said) = purge(&p.s, &["--yes"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("stopped the proxy"), "{said}");
    assert!(!alive(pid), "the proxy (pid {pid}) still runs");
    assert!(std::net::TcpStream::connect(("127.0.0.1", p.port)).is_err());
    assert_eq!(items_of(&p.s.service), "");
    assert!(!p.s.config_dir().exists() && !p.s.state_dir().exists());
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Runs `keyswitch ARGS` on a terminal (a pty) and answers its question with `answer`: the
/// exit code and everything it showed.
fn on_a_terminal(s: &Sandbox, answer: &str, args: &[&str]) -> (i32, String) {
    let script = r#"
import os, pty, sys
answer, cmd = sys.argv[1], sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(cmd[0], cmd)
shown = b""
def read():
    try:
        return os.read(fd, 4096)
    except OSError:
        return b""
while b"[y/N]" not in shown:
    chunk = read()
    if not chunk:
        break
    shown += chunk
os.write(fd, answer.encode() + b"\n")
while chunk := read():
    shown += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(shown.decode())
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, answer])
        .arg(assert_cmd::cargo::cargo_bin("keyswitch"))
        .args(args)
        .env_clear()
        .envs(s.env())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

#[test]
fn on_a_terminal_it_lists_what_goes_and_asks() {
    let s = installed_with_two_keys();
    let before = snapshot(&s);
    let (code, shown) = on_a_terminal(&s, "n", &["uninstall", "--purge"]);
    assert_eq!(code, 2, "{shown}");
    for item in [
        "keyswitch uninstall --purge deletes:".to_string(),
        "  - the secrets of 2 keys (primary, fallback) in the Secret Service keychain".to_string(),
        format!("  - keyswitch's entries in {}", s.settings_file().display()),
        format!("  - the folder {}", s.config_dir().display()),
        format!("  - the folder {}", s.state_dir().display()),
        "not confirmed; nothing was changed".to_string(),
    ] {
        assert!(shown.contains(&item), "{item:?} in {shown}");
    }
    assert_unchanged(&s, &before);
    let (code, shown) = on_a_terminal(&s, "y", &["uninstall", "--purge"]);
    assert_eq!(code, 0, "{shown}");
    assert_eq!(items_of(&s.service), "");
    assert!(!s.config_dir().exists() && !s.state_dir().exists());
}

/// A systemd user session as `install` sees one (the manager's socket in `XDG_RUNTIME_DIR`),
/// with a stand-in `systemctl` that logs its arguments (as in tests/proxy.rs).
#[cfg(target_os = "linux")]
fn systemd_session(dir: &Path) -> Vec<(String, String)> {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let systemctl = bin.join("systemctl");
    std::fs::write(&systemctl, "#!/bin/sh\necho \"$*\" >> \"$SYSTEMCTL_LOG\"\n").unwrap();
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let runtime = dir.join("run");
    std::fs::create_dir_all(runtime.join("systemd")).unwrap();
    std::fs::write(runtime.join("systemd").join("private"), "").unwrap();
    vec![
        (
            "PATH".to_string(),
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        ),
        ("XDG_RUNTIME_DIR".to_string(), runtime.display().to_string()),
        (
            "SYSTEMCTL_LOG".to_string(),
            dir.join("systemctl.log").display().to_string(),
        ),
        (
            "KEYSWITCH_TEST_SERVICE_MANAGER".to_string(),
            "1".to_string(),
        ),
    ]
}

#[cfg(target_os = "linux")]
#[test]
fn purge_takes_the_proxy_out_of_systemd() {
    let up = Upstream::start(|r| Reply::ok(&r.key));
    let session = tempfile::tempdir().unwrap();
    let env = systemd_session(session.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let p = ProxyBox::installed(&up.url(), &[("primary", &[])], &env);
    let units = p.s.config_home().join("systemd").join("user");
    assert!(units.join("keyswitch-proxy.socket").exists());
    let out =
        p.s.cmd()
            .args(["uninstall", "--purge"])
            .envs(env.iter().copied())
            .output()
            .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("the proxy's systemd service (stopped)"),
        "{said}"
    );
    assert!(units.join("keyswitch-proxy.socket").exists());
    let out =
        p.s.cmd()
            .args(["uninstall", "--purge", "--yes"])
            .envs(env.iter().copied())
            .output()
            .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    for unit in ["keyswitch-proxy.socket", "keyswitch-proxy.service"] {
        assert!(!units.join(unit).exists(), "{unit} is left");
    }
    let calls = std::fs::read_to_string(session.path().join("systemctl.log")).unwrap();
    assert!(
        calls.contains("--user disable --now keyswitch-proxy.socket keyswitch-proxy.service"),
        "{calls}"
    );
    assert!(!p.s.config_dir().exists() && !p.s.state_dir().exists());
}
