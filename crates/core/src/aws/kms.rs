//! KMS behind three ports: [`KmsSigner`] (`Sign` with an App's RSA key), [`KmsMac`] (HMAC with the
//! page-token key) and [`KmsVault`] (`Encrypt`/`Decrypt`, the rotator's pending secret). No key
//! ever leaves KMS.

use async_trait::async_trait;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::operation::sign::SignError;
use aws_sdk_kms::operation::verify_mac::VerifyMacError;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MacAlgorithmSpec, MessageType, SigningAlgorithmSpec};

use crate::domain::secret::Secret;
use crate::error::{Error, KeyProblem};
use crate::ports::{Mac, Signer, Vault};

/// KMS `Sign` with `MessageType RAW` (KMS hashes the message) and RSASSA_PKCS1_V1_5_SHA_256.
#[derive(Debug, Clone)]
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
}

impl KmsSigner {
    /// A signer on `client`.
    pub fn new(client: aws_sdk_kms::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl Signer for KmsSigner {
    async fn sign(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>, Error> {
        let out = self
            .client
            .sign()
            .key_id(key_id)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::RsassaPkcs1V15Sha256)
            .send()
            .await
            .map_err(sign_error)?;
        out.signature.map(Blob::into_inner).ok_or_else(|| Error::internal("KMS Sign", "no signature in the response"))
    }
}

fn sign_error(err: SdkError<SignError>) -> Error {
    if let Some(service) = err.as_service_error() {
        let problem = match service {
            SignError::NotFoundException(_) => Some(KeyProblem::NotFound),
            SignError::DisabledException(_) => Some(KeyProblem::Disabled),
            SignError::KmsInvalidStateException(_) => Some(KeyProblem::InvalidState),
            SignError::InvalidKeyUsageException(_) => Some(KeyProblem::WrongKeyType),
            _ => match service.code() {
                Some("AccessDeniedException") => Some(KeyProblem::AccessDenied),
                _ => None,
            },
        };
        if let Some(problem) = problem {
            return Error::SigningKey(problem);
        }
    }
    kms_error("KMS Sign", err)
}

/// A KMS failure: throttling is `ThrottlingException` (the caller may retry), the rest internal.
fn kms_error<E>(context: &'static str, err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if matches!(err.as_service_error().and_then(|e| e.code()), Some("ThrottlingException" | "LimitExceededException")) {
        return Error::Throttled { service: "KMS", retry_after_seconds: 1 };
    }
    Error::internal(context, err)
}

/// HMAC-SHA-256 with a KMS key (`KeySpec HMAC_256`, `KeyUsage GENERATE_VERIFY_MAC`).
#[derive(Debug, Clone)]
pub struct KmsMac {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsMac {
    /// MACs with `key_id` on `client`.
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Self { client, key_id: key_id.into() }
    }
}

#[async_trait]
impl Mac for KmsMac {
    async fn generate(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let out = self
            .client
            .generate_mac()
            .key_id(&self.key_id)
            .mac_algorithm(MacAlgorithmSpec::HmacSha256)
            .message(Blob::new(message))
            .send()
            .await
            .map_err(|e| kms_error("KMS GenerateMac", e))?;
        out.mac.map(Blob::into_inner).ok_or_else(|| Error::internal("KMS GenerateMac", "no MAC"))
    }

    async fn verify(&self, message: &[u8], mac: &[u8]) -> Result<bool, Error> {
        let sent = self
            .client
            .verify_mac()
            .key_id(&self.key_id)
            .mac_algorithm(MacAlgorithmSpec::HmacSha256)
            .message(Blob::new(message))
            .mac(Blob::new(mac))
            .send()
            .await;
        match sent {
            Ok(out) => Ok(out.mac_valid),
            Err(SdkError::ServiceError(e)) if matches!(e.err(), VerifyMacError::KmsInvalidMacException(_)) => Ok(false),
            Err(e) => Err(kms_error("KMS VerifyMac", e)),
        }
    }
}

/// KMS `Encrypt`/`Decrypt` with a symmetric key, each bound to an encryption context: the
/// [`Vault`] that keeps the rotator's pending secret between runs. The plaintext is at most
/// 4 KiB (a secret access key is 40 bytes), so no data key is needed.
#[derive(Debug, Clone)]
pub struct KmsVault {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsVault {
    /// Encrypts with `key_id` on `client`.
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Self { client, key_id: key_id.into() }
    }
}

#[async_trait]
impl Vault for KmsVault {
    async fn seal(&self, context: &[(&str, &str)], value: &Secret) -> Result<Vec<u8>, Error> {
        let mut request = self.client.encrypt().key_id(&self.key_id).plaintext(Blob::new(value.expose().as_bytes()));
        for (k, v) in context {
            request = request.encryption_context(*k, *v);
        }
        let out = request.send().await.map_err(|e| kms_error("KMS Encrypt", e))?;
        out.ciphertext_blob.map(Blob::into_inner).ok_or_else(|| Error::internal("KMS Encrypt", "no ciphertext"))
    }

    async fn open(&self, context: &[(&str, &str)], sealed: &[u8]) -> Result<Secret, Error> {
        // The key is named, so a ciphertext of another key is refused, not decrypted.
        let mut request = self.client.decrypt().key_id(&self.key_id).ciphertext_blob(Blob::new(sealed));
        for (k, v) in context {
            request = request.encryption_context(*k, *v);
        }
        let out = request.send().await.map_err(|e| kms_error("KMS Decrypt", e))?;
        let plaintext =
            out.plaintext.map(Blob::into_inner).ok_or_else(|| Error::internal("KMS Decrypt", "no plaintext"))?;
        match String::from_utf8(plaintext) {
            Ok(text) => Ok(Secret::new(text)),
            Err(not_text) => {
                // Not what was sealed, but maybe secret all the same: zeroed before it goes.
                zeroize::Zeroize::zeroize(&mut not_text.into_bytes());
                Err(Error::internal("KMS Decrypt", "not UTF-8"))
            }
        }
    }
}
