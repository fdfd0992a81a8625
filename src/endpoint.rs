//! API base URLs: validated when a key is added, and compared after normalising scheme, host,
//! port and trailing slash, so `HTTPS://Proxy.corp:443/` and `https://proxy.corp` are one endpoint.

use crate::error::refuse;

/// A validated, normalised API base URL, parsed once: comparing two is comparing text, and
/// joining a request path onto one parses nothing again.
#[derive(Debug, Clone)]
pub struct Endpoint {
    normal: String,
    url: url::Url,
    /// The URL's scheme and authority as a request URI wants them, and its path without the
    /// trailing slash: what [`Endpoint::join`] puts a request's path after.
    scheme: hyper::http::uri::Scheme,
    authority: hyper::http::uri::Authority,
    prefix: String,
}

impl PartialEq for Endpoint {
    fn eq(&self, other: &Self) -> bool {
        self.normal == other.normal
    }
}

impl Eq for Endpoint {}

impl Endpoint {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let how = "give the API base URL, like https://llm-proxy.example.com";
        // Messages show the URL redacted: it may carry a password or a token.
        let shown = redact_url(text);
        let url = url::Url::parse(text.trim())
            .map_err(|e| refuse(format!("'{shown}' is not a URL ({e}): {how}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(refuse(format!("'{shown}' is not an http(s) URL: {how}")));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(refuse(format!("'{shown}' names no host: {how}")));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse(format!(
                "'{shown}' carries a user name or password: credentials belong in the keychain, give the URL without them"
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(refuse(format!("'{shown}' has a query or fragment: {how}")));
        }
        // `url` already lower-cases scheme and host and drops a default port.
        let mut normal = url.to_string();
        while normal.ends_with('/') {
            normal.pop();
        }
        // The parts of the URL as `url` wrote them (the host in ASCII, the path percent-encoded),
        // which a request URI then takes as they are.
        let uri: hyper::Uri = url
            .as_str()
            .parse()
            .map_err(|e| refuse(format!("'{shown}' is not a usable URL ({e}): {how}")))?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return Err(refuse(format!("'{shown}' names no host: {how}")));
        };
        let prefix = url.path().trim_end_matches('/').to_string();
        Ok(Self {
            normal,
            url,
            scheme,
            authority,
            prefix,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.normal
    }

    /// `host` or `host:port`, for messages that name where a request went.
    pub fn host_and_port(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        }
    }

    /// `https://host/prefix` + `/v1/messages?beta=true`: the URL that parsing the two joined as
    /// text gives, without parsing the endpoint again. `None` only for a path that makes no URI.
    pub fn join(&self, path_and_query: &str) -> Option<hyper::Uri> {
        if path_and_query.bytes().all(taken_as_is) && !has_dot_segment(path_and_query) {
            // The common case (`/v1/messages?beta=true`): nothing in it that a URL parser would
            // encode, so the parts parsed once go together without parsing a URL again.
            return hyper::Uri::builder()
                .scheme(self.scheme.clone())
                .authority(self.authority.clone())
                .path_and_query(format!("{}{path_and_query}", self.prefix))
                .build()
                .ok();
        }
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let mut url = self.url.clone();
        url.set_path(&format!("{}{path}", self.url.path().trim_end_matches('/')));
        url.set_query(query);
        url.as_str().parse().ok()
    }
}

/// A byte a URL parser keeps as it is in a path and in a query (RFC 3986 unreserved, the
/// sub-delims but `'`, which a query of an http(s) URL has encoded, and `:@/?%`): a path of only
/// these joins onto an endpoint the same whichever way it is joined.
fn taken_as_is(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&()*+,;=:@/?%".contains(&byte)
}

/// Whether the path (before any `?`) has a `.` or `..` segment, however written: a URL parser
/// resolves those.
fn has_dot_segment(path_and_query: &str) -> bool {
    let path = path_and_query.split('?').next().unwrap_or_default();
    path.split('/').any(|segment| {
        matches!(
            segment.to_ascii_lowercase().as_str(),
            "." | ".." | "%2e" | ".%2e" | "%2e." | "%2e%2e"
        )
    })
}

impl std::str::FromStr for Endpoint {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        Self::parse(text)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.normal)
    }
}

/// A URL as it may be shown in a message or a log: user info, query and fragment replaced by
/// `***`, and then as [`crate::messages::as_typed`] shows what the user typed (cut, control
/// characters escaped). Works on text, so a value that is not a valid URL is redacted too.
pub fn redact_url(text: &str) -> String {
    crate::messages::as_typed(&redacted(text.trim()))
}

fn redacted(text: &str) -> String {
    let (rest, tail) = match text.find(['?', '#']) {
        Some(i) => (&text[..i], format!("{}***", &text[i..=i])),
        None => (text, String::new()),
    };
    let authority_start = rest.find("://").map_or(0, |i| i + 3);
    let authority_end = rest[authority_start..]
        .find('/')
        .map_or(rest.len(), |i| authority_start + i);
    let authority = &rest[authority_start..authority_end];
    match authority.rfind('@') {
        Some(at) => format!(
            "{}***@{}{}{tail}",
            &rest[..authority_start],
            &authority[at + 1..],
            &rest[authority_end..]
        ),
        None => format!("{rest}{tail}"),
    }
}

/// Where a session sends requests when `ANTHROPIC_BASE_URL` is not set.
pub const PUBLIC_API: &str = "https://api.anthropic.com";

/// The endpoint a Claude Code session is using, from the helper's environment, normalised like
/// [`Endpoint`] (best effort for a value keyswitch would not accept as a key's endpoint).
pub fn session_endpoint(base_url: Option<&str>) -> String {
    match base_url.map(str::trim).filter(|u| !u.is_empty()) {
        Some(url) => Endpoint::parse(url)
            .map(|e| e.normal)
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
    fn a_long_or_unprintable_url_is_shown_cut_and_escaped() {
        let long = format!("https://host.example/{}", "a".repeat(100_000));
        let shown = redact_url(&long);
        assert!(shown.starts_with("https://host.example/aaa"), "{shown}");
        assert!(shown.chars().count() < 260, "{}", shown.len());
        assert!(shown.ends_with("… (99821 more characters)"), "{shown}");
        assert_eq!(
            redact_url("https://a\u{1b}[31mb\n.example"),
            "https://a\\u{1b}[31mb\\n.example"
        );
        let refused = format!("ftp://host.example/{}", "a".repeat(100_000));
        let message = Endpoint::parse(&refused).unwrap_err().to_string();
        assert!(message.len() < 400, "{}", message.len());
        assert!(message.contains("not an http(s) URL"), "{message}");
    }

    #[test]
    fn credentials_and_queries_are_never_echoed() {
        for (text, shown) in [
            (
                "https://user:pw@host.example/v1?token=abc#frag",
                "https://***@host.example/v1?***",
            ),
            (
                "https://host.example/?token=abc",
                "https://host.example/?***",
            ),
            ("http://a@b:pw@host:8080/x", "http://***@host:8080/x"),
            ("user:pw@host", "***@host"),
            ("https://host.example/path", "https://host.example/path"),
            ("ftp://u:secret@x", "ftp://***@x"),
        ] {
            assert_eq!(redact_url(text), shown);
        }
        for bad in [
            "https://user:hunter2@x",
            "https://x/?token=hunter2",
            "ftp://u:hunter2@x",
            "https://u:hunter2@",
            "not a url hunter2@x?k=hunter2",
        ] {
            let message = Endpoint::parse(bad).unwrap_err().to_string();
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn a_joined_url_is_the_url_of_the_joined_text() {
        for upstream in [
            "https://api.anthropic.com",
            "https://proxy.corp/anthropic/",
            "https://proxy.corp/anthropic",
            "http://127.0.0.1:9",
            "https://bücher.example:8443/a%20b/",
        ] {
            let endpoint = Endpoint::parse(upstream).unwrap();
            for path_and_query in [
                "/",
                "/v1/messages?beta=true",
                "/v1/messages?",
                "/v1/messages/count_tokens?beta=true&x=%2F",
                "/v1/a%20b/c?q=1?2",
                "/v1/~user/é",
                "/v1/a b/\"c\"?x=<y>",
                "/v1/messages?beta=true&q=%7B'",
            ] {
                let text = format!("{}{path_and_query}", upstream.trim_end_matches('/'));
                let expected: hyper::Uri =
                    url::Url::parse(&text).unwrap().as_str().parse().unwrap();
                assert_eq!(
                    endpoint.join(path_and_query).as_ref(),
                    Some(&expected),
                    "{upstream} + {path_and_query}"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn the_quick_join_gives_the_url_parsers_result(path in "/[!-~]{0,40}") {
            let endpoint = Endpoint::parse("https://proxy.corp/anthropic/").unwrap();
            let text = format!("https://proxy.corp/anthropic{path}");
            let expected = url::Url::parse(&text).ok().and_then(|u| u.as_str().parse::<hyper::Uri>().ok());
            // Only a path a request can carry: one hyper parses.
            if path.parse::<hyper::http::uri::PathAndQuery>().is_ok() && !path.contains('#') {
                proptest::prop_assert_eq!(endpoint.join(&path), expected);
            }
        }
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
