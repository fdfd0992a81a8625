//! The network settings the upstream client takes from the environment: recorded once, by
//! `install --proxy` (in proxy.json), for every background proxy `get` starts — so sessions
//! with different environments do not replace the proxy in turn — and compared as a digest:
//! `get` replaces a background proxy whose settings are not the recorded ones. Imported by
//! both sides (`control` and the server's health answer), so neither imports the other.

use std::collections::BTreeMap;
use std::ffi::OsString;

use anyhow::Result;

use crate::error::refuse;

/// The environment variables the client takes its network settings from (hyper-util's matcher
/// reads the proxy ones, rustls-native-certs the SSL ones, [`super::tls`] the CA files).
pub const NETWORK_VARS: [&str; 12] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "REQUEST_METHOD",
];

/// What the health answer says of the network settings: their digest from a proxy keyswitch
/// started in the `background` (which `get` replaces when they differ from the recorded ones),
/// nothing from one the user runs.
pub fn advertised_network(key: &str, background: bool) -> String {
    if background {
        network_fingerprint(key)
    } else {
        String::new()
    }
}

/// This process's network settings as a digest keyed with the access token: a proxy started
/// with other settings than the recorded ones is told apart, and the health answer, which
/// anyone on the machine may read, shows no value (a proxy URL may carry a password).
pub fn network_fingerprint(key: &str) -> String {
    fingerprint_of(key, |var| std::env::var_os(var))
}

/// The digest [`network_fingerprint`] gives in a proxy started with `recorded`.
pub fn recorded_fingerprint(key: &str, recorded: &BTreeMap<String, String>) -> String {
    fingerprint_of(key, |var| recorded.get(var).map(OsString::from))
}

fn fingerprint_of(key: &str, value: impl Fn(&str) -> Option<OsString>) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    for var in NETWORK_VARS {
        var.hash(&mut hasher);
        value(var).hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// The network settings to record, as `value` (the session's environment: the settings' env
/// over the installing shell's) has them. A proxy URL with a user name or password is refused
/// rather than written to proxy.json in plain text, where backups and dotfile repositories
/// pick it up; a proxy the user runs under a service manager keeps it in its own environment.
pub fn to_record(value: impl Fn(&str) -> Option<String>) -> Result<BTreeMap<String, String>> {
    let mut recorded = BTreeMap::new();
    for var in NETWORK_VARS {
        let Some(text) = value(var) else { continue };
        if var.to_ascii_lowercase().ends_with("_proxy") && carries_credentials(&text) {
            return Err(refuse(format!(
                "{var} carries a user name or password ({}), which keyswitch will not write into proxy.json, where every background proxy takes its network settings from: install without it and run the proxy yourself with it in its environment (`keyswitch proxy run` under your service manager), or point {var} at a local proxy that adds the credentials",
                crate::endpoint::redact_url(&text)
            )));
        }
        recorded.insert(var.to_string(), text);
    }
    Ok(recorded)
}

/// The variables whose value in `value` differs from the recorded one.
pub fn differing(
    recorded: &BTreeMap<String, String>,
    value: impl Fn(&str) -> Option<String>,
) -> Vec<&'static str> {
    NETWORK_VARS
        .into_iter()
        .filter(|var| value(var).as_ref() != recorded.get(*var))
        .collect()
}

/// Whether a proxy URL (with or without a scheme) has `user@` or `user:password@`.
fn carries_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.contains('@')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_settings_give_the_digest_a_proxy_started_with_them_gives() {
        let recorded =
            BTreeMap::from([("HTTPS_PROXY".to_string(), "http://corp:3128".to_string())]);
        let other = BTreeMap::from([("HTTPS_PROXY".to_string(), "http://other:3128".to_string())]);
        assert_ne!(
            recorded_fingerprint("k", &recorded),
            recorded_fingerprint("k", &other)
        );
        assert_eq!(
            recorded_fingerprint("k", &BTreeMap::new()),
            fingerprint_of("k", |_| None)
        );
    }

    #[test]
    fn a_proxy_url_with_credentials_is_not_recorded() {
        for url in [
            "http://alice:pw@corp:3128",
            "alice@corp:3128",
            "https://a:b@c/",
        ] {
            let e = to_record(|v| (v == "HTTPS_PROXY").then(|| url.to_string())).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains("HTTPS_PROXY") && !text.contains("pw@"),
                "{text}"
            );
        }
        let recorded = to_record(|v| match v {
            "HTTPS_PROXY" => Some("http://corp:3128/".to_string()),
            "NODE_EXTRA_CA_CERTS" => Some("/etc/ca@corp.pem".to_string()),
            _ => None,
        })
        .unwrap();
        assert_eq!(recorded.len(), 2);
        assert_eq!(
            differing(&recorded, |v| recorded.get(v).cloned()),
            Vec::<&str>::new()
        );
        assert_eq!(
            differing(&recorded, |_| None),
            vec!["HTTPS_PROXY", "NODE_EXTRA_CA_CERTS"]
        );
    }
}
