//! What the CLI side (`get`, `install`, `doctor`, `proxy start|stop|status`) and the proxy
//! server agree on: the control paths, the health answer, and the mark of a background proxy.
//! Both sides import this; neither imports the other.

use serde::{Deserialize, Serialize};

/// What the proxy's health answer calls itself, to tell it from another program on the port.
pub const SERVICE: &str = "keyswitch-proxy";
/// This build's version: a proxy of another version is replaced by `get`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// `GET` with a nonce answers [`Health`] with a proof of the token ([`crate::proxy_proof`]);
/// without one, only that the proxy is alive.
pub const HEALTH_PATH: &str = "/_keyswitch/health";
/// `POST` with a proof of the token over the client's nonce and time stops the proxy.
pub const SHUTDOWN_PATH: &str = "/_keyswitch/shutdown";
/// Set in the environment of a proxy `get` starts in the background: only such a proxy is
/// replaced when a session's network settings differ from its own.
pub const BACKGROUND_MARK: &str = "KEYSWITCH_PROXY_BACKGROUND";

/// What the proxy says about itself at [`HEALTH_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub service: String,
    pub version: String,
    pub pid: u32,
    pub listen: String,
    /// A keyed digest of the network settings the proxy took from its environment
    /// (`upstream::network_fingerprint`), from a proxy keyswitch started in the background.
    /// Empty from one the user runs (`proxy run` under a service manager): its settings are the
    /// user's choice, never overridden by a session's.
    #[serde(default)]
    pub network: String,
    /// Where it forwards keys without an endpoint: a proxy started with other proxy settings
    /// (a damaged proxy.json that a re-install replaced) is replaced too.
    #[serde(default)]
    pub upstream: String,
    /// Whether the proxy can read the keychain (its environment may lack the session's D-Bus):
    /// `get` replaces one that cannot when `get` itself can.
    #[serde(default = "yes")]
    pub keychain: bool,
    /// While the config file on disk does not parse, and the proxy serves from the last config
    /// that did: since when ("since 2026-12-01 10:00:00 UTC"), for `doctor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_problem: Option<String>,
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_health_answer_with_the_old_challenge_field_still_reads() {
        let old = r#"{"service":"keyswitch-proxy","version":"1","pid":2,"listen":"127.0.0.1:1","challenge":"00"}"#;
        let health: Health = serde_json::from_str(old).unwrap();
        assert_eq!(health.pid, 2);
        assert!(health.keychain);
    }
}
