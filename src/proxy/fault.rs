//! Why an upstream could not be used, told apart so the caller knows whether another upstream
//! may help, and said in words that name what to fix.

use std::error::Error;

use hyper::Uri;
use hyper::http::uri::Scheme;
use hyper_util::client::legacy;

use super::connect::{
    CONNECT_TIMEOUT, DnsFailed, ForeignListener, ProxyTls, TcpFailed, TunnelFailed, TunnelRefused,
    UnsupportedProxy, proxies,
};
use super::tls::{CertProblem, TlsFailed};

/// Why an upstream could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Nothing to reach: refused, no such host, connect timeout. Another upstream may work.
    Unreachable(String),
    /// The TLS handshake failed (certificate, protocol): fix the trust settings.
    Tls(String),
    /// The network's proxy settings cannot work as they are (a SOCKS proxy, credentials the
    /// proxy wants or refuses): fix them; trying again will not help.
    Settings(String),
    /// The connection broke after the request went out: it may have been processed.
    Broken(String),
}

impl Fault {
    /// Why sending to `uri` failed: errors while connecting (TCP, the network's proxy, TLS)
    /// reached nothing; any other means the connection broke with the request under way. Told
    /// by the type each connecting stage wrapped its failure in ([`super::connect`]).
    pub fn classify(error: &legacy::Error, uri: &Uri) -> Self {
        if !error.is_connect() {
            return Self::Broken(chain_text(error));
        }
        Self::of_connect(error, uri)
    }

    /// Why opening a connection to `uri` failed, from an error whose causes are the
    /// connector's (a client's connect error, or doctor's wrapper of the connector's own).
    pub fn of_connect(error: &(dyn Error + 'static), uri: &Uri) -> Self {
        let chain = chain_text(error);
        // Only the user can change who listens there: another upstream may answer, and trying
        // this one again will not help.
        if let Some(foreign) = find_source::<ForeignListener>(error) {
            return Self::Settings(foreign.to_string());
        }
        let tls = find_source::<TlsFailed>(error);
        let proxy_tls = find_source::<ProxyTls>(error).is_some();
        if tls.is_some() || proxy_tls {
            // Through a tunnel TLS is still end to end: the certificate is the upstream's (or
            // the inspecting proxy's), so the cure is the same. An https:// proxy's own
            // certificate is named as the proxy's: the upstream was never contacted.
            let cause = tls_cause(tls.and_then(|t| t.certificate), &chain);
            return match proxy_for(uri).filter(|_| proxy_tls) {
                Some(proxy) => Self::Tls(format!(
                    "TLS to the proxy {} (from {}) failed: {cause}",
                    proxy.address, proxy.setting
                )),
                None => Self::Tls(format!("TLS failed: {cause}")),
            };
        }
        // Behind a proxy, everything up to the tunnel is the proxy's doing: name it, or the
        // user hunts for a fault in an upstream that was never contacted.
        let Some(proxy) = proxy_for(uri) else {
            return Self::Unreachable(direct_cause(error, &chain));
        };
        let cause = proxy_cause(&proxy, error, &chain);
        let settings = find_source::<UnsupportedProxy>(error).is_some()
            || tunnel_refusal(error) == Some(TunnelRefused::ProxyAuthRequired);
        if settings {
            Self::Settings(cause)
        } else {
            Self::Unreachable(cause)
        }
    }

    /// Nothing reached the upstream: a key on another upstream may still answer.
    pub fn reached_nothing(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::Tls(_) | Self::Settings(_)
        )
    }

    /// Settings only the user can fix: trying again will not help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Tls(_) | Self::Settings(_))
    }

    pub fn describe(&self) -> &str {
        match self {
            Self::Unreachable(s) | Self::Tls(s) | Self::Settings(s) | Self::Broken(s) => s,
        }
    }
}

fn direct_cause(error: &(dyn Error + 'static), chain: &str) -> String {
    if refused(error) {
        "connection refused".to_string()
    } else if find_source::<DnsFailed>(error).is_some() {
        "DNS lookup failed (no such host, or no DNS server answered)".to_string()
    } else if has_io_kind(error, std::io::ErrorKind::TimedOut) {
        format!("no connection within {}s", CONNECT_TIMEOUT.as_secs())
    } else {
        chain.to_string()
    }
}

/// Whether the TCP connection was refused (nothing listens there).
fn refused(error: &(dyn Error + 'static)) -> bool {
    find_source::<TcpFailed>(error).is_some_and(|tcp| {
        causes(tcp)
            .filter_map(|e| e.downcast_ref::<std::io::Error>())
            .any(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}

/// How the proxy refused the tunnel, if it did.
fn tunnel_refusal(error: &(dyn Error + 'static)) -> Option<TunnelRefused> {
    find_source::<TunnelFailed>(error).and_then(|t| t.refused)
}

/// The proxy a request goes through, as the connector picks it.
struct ProxyUse {
    /// host:port, never the credentials a proxy URL may carry.
    address: String,
    /// Where the setting came from: the variable's name.
    setting: &'static str,
    /// Whether the setting carries credentials for the proxy.
    with_credentials: bool,
}

fn proxy_for(uri: &Uri) -> Option<ProxyUse> {
    let intercept = proxies().intercept(uri)?;
    let proxy = intercept.uri();
    let address = match proxy.port_u16() {
        Some(port) => format!("{}:{port}", proxy.host()?),
        None => proxy.host()?.to_string(),
    };
    let names: [&'static str; 4] = if uri.scheme() == Some(&Scheme::HTTPS) {
        ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
    } else {
        ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
    };
    let setting = names
        .into_iter()
        .find(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
        .unwrap_or("the system's proxy settings");
    Some(ProxyUse {
        address,
        setting,
        with_credentials: intercept.basic_auth().is_some(),
    })
}

fn proxy_cause(proxy: &ProxyUse, error: &(dyn Error + 'static), chain: &str) -> String {
    let ProxyUse {
        address,
        setting,
        with_credentials,
    } = proxy;
    let which = format!("the proxy {address} (from {setting})");
    if let Some(unsupported) = find_source::<UnsupportedProxy>(error) {
        return format!(
            "{which} is a {}:// proxy, and keyswitch speaks only to HTTP proxies: set {setting} to an http:// or https:// proxy, or add this host to NO_PROXY",
            unsupported.scheme
        );
    }
    match tunnel_refusal(error) {
        Some(TunnelRefused::ProxyAuthRequired) if *with_credentials => format!(
            "{which} refused the credentials in {setting} (407): check the user name and password there"
        ),
        Some(TunnelRefused::ProxyAuthRequired) => format!(
            "{which} wants credentials (407): put them in {setting} as http://USER:PASSWORD@{address}"
        ),
        Some(TunnelRefused::Other) => format!(
            "{which} would not open a tunnel to it; if this host is to be reached directly, add it to NO_PROXY"
        ),
        None if refused(error) => {
            format!("{which} refused the connection: is it running, and is {setting} right?")
        }
        None if find_source::<DnsFailed>(error).is_some() => {
            format!("{which}: its host name was not found (DNS): is {setting} right?")
        }
        None if has_io_kind(error, std::io::ErrorKind::TimedOut) => format!(
            "{which} did not answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        ),
        None => format!("through {which}: {chain}"),
    }
}

pub(super) fn tls_cause(certificate: Option<CertProblem>, chain: &str) -> String {
    match certificate {
        Some(CertProblem::UnknownIssuer) => "the certificate is signed by an unknown authority (set SSL_CERT_FILE or NODE_EXTRA_CA_CERTS to your company's CA file)".to_string(),
        Some(CertProblem::NotValidForName) => "the certificate is not valid for this host name".to_string(),
        Some(CertProblem::Expired) => "the certificate has expired".to_string(),
        None => chain.to_string(),
    }
}

/// `error`'s causes, nearest first, without `error` itself (the client's own error says only
/// "client error").
fn causes<'a>(error: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(error.source(), |e: &&(dyn Error + 'static)| (*e).source())
}

/// The first error of type `E` among `error`'s causes: what the stage that failed wrapped.
pub fn find_source<'a, E: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a E> {
    causes(error).find_map(|e| e.downcast_ref::<E>())
}

fn has_io_kind(error: &(dyn Error + 'static), kind: std::io::ErrorKind) -> bool {
    causes(error)
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == kind)
}

/// The error and its causes on one line, without the URL (which the caller names by host).
pub fn chain_text(error: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for text in causes(error).map(|e| e.to_string()) {
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    if parts.is_empty() {
        parts.push("request failed".to_string());
    }
    parts
        .join(": ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
