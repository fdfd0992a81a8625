//! Running a system tool (`claude --version`, `security`, `plutil`, `reg`) with a deadline:
//! whatever the tool does, the caller gets on, and no child is left behind.

use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// What the tool printed on stdout and how it exited; `None` when it could not be started or
/// did not finish within `deadline`. (Only macOS and Windows have such tools to ask yet.)
#[cfg_attr(not(any(target_os = "macos", windows)), allow(dead_code))]
pub fn run(mut command: Command, deadline: Duration) -> Option<(ExitStatus, Vec<u8>)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let (send, receive) = std::sync::mpsc::channel();
    // Read on a thread: a tool can exit while a child of it still holds the pipe open, and
    // waiting for the pipe to close would not be bounded by anything.
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::BufReader::new(stdout), &mut bytes);
        let _ = send.send(bytes);
    });
    let printed = receive.recv_timeout(deadline).ok();
    let status = match child.try_wait().ok().flatten() {
        Some(status) => Some(status),
        None if printed.is_some() => {
            // The pipe closed: the tool is about to exit.
            wait_briefly(&mut child)
        }
        None => None,
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Some((status?, printed?))
}

/// The first line a tool prints, within `deadline` (a wrapper script's child may keep the pipe
/// open after the line: the line is enough).
pub fn first_line(mut command: Command, deadline: Duration) -> Option<String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = send.send(line);
    });
    let line = receive.recv_timeout(deadline).ok();
    // Whatever happened, leave no child behind; the reader thread ends with the process.
    if child.try_wait().ok().flatten().is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    line
}

#[cfg_attr(not(any(target_os = "macos", windows)), allow(dead_code))]
fn wait_briefly(child: &mut std::process::Child) -> Option<ExitStatus> {
    for _ in 0..50 {
        if let Some(status) = child.try_wait().ok().flatten() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}
