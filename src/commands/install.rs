//! `keyswitch install` and `keyswitch uninstall`: wiring keyswitch into Claude Code's user
//! settings, and taking out exactly that again.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow};
use serde_json::{Map, Value, json};

use super::Context;
use crate::claude::live::{self, apply_base_url, load_record};
use crate::claude::settings_file::{SettingsFile, backup_path};
use crate::claude::wiring::{
    HELPER_KEY, HELPER_TTL_MS, InstallRecord, RETRIES_VAR, Slot, TTL_VAR, ensure_hook, has_hook,
    is_our_helper, note_created, recovered_record, remove_hook, shell_quote,
};
use crate::error::refuse;
use crate::fileio::set_aside;
use crate::pool::Pool;

pub fn install(
    ctx: &Context,
    settings: Option<&Path>,
    force: bool,
    max_retries: Option<u32>,
) -> Result<()> {
    let settings = SettingsFile::locate(settings)?;
    let (helper, hook) = our_commands()?;
    let now = ctx.now.timestamp();
    let pool = Pool::lock(ctx.dirs.clone(), now)?;
    let saved = match load_record(&ctx.dirs).map_err(|e| refuse(format!("{e:#}")))? {
        Some(r) if r.settings != settings.path => {
            return Err(refuse(format!(
                "keyswitch is already installed in {}: run `keyswitch uninstall --settings {}` first",
                r.settings.display(),
                r.settings.display()
            )));
        }
        saved => saved,
    };

    // Checked before anything is written: invalid JSON, entries of the wrong type and a
    // foreign helper stop here.
    let snapshot = settings.read()?;
    if let Some(existing) = snapshot.map.get(HELPER_KEY)
        && !existing.as_str().is_some_and(is_our_helper)
        && !force
    {
        return Err(refuse(format!(
            "{} already sets an apiKeyHelper of its own: run `keyswitch install --force` to replace it (`keyswitch uninstall` puts it back)",
            settings.path.display()
        )));
    }
    // The file as it was before keyswitch first changed it — never a wired one.
    let backup = match &snapshot.bytes {
        Some(bytes) if saved.is_none() && !is_wired(&snapshot.map) => {
            settings.backup_original(bytes)?
        }
        _ => None,
    };

    // Record intent → write settings → finalize (see `change_settings`).
    let base = match &saved {
        Some(record) => record.clone(),
        // Wired, but the record is gone (state folder wiped): what keyswitch replaced is in
        // the backup, never keyswitch's own helper.
        None if is_wired(&snapshot.map) => recovered_record(
            settings.path.clone(),
            &snapshot.map,
            settings.read_backup().as_ref(),
            &key_endpoints(&pool.config),
        ),
        None => InstallRecord {
            settings: settings.path.clone(),
            ..InstallRecord::default()
        },
    };
    let target = settings.target()?;
    let active = pool.active_key(now).cloned();
    let (written, _) =
        live::change_settings(&ctx.dirs, &settings, saved.as_ref(), &base, |map, rec| {
            if !target.exists() {
                note_created(&mut rec.created, "file");
            }
            rec.set(map, Slot::Top(HELPER_KEY), json!(helper));
            ensure_hook(map, rec, &hook);
            rec.set(map, Slot::Env(TTL_VAR), json!(HELPER_TTL_MS));
            if let Some(n) = max_retries {
                rec.set(map, Slot::Env(RETRIES_VAR), json!(n.to_string()));
            }
            apply_base_url(map, rec, &pool.config, active.as_ref());
            Ok(())
        })?;
    drop(pool);

    let path = settings.path.display();
    if written {
        eprintln!(
            "keyswitch: wired into {path}: apiKeyHelper, StopFailure hook, helper refresh every {}s",
            HELPER_TTL_MS.parse::<u64>().unwrap_or(0) / 1000
        );
    } else {
        eprintln!("keyswitch: {path} is already wired; nothing changed");
    }
    if let Some(backup) = backup {
        eprintln!(
            "keyswitch: a copy of {path} as it was before keyswitch first changed it is at {}",
            backup.display()
        );
    }
    for warning in overriding_credentials(&settings.read()?.map) {
        eprintln!("keyswitch: warning: {warning}");
    }
    let config = crate::config::Config::load(&ctx.dirs.config_file())?;
    if config.keys.is_empty() {
        eprintln!(
            "keyswitch: next: add your keys, primary first: printf '%s' \"$KEY\" | keyswitch add primary"
        );
    }
    Ok(())
}

/// The helper and hook commands for this binary.
fn our_commands() -> Result<(String, String)> {
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("cannot tell where the keyswitch binary is")?;
    let exe = exe.to_str().ok_or_else(|| {
        anyhow!(
            "the path of the keyswitch binary, {}, is not valid text: install it elsewhere",
            exe.display()
        )
    })?;
    Ok((
        format!("{} get", shell_quote(exe)),
        format!("{} hook stop-failure", shell_quote(exe)),
    ))
}

fn key_endpoints(config: &crate::config::Config) -> Vec<String> {
    config
        .keys
        .iter()
        .filter_map(|k| k.endpoint.clone())
        .collect()
}

/// Whether the settings hold something of keyswitch's.
fn is_wired(map: &Map<String, Value>) -> bool {
    map.get(HELPER_KEY)
        .and_then(Value::as_str)
        .is_some_and(is_our_helper)
        || has_hook(map)
}

pub fn uninstall(ctx: &Context, settings: Option<&Path>) -> Result<()> {
    let now = ctx.now.timestamp();
    let pool = Pool::lock(ctx.dirs.clone(), now)?;
    let record_file = live::record_path(&ctx.dirs);
    let (record, damaged) = match load_record(&ctx.dirs) {
        Ok(record) => (record, None),
        // A way out that loses nothing: keep the damaged record aside and fall back on what is
        // recognisably keyswitch's and on the backup.
        Err(_) => (None, Some(set_aside(&record_file, now)?)),
    };
    let settings = match (settings, &record) {
        (Some(path), Some(r)) => {
            let named = SettingsFile::locate(Some(path))?;
            if named.path != r.settings {
                return Err(refuse(format!(
                    "keyswitch was installed in {}, not {}: run `keyswitch uninstall --settings {}`",
                    r.settings.display(),
                    named.path.display(),
                    r.settings.display()
                )));
            }
            named
        }
        (None, Some(r)) => SettingsFile {
            path: r.settings.clone(),
        },
        (path, None) => SettingsFile::locate(path)?,
    };
    let record = match record {
        Some(record) => record,
        None => recovered_record(
            settings.path.clone(),
            &settings.read()?.map,
            settings.read_backup().as_ref(),
            &key_endpoints(&pool.config),
        ),
    };

    let (written, notes) = settings.update(
        |map| {
            let mut notes = Vec::new();
            let mut rec = record.clone();
            let ids: Vec<String> = rec.entries.keys().cloned().collect();
            for id in &ids {
                let slot = match id.strip_prefix("env.") {
                    Some(var) => Slot::Env(var),
                    None => Slot::Top(id),
                };
                notes.extend(rec.restore(map, slot));
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
    )?;
    match std::fs::remove_file(&record_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", record_file.display()));
        }
        _ => {}
    }
    // A settings file that keyswitch itself created, and that holds nothing else, goes too.
    if record.created.iter().any(|c| c == "file") && settings.read()?.map.is_empty() {
        let _ = std::fs::remove_file(settings.target()?);
    }
    drop(pool);

    let path = settings.path.display();
    if let Some(aside) = damaged {
        eprintln!(
            "keyswitch: the install record was damaged (kept at {}): took out what is recognisably keyswitch's and put back replaced values from the backup",
            aside.display()
        );
    }
    if written {
        eprintln!("keyswitch: took keyswitch out of {path}");
    } else {
        eprintln!("keyswitch: {path} holds nothing of keyswitch's; nothing changed");
    }
    for note in notes {
        eprintln!("keyswitch: {note}");
    }
    let backup = settings.target().map(|t| backup_path(&t))?;
    if backup.exists() {
        eprintln!(
            "keyswitch: a copy of {path} as it was before keyswitch first changed it is still at {} (not copied back: your edits since are kept)",
            backup.display()
        );
    }
    eprintln!("keyswitch: your keys stay in the keychain; `keyswitch remove NAME` deletes one");
    Ok(())
}

/// Credentials that make Claude Code ignore the helper, from the environment or the settings.
pub fn overriding_credentials(settings: &Map<String, Value>) -> Vec<String> {
    let mut found = Vec::new();
    for var in ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"] {
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            found.push(format!(
                "{var} is set in your environment: Claude Code then ignores keyswitch; unset it (check your shell profile)"
            ));
        }
        if Slot::Env(var).get(settings).is_some() {
            found.push(format!(
                "{var} is set in the env block of Claude Code's settings: Claude Code then ignores keyswitch; remove it there"
            ));
        }
    }
    found
}
