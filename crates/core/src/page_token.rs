//! Opaque, tamper-evident `nextToken`s: the position in the table, MAC'd by a KMS HMAC key.
//!
//! `v1.<base64url(position JSON)>.<base64url(HMAC-SHA-256)>`. The MAC key never leaves KMS
//! (`GenerateMac` / `VerifyMac`). A malformed, forged or altered token is a `ValidationException`.

use std::future::Future;

use aws_sdk_kms::error::SdkError;
use aws_sdk_kms::operation::verify_mac::VerifyMacError;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::MacAlgorithmSpec;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::Error;
use crate::installations::TablePosition;

const PREFIX: &str = "v1.";
/// Domain separation: this key's MACs over page positions mean nothing elsewhere.
const CONTEXT: &[u8] = b"appcreds/installations/nextToken/v1:";

/// Makes and checks MACs.
pub trait Mac: Send + Sync {
    fn generate(&self, message: &[u8]) -> impl Future<Output = Result<Vec<u8>, Error>> + Send;
    /// `Ok(false)` for a MAC that does not verify.
    fn verify(&self, message: &[u8], mac: &[u8]) -> impl Future<Output = Result<bool, Error>> + Send;
}

/// HMAC-SHA-256 with a KMS key (`KeySpec HMAC_256`, `KeyUsage GENERATE_VERIFY_MAC`).
#[derive(Debug, Clone)]
pub struct KmsMac {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsMac {
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Self { client, key_id: key_id.into() }
    }
}

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
            .map_err(|e| Error::internal("KMS GenerateMac", e))?;
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
            Err(e) => Err(Error::internal("KMS VerifyMac", e)),
        }
    }
}

fn refused() -> Error {
    Error::invalid("/nextToken", "is not a nextToken from this API (malformed, altered or from elsewhere)")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Position {
    a: i64,
    n: String,
}

fn signed_message(payload_b64: &str) -> Vec<u8> {
    [CONTEXT, payload_b64.as_bytes()].concat()
}

/// The token for continuing after `position`.
pub async fn encode(mac: &impl Mac, position: &TablePosition) -> Result<String, Error> {
    let payload = serde_json::to_vec(&Position { a: position.app_id, n: position.node_id.clone() })
        .map_err(|e| Error::internal("encoding a nextToken", e))?;
    let payload_b64 = URL_SAFE_NO_PAD.encode(payload);
    let tag = mac.generate(&signed_message(&payload_b64)).await?;
    Ok(format!("{PREFIX}{payload_b64}.{}", URL_SAFE_NO_PAD.encode(tag)))
}

/// The position a token names, if the token is ours and unaltered.
pub async fn decode(mac: &impl Mac, token: &str) -> Result<TablePosition, Error> {
    if token.len() > 2048 {
        return Err(refused());
    }
    let rest = token.strip_prefix(PREFIX).ok_or_else(refused)?;
    let (payload_b64, tag_b64) = rest.split_once('.').ok_or_else(refused)?;
    let tag = URL_SAFE_NO_PAD.decode(tag_b64).map_err(|_| refused())?;
    let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| refused())?;
    let position: Position = serde_json::from_slice(&payload).map_err(|_| refused())?;
    if tag.len() != 32 || !mac.verify(&signed_message(payload_b64), &tag).await? {
        return Err(refused());
    }
    Ok(TablePosition { app_id: position.a, node_id: position.n })
}
