//! Base URLs that name this machine over plain HTTP — the only kind of address a keyswitch
//! proxy has: telling them apart, and the socket address they name.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The socket address of `url` when it is a plain-`http://` URL on this machine
/// (`127.0.0.0/8`, `::1`, `localhost`, the unspecified address, which reaches it too, or an
/// IPv4-mapped one of those).
pub fn plain_http_loopback(url: &str) -> Option<SocketAddr> {
    let url = url::Url::parse(url.trim()).ok()?;
    if url.scheme() != "http" {
        return None;
    }
    let ip = match url.host()? {
        url::Host::Domain(d) if is_localhost(d) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        url::Host::Domain(_) => return None,
        url::Host::Ipv4(ip) => IpAddr::V4(ip),
        // `[::ffff:127.0.0.1]` reaches 127.0.0.1 (on a dual-stack socket): the same address.
        url::Host::Ipv6(ip) => ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4),
    };
    (ip.is_loopback() || ip.is_unspecified())
        .then(|| SocketAddr::new(ip, url.port_or_known_default().unwrap_or(80)))
}

/// `localhost` and its subdomains, which resolvers answer with the loopback address.
fn is_localhost(domain: &str) -> bool {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    domain == "localhost" || domain.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_on_this_machine_is_a_loopback_address() {
        for (url, addr) in [
            ("http://127.0.0.1:27329", "127.0.0.1:27329"),
            ("http://localhost:9000/", "127.0.0.1:9000"),
            ("http://LOCALHOST.:9000/x", "127.0.0.1:9000"),
            ("http://[::1]:9000", "[::1]:9000"),
            ("http://127.1.2.3", "127.1.2.3:80"),
            ("http://0.0.0.0:9000", "0.0.0.0:9000"),
            ("http://[::ffff:127.0.0.1]:9000", "127.0.0.1:9000"),
        ] {
            assert_eq!(
                plain_http_loopback(url),
                Some(addr.parse().unwrap()),
                "{url}"
            );
        }
        for url in [
            "https://127.0.0.1:9000",
            "http://gw.example:9000",
            "http://192.168.1.2:9000",
            "not a url",
        ] {
            assert_eq!(plain_http_loopback(url), None, "{url}");
        }
    }
}
