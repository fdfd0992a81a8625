//! A peer's processes: running its setup and reset commands, starting it in a process group of
//! its own (so that stopping it ends whatever it spawned), stopping it, and the resident memory
//! of its whole group. Every group started is noted in the pids file, for the script's clean-up
//! to end should this process die first.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::spec::Cmd;

fn command(cmd: &Cmd) -> Command {
    let mut c = Command::new(&cmd.argv[0]);
    c.args(&cmd.argv[1..]).envs(&cmd.env).stdin(Stdio::null());
    if let Some(dir) = &cmd.cwd {
        c.current_dir(dir);
    }
    c
}

/// Runs a setup or reset command to its end; its stdout, or why it failed.
pub fn run(cmd: &Cmd) -> Result<String, String> {
    let out = command(cmd)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", cmd.argv[0]))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` exited with {}: {}",
            cmd.argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub struct Running {
    pub child: Child,
    pub started: Instant,
}

impl Running {
    pub fn pgid(&self) -> u32 {
        self.child.id()
    }
}

/// Starts the peer in a process group of its own, its output appended to `log`.
pub fn spawn(cmd: &Cmd, log: &PathBuf, pids: &PathBuf) -> Running {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
    let mut c = command(cmd);
    c.stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0);
    let started = Instant::now();
    let child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", cmd.argv.join(" ")));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(pids)
        .expect("the pids file");
    let _ = writeln!(f, "{}", child.id());
    Running { child, started }
}

/// SIGTERM to the whole group, SIGKILL to what is left after 5 s; then waits until nothing
/// listens on `listen` any more, so that the next start times only itself.
pub fn stop(mut running: Running, listen: SocketAddr) {
    let group = format!("-{}", running.pgid());
    signal("-TERM", &group);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = running.child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Whatever the leader left behind in its group, and the leader if it is still there.
    signal("-KILL", &group);
    let _ = running.child.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(listen).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(which: &str, group: &str) {
    let _ = Command::new("kill")
        .args([which, "--", group])
        .stderr(Stdio::null())
        .status();
}

/// The resident memory (VmRSS) of every process in the group, in KiB.
pub fn group_rss_kib(pgid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Field 5 is the process group; the command name (field 2) may hold spaces, so count
        // from its closing parenthesis.
        let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let pgrp = after
            .split_whitespace()
            .nth(2)
            .and_then(|f| f.parse::<u32>().ok());
        if pgrp == Some(pgid) {
            total += rss_of(pid);
        }
    }
    total
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
