//! Crash-safe file primitives shared by the config, the state and the event log.
//!
//! Writers hold one exclusive lock (std `File::lock`, on a separate lock file so that readers,
//! who never lock, are never blocked), then replace files atomically: write a temporary file in
//! the same folder, fsync it, rename it over the old one, fsync the folder. A process killed at
//! any moment leaves the old file or the new one. Temporary files a killed writer left behind are
//! swept by the next writer, which can do so safely because only lock holders create them.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;

use anyhow::{Context, Result};

use crate::paths::ensure_private_dir;

/// Every temporary file keyswitch creates starts with this, so the sweep never touches others.
pub const TEMP_PREFIX: &str = ".keyswitch-tmp-";

/// The exclusive writer lock; released when dropped.
#[derive(Debug)]
pub struct WriteLock {
    _file: File,
}

impl WriteLock {
    /// Waits for the lock. Writers hold it for milliseconds, so waiting is short.
    pub fn acquire(path: &Path) -> Result<Self> {
        let file = open_lock_file(path)?;
        file.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(Self { _file: file })
    }

    /// Takes the lock only if nobody holds it: for work that may be left to the next process.
    pub fn try_acquire(path: &Path) -> Result<Option<Self>> {
        let file = open_lock_file(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        ensure_private_dir(dir)?;
    }
    private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open lock file {}", path.display()))
}

/// Open options that create files readable by the owner only (0600 on Unix).
pub fn private_options() -> OpenOptions {
    #[allow(unused_mut)]
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Reads a whole file; `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// How hard a replacement must try to survive a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file and its folder: for the user's config and the cooldown state.
    Synced,
    /// Atomic (never torn) but not fsynced: for records that may be lost, never half-written.
    AtomicOnly,
}

/// Replaces `path` with `bytes` atomically, as a 0600 file.
pub fn replace_file(path: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent folder", path.display()))?;
    ensure_private_dir(dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    temp.write_all(bytes)
        .with_context(|| format!("cannot write {}", temp.path().display()))?;
    if durability == Durability::Synced {
        temp.as_file()
            .sync_all()
            .with_context(|| format!("cannot flush {}", temp.path().display()))?;
    }
    persist_retrying(temp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    if durability == Durability::Synced {
        sync_dir(dir);
    }
    Ok(())
}

/// Renames `temp` over `path`. Windows refuses to replace a file that another process has open
/// at that moment (a `get` reading it without the lock, for microseconds), so there a refusal
/// is retried for up to a second instead of failing the write.
fn persist_retrying(mut temp: tempfile::NamedTempFile, path: &Path) -> std::io::Result<()> {
    let mut retries = 0;
    loop {
        match temp.persist(path) {
            Ok(_) => return Ok(()),
            Err(e)
                if cfg!(windows)
                    && e.error.kind() == std::io::ErrorKind::PermissionDenied
                    && retries < 50 =>
            {
                retries += 1;
                temp = e.file;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e.error),
        }
    }
}

/// fsyncs a folder so a rename in it survives a crash. Best effort: not every platform or
/// file system lets a folder be opened or synced, and the rename itself already happened.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(handle) = File::open(dir) {
        let _ = handle.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Removes temporary files that a writer killed mid-write left in `dir`.
/// Call only while holding the [`WriteLock`]: then no live writer owns any of them.
pub fn sweep_stale_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Moves a damaged file aside for inspection; returns where it went.
pub fn set_aside(path: &Path, now: jiff::Timestamp) -> Result<std::path::PathBuf> {
    let stamp = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    let aside = path.with_extension(format!("corrupt-{stamp}"));
    fs::rename(path, &aside).with_context(|| format!("cannot move {} aside", path.display()))?;
    Ok(aside)
}
