//! proxy.json: proxy mode's settings (where the proxy listens, where it forwards), written by
//! `keyswitch install --proxy` into the config folder and absent in helper mode. Read through [`crate::mode`], which
//! owns what a missing or damaged file means; the proxy reads the same type.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::refuse;
use crate::fileio::{Durability, read_optional, replace_file};
use crate::paths::Dirs;

/// The port `keyswitch install --proxy` uses unless `--listen` says otherwise.
/// Below every OS's range of ports for outgoing connections (Linux 32768–60999, macOS and
/// Windows 49152–65535), so a random outgoing connection never holds it.
pub const DEFAULT_PORT: u16 = 27329;

/// Proxy mode's settings, written by `keyswitch install --proxy`; absent in helper mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySettings {
    /// The loopback address the proxy listens on.
    pub listen: SocketAddr,
    /// Where requests go for keys without an endpoint of their own: the base URL the user had
    /// before installing.
    pub upstream: String,
    /// The network settings (`HTTPS_PROXY`, `NO_PROXY`, CA files: [`NETWORK_VARS`]) every
    /// background proxy gets, as the installing session had them; decided at install, so
    /// sessions with other environments do not replace the proxy in turn.
    ///
    /// [`NETWORK_VARS`]: crate::proxy::network::NETWORK_VARS
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub network: BTreeMap<String, String>,
}

impl ProxySettings {
    /// The `ANTHROPIC_BASE_URL` Claude Code is given.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.listen)
    }
}

/// What proxy.json holds.
#[derive(Debug)]
pub(crate) enum Stored {
    Absent,
    Settings(ProxySettings),
    /// Not settings keyswitch wrote (the file, and why not).
    Damaged(PathBuf, serde_json::Error),
}

/// Reads proxy.json as it is; an I/O failure is an error, a file keyswitch cannot parse is
/// [`Stored::Damaged`] for [`crate::mode`] to judge. A proxy.json where older versions kept it
/// (the state folder) is moved to the config folder on the way.
pub(crate) fn read(dirs: &Dirs) -> Result<Stored> {
    let path = dirs.proxy_settings_file();
    if let Some(bytes) = read_present(&path)? {
        return Ok(parse(path, &bytes));
    }
    let legacy = dirs.legacy_proxy_settings_file();
    let Some(bytes) = read_present(&legacy)? else {
        return Ok(Stored::Absent);
    };
    let stored = parse(legacy, &bytes);
    if let Stored::Settings(settings) = &stored {
        // Best effort (save removes the old file): until the move succeeds, the old place
        // keeps serving.
        let _ = save(dirs, settings);
    }
    Ok(stored)
}

/// A file's bytes; `None` when it is missing, or a file stands where its folder should be.
fn read_present(path: &Path) -> Result<Option<Vec<u8>>> {
    match read_optional(path) {
        Err(e)
            if e.root_cause()
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::NotADirectory) =>
        {
            Ok(None)
        }
        other => other,
    }
}

fn parse(path: PathBuf, bytes: &[u8]) -> Stored {
    match serde_json::from_slice(bytes) {
        Ok(settings) => Stored::Settings(settings),
        Err(e) => Stored::Damaged(path, e),
    }
}

/// Writes proxy.json in the config folder; one an older version left in the state folder goes,
/// so it can never stand in for this one.
pub fn save(dirs: &Dirs, settings: &ProxySettings) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(settings).context("cannot encode proxy settings")?;
    bytes.push(b'\n');
    replace_file(&dirs.proxy_settings_file(), &bytes, Durability::Synced)?;
    let _ = std::fs::remove_file(dirs.legacy_proxy_settings_file());
    Ok(())
}

/// Removes proxy.json, from where older versions kept it too — that one first, so a `get`
/// reading meanwhile never moves it back into the config folder.
pub fn remove(dirs: &Dirs) -> Result<()> {
    for path in [
        dirs.legacy_proxy_settings_file(),
        dirs.proxy_settings_file(),
    ] {
        match std::fs::remove_file(&path) {
            Err(e)
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(e).with_context(|| format!("cannot remove {}", path.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Parses `--listen`: a loopback `IP:PORT` (or a bare port); anything reachable from another
/// machine is refused, since the token is the only thing between it and the keys.
pub fn parse_listen(text: &str) -> Result<SocketAddr> {
    let text = text.trim();
    let how = "give a loopback address like 127.0.0.1:27329";
    let addr: SocketAddr = match text.parse::<u16>() {
        Ok(port) => SocketAddr::from(([127, 0, 0, 1], port)),
        Err(_) => text.parse().map_err(|_| {
            refuse(format!(
                "--listen '{}' is not IP:PORT: {how}",
                text.escape_debug()
            ))
        })?,
    };
    if !addr.ip().is_loopback() {
        return Err(refuse(format!(
            "--listen {addr} is not a loopback address: the proxy only listens on this machine; {how}"
        )));
    }
    // The proxy answers only a Host its clients use for loopback (127.0.0.1, localhost, [::1]):
    // another 127.x address would be refused by its own health check.
    if addr.ip() != std::net::Ipv4Addr::LOCALHOST && addr.ip() != std::net::Ipv6Addr::LOCALHOST {
        return Err(refuse(format!(
            "--listen {addr}: the proxy listens on 127.0.0.1 or [::1] only; {how}"
        )));
    }
    if addr.port() == 0 {
        return Err(refuse(format!(
            "--listen {addr} has no port: Claude Code needs a fixed one; {how}"
        )));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_is_127_0_0_1_or_ipv6_loopback_only() {
        assert!(parse_listen("127.0.0.2:9000").is_err());
        assert!(parse_listen("[::ffff:127.0.0.1]:9000").is_err());
        assert!(parse_listen("[::1]:9000").is_ok());
        let e = parse_listen("127.0.0.1:90\u{1b}00")
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\u{1b}'), "{e}");
    }

    #[test]
    fn listen_is_loopback_only() {
        assert_eq!(
            parse_listen("127.0.0.1:9000").unwrap(),
            "127.0.0.1:9000".parse().unwrap()
        );
        assert_eq!(
            parse_listen("9000").unwrap(),
            "127.0.0.1:9000".parse().unwrap()
        );
        assert!(parse_listen("[::1]:9000").is_ok());
        for bad in [
            "0.0.0.0:9000",
            "192.168.1.2:80",
            "127.0.0.1:0",
            "x",
            "127.0.0.1",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }
}
