//! Opening a connection to an upstream: TCP, through the network's proxy where its settings
//! say so (a CONNECT tunnel for HTTPS, the proxy itself for plain HTTP), then TLS for HTTPS.
//! The whole of it within [`CONNECT_TIMEOUT`]. hyper-util's client pools what this opens.
//! A plain-HTTP connection that would show a key to another user's loopback listener is
//! refused here ([`ForeignListener`]), once a connection.
//!
//! Each stage wraps its failure in its own type ([`DnsFailed`], [`TcpFailed`],
//! [`TunnelFailed`], [`ProxyTls`], [`UnsupportedProxy`], and [`super::tls::TlsFailed`]), so
//! [`super::fault`] tells them apart by type. The wrappers show their cause's own words: the
//! text of a fault is what it was before it was wrapped.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper::http::uri::Scheme;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiAddrs, GaiResolver, Name};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use tower_service::Service;

use super::clues::{Clue, clue};
use super::io::{BoxError, Conn};
use super::tls::Tls;

type Connecting = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

/// How long a connection (TCP, the proxy's tunnel and TLS together) may take before the
/// upstream counts as down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The network's proxy settings: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY` (either
/// case), else the system's on macOS and Windows. Read once: the proxy process takes the
/// settings of the session that started it.
pub fn proxies() -> &'static Matcher {
    static MATCHER: OnceLock<Matcher> = OnceLock::new();
    MATCHER.get_or_init(Matcher::from_system)
}

/// TCP keep-alive probes on every connection: an upstream or proxy that vanished without a
/// word (a NAT or firewall dropping an idle flow, a laptop changing networks) is found out in
/// about a minute instead of never, so an answer being streamed ends with an error instead of
/// hanging the turn, and a dead pooled connection leaves the pool instead of swallowing the
/// next request.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEPALIVE_RETRIES: u32 = 3;

/// The TCP connector's settings, for any resolver (tests give one of their own).
pub fn configure_tcp<R>(tcp: &mut HttpConnector<R>) {
    // https is this connector's business, not the TCP connector's.
    tcp.enforce_http(false);
    // Requests and answers are written whole; nothing is gained by waiting to coalesce.
    tcp.set_nodelay(true);
    // Shared among a host's addresses: one that never answers leaves time for the next
    // (without it the first address would take the whole of CONNECT_TIMEOUT).
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    tcp.set_keepalive(Some(KEEPALIVE_IDLE));
    tcp.set_keepalive_interval(Some(KEEPALIVE_INTERVAL));
    tcp.set_keepalive_retries(Some(KEEPALIVE_RETRIES));
}

/// A proxy setting with a scheme other than http:// or https:// (SOCKS, say): the connector
/// speaks HTTP CONNECT only, which such a proxy would not understand.
#[derive(Debug)]
pub struct UnsupportedProxy {
    pub scheme: String,
}

impl std::fmt::Display for UnsupportedProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:// proxies are not supported", self.scheme)
    }
}

impl std::error::Error for UnsupportedProxy {}

/// TLS to an https:// proxy itself failed: its certificate, not the upstream's, is the one to
/// look at.
#[derive(Debug)]
pub struct ProxyTls(BoxError);

impl std::fmt::Display for ProxyTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS to the proxy: {}", self.0)
    }
}

impl std::error::Error for ProxyTls {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// The host name of an upstream or proxy could not be resolved.
#[derive(Debug)]
pub struct DnsFailed(std::io::Error);

impl std::fmt::Display for DnsFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DnsFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The system's resolver, its failures marked as DNS failures.
#[derive(Clone)]
pub struct Resolver(GaiResolver);

impl Service<Name> for Resolver {
    type Response = GaiAddrs;
    type Error = DnsFailed;
    type Future = Pin<Box<dyn Future<Output = Result<GaiAddrs, DnsFailed>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), DnsFailed>> {
        self.0.poll_ready(cx).map_err(DnsFailed)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolving = self.0.call(name);
        Box::pin(async move { resolving.await.map_err(DnsFailed) })
    }
}

/// The TCP connection (its host name resolved, then each address tried) failed.
#[derive(Debug)]
pub struct TcpFailed(BoxError);

impl std::fmt::Display for TcpFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TcpFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// How a proxy answered a CONNECT it would not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelRefused {
    /// 407: it wants credentials, or refused the ones given.
    ProxyAuthRequired,
    /// Any other answer that is not a success.
    Other,
}

/// The tunnel through the network's proxy could not be opened: reaching the proxy failed (the
/// cause says how), or the proxy refused the CONNECT.
#[derive(Debug)]
pub struct TunnelFailed {
    pub refused: Option<TunnelRefused>,
    source: BoxError,
}

impl TunnelFailed {
    /// hyper-util's tunnel error is of a private type: what the proxy answered is read from its
    /// words, in [`clue`] and nowhere else.
    fn new(error: impl Into<BoxError>) -> Self {
        let source = error.into();
        let refused = match clue(&source.to_string()) {
            Some(Clue::ProxyAuthRequired) => Some(TunnelRefused::ProxyAuthRequired),
            Some(Clue::TunnelRefused) => Some(TunnelRefused::Other),
            _ => None,
        };
        Self { refused, source }
    }
}

impl std::fmt::Display for TunnelFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for TunnelFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Opens upstream connections for the client's pool.
#[derive(Clone)]
pub struct Connector {
    tcp: HttpConnector<Resolver>,
    tls: Tls,
}

impl Connector {
    pub fn new(tls: Tls) -> Self {
        let mut tcp = HttpConnector::new_with_resolver(Resolver(GaiResolver::new()));
        configure_tcp(&mut tcp);
        Self { tcp, tls }
    }

    async fn connect(self, dst: Uri) -> Result<Conn, BoxError> {
        let https = dst.scheme() == Some(&Scheme::HTTPS);
        let proxy = proxies().intercept(&dst);
        if let Some(proxy) = &proxy {
            let scheme = proxy.uri().scheme_str().unwrap_or_default();
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                return Err(UnsupportedProxy {
                    scheme: scheme.to_ascii_lowercase(),
                }
                .into());
            }
        }
        match proxy {
            // TLS stays end to end: through the tunnel to the upstream itself.
            Some(proxy) if https => {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), Direct(self.clone()));
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                let tunneled = tunnel.call(dst.clone()).await.map_err(TunnelFailed::new)?;
                self.tls.handshake(tunneled, host_of(&dst)?).await
            }
            // Plain HTTP goes to the proxy, which is asked for the whole URL (and sees the key).
            Some(proxy) => {
                let conn = self
                    .direct(proxy.uri().clone(), Peer::PlainHttpProxy)
                    .await?;
                Ok(conn.through_plain_http_proxy())
            }
            None => self.direct(dst, Peer::Upstream).await,
        }
    }

    /// Straight to `dst` (an upstream, or a proxy): TCP, and TLS when it is https.
    async fn direct(&self, dst: Uri, peer: Peer) -> Result<Conn, BoxError> {
        let tcp = self.tcp.clone().call(dst.clone()).await;
        let tcp = tcp.map_err(|e| TcpFailed(e.into()))?;
        let plain = dst.scheme() != Some(&Scheme::HTTPS);
        // Checked once a connection, before any request (so no key) goes on it; the pool
        // then reuses it, so kept-alive requests pay nothing.
        if plain && !matches!(peer, Peer::Proxy) {
            refuse_foreign_loopback_listener(tcp.inner())?;
        }
        let conn = Conn::new(tcp, false);
        if plain {
            return Ok(conn);
        }
        let host = host_of(&dst)?;
        match peer {
            Peer::Upstream => self.tls.handshake(conn, host).await,
            Peer::Proxy | Peer::PlainHttpProxy => {
                let tls = self.tls.handshake_proxy(conn, host).await;
                tls.map_err(|e| ProxyTls(e).into())
            }
        }
    }
}

impl Service<Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        let connecting = self.clone().connect(dst);
        Box::pin(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                Ok(result) => result,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {}s", CONNECT_TIMEOUT.as_secs()),
                )
                .into()),
            }
        })
    }
}

/// Who is at the other end of a connection.
enum Peer {
    Upstream,
    /// A proxy a tunnel goes through: an https:// one is spoken to in HTTP/1.1 (a CONNECT).
    /// What goes through the tunnel is TLS to the upstream, so the key is never in its view.
    Proxy,
    /// A proxy asked for a plain-HTTP URL: it reads the request, key and all.
    PlainHttpProxy,
}

/// A plain-HTTP connection to a loopback port where another user listens: on a shared host
/// that user may have taken a port freed by a stopped proxy or gateway, and would read the key
/// and the prompt. Refused before anything is sent.
#[derive(Debug)]
pub struct ForeignListener {
    pub uid: u32,
    pub addr: std::net::SocketAddr,
}

impl std::fmt::Display for ForeignListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "another user (uid {}) listens on {}, this key's upstream: keyswitch sends no key there in plain HTTP; if it is your gateway, run it as your own user, else point the key at the real API (`keyswitch set NAME --endpoint URL`) or run `keyswitch install --proxy` again from a terminal with ANTHROPIC_BASE_URL set to the real API",
            self.uid, self.addr
        )
    }
}

impl std::error::Error for ForeignListener {}

/// Refuses `tcp` when it reached a loopback listener of another user (see
/// [`crate::port_owner::foreign_listener_uid`]: ours and root's are allowed).
fn refuse_foreign_loopback_listener(tcp: &tokio::net::TcpStream) -> Result<(), ForeignListener> {
    let Ok(addr) = tcp.peer_addr() else {
        return Ok(());
    };
    let ip = match addr.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    };
    if !ip.is_loopback() {
        return Ok(());
    }
    match crate::port_owner::foreign_listener_uid(std::net::SocketAddr::new(ip, addr.port())) {
        Some(uid) => Err(ForeignListener { uid, addr }),
        None => Ok(()),
    }
}

/// The connector without proxies: what reaches the proxy a tunnel goes through.
#[derive(Clone)]
struct Direct(Connector);

impl Service<Uri> for Direct {
    type Response = Conn;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        let connector = self.0.clone();
        Box::pin(async move { connector.direct(dst, Peer::Proxy).await })
    }
}

/// The host to name in TLS: the URL's host, without an IPv6 literal's brackets.
fn host_of(dst: &Uri) -> Result<&str, BoxError> {
    let host = dst.host().ok_or("the URL names no host")?;
    Ok(host.trim_start_matches('[').trim_end_matches(']'))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use hyper_util::client::legacy::connect::dns::Name;

    use super::*;

    /// A resolver that answers every name with these addresses, in this order.
    #[derive(Clone)]
    struct Fixed(Vec<SocketAddr>);

    impl Service<Name> for Fixed {
        type Response = std::vec::IntoIter<SocketAddr>;
        type Error = std::io::Error;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Name) -> Self::Future {
            std::future::ready(Ok(self.0.clone().into_iter()))
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A loopback address whose SYNs go unanswered: a listener with no room in its queue.
    fn blackhole() -> (socket2::Socket, std::net::TcpStream) {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        socket.listen(0).unwrap();
        let address = socket.local_addr().unwrap().as_socket().unwrap();
        // Fills the queue; it is never accepted.
        let filler = std::net::TcpStream::connect(address).unwrap();
        (socket, filler)
    }

    /// An error with a message and a cause, as the client's and hyper-util's are.
    #[derive(Debug)]
    struct Outer(&'static str, Option<BoxError>);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    fn refused() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused")
    }

    #[test]
    fn a_stage_s_wrapper_keeps_its_cause_s_words_and_is_found_by_type() {
        use crate::proxy::fault::{chain_text, find_source};
        let tunnel = |cause: BoxError| {
            Outer(
                "client error (Connect)",
                Some(Box::new(Outer(
                    "tunnel error: failed to create underlying connection",
                    Some(cause),
                ))),
            )
        };
        let bare = tunnel(Box::new(Outer("tcp connect error", Some(refused().into()))));
        let tcp = TcpFailed(Box::new(Outer("tcp connect error", Some(refused().into()))));
        let wrapped = Outer(
            "client error (Connect)",
            Some(Box::new(TunnelFailed::new(Outer(
                "tunnel error: failed to create underlying connection",
                Some(Box::new(tcp)),
            )))),
        );
        assert_eq!(chain_text(&wrapped), chain_text(&bare));
        assert_eq!(
            chain_text(&wrapped),
            "tunnel error: failed to create underlying connection: tcp connect error: Connection refused"
        );
        assert!(find_source::<TcpFailed>(&wrapped).is_some());
        assert_eq!(find_source::<TunnelFailed>(&wrapped).unwrap().refused, None);

        let said = |text| TunnelFailed::new(Outer(text, None)).refused;
        assert_eq!(
            said("tunnel error: proxy authorization required"),
            Some(TunnelRefused::ProxyAuthRequired)
        );
        assert_eq!(
            said("tunnel error: unsuccessful"),
            Some(TunnelRefused::Other)
        );
        assert_eq!(said("tunnel error: unexpected end of file"), None);
    }

    #[test]
    fn a_host_address_that_never_answers_leaves_time_for_the_next() {
        let (dead, _filler) = blackhole();
        let dead = dead.local_addr().unwrap().as_socket().unwrap();
        let alive = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tcp =
            HttpConnector::new_with_resolver(Fixed(vec![dead, alive.local_addr().unwrap()]));
        configure_tcp(&mut tcp);
        let started = Instant::now();
        let connected = runtime().block_on(async {
            tokio::time::timeout(
                CONNECT_TIMEOUT,
                tcp.call("http://upstream.test/".parse().unwrap()),
            )
            .await
        });
        assert!(
            matches!(connected, Ok(Ok(_))),
            "no connection to the second address within {CONNECT_TIMEOUT:?} ({:?})",
            started.elapsed()
        );
    }

    #[test]
    fn connections_send_keep_alive_probes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tcp = HttpConnector::new_with_resolver(Fixed(vec![listener.local_addr().unwrap()]));
        configure_tcp(&mut tcp);
        runtime().block_on(async {
            let io = tcp
                .call("http://upstream.test/".parse().unwrap())
                .await
                .unwrap();
            let socket = socket2::SockRef::from(io.inner());
            assert!(socket.keepalive().unwrap());
            // Windows sets the time but offers no way to read it back.
            #[cfg(unix)]
            assert_eq!(socket.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        });
    }
}
