//! Whether an upstream can be reached, for `doctor`: the connection a request would open (TCP,
//! through the network's proxy where its settings say so, TLS for https), each bounded, and no
//! request sent on it. Failures are said in the words the proxy uses for them ([`Fault`]).

use std::error::Error;
use std::time::Duration;

use hyper::Uri;
use hyper::http::uri::Scheme;
use hyper_util::rt::TokioIo;
use tower_service::Service;

use super::connect::{Connector, proxies};
use super::fault::{Fault, chain_text, tls_cause};
use super::io::{BoxError, Conn};
use super::tls::{Tls, TlsFailed};

/// How the connection went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Connected (and, for https, the TLS handshake done): `via` names the network's proxy the
    /// connection went through, if one did.
    Reached { via: Option<String> },
    /// Why not, in one line.
    Failed(String),
}

/// The TLS settings the proxy uses, for [`reach`]; an error when the TLS library cannot start.
pub fn tls() -> anyhow::Result<Tls> {
    Tls::new()
}

/// Opens a connection to `url` (an http(s) base URL) as the proxy would, within `limit`.
pub async fn reach(tls: Tls, url: &str, limit: Duration) -> Reach {
    let uri: Uri = match url.parse() {
        Ok(uri) => uri,
        Err(e) => return Reach::Failed(format!("not a usable URL ({e})")),
    };
    let (Some(host), https) = (uri.host(), uri.scheme() == Some(&Scheme::HTTPS)) else {
        return Reach::Failed("the URL names no host".to_string());
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if let Some(proxy) = proxies().intercept(&uri) {
        let via = proxy.uri().authority().map(ToString::to_string);
        let mut connector = Connector::new(tls);
        return match tokio::time::timeout(limit, connector.call(uri.clone())).await {
            Ok(Ok(_)) => Reach::Reached { via },
            Ok(Err(e)) => Reach::Failed(
                Fault::of_connect(&Connecting(e), &uri)
                    .describe()
                    .to_string(),
            ),
            Err(_) => Reach::Failed(format!(
                "no connection through the proxy {} within {}s",
                via.unwrap_or_default(),
                limit.as_secs()
            )),
        };
    }
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let started = tokio::time::Instant::now();
    let lookup = tokio::net::lookup_host((host.as_str(), port));
    let addresses: Vec<std::net::SocketAddr> = match tokio::time::timeout(limit, lookup).await {
        Ok(Ok(found)) => found.collect(),
        Ok(Err(e)) => return Reach::Failed(format!("DNS lookup of {host} failed ({e})")),
        Err(_) => {
            return Reach::Failed(format!(
                "no DNS answer for {host} within {}s",
                limit.as_secs()
            ));
        }
    };
    let left = limit.saturating_sub(started.elapsed());
    let tcp = tokio::net::TcpStream::connect(&addresses[..]);
    let tcp = match tokio::time::timeout(left, tcp).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Reach::Failed("connection refused (nothing listens there)".to_string());
        }
        Ok(Err(e)) => return Reach::Failed(format!("no TCP connection ({e})")),
        Err(_) => {
            return Reach::Failed(format!("no TCP connection within {}s", limit.as_secs()));
        }
    };
    if !https {
        return Reach::Reached { via: None };
    }
    let conn = Conn::new(TokioIo::new(tcp), false);
    let left = limit.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, tls.handshake(conn, &host)).await {
        Ok(Ok(_)) => Reach::Reached { via: None },
        Ok(Err(e)) => Reach::Failed(handshake_cause(&*e)),
        Err(_) => Reach::Failed(format!(
            "connected, but no TLS handshake within {}s (is it an http:// server, or a TLS-inspecting firewall that holds the connection?)",
            limit.as_secs()
        )),
    }
}

fn handshake_cause(error: &(dyn Error + Send + Sync + 'static)) -> String {
    let chain = {
        let mut text = error.to_string();
        if let Some(source) = error.source() {
            let more = chain_text(source);
            if !text.contains(&more) {
                text = format!("{text}: {more}");
            }
        }
        text
    };
    let certificate = error
        .downcast_ref::<TlsFailed>()
        .and_then(|t| t.certificate);
    format!("TLS handshake failed: {}", tls_cause(certificate, &chain))
}

/// The connector's error as the cause of another, as [`Fault::of_connect`] reads causes.
#[derive(Debug)]
struct Connecting(BoxError);

impl std::fmt::Display for Connecting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connecting")
    }
}

impl Error for Connecting {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}
