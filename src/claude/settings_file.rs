//! Claude Code's user settings file as a file: where it is, reading it strictly, replacing it
//! atomically without losing a concurrent edit, and touching it so running sessions re-run
//! the helper (claude-code-facts.md: any change, even only the mtime, does that).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};

use crate::fileio::{Durability, read_optional, replace_file};

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
    pub map: Map<String, Value>,
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
            Some(dir) => PathBuf::from(dir),
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

    /// Reads and parses the file; a missing file is an empty object. Invalid JSON is an error
    /// naming the file and the position, and the file is left as it is.
    pub fn read(&self) -> Result<Snapshot> {
        let target = self.target()?;
        let Some(bytes) = read_optional(&target)? else {
            return Ok(Snapshot {
                bytes: None,
                map: Map::new(),
            });
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Snapshot {
                bytes: Some(bytes),
                map: Map::new(),
            });
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            anyhow!(
                "{} is not valid JSON ({e}); fix it and run the command again — keyswitch left it untouched",
                self.path.display()
            )
        })?;
        match value {
            Value::Object(map) => Ok(Snapshot {
                bytes: Some(bytes),
                map,
            }),
            _ => Err(anyhow!(
                "{} does not hold a JSON object; fix it and run the command again — keyswitch left it untouched",
                self.path.display()
            )),
        }
    }

    /// Applies `change` and writes the result if it differs. Just before replacing the file it
    /// is read again; if someone (Claude Code itself, when the user allows a tool) wrote it in
    /// between, the change is applied afresh to their version, so their edit is not lost.
    /// Returns whether the file was written.
    pub fn update(
        &self,
        mut change: impl FnMut(&mut Map<String, Value>) -> Result<()>,
    ) -> Result<bool> {
        let target = self.target()?;
        for _ in 0..UPDATE_ATTEMPTS {
            let before = self.read()?;
            let mut map = before.map.clone();
            change(&mut map)?;
            if map == before.map {
                return Ok(false);
            }
            let bytes = render(&map, before.bytes.as_deref());
            let now = read_optional(&target)?;
            if now != before.bytes {
                continue;
            }
            let mode = original_mode(&target);
            replace_file(&target, &bytes, Durability::Synced)?;
            restore_mode(&target, mode);
            return Ok(true);
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

    /// Keeps a copy of the file as it was before keyswitch first changed it; never overwritten.
    pub fn backup_once(&self) -> Result<Option<PathBuf>> {
        let target = self.target()?;
        let backup = backup_path(&target);
        if backup.exists() {
            return Ok(None);
        }
        let Some(bytes) = read_optional(&target)? else {
            return Ok(None);
        };
        replace_file(&backup, &bytes, Durability::Synced)?;
        Ok(Some(backup))
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

/// Two-space indented JSON like Claude Code writes, with the trailing newline kept as it was.
pub fn render(map: &Map<String, Value>, original: Option<&[u8]>) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(map).unwrap_or_else(|_| b"{}".to_vec());
    let had_newline = original.is_none_or(|b| b.ends_with(b"\n"));
    if had_newline {
        bytes.push(b'\n');
    }
    bytes
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

/// The settings file keeps its permissions (keyswitch's own temporary files start as 0600).
fn restore_mode(path: &Path, mode: Option<u32>) {
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}
