//! The TLS trust of every HTTPS client of a function (GitHub's REST API, the Actions OIDC issuer,
//! the AWS SDK): the system's root certificates, read once per process.
//!
//! Reading the system's store and parsing it is most of what building an HTTPS client costs, and a
//! cold start pays it before its first answer: each reqwest client and each SDK client used to
//! read it again, at the cold start. Now the first client that needs the roots reads them, in
//! the first answer, and the others take that read. (Read on a thread of its own as the init
//! ended, the roots came no sooner: that thread slowed the init by as much as it saved.)
//!
//! Which store: `SSL_CERT_FILE` and `SSL_CERT_DIR` when either is set (both when both, as
//! OpenSSL reads them); otherwise the distribution's bundle, the one file its CA tooling
//! (`update-ca-trust`, `update-ca-certificates`) writes every trusted root into, and not also the
//! certificate directory beside it, which holds the same roots again, a file each; only with no
//! bundle, the distribution's certificate directories. It stays the system's store, not roots
//! compiled in, so that a GitHub Enterprise Server behind a private CA is trusted by pointing
//! `SSL_CERT_FILE` at a bundle that holds its CA.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls::RootCertStore;

use crate::error::Error;

/// The system's roots: the store rustls verifies with, and the same certificates as one PEM
/// bundle (for the AWS SDK, which takes its trust as PEM).
struct Roots {
    store: Arc<RootCertStore>,
    pem: Vec<u8>,
}

/// The system's roots, read on first use; or why there are none.
static ROOTS: OnceLock<Result<Roots, String>> = OnceLock::new();

/// Where the roots are read from.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    /// `SSL_CERT_FILE` and `SSL_CERT_DIR`, whichever are set.
    Environment,
    /// The distribution's bundle, alone.
    Bundle(PathBuf),
    /// The platform's default: with no bundle, the distribution's certificate directories.
    Platform,
}

/// The store to read: the environment's when it names one (`environment_set`), else the
/// distribution's `bundle` if there is one, else the platform's default.
fn source(environment_set: bool, bundle: Option<PathBuf>) -> Source {
    match (environment_set, bundle) {
        (true, _) => Source::Environment,
        (false, Some(bundle)) => Source::Bundle(bundle),
        (false, None) => Source::Platform,
    }
}

/// The distribution's bundle, where OpenSSL's conventions put it.
fn distribution_bundle() -> Option<PathBuf> {
    #[cfg(all(unix, not(target_os = "macos")))]
    return openssl_probe::probe().cert_file;
    #[cfg(not(all(unix, not(target_os = "macos"))))]
    None
}

/// The certificates of `found` rustls can use (the others are left out, and said so), and the same
/// as one PEM bundle.
fn parse(found: rustls_native_certs::CertificateResult) -> Roots {
    for error in &found.errors {
        tracing::warn!(%error, "a system root certificate store could not be read");
    }
    let mut store = RootCertStore::empty();
    let mut pem = Vec::new();
    let read = found.certs.len();
    for cert in found.certs {
        let encoded = STANDARD.encode(cert.as_ref());
        if store.add(cert).is_ok() {
            pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
            for line in encoded.as_bytes().chunks(64) {
                pem.extend_from_slice(line);
                pem.push(b'\n');
            }
            pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
        }
    }
    let unparsable = read - store.len();
    if unparsable > 0 {
        tracing::warn!(unparsable, "system root certificates left out: they could not be parsed");
    }
    Roots { store: Arc::new(store), pem }
}

/// The roots of `source`, read by `platform` unless it is the bundle; a bundle none of whose
/// certificates can be used (unreadable, empty or garbage) gives way to `platform` (the
/// certificate directories).
fn read(source: &Source, platform: impl Fn() -> rustls_native_certs::CertificateResult) -> Roots {
    let Source::Bundle(bundle) = source else { return parse(platform()) };
    let roots = parse(rustls_native_certs::load_certs_from_paths(Some(bundle), None));
    if !roots.store.is_empty() {
        return roots;
    }
    tracing::warn!(bundle = %bundle.display(), "no usable root certificate in the bundle: reading the certificate directories");
    parse(platform())
}

/// Reads the system's store.
fn system_roots() -> Result<Roots, String> {
    let started = std::time::Instant::now();
    let environment_set = ["SSL_CERT_FILE", "SSL_CERT_DIR"].iter().any(|v| std::env::var_os(v).is_some());
    let bundle = if environment_set { None } else { distribution_bundle() };
    let source = source(environment_set, bundle);
    let roots = read(&source, rustls_native_certs::load_native_certs);
    if roots.store.is_empty() {
        return Err("no root certificate in the system's store (see SSL_CERT_FILE and SSL_CERT_DIR)".into());
    }
    tracing::debug!(
        ?source,
        certificates = roots.store.len(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "root certificates read"
    );
    Ok(roots)
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
pub fn roots_pem() -> Result<&'static [u8], Error> {
    Ok(&roots()?.pem)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{Source, source};

    #[test]
    fn the_environment_names_the_store_when_it_sets_one() {
        assert_eq!(source(true, Some(PathBuf::from("/etc/ssl/certs/ca-certificates.crt"))), Source::Environment);
        assert_eq!(source(true, None), Source::Environment);
    }

    #[test]
    fn otherwise_the_distributions_bundle_alone_is_read() {
        let bundle = PathBuf::from("/etc/pki/tls/certs/ca-bundle.crt");
        assert_eq!(source(false, Some(bundle.clone())), Source::Bundle(bundle));
        assert_eq!(source(false, None), Source::Platform);
    }

    /// One certificate of this machine's store (the tests that need one certificate).
    fn one_certificate() -> rustls_native_certs::CertificateResult {
        let mut found = rustls_native_certs::load_native_certs();
        found.certs.truncate(1);
        assert_eq!(found.certs.len(), 1, "this machine has no root certificate: {:?}", found.errors);
        found
    }

    /// `text` written to a file of its own, removed when the returned guard drops.
    struct Written(PathBuf);
    impl Written {
        fn new(name: &str, text: &[u8]) -> Written {
            let path = std::env::temp_dir().join(format!("appcreds-roots-{}-{name}", std::process::id()));
            std::fs::write(&path, text).unwrap();
            Written(path)
        }
    }
    impl Drop for Written {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn a_usable_bundle_is_read_alone() {
        let pem = super::parse(one_certificate()).pem;
        let bundle = Written::new("usable.pem", &pem);
        let roots = super::read(&Source::Bundle(bundle.0.clone()), || panic!("the directories were read"));
        assert_eq!((roots.store.len(), roots.pem), (1, pem));
    }

    #[test]
    fn a_bundle_without_a_usable_certificate_gives_way_to_the_directories() {
        // A PEM block that is no certificate, an empty file, and no file at all.
        let garbage =
            Written::new("garbage.pem", b"-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n");
        let empty = Written::new("empty.pem", b"");
        for bundle in [garbage.0.clone(), empty.0.clone(), PathBuf::from("/nonexistent/appcreds/bundle.pem")] {
            let roots = super::read(&Source::Bundle(bundle.clone()), one_certificate);
            assert_eq!(roots.store.len(), 1, "{}", bundle.display());
        }
    }
}
