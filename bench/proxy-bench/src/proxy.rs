//! The keyswitch side: running its commands in the sandbox the script set up (the environment
//! names the folders and the private keyring), starting `keyswitch proxy run` and timing it to
//! ready, stopping it, and reading its resident memory.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Keyswitch {
    pub bin: PathBuf,
}

impl Keyswitch {
    /// Runs a keyswitch command to its end; its stdout, or a panic naming what failed.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = Command::new(&self.bin)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        assert!(
            out.status.success(),
            "keyswitch {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Starts `keyswitch proxy run` and waits until its health endpoint answers: the process and
    /// the time from spawning it to the first answer.
    pub fn start(&self, listen: SocketAddr) -> (Child, Duration) {
        let start = Instant::now();
        let mut child = Command::new(&self.bin)
            .args(["proxy", "run"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start keyswitch proxy run");
        loop {
            if healthy(listen) {
                return (child, start.elapsed());
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("keyswitch proxy run exited with {status} before answering");
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the proxy did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// One health request; true when the proxy answered 200.
fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    send(
        &mut stream,
        "GET /_keyswitch/health HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
    )
    .starts_with("HTTP/1.1 200")
}

fn send(stream: &mut TcpStream, request: &str) -> String {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Stops a proxy this benchmark started with SIGTERM, which every keyswitch version ends on
/// gracefully (a shutdown request needs the proof of the token this version asks for), and
/// reaps it.
pub fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The process's resident memory (VmRSS), in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// CPU time the process's threads have run, and have spent runnable but waiting for a CPU
/// (the kernel's schedstat, in ns): what one request costs the proxy, apart from the queueing a
/// busy machine adds.
#[derive(Clone, Copy, Default)]
pub struct Cpu {
    pub run_ns: u64,
    pub wait_ns: u64,
}

pub fn cpu(pid: u32) -> Cpu {
    let mut total = Cpu::default();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return total;
    };
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        let mut fields = text
            .split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0));
        total.run_ns += fields.next().unwrap_or(0);
        total.wait_ns += fields.next().unwrap_or(0);
    }
    total
}

impl Cpu {
    /// Microseconds per request between `self` (before) and `after`: (on CPU, waiting for one).
    pub fn per_request(self, after: Cpu, requests: usize) -> (f64, f64) {
        let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / 1e3 / requests.max(1) as f64;
        (
            (per(self.run_ns, after.run_ns) * 10.0).round() / 10.0,
            (per(self.wait_ns, after.wait_ns) * 10.0).round() / 10.0,
        )
    }
}
