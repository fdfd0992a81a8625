//! `NO_PROXY` as Claude Code (Node) reads it, for the proxy's loopback address: which entries
//! cover it, the entries `install --proxy` adds, and whether an environment would send a
//! request for it through an `HTTP(S)_PROXY` — the token and the whole conversation would then
//! travel in plain text to that proxy, and keyswitch would never see the request.
//!
//! Matching as `proxy-from-env` and undici's `EnvHttpProxyAgent` do: entries separated by
//! commas or spaces, `*` for every host, `host` for any port, `host:port` for one, and a leading
//! `.` or `*.` for a domain's subdomains; no name resolution, so `localhost` does not cover
//! `127.0.0.1`.

use std::net::SocketAddr;

/// The proxy variables Node takes a proxy for a request from.
pub const PROXY_VARS: [&str; 4] = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"];

/// The two spellings of the bypass list; programs differ on which one wins.
pub const NO_PROXY_VARS: [&str; 2] = ["NO_PROXY", "no_proxy"];

/// The entries of a `NO_PROXY` value, as written.
pub fn entries(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
}

/// The entries `install --proxy` makes sure of: the host for any port, and `host:port` for
/// programs that match only with a port.
pub fn proxy_entries(listen: SocketAddr) -> [String; 2] {
    [listen.ip().to_string(), listen.to_string()]
}

/// Whether `value` sends requests for `addr` around the proxy.
pub fn covers(value: &str, addr: SocketAddr) -> bool {
    let host = addr.ip().to_string();
    entries(value).any(|entry| {
        if entry == "*" {
            return true;
        }
        let (name, port) = split_port(entry);
        if port.is_some_and(|p| p != addr.port()) {
            return false;
        }
        let name = name.trim_start_matches('[').trim_end_matches(']');
        name.eq_ignore_ascii_case(&host)
    })
}

/// `host:port` into its parts; an IPv6 address without brackets has no port.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some((name, port)) = entry.rsplit_once(':')
        && (entry.starts_with('[') || !name.contains(':'))
        && let Ok(port) = port.parse()
    {
        return (name, Some(port));
    }
    (entry, None)
}

/// The proxy variable that would carry a request for `addr` through another proxy, in the
/// environment `var` reads: one that is set, while not every bypass list that is set covers
/// `addr` (or none is set).
pub fn proxied_by(addr: SocketAddr, var: impl Fn(&str) -> Option<String>) -> Option<&'static str> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let proxy = PROXY_VARS.into_iter().find(|name| set(name).is_some())?;
    let lists: Vec<String> = NO_PROXY_VARS.iter().filter_map(|name| set(name)).collect();
    let bypassed = !lists.is_empty() && lists.iter().all(|list| covers(list, addr));
    (!bypassed).then_some(proxy)
}

/// The one-line error for [`proxied_by`]'s answer.
pub fn proxied_problem(proxy_var: &str, addr: SocketAddr) -> String {
    format!(
        "{proxy_var} is set and NO_PROXY/no_proxy do not cover the keyswitch proxy's address {addr}: Claude Code would send the token and the conversation in plain text through that proxy; add {} to NO_PROXY and no_proxy where this environment sets them (a project's settings env, your shell), or run `keyswitch install --proxy` again",
        addr.ip()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:27329".parse().unwrap()
    }

    #[test]
    fn a_list_covers_the_address_by_host_by_host_and_port_or_by_star() {
        for list in [
            "127.0.0.1",
            "corp.example, 127.0.0.1:27329",
            "*",
            "x 127.0.0.1",
        ] {
            assert!(covers(list, addr()), "{list}");
        }
        for list in [
            "",
            "localhost",
            "127.0.0.1:1",
            "127.0.0.10",
            ".0.0.1",
            "corp.example",
        ] {
            assert!(!covers(list, addr()), "{list}");
        }
        let v6: SocketAddr = "[::1]:9000".parse().unwrap();
        assert!(covers("::1", v6));
        assert!(covers("[::1]:9000", v6));
        assert!(!covers("[::1]:9001", v6));
        assert!(proxy_entries(v6).iter().all(|e| covers(e, v6)));
        assert!(proxy_entries(addr()).iter().all(|e| covers(e, addr())));
    }

    #[test]
    fn a_proxy_variable_without_a_covering_bypass_list_is_named() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(proxied_by(addr(), env(&[])), None);
        assert_eq!(
            proxied_by(addr(), env(&[("https_proxy", "http://corp:3128")])),
            Some("https_proxy")
        );
        assert_eq!(
            proxied_by(
                addr(),
                env(&[
                    ("HTTP_PROXY", "http://corp:3128"),
                    ("NO_PROXY", "127.0.0.1")
                ])
            ),
            None
        );
        // Programs differ on which spelling wins: both must cover it.
        assert_eq!(
            proxied_by(
                addr(),
                env(&[
                    ("HTTPS_PROXY", "http://corp:3128"),
                    ("NO_PROXY", "127.0.0.1"),
                    ("no_proxy", "corp.example")
                ])
            ),
            Some("HTTPS_PROXY")
        );
        assert_eq!(
            proxied_by(addr(), env(&[("HTTPS_PROXY", " "), ("NO_PROXY", "")])),
            None
        );
    }
}
