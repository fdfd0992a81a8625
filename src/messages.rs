//! Words said in more than one place, so they are said the same way everywhere, and the one door
//! to stderr for warnings.

/// What every command that needs a key says when there is none.
pub const NO_KEYS_YET: &str = "no keys yet: add one with `keyswitch add primary` (the secret is read from stdin or a hidden prompt)";

/// What every command that needs a key says when the API rejected all of them.
pub const ALL_SET_ASIDE: &str = "every key was rejected by the API and is set aside: give one a new secret with `keyswitch add NAME --replace`, or `keyswitch reset NAME`";

/// A warning on stderr, in the one form every keyswitch warning takes.
pub fn warn(message: impl std::fmt::Display) {
    say!("keyswitch: warning: {message}");
}

/// A warning that something could not be done, with the error that stopped it, on one line.
pub fn warn_failed(what: impl std::fmt::Display, error: &anyhow::Error) {
    warn(format_args!(
        "could not {what}: {}",
        crate::error::one_line(error)
    ));
}

/// The most of a typed value a message shows: a refusal of a 100 KB argument is still one line.
const SHOWN_AT_MOST: usize = 200;

/// What the user typed (or a file held), as a message may show it: control characters escaped,
/// never sent raw to a terminal, and cut after [`SHOWN_AT_MOST`] characters.
pub fn as_typed(text: &str) -> String {
    let mut shown = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == SHOWN_AT_MOST {
            let rest = text.chars().count() - count;
            shown.push_str(&format!("… ({rest} more characters)"));
            break;
        }
        if c.is_control() {
            shown.extend(c.escape_debug());
        } else {
            shown.push(c);
        }
    }
    shown
}
