//! The proxy's log kept small. A proxy `get` starts in the background writes its stderr to
//! `proxy.log` in the state folder, and runs for weeks: without a bound, one warning a request
//! grows it without end. Past [`MAX_BYTES`] the file is cut down to its newest
//! [`KEEP_AFTER_TRIM`] bytes of whole lines, as the event log is ([`crate::events`]).
//!
//! The file is trimmed in place, through the proxy's own stderr (read through its path, since
//! `get` opens it write-only), so the proxy never reopens its log. Only stderr that is the
//! state folder's `proxy.log`, opened for appending, is trimmed: a terminal, a pipe, a journal
//! or a file the user chose is not the proxy's to cut, and a file written at an offset would be
//! left with a hole.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Past this size the log is trimmed.
pub const MAX_BYTES: u64 = 1024 * 1024;
/// What is kept of it: the newest lines, whole.
pub const KEEP_AFTER_TRIM: u64 = MAX_BYTES / 2;
/// How often the size is looked at: a stat every few seconds; between two looks, the sparing
/// warnings ([`super::sparing`]) cannot write more than a few lines.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Trims the log at `path` whenever it grows past [`MAX_BYTES`], for as long as the proxy
/// runs, if the proxy's stderr is that file.
pub async fn keep_bounded(path: PathBuf) {
    let Some(log) = stderr_log().filter(|log| same_file(log, &path)) else {
        return;
    };
    let log = std::sync::Arc::new(log);
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tick.tick().await;
        let (log, path) = (log.clone(), path.clone());
        let trimmed = tokio::task::spawn_blocking(move || trim(&log, &path)).await;
        if let Ok(Err(e)) = trimmed {
            crate::messages::warn(format_args!("could not trim the proxy's log: {e}"));
            return;
        }
    }
}

/// The proxy's stderr, when it is a regular file opened for appending.
fn stderr_log() -> Option<File> {
    #[cfg(unix)]
    let (file, appending) = {
        use std::os::fd::AsFd;
        let stderr = std::io::stderr();
        let fd = stderr.as_fd();
        let appending = rustix::fs::fcntl_getfl(fd)
            .is_ok_and(|flags| flags.contains(rustix::fs::OFlags::APPEND));
        (File::from(fd.try_clone_to_owned().ok()?), appending)
    };
    // `get` opens the log for appending; Windows tells no flags of a handle it was given.
    #[cfg(windows)]
    let (file, appending) = {
        use std::os::windows::io::AsHandle;
        let handle = std::io::stderr().as_handle().try_clone_to_owned().ok()?;
        (File::from(handle), true)
    };
    (appending && file.metadata().ok()?.is_file()).then_some(file)
}

/// Whether `log` is the file at `path` (the same inode; Windows: assumed, as `get` made both).
fn same_file(log: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (log.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(windows)]
    {
        let _ = (log, path);
        true
    }
}

/// Cuts `log` (the file at `path`) to its newest whole lines once it is past [`MAX_BYTES`].
fn trim(log: &File, path: &Path) -> std::io::Result<()> {
    if log.metadata()?.len() <= MAX_BYTES {
        return Ok(());
    }
    // No warning of the proxy's lands between the read and the cut.
    let _no_writes = std::io::stderr().lock();
    let size = log.metadata()?.len();
    let start = size.saturating_sub(KEEP_AFTER_TRIM);
    let mut tail = vec![0; usize::try_from(size - start).unwrap_or(0)];
    read_at(&File::open(path)?, &mut tail, start)?;
    let first_whole_line = tail.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1);
    log.set_len(0)?;
    let mut writer = log;
    writer.write_all(
        format!("keyswitch: (proxy.log was past {MAX_BYTES} bytes: older lines were cut)\n")
            .as_bytes(),
    )?;
    writer.write_all(&tail[first_whole_line..])
}

/// Reads `into.len()` bytes at `offset`.
#[cfg(unix)]
fn read_at(file: &File, into: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, into, offset)
}

/// Reads `into.len()` bytes at `offset`.
#[cfg(windows)]
fn read_at(file: &File, into: &mut [u8], offset: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < into.len() {
        match std::os::windows::fs::FileExt::seek_read(
            file,
            &mut into[done..],
            offset + done as u64,
        )? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => done += n,
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_log_past_the_limit_keeps_its_newest_whole_lines_and_writes_go_on_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.log");
        // As `get` opens it for the proxy: write-only, appending.
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        assert!(same_file(&log, &path));
        let mut n = 0;
        while log.metadata().unwrap().len() <= MAX_BYTES {
            writeln!(log, "line {n}: {}", "x".repeat(100)).unwrap();
            n += 1;
        }
        trim(&log, &path).unwrap();
        writeln!(log, "after").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() as u64 <= KEEP_AFTER_TRIM + 200, "{}", text.len());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("older lines were cut"), "{}", lines[0]);
        assert!(lines[1].starts_with("line "), "{}", lines[1]);
        assert!(lines[lines.len() - 2].starts_with(&format!("line {}:", n - 1)));
        assert_eq!(lines[lines.len() - 1], "after");
        // Under the limit, nothing is cut.
        trim(&log, &path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}
