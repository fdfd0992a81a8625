//! Keeps every keyswitch process (each may hold a secret: `add`, `get`, the proxy) out of core dumps and
//! debuggers of the same user, as ssh-agent and gpg-agent do: a crash under
//! `ulimit -c unlimited` must not leave a file holding a key and the access token.
//!
//! - Everywhere on Unix: the core file size limit, soft and hard, is set to 0, so neither this
//!   process nor anything it starts writes a core file (the hard limit cannot be raised back
//!   without privilege).
//! - Linux: `PR_SET_DUMPABLE` 0 as well. It covers what the limit does not: a core handler
//!   named by `core_pattern` with a pipe (systemd-coredump, apport) ignores `RLIMIT_CORE` of 0
//!   only for non-dumpable processes; and it stops another process of the same user from
//!   `ptrace`-attaching or reading `/proc/PID/mem`, `environ` and the `fd` folder. What it
//!   leaves readable: `/proc/PID/status`, `limits`, `cmdline`, `stat` (mode 0444), and the
//!   process's own `/proc/self/*` (the kernel lets a process read its own entries).
//! - macOS: the limit only. `ptrace(PT_DENY_ATTACH)` exists, but it needs a raw `ptrace` call
//!   (no safe wrapper in rustix), a debugger of the same user can still read memory through
//!   the task port given the right entitlement, and crash reports (ReportCrash) hold no memory
//!   image — so the limit is what matters there.
//! - Windows: nothing is set. Windows Error Reporting writes a full dump only where the user (or
//!   an administrator) configured `LocalDumps`; opting one program out takes
//!   `WerAddExcludedApplication` or a registry write, which a per-user tool should not make
//!   behind the user's back. docs/security.md says so.

/// Makes this process (and, for the core limit, its children) leave no core dump. Failing is
/// said once on stderr and is not fatal: the command still does its work.
pub fn forbid() {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, setrlimit};
        let none = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        if let Err(e) = setrlimit(Resource::Core, none) {
            crate::messages::warn(format_args!(
                "could not turn core dumps off (a crash could leave a core file holding a key): {e}"
            ));
        }
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::process::{DumpableBehavior, set_dumpable_behavior};
        if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
            crate::messages::warn(format_args!(
                "could not make the process undumpable (another program of yours could read its memory): {e}"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    /// Run in a child process of its own: the limits cannot be raised again afterwards.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn after_forbid_the_core_limit_is_zero_and_the_process_is_not_dumpable() {
        if std::env::var_os("KEYSWITCH_TEST_NO_CORE_DUMPS_CHILD").is_none() {
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "no_core_dumps::tests::after_forbid_the_core_limit_is_zero_and_the_process_is_not_dumpable",
                ])
                .env("KEYSWITCH_TEST_NO_CORE_DUMPS_CHILD", "1")
                .status()
                .unwrap();
            assert!(status.success());
            return;
        }
        use rustix::process::{DumpableBehavior, Resource, dumpable_behavior, getrlimit};
        super::forbid();
        let limit = getrlimit(Resource::Core);
        assert_eq!((limit.current, limit.maximum), (Some(0), Some(0)));
        assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::NotDumpable);
        // What the proxy and `get` read of themselves still works.
        assert!(std::env::current_exe().is_ok());
        assert!(std::fs::read_to_string("/proc/self/status").is_ok());
        assert!(std::fs::read_dir("/proc/self/fd").is_ok());
    }
}
