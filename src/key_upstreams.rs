//! Where each key's requests go: its own endpoint, else the default upstream (in proxy mode
//! the proxy's upstream, in helper mode the base URL sessions have without a key's endpoint).
//! For the messages that name where keyswitch forwards (`doctor`, `proxy status`) and for
//! doctor's check that each upstream answers.

use crate::config::Config;
use crate::endpoint::redact_url;

/// Each key's upstream, in the config's order: (key name, URL as configured).
pub fn of_keys<'a>(config: &'a Config, default: &str) -> Vec<(&'a str, String)> {
    config
        .keys
        .iter()
        .map(|key| {
            let url = key.endpoint_text().unwrap_or(default).to_string();
            (key.name.as_str(), url)
        })
        .collect()
}

/// `primary → https://gw.example/v1, fallback → https://api.anthropic.com` (URLs redacted);
/// with no keys, the default upstream alone.
pub fn describe(config: &Config, default: &str) -> String {
    let each = of_keys(config, default);
    if each.is_empty() {
        return redact_url(default);
    }
    each.iter()
        .map(|(name, url)| format!("{name} → {}", redact_url(url)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The distinct upstreams and the keys that use each, in the order first used.
pub fn grouped(config: &Config, default: &str) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (name, url) in of_keys(config, default) {
        let normal = crate::endpoint::session_endpoint(Some(&url));
        match groups
            .iter_mut()
            .find(|(u, _)| crate::endpoint::session_endpoint(Some(u)) == normal)
        {
            Some((_, names)) => names.push(name.to_string()),
            None => groups.push((url, vec![name.to_string()])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyConfig;

    fn config() -> Config {
        let mut gateway = KeyConfig::new("primary");
        gateway.set_endpoint("https://gw.example/v1".parse().unwrap());
        let mut also = KeyConfig::new("second");
        also.set_endpoint("HTTPS://GW.example/v1/".parse().unwrap());
        Config::with_keys(vec![gateway, KeyConfig::new("fallback"), also])
    }

    #[test]
    fn each_key_is_named_with_its_upstream() {
        assert_eq!(
            describe(&config(), "https://api.anthropic.com"),
            "primary → https://gw.example/v1, fallback → https://api.anthropic.com, second → https://gw.example/v1"
        );
        assert_eq!(
            describe(&Config::default(), "https://api.anthropic.com"),
            "https://api.anthropic.com"
        );
    }

    #[test]
    fn keys_on_one_upstream_are_grouped() {
        let groups = grouped(&config(), "https://api.anthropic.com");
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].1, vec!["primary", "second"]);
        assert_eq!(groups[1].1, vec!["fallback"]);
    }
}
