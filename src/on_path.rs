//! Whether the `keyswitch` a shell finds on PATH runs this binary: itself, a link to it, or the
//! npm launcher that started it. `doctor` checks it; advice printed to the user names a command
//! that works as printed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The npm launcher (npm/main/bin/keyswitch.js) sets this to its own path when it runs the
/// binary: on PATH there is the launcher, not the binary.
pub const LAUNCHER_VAR: &str = "KEYSWITCH_LAUNCHER";

/// What a shell runs for `keyswitch`.
#[derive(Debug, PartialEq, Eq)]
pub enum OnPath {
    /// This binary, directly or through the launcher that started it.
    Me(PathBuf),
    /// Another keyswitch comes first on PATH.
    Other(PathBuf),
    /// No keyswitch on PATH.
    Missing,
}

/// Looks `keyswitch` up on PATH and compares it with this process.
pub fn keyswitch_on_path() -> OnPath {
    let me = std::env::current_exe().ok();
    let launcher = std::env::var_os(LAUNCHER_VAR).map(PathBuf::from);
    classify(std::env::var_os("PATH"), me.as_deref(), launcher.as_deref())
}

/// This binary's full path, links resolved, as Claude Code's settings and advice name it. On
/// Windows without the `\\?\` prefix std's canonicalize adds: cmd.exe, which runs the
/// apiKeyHelper, cannot start a program named that way.
pub fn this_binary() -> std::io::Result<PathBuf> {
    dunce::canonicalize(std::env::current_exe()?)
}

/// How to write the keyswitch command in advice: `keyswitch` when that runs this binary, else
/// this binary's full path (shell-quoted).
pub fn command_name() -> String {
    if let OnPath::Me(_) = keyswitch_on_path() {
        return "keyswitch".to_owned();
    }
    this_binary()
        .ok()
        .and_then(|p| p.to_str().map(crate::claude::command_path::shell_quote))
        .unwrap_or_else(|| "keyswitch".to_owned())
}

/// Hand-written rather than the `which` crate (doctor's lookup of `claude`): `which` skips a
/// file without the executable bit, and a `keyswitch` that is not executable is still one the
/// user meant to run, so doctor names it (this module's tests pin that) instead of saying
/// none is on PATH.
fn classify(path: Option<OsString>, me: Option<&Path>, launcher: Option<&Path>) -> OnPath {
    let name = format!("keyswitch{}", std::env::consts::EXE_SUFFIX);
    let Some(found) = path.and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(&name))
            .find(|p| p.is_file())
    }) else {
        return OnPath::Missing;
    };
    let real = |p: &Path| p.canonicalize().ok();
    let found_real = real(&found);
    let runs_me = found_real.is_some()
        && [me, launcher]
            .into_iter()
            .flatten()
            .any(|p| real(p) == found_real);
    if runs_me {
        OnPath::Me(found)
    } else {
        OnPath::Other(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "").unwrap();
        p
    }

    #[test]
    fn the_binary_itself_on_path_is_me() {
        let dir = tempfile::tempdir().unwrap();
        let me = file(dir.path(), "keyswitch");
        let path = Some(dir.path().as_os_str().to_owned());
        assert_eq!(classify(path, Some(&me), None), OnPath::Me(me));
    }

    #[test]
    fn the_launcher_that_started_me_is_me() {
        let bin = tempfile::tempdir().unwrap();
        let pkg = tempfile::tempdir().unwrap();
        let launcher = file(bin.path(), "keyswitch");
        let me = file(pkg.path(), "native");
        let path = Some(bin.path().as_os_str().to_owned());
        assert_eq!(
            classify(path.clone(), Some(&me), Some(&launcher)),
            OnPath::Me(launcher.clone())
        );
        assert_eq!(classify(path, Some(&me), None), OnPath::Other(launcher));
    }

    #[test]
    fn another_keyswitch_or_none() {
        let other = tempfile::tempdir().unwrap();
        let mine = tempfile::tempdir().unwrap();
        let found = file(other.path(), "keyswitch");
        let me = file(mine.path(), "keyswitch");
        let path = std::env::join_paths([other.path(), mine.path()]).unwrap();
        assert_eq!(classify(Some(path), Some(&me), None), OnPath::Other(found));
        let empty = tempfile::tempdir().unwrap();
        let path = Some(empty.path().as_os_str().to_owned());
        assert_eq!(classify(path, Some(&me), None), OnPath::Missing);
        assert_eq!(classify(None, Some(&me), None), OnPath::Missing);
    }
}
