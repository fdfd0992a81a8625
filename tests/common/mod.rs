//! Shared test harness: a private sandbox per test (config and state folders of its own, a
//! keychain service name of its own) inside the private Secret Service that `scripts/test.sh`
//! starts. Tests refuse to run outside it, so they can never touch a person's own keychain.
#![allow(dead_code)]

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
