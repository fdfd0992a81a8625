//! Core files: where the kernel writes them, and keyswitch run as a user whose shell allows
//! them (`ulimit -c unlimited`), for the tests that check a crash leaves no secret on disk.

use std::path::Path;
use std::process::Command;

use super::Sandbox;

/// The core files in `dir` (the kernel names them `core` or `core.PID` with core_pattern
/// `core`).
pub fn core_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name == "core" || name.starts_with("core."))
        .collect()
}

/// Whether this machine writes a core file into the crashing process's folder at all: a
/// shell with an unlimited core size that aborts. Elsewhere (a piped core_pattern) a test can only
/// check the limit.
pub fn cores_land_in_the_working_folder() -> bool {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    if pattern.trim() != "core" {
        return false;
    }
    let dir = tempfile::tempdir().unwrap();
    let _ = Command::new("sh")
        .args(["-c", "ulimit -c unlimited && kill -ABRT $$"])
        .current_dir(dir.path())
        .status();
    !core_files(dir.path()).is_empty()
}

/// Runs keyswitch's `args` through a shell that first allows core files of any size, as
/// `ulimit -c unlimited` in the user's profile does.
pub fn with_core_dumps_allowed(s: &Sandbox, args: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.env_clear()
        .envs(s.env())
        .arg("-c")
        .arg(format!("ulimit -c unlimited && exec \"$0\" {args}"))
        .arg(assert_cmd::cargo::cargo_bin("keyswitch"));
    cmd
}
