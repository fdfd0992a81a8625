//! Which mode keyswitch is in, answered in one place: helper mode (`get` prints a key), proxy
//! mode (`get` prints a token for the local proxy, which puts the key on each request), or
//! subscription-first mode (sessions use the Claude subscription login; helper mode only while
//! its usage limit holds, [`crate::subscription`]). Proxy mode is on while proxy.json
//! ([`crate::proxy_settings`]) exists, subscription-first mode while subscription.json does.
//!
//! **A damaged proxy.json** (one keyswitch cannot parse) is an error from [`Mode::load`] naming
//! the file and the fix, `keyswitch install --proxy`. Neither mode is a safe guess: helper mode
//! would hand a real key to a session pointed at the proxy's address, proxy mode has no address
//! to use. So every command that hands out or acts on a key stops there: `get`, the StopFailure
//! hook, `keyswitch proxy`, and keeping the settings in step with the active key. The rest read
//! the same answer and do what their job needs with it:
//! - `install` and `uninstall` are the way out: they go on as if no proxy ran under the
//!   damaged file, and replace or remove it (pinned by tests/proxy.rs
//!   `a_reinstall_after_damaged_proxy_settings_forwards_to_the_new_upstream`);
//! - `doctor` reports the error as a problem, with its fix;
//! - `status` and doctor's description of the wiring only describe: to them a damaged file is
//!   still the mode the user last chose, proxy mode ([`proxy_chosen`]).

use anyhow::{Result, anyhow};

use crate::paths::Dirs;
use crate::proxy_settings::{self, ProxySettings, Stored};
use crate::subscription::{self, record::SubscriptionFirst};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `get` prints the active key; Claude Code talks to the API (or the key's endpoint).
    Helper,
    /// `get` prints the local token; Claude Code talks to the proxy these settings describe.
    Proxy(ProxySettings),
    /// No helper while the subscription is usable; helper mode during a hold.
    SubscriptionFirst(SubscriptionFirst),
}

impl Mode {
    /// The mode proxy.json says; an error when it is damaged (see the module doc).
    pub fn load(dirs: &Dirs) -> Result<Self> {
        match proxy_settings::read(dirs)? {
            Stored::Absent => subscription_first(dirs),
            Stored::Settings(settings) => Ok(Self::Proxy(settings)),
            Stored::Damaged(path, e) => Err(anyhow!(
                "{} is damaged ({e}): run `keyswitch install --proxy` again",
                path.display()
            )),
        }
    }

    pub fn is_subscription_first(&self) -> bool {
        matches!(self, Self::SubscriptionFirst(_))
    }

    pub fn is_proxy(&self) -> bool {
        matches!(self, Self::Proxy(_))
    }

    /// The proxy settings in proxy mode.
    pub fn proxy(self) -> Option<ProxySettings> {
        match self {
            Self::Proxy(settings) => Some(settings),
            _ => None,
        }
    }
}

/// Subscription-first mode when its record is there, helper mode otherwise.
fn subscription_first(dirs: &Dirs) -> Result<Mode> {
    match subscription::record::read(dirs)? {
        subscription::record::Stored::Absent => Ok(Mode::Helper),
        subscription::record::Stored::Record(record) => Ok(Mode::SubscriptionFirst(record)),
        subscription::record::Stored::Damaged(path, e) => Err(anyhow!(
            "{} is damaged ({e}): run `keyswitch install --subscription-first` again",
            path.display()
        )),
    }
}

/// For what only describes the setup: proxy mode, or a damaged proxy.json, which is what
/// `keyswitch install --proxy` left before it was damaged.
pub fn proxy_chosen(loaded: &Result<Mode>) -> bool {
    !matches!(loaded, Ok(Mode::Helper | Mode::SubscriptionFirst(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(dir: &tempfile::TempDir) -> Dirs {
        Dirs {
            config: dir.path().join("config"),
            state: dir.path().join("state"),
        }
    }

    #[test]
    fn no_file_is_helper_mode_and_settings_are_proxy_mode() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = dirs(&dir);
        assert_eq!(Mode::load(&dirs).unwrap(), Mode::Helper);
        let settings = ProxySettings {
            listen: "127.0.0.1:9000".parse().unwrap(),
            upstream: "https://api.anthropic.com".to_string(),
            network: Default::default(),
        };
        proxy_settings::save(&dirs, &settings).unwrap();
        assert_eq!(Mode::load(&dirs).unwrap(), Mode::Proxy(settings));
        proxy_settings::remove(&dirs).unwrap();
        assert_eq!(Mode::load(&dirs).unwrap(), Mode::Helper);
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = dirs(&dir);
        std::fs::create_dir_all(&dirs.config).unwrap();
        std::fs::write(dirs.proxy_settings_file(), "{\"listen\":").unwrap();
        let loaded = Mode::load(&dirs);
        let e = loaded.as_ref().unwrap_err().to_string();
        assert!(
            e.contains("proxy.json") && e.contains("install --proxy"),
            "{e}"
        );
        assert!(proxy_chosen(&loaded));
    }

    #[test]
    fn proxy_mode_recorded_in_the_state_folder_by_older_versions_moves_to_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = dirs(&dir);
        std::fs::create_dir_all(&dirs.state).unwrap();
        let text = "{\"listen\":\"127.0.0.1:9000\",\"upstream\":\"https://gw.example\"}";
        std::fs::write(dirs.legacy_proxy_settings_file(), text).unwrap();
        let loaded = Mode::load(&dirs).unwrap();
        assert!(loaded.is_proxy());
        assert!(!dirs.legacy_proxy_settings_file().exists());
        assert!(dirs.proxy_settings_file().exists());
        // The state folder lost now: proxy mode holds.
        std::fs::remove_dir_all(&dirs.state).unwrap();
        assert_eq!(Mode::load(&dirs).unwrap(), loaded);
        proxy_settings::remove(&dirs).unwrap();
        assert_eq!(Mode::load(&dirs).unwrap(), Mode::Helper);
    }

    #[cfg(unix)]
    #[test]
    fn a_file_in_place_of_the_state_folder_is_helper_mode() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = dirs(&dir);
        std::fs::write(&dirs.state, "").unwrap();
        assert_eq!(Mode::load(&dirs).unwrap(), Mode::Helper);
    }
}
