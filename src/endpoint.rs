//! API base URLs: validated when a key is added, and compared after normalising scheme, host,
//! port and trailing slash, so `HTTPS://Proxy.corp:443/` and `https://proxy.corp` are one endpoint.

use crate::error::refuse;

/// A validated, normalised API base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint(String);

impl Endpoint {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let how = "give the API base URL, like https://llm-proxy.example.com";
        let url = url::Url::parse(text.trim())
            .map_err(|e| refuse(format!("'{text}' is not a URL ({e}): {how}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(refuse(format!("'{text}' is not an http(s) URL: {how}")));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(refuse(format!("'{text}' names no host: {how}")));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse(format!(
                "'{text}' carries a user name or password: credentials belong in the keychain, give the URL without them"
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(refuse(format!("'{text}' has a query or fragment: {how}")));
        }
        // `url` already lower-cases scheme and host and drops a default port.
        let mut normal = url.to_string();
        while normal.ends_with('/') {
            normal.pop();
        }
        Ok(Self(normal))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A URL fit for a message: user info and query (where credentials hide) replaced by `***`.
pub fn redact(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) => {
            let hidden = !url.username().is_empty() || url.password().is_some();
            if hidden {
                let _ = url.set_username("***");
                let _ = url.set_password(None);
            }
            if url.query().is_some() {
                url.set_query(Some("***"));
            }
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) if text.contains('@') || text.contains('?') => {
            "(a URL that is not valid)".to_string()
        }
        Err(_) => text.to_string(),
    }
}

/// Where a session sends requests when `ANTHROPIC_BASE_URL` is not set.
pub const PUBLIC_API: &str = "https://api.anthropic.com";

/// The endpoint a Claude Code session is using, from the helper's environment, normalised like
/// [`Endpoint`] (best effort for a value keyswitch would not accept as a key's endpoint).
pub fn session_endpoint(base_url: Option<&str>) -> String {
    match base_url.map(str::trim).filter(|u| !u.is_empty()) {
        Some(url) => Endpoint::parse(url)
            .map(|e| e.0)
            .unwrap_or_else(|_| url.trim_end_matches('/').to_string()),
        None => PUBLIC_API.to_string(),
    }
}

/// Whether a key may be sent to the session's endpoint: a key with an endpoint only there; a key
/// without one (the user's default) only where keyswitch did not point the session at another
/// key's endpoint — unless that is also the user's own default.
pub fn key_belongs(
    key_endpoint: Option<&Endpoint>,
    session: &str,
    managed: &[Endpoint],
    user_default: Option<&str>,
) -> bool {
    match key_endpoint {
        Some(endpoint) => endpoint.as_str() == session,
        None => {
            let default = session_endpoint(user_default);
            default == session || !managed.iter().any(|m| m.as_str() == session)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_belong_only_where_they_were_put() {
        let proxy = Endpoint::parse("https://proxy.corp").unwrap();
        let managed = [proxy.clone()];
        let at_proxy = session_endpoint(Some("HTTPS://proxy.corp/"));
        let public = session_endpoint(None);
        assert!(key_belongs(Some(&proxy), &at_proxy, &managed, None));
        assert!(!key_belongs(Some(&proxy), &public, &managed, None));
        // A default key never goes to the proxy keyswitch pointed the session at...
        assert!(!key_belongs(None, &at_proxy, &managed, None));
        assert!(key_belongs(None, &public, &managed, None));
        // ...unless the proxy is the user's own default too.
        assert!(key_belongs(
            None,
            &at_proxy,
            &managed,
            Some("https://proxy.corp")
        ));
        // The user's own default elsewhere.
        let mine = session_endpoint(Some("http://127.0.0.1:9000"));
        assert!(key_belongs(
            None,
            &mine,
            &managed,
            Some("http://127.0.0.1:9000")
        ));
        assert!(!key_belongs(
            Some(&proxy),
            &mine,
            &managed,
            Some("http://127.0.0.1:9000")
        ));
    }

    #[test]
    fn normalises_scheme_host_port_and_slash() {
        let a = Endpoint::parse("HTTPS://Proxy.Example.com:443/").unwrap();
        let b = Endpoint::parse("https://proxy.example.com").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "https://proxy.example.com");
        let port = Endpoint::parse("http://127.0.0.1:8080/v1/").unwrap();
        assert_eq!(port.as_str(), "http://127.0.0.1:8080/v1");
        assert_ne!(port, Endpoint::parse("http://127.0.0.1:8081/v1").unwrap());
    }

    #[test]
    fn refuses_what_is_not_an_api_base() {
        for bad in [
            "",
            "proxy",
            "ftp://x",
            "https://user:pw@x",
            "https://x/?a=1",
            "file:///etc",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
