//! The TLS trust of every HTTPS client of a function (GitHub's REST API, the Actions OIDC issuer,
//! the AWS SDK): the system's root certificates, read once per process, by the first client that
//! needs them (a function's first AWS call, in its first answer), not at the cold start.
//!
//! Reading the system's store (`SSL_CERT_FILE`, `SSL_CERT_DIR`, else the distribution's bundle and
//! certificate directories) and parsing it is most of what building an HTTPS client costs, and a
//! cold start pays it before its first answer: each reqwest client and each SDK client used to
//! read it again, at the cold start. It stays the system's store, not roots compiled in, so that a
//! GitHub Enterprise Server behind a private CA is trusted by pointing `SSL_CERT_FILE` at a bundle
//! that holds its CA.

use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

use crate::error::Error;

/// The system's roots: the store rustls verifies with, and the certificates it was made from.
struct Roots {
    store: Arc<RootCertStore>,
    certificates: Vec<CertificateDer<'static>>,
}

/// The system's roots, read on first use; or why there are none.
static ROOTS: OnceLock<Result<Roots, String>> = OnceLock::new();

/// Reads the system's store; the certificates rustls cannot parse are left out (and said so).
fn system_roots() -> Result<Roots, String> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "a system root certificate store could not be read");
    }
    let mut store = RootCertStore::empty();
    let read = found.certs.len();
    let mut certificates = Vec::with_capacity(read);
    for cert in found.certs {
        if store.add(cert.clone()).is_ok() {
            certificates.push(cert);
        }
    }
    let unparsable = read - certificates.len();
    if unparsable > 0 {
        tracing::warn!(unparsable, "system root certificates left out: they could not be parsed");
    }
    if store.is_empty() {
        return Err("no root certificate in the system's store (see SSL_CERT_FILE and SSL_CERT_DIR)".into());
    }
    Ok(Roots { store: Arc::new(store), certificates })
}

fn roots() -> Result<&'static Roots, Error> {
    ROOTS
        .get_or_init(system_roots)
        .as_ref()
        .map_err(|why| Error::internal("loading the root certificates", why.clone()))
}

/// A client configuration trusting the system's roots, offering HTTP/2 and HTTP/1.1, for
/// `reqwest::ClientBuilder::tls_backend_preconfigured`. Every call shares the one root store.
pub fn client_config() -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal("configuring TLS", e))?
        .with_root_certificates(roots()?.store.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The system's roots as one PEM bundle, for a client that takes its trust as PEM (the AWS SDK's):
/// only the certificates rustls parsed, so that such a client parses every one.
pub fn roots_pem() -> Result<Vec<u8>, Error> {
    let mut pem = Vec::new();
    for cert in &roots()?.certificates {
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in STANDARD.encode(cert.as_ref()).as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    Ok(pem)
}
