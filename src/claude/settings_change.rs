//! Changing Claude Code's settings under the install record, so that a failure or a kill at
//! any instant leaves something `uninstall` can undo.

use anyhow::Result;
use serde_json::{Map, Value};

use super::install_record::{InstallRecord, note_created, save_record};
use super::settings_file::SettingsFile;
use crate::failpoints::crash_point;
use crate::paths::Dirs;

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
