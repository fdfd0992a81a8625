//! `keyswitch uninstall`: taking out of Claude Code's settings exactly what `install` put
//! there (by the install record, or by what is recognisably keyswitch's when it is lost), and
//! leaving proxy mode.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use jiff::Timestamp;
use serde_json::Value;

use super::Context;
use super::install::{key_endpoints, stop_proxy};
use crate::claude::hook_entry::remove_hook;
use crate::claude::install_record::{InstallRecord, load_record};
use crate::claude::settings_file::{SettingsFile, backup_path};
use crate::claude::wiring::{HELPER_KEY, is_our_helper, recovered_record};
use crate::error::refuse;
use crate::fileio::set_aside;
use crate::mode::Mode;
use crate::paths::Dirs;
use crate::pool::Pool;
use crate::proxy_settings;

pub fn run(ctx: &Context, settings: Option<&Path>) -> Result<()> {
    take_keyswitch_out(ctx, settings)?;
    say!(
        "keyswitch: your keys stay in the keychain, and the config and state stay too; `keyswitch remove NAME` deletes a key, `keyswitch uninstall --purge` all of it"
    );
    Ok(())
}

/// The uninstall itself, said as it goes: Claude Code's settings as they were, the proxy
/// stopped and proxy mode left. Returns the settings file it cleaned.
pub(super) fn take_keyswitch_out(ctx: &Context, settings: Option<&Path>) -> Result<SettingsFile> {
    let now = ctx.now.timestamp();
    let pool = Pool::lock(ctx.dirs.clone(), now)?;
    let (record, damaged) = load_or_set_aside(&ctx.dirs, now)?;
    let settings = settings_to_clean(settings, record.as_ref())?;
    let record = match record {
        Some(record) => record,
        None => recovered_record(
            settings.path.clone(),
            &settings.read()?.map,
            settings.read_backup().as_ref(),
            &key_endpoints(pool.config()),
            Mode::load(&ctx.dirs)
                .ok()
                .and_then(Mode::proxy)
                .map(|p| p.listen),
        ),
    };
    let (written, notes) = take_out(&settings, &record)?;
    remove_record_file(&ctx.dirs)?;
    // Only now that the settings no longer point at the proxy: stop it and leave proxy mode.
    leave_proxy_mode(&ctx.dirs, &record.service_files)?;
    // A settings file that keyswitch itself created, and that holds nothing else, goes too.
    if record.created.iter().any(|c| c == "file") && settings.read()?.map.is_empty() {
        let _ = std::fs::remove_file(settings.target()?);
    }
    drop(pool);
    report(&settings, damaged.as_deref(), written, &notes)?;
    Ok(settings)
}

/// The install record; a damaged one is set aside (its new path returned) rather than refused:
/// a way out that loses nothing, falling back on what is recognisably keyswitch's and on the
/// backup.
fn load_or_set_aside(
    dirs: &Dirs,
    now: Timestamp,
) -> Result<(Option<InstallRecord>, Option<PathBuf>)> {
    match load_record(dirs) {
        Ok(record) => Ok((record, None)),
        Err(_) => Ok((None, Some(set_aside(&dirs.install_record(), now)?))),
    }
}

/// The settings file keyswitch was installed in; one named on the command line must be it.
fn settings_to_clean(named: Option<&Path>, record: Option<&InstallRecord>) -> Result<SettingsFile> {
    Ok(match (named, record) {
        (Some(path), Some(r)) => {
            let named = SettingsFile::locate(Some(path))?;
            // A relative record (older versions) matches the file it names from this folder.
            let recorded = std::path::absolute(&r.settings).unwrap_or_else(|_| r.settings.clone());
            if named.path != recorded {
                return Err(refuse(format!(
                    "keyswitch was installed in {}, not {}: run `keyswitch uninstall --settings {}`",
                    r.settings.display(),
                    named.path.display(),
                    r.settings.display()
                )));
            }
            named
        }
        (None, Some(r)) => r.settings_file().map_err(|e| {
            refuse(format!(
                "{}; or name the file: `keyswitch uninstall --settings PATH`",
                crate::error::one_line(&e)
            ))
        })?,
        (path, None) => SettingsFile::locate(path)?,
    })
}

/// Puts back what the record replaced, and takes out keyswitch's helper and hook. Returns
/// whether the file changed, and a note for each entry the user changed since (left alone).
fn take_out(settings: &SettingsFile, record: &InstallRecord) -> Result<(bool, Vec<String>)> {
    let original = settings.read_backup_snapshot();
    settings.update_towards(
        original.as_ref(),
        |map| {
            let mut notes = Vec::new();
            let mut rec = record.clone();
            let ids: Vec<_> = rec.entries.keys().cloned().collect();
            for id in &ids {
                notes.extend(rec.restore(map, id.slot()));
            }
            // Whatever the record says, keyswitch's own helper does not stay behind.
            if map
                .get(HELPER_KEY)
                .and_then(Value::as_str)
                .is_some_and(is_our_helper)
            {
                map.shift_remove(HELPER_KEY);
            }
            remove_hook(map, &mut rec);
            Ok(notes)
        },
        |_| Ok(()),
    )
}

fn remove_record_file(dirs: &Dirs) -> Result<()> {
    let record_file = dirs.install_record();
    match std::fs::remove_file(&record_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", record_file.display()))
        }
        _ => Ok(()),
    }
}

/// Stops the proxy and removes its settings. A damaged proxy.json names no proxy to stop; it
/// goes all the same.
fn leave_proxy_mode(dirs: &Dirs, service_files: &[PathBuf]) -> Result<()> {
    if crate::service::remove(dirs, service_files) {
        say!("keyswitch: took the proxy out of the service manager");
    }
    if let Ok(Mode::Proxy(current)) = Mode::load(dirs)
        && stop_proxy(dirs, &current)
    {
        say!("keyswitch: stopped the proxy");
    }
    proxy_settings::remove(dirs)?;
    // Subscription-first mode, and any hold, go with the wiring.
    crate::subscription::record::remove(dirs)
}

fn report(
    settings: &SettingsFile,
    damaged: Option<&Path>,
    written: bool,
    notes: &[String],
) -> Result<()> {
    let path = settings.path.display();
    if let Some(aside) = damaged {
        say!(
            "keyswitch: the install record was damaged (kept at {}): took out what is recognisably keyswitch's and put back replaced values from the backup",
            aside.display()
        );
    }
    if written {
        say!("keyswitch: took keyswitch out of {path}");
    } else {
        say!("keyswitch: {path} holds nothing of keyswitch's; nothing changed");
    }
    for note in notes {
        say!("keyswitch: {note}");
    }
    let target = settings.target()?;
    let backup = backup_path(&target);
    if backup.exists() {
        // Byte for byte what it was: the copy says nothing the file does not.
        let same = matches!(
            (std::fs::read(&backup), std::fs::read(&target)),
            (Ok(a), Ok(b)) if a == b
        );
        if same {
            say!(
                "keyswitch: {path} is again byte for byte what it was before keyswitch first changed it (the copy at {} may go)",
                backup.display()
            );
        } else {
            say!(
                "keyswitch: a copy of {path} as it was before keyswitch first changed it is still at {} (not copied back: your edits since are kept)",
                backup.display()
            );
        }
    }
    Ok(())
}
