//! The service manager that runs the proxy where the OS has one for the user's login: systemd
//! user units on Linux (the socket holds the port from login on, so no other user can take it
//! while the proxy is down), a LaunchAgent on macOS. What `install --proxy` sets up, `uninstall`
//! takes out, `proxy stop` drives and `status`/`doctor` report. Without one (containers, WSL
//! without systemd, an ssh login), `get` starts the proxy in the background as before.
//!
//! Also the proxy's side of socket activation ([`activation`]).

#[cfg(target_os = "linux")]
pub mod activation;
pub mod launchd;
pub mod systemd;

use std::path::PathBuf;

use anyhow::Result;

use crate::claude::install_record::{load_record, save_record};
use crate::paths::Dirs;
use crate::proxy_settings::ProxySettings;

/// Which service manager runs the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// `keyswitch-proxy.socket` and `.service`, systemd user units.
    Systemd,
    /// `dev.keyswitch.proxy`, a LaunchAgent.
    Launchd,
}

impl Manager {
    /// How status and doctor name it.
    pub fn describe(self) -> String {
        match self {
            Self::Systemd => format!(
                "managed by systemd ({}, which holds the port and starts {} on the next request)",
                systemd::SOCKET_UNIT,
                systemd::SERVICE_UNIT
            ),
            Self::Launchd => format!(
                "managed by launchd ({}, kept running from login on)",
                launchd::LABEL
            ),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Systemd => "systemd",
            Self::Launchd => "launchd",
        }
    }
}

/// The manager whose units keyswitch installed, if any (by its files, not by asking it).
pub fn installed() -> Option<Manager> {
    if cfg!(target_os = "linux") && !systemd::installed_files().is_empty() {
        Some(Manager::Systemd)
    } else if cfg!(target_os = "macos") && launchd::installed() {
        Some(Manager::Launchd)
    } else {
        None
    }
}

/// Hands the proxy to this login's service manager, if it has one: writes the units and starts
/// them. `None` where there is none, or it failed (then reported, what was written taken out
/// again, and `get` starts the proxy as it does without a manager): install never fails for it.
/// Whether [`take_over`] would hand the proxy to a service manager here.
pub fn available() -> bool {
    crate::failpoints::service_manager_allowed()
        && ((cfg!(target_os = "linux") && systemd::user_manager_present())
            || cfg!(target_os = "macos"))
}

pub fn take_over(dirs: &Dirs, proxy: &ProxySettings) -> Option<Manager> {
    if !crate::failpoints::service_manager_allowed() {
        return None;
    }
    let (manager, result) = if cfg!(target_os = "linux") && systemd::user_manager_present() {
        (Manager::Systemd, systemd::install(dirs, proxy))
    } else if cfg!(target_os = "macos") {
        (Manager::Launchd, launchd::install(dirs, proxy.listen))
    } else {
        return None;
    };
    match result {
        Ok(files) if !files.is_empty() => {
            if let Err(e) = record(dirs, files) {
                crate::messages::warn_failed(
                    "record the service files for `keyswitch uninstall`",
                    &e,
                );
            }
            Some(manager)
        }
        Ok(_) => None,
        Err(e) => {
            crate::messages::warn(format_args!(
                "could not hand the proxy to {}: {}; `keyswitch get` starts it instead",
                manager.name(),
                crate::error::one_line(&e)
            ));
            let _ = remove(dirs, &[]);
            None
        }
    }
}

/// Gives a managed proxy the network settings proxy.json now records (`keyswitch proxy
/// restart`), before it is restarted: a service takes its environment from the service
/// manager, not from the shell that restarts it.
pub fn refresh_network(dirs: &Dirs, proxy: &ProxySettings) -> Result<()> {
    match installed() {
        Some(Manager::Systemd) => systemd::write_network_env(dirs, &proxy.network),
        _ => Ok(()),
    }
}

/// Frees the port a managed proxy holds, before a re-install starts it again (maybe elsewhere).
/// True when there was a managed proxy.
pub fn release() -> bool {
    match installed() {
        Some(Manager::Systemd) => {
            if let Err(e) = systemd::stop_all() {
                crate::messages::warn(format_args!("{}", crate::error::one_line(&e)));
            }
            true
        }
        Some(Manager::Launchd) => {
            let _ = launchd::remove();
            true
        }
        None => false,
    }
}

/// Notes the files in the install record, so `uninstall` finds them wherever they are.
fn record(dirs: &Dirs, files: Vec<PathBuf>) -> Result<()> {
    let Some(mut record) = load_record(dirs)? else {
        return Ok(());
    };
    if record.service_files != files {
        record.service_files = files;
        save_record(dirs, &record)?;
    }
    Ok(())
}

/// Stops and removes whatever `install` handed to a service manager (found by their mark, and
/// the `recorded` files of the install record); true when there was any. Failures are
/// reported, never fatal: uninstall goes on.
pub fn remove(dirs: &Dirs, recorded: &[PathBuf]) -> bool {
    let mut removed = false;
    for (manager, result) in [
        (Manager::Systemd, systemd::remove(dirs)),
        (Manager::Launchd, launchd::remove()),
    ] {
        match result {
            Ok(r) => removed |= r,
            Err(e) => {
                removed = true;
                crate::messages::warn(format_args!(
                    "could not fully take the proxy out of {}: {}",
                    manager.name(),
                    crate::error::one_line(&e)
                ));
            }
        }
    }
    // What the record names and the mark did not find (the folders moved since).
    for file in recorded {
        match std::fs::remove_file(file) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => crate::messages::warn(format_args!("cannot remove {}: {e}", file.display())),
        }
    }
    removed
}

/// `proxy start` under systemd: the socket first (the user may have stopped it), so the proxy
/// `get` then finds is systemd's rather than one started in the background. Reported, never
/// fatal: `get`'s start remains.
pub fn start() {
    if installed() == Some(Manager::Systemd)
        && let Err(e) = systemd::start_socket()
    {
        crate::messages::warn(format_args!("{}", crate::error::one_line(&e)));
    }
}

/// `proxy stop` under a service manager: the proxy process ends (and with it what it read at
/// start: environment, binary), yet the port stays held — systemd's socket starts it again on
/// the next request, launchd at once. `None` when no manager runs the proxy.
pub fn stop() -> Option<Result<String>> {
    let manager = installed()?;
    Some(match manager {
        Manager::Systemd => systemd::stop_service().map(|()| {
            format!(
                "stopped {}; {} keeps the port, so the next request starts the proxy again (to stop that too until the next login: `systemctl --user stop {}`; for good: `keyswitch uninstall`)",
                systemd::SERVICE_UNIT,
                systemd::SOCKET_UNIT,
                systemd::SOCKET_UNIT
            )
        }),
        Manager::Launchd => launchd::restart().map(|()| {
            format!(
                "restarted the proxy: launchd keeps {} running (to stop it until the next login: `launchctl bootout gui/$(id -u)/{}`; for good: `keyswitch uninstall`)",
                launchd::LABEL,
                launchd::LABEL
            )
        }),
    })
}
