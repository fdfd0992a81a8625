//! TLS to upstreams with the platform's library: native-tls (Security.framework, SChannel, so
//! the user's keychain and certificate store settings) on macOS and Windows, rustls (ring) and
//! the OS trust store everywhere else (Linux, the BSDs). Everywhere plus the CA files Claude
//! Code users behind a TLS-inspecting proxy already set: `SSL_CERT_FILE` and
//! `NODE_EXTRA_CA_CERTS`. ALPN offers HTTP/2, then HTTP/1.1. A failed handshake is a
//! [`TlsFailed`], with what was wrong with the certificate where the library says.

use std::path::PathBuf;

use anyhow::Result;
use hyper_util::rt::TokioIo;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::io::{BoxError, Conn};

/// What was wrong with the peer's certificate, as the TLS library put it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertProblem {
    /// Signed by an authority the trust store does not hold.
    UnknownIssuer,
    NotValidForName,
    Expired,
}

/// The TLS handshake failed: the TLS library refused the peer (its certificate, its protocol),
/// or the peer hung up during the handshake.
#[derive(Debug)]
pub struct TlsFailed {
    pub certificate: Option<CertProblem>,
    source: BoxError,
}

impl std::fmt::Display for TlsFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for TlsFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// The protocols offered to an upstream, in order of preference.
const ALPN: [&str; 2] = ["h2", "http/1.1"];
/// To an https:// proxy, none: the CONNECT (or plain-HTTP request) sent through it is
/// HTTP/1.1, and a proxy that was offered h2 and took it would read that as a broken HTTP/2
/// connection. No ALPN at all, as curl sends to a proxy.
const PROXY_ALPN: [&str; 0] = [];

/// One certificate from a CA file named by the environment.
struct ExtraRoot {
    var: &'static str,
    path: PathBuf,
    /// 1 for the file's first certificate.
    position: usize,
    der: CertificateDer<'static>,
}

impl ExtraRoot {
    /// One certificate the TLS library cannot use (a corporate bundle may hold an odd one) must
    /// not cost the user the others, nor the proxy: it is skipped, and said so.
    fn warn_unusable(&self, why: &dyn std::fmt::Display) {
        crate::messages::warn(format_args!(
            "certificate {} in {}={} cannot be used ({}); skipping it",
            self.position,
            self.var,
            self.path.display(),
            one_line(&why.to_string())
        ));
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The certificates of the CA files the environment names, in order.
fn extra_roots() -> Vec<ExtraRoot> {
    let mut roots = Vec::new();
    for var in ["SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"] {
        let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) else {
            continue;
        };
        let path = PathBuf::from(path);
        let pem = match std::fs::read(&path) {
            Ok(pem) => pem,
            Err(e) => {
                crate::messages::warn(format_args!(
                    "{var}={} cannot be used ({e}); carrying on without it",
                    path.display()
                ));
                continue;
            }
        };
        for (i, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
            match cert {
                Ok(der) => roots.push(ExtraRoot {
                    var,
                    path: path.clone(),
                    position: i + 1,
                    der,
                }),
                Err(e) => crate::messages::warn(format_args!(
                    "certificate {} in {var}={} is not readable PEM ({e:?}); skipping it and what follows",
                    i + 1,
                    path.display()
                )),
            }
        }
    }
    roots
}

#[cfg(not(any(target_os = "macos", windows)))]
mod platform {
    use std::sync::Arc;

    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

    use super::*;

    #[derive(Clone)]
    pub struct Tls {
        upstream: TlsConnector,
        proxy: TlsConnector,
    }

    impl Tls {
        pub fn new() -> Result<Self> {
            let mut roots = RootCertStore::empty();
            // The OS store, or the files SSL_CERT_FILE / SSL_CERT_DIR name instead of it.
            // Certificates it cannot parse are left out, as every TLS client does.
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            for root in extra_roots() {
                if let Err(e) = roots.add(root.der.clone()) {
                    root.warn_unusable(&e);
                }
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let alpn = |list: &[&str]| list.iter().map(|p| p.as_bytes().to_vec()).collect();
            let mut proxy = config.clone();
            proxy.alpn_protocols = alpn(&PROXY_ALPN);
            config.alpn_protocols = alpn(&ALPN);
            Ok(Self {
                upstream: TlsConnector::from(Arc::new(config)),
                proxy: TlsConnector::from(Arc::new(proxy)),
            })
        }

        pub async fn handshake(&self, io: Conn, host: &str) -> Result<Conn, BoxError> {
            connect(&self.upstream, io, host).await
        }

        /// TLS to an https:// proxy itself: no ALPN (see [`PROXY_ALPN`]).
        pub async fn handshake_proxy(&self, io: Conn, host: &str) -> Result<Conn, BoxError> {
            connect(&self.proxy, io, host).await
        }
    }

    async fn connect(tls: &TlsConnector, io: Conn, host: &str) -> Result<Conn, BoxError> {
        let name = rustls::pki_types::ServerName::try_from(host.to_string())?;
        let stream = tls.connect(name, TokioIo::new(io)).await;
        let stream = stream.map_err(handshake_error)?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(Conn::new(TokioIo::new(stream), h2))
    }

    /// rustls's refusal (inside the I/O error tokio-rustls makes of it) or a peer that hung up
    /// mid-handshake is a [`TlsFailed`]; any other I/O error is the network's.
    fn handshake_error(error: std::io::Error) -> BoxError {
        let certificate = match error
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::InvalidCertificate(problem)) => cert_problem(problem),
            Some(_) => None,
            None if error.kind() == std::io::ErrorKind::UnexpectedEof => None,
            None => return error.into(),
        };
        Box::new(TlsFailed {
            certificate,
            source: error.into(),
        })
    }

    fn cert_problem(problem: &rustls::CertificateError) -> Option<CertProblem> {
        use rustls::CertificateError as E;
        match problem {
            E::UnknownIssuer => Some(CertProblem::UnknownIssuer),
            E::NotValidForName | E::NotValidForNameContext { .. } => {
                Some(CertProblem::NotValidForName)
            }
            E::Expired | E::ExpiredContext { .. } => Some(CertProblem::Expired),
            _ => None,
        }
    }
}

#[cfg(any(target_os = "macos", windows))]
mod platform {
    use super::*;

    #[derive(Clone)]
    pub struct Tls {
        upstream: tokio_native_tls::TlsConnector,
        proxy: tokio_native_tls::TlsConnector,
    }

    fn connector(roots: &[&ExtraRoot], alpn: &[&str]) -> Result<native_tls::TlsConnector> {
        let mut builder = native_tls::TlsConnector::builder();
        if !alpn.is_empty() {
            builder.request_alpns(alpn);
        }
        for root in roots {
            builder.add_root_certificate(native_tls::Certificate::from_der(&root.der)?);
        }
        Ok(builder.build()?)
    }

    impl Tls {
        pub fn new() -> Result<Self> {
            let extra = extra_roots();
            let all: Vec<&ExtraRoot> = extra.iter().collect();
            let usable = match connector(&all, &ALPN) {
                Ok(_) => all,
                Err(_) if !extra.is_empty() => {
                    // Find the certificates the platform refuses, alone, and leave them out.
                    extra
                        .iter()
                        .filter(|root| match connector(&[root], &ALPN) {
                            Ok(_) => true,
                            Err(e) => {
                                root.warn_unusable(&e);
                                false
                            }
                        })
                        .collect()
                }
                Err(e) => return Err(e),
            };
            Ok(Self {
                upstream: connector(&usable, &ALPN)?.into(),
                proxy: connector(&usable, &PROXY_ALPN)?.into(),
            })
        }

        pub async fn handshake(&self, io: Conn, host: &str) -> Result<Conn, BoxError> {
            connect(&self.upstream, io, host).await
        }

        /// TLS to an https:// proxy itself: no ALPN (see [`PROXY_ALPN`]).
        pub async fn handshake_proxy(&self, io: Conn, host: &str) -> Result<Conn, BoxError> {
            connect(&self.proxy, io, host).await
        }
    }

    async fn connect(
        tls: &tokio_native_tls::TlsConnector,
        io: Conn,
        host: &str,
    ) -> Result<Conn, BoxError> {
        let stream = tls.connect(host, TokioIo::new(io)).await;
        let stream = stream.map_err(handshake_error)?;
        let h2 = matches!(stream.get_ref().negotiated_alpn(), Ok(Some(p)) if p == b"h2");
        Ok(Conn::new(TokioIo::new(stream), h2))
    }

    /// native-tls's errors are one type for every case: what was wrong with the certificate
    /// is read from the platform's words.
    fn handshake_error(error: native_tls::Error) -> BoxError {
        use super::super::clues::{Clue, clue};
        let certificate = match clue(&error.to_string()) {
            Some(Clue::UnknownIssuer) => Some(CertProblem::UnknownIssuer),
            Some(Clue::NotValidForName) => Some(CertProblem::NotValidForName),
            Some(Clue::Expired) => Some(CertProblem::Expired),
            _ => None,
        };
        Box::new(TlsFailed {
            certificate,
            source: error.into(),
        })
    }
}

pub use platform::Tls;
