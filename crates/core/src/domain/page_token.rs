//! Opaque, tamper-evident `nextToken`s: the position in the table, MAC'd by a KMS HMAC key.
//!
//! `v1.<base64url(position JSON)>.<base64url(HMAC-SHA-256)>`. The MAC key never leaves KMS
//! (`GenerateMac` / `VerifyMac`, behind the [`Mac`] port). A malformed, forged or altered token is a `ValidationException`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::Error;
use crate::ports::{Mac, TablePosition};

const PREFIX: &str = "v1.";
/// Domain separation: this key's MACs over page positions mean nothing elsewhere.
const CONTEXT: &[u8] = b"appcreds/installations/nextToken/v1:";

fn refused() -> Error {
    Error::invalid(
        "/nextToken",
        "Value at '/nextToken' failed to satisfy constraint: Member must be a nextToken this API returned \
         (this one is malformed, altered or from elsewhere)",
    )
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
pub async fn encode(mac: &dyn Mac, position: &TablePosition) -> Result<String, Error> {
    let payload = serde_json::to_vec(&Position { a: position.app_id, n: position.node_id.clone() })
        .map_err(|e| Error::internal("encoding a nextToken", e))?;
    let payload_b64 = URL_SAFE_NO_PAD.encode(payload);
    let tag = mac.generate(&signed_message(&payload_b64)).await?;
    Ok(format!("{PREFIX}{payload_b64}.{}", URL_SAFE_NO_PAD.encode(tag)))
}

/// The position a token names, if the token is ours and unaltered.
pub async fn decode(mac: &dyn Mac, token: &str) -> Result<TablePosition, Error> {
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
