//! keyswitch: an ordered pool of keychain-held API keys with cooldowns, for Claude Code's
//! `apiKeyHelper`. `main_entry` is the whole program; the binary only calls it.

/// `eprintln!` that never panics: a command whose stderr is a closed pipe (`keyswitch … 2>&1 |
/// head`) has done its work by the time it reports it, and must exit with its own status, not
/// 101. What cannot be said is dropped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that never panics (see `say!`).
macro_rules! say_inline {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stderr = std::io::stderr();
        let _ = write!(stderr, $($arg)*);
        let _ = stderr.flush();
    }};
}

mod bounded_command;
mod claude;
mod cli;
mod commands;
mod config;
mod cooldown;
mod endpoint;
mod error;
mod events;
mod failpoints;
mod failure;
mod fileio;
mod gateway;
mod handout;
mod headroom;
mod key_upstreams;
mod loopback;
mod messages;
mod mode;
mod no_core_dumps;
mod no_proxy;
mod notify;
mod on_path;
mod paths;
mod pool;
mod port_owner;
mod proxy;
mod proxy_client;
mod proxy_pid_record;
mod proxy_proof;
mod proxy_protocol;
mod proxy_settings;
mod proxy_token;
mod reason;
mod select;
mod service;
mod state;
mod store;
mod subscription;
mod subscription_login;
mod timespec;
mod token_handouts;
mod validate;

/// For the store benchmark (bench/store-compare) only: the keychain as keyswitch opens it. Not
/// an API; nothing else of the crate is public.
#[doc(hidden)]
pub mod bench {
    pub use crate::config::StoreKind;
    pub use crate::store::Keychain;
}

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use crate::cli::Cli;

/// Parses the command line, runs it, and prints any error once, on one line, to stderr.
pub fn main_entry() -> ExitCode {
    // Before anything reads a secret: every command may hold one (`add` reads it from the
    // terminal, `list`, `doctor` and `reauthorize` from the keychain), not only `get` and the
    // proxy, and a crash must leave no core file holding it.
    no_core_dumps::forbid();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e),
    };
    match commands::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say!("keyswitch: {}", error::one_line(&e));
            error::exit_code_for(&e)
        }
    }
}

/// Help and version print as clap renders them; usage errors are cut to one line, keeping
/// keyswitch's promise of one-line errors, and exit 2.
fn clap_exit(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            say!(
                "keyswitch: {}",
                one_line_usage_error(&e.render().to_string())
            );
            ExitCode::from(2)
        }
    }
}

/// clap's rendering of a usage error in one line: the problem and any tip (a list, such as the
/// missing arguments, stays with the line that introduces it), then the command's usage.
fn one_line_usage_error(rendered: &str) -> String {
    let mut problem = String::new();
    for line in rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:"))
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
    {
        if !problem.is_empty() {
            problem.push_str(if problem.ends_with(':') { " " } else { "; " });
        }
        problem.push_str(line.trim_start_matches("error: "));
    }
    if problem.is_empty() {
        problem.push_str("invalid arguments");
    }
    match rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("Usage: "))
    {
        Some(usage) => format!("{problem}; usage: {usage} (see --help)"),
        None => format!("{problem}; see `keyswitch --help`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage_error(args: &[&str]) -> String {
        let e = Cli::try_parse_from(args).expect_err("a usage error");
        one_line_usage_error(&e.render().to_string())
    }

    #[test]
    fn a_missing_argument_is_named() {
        let line = usage_error(&["keyswitch", "add"]);
        assert!(line.contains("not provided: <NAME>;"), "{line}");
        assert!(line.contains("usage: keyswitch add"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn unknown_flags_and_commands_are_one_line() {
        for args in [
            &["keyswitch", "list", "--jsn"][..],
            &["keyswitch", "frobnicate"],
            &["keyswitch", "move", "a"],
            &["keyswitch", "install", "--max-retries", "x"],
        ] {
            let line = usage_error(args);
            assert!(!line.contains('\n') && !line.contains(":;"), "{line}");
            assert_eq!(line.matches("--help").count(), 1, "{line}");
        }
    }
}
