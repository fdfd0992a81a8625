//! Where keyswitch keeps its files, and creating those folders privately.
//!
//! `$XDG_CONFIG_HOME` and `$XDG_STATE_HOME` are honoured on every platform when set (tests and
//! people who keep dotfiles in one place rely on it); otherwise the platform's own folders.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};

const APP: &str = "keyswitch";

/// The two folders keyswitch owns.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// The user's intent: key order, endpoints, cooldown lengths. Never rewritten on our own.
    pub config: PathBuf,
    /// What happened: cooldowns, the event log, session hand-outs. Rebuilt if damaged.
    pub state: PathBuf,
}

impl Dirs {
    pub fn from_env() -> Result<Self> {
        let project = directories::ProjectDirs::from("", "", APP);
        let config = match env_dir("XDG_CONFIG_HOME") {
            Some(base) => base.join(APP),
            None => project
                .as_ref()
                .map(|p| p.config_dir().to_path_buf())
                .ok_or_else(no_home)?,
        };
        let state = match env_dir("XDG_STATE_HOME") {
            Some(base) => base.join(APP),
            None => project
                .as_ref()
                .map(|p| {
                    // Only Linux has a state folder; elsewhere the local data folder plays its part.
                    p.state_dir()
                        .unwrap_or_else(|| p.data_local_dir())
                        .to_path_buf()
                })
                .ok_or_else(no_home)?,
        };
        check_trusted(&config)?;
        check_trusted(&state)?;
        Ok(Self { config, state })
    }

    pub fn config_file(&self) -> PathBuf {
        self.config.join("config.json")
    }

    pub fn state_file(&self) -> PathBuf {
        self.state.join("state.json")
    }

    pub fn event_log(&self) -> PathBuf {
        self.state.join("events.jsonl")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.state.join("lock")
    }

    /// Held by `add` and `remove` across keychain I/O, so the pool lock never is.
    pub fn keychain_lock_file(&self) -> PathBuf {
        self.state.join("keychain.lock")
    }

    pub fn sessions(&self) -> PathBuf {
        self.state.join("sessions")
    }

    /// Proxy mode's settings, written by `keyswitch install --proxy`; absent in helper mode.
    /// In the config folder: losing it while Claude Code's settings still point at the proxy
    /// would put a session on a dead loopback port, so it is no state to rebuild.
    pub fn proxy_settings_file(&self) -> PathBuf {
        self.config.join("proxy.json")
    }

    /// Subscription-first mode's record ([`crate::subscription::record`]); absent in the
    /// other modes. In the config folder, like proxy.json: it is the mode the user chose.
    pub fn subscription_file(&self) -> PathBuf {
        self.config.join("subscription.json")
    }

    /// The subscription's usage limit being held now ([`crate::subscription::hold`]).
    pub fn subscription_hold(&self) -> PathBuf {
        self.state.join("subscription-hold.json")
    }

    /// Where versions before the move kept proxy.json; read once, and moved.
    pub fn legacy_proxy_settings_file(&self) -> PathBuf {
        self.state.join("proxy.json")
    }

    /// The local access token sessions present to the proxy in proxy mode.
    pub fn proxy_token_file(&self) -> PathBuf {
        self.state.join("proxy-token")
    }

    /// Where a background proxy's stderr goes: start-up failures and one line per start and
    /// stop. Never a request, a body, a token or a secret.
    pub fn proxy_log(&self) -> PathBuf {
        self.state.join("proxy.log")
    }

    /// The running proxy's pid and listen address ([`crate::proxy_pid_record`]).
    pub fn proxy_pid_file(&self) -> PathBuf {
        self.state.join("proxy.pid")
    }

    /// Held while a background proxy is being started, so many `get`s at once start one.
    pub fn proxy_start_lock(&self) -> PathBuf {
        self.state.join("proxy-start.lock")
    }

    /// When `get` last handed proxy mode's token to a session (for `proxy stop`'s warning).
    pub fn token_handout(&self) -> PathBuf {
        self.state.join("token-handout")
    }

    /// The network settings (HTTPS_PROXY, CA files) `install --proxy` saw, for the proxy a
    /// service manager runs with an environment of its own. May hold a proxy's password: 0600.
    pub fn proxy_service_env(&self) -> PathBuf {
        self.state.join("proxy-service.env")
    }

    /// What `keyswitch install` changed in Claude Code's settings, to take exactly that out.
    pub fn install_record(&self) -> PathBuf {
        self.state.join("claude-install.json")
    }

    /// Which gateway the proxy found at each endpoint (its name and version), for `doctor`.
    pub fn gateways_seen(&self) -> PathBuf {
        self.state.join("gateways.json")
    }

    /// Each key's headroom and token tally, as the proxy read them off the answers
    /// ([`crate::headroom::store`]).
    pub fn headroom_file(&self) -> PathBuf {
        self.state.join("headroom.json")
    }

    /// Held by a proxy while it adds to [`Dirs::headroom_file`]; readers never take it.
    pub fn headroom_lock(&self) -> PathBuf {
        self.state.join("headroom.lock")
    }
}

fn env_dir(var: &str) -> Option<PathBuf> {
    // The XDG spec says relative values are invalid and must be ignored.
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

fn no_home() -> anyhow::Error {
    anyhow!("cannot find your home folder: set HOME (or XDG_CONFIG_HOME and XDG_STATE_HOME)")
}

/// Refuses a keyswitch folder that someone else could have planted files in, as ssh's
/// StrictModes does: one owned by another user, or writable by group or others. A folder that
/// does not exist yet is fine (keyswitch creates it 0700); a file in its place is left to the
/// readers, which treat it as damaged state.
#[cfg(unix)]
pub fn check_trusted(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::metadata(dir) else {
        return Ok(());
    };
    if !meta.is_dir() {
        return Ok(());
    }
    let me = rustix::process::geteuid().as_raw();
    let shown = dir.display();
    if meta.uid() != me {
        anyhow::bail!(
            "refusing to use {shown}: it belongs to another user (uid {}), who could plant files keyswitch would trust; if it is yours, `chown -R {me} {shown}`, otherwise remove it",
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        anyhow::bail!(
            "refusing to use {shown}: other users can write to it (mode {:03o}); fix it with `chmod go-w {shown}`",
            meta.mode() & 0o7777
        );
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn check_trusted(_dir: &Path) -> Result<()> {
    Ok(())
}

/// Creates `dir` (and parents) readable by the owner only: 0700 on Unix.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create folder {}", dir.display()))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_folder_others_can_write_to_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("keyswitch");
        assert!(
            check_trusted(&ours).is_ok(),
            "a missing folder is created privately later"
        );
        fs::create_dir(&ours).unwrap();
        for (mode, trusted) in [(0o700, true), (0o755, true), (0o775, false), (0o777, false)] {
            fs::set_permissions(&ours, fs::Permissions::from_mode(mode)).unwrap();
            let result = check_trusted(&ours);
            assert_eq!(result.is_ok(), trusted, "{mode:o}");
            if let Err(e) = result {
                assert!(e.to_string().contains("chmod go-w"), "{e}");
            }
        }
    }
}
