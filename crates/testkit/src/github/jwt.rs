//! RS256 JWT verification, as GitHub does it for App authentication.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::RsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde_json::Value;
use sha2::Sha256;

/// A decoded, signature-checked JWT.
#[derive(Debug, Clone)]
pub struct Verified {
    pub header: Value,
    pub claims: Value,
}

/// Parses a public key from DER SubjectPublicKeyInfo (what KMS `GetPublicKey` returns).
pub fn public_key(spki_der: &[u8]) -> Result<RsaPublicKey, String> {
    RsaPublicKey::from_public_key_der(spki_der).map_err(|e| format!("not an RSA public key: {e}"))
}

/// Decodes the JWT's claims without checking anything (to find the issuer).
pub fn peek_claims(token: &str) -> Result<Value, String> {
    let mut parts = token.split('.');
    let (_, claims) = (parts.next(), parts.next().ok_or("not a JWT")?);
    decode_json(claims)
}

/// Checks the compact JWT's header (`alg` RS256) and RS256 signature under `key`.
pub fn verify_rs256(key: &RsaPublicKey, token: &str) -> Result<Verified, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts.as_slice() else {
        return Err("a JWT has three dot-separated parts".into());
    };
    let header = decode_json(header_b64)?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(format!("unsupported JWT algorithm {:?}", header.get("alg")));
    }
    let signature = URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| "signature is not base64url")?;
    let signature = Signature::try_from(signature.as_slice()).map_err(|_| "malformed signature")?;
    let signed = format!("{header_b64}.{claims_b64}");
    VerifyingKey::<Sha256>::new(key.clone())
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| "signature does not verify with the App's public key".to_string())?;
    Ok(Verified { header, claims: decode_json(claims_b64)? })
}

fn decode_json(part: &str) -> Result<Value, String> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| "JWT part is not base64url")?;
    serde_json::from_slice(&bytes).map_err(|_| "JWT part is not JSON".to_string())
}
