//! The network settings the upstream client takes from the environment, as a digest: `get`
//! compares a background proxy's with the session's, and replaces a proxy started elsewhere.
//! Imported by both sides (`control` and the server's health answer), so neither imports the
//! other.

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
/// started in the `background` (which `get` replaces when they differ from the session's),
/// nothing from one the user runs.
pub fn advertised_network(key: &str, background: bool) -> String {
    if background {
        network_fingerprint(key)
    } else {
        String::new()
    }
}

/// This process's network settings as a digest keyed with the access token: a proxy started
/// from another environment (the terminal `install` ran in) is told apart from one with the
/// session's settings, and the health answer, which anyone on the machine may read, shows no
/// value (a proxy URL may carry a password).
pub fn network_fingerprint(key: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    for var in NETWORK_VARS {
        var.hash(&mut hasher);
        std::env::var_os(var).hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}
