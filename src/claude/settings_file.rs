//! Claude Code's user settings file as a file: where it is, reading it strictly, replacing it
//! atomically without losing a concurrent edit, and touching it so running sessions re-run
//! the helper (docs/facts/claude-code-facts.md: any change, even only the mtime, does that).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};

use super::json_doc::{self, Node};
use super::wiring::wrong_type;
use crate::failpoints::crash_point;
use crate::fileio::{
    Durability, TEMP_PREFIX, persist_retrying, read_optional, replace_file, temp_file_holding,
};

/// How many times an update is re-applied when the file changed under it.
const UPDATE_ATTEMPTS: usize = 5;

#[derive(Debug, Clone)]
pub struct SettingsFile {
    /// The path as named (may be a symlink, e.g. from a dotfile manager).
    pub path: PathBuf,
}

/// The parsed file and the bytes it came from.
pub struct Snapshot {
    pub bytes: Option<Vec<u8>>,
    /// What keyswitch reads and edits: a view in which a scalar serde_json cannot hold (a
    /// number like `1e400`, a lone surrogate) appears as its source text.
    pub map: Map<String, Value>,
    /// The document as written, from which untouched parts are copied back byte-for-byte.
    doc: Option<Node>,
}

impl Snapshot {
    fn empty(bytes: Option<Vec<u8>>) -> Self {
        Self {
            bytes,
            map: Map::new(),
            doc: None,
        }
    }

    /// The file's new text after `map` was edited from this snapshot's view.
    fn render(&self, map: &Map<String, Value>) -> Vec<u8> {
        let new = Value::Object(map.clone());
        let mut text = match &self.doc {
            Some(doc) => doc.render_edit(&Value::Object(self.map.clone()), &new, 0),
            None => json_doc::fresh(&new, 0),
        };
        // Kept as it was; a new file ends with one, like Claude Code writes it.
        if self.bytes.as_deref().is_none_or(|b| b.ends_with(b"\n")) {
            text.push('\n');
        }
        text.into_bytes()
    }
}

impl SettingsFile {
    /// `--settings PATH`, else `$CLAUDE_CONFIG_DIR/settings.json`, else `~/.claude/settings.json`.
    pub fn locate(explicit: Option<&Path>) -> Result<Self> {
        if let Some(path) = explicit {
            let path = if path.is_absolute() {
                path.to_path_buf()
            } else {
                std::env::current_dir()
                    .context("cannot read the current folder")?
                    .join(path)
            };
            return Ok(Self { path });
        }
        let dir = match std::env::var_os("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
            // Made absolute here, where the folder it is relative to is known: the install
            // record keeps this path, and the hook, `reset` and `mark-exhausted` run from
            // other folders.
            Some(dir) => std::path::absolute(PathBuf::from(&dir)).with_context(|| {
                format!(
                    "cannot make CLAUDE_CONFIG_DIR {} an absolute path",
                    PathBuf::from(&dir).display()
                )
            })?,
            None => directories::BaseDirs::new()
                .map(|b| b.home_dir().join(".claude"))
                .ok_or_else(|| {
                    anyhow!("cannot find your home folder: set HOME or CLAUDE_CONFIG_DIR")
                })?,
        };
        Ok(Self {
            path: dir.join("settings.json"),
        })
    }

    /// The file that is really written: a symlink's final target, so the link stays a link.
    pub fn target(&self) -> Result<PathBuf> {
        let mut current = self.path.clone();
        for _ in 0..40 {
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    let link = fs::read_link(&current)
                        .with_context(|| format!("cannot read the link {}", current.display()))?;
                    current = match current.parent() {
                        Some(dir) if link.is_relative() => dir.join(link),
                        _ => link,
                    };
                }
                _ => return Ok(current),
            }
        }
        bail!("{} is a loop of symbolic links", self.path.display())
    }

    /// Reads and parses the file; a missing file is an empty object. Invalid JSON, or an entry
    /// keyswitch works in that has the wrong type, is an error naming the file and the
    /// problem, and the file is left as it is.
    pub fn read(&self) -> Result<Snapshot> {
        self.parse(read_optional(&self.target()?)?)
    }

    /// Parses the file's content (`None`: there is no file), as [`read`](Self::read) does.
    fn parse(&self, bytes: Option<Vec<u8>>) -> Result<Snapshot> {
        let Some(bytes) = bytes else {
            return Ok(Snapshot::empty(None));
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Snapshot::empty(Some(bytes)));
        }
        let untouched = "fix it and run the command again — keyswitch left it untouched";
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            anyhow!(
                "{} is not valid UTF-8 text (byte {}); {untouched}",
                self.path.display(),
                e.valid_up_to()
            )
        })?;
        let doc = Node::parse(text).map_err(|e| {
            anyhow!(
                "{} is not valid JSON ({e}); {untouched}",
                self.path.display()
            )
        })?;
        let Value::Object(map) = doc.view() else {
            bail!(
                "{} does not hold a JSON object; {untouched}",
                self.path.display()
            );
        };
        if let Some(problem) = wrong_type(&map) {
            bail!("{}: {problem}; {untouched}", self.path.display());
        }
        Ok(Snapshot {
            bytes: Some(bytes),
            map,
            doc: Some(doc),
        })
    }

    /// Applies `plan` and writes the result if the settings changed; `plan` also returns what
    /// the caller must remember about the change (the install record). `before_write` gets
    /// that before the file is touched, so it can be made durable first.
    ///
    /// Another writer (Claude Code itself, when the user allows a tool) does not lock, so the
    /// file is replaced compare-and-swap style (see `swap_in`); when someone else wrote it
    /// meanwhile, the plan is applied afresh to their version, so their edit is not lost.
    /// Returns whether the file was written, and the plan's result for the version written.
    pub fn update<T>(
        &self,
        plan: impl FnMut(&mut Map<String, Value>) -> Result<T>,
        before_write: impl FnMut(&T) -> Result<()>,
    ) -> Result<(bool, T)> {
        self.update_towards(None, plan, before_write)
    }

    /// As [`update`](Self::update); when the result holds exactly the settings of `original`
    /// (the file before keyswitch first changed it), `original`'s own bytes are written, so an
    /// uninstall gives back the file as the user wrote it, spacing and all.
    pub fn update_towards<T>(
        &self,
        original: Option<&Snapshot>,
        mut plan: impl FnMut(&mut Map<String, Value>) -> Result<T>,
        mut before_write: impl FnMut(&T) -> Result<()>,
    ) -> Result<(bool, T)> {
        let target = self.target()?;
        if let Some(dir) = target.parent() {
            sweep_stale_temp_files(dir);
        }
        for _ in 0..UPDATE_ATTEMPTS {
            let before = self.read()?;
            let mut map = before.map.clone();
            let result = plan(&mut map)?;
            if map == before.map {
                return Ok((false, result));
            }
            before_write(&result)?;
            let rendered = match original.and_then(|o| Some((o.bytes.as_ref()?, &o.map))) {
                Some((bytes, settings)) if *settings == map => bytes.clone(),
                _ => before.render(&map),
            };
            if swap_in(&target, &rendered, before.bytes.as_deref())? {
                return Ok((true, result));
            }
        }
        bail!(
            "{} kept changing while keyswitch tried to update it; run the command again",
            self.path.display()
        )
    }

    /// Bumps the modification time, which makes running Claude Code sessions run the helper
    /// again before their next request, without changing a byte.
    pub fn touch(&self) -> Result<()> {
        let target = self.target()?;
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .with_context(|| format!("cannot open {}", target.display()))?;
        file.set_modified(SystemTime::now())
            .with_context(|| format!("cannot touch {}", target.display()))
    }

    /// Keeps `bytes` — the file as it was before keyswitch first changed it; the caller
    /// knows that — as the backup, unless there is one already: it is never overwritten.
    pub fn backup_original(&self, bytes: &[u8]) -> Result<Option<PathBuf>> {
        let backup = backup_path(&self.target()?);
        if fs::symlink_metadata(&backup).is_ok() {
            return Ok(None);
        }
        replace_file(&backup, bytes, Durability::Synced)?;
        Ok(Some(backup))
    }

    /// The backup's settings, if there is a readable one.
    pub fn read_backup(&self) -> Option<Map<String, Value>> {
        self.read_backup_snapshot().map(|snapshot| snapshot.map)
    }

    /// The backup, bytes and settings, if there is a readable one.
    pub fn read_backup_snapshot(&self) -> Option<Snapshot> {
        let backup = SettingsFile {
            path: backup_path(&self.target().ok()?),
        };
        let snapshot = backup.read().ok()?;
        snapshot.bytes.as_ref()?;
        Some(snapshot)
    }
}

pub fn backup_path(target: &Path) -> PathBuf {
    let mut name = target
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".keyswitch-backup");
    target.with_file_name(name)
}

/// Writes `bytes` to a flushed temporary file next to `target` and puts it in place of
/// `target` if that still holds `expected` (`None`: does not exist); returns false, with the
/// file as the other writer left it, if it did not. The comparison comes after the slow part
/// (writing, fsync), right before the swap. The swap itself is an atomic exchange where the
/// platform has one: it hands back exactly what it displaced, so a write landing between the
/// comparison and the swap is caught and put back within microseconds, rather than lost.
fn swap_in(target: &Path, bytes: &[u8], expected: Option<&[u8]>) -> Result<bool> {
    let dir = target
        .parent()
        .with_context(|| format!("{} has no parent folder", target.display()))?;
    let temp = temp_file_holding(dir, bytes)?;
    if let Some(mode) = original_mode(target) {
        set_mode(temp.as_file(), mode)
    } else {
        Ok(())
    }
    .and_then(|()| temp.as_file().sync_all())
    .with_context(|| format!("cannot write {}", temp.path().display()))?;
    crash_point("settings-before-rename");
    if read_optional(target)?.as_deref() != expected {
        return Ok(false);
    }
    let cannot = || format!("cannot replace {}", target.display());
    let swapped = match expected {
        // Creating the file: fails, rather than replaces, if someone created it meanwhile.
        None => match temp.persist_noclobber(target) {
            Ok(_) => true,
            Err(e) if e.error.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e.error).with_context(cannot),
        },
        Some(expected) => match exchange(temp.path(), target) {
            Ok(()) => {
                // The temporary name now holds what `target` held at the swap.
                let displaced = fs::read(temp.path()).with_context(cannot)?;
                if displaced != expected {
                    // Someone wrote in that instant: their version goes straight back.
                    exchange(temp.path(), target).with_context(cannot)?;
                }
                displaced == expected
            }
            Err(_) => {
                // No atomic exchange here (platform, file system): a plain rename.
                persist_retrying(temp, target).with_context(cannot)?;
                true
            }
        },
    };
    if let Ok(handle) = fs::File::open(dir) {
        // Makes the rename itself survive a crash; not every platform can sync a folder.
        let _ = handle.sync_all();
    }
    Ok(swapped)
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "macos"))]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(std::io::Error::from)
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// How old a temporary file must be before it counts as left behind by a killed writer:
/// a live one exists for milliseconds. Settings writers hold keyswitch's lock, but another
/// user's keyswitch (another state folder) could share the settings folder, so age decides.
const STALE_TEMP_AGE: Duration = Duration::from_secs(60);

/// Removes keyswitch's temporary files that a killed writer left in the settings folder.
fn sweep_stale_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= STALE_TEMP_AGE);
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) && stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(unix)]
fn original_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).ok().map(|m| m.permissions().mode())
}

#[cfg(not(unix))]
fn original_mode(_: &Path) -> Option<u32> {
    None
}

/// The settings file keeps its permissions (temporary files start as 0600).
#[cfg(unix)]
fn set_mode(file: &fs::File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_: &fs::File, _: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    fn the_exchange_hands_back_what_it_displaced() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("settings.json");
        fs::write(&target, "{\"theirs\": 1}\n").unwrap();
        assert!(swap_in(&target, b"{\"ours\": 1}\n", Some(b"{\"theirs\": 1}\n")).unwrap());
        assert_eq!(fs::read_to_string(&target).unwrap(), "{\"ours\": 1}\n");
        // The exchange itself works on this file system and swaps both ways.
        fs::write(&target, "{\"theirs\": 2}\n").unwrap();
        exchange(&target, &target.with_file_name("missing")).unwrap_err();
        let other = dir.path().join("other");
        fs::write(&other, "new").unwrap();
        exchange(&other, &target).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(fs::read_to_string(&other).unwrap(), "{\"theirs\": 2}\n");
    }

    #[test]
    fn a_changed_file_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("settings.json");
        fs::write(&target, "{\"theirs\": 1}\n").unwrap();
        assert!(!swap_in(&target, b"{}\n", Some(b"{}\n")).unwrap());
        assert_eq!(fs::read_to_string(&target).unwrap(), "{\"theirs\": 1}\n");
        // Nor is a file someone created meanwhile.
        assert!(!swap_in(&target, b"{}\n", None).unwrap());
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "a temporary file was left behind");
    }
}
