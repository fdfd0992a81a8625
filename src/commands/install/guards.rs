//! What install refuses before it writes anything: an `apiKeyHelper` or status line of the
//! user's own (without `--force`), and a subscription login moved onto API billing silently.

use anyhow::Result;
use serde_json::{Map, Value};

use super::{Before, Wanted};
use crate::claude::settings_file::SettingsFile;
use crate::claude::wiring::{HELPER_KEY, STATUS_LINE_KEY, is_our_helper, is_our_status_line};
use crate::error::refuse;

/// A subscription login is never moved onto API billing silently: a first install over one is
/// subscription-first mode unless `--keys-only` says to bill the keys; `--helper` or `--proxy`
/// over one need `--keys-only` as well (also when leaving subscription-first mode); a re-install
/// in a key mode (the choice was made) says what it costs.
pub(super) fn guard_subscription(
    login: Option<&str>,
    before: Before,
    wanted: Wanted,
    keys_only: bool,
) -> Result<()> {
    let Some(login) = login else {
        if wanted == Wanted::SubscriptionFirst {
            crate::messages::warn(format_args!(
                "no Claude subscription login is found here: until you log in (`claude`, then /login), sessions have no credential except while a limit is held"
            ));
        }
        return Ok(());
    };
    if wanted == Wanted::SubscriptionFirst {
        return Ok(());
    }
    let billed = "with keyswitch as Claude Code's apiKeyHelper every request goes out on your API keys and is billed to them, not to your subscription";
    let chosen = matches!(before, Before::Helper | Before::Proxy);
    if chosen || keys_only {
        crate::messages::warn(format_args!(
            "a Claude subscription login is here ({login}): {billed} (`keyswitch install --subscription-first` keeps the subscription first, `keyswitch uninstall` gives sessions back to the login)"
        ));
        return Ok(());
    }
    Err(refuse(format!(
        "a Claude subscription login is here ({login}): {billed}; to keep the subscription first and use the keys only while its limit holds, run `keyswitch install --subscription-first`; to bill the keys anyway, add `--keys-only` (or `./install.sh --keys-only`)"
    )))
}

/// An apiKeyHelper of the user's own is replaced only with `--force`.
pub(super) fn refuse_foreign_helper(
    settings: &SettingsFile,
    map: &Map<String, Value>,
    force: bool,
) -> Result<()> {
    if let Some(existing) = map.get(HELPER_KEY)
        && !existing.as_str().is_some_and(is_our_helper)
        && !force
    {
        return Err(refuse(format!(
            "{} already sets an apiKeyHelper of its own: run `keyswitch install --force` to replace it (`keyswitch uninstall` puts it back)",
            settings.path.display()
        )));
    }
    Ok(())
}

/// A status line of the user's own is replaced only with `--force`.
pub(super) fn refuse_foreign_status_line(
    settings: &SettingsFile,
    map: &Map<String, Value>,
    force: bool,
) -> Result<()> {
    if let Some(existing) = map.get(STATUS_LINE_KEY)
        && !is_our_status_line(existing)
        && !force
    {
        return Err(refuse(format!(
            "{} already sets a statusLine of its own: run `keyswitch install --statusline --force` to replace it (`keyswitch uninstall` puts it back)",
            settings.path.display()
        )));
    }
    Ok(())
}
