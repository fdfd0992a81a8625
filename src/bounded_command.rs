//! Running a system tool (`claude --version`, `security`, `plutil`, `reg`) with a deadline:
//! whatever the tool does, the caller gets on, and no child is left behind.

use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// What the tool printed on stdout and how it exited; `None` when it could not be started or
/// did not finish within `deadline`. (Only macOS and Windows have such tools to ask yet.)
#[cfg_attr(not(any(target_os = "macos", windows)), allow(dead_code))]
pub fn run(mut command: Command, deadline: Duration) -> Option<(ExitStatus, Vec<u8>)> {
    // Read on a thread: a tool can exit while a child of it still holds the pipe open, and
    // waiting for the pipe to close would not be bounded by anything.
    let (mut child, receive) = spawn_reading(&mut command, |stdout| {
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::BufReader::new(stdout), &mut bytes);
        bytes
    })?;
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
    let (mut child, receive) = spawn_reading(&mut command, |stdout| {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        line
    })?;
    let line = receive.recv_timeout(deadline).ok();
    // Whatever happened, leave no child behind; the reader thread ends with the process.
    if child.try_wait().ok().flatten().is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    line
}

/// Starts the tool with its stdout read by `read` on a thread of its own; the result arrives on
/// the channel, so the caller's wait is bounded.
fn spawn_reading<T: Send + 'static>(
    command: &mut Command,
    read: impl FnOnce(ChildStdout) -> T + Send + 'static,
) -> Option<(Child, Receiver<T>)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(read(stdout));
    });
    Some((child, receive))
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
