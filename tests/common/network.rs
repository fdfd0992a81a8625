//! Stand-ins for an enterprise network, all on loopback: a private certificate authority made at
//! test time, an HTTPS upstream whose certificate it signed (HTTP/1.1 only, or offering HTTP/2 by
//! ALPN), and an `HTTPS_PROXY` that tunnels with CONNECT and records where it was asked to go.
#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Channel, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A private CA (as a company's TLS-inspecting proxy has) and a server certificate it signed,
/// by default for `localhost`, `127.0.0.1` and `127.0.0.2`.
pub struct Pki {
    dir: tempfile::TempDir,
    pub ca_pem: String,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

impl Pki {
    pub fn new() -> Self {
        Self::issuing(&["localhost", "127.0.0.1", "127.0.0.2"], false)
    }

    /// A server certificate for `names` only; `expired`: it ran out in 2021.
    pub fn issuing(names: &[&str], expired: bool) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "keyswitch test corporate CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca.self_signed(&ca_key).unwrap();

        let server_key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut server = CertificateParams::new(names).unwrap();
        if expired {
            server.not_before = rcgen::date_time_ymd(2020, 1, 1);
            server.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        server
            .distinguished_name
            .push(DnType::CommonName, "keyswitch test upstream");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = server.signed_by(&server_key, &ca, &ca_key).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let pki = Self {
            dir,
            ca_pem: ca.pem(),
            server_cert: server.der().clone(),
            server_key: server_key.serialize_der(),
        };
        std::fs::write(pki.ca_file(), &pki.ca_pem).unwrap();
        pki
    }

    /// The CA certificate as a PEM file, what `NODE_EXTRA_CA_CERTS`/`SSL_CERT_FILE` point at.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("corporate-ca.pem")
    }

    /// A file of its own under the PKI's folder, for bundles a test writes.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn server_config(&self, alpn: &[&str]) -> ServerConfig {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.server_cert.clone()], key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config
    }
}

/// What the HTTPS stand-in saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    pub path: String,
    /// The credential it carried (`x-api-key`).
    pub key: String,
}

/// An HTTPS upstream on 127.0.0.1 answering every request with a Messages API 200 that names
/// the key it carried, or with server-sent events paced in time.
pub struct TlsUpstream {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TlsUpstream {
    /// Offers HTTP/1.1 only by ALPN, as many corporate gateways do.
    pub fn http1(pki: &Pki) -> Self {
        Self::start(pki, &["http/1.1"])
    }

    /// Offers HTTP/2 first, as the Anthropic API does.
    pub fn http2(pki: &Pki) -> Self {
        Self::start(pki, &["h2", "http/1.1"])
    }

    /// Offers HTTP/2 and answers with `events`, each sent `gap` after the one before.
    pub fn http2_streaming(pki: &Pki, events: Vec<String>, gap: Duration) -> Self {
        Self::serving(pki, &["h2", "http/1.1"], Some(Arc::new((events, gap))))
    }

    /// Offers HTTP/2 and allows one stream at a time on a connection.
    pub fn http2_one_stream_at_a_time(pki: &Pki) -> Self {
        Self::configured(pki, &["h2", "http/1.1"], None, Some(1))
    }

    fn start(pki: &Pki, alpn: &[&str]) -> Self {
        Self::serving(pki, alpn, None)
    }

    fn serving(pki: &Pki, alpn: &[&str], stream: Option<Arc<Stream>>) -> Self {
        Self::configured(pki, alpn, stream, None)
    }

    fn configured(
        pki: &Pki,
        alpn: &[&str],
        stream: Option<Arc<Stream>>,
        max_streams: Option<u32>,
    ) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let port = tls_server(pki, alpn, move |tls| {
            serve_https(tls, seen2.clone(), stream.clone(), max_streams)
        });
        Self { port, seen }
    }

    /// The base URL under a host name the certificate covers.
    pub fn url(&self, host: &str) -> String {
        format!("https://{host}:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Server-sent events and the pause after each.
type Stream = (Vec<String>, Duration);

type TlsConn = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// A TLS server on a loopback port, on a thread and runtime of its own, offering `alpn`: each
/// connection whose handshake completes goes to `handle` on a task of its own (a client that
/// does not trust the certificate hangs up before: it reaches nothing). Returns the port.
fn tls_server<H, F>(pki: &Pki, alpn: &[&str], handle: H) -> u16
where
    H: Fn(TlsConn) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let acceptor = TlsAcceptor::from(Arc::new(pki.server_config(alpn)));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, handle) = (acceptor.clone(), handle.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        handle(tls).await;
                    }
                });
            }
        });
    });
    port
}

/// One connection to the HTTPS upstream: HTTP/1.1 or HTTP/2, as agreed.
async fn serve_https(
    tls: TlsConn,
    seen: Arc<Mutex<Vec<Seen>>>,
    stream: Option<Arc<Stream>>,
    max_streams: Option<u32>,
) {
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let (seen, stream) = (seen.clone(), stream.clone());
        async move {
            let key = request
                .headers()
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            seen.lock().unwrap().push(Seen {
                version: format!("{:?}", request.version()),
                path: request
                    .uri()
                    .path_and_query()
                    .map_or("/".to_string(), |p| p.to_string()),
                key: key.clone(),
            });
            let _ = request.into_body().collect().await;
            if let Some(stream) = stream {
                return Ok(sse(stream));
            }
            let body = format!(
                r#"{{"id":"msg_tls","type":"message","role":"assistant","content":[{{"type":"text","text":"hello from {key}"}}],"stop_reason":"end_turn","usage":{{"input_tokens":1,"output_tokens":3}}}}"#
            );
            let response = hyper::Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)).boxed())
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    });
    let mut server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    server.http2().max_concurrent_streams(max_streams);
    let _ = server.serve_connection(TokioIo::new(tls), service).await;
}

fn sse(stream: Arc<Stream>) -> hyper::Response<BoxBody<Bytes, Infallible>> {
    let (mut sender, body) = Channel::<Bytes, Infallible>::new(1);
    tokio::spawn(async move {
        let (events, gap) = &*stream;
        for event in events {
            if sender.send_data(Bytes::from(event.clone())).await.is_err() {
                return;
            }
            tokio::time::sleep(*gap).await;
        }
    });
    hyper::Response::builder()
        .header("content-type", "text/event-stream")
        .body(body.boxed())
        .unwrap()
}

/// A loopback `HTTPS_PROXY`: answers CONNECT host:port with 200 and then copies bytes both
/// ways, recording each target. Anything but CONNECT gets a 405.
/// An HTTP proxy: CONNECT tunnels, and plain-HTTP requests (which it answers itself, 200,
/// as a proxy forwarding them would pass on the upstream's answer).
pub struct ConnectProxy {
    pub port: u16,
    targets: Arc<Mutex<Vec<String>>>,
    credentials: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    pub fn start() -> Self {
        Self::answering(None)
    }

    /// A proxy that refuses every CONNECT with this status line (e.g. `407 Proxy
    /// Authentication Required`), recording the target all the same.
    pub fn refusing(status_line: &'static str) -> Self {
        Self::answering(Some(status_line))
    }

    fn answering(refusal: Option<&'static str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let credentials = Arc::new(Mutex::new(Vec::new()));
        let (targets2, credentials2) = (targets.clone(), credentials.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (targets, credentials) = (targets2.clone(), credentials2.clone());
                std::thread::spawn(move || tunnel(client, &targets, &credentials, refusal));
            }
        });
        Self {
            port,
            targets,
            credentials,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What each request asked for: `host:port` for a tunnel, the whole URL for plain HTTP.
    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }

    /// The `Proxy-Authorization` of each request that carried one.
    pub fn credentials(&self) -> Vec<String> {
        self.credentials.lock().unwrap().clone()
    }
}

fn tunnel(
    client: TcpStream,
    targets: &Mutex<Vec<String>>,
    credentials: &Mutex<Vec<String>>,
    refusal: Option<&str>,
) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut writer = client;
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut body_length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 {
            return;
        }
        if header.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("proxy-authorization") {
                credentials.lock().unwrap().push(value.trim().to_string());
            }
            if name.eq_ignore_ascii_case("content-length") {
                body_length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "CONNECT" && target.starts_with("http://") {
        targets.lock().unwrap().push(target.to_string());
        let mut body = vec![0; body_length];
        let _ = std::io::Read::read_exact(&mut reader, &mut body);
        let answer = r#"{"answered_by":"the plain-HTTP proxy"}"#;
        let _ = writer.write_all(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            )
            .as_bytes(),
        );
        return;
    }
    if method != "CONNECT" {
        let _ = writer.write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n");
        return;
    }
    targets.lock().unwrap().push(target.to_string());
    if let Some(status) = refusal {
        let _ =
            writer.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes());
        return;
    }
    let Ok(upstream) = TcpStream::connect(target) else {
        let _ = writer.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    if writer
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let mut upstream_writer = upstream.try_clone().unwrap();
    let mut upstream_reader = upstream;
    let client_writer = writer.try_clone().unwrap();
    let upload = std::thread::spawn(move || {
        // The reader may hold bytes the client sent right after the CONNECT head: copy from it.
        let _ = std::io::copy(&mut reader, &mut upstream_writer);
        let _ = upstream_writer.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut upstream_reader, &mut writer);
    let _ = client_writer.shutdown(Shutdown::Write);
    let _ = upload.join();
}

/// An `https://` proxy: TLS to the proxy itself (certificate from `pki`, offering h2 and
/// HTTP/1.1 by ALPN as many proxies do), then CONNECT tunnels. A client that agrees on h2 is
/// hung up on, as a proxy that then speaks HTTP/2 would fail an HTTP/1.1 CONNECT. Records the
/// protocol agreed on each connection (`None`: the client offered none) and each target.
pub struct TlsConnectProxy {
    pub port: u16,
    pub alpn: Arc<Mutex<Vec<Option<String>>>>,
    pub targets: Arc<Mutex<Vec<String>>>,
}

impl TlsConnectProxy {
    pub fn start(pki: &Pki) -> Self {
        let alpn = Arc::new(Mutex::new(Vec::new()));
        let targets = Arc::new(Mutex::new(Vec::new()));
        let (alpn2, targets2) = (alpn.clone(), targets.clone());
        let port = tls_server(pki, &["h2", "http/1.1"], move |tls| {
            let (alpn, targets) = (alpn2.clone(), targets2.clone());
            async move {
                let agreed = tls
                    .get_ref()
                    .1
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).to_string());
                alpn.lock().unwrap().push(agreed.clone());
                if agreed.as_deref() == Some("h2") {
                    return;
                }
                tls_tunnel(tls, &targets).await;
            }
        });
        Self {
            port,
            alpn,
            targets,
        }
    }

    pub fn url(&self, host: &str) -> String {
        format!("https://{host}:{}", self.port)
    }

    pub fn alpn(&self) -> Vec<Option<String>> {
        self.alpn.lock().unwrap().clone()
    }

    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

async fn tls_tunnel(tls: TlsConn, targets: &Mutex<Vec<String>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut client = tokio::io::BufReader::new(tls);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if client.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        if line.trim_end().is_empty() {
            break;
        }
        head.push(line);
    }
    let mut parts = head
        .first()
        .map(|l| l.split_whitespace())
        .into_iter()
        .flatten();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "CONNECT" {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    }
    targets.lock().unwrap().push(target.to_string());
    let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// What the raw HTTP/2 stand-in does that a well-behaved server rarely does.
#[derive(Clone, Copy)]
pub enum H2Trick {
    /// Every other request, the first included, is refused unprocessed: RST_STREAM with
    /// REFUSED_STREAM (what a server at its stream limit, or shedding load, sends).
    RefuseEveryOther,
    /// Each connection answers this many requests; the next one gets a graceful GOAWAY
    /// (NO_ERROR) naming the last answered stream, so that request was not processed (what a
    /// server or load balancer recycling its connections sends).
    GoAwayAfter(usize),
}

/// An HTTPS upstream that speaks HTTP/2 only (by ALPN), written frame by frame so a test can
/// make it refuse streams or go away at a set moment. Answers a Messages API 200.
pub struct RawH2Upstream {
    pub port: u16,
    answered: Arc<std::sync::atomic::AtomicUsize>,
    refused: Arc<std::sync::atomic::AtomicUsize>,
}

impl RawH2Upstream {
    pub fn start(pki: &Pki, trick: H2Trick) -> Self {
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counters: H2Counters = (answered.clone(), refused.clone(), requests);
        let port = tls_server(pki, &["h2"], move |tls| {
            let counters = counters.clone();
            async move {
                let _ = serve_raw_h2(tls, trick, counters).await;
            }
        });
        Self {
            port,
            answered,
            refused,
        }
    }

    pub fn url(&self, host: &str) -> String {
        format!("https://{host}:{}", self.port)
    }

    pub fn answered(&self) -> usize {
        self.answered.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }
}

type H2Counters = (
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<std::sync::atomic::AtomicUsize>,
);

async fn write_frame(
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &[u8],
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    out.write_all(&frame).await?;
    out.flush().await
}

async fn serve_raw_h2(
    tls: TlsConn,
    trick: H2Trick,
    (answered, refused, requests): H2Counters,
) -> std::io::Result<()> {
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::io::AsyncReadExt;
    const DATA: u8 = 0;
    const HEADERS: u8 = 1;
    const RST_STREAM: u8 = 3;
    const SETTINGS: u8 = 4;
    const PING: u8 = 6;
    const GOAWAY: u8 = 7;
    const END_STREAM: u8 = 1;
    const ACK: u8 = 1;
    const END_HEADERS: u8 = 4;
    const REFUSED_STREAM: u32 = 7;
    let (mut input, mut output) = tokio::io::split(tls);
    let mut preface = [0u8; 24];
    input.read_exact(&mut preface).await?;
    write_frame(&mut output, SETTINGS, 0, 0, &[]).await?;
    let mut answered_here = 0;
    let mut last_answered = 0u32;
    let mut gone_away = false;
    loop {
        let mut head = [0u8; 9];
        input.read_exact(&mut head).await?;
        let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0; length];
        input.read_exact(&mut payload).await?;
        match kind {
            SETTINGS if flags & ACK == 0 => write_frame(&mut output, SETTINGS, ACK, 0, &[]).await?,
            PING if flags & ACK == 0 => write_frame(&mut output, PING, ACK, 0, &payload).await?,
            DATA | HEADERS if flags & END_STREAM != 0 && !gone_away => {
                let refuse = match trick {
                    H2Trick::RefuseEveryOther => requests.fetch_add(1, SeqCst) % 2 == 0,
                    H2Trick::GoAwayAfter(_) => false,
                };
                if refuse {
                    refused.fetch_add(1, SeqCst);
                    write_frame(
                        &mut output,
                        RST_STREAM,
                        0,
                        stream,
                        &REFUSED_STREAM.to_be_bytes(),
                    )
                    .await?;
                    continue;
                }
                if let H2Trick::GoAwayAfter(limit) = trick
                    && answered_here == limit
                {
                    // NO_ERROR, and the stream just received is above the last one named.
                    let mut goaway = last_answered.to_be_bytes().to_vec();
                    goaway.extend_from_slice(&0u32.to_be_bytes());
                    write_frame(&mut output, GOAWAY, 0, 0, &goaway).await?;
                    gone_away = true;
                    continue;
                }
                // :status 200 (static table 8), then content-type (static name 31) as a
                // literal without indexing.
                let mut block = vec![0x88, 0x0f, 0x10, 16];
                block.extend_from_slice(b"application/json");
                write_frame(&mut output, HEADERS, END_HEADERS, stream, &block).await?;
                let body = br#"{"id":"msg_h2","type":"message","role":"assistant","content":[{"type":"text","text":"hello over raw h2"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":3}}"#;
                write_frame(&mut output, DATA, END_STREAM, stream, body).await?;
                answered.fetch_add(1, SeqCst);
                answered_here += 1;
                last_answered = stream;
            }
            _ => {}
        }
    }
}
