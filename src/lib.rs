//! keyswitch: an ordered pool of keychain-held API keys with cooldowns, for Claude Code's
//! `apiKeyHelper`. `main_entry` is the whole program; the binary only calls it.

pub mod claude;
pub mod cli;
mod commands;
pub mod config;
pub mod cooldown;
pub mod endpoint;
pub mod error;
pub mod events;
pub mod fileio;
pub mod notify;
pub mod on_path;
pub mod paths;
pub mod pool;
pub mod select;
pub mod state;
pub mod store;
pub mod timespec;
pub mod validate;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use crate::cli::Cli;

/// Parses the command line, runs it, and prints any error once, on one line, to stderr.
pub fn main_entry() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e),
    };
    match commands::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyswitch: {}", error::one_line(&e));
            error::exit_code_for(&e)
        }
    }
}

/// Help and version print as clap renders them; usage errors are cut to their first line,
/// keeping keyswitch's promise of one-line errors, and exit 2.
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
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("keyswitch: {first}; see `keyswitch --help`");
            ExitCode::from(2)
        }
    }
}
