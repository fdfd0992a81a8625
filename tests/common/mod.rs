//! Shared test harness: a private sandbox per test (config and state folders of its own, a
//! keychain service name of its own) inside the private Secret Service that `scripts/test.sh`
//! starts. Tests refuse to run outside it, so they can never touch a person's own keychain.
#![allow(dead_code)]

pub mod claude_code;
pub mod core_dumps;
pub mod litellm;
pub mod other_user;
pub mod proxy_box;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::atomic::{AtomicUsize, Ordering};

use assert_cmd::Command;
use serde_json::Value;

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    /// The keychain service name this sandbox's secrets live under.
    pub service: String,
}

/// Fails (never skips) when the private Secret Service of `scripts/test.sh` is not there.
pub fn require_private_bus() -> String {
    let bus = std::env::var("KEYSWITCH_TEST_PRIVATE_BUS").unwrap_or_default();
    assert!(
        !bus.is_empty()
            && std::env::var("DBUS_SESSION_BUS_ADDRESS").ok().as_deref() == Some(bus.as_str()),
        "these tests need the private Secret Service: run them with ./scripts/test.sh"
    );
    bus
}

impl Sandbox {
    pub fn new() -> Self {
        require_private_bus();
        let dir = tempfile::tempdir().expect("temp dir");
        let service = format!(
            "keyswitch-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let sandbox = Self { dir, service };
        std::fs::create_dir_all(sandbox.config_dir()).unwrap();
        std::fs::write(
            sandbox.config_file(),
            format!("{{\"keychain_service\": \"{}\"}}\n", sandbox.service),
        )
        .unwrap();
        sandbox
    }

    pub fn config_home(&self) -> PathBuf {
        self.dir.path().join("config")
    }
    pub fn state_home(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    pub fn config_dir(&self) -> PathBuf {
        self.config_home().join("keyswitch")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.state_home().join("keyswitch")
    }
    pub fn config_file(&self) -> PathBuf {
        self.config_dir().join("config.json")
    }
    pub fn state_file(&self) -> PathBuf {
        self.state_dir().join("state.json")
    }
    /// Claude Code's user settings folder for this sandbox (`CLAUDE_CONFIG_DIR`).
    pub fn claude_dir(&self) -> PathBuf {
        self.dir.path().join("claude")
    }
    pub fn settings_file(&self) -> PathBuf {
        self.claude_dir().join("settings.json")
    }
    pub fn settings(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.settings_file()).unwrap()).unwrap()
    }
    /// The events of one kind in the log.
    pub fn events(&self, kind: &str) -> Vec<Value> {
        self.log_json()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }

    /// `keyswitch` with this sandbox's folders and nothing from the caller's environment that
    /// could point it elsewhere.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("keyswitch").expect("binary built");
        self.apply_env(cmd.env_clear());
        cmd
    }

    pub fn std_cmd(&self) -> StdCommand {
        let mut cmd = StdCommand::new(assert_cmd::cargo::cargo_bin("keyswitch"));
        cmd.env_clear();
        self.apply_env_std(&mut cmd);
        cmd
    }

    fn apply_env(&self, cmd: &mut Command) {
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
    }

    fn apply_env_std(&self, cmd: &mut StdCommand) {
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
    }

    /// Stores `secret` for `name` with libsecret's own tool, as another program would.
    pub fn store_with_secret_tool(
        &self,
        name: &str,
        secret: impl AsRef<[u8]>,
        collection: Option<&str>,
    ) {
        use std::io::Write;
        let mut cmd = StdCommand::new("secret-tool");
        cmd.arg("store").arg("--label=other tool");
        if let Some(collection) = collection {
            cmd.arg(format!("--collection={collection}"));
        }
        let mut child = cmd
            .args(["service", &self.service, "username", name])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(secret.as_ref())
            .unwrap();
        assert!(child.wait().unwrap().success());
    }

    /// Runs the sh `script` in a private keyring of its own (scripts/with-private-keyring.sh),
    /// not the one the other tests share, with this sandbox's environment and `SECRET`,
    /// `KEYSWITCH` (the binary) and `OUT` (a folder for what the script writes down), which it
    /// returns. The script must succeed.
    pub fn run_in_own_keyring(&self, script: &str, secret: &str) -> PathBuf {
        let out = self.dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let runner = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/with-private-keyring.sh");
        let status = StdCommand::new(runner)
            .args(["sh", "-c", script])
            .env_clear()
            .envs(
                self.env()
                    .into_iter()
                    .filter(|(k, _)| k != "DBUS_SESSION_BUS_ADDRESS"),
            )
            .env("SECRET", secret)
            .env("KEYSWITCH", assert_cmd::cargo::cargo_bin("keyswitch"))
            .env("OUT", &out)
            .status()
            .unwrap();
        assert!(status.success());
        out
    }

    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "HOME".to_string(),
                self.dir.path().join("home").display().to_string(),
            ),
            (
                "XDG_CONFIG_HOME".to_string(),
                self.config_home().display().to_string(),
            ),
            (
                "XDG_STATE_HOME".to_string(),
                self.state_home().display().to_string(),
            ),
            (
                "PATH".to_string(),
                std::env::var("PATH").unwrap_or_default(),
            ),
            ("TZ".to_string(), "UTC".to_string()),
            (
                "CLAUDE_CONFIG_DIR".to_string(),
                self.claude_dir().display().to_string(),
            ),
        ];
        if let Ok(bus) = std::env::var("DBUS_SESSION_BUS_ADDRESS") {
            env.push(("DBUS_SESSION_BUS_ADDRESS".to_string(), bus));
        }
        env
    }

    /// Adds a key with its secret on stdin, and expects success.
    pub fn add(&self, name: &str, secret: &str, extra: &[&str]) {
        self.cmd()
            .arg("add")
            .arg(name)
            .args(extra)
            .write_stdin(format!("{secret}\n"))
            .assert()
            .success();
    }

    /// Seconds until the cooldown of the key at `index` (0 = primary) ends.
    pub fn seconds_left(&self, index: usize) -> i64 {
        let until: jiff::Timestamp = self.list_json()[index]["exhausted_until"]
            .as_str()
            .expect("the key is cooling down")
            .parse()
            .unwrap();
        until.duration_since(jiff::Timestamp::now()).as_secs()
    }

    /// What `get` prints, expecting success.
    pub fn get(&self) -> String {
        let out = self.cmd().arg("get").output().unwrap();
        assert!(
            out.status.success(),
            "get failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn list_json(&self) -> Vec<Value> {
        let out = self.cmd().args(["list", "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn log_json(&self) -> Vec<Value> {
        let out = self.cmd().args(["log", "--json"]).output().unwrap();
        assert!(out.status.success());
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// The secret the Secret Service holds for `name` under this sandbox's service, read with
    /// libsecret's own tool rather than keyswitch.
    pub fn secret_tool_lookup(&self, name: &str) -> Option<String> {
        let out = StdCommand::new("secret-tool")
            .args(["lookup", "service", &self.service, "username", name])
            .output()
            .expect("secret-tool runs");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Every file under the sandbox's config and state folders, with its bytes.
    pub fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut found = Vec::new();
        for root in [self.config_dir(), self.state_dir()] {
            collect(&root, &mut found);
        }
        found.sort();
        found
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Leave the private keyring as we found it.
        let _ = StdCommand::new("secret-tool")
            .args(["clear", "service", &self.service])
            .output();
    }
}

fn collect(dir: &Path, found: &mut Vec<(PathBuf, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, found);
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path, bytes));
        }
    }
}

pub fn names(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|k| k["name"].as_str().unwrap().to_string())
        .collect()
}

pub fn active(list: &[Value]) -> Option<String> {
    list.iter()
        .find(|k| k["active"] == Value::Bool(true))
        .map(|k| k["name"].as_str().unwrap().to_string())
}

/// A fake key: never a real credential in a test.
pub fn fake_key(tag: &str) -> String {
    format!("sk-ant-test-{tag}-0123456789abcdef")
}

/// A stand-in for one Claude Code process (see tests/fake_claude.py): it runs the helper and
/// the hook through `/bin/sh -c`, so keyswitch sees the process tree Claude Code gives it.
pub struct FakeClaude {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

pub struct Ran {
    pub stdout: String,
    pub stderr: String,
    pub code: i64,
}

impl Ran {
    /// Asserts the command printed exactly `line` (and a newline); a failure shows what it said
    /// on stderr, which is where the reason for printing nothing is.
    #[track_caller]
    pub fn assert_printed(&self, line: &str) {
        assert_eq!(
            self.stdout,
            format!("{line}\n"),
            "exit code {}, stderr: {}",
            self.code,
            self.stderr
        );
    }
}

impl FakeClaude {
    pub fn start(sandbox: &Sandbox, extra_env: &[(&str, &str)]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_claude.py");
        let mut cmd = StdCommand::new("python3");
        cmd.arg(script).env_clear();
        for (k, v) in sandbox.env() {
            cmd.env(k, v);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the fake Claude Code");
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        Self { child, stdout }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn ask(&mut self, request: serde_json::Value) -> Ran {
        use std::io::{BufRead, Write};
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{request}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let answer: Value = serde_json::from_str(&line).expect("fake Claude answered");
        Ran {
            stdout: answer["stdout"].as_str().unwrap().to_string(),
            stderr: answer["stderr"].as_str().unwrap().to_string(),
            code: answer["code"].as_i64().unwrap(),
        }
    }

    /// Runs the apiKeyHelper command, as Claude Code does at start-up and on refresh.
    pub fn helper(&mut self, env: &[(&str, &str)]) -> Ran {
        let env: serde_json::Map<String, Value> = env
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        self.ask(serde_json::json!({"op": "helper", "command": helper_command(), "env": env}))
    }

    /// Runs the StopFailure hook with Claude Code's JSON for `error` on stdin.
    pub fn stop_failure(&mut self, error: &str, session: &str) -> Ran {
        let input = serde_json::json!({
            "session_id": session, "transcript_path": "/tmp/t.jsonl", "cwd": "/tmp",
            "prompt_id": "p1", "effort": {"level": "medium"}, "hook_event_name": "StopFailure",
            "error": error, "last_assistant_message": "API Error: Request rejected (429) · Budget exhausted for this key"
        });
        self.hook_raw(&input.to_string(), session)
    }

    pub fn hook_raw(&mut self, input: &str, session: &str) -> Ran {
        self.ask(serde_json::json!({"op": "hook", "command": hook_command(), "input": input, "session": session}))
    }
}

impl Drop for FakeClaude {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> String {
    assert_cmd::cargo::cargo_bin("keyswitch")
        .display()
        .to_string()
}

pub fn helper_command() -> String {
    format!("{} get", binary())
}

pub fn hook_command() -> String {
    format!("{} hook stop-failure", binary())
}
