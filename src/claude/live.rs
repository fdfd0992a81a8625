//! Keeping running Claude Code sessions in step with the active key, through the user settings
//! file: `env.ANTHROPIC_BASE_URL` follows the active key's endpoint (only when some key has
//! one), in subscription-first mode the helper follows the hold, and any change — or, when nothing needs changing, a touch — makes every running
//! session run the helper again before its next request.

use anyhow::Result;
use serde_json::{Map, Value, json};

use super::install_record::InstallRecord;
use super::settings_change::change_settings;
use super::slot::Slot;
use super::wiring::BASE_URL_VAR;
use crate::config::{Config, KeyConfig};
use crate::paths::Dirs;

// `get` reads the record through here, for the base URL a session had before keyswitch.
pub use super::install_record::load_record;

/// Points `env.ANTHROPIC_BASE_URL` where `active` belongs, in the settings record's changes.
pub fn apply_base_url(
    map: &mut Map<String, Value>,
    record: &mut InstallRecord,
    config: &Config,
    active: Option<&KeyConfig>,
) {
    let slot = Slot::Env(BASE_URL_VAR);
    // A value the user put there since keyswitch last wrote it is theirs: their new default.
    record.adopt_user_value(map, slot);
    let desired = if config.uses_endpoints() {
        active.and_then(|k| k.endpoint_text().map(str::to_string))
    } else {
        None
    };
    match desired {
        Some(url) => record.set(map, slot, json!(url)),
        None => {
            record.restore(map, slot);
        }
    }
}

/// Whether running sessions must be made to ask again even when the settings need no change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nudge {
    /// The key changed: every session must fetch it now.
    Always,
    /// Only a settings change matters (`get` moving a session; a touch there could repeat
    /// at every request of a session that cannot follow).
    IfChanged,
}

/// Call with the pool lock held, after the active key may have changed. Does nothing unless
/// `keyswitch install` wired this user's settings.
pub fn follow_active_key(
    dirs: &Dirs,
    config: &Config,
    active: Option<&KeyConfig>,
    nudge: Nudge,
) -> Result<()> {
    let Some(record) = load_record(dirs)? else {
        return Ok(());
    };
    let mode = crate::mode::Mode::load(dirs)?;
    if mode.is_proxy() {
        // Proxy mode: the proxy picks the key per request, and ANTHROPIC_BASE_URL stays on the
        // proxy (moving it would send the token to an endpoint).
        return Ok(());
    }
    // Subscription-first mode: the helper is wired exactly while a hold is on.
    let subscription = match mode {
        crate::mode::Mode::SubscriptionFirst(record) => Some((
            record.helper,
            crate::subscription::hold::load(dirs).is_some(),
        )),
        _ => None,
    };
    let settings = record.settings_file()?;
    if !settings.target()?.exists() {
        // The user removed their settings since installing; nothing to keep in step.
        return Ok(());
    }
    let (written, _) = change_settings(dirs, &settings, Some(&record), &record, |map, rec| {
        match &subscription {
            Some((helper, held)) => {
                crate::subscription::wiring::apply(map, rec, config, active, helper, *held);
            }
            None => apply_base_url(map, rec, config, active),
        }
        Ok(())
    })?;
    if !written && nudge == Nudge::Always {
        // Same content: bump the mtime so running sessions still fetch the new key now.
        settings.touch()?;
    }
    Ok(())
}

/// The user's own API base URL as keyswitch found it before managing the entry (`None`: the
/// public API, or whatever the shell sets).
pub fn user_default_base_url(record: Option<&InstallRecord>) -> Option<String> {
    record
        .and_then(|r| r.prior(Slot::Env(BASE_URL_VAR)))
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// The user's own API base URL, by the install record: the one keyswitch replaced, or — while
/// keyswitch holds no value there (it put the user's back) — the one the settings hold now. A
/// lost record tells nothing: then no loopback address is the user's.
pub fn users_own_base_url(record: &InstallRecord) -> Option<String> {
    if let Some(prior) = user_default_base_url(Some(record)) {
        return Some(prior);
    }
    let slot = Slot::Env(BASE_URL_VAR);
    if record.entries.contains_key(&slot.id()) {
        return None;
    }
    let settings = record.settings_file().ok()?.read().ok()?;
    slot.get(&settings.map)
        .and_then(|v| v.as_str())
        .map(str::to_string)
}
