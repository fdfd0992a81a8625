//! Which mode an install is for: the flags given, resolved against the mode installed before
//! and whether a Claude subscription login is here.

use std::net::SocketAddr;

use anyhow::Result;

use crate::mode::{Mode, proxy_chosen};
use crate::paths::Dirs;
use crate::proxy_settings::parse_listen;

/// The mode asked for: helper mode (the session gets a key), proxy mode (the session gets a
/// token for the proxy), subscription-first mode (the session uses the subscription login, a
/// key only while its limit holds), or — no flag — the mode installed already; on a first
/// install subscription-first mode over a login, proxy mode otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Helper,
    /// On the address given, else the one proxy mode already uses, else the default port.
    Proxy(Option<SocketAddr>),
    SubscriptionFirst,
    AsBefore,
}

impl Wanted {
    pub fn from_flags(
        proxy: bool,
        helper: bool,
        subscription_first: bool,
        listen: Option<&str>,
    ) -> Result<Self> {
        Ok(match (proxy, helper, listen) {
            _ if subscription_first => Self::SubscriptionFirst,
            (_, _, Some(text)) => Self::Proxy(Some(parse_listen(text)?)),
            (true, _, None) => Self::Proxy(None),
            (false, true, None) => Self::Helper,
            (false, false, None) => Self::AsBefore,
        })
    }

    /// Re-running install keeps the mode the user chose: helper mode stays helper mode when
    /// keyswitch is installed without proxy mode's record (nor subscription-first mode's). A
    /// first install is subscription-first mode over a login (never billed to a key while the
    /// subscription works), else proxy mode: no turn fails when a key runs out.
    pub(super) fn resolve(self, before: &Before, login: bool, keys_only: bool) -> Self {
        match (self, before) {
            (Self::AsBefore, Before::Proxy) => Self::Proxy(None),
            (Self::AsBefore, Before::SubscriptionFirst) => Self::SubscriptionFirst,
            (Self::AsBefore, Before::Helper) => Self::Helper,
            (Self::AsBefore, Before::Nothing) if login && !keys_only => Self::SubscriptionFirst,
            (Self::AsBefore, Before::Nothing) => Self::Proxy(None),
            (chosen, _) => chosen,
        }
    }
}

/// The mode installed before this install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Before {
    Nothing,
    Helper,
    Proxy,
    SubscriptionFirst,
}

impl Before {
    pub(super) fn of(mode: &Result<Mode>, installed: bool, dirs: &Dirs) -> Self {
        // A damaged subscription.json is still the mode the user chose.
        if dirs.subscription_file().exists() && !matches!(mode, Ok(Mode::Proxy(_))) {
            return Self::SubscriptionFirst;
        }
        match mode {
            _ if proxy_chosen(mode) => Self::Proxy,
            _ if installed => Self::Helper,
            _ => Self::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flag_keeps_the_mode_before_and_a_first_install_over_a_login_is_subscription_first() {
        let first = Wanted::AsBefore;
        assert_eq!(
            first.resolve(&Before::Nothing, true, false),
            Wanted::SubscriptionFirst
        );
        assert_eq!(
            first.resolve(&Before::Nothing, true, true),
            Wanted::Proxy(None)
        );
        assert_eq!(
            first.resolve(&Before::Nothing, false, false),
            Wanted::Proxy(None)
        );
        assert_eq!(first.resolve(&Before::Helper, true, false), Wanted::Helper);
        assert_eq!(
            first.resolve(&Before::SubscriptionFirst, false, false),
            Wanted::SubscriptionFirst
        );
        assert_eq!(
            Wanted::Helper.resolve(&Before::SubscriptionFirst, true, false),
            Wanted::Helper
        );
        assert_eq!(
            Wanted::from_flags(false, false, true, None).unwrap(),
            Wanted::SubscriptionFirst
        );
    }
}
