//! The macOS LaunchAgent of proxy mode: `~/Library/LaunchAgents/dev.keyswitch.proxy.plist`
//! runs `keyswitch proxy run` at login and keeps it running (`KeepAlive`), loaded with
//! `launchctl bootstrap gui/UID`.
//!
//! Not launchd's `Sockets` key: taking such a socket needs `launch_activate_socket`, a C call
//! that would need `unsafe` (denied here). So launchd does not hold the port while the proxy is
//! down; `KeepAlive` brings it back within launchd's throttle (10 s) after a crash or a stop.

use std::path::{Path, PathBuf};

use anyhow::Result;
#[cfg(target_os = "macos")]
use anyhow::{Context, anyhow};

use crate::paths::Dirs;

pub const LABEL: &str = "dev.keyswitch.proxy";

// Used on macOS only; generated (and tested) everywhere.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
/// The plist: this binary (`exe`, absolute), keyswitch's folders pinned, stderr to proxy.log.
pub fn plist(exe: &Path, dirs: &Dirs) -> String {
    let text = |p: &Path| xml_escape(&p.to_string_lossy());
    let base = |p: &Path| p.parent().unwrap_or(p).to_path_buf();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by `keyswitch install --proxy`; `keyswitch uninstall` removes it. -->
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>{LABEL}</string>
	<key>ProgramArguments</key>
	<array>
		<string>{exe}</string>
		<string>proxy</string>
		<string>run</string>
	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<true/>
	<key>ProcessType</key>
	<string>Background</string>
	<key>EnvironmentVariables</key>
	<dict>
		<key>XDG_CONFIG_HOME</key>
		<string>{config}</string>
		<key>XDG_STATE_HOME</key>
		<string>{state}</string>
	</dict>
	<key>StandardErrorPath</key>
	<string>{log}</string>
	<key>SoftResourceLimits</key>
	<dict>
		<key>Core</key>
		<integer>0</integer>
	</dict>
</dict>
</plist>
"#,
        exe = text(exe),
        config = text(&base(&dirs.config)),
        state = text(&base(&dirs.state)),
        log = text(&dirs.proxy_log()),
    )
}

#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `~/Library/LaunchAgents/dev.keyswitch.proxy.plist`.
pub fn plist_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute())
        .map(|h| {
            h.join("Library/LaunchAgents")
                .join(format!("{LABEL}.plist"))
        })
}

/// Whether our plist is in place.
pub fn installed() -> bool {
    plist_path().is_some_and(|p| {
        std::fs::read_to_string(p).is_ok_and(|t| t.contains("keyswitch install --proxy"))
    })
}

/// Writes the plist and loads it into this login's launchd (replacing a loaded one), and waits
/// for its proxy to answer on `listen`: until then `get` would start one of its own, and
/// launchd's would fail to listen.
#[cfg(target_os = "macos")]
pub fn install(dirs: &Dirs, listen: std::net::SocketAddr) -> Result<Vec<PathBuf>> {
    let exe = crate::on_path::this_binary().context("cannot tell where the keyswitch binary is")?;
    let path = plist_path().ok_or_else(|| anyhow!("cannot find your home folder: set HOME"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::fileio::replace_file(
        &path,
        plist(&exe, dirs).as_bytes(),
        crate::fileio::Durability::Synced,
    )?;
    // An older one stays loaded with its old arguments until booted out.
    let _ = launchctl(&["bootout", &service_target()]);
    launchctl(&["bootstrap", &domain(), &path.to_string_lossy()])?;
    let token = crate::proxy_token::ensure_token(dirs)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !matches!(
        crate::proxy_client::probe(listen, &token),
        crate::proxy_client::Probe::Ours(_)
    ) {
        if std::time::Instant::now() > deadline {
            return Err(anyhow!(
                "launchd's proxy ({LABEL}) did not answer on {listen} within 5s: see {}",
                dirs.proxy_log().display()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(vec![path])
}

#[cfg(not(target_os = "macos"))]
pub fn install(_dirs: &Dirs, _listen: std::net::SocketAddr) -> Result<Vec<PathBuf>> {
    Ok(Vec::new())
}

/// Unloads the agent and removes the plist; true when it was there.
pub fn remove() -> Result<bool> {
    let Some(path) = plist_path().filter(|_| installed()) else {
        return Ok(false);
    };
    #[cfg(target_os = "macos")]
    let _ = launchctl(&["bootout", &service_target()]);
    std::fs::remove_file(&path)
        .map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", path.display()))?;
    Ok(true)
}

/// Restarts the agent's proxy at once (`kickstart -k`): what `proxy stop` does under launchd,
/// since `KeepAlive` would start it again anyway.
#[cfg(target_os = "macos")]
pub fn restart() -> Result<()> {
    launchctl(&["kickstart", "-k", &service_target()])
}

#[cfg(not(target_os = "macos"))]
pub fn restart() -> Result<()> {
    Ok(())
}

#[cfg(target_os = "macos")]
fn domain() -> String {
    format!("gui/{}", rustix::process::getuid().as_raw())
}

#[cfg(target_os = "macos")]
fn service_target() -> String {
    format!("{}/{LABEL}", domain())
}

#[cfg(target_os = "macos")]
fn launchctl(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("launchctl")
        .args(args)
        .output()
        .with_context(|| format!("cannot run launchctl {}", args.join(" ")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(anyhow!(
        "launchctl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plist_runs_this_binary_with_the_folders_and_keeps_it_alive() {
        let dirs = Dirs {
            config: PathBuf::from("/Users/me/Library/Application Support/keyswitch"),
            state: PathBuf::from("/Users/me/state & co/keyswitch"),
        };
        let text = plist(Path::new("/opt/homebrew/bin/keyswitch"), &dirs);
        for wanted in [
            "<key>Label</key>\n\t<string>dev.keyswitch.proxy</string>",
            "<array>\n\t\t<string>/opt/homebrew/bin/keyswitch</string>\n\t\t<string>proxy</string>\n\t\t<string>run</string>\n\t</array>",
            "<key>RunAtLoad</key>\n\t<true/>",
            "<key>KeepAlive</key>\n\t<true/>",
            "<key>XDG_STATE_HOME</key>\n\t\t<string>/Users/me/state &amp; co</string>",
            "<string>/Users/me/state &amp; co/keyswitch/proxy.log</string>",
            "<key>XDG_CONFIG_HOME</key>\n\t\t<string>/Users/me/Library/Application Support</string>",
        ] {
            assert!(text.contains(wanted), "{wanted}\n---\n{text}");
        }
        assert!(!text.contains("<key>Sockets</key>"));
        assert!(!text.to_lowercase().contains("sk-ant"));
    }
}
