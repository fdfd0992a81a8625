//! `keyswitch install` and `keyswitch uninstall`: wiring keyswitch into Claude Code's user
//! settings, and taking out exactly that again.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow};
use serde_json::{Map, Value, json};

use super::Context;
use crate::claude::live::{self, apply_base_url, load_record, save_record};
use crate::claude::settings_file::{SettingsFile, backup_path};
use crate::claude::wiring::{
    HELPER_KEY, HELPER_TTL_MS, InstallRecord, RETRIES_VAR, Slot, TTL_VAR, ensure_hook,
    is_our_helper, note_created, remove_hook, shell_quote,
};
use crate::error::refuse;
use crate::pool::Pool;

pub fn install(
    ctx: &Context,
    settings: Option<&Path>,
    force: bool,
    max_retries: Option<u32>,
) -> Result<()> {
    let settings = SettingsFile::locate(settings)?;
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("cannot tell where the keyswitch binary is")?;
    let exe = exe.to_str().ok_or_else(|| {
        anyhow!(
            "the path of the keyswitch binary, {}, is not valid text: install it elsewhere",
            exe.display()
        )
    })?;
    let helper = format!("{} get", shell_quote(exe));
    let hook = format!("{} hook stop-failure", shell_quote(exe));

    let now = ctx.now.timestamp();
    let pool = Pool::lock(ctx.dirs.clone(), now)?;
    let record = match load_record(&ctx.dirs)? {
        Some(r) if r.settings != settings.path => {
            return Err(refuse(format!(
                "keyswitch is already installed in {}: run `keyswitch uninstall --settings {}` first",
                r.settings.display(),
                r.settings.display()
            )));
        }
        Some(r) => r,
        None => InstallRecord {
            settings: settings.path.clone(),
            ..InstallRecord::default()
        },
    };

    // Validate before anything is written: invalid JSON and a foreign helper stop here.
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

    let active = pool.active_key(now).cloned();
    let mut updated = record.clone();
    let apply = |map: &mut Map<String, Value>, rec: &mut InstallRecord| {
        rec.set(map, Slot::Top(HELPER_KEY), json!(helper));
        ensure_hook(map, rec, &hook);
        rec.set(map, Slot::Env(TTL_VAR), json!(HELPER_TTL_MS));
        if let Some(n) = max_retries {
            rec.set(map, Slot::Env(RETRIES_VAR), json!(n.to_string()));
        }
        apply_base_url(map, rec, &pool.config, active.as_ref());
    };
    // No-op when there is no file yet or a backup already exists.
    let backup = settings.backup_once()?;
    let file_existed = snapshot.bytes.is_some();
    let written = settings.update(|map| {
        updated = record.clone();
        apply(map, &mut updated);
        Ok(())
    })?;
    if !file_existed && written {
        note_created(&mut updated.created, "file");
    }
    save_record(&ctx.dirs, &updated)?;
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
            "keyswitch: the file as it was is kept at {}",
            backup.display()
        );
    }
    for warning in overriding_credentials(&settings.read()?.map) {
        eprintln!("keyswitch: warning: {warning}");
    }
    let config = crate::config::Config::load(&ctx.dirs.config_file())?;
    // The one set of next steps (install.sh prints none of its own), with a command that works
    // as printed: the full path when `keyswitch` on PATH is not this binary.
    let ks = crate::on_path::command_name();
    if config.keys.is_empty() {
        eprintln!(
            "keyswitch: next: add your keys, primary first, each secret from a hidden prompt: `{ks} add primary`, `{ks} add fallback`; then check the setup: `{ks} doctor`"
        );
    } else {
        eprintln!("keyswitch: next: check the setup: `{ks} doctor`");
    }
    Ok(())
}

pub fn uninstall(ctx: &Context, settings: Option<&Path>) -> Result<()> {
    let now = ctx.now.timestamp();
    let pool = Pool::lock(ctx.dirs.clone(), now)?;
    let record = load_record(&ctx.dirs)?;
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
    let record = record.unwrap_or_else(|| InstallRecord {
        settings: settings.path.clone(),
        ..InstallRecord::default()
    });

    let mut notes = Vec::new();
    let written = settings.update(|map| {
        notes.clear();
        let mut rec = record.clone();
        let ids: Vec<String> = rec.entries.keys().cloned().collect();
        for id in &ids {
            let slot = match id.strip_prefix("env.") {
                Some(var) => Slot::Env(var),
                None => Slot::Top(id),
            };
            notes.extend(rec.restore(map, slot));
        }
        // Without a record (lost state), still take out what is recognisably keyswitch's.
        if map
            .get(HELPER_KEY)
            .and_then(Value::as_str)
            .is_some_and(is_our_helper)
        {
            map.remove(HELPER_KEY);
        }
        remove_hook(map, &mut rec);
        Ok(())
    })?;
    let _ = std::fs::remove_file(live::record_path(&ctx.dirs));
    // A settings file that keyswitch itself created, and that holds nothing else, goes too.
    if record.created.iter().any(|c| c == "file") && settings.read()?.map.is_empty() {
        let _ = std::fs::remove_file(settings.target()?);
    }
    drop(pool);

    let path = settings.path.display();
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
            "keyswitch: the file as it was before install is still at {} (not copied back: your edits since are kept)",
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
