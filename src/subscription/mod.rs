//! Subscription-first mode (`keyswitch install --subscription-first`, the default over a Claude
//! subscription login): sessions use the login, with no `apiKeyHelper`, until its usage limit is
//! reached; then a *hold* keeps them on the API keys until the limit resets.
//!
//! - [`record`]: that the mode is on (config folder, like proxy.json);
//! - [`hold`]: the limit being held now, until when and which claim (state folder);
//! - [`limit`]: recognising the limit in what Claude Code reports (transcript, message);
//! - [`wiring`]: the settings entries that follow the hold.

pub mod hold;
pub mod limit;
pub mod record;
pub mod wiring;

/// The name the subscription goes by in `status`, `list`, `log`, `mark-exhausted` and `reset`;
/// no key may take it.
pub const NAME: &str = "subscription";

/// Whether `name` is the subscription's (keys are refused it in any case).
pub fn is_name(name: &str) -> bool {
    name.eq_ignore_ascii_case(NAME)
}
