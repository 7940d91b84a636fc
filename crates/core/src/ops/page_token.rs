//! Opaque `nextToken`s, bound to their caller: the position in the table, encrypted and
//! authenticated under a key only KMS can derive.
//!
//! `v2.<base64url(salt ‖ nonce ‖ ciphertext ‖ tag)>`: AES-256-GCM of the position (JSON, padded
//! with spaces to a multiple of 128 bytes), with a fresh random 16-byte salt and 96-bit nonce per
//! token. The key is KMS `GenerateMac` (HMAC-SHA-256, behind the [`Mac`] port) of a fixed
//! domain-separation context and the salt: 32 bytes, derived again to decode (one KMS call a
//! token, either way), and zeroed after use; the HMAC key itself never leaves KMS. The additional
//! authenticated data is another fixed context and the caller's ARN, so a token serves only the
//! caller it was given to.
//!
//! A position may be that of a row the caller may not read (a listing that stops at its scan
//! bound continues after the last row it scanned), which is why the caller must not be able to
//! read it. A malformed, altered, truncated, oversized or foreign token, another caller's, and
//! the earlier format (`v1.`, a readable position with a MAC) are all the same
//! `ValidationException`, and whatever is refused on sight (oversized, wrong prefix, not
//! base64url, too short) costs no KMS call.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::ports::{Mac, TablePosition};

const PREFIX: &str = "v2.";
/// Domain separation of the key derivation: these MACs are keys of these tokens, nothing else.
const KEY_CONTEXT: &[u8] = b"appcreds/installations/nextToken/v2/key:";
/// Domain separation of the ciphertexts; the caller's ARN follows it in the AAD.
const AAD_CONTEXT: &[u8] = b"appcreds/installations/nextToken/v2/caller:";
/// Random bytes per token that the key is derived from.
const SALT_LEN: usize = 16;
/// AES-GCM's tag.
const TAG_LEN: usize = 16;
/// The plaintext is padded to a multiple of this, so a token's length tells little of a node ID's.
const PAD_TO: usize = 128;
/// The longest token decoded; anything longer is refused before any KMS call.
const MAX_TOKEN: usize = 2048;

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

/// The AES-256-GCM key of the token with `salt`: the KMS HMAC of the context and the salt.
async fn key(mac: &dyn Mac, salt: &[u8]) -> Result<LessSafeKey, Error> {
    let secret = Zeroizing::new(mac.generate(&[KEY_CONTEXT, salt].concat()).await?);
    let key = UnboundKey::new(&AES_256_GCM, &secret)
        .map_err(|_| Error::internal("deriving a nextToken key", "the MAC is not 32 bytes"))?;
    Ok(LessSafeKey::new(key))
}

fn aad(caller: &str) -> Aad<Vec<u8>> {
    Aad::from([AAD_CONTEXT, caller.as_bytes()].concat())
}

/// The token for `caller` (its ARN) to continue after `position`.
pub async fn encode(mac: &dyn Mac, caller: &str, position: &TablePosition) -> Result<String, Error> {
    let mut sealed = serde_json::to_vec(&Position { a: position.app_id, n: position.node_id.clone() })
        .map_err(|e| Error::internal("encoding a nextToken", e))?;
    // JSON allows trailing whitespace.
    sealed.resize(sealed.len().div_ceil(PAD_TO) * PAD_TO, b' ');
    let mut random = [0u8; SALT_LEN + NONCE_LEN];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| Error::internal("encoding a nextToken", "no random bytes"))?;
    let (salt, nonce) = random.split_at(SALT_LEN);
    let key = key(mac, salt).await?;
    let nonce =
        Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::internal("encoding a nextToken", "nonce"))?;
    key.seal_in_place_append_tag(nonce, aad(caller), &mut sealed)
        .map_err(|_| Error::internal("encoding a nextToken", "sealing failed"))?;
    let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode([&random[..], &sealed].concat()));
    if token.len() > MAX_TOKEN {
        return Err(Error::internal("encoding a nextToken", "the position is too long for a token"));
    }
    Ok(token)
}

/// The position a token names, if it is ours, unaltered, and `caller`'s.
pub async fn decode(mac: &dyn Mac, caller: &str, token: &str) -> Result<TablePosition, Error> {
    if token.len() > MAX_TOKEN {
        return Err(refused());
    }
    let body = token.strip_prefix(PREFIX).ok_or_else(refused)?;
    let mut bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| refused())?;
    if bytes.len() < SALT_LEN + NONCE_LEN + TAG_LEN {
        return Err(refused());
    }
    let (random, sealed) = bytes.split_at_mut(SALT_LEN + NONCE_LEN);
    let (salt, nonce) = random.split_at(SALT_LEN);
    let key = key(mac, salt).await?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
    let plain = key.open_in_place(nonce, aad(caller), sealed).map_err(|_| refused())?;
    let position: Position = serde_json::from_slice(plain).map_err(|_| refused())?;
    Ok(TablePosition { app_id: position.a, node_id: position.n })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use aws_lc_rs::hmac;

    use super::*;

    const CALLER: &str = "arn:aws:sts::123456789012:assumed-role/reader/session-1";

    /// HMAC-SHA-256 with a random key, as KMS would, counting the MACs made.
    struct Hmac {
        key: hmac::Key,
        calls: AtomicUsize,
    }

    impl Hmac {
        fn new() -> Self {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            Self { key: hmac::Key::generate(hmac::HMAC_SHA256, &rng).unwrap(), calls: AtomicUsize::new(0) }
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl Mac for Hmac {
        async fn generate(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(hmac::sign(&self.key, message).as_ref().to_vec())
        }
        async fn verify(&self, message: &[u8], mac: &[u8]) -> Result<bool, Error> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(hmac::verify(&self.key, message, mac).is_ok())
        }
    }

    fn position() -> TablePosition {
        TablePosition { app_id: 4_200_042, node_id: "O_kgDOsecret-org".into() }
    }

    fn is_refusal(result: Result<TablePosition, Error>) -> bool {
        matches!(result, Err(Error::Validation { fields, .. }) if fields[0].path == "/nextToken")
    }

    fn body(token: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(token.strip_prefix(PREFIX).unwrap()).unwrap()
    }

    fn token_of(bytes: &[u8]) -> String {
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    #[tokio::test]
    async fn a_token_round_trips_with_one_mac_each_way_and_hides_its_position() {
        let mac = Hmac::new();
        let token = encode(&mac, CALLER, &position()).await.unwrap();
        assert_eq!(mac.calls(), 1);
        assert_eq!(decode(&mac, CALLER, &token).await.unwrap(), position());
        assert_eq!(mac.calls(), 2);
        assert!(token.starts_with("v2.") && token.len() <= MAX_TOKEN, "{token}");
        let bytes = body(&token);
        assert_eq!(bytes.len(), SALT_LEN + NONCE_LEN + PAD_TO + TAG_LEN, "padded");
        for needle in [&b"secret-org"[..], b"4200042", &4_200_042i64.to_be_bytes(), &4_200_042i64.to_le_bytes()] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle), "the position is not readable");
        }
        let again = encode(&mac, CALLER, &position()).await.unwrap();
        assert_ne!(again, token, "a fresh salt and nonce each time");
        assert_ne!(body(&again)[..SALT_LEN], bytes[..SALT_LEN]);
        assert_ne!(body(&again)[SALT_LEN..SALT_LEN + NONCE_LEN], bytes[SALT_LEN..SALT_LEN + NONCE_LEN]);
        let long = TablePosition { app_id: i64::MAX, node_id: "N".repeat(300) };
        let long_token = encode(&mac, CALLER, &long).await.unwrap();
        assert_eq!(decode(&mac, CALLER, &long_token).await.unwrap(), long);
    }

    /// Every bit of salt, nonce, ciphertext and tag is covered: flipping any one is refused,
    /// and so is every truncation and every extension.
    #[tokio::test]
    async fn an_altered_truncated_or_extended_token_is_refused() {
        let mac = Hmac::new();
        let token = encode(&mac, CALLER, &position()).await.unwrap();
        let bytes = body(&token);
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut altered = bytes.clone();
                altered[i] ^= bit;
                let part = match i {
                    i if i < SALT_LEN => "salt",
                    i if i < SALT_LEN + NONCE_LEN => "nonce",
                    i if i < bytes.len() - TAG_LEN => "ciphertext",
                    _ => "tag",
                };
                assert!(is_refusal(decode(&mac, CALLER, &token_of(&altered)).await), "{part} byte {i} bit {bit:#x}");
            }
        }
        for len in 0..bytes.len() {
            assert!(is_refusal(decode(&mac, CALLER, &token_of(&bytes[..len])).await), "cut to {len} bytes");
        }
        for extra in [&[0u8][..], &[0; 16]] {
            let longer = [&bytes[..], extra].concat();
            assert!(is_refusal(decode(&mac, CALLER, &token_of(&longer)).await), "{} bytes added", extra.len());
        }
        for bad in [format!("{token}="), format!("{token}."), token.replacen("v2.", "v3.", 1), token[3..].to_string()] {
            assert!(is_refusal(decode(&mac, CALLER, &bad).await), "{bad}");
        }
        assert_eq!(decode(&mac, CALLER, &token).await.unwrap(), position());
    }

    #[tokio::test]
    async fn another_callers_token_or_another_keys_is_refused() {
        let mac = Hmac::new();
        let token = encode(&mac, CALLER, &position()).await.unwrap();
        for other in ["arn:aws:sts::123456789012:assumed-role/reader/session-2", "", &CALLER[..CALLER.len() - 1]] {
            assert!(is_refusal(decode(&mac, other, &token).await), "{other}");
        }
        assert!(is_refusal(decode(&Hmac::new(), CALLER, &token).await), "another HMAC key");
        let anonymous = encode(&mac, "", &position()).await.unwrap();
        assert!(is_refusal(decode(&mac, CALLER, &anonymous).await));
        assert_eq!(decode(&mac, "", &anonymous).await.unwrap(), position());
    }

    /// The earlier format, even with a MAC the same key made, and anything oversized, is refused
    /// without a KMS call.
    #[tokio::test]
    async fn v1_tokens_and_oversized_ones_are_refused_without_a_kms_call() {
        let mac = Hmac::new();
        let payload = URL_SAFE_NO_PAD.encode(br#"{"a":4200042,"n":"O_kgDOsecret-org"}"#);
        let tag =
            mac.generate(&[&b"appcreds/installations/nextToken/v1:"[..], payload.as_bytes()].concat()).await.unwrap();
        let v1 = format!("v1.{payload}.{}", URL_SAFE_NO_PAD.encode(tag));
        let token = encode(&mac, CALLER, &position()).await.unwrap();
        let calls = mac.calls();
        let oversized = format!("{token}{}", "A".repeat(MAX_TOKEN));
        for bad in [v1, oversized, format!("v2.{}", "A".repeat(MAX_TOKEN)), "x".repeat(100_000), String::new()] {
            assert!(is_refusal(decode(&mac, CALLER, &bad).await), "{bad:.40}");
        }
        assert_eq!(mac.calls(), calls, "no key derived for a token refused on sight");
    }

    /// A MAC that is not 32 bytes is no AES-256 key: a server error, not a refusal of the caller.
    #[tokio::test]
    async fn a_mac_of_the_wrong_length_is_a_server_error() {
        struct Short;
        #[async_trait]
        impl Mac for Short {
            async fn generate(&self, _: &[u8]) -> Result<Vec<u8>, Error> {
                Ok(vec![7; 20])
            }
            async fn verify(&self, _: &[u8], _: &[u8]) -> Result<bool, Error> {
                Ok(false)
            }
        }
        assert!(matches!(encode(&Short, CALLER, &position()).await, Err(Error::Internal { .. })));
        let token = encode(&Hmac::new(), CALLER, &position()).await.unwrap();
        assert!(matches!(decode(&Short, CALLER, &token).await, Err(Error::Internal { .. })));
    }
}
