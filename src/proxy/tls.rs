//! TLS to upstreams with the platform's library: rustls (ring) and the OS trust store on
//! Linux, native-tls (Security.framework, SChannel, so the user's keychain and certificate store
//! settings) on macOS and Windows. Everywhere plus the CA files Claude Code users behind a
//! TLS-inspecting proxy already set: `SSL_CERT_FILE` and `NODE_EXTRA_CA_CERTS`. ALPN offers
//! HTTP/2, then HTTP/1.1.

use std::path::PathBuf;

use anyhow::Result;
use hyper_util::rt::TokioIo;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::connect::{BoxError, Conn};

/// The protocols offered, in order of preference.
const ALPN: [&str; 2] = ["h2", "http/1.1"];

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
        eprintln!(
            "keyswitch: warning: certificate {} in {}={} cannot be used ({}); skipping it",
            self.position,
            self.var,
            self.path.display(),
            one_line(&why.to_string())
        );
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
                eprintln!(
                    "keyswitch: warning: {var}={} cannot be used ({e}); carrying on without it",
                    path.display()
                );
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
                Err(e) => eprintln!(
                    "keyswitch: warning: certificate {} in {var}={} is not readable PEM ({e:?}); skipping it and what follows",
                    i + 1,
                    path.display()
                ),
            }
        }
    }
    roots
}

#[cfg(target_os = "linux")]
mod platform {
    use std::sync::Arc;

    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

    use super::*;

    #[derive(Clone)]
    pub struct Tls(TlsConnector);

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
            config.alpn_protocols = ALPN.iter().map(|p| p.as_bytes().to_vec()).collect();
            Ok(Self(TlsConnector::from(Arc::new(config))))
        }

        pub async fn handshake(&self, io: Conn, host: &str) -> Result<Conn, BoxError> {
            let name = rustls::pki_types::ServerName::try_from(host.to_string())?;
            let stream = self.0.connect(name, TokioIo::new(io)).await?;
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            Ok(Conn::new(TokioIo::new(stream), h2))
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod platform {
    use super::*;

    #[derive(Clone)]
    pub struct Tls(tokio_native_tls::TlsConnector);

    fn connector(roots: &[&ExtraRoot]) -> Result<native_tls::TlsConnector> {
        let mut builder = native_tls::TlsConnector::builder();
        builder.request_alpns(&ALPN);
        for root in roots {
            builder.add_root_certificate(native_tls::Certificate::from_der(&root.der)?);
        }
        Ok(builder.build()?)
    }

    impl Tls {
        pub fn new() -> Result<Self> {
            let extra = extra_roots();
            let all: Vec<&ExtraRoot> = extra.iter().collect();
            let built = match connector(&all) {
                Ok(built) => built,
                Err(_) if !extra.is_empty() => {
                    // Find the certificates the platform refuses, alone, and leave them out.
                    let usable: Vec<&ExtraRoot> = extra
                        .iter()
                        .filter(|root| match connector(&[root]) {
                            Ok(_) => true,
                            Err(e) => {
                                root.warn_unusable(&e);
                                false
                            }
                        })
                        .collect();
                    connector(&usable)?
                }
                Err(e) => return Err(e),
            };
            Ok(Self(built.into()))
        }

        pub async fn handshake(&self, io: Conn, host: &str) -> Result<Conn, BoxError> {
            let stream = self.0.connect(host, TokioIo::new(io)).await?;
            let h2 = matches!(stream.get_ref().negotiated_alpn(), Ok(Some(p)) if p == b"h2");
            Ok(Conn::new(TokioIo::new(stream), h2))
        }
    }
}

pub use platform::Tls;
