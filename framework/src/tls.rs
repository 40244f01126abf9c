//! Serving `https` and `wss` with rustls (cargo feature `tls`): a server
//! configuration read from PEM files, and [`Volley::serve_tls`].
//!
//! rustls runs on the `ring` provider. With your own routes, pass the configuration
//! to [`crate::HttpServer::bind_rustls`] (or, under actix-web's own `HttpServer`, to
//! its `bind_rustls_0_23`); [`rustls`] is re-exported so that the versions agree. Behind a proxy that terminates TLS (nginx, a cloud load
//! balancer) none of this is needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use rustls;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::Volley;

/// Why a TLS configuration could not be built; says which file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error reading it.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("{path}: no certificate in it (expected PEM '-----BEGIN CERTIFICATE-----' blocks, the server's first, then its chain)")]
    NoCertificate {
        /// The certificate file.
        path: PathBuf,
    },
    /// The key file holds no PEM private key.
    #[error("{path}: no private key in it (expected a PEM PKCS #8, PKCS #1 or SEC1 private key)")]
    NoKey {
        /// The key file.
        path: PathBuf,
    },
    /// A PEM file is damaged.
    #[error("{path}: not valid PEM: {detail}")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser found wrong.
        detail: String,
    },
    /// rustls refused the pair (for example the key does not match the certificate).
    #[error("certificate and key refused: {0}")]
    Refused(#[from] rustls::Error),
}

/// A rustls server configuration from a PEM certificate chain (the server's
/// certificate first) and its PEM private key, for HTTP/1.1 (WebSocket included).
///
/// ```no_run
/// use volley::{Namespace, Volley};
///
/// #[actix_web::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let tls = volley::tls::server_config("fullchain.pem", "key.pem")?;
///     let volley = Volley::builder().namespace("/chat", Namespace::new()).build();
///     volley.serve_tls(("0.0.0.0", 443), tls).await?; // https and wss
///     Ok(())
/// }
/// ```
pub fn server_config(
    cert: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<rustls::ServerConfig, TlsError> {
    let (cert, key) = (cert.as_ref(), key.as_ref());
    let bad = |path: &Path, e: pem::Error| TlsError::BadPem {
        path: path.to_owned(),
        detail: e.to_string(),
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let private = match PrivateKeyDer::from_pem_slice(&read(key)?) {
        Ok(private) => private,
        Err(pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                path: key.to_owned(),
            })
        }
        Err(e) => return Err(bad(key, e)),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, private)?)
}

/// The TCP stream under a connection accepted by `bind_rustls_0_23`, for the
/// socket options of [`Volley::on_connect`].
pub(crate) fn tcp_under(conn: &dyn std::any::Any) -> Option<&tokio::net::TcpStream> {
    use actix_tls::accept::rustls_0_23::TlsStream;
    let tls = conn.downcast_ref::<TlsStream<tokio::net::TcpStream>>()?;
    Some(tls.get_ref().0)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

impl Volley {
    /// [`Volley::serve`] over TLS: `https`/`wss` on `addr` until the process is
    /// stopped, with the same settings (`TCP_NODELAY`, the write timeout). Build `tls`
    /// with [`server_config`].
    pub async fn serve_tls(
        self,
        addr: impl std::net::ToSocketAddrs,
        tls: rustls::ServerConfig,
    ) -> std::io::Result<()> {
        self.http_server(actix_web::App::new)
            .bind_rustls(addr, tls)?
            .run()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(name)
    }

    #[test]
    fn the_test_pair_loads_and_mistakes_say_which_file() {
        let (cert, key) = (fixture("cert.pem"), fixture("key.pem"));
        assert!(server_config(&cert, &key).is_ok());
        let missing = fixture("missing.pem");
        let err = server_config(&missing, &key).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot read ") && err.contains("missing.pem"),
            "{err}"
        );
        // Swapped: the key file has no certificate, the certificate file no key.
        let err = server_config(&key, &key).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        let err = server_config(&cert, &cert).unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
        // A key that is not the certificate's.
        let other = fixture("ca.pem");
        assert!(server_config(&other, &key).is_err());
    }
}
