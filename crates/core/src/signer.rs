//! Signing: the [`Signer`] trait and its production implementation on KMS `Sign`.

use std::future::Future;

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::operation::sign::SignError;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};

use crate::error::{Error, KeyProblem};

/// Signs bytes with RSASSA-PKCS1-v1_5 / SHA-256 under a key named by ARN.
pub trait Signer: Send + Sync {
    fn sign(&self, key_id: &str, message: &[u8]) -> impl Future<Output = Result<Vec<u8>, Error>> + Send;
}

/// KMS `Sign` with `MessageType RAW`: KMS hashes the message itself.
#[derive(Debug, Clone)]
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
}

impl KmsSigner {
    pub fn new(client: aws_sdk_kms::Client) -> Self {
        Self { client }
    }
}

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
            .map_err(kms_error)?;
        out.signature.map(Blob::into_inner).ok_or_else(|| Error::internal("KMS Sign", "no signature in the response"))
    }
}

fn kms_error(err: SdkError<SignError>) -> Error {
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
        if matches!(service.code(), Some("ThrottlingException" | "LimitExceededException")) {
            return Error::Throttled { service: "KMS", retry_after_seconds: 1 };
        }
    }
    Error::internal("KMS Sign", err)
}
