//! The AWS SDK's HTTP client, trusting the roots of [`crate::tls`]: the SDK's own hyper client
//! (rustls on aws-lc-rs, as its default), built when the first call needs a connection rather
//! than when each SDK client is made, and without reading the system's store again (the SDK's
//! default reads it once and parses it for every client made, at the cold start).

use std::sync::OnceLock;

use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// The HTTP client for `aws_config::ConfigLoader::http_client`.
pub fn http_client() -> SharedHttpClient {
    SharedHttpClient::new(OnFirstCall(OnceLock::new()))
}

/// The SDK's client, made on the first call that needs a connection.
#[derive(Debug)]
struct OnFirstCall(OnceLock<SharedHttpClient>);

impl HttpClient for OnFirstCall {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        self.0.get_or_init(sdk_client).http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.get_or_init(sdk_client).connector_metadata()
    }
}

/// The SDK's client with the shared roots; if they cannot be read, the SDK's default trust (which
/// reads the system's store itself, and fails the calls if it finds nothing either).
fn sdk_client() -> SharedHttpClient {
    let trust = match crate::tls::roots_pem() {
        Ok(pem) => TrustStore::empty().with_pem_certificate(pem),
        Err(e) => {
            tracing::warn!(error = %e, "the AWS SDK reads the system's root certificates itself");
            TrustStore::default()
        }
    };
    let context = TlsContext::builder().with_trust_store(trust).build().unwrap_or_default();
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https()
}
