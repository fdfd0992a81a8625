//! Crash-safe file primitives shared by the config, the state and the event log.
//!
//! Writers hold one exclusive lock (std `File::lock`, on a separate lock file so that readers,
//! who never lock, are never blocked), then replace files atomically: write a temporary file in
//! the same folder, fsync it, rename it over the old one, fsync the folder. A process killed at
//! any moment leaves the old file or the new one. Temporary files a killed writer left behind are
//! swept by the next writer, which can do so safely because only lock holders create them.
//!
//! Nothing here opens anything but a regular file: a folder, a named pipe or a device where a
//! file should be is an error, never a hang; and a file opened to write is never reached
//! through a symbolic link, which someone else could have pointed at a file of yours.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

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
    let mut options = private_options();
    options.read(true).write(true).create(true).truncate(false);
    open_for_writing(&mut options, path, "lock file")
}

/// Opens (usually creating) a file to write, refusing a symbolic link in its place and
/// anything that is not a regular file.
pub fn open_for_writing(options: &mut OpenOptions, path: &Path, what: &str) -> Result<File> {
    #[cfg(unix)]
    {
        use rustix::fs::OFlags;
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) => {
            if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
                bail!(
                    "{what} {} is a symbolic link, and keyswitch never writes through one: remove it",
                    path.display()
                );
            }
            return Err(e).with_context(|| format!("cannot open {what} {}", path.display()));
        }
    };
    expect_regular(&file, path)?;
    Ok(file)
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

/// keyswitch's own files are a few kilobytes; anything past this is not one of them.
const MAX_READ: u64 = 16 * 1024 * 1024;

/// Reads a whole regular file; `None` when it does not exist. A named pipe in its place is
/// refused, never waited on.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    let Some((file, size)) = open_for_reading(path)? else {
        return Ok(None);
    };
    if size > MAX_READ {
        bail!(
            "{} is {size} bytes, far more than keyswitch ever writes: move it out of the way",
            path.display()
        );
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_READ)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(bytes))
}

/// The last `limit` bytes of a regular file, from the first whole line in them (all of it when
/// it is smaller); `None` when it does not exist. For logs, whose head may be dropped.
pub fn read_tail(path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    use std::io::{Seek, SeekFrom};
    let Some((mut file, size)) = open_for_reading(path)? else {
        return Ok(None);
    };
    let start = size.saturating_sub(limit);
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(start))
        .and_then(|_| file.take(limit).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read {}", path.display()))?;
    if start > 0 {
        // Drop the partial line the cut landed in.
        let first_line_end = bytes
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| i + 1);
        bytes.drain(..first_line_end);
    }
    Ok(Some(bytes))
}

/// Opens a regular file to read, with its size; `None` when it does not exist. A named pipe
/// is opened without blocking and then refused.
fn open_for_reading(path: &Path) -> Result<Option<(File, u64)>> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let size = expect_regular(&file, path)?;
    Ok(Some((file, size)))
}

/// Refuses an open file that is not a regular file; returns its size.
fn expect_regular(file: &File, path: &Path) -> Result<u64> {
    let meta = file
        .metadata()
        .with_context(|| format!("cannot inspect {}", path.display()))?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    let kind = describe_kind(&meta.file_type());
    bail!(
        "{} is {kind}, not a regular file: move it out of the way",
        path.display()
    )
}

fn describe_kind(kind: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a named pipe";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_block_device() || kind.is_char_device() {
            return "a device";
        }
    }
    if kind.is_dir() {
        "a folder"
    } else {
        "a special file"
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
    let temp = temp_file_holding(dir, bytes)?;
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

/// A new temporary file in `dir` (created 0700 if missing), holding `bytes`: the first half of
/// every atomic replace. Named with [`TEMP_PREFIX`], so a killed writer's is swept later.
pub fn temp_file_holding(dir: &Path, bytes: &[u8]) -> Result<tempfile::NamedTempFile> {
    ensure_private_dir(dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    temp.write_all(bytes)
        .with_context(|| format!("cannot write {}", temp.path().display()))?;
    Ok(temp)
}

/// Renames `temp` over `path`. Windows refuses to replace a file that another process has open
/// at that moment (a `get` reading it without the lock, for microseconds), so there a refusal
/// is retried for up to a second instead of failing the write.
pub fn persist_retrying(mut temp: tempfile::NamedTempFile, path: &Path) -> std::io::Result<()> {
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_named_pipe_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let pipe = dir.path().join("state.json");
        // mkfifo(1) rather than mknodat: the same on every Unix this is checked for.
        let made = std::process::Command::new("mkfifo")
            .arg(&pipe)
            .status()
            .unwrap();
        assert!(made.success());
        let error = read_optional(&pipe).unwrap_err().to_string();
        assert!(error.contains("a named pipe"), "{error}");
        let error = read_optional(dir.path()).unwrap_err().to_string();
        assert!(error.contains("a folder"), "{error}");
    }

    #[test]
    fn nothing_is_written_through_a_symbolic_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("bashrc");
        fs::write(&target, "mine\n").unwrap();
        let link = dir.path().join("events.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let mut options = private_options();
        options.create(true).append(true);
        let error = open_for_writing(&mut options, &link, "the event log").unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        // A dangling link is not followed to create a file either.
        let elsewhere = dir.path().join("elsewhere");
        let lock = dir.path().join("lock");
        std::os::unix::fs::symlink(&elsewhere, &lock).unwrap();
        assert!(WriteLock::acquire(&lock).is_err());
        assert!(!elsewhere.exists());
        assert_eq!(fs::read_to_string(&target).unwrap(), "mine\n");
    }
}
