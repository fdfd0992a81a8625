//! `keyswitch uninstall --purge`: the normal uninstall, then everything else keyswitch keeps —
//! every key's secret in the keychain (and `reauthorize`'s safety copies), the config folder
//! and the state folder (state, event log, sessions, proxy token and records, logs).
//!
//! Asks first on a terminal, and wants `--yes` otherwise. The keychain is reached before
//! anything changes, so an unreachable one changes nothing; a secret that cannot be deleted
//! keeps the config, so running it again finishes the job. Run twice, it says there is nothing
//! left.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};

use super::{Context, open_keychain};
use crate::claude::hook_entry::has_hook;
use crate::claude::settings_file::{SettingsFile, backup_path};
use crate::claude::wiring::{HELPER_KEY, is_our_helper};
use crate::config::Config;
use crate::error::refuse;
use crate::fileio::WriteLock;
use crate::store::Keychain;

/// What there is to delete, found without changing anything.
struct Survey {
    config: Config,
    folders: Vec<PathBuf>,
    service: Option<crate::service::Manager>,
    /// The settings file, when it still holds something of keyswitch's.
    wired: Option<PathBuf>,
}

pub fn run(ctx: &Context, settings: Option<&Path>, yes: bool) -> Result<()> {
    let survey = Survey::take(ctx, settings)?;
    if survey.is_empty() {
        say!(
            "keyswitch: nothing of keyswitch's is left to remove (no keys, no config or state folder, nothing in Claude Code's settings)"
        );
        return Ok(());
    }
    // Before asking: an unreachable keychain means nothing is deleted at all.
    let keychain = survey.reach_keychain()?;
    confirm(&survey, yes)?;

    let settings = {
        // As `add` and `remove`: no key comes or goes while the secrets are deleted.
        let _keychain_lock = WriteLock::acquire(&ctx.dirs.keychain_lock_file())?;
        let config = Config::load(&ctx.dirs.config_file())?;
        let settings = super::uninstall::take_keyswitch_out(ctx, settings)?;
        if let Some(keychain) = &keychain {
            delete_secrets(keychain, &config)?;
        }
        settings
        // The lock file is in the state folder: released before that goes.
    };
    let copy_kept = remove_settings_copy(&settings)?;
    // Both, whether or not they were there before: the uninstall's lock may have made one.
    for folder in [&ctx.dirs.state, &ctx.dirs.config] {
        remove_folder(folder)?;
    }
    match copy_kept {
        None => {
            say!("keyswitch: purged; nothing of keyswitch's is left but the binary itself")
        }
        Some(copy) => say!(
            "keyswitch: purged; nothing of keyswitch's is left but the binary itself and {} (kept: your settings changed since it was made)",
            copy.display()
        ),
    }
    Ok(())
}

impl Survey {
    fn take(ctx: &Context, settings: Option<&Path>) -> Result<Self> {
        let config = Config::load(&ctx.dirs.config_file()).map_err(|e| {
            anyhow!(
                "{}: the key names are in it, so nothing was deleted; fix the file, or delete it to purge without the keys",
                crate::error::one_line(&e)
            )
        })?;
        let mut folders = Vec::new();
        for folder in [&ctx.dirs.config, &ctx.dirs.state] {
            // On macOS the two are one folder.
            if folder.exists() && !folders.contains(folder) {
                folders.push(folder.clone());
            }
        }
        Ok(Self {
            config,
            folders,
            service: crate::service::installed(),
            wired: wired_settings(settings),
        })
    }

    fn is_empty(&self) -> bool {
        self.config.keys.is_empty()
            && self.folders.is_empty()
            && self.service.is_none()
            && self.wired.is_none()
    }

    fn key_names(&self) -> Vec<&str> {
        self.config.keys.iter().map(|k| k.name.as_str()).collect()
    }

    /// Opens the keychain and reads a key from it, so a locked or missing keychain is found
    /// now, while nothing has changed. `None` when there are no keys to delete.
    fn reach_keychain(&self) -> Result<Option<Keychain>> {
        let Some(first) = self.config.keys.first() else {
            return Ok(None);
        };
        // Not the keychain's own advice: a route to another store (keyutils) would leave the
        // keys where they are, in the keychain that cannot be reached.
        let unreachable = |_| {
            anyhow!(
                "the {} cannot be reached here (locked, or no keyring in this session), so nothing was deleted: run `keyswitch uninstall --purge` again where keyswitch reaches your keys (the desktop session that holds them; `keyswitch doctor` says what is wrong)",
                self.config.store_kind().describe()
            )
        };
        let keychain = open_keychain(&self.config).map_err(unreachable)?;
        keychain.read(&first.name).map_err(unreachable)?;
        Ok(Some(keychain))
    }

    /// What will be deleted, one item a line.
    fn items(&self) -> Vec<String> {
        let mut items = Vec::new();
        let names = self.key_names();
        if !names.is_empty() {
            items.push(format!(
                "{} in {}",
                secrets_of(&names),
                self.config.store_kind().describe(),
            ));
        }
        if let Some(settings) = &self.wired {
            items.push(format!(
                "keyswitch's entries in {} (what they replaced is put back)",
                settings.display()
            ));
        }
        if let Some(manager) = self.service {
            items.push(format!("the proxy's {} service (stopped)", manager.name()));
        }
        for folder in &self.folders {
            items.push(format!("the folder {}", folder.display()));
        }
        items
    }
}

/// "the secret of 1 key (a)", "the secrets of 2 keys (a, b)".
fn secrets_of(names: &[&str]) -> String {
    let list = names.join(", ");
    match names.len() {
        1 => format!("the secret of 1 key ({list})"),
        n => format!("the secrets of {n} keys ({list})"),
    }
}

/// The settings file, when it still holds keyswitch's helper or hook (as far as it can be read).
fn wired_settings(named: Option<&Path>) -> Option<PathBuf> {
    let settings = SettingsFile::locate(named).ok()?;
    let map = settings.read().ok()?.map;
    let helper = map
        .get(HELPER_KEY)
        .and_then(serde_json::Value::as_str)
        .is_some_and(is_our_helper);
    (helper || has_hook(&map)).then_some(settings.path)
}

/// On a terminal: lists what goes and asks. Otherwise `--yes` is the answer.
fn confirm(survey: &Survey, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(refuse(format!(
            "stdin is not a terminal to confirm on: add --yes to delete {}; nothing was changed",
            survey.items().join(", ")
        )));
    }
    say!("keyswitch uninstall --purge deletes:");
    for item in survey.items() {
        say!("  - {item}");
    }
    say_inline!("Delete all of this for good? [y/N] ");
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer from the terminal")?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(refuse("not confirmed; nothing was changed"))
    }
}

/// Deletes every key's secret and its `reauthorize` safety copy. A secret that stays keeps the
/// config (and with it the names), so running the purge again finishes it.
fn delete_secrets(keychain: &Keychain, config: &Config) -> Result<()> {
    let spare = keychain.with_service(&format!("{}.reauthorize", keychain.service()));
    let mut deleted = Vec::new();
    for key in &config.keys {
        let name = &key.name;
        let result = keychain.delete(name).and_then(|_| spare.delete(name));
        if let Err(e) = result {
            return Err(anyhow!(
                "deleted the secrets of {} but not {name}'s ({}); the config and state are kept: run `keyswitch uninstall --purge` again",
                if deleted.is_empty() {
                    "no key".to_string()
                } else {
                    deleted.join(", ")
                },
                crate::error::one_line(&e)
            ));
        }
        deleted.push(name.clone());
    }
    if !deleted.is_empty() {
        let names: Vec<&str> = deleted.iter().map(String::as_str).collect();
        say!(
            "keyswitch: deleted {} from {}",
            secrets_of(&names),
            keychain.kind().describe()
        );
    }
    Ok(())
}

/// The copy of the settings as they were before keyswitch first changed them, when the file is
/// that again byte for byte: keyswitch's file, saying nothing the settings do not. A copy that
/// differs (the user edited the settings since) stays, as it may be all that is left of
/// something: returned.
fn remove_settings_copy(settings: &SettingsFile) -> Result<Option<PathBuf>> {
    let Ok(target) = settings.target() else {
        return Ok(None);
    };
    let copy = backup_path(&target);
    let Ok(saved) = std::fs::read(&copy) else {
        return Ok(None);
    };
    if std::fs::read(&target).is_ok_and(|now| now == saved) {
        std::fs::remove_file(&copy).with_context(|| format!("cannot delete {}", copy.display()))?;
        say!("keyswitch: deleted {}", copy.display());
        return Ok(None);
    }
    Ok(Some(copy))
}

/// Deletes one of keyswitch's folders, and its parent when that is an empty `keyswitch` folder
/// (Windows keeps `keyswitch\config` and `keyswitch\data`).
fn remove_folder(folder: &Path) -> Result<()> {
    match std::fs::remove_dir_all(folder) {
        Ok(()) => say!("keyswitch: deleted {}", folder.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot delete {}; delete it by hand (the secrets are already deleted)",
                    folder.display()
                )
            });
        }
    }
    if let Some(parent) = folder.parent()
        && parent.file_name().is_some_and(|n| n == "keyswitch")
    {
        let _ = std::fs::remove_dir(parent);
    }
    Ok(())
}
