//! The systemd user units of proxy mode on Linux: `keyswitch-proxy.socket` holds the port from
//! login on and starts `keyswitch-proxy.service` (`keyswitch proxy run`, which takes the socket:
//! [`super::activation`]) on the first connection. Writing them, and driving `systemctl --user`.
//!
//! No secret is in either unit: the service reads the token and the keys as `get` does. It
//! runs with the user manager's environment, which on a desktop login includes the session's
//! `DBUS_SESSION_BUS_ADDRESS` (the Secret Service's bus); the keyswitch folders are pinned in
//! the unit so the service uses the ones `install` used.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow};

use crate::paths::Dirs;
use crate::proxy_settings::ProxySettings;

pub const SOCKET_UNIT: &str = "keyswitch-proxy.socket";
pub const SERVICE_UNIT: &str = "keyswitch-proxy.service";
/// The first line of both units: what `uninstall` recognises as keyswitch's own.
const MARK: &str = "# Written by `keyswitch install --proxy`; `keyswitch uninstall` removes it.";

/// Both units' text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Units {
    pub socket: String,
    pub service: String,
}

/// The units for this binary (`exe`, absolute), listening on `listen`, with keyswitch's folders.
pub fn units(exe: &Path, listen: SocketAddr, dirs: &Dirs) -> Result<Units> {
    let exe = quoted(plain_text(exe)?, Quoting::Exec);
    // Only the address's own family: a `[::1]` socket must not also take IPv4.
    let v6_only = if listen.is_ipv6() {
        "BindIPv6Only=ipv6-only\n"
    } else {
        ""
    };
    let socket = format!(
        "{MARK}
[Unit]
Description=keyswitch proxy: holds its loopback port for Claude Code from login on

[Socket]
ListenStream={listen}
{v6_only}Accept=no
NoDelay=yes

[Install]
WantedBy=sockets.target
"
    );
    let mut environment = String::new();
    for (var, folder) in [
        ("XDG_CONFIG_HOME", &dirs.config),
        ("XDG_STATE_HOME", &dirs.state),
    ] {
        let base = folder.parent().unwrap_or(folder);
        let value = quoted(
            &format!("{var}={}", plain_text(base)?),
            Quoting::Environment,
        );
        environment.push_str(&format!("Environment={value}\n"));
    }
    // The proxy's stderr (one line per start and stop, and why it could not start) goes where a
    // background proxy's goes, where keyswitch's messages point; the journal when the path
    // cannot be written in a unit.
    let log = dirs.proxy_log();
    let stderr = match log.to_str() {
        Some(text) if !text.contains(char::is_whitespace) && !text.contains('%') => {
            format!("StandardError=append:{text}\n")
        }
        _ => String::new(),
    };
    // The network settings live beside the state, not in the unit: a proxy URL may carry a
    // password. `-`: a missing file is no error. Unquoted: systemd takes the whole rest of the
    // line as the one path (and reads no quotes there).
    let network = plain_text(&dirs.proxy_service_env())?.replace('%', "%%");
    environment.push_str(&format!("EnvironmentFile=-{network}\n"));
    let service = format!(
        "{MARK}
[Unit]
Description=keyswitch proxy: puts the right API key on each Claude Code request
Requires={SOCKET_UNIT}
After={SOCKET_UNIT}

[Service]
Type=simple
ExecStart={exe} proxy run
{environment}{stderr}# A crash is restarted; `keyswitch proxy stop` ends it cleanly, and the socket starts it again
# on the next request.
Restart=on-failure
RestartSec=1
UMask=0077
LimitCORE=0
NoNewPrivileges=yes
"
    );
    Ok(Units { socket, service })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// ExecStart: `$` would expand a variable.
    Exec,
    /// Environment=: no variable expansion.
    Environment,
}

/// `path` as text a unit file can hold: a path that is not text, or holds a line break or
/// other control character, is refused.
fn plain_text(path: &Path) -> Result<&str> {
    path.to_str()
        .filter(|t| !t.contains(char::is_control))
        .ok_or_else(|| {
            anyhow!(
                "{} cannot be written into a systemd unit (not text, or a control character in it): install keyswitch and its folders under a plain path",
                path.display()
            )
        })
}

/// `text` as one double-quoted word of a unit file: quotes and backslashes escaped, `%`
/// (specifiers) doubled, `$` doubled in a command line.
fn quoted(text: &str, quoting: Quoting) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '%' => out.push_str("%%"),
            '$' if quoting == Quoting::Exec => out.push_str("$$"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Where systemd looks for the user's own units: `$XDG_CONFIG_HOME/systemd/user`, else
/// `~/.config/systemd/user`.
pub fn unit_dir() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("XDG_CONFIG_HOME")
        .or_else(|| absolute("HOME").map(|h| h.join(".config")))
        .map(|c| c.join("systemd").join("user"))
}

/// Whether this login has a systemd user manager to talk to: its private socket in
/// `$XDG_RUNTIME_DIR/systemd/` (what `systemctl --user` connects to), and `systemctl` itself.
/// Not `systemctl --user is-system-running`, whose exit status is non-zero on a merely
/// "degraded" manager. Containers, WSL without systemd, and an ssh login without a runtime
/// folder have none: there `get` starts the proxy, as before.
pub fn user_manager_present() -> bool {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    runtime.is_some_and(|r| r.join("systemd").join("private").exists())
        && which::which("systemctl").is_ok()
}

/// The unit files of ours that exist now.
pub fn installed_files() -> Vec<PathBuf> {
    let Some(dir) = unit_dir() else {
        return Vec::new();
    };
    [SOCKET_UNIT, SERVICE_UNIT]
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| std::fs::read_to_string(path).is_ok_and(|text| text.starts_with(MARK)))
        .collect()
}

/// Writes both units, reloads the user manager and starts the socket (now and at every login).
/// Returns the files written. The proxy itself starts on the first connection.
pub fn install(dirs: &Dirs, proxy: &ProxySettings) -> Result<Vec<PathBuf>> {
    let listen = proxy.listen;
    let exe = crate::on_path::this_binary().context("cannot tell where the keyswitch binary is")?;
    let units = units(&exe, listen, dirs)?;
    let dir = unit_dir().ok_or_else(|| anyhow!("cannot find your home folder: set HOME"))?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for (name, text) in [(SOCKET_UNIT, &units.socket), (SERVICE_UNIT, &units.service)] {
        let path = dir.join(name);
        crate::fileio::replace_file(&path, text.as_bytes(), crate::fileio::Durability::Synced)?;
        written.push(path);
    }
    write_network_env(dirs, &proxy.network)?;
    systemctl(&["daemon-reload"])?;
    // A socket already running keeps its old address until restarted.
    systemctl(&["enable", SOCKET_UNIT])?;
    systemctl(&["restart", SOCKET_UNIT])?;
    Ok(written)
}

/// The network settings recorded in proxy.json, for the service, whose environment is the user
/// manager's (which often lacks a shell profile's HTTPS_PROXY): the same settings every
/// background proxy `get` starts gets. Rewritten by a re-install and `keyswitch proxy restart`.
pub fn write_network_env(dirs: &Dirs, network: &BTreeMap<String, String>) -> Result<()> {
    let mut text = String::from(
        "# Written by `keyswitch install --proxy` and `keyswitch proxy restart`: the network settings proxy.json records.\n",
    );
    for (var, value) in network {
        if value.contains(char::is_control) {
            continue;
        }
        let value = value.replace('\\', "\\\\").replace('"', "\\\"");
        text.push_str(&format!("{var}=\"{value}\"\n"));
    }
    crate::paths::ensure_private_dir(&dirs.state)?;
    crate::fileio::replace_file(
        &dirs.proxy_service_env(),
        text.as_bytes(),
        crate::fileio::Durability::Synced,
    )
}

/// Stops and disables both units and removes the files of ours; true when there were any.
pub fn remove(dirs: &Dirs) -> Result<bool> {
    let _ = std::fs::remove_file(dirs.proxy_service_env());
    let files = installed_files();
    if files.is_empty() {
        return Ok(false);
    }
    // Best effort: a manager that is gone (an ssh login) must not keep the files in place.
    let stopped = systemctl(&["disable", "--now", SOCKET_UNIT, SERVICE_UNIT]);
    for file in &files {
        std::fs::remove_file(file)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
            .with_context(|| format!("cannot remove {}", file.display()))?;
    }
    if user_manager_present() {
        let _ = systemctl(&["daemon-reload"]);
    }
    stopped.map(|()| true)
}

/// Stops the service (the socket keeps the port and starts it again on the next request).
pub fn stop_service() -> Result<()> {
    systemctl(&["stop", SERVICE_UNIT])
}

/// Starts the socket (after a `systemctl --user stop` of it): the port is held again.
pub fn start_socket() -> Result<()> {
    systemctl(&["start", SOCKET_UNIT])
}

/// Stops socket and service, so the port is free for a moment (a re-install changing it).
pub fn stop_all() -> Result<()> {
    systemctl(&["stop", SOCKET_UNIT, SERVICE_UNIT])
}

/// Runs `systemctl --user ARGS`; its own message when it fails.
fn systemctl(args: &[&str]) -> Result<()> {
    let out = Command::new("systemctl")
        .arg("--user")
        .args(args)
        .output()
        .with_context(|| format!("cannot run systemctl --user {}", args.join(" ")))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    Err(anyhow!(
        "systemctl --user {} failed: {}",
        args.join(" "),
        said.trim().lines().last().unwrap_or("no message")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(base: &Path) -> Dirs {
        Dirs {
            config: base.join("config").join("keyswitch"),
            state: base.join("state").join("keyswitch"),
        }
    }

    #[test]
    fn the_units_name_the_address_the_binary_and_the_folders_and_no_secret() {
        let base = Path::new("/home/me");
        let listen: SocketAddr = "127.0.0.1:27329".parse().unwrap();
        let u = units(Path::new("/opt/key switch/keyswitch"), listen, &dirs(base)).unwrap();
        assert!(u.socket.starts_with(MARK));
        assert!(
            u.socket.contains("\nListenStream=127.0.0.1:27329\n"),
            "{}",
            u.socket
        );
        assert!(!u.socket.contains("BindIPv6Only"));
        assert!(u.socket.contains("\nAccept=no\n"));
        assert!(
            u.service
                .contains("\nExecStart=\"/opt/key switch/keyswitch\" proxy run\n"),
            "{}",
            u.service
        );
        assert!(u.service.contains("\nRestart=on-failure\n"));
        assert!(
            u.service
                .contains("\nEnvironment=\"XDG_STATE_HOME=/home/me/state\"\n")
        );
        assert!(
            u.service
                .contains("\nEnvironment=\"XDG_CONFIG_HOME=/home/me/config\"\n")
        );
        assert!(
            u.service
                .contains("\nStandardError=append:/home/me/state/keyswitch/proxy.log\n")
        );
        assert!(
            u.service
                .contains("\nEnvironmentFile=-/home/me/state/keyswitch/proxy-service.env\n")
        );
        for text in [&u.socket, &u.service] {
            assert!(!text.to_lowercase().contains("sk-ant"), "{text}");
            assert!(!text.contains("proxy-token"), "{text}");
        }
    }

    #[test]
    fn an_ipv6_address_binds_ipv6_only_and_odd_paths_are_escaped_or_refused() {
        let listen: SocketAddr = "[::1]:27329".parse().unwrap();
        let u = units(
            Path::new("/a/100%\"$x\\/ks"),
            listen,
            &dirs(Path::new("/h")),
        )
        .unwrap();
        assert!(
            u.socket
                .contains("\nListenStream=[::1]:27329\nBindIPv6Only=ipv6-only\n")
        );
        assert!(
            u.service
                .contains("\nExecStart=\"/a/100%%\\\"$$x\\\\/ks\" proxy run\n"),
            "{}",
            u.service
        );
        let e = units(Path::new("/a/b\nc"), listen, &dirs(Path::new("/h"))).unwrap_err();
        assert!(e.to_string().contains("plain path"), "{e}");
    }

    /// systemd's own reading of the units, where `systemd-analyze` is installed.
    #[test]
    fn systemd_analyze_verify_accepts_the_units() {
        let Ok(analyze) = which::which("systemd-analyze") else {
            say!("skipped: systemd-analyze is not installed (Debian package systemd)");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("keyswitch");
        std::fs::copy("/bin/true", &exe).unwrap();
        let u = units(&exe, "127.0.0.1:27329".parse().unwrap(), &dirs(dir.path())).unwrap();
        let socket = dir.path().join(SOCKET_UNIT);
        let service = dir.path().join(SERVICE_UNIT);
        std::fs::write(&socket, &u.socket).unwrap();
        std::fs::write(&service, &u.service).unwrap();
        let out = Command::new(analyze)
            .arg("verify")
            .args([&socket, &service])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        // Complaints about the machine (no systemd running here) are not about the units.
        let about_units: Vec<&str> = said
            .lines()
            .filter(|l| l.contains("keyswitch-proxy"))
            .collect();
        assert!(out.status.success() && about_units.is_empty(), "{said}");
    }
}
