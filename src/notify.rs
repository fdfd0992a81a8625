//! Desktop notifications on a switch, where the platform has them; silently skipped where not.
//! Never waited for: a notification must not slow the hook that Claude Code is waiting on.

use std::process::{Command, Stdio};

pub fn notify(summary: &str, body: &str) {
    let mut command = if cfg!(target_os = "macos") {
        let script = format!(
            "display notification \"{}\" with title \"{}\"",
            escape_applescript(body),
            escape_applescript(summary)
        );
        let mut c = Command::new("osascript");
        c.args(["-e", &script]);
        c
    } else if cfg!(unix) {
        let mut c = Command::new("notify-send");
        c.args(["--app-name=keyswitch", summary, body]);
        c
    } else {
        return;
    };
    // A missing program or a missing notification daemon is not an error worth reporting.
    let _ = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

fn escape_applescript(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
