//! The running proxy's pid and listen address, written to the state folder at start and
//! removed at a clean exit. The proxy is not dumpable, so its own user cannot read its
//! `/proc/PID/fd` and find which process holds a port; with several proxies of the user's
//! (profiles on different ports), this record says which one is this profile's, e.g. to name a
//! proxy stopped by Ctrl-Z ([`crate::port_owner`]). It is only a hint: the pid is taken only
//! when it is still one of the user's own `keyswitch proxy run` processes.
//!
//! Both sides import this; neither imports the other.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::fileio::{Durability, read_optional, replace_file};

/// What the record says: the proxy's pid and the address it listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidRecord {
    pub pid: u32,
    pub listen: SocketAddr,
}

impl PidRecord {
    fn text(&self) -> String {
        format!("{} {}\n", self.pid, self.listen)
    }

    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn parse(text: &str) -> Option<Self> {
        let (pid, listen) = text.trim().split_once(' ')?;
        Some(Self {
            pid: pid.parse().ok()?,
            listen: listen.parse().ok()?,
        })
    }
}

/// The record at `path`, if there is one that reads. Only Linux looks (the others find a
/// port's holder by other means, or not at all).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub fn read(path: &Path) -> Option<PidRecord> {
    let bytes = read_optional(path).ok()??;
    PidRecord::parse(std::str::from_utf8(&bytes).ok()?)
}

/// Removes the record when the proxy ends cleanly.
pub struct Recorded {
    path: PathBuf,
    record: PidRecord,
}

/// Records this process as the proxy listening on `listen`.
pub fn record(path: &Path, listen: SocketAddr) -> Result<Recorded> {
    let record = PidRecord {
        pid: std::process::id(),
        listen,
    };
    replace_file(path, record.text().as_bytes(), Durability::AtomicOnly)?;
    Ok(Recorded {
        path: path.to_path_buf(),
        record,
    })
}

impl Drop for Recorded {
    fn drop(&mut self) {
        // A proxy started to replace this one may have written its own record already.
        if read(&self.path) == Some(self.record) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_read_back_and_removed_only_while_it_is_this_proxys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.pid");
        let listen: SocketAddr = "127.0.0.1:8082".parse().unwrap();
        let recorded = record(&path, listen).unwrap();
        let ours = read(&path).unwrap();
        assert_eq!((ours.pid, ours.listen), (std::process::id(), listen));
        drop(recorded);
        assert!(!path.exists());

        let recorded = record(&path, listen).unwrap();
        std::fs::write(&path, "1 127.0.0.1:9000\n").unwrap();
        drop(recorded);
        assert_eq!(
            read(&path).map(|r| r.pid),
            Some(1),
            "another proxy's record stays"
        );
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(read(&path), None);
    }
}
