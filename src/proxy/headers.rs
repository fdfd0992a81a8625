//! The headers of a forwarded request and of an answer passed back: the token check, the
//! connection's own (hop-by-hop) headers removed, a key's secret put in where the token was,
//! and the Claude Code session a request belongs to.

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

const SESSION_HEADER: &str = "x-claude-code-session-id";
const API_KEY_HEADER: &str = "x-api-key";

/// Whether every credential header the client sent carries the local token (and it sent one).
pub fn authorized(token: &str, headers: &HeaderMap) -> bool {
    let mut seen = false;
    for value in headers.get_all(API_KEY_HEADER) {
        seen = true;
        if !bool::from(value.as_bytes().ct_eq(token.as_bytes())) {
            return false;
        }
    }
    for value in headers.get_all(header::AUTHORIZATION) {
        seen = true;
        let bytes = value.as_bytes();
        let credential = match bytes.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => &bytes[7..],
            _ => return false,
        };
        if !bool::from(credential.ct_eq(token.as_bytes())) {
            return false;
        }
    }
    seen
}

/// Hop-by-hop headers (RFC 9110 7.6.1) are the connection's, not the message's.
/// Names, not text: removing by name skips parsing it again for every request.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the connection's own headers: the hop-by-hop ones and any its `Connection` header
/// names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // A message framed by chunks had any length it also gave overridden (RFC 9112 6.3): passed
    // on, that length would cut the body short or misframe it once the chunking is gone.
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    for name in listed {
        headers.remove(name);
    }
}

/// The client's headers as any upstream gets them, before a key goes in: the connection's own
/// headers and the token gone, and the host and length left to the new request. Made once per
/// request, whichever keys it then goes to.
pub fn forwarded_headers(client: &HeaderMap) -> HeaderMap {
    let mut headers = client.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    // The body is already here in full: the upstream is not to be asked to wait for it.
    headers.remove(header::EXPECT);
    headers.remove(API_KEY_HEADER);
    headers.remove(header::AUTHORIZATION);
    // A 400 is read to tell a spent balance from a bad request, and the proxy decodes no
    // compression: asked for gzip (Claude Code asks for it, and for br and zstd), an upstream
    // that compressed its credit-balance error would send the turn down on the spent key. Answers
    // (output tokens) are small beside the requests, so little is lost on the upstream's link.
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    headers
}

/// The headers for one key: its secret in exactly the credential headers that carried the
/// token. Decided on the client's own headers, so a `Connection` header naming a credential
/// header cannot strip the key and leave the request without one.
pub fn with_secret(forwarded: &HeaderMap, client: &HeaderMap, secret: &str) -> HeaderMap {
    let mut headers = forwarded.clone();
    for (name, value) in [
        (
            HeaderName::from_static(API_KEY_HEADER),
            Zeroizing::new(secret.to_string()),
        ),
        (
            header::AUTHORIZATION,
            Zeroizing::new(format!("Bearer {secret}")),
        ),
    ] {
        if !client.contains_key(&name) {
            continue;
        }
        // A secret that cannot be a header value goes nowhere, and neither does the token.
        if let Ok(mut value) = HeaderValue::from_str(&value) {
            value.set_sensitive(true);
            headers.insert(name, value);
        }
    }
    headers
}

/// The Claude Code session a request comes from, cleaned to what the event log may hold.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(SESSION_HEADER)?.to_str().ok()?;
    let clean: String = value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_token_must_be_in_every_credential_header() {
        let t = "ksp-abc";
        assert!(authorized(t, &map(&[("x-api-key", t)])));
        assert!(authorized(t, &map(&[("authorization", "Bearer ksp-abc")])));
        assert!(authorized(
            t,
            &map(&[("x-api-key", t), ("authorization", "bearer ksp-abc")])
        ));
        assert!(!authorized(t, &map(&[])));
        assert!(!authorized(t, &map(&[("x-api-key", "ksp-abd")])));
        assert!(!authorized(
            t,
            &map(&[("x-api-key", t), ("authorization", "Bearer sk-ant-test-x")])
        ));
        assert!(!authorized(t, &map(&[("authorization", "Basic ksp-abc")])));
        assert!(!authorized(t, &map(&[("x-api-key", "ksp-ab")])));
    }

    fn upstream_headers(client: &HeaderMap, secret: &str) -> HeaderMap {
        with_secret(&forwarded_headers(client), client, secret)
    }

    #[test]
    fn the_secret_replaces_the_token_only_where_it_was() {
        let client = map(&[
            ("x-api-key", "ksp-abc"),
            ("anthropic-version", "2023-06-01"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("host", "127.0.0.1:1"),
            ("content-length", "5"),
            ("te", "trailers"),
        ]);
        let out = upstream_headers(&client, "sk-ant-test-secret");
        assert_eq!(out["x-api-key"], "sk-ant-test-secret");
        assert!(out.get(header::AUTHORIZATION).is_none());
        assert_eq!(out["anthropic-version"], "2023-06-01");
        assert_eq!(out["accept-encoding"], "identity");
        for gone in ["connection", "x-private", "host", "content-length", "te"] {
            assert!(out.get(gone).is_none(), "{gone}");
        }
        // A `Connection` header naming the credential header does not strip the key.
        let sneaky = upstream_headers(
            &map(&[
                ("x-api-key", "ksp-abc"),
                ("connection", "x-api-key"),
                ("expect", "100-continue"),
            ]),
            "sk-ant-test-secret",
        );
        assert_eq!(sneaky["x-api-key"], "sk-ant-test-secret");
        assert!(sneaky.get("expect").is_none());
        let bearer = upstream_headers(
            &map(&[("authorization", "Bearer ksp-abc")]),
            "sk-ant-test-s",
        );
        assert_eq!(bearer[header::AUTHORIZATION], "Bearer sk-ant-test-s");
        assert!(bearer.get("x-api-key").is_none());
    }

    #[test]
    fn session_ids_are_cleaned() {
        let h = map(&[(SESSION_HEADER, "0b1f-<b>\"x")]);
        assert_eq!(session_id(&h).as_deref(), Some("0b1f-bx"));
    }
}
