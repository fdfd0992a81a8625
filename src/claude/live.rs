//! Keeping running Claude Code sessions in step with the active key, through the user settings
//! file: `env.ANTHROPIC_BASE_URL` follows the active key's endpoint (only when some key has
//! one), and any change — or, when nothing needs changing, a touch — makes every running
//! session run the helper again before its next request.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use serde_json::{Map, Value, json};

use super::settings_file::{SettingsFile, crash_point, fail_point};
use super::wiring::{BASE_URL_VAR, InstallRecord, Slot, note_created};
use crate::config::{Config, KeyConfig};
use crate::fileio::{Durability, read_optional, replace_file};
use crate::paths::Dirs;

pub fn record_path(dirs: &Dirs) -> PathBuf {
    dirs.state.join("claude-install.json")
}

/// What `keyswitch install` changed, if it ran.
pub fn load_record(dirs: &Dirs) -> Result<Option<InstallRecord>> {
    let path = record_path(dirs);
    let Some(bytes) = read_optional(&path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        anyhow!(
            "{} is damaged ({e}): run `keyswitch uninstall`, which sets it aside, takes out what is recognisably keyswitch's and puts back replaced values from the settings backup; then `keyswitch install`",
            path.display()
        )
    })
}

pub fn save_record(dirs: &Dirs, record: &InstallRecord) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(record).context("cannot encode the install record")?;
    fail_point("record-save")?;
    replace_file(&record_path(dirs), &bytes, Durability::Synced)
}

/// Changes the settings so that a failure or a kill at any instant leaves something
/// `uninstall` can undo: **record intent** (the install record, with the values about to be
/// replaced, is saved before the settings are touched) → **write the settings** (re-planned
/// and re-recorded if someone else wrote them meanwhile) → **finalize** (the record saved
/// as what the settings now hold). `saved` is the record as it is on disk now (`None`: none).
/// `plan` edits the settings and the record from `saved`. Returns whether the settings were
/// written, and the record as saved.
pub fn change_settings(
    dirs: &Dirs,
    settings: &SettingsFile,
    saved: Option<&InstallRecord>,
    base: &InstallRecord,
    mut plan: impl FnMut(&mut Map<String, Value>, &mut InstallRecord) -> Result<()>,
) -> Result<(bool, InstallRecord)> {
    let mut on_disk = saved.cloned();
    let (written, mut record) = settings.update(
        |map| {
            let mut record = base.clone();
            plan(map, &mut record)?;
            Ok(record)
        },
        |planned| {
            // Until the settings are written they may still hold what the plan takes out:
            // the intent keeps remembering it (finalize forgets it).
            let mut intent = planned.clone();
            for (id, entry) in &base.entries {
                intent
                    .entries
                    .entry(id.clone())
                    .or_insert_with(|| entry.clone());
            }
            for created in &base.created {
                note_created(&mut intent.created, created);
            }
            if on_disk.as_ref() != Some(&intent) {
                save_record(dirs, &intent)?;
                on_disk = Some(intent);
                crash_point("record-intent-saved");
            }
            Ok(())
        },
    )?;
    crash_point("settings-written");
    record.finalize();
    if on_disk.as_ref() != Some(&record) {
        save_record(dirs, &record)?;
    }
    Ok((written, record))
}

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
        active.and_then(|k| k.endpoint.clone())
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
    if crate::mode::Mode::load(dirs)?.is_proxy() {
        // Proxy mode: the proxy picks the key per request, and ANTHROPIC_BASE_URL stays on the
        // proxy (moving it would send the token to an endpoint).
        return Ok(());
    }
    let settings = SettingsFile {
        path: record.settings.clone(),
    };
    if !settings.target()?.exists() {
        // The user removed their settings since installing; nothing to keep in step.
        return Ok(());
    }
    let (written, _) = change_settings(dirs, &settings, Some(&record), &record, |map, rec| {
        apply_base_url(map, rec, config, active);
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
