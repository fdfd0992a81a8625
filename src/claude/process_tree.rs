//! Finding the Claude Code process that ran the helper, by walking up the process tree.
//!
//! Claude Code runs the helper through the system shell: `/bin/sh -c` on Linux and macOS (dash
//! forks; bash runs a simple command in place; macOS's `/bin/sh` may be bash, dash or zsh), and
//! `cmd /c` on Windows (claude.exe → cmd.exe → keyswitch.exe). So the walk goes up past shells,
//! never assuming a fixed depth. The walk itself is pure (over a [`ProcessTable`]) and the same on
//! every OS; only reading one process's facts differs, in the per-OS backends below.
//!
//! Start times guard against pid reuse: Windows keeps a process's parent pid after the parent
//! exits, and that pid may be reused by a later process. A "parent" that started after its child
//! cannot be its parent, so the walk stops there.

/// A process as far as keyswitch needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub parent: Option<u32>,
    pub name: Option<String>,
    /// When it started, in the OS's own unit (Linux: clock ticks since boot; macOS: microseconds
    /// since the epoch; Windows: FILETIME, 100 ns since 1601). Only compared on one machine.
    pub start: Option<u64>,
}

/// Something that can tell keyswitch about a process: the OS, or a table in a test.
pub trait ProcessTable {
    fn inspect(&self, pid: u32) -> Option<Proc>;
}

/// Process names that are a shell between Claude Code and the helper, never Claude Code itself.
/// Compared case-insensitively without a trailing `.exe`.
const SHELLS: &[&str] = &[
    "sh",
    "dash",
    "bash",
    "zsh",
    "ksh",
    "mksh",
    "fish",
    "busybox",
    "cmd",
    "powershell",
    "pwsh",
];
/// How far up the process tree a hand-out remembers.
const CHAIN_DEPTH: usize = 4;

fn is_shell(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let base = lower.strip_suffix(".exe").unwrap_or(&lower);
    SHELLS.contains(&base)
}

/// The process taken to be Claude Code: the first ancestor of `me` that is not a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ancestry {
    pub claude: u32,
    pub claude_start: Option<u64>,
    /// `me`'s ancestors, nearest first (at most `CHAIN_DEPTH`), for a hook whose `CLAUDE_PID`
    /// is not `claude`.
    pub chain: Vec<u32>,
}

/// Walks up from `me`. Stops at the top of the tree, after `CHAIN_DEPTH` ancestors, or at a
/// recorded parent that started after its child (its pid was reused: the real parent is gone).
pub fn find_claude_in(table: &impl ProcessTable, me: u32) -> Option<Ancestry> {
    let mut chain = Vec::new();
    let mut claude = None;
    let mut child = table.inspect(me)?;
    while let Some(pid) = child.parent {
        if chain.len() == CHAIN_DEPTH || pid == 0 || chain.contains(&pid) || pid == me {
            break;
        }
        let proc = table.inspect(pid);
        // PID 1 is walked only while Claude Code is not found yet, and only when it can be
        // inspected: in a container Claude Code itself may be PID 1 (skipping it would leave the
        // hand-out under the shell's pid, where the hook never looks); above a found Claude
        // Code it is just init.
        if pid == 1 && (claude.is_some() || proc.is_none()) {
            break;
        }
        let started_after_child = matches!(
            (proc.as_ref().and_then(|p| p.start), child.start),
            (Some(parent), Some(child)) if parent > child
        );
        if started_after_child {
            break;
        }
        chain.push(pid);
        let shell = proc
            .as_ref()
            .and_then(|p| p.name.as_deref())
            .is_some_and(is_shell);
        if claude.is_none() && !shell {
            claude = Some((pid, proc.as_ref().and_then(|p| p.start)));
        }
        match proc {
            Some(p) => child = p,
            None => break,
        }
    }
    let (claude, claude_start) = claude.or_else(|| chain.first().map(|p| (*p, None)))?;
    Some(Ancestry {
        claude,
        claude_start,
        chain,
    })
}

/// The calling process's Claude Code, as the OS reports it.
pub fn find_claude() -> Option<Ancestry> {
    find_claude_in(&os::Table::snapshot(), std::process::id())
}

/// One process's facts from the OS, `None` when it is gone (or the OS will not say).
pub fn inspect(pid: u32) -> Option<Proc> {
    os::Table::snapshot().inspect(pid)
}

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as os;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as os;

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod os {
    use super::{Proc, ProcessTable};

    /// Only our own parent is known here, without a start time.
    pub struct Table;

    impl Table {
        pub fn snapshot() -> Self {
            Self
        }
    }

    impl ProcessTable for Table {
        fn inspect(&self, pid: u32) -> Option<Proc> {
            #[cfg(unix)]
            let parent = (pid == std::process::id()).then(std::os::unix::process::parent_id);
            #[cfg(not(unix))]
            let parent = None;
            parent.map(|parent| Proc {
                parent: Some(parent),
                name: None,
                start: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// An injected process table: pid → (parent, name, start).
    struct Fake(HashMap<u32, Proc>);

    impl Fake {
        fn new(rows: &[(u32, u32, &str, u64)]) -> Self {
            Self(
                rows.iter()
                    .map(|&(pid, parent, name, start)| {
                        let proc = Proc {
                            parent: (parent > 0).then_some(parent),
                            name: Some(name.to_string()),
                            start: Some(start),
                        };
                        (pid, proc)
                    })
                    .collect(),
            )
        }
    }

    impl ProcessTable for Fake {
        fn inspect(&self, pid: u32) -> Option<Proc> {
            self.0.get(&pid).cloned()
        }
    }

    #[test]
    fn linux_dash_forks_a_shell_between() {
        let table = Fake::new(&[
            (1, 0, "systemd", 1),
            (100, 1, "claude", 10),
            (200, 100, "sh", 20),
            (300, 200, "keyswitch", 21),
        ]);
        let found = find_claude_in(&table, 300).unwrap();
        assert_eq!(found.claude, 100);
        assert_eq!(found.claude_start, Some(10));
        assert_eq!(found.chain, vec![200, 100]);
    }

    #[test]
    fn macos_zsh_in_sh_mode_and_a_wrapper_shell() {
        // launchd → Terminal's zsh → claude → /bin/sh (zsh, which forks) → bash → keyswitch
        let table = Fake::new(&[
            (1, 0, "launchd", 1),
            (50, 1, "zsh", 5),
            (100, 50, "claude", 10),
            (200, 100, "zsh", 20),
            (210, 200, "bash", 21),
            (300, 210, "keyswitch", 22),
        ]);
        let found = find_claude_in(&table, 300).unwrap();
        assert_eq!(found.claude, 100);
        assert_eq!(found.chain, vec![210, 200, 100, 50]);
    }

    #[test]
    fn windows_cmd_between_claude_and_helper() {
        let table = Fake::new(&[
            (4, 0, "System", 1),
            (700, 4, "explorer.exe", 5),
            (1200, 700, "claude.exe", 10),
            (1300, 1200, "CMD.EXE", 20),
            (1400, 1300, "keyswitch.exe", 21),
        ]);
        let found = find_claude_in(&table, 1400).unwrap();
        assert_eq!(found.claude, 1200);
        assert_eq!(found.claude_start, Some(10));
    }

    #[test]
    fn a_reused_parent_pid_is_not_an_ancestor() {
        // The helper's cmd.exe exited and its pid went to a newer, unrelated process.
        let table = Fake::new(&[
            (1200, 700, "claude.exe", 10),
            (1300, 1200, "notepad.exe", 50),
            (1400, 1300, "keyswitch.exe", 21),
        ]);
        assert_eq!(find_claude_in(&table, 1400), None);
        // Further up: the chain ends below the impostor, Claude Code is still found.
        let table = Fake::new(&[
            (900, 1, "cmd.exe", 60),
            (1200, 900, "claude.exe", 10),
            (1300, 1200, "cmd.exe", 20),
            (1400, 1300, "keyswitch.exe", 21),
        ]);
        let found = find_claude_in(&table, 1400).unwrap();
        assert_eq!((found.claude, found.chain), (1200, vec![1300, 1200]));
    }

    #[test]
    fn a_parent_loop_ends() {
        let table = Fake::new(&[
            (10, 20, "sh", 1),
            (20, 10, "sh", 1),
            (30, 10, "keyswitch", 2),
        ]);
        let found = find_claude_in(&table, 30).unwrap();
        assert_eq!(found.chain, vec![10, 20]);
    }

    #[test]
    fn only_shells_above_takes_the_nearest() {
        let table = Fake::new(&[
            (10, 1, "bash", 1),
            (20, 10, "sh", 2),
            (30, 20, "keyswitch", 3),
        ]);
        let found = find_claude_in(&table, 30).unwrap();
        assert_eq!((found.claude, found.claude_start), (20, None));
    }

    proptest! {
        /// Whatever the table, every pid in the chain started no later than the process below
        /// it, and the chosen process is in the chain.
        #[test]
        fn the_chain_never_runs_backwards_in_time(
            rows in proptest::collection::vec((2u32..40, 0u32..40, 0usize..4, 0u64..100), 1..40),
            me in 2u32..40,
        ) {
            let names = ["sh", "claude", "cmd.exe", "node"];
            let rows: Vec<(u32, u32, &str, u64)> =
                rows.iter().map(|&(p, pp, n, s)| (p, pp, names[n], s)).collect();
            let table = Fake::new(&rows);
            if let Some(found) = find_claude_in(&table, me) {
                prop_assert!(found.chain.contains(&found.claude));
                prop_assert!(found.chain.len() <= CHAIN_DEPTH);
                let mut below = table.inspect(me).unwrap().start.unwrap();
                for pid in &found.chain {
                    if let Some(start) = table.inspect(*pid).and_then(|p| p.start) {
                        prop_assert!(start <= below);
                        below = start;
                    }
                }
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn linux_stat_with_parentheses_in_the_name() {
        let stat = "42 (a (b) c) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        let proc = os::parse_stat(stat).unwrap();
        assert_eq!(proc.name.as_deref(), Some("a (b) c"));
        assert_eq!(proc.parent, Some(7));
        assert_eq!(proc.start, Some(12345));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn linux_finds_this_process_parent() {
        let me = inspect(std::process::id()).unwrap();
        assert_eq!(me.parent, Some(std::os::unix::process::parent_id()));
        assert!(me.start.is_some());
    }
}
