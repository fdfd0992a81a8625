//! Writing this binary's path into the commands Claude Code runs (the apiKeyHelper and the
//! hook), so the shell that runs them reads it as that path; and knowing those commands again.

/// Writes a path so the shell Claude Code runs the command through reads it as that path:
/// `/bin/sh` on Linux and macOS, quoted when it needs it; see [`windows_command_path`].
/// Hand-written rather than `shlex::try_quote`: shlex writes `/it's` as `"/it's"` where the
/// tests pin `'/it'\''s'`, and quotes `,` and `=`, which sh reads literally; the helper entry
/// of an existing install would change on the next one.
pub fn shell_quote(path: &str) -> String {
    if cfg!(windows) {
        windows_command_path(path)
    } else {
        let plain = path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c));
        if plain && !path.is_empty() {
            path.to_string()
        } else {
            format!("'{}'", path.replace('\'', "'\\''"))
        }
    }
}

/// On Windows, Claude Code runs the apiKeyHelper through `cmd.exe` and hooks through Git Bash
/// (PowerShell without it). Git Bash takes the backslashes out of an unquoted `C:\Users\me\..`
/// (a known cause of hooks failing with "command not found"), so the path is written with
/// forward slashes, which all three accept; unquoted when plain (then all three run it), else in
/// double quotes (`cmd.exe` and Git Bash run that; PowerShell would need `&`).
pub fn windows_command_path(path: &str) -> String {
    let path = path.replace('\\', "/");
    // Only what none of the three shells treats specially: `,` and `=` split words in cmd.exe.
    let plain = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-:".contains(c));
    if plain && !path.is_empty() {
        path
    } else {
        format!("\"{path}\"")
    }
}

/// True for a hook or helper command that runs some keyswitch binary.
pub(crate) fn is_ours(command: &str, tail: &str) -> bool {
    command.contains("keyswitch") && command.trim_end().ends_with(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(
            shell_quote("/usr/local/bin/keyswitch"),
            "/usr/local/bin/keyswitch"
        );
        assert_eq!(shell_quote("/home/a b/keyswitch"), "'/home/a b/keyswitch'");
        assert_eq!(shell_quote("/it's/keyswitch"), "'/it'\\''s/keyswitch'");
    }

    #[test]
    fn windows_paths_are_written_with_forward_slashes() {
        assert_eq!(
            windows_command_path(r"C:\Users\me\AppData\Local\keyswitch\keyswitch.exe"),
            "C:/Users/me/AppData/Local/keyswitch/keyswitch.exe"
        );
        assert_eq!(
            windows_command_path(r"C:\Users\John Doe\bin\keyswitch.exe"),
            "\"C:/Users/John Doe/bin/keyswitch.exe\""
        );
        assert_eq!(
            windows_command_path(r"D:\tools,old\keyswitch.exe"),
            "\"D:/tools,old/keyswitch.exe\""
        );
    }
}
