//! The two kinds of failure a user can meet, and the exit status each maps to.
//!
//! Anything refused because of what the user typed or piped in is a [`Refused`] (exit 2);
//! everything else (a keychain that cannot be reached, a file that cannot be written) is a
//! plain `anyhow::Error` (exit 1).

use std::process::ExitCode;

/// Input keyswitch refuses to act on. The message names the problem and the way out.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Shorthand for returning a [`Refused`] as an `anyhow::Error`.
pub fn refuse(message: impl Into<String>) -> anyhow::Error {
    Refused(message.into()).into()
}

/// Exit status: 0 success, 2 a usage error or refused input, 1 any other failure.
pub fn exit_code_for(error: &anyhow::Error) -> ExitCode {
    if error.downcast_ref::<Refused>().is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

/// Renders an error chain as the single line keyswitch promises: causes joined with ": ",
/// any line breaks from lower layers (D-Bus messages carry some) folded into spaces.
pub fn one_line(error: &anyhow::Error) -> String {
    let text = format!("{error:#}");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
