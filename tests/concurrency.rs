//! Many keyswitch processes at once, as when several Claude Code sessions run side by side;
//! and writers killed with SIGKILL at any moment.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Sandbox, fake_key};
use serde_json::Value;

fn spawn(s: &Sandbox, args: &[&str]) -> Child {
    s.std_cmd()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn concurrent_marks_on_different_keys_lose_no_update() {
    let s = Sandbox::new();
    let names: Vec<String> = (0..12).map(|i| format!("key{i:02}")).collect();
    for name in &names {
        s.add(name, &fake_key(name), &[]);
    }
    let children: Vec<Child> = names
        .iter()
        .map(|n| spawn(&s, &["mark-exhausted", n, "--for", "1h"]))
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = s.list_json();
    let cooling = list
        .iter()
        .filter(|k| k["exhausted_until"].is_string())
        .count();
    assert_eq!(cooling, names.len(), "{list:?}");
    let marks = s.log_json().iter().filter(|e| e["event"] == "mark").count();
    assert_eq!(marks, names.len());
}

#[test]
fn concurrent_gets_always_print_a_whole_valid_key_while_writers_run() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    let valid = [
        format!("{}\n", fake_key("one")),
        format!("{}\n", fake_key("two")),
    ];
    for round in 0..4 {
        let mut children = Vec::new();
        for i in 0..8 {
            children.push((true, spawn(&s, &["get"])));
            let writer: &[&str] = if (i + round) % 2 == 0 {
                &["mark-exhausted", "primary", "--for", "1h"]
            } else {
                &["reset"]
            };
            children.push((false, spawn(&s, writer)));
        }
        for (is_get, child) in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            if is_get {
                let printed = String::from_utf8(out.stdout).unwrap();
                assert!(valid.contains(&printed), "get printed {printed:?}");
                assert!(
                    out.stderr.is_empty(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    // The state file is whole.
    let state: Value = serde_json::from_slice(&std::fs::read(s.state_file()).unwrap()).unwrap();
    assert!(state["cooldowns"].is_object());
}

/// A small deterministic generator: the kill moments vary, the test stays reproducible.
struct Lcg(u64);
impl Lcg {
    fn next_below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

#[test]
fn writers_killed_at_any_moment_leave_whole_files_and_no_temporary_files_pile_up() {
    let s = Sandbox::new();
    s.add("primary", &fake_key("one"), &[]);
    s.add("fallback", &fake_key("two"), &[]);
    let mut rng = Lcg(0x5eed);
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut kills = 0;
    while Instant::now() < deadline {
        let args: &[&str] = match rng.next_below(3) {
            0 => &["mark-exhausted", "primary", "--for", "2h"],
            1 => &["mark-exhausted", "fallback", "--for", "1h"],
            _ => &["reset"],
        };
        let mut child = spawn(&s, args);
        std::thread::sleep(Duration::from_micros(rng.next_below(8_000)));
        if child.try_wait().unwrap().is_none() {
            kills += 1;
        }
        let _ = child.kill(); // SIGKILL on Unix
        let _ = child.wait();
        // Whatever moment it died at, the state file is the old one or the new one.
        if let Ok(bytes) = std::fs::read(s.state_file()) {
            serde_json::from_slice::<Value>(&bytes).expect("state file torn by a killed writer");
        }
        let config: Value =
            serde_json::from_slice(&std::fs::read(s.config_file()).unwrap()).unwrap();
        assert_eq!(config["keys"].as_array().unwrap().len(), 2);
    }
    assert!(
        kills > 10,
        "only {kills} writers were killed mid-run; the test proved little"
    );
    // One ordinary write afterwards sweeps whatever the killed writers left behind.
    s.cmd().arg("reset").assert().success();
    for dir in [s.state_dir(), s.config_dir()] {
        let stray: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with(".keyswitch-tmp-"))
            .collect();
        assert!(
            stray.is_empty(),
            "stray temporary files in {}: {stray:?}",
            dir.display()
        );
    }
    s.cmd().arg("get").assert().success().stderr("");
}
