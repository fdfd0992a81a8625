//! The real Claude Code CLI (pinned; scripts/test.sh installs it and exports
//! `KEYSWITCH_CLAUDE_BIN`), one process fed user turns through stream-json, as
//! tests/e2e_claude_code.rs drives it; with extra arguments and environment, for a gateway that
//! serves only some models.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Sandbox;

/// The pinned Claude Code binary; the run fails (never skips) without it.
pub fn binary() -> PathBuf {
    let path = std::env::var_os("KEYSWITCH_CLAUDE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/claude/node_modules/.bin/claude")
        });
    assert!(
        path.exists(),
        "the pinned Claude Code CLI is missing at {}: run ./scripts/test.sh, which installs it",
        path.display()
    );
    path
}

/// One running Claude Code process fed turns through stream-json.
pub struct Session {
    child: Child,
    lines: Receiver<Value>,
}

impl Session {
    /// Claude Code in the sandbox's folders with `args` after the stream-json ones and `env` on
    /// top of the sandbox's environment.
    pub fn start(s: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(binary());
        cmd.args([
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
        ])
        .args(args)
        .env_clear()
        .current_dir(s.dir.path())
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        for (k, v) in s.env() {
            cmd.env(k, v);
        }
        cmd.envs(env.iter().copied());
        std::fs::create_dir_all(s.dir.path().join("home")).unwrap();
        let mut child = cmd.spawn().expect("Claude Code starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && tx.send(value).is_err()
                {
                    return;
                }
            }
        });
        Self { child, lines: rx }
    }

    /// Sends one user turn and waits for its result line.
    pub fn turn(&mut self, text: &str) -> Value {
        let message = json!({"type": "user", "message": {"role": "user", "content": [{"type": "text", "text": text}]}});
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_secs(1)) {
                Ok(line) if line["type"] == "result" => return line,
                Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(e) => panic!("Claude Code stopped: {e}"),
            }
        }
        panic!("no result from Claude Code within 90 s for {text:?}");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
