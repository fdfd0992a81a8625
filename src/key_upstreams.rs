//! Where the proxy sends each key's requests, in words: a key's own endpoint, else the proxy's
//! upstream. "Forwards to https://api.anthropic.com" is untrue — and alarming where that host is
//! blocked — when every key has an endpoint of its own.

use crate::config::Config;
use crate::endpoint::redact_url;

/// "https://gw.example/v1 (primary, fallback)", or with several upstreams
/// "https://a.example (primary) and https://api.anthropic.com (fallback)"; just the proxy's
/// upstream when no key is configured yet.
pub fn in_words(config: &Config, proxy_upstream: &str) -> String {
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for key in &config.keys {
        let upstream = key
            .endpoint()
            .map_or_else(|| redact_url(proxy_upstream), |e| redact_url(e.as_str()));
        match groups.iter_mut().find(|(u, _)| *u == upstream) {
            Some((_, names)) => names.push(&key.name),
            None => groups.push((upstream, vec![&key.name])),
        }
    }
    if groups.is_empty() {
        return redact_url(proxy_upstream);
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(upstream, names)| format!("{upstream} ({})", names.join(", ")))
        .collect();
    match parts.as_slice() {
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
        [] => unreachable!("groups is not empty"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).unwrap()
    }

    #[test]
    fn keys_without_an_endpoint_go_to_the_proxys_upstream() {
        let c = config(r#"{"keys": [{"name": "primary"}, {"name": "fallback"}]}"#);
        assert_eq!(
            in_words(&c, "https://api.anthropic.com"),
            "https://api.anthropic.com (primary, fallback)"
        );
    }

    #[test]
    fn each_upstream_is_named_with_its_keys_in_order() {
        let c = config(
            r#"{"keys": [{"name": "primary", "endpoint": "https://gw.example/v1"},
                         {"name": "fallback"},
                         {"name": "third", "endpoint": "https://gw.example/v1"}]}"#,
        );
        assert_eq!(
            in_words(&c, "https://api.anthropic.com"),
            "https://gw.example/v1 (primary, third) and https://api.anthropic.com (fallback)"
        );
    }

    #[test]
    fn with_no_keys_it_is_the_proxys_upstream() {
        let c = config(r#"{"keys": []}"#);
        assert_eq!(
            in_words(&c, "https://api.anthropic.com"),
            "https://api.anthropic.com"
        );
    }
}
