//! Installation tokens in GitHub's two formats, as the double mints and checks them.
//!
//! - **Classic** (stateful, opaque): `ghs_` and 36 ASCII letters and digits, 40 characters. GitHub
//!   looks it up in its own store.
//! - **Stateless** (GitHub's rollout from April 2026, all Apps from May 2026): `ghs_<APPID>_<JWT>`,
//!   a JWT signed by a GitHub-internal issuer, about 520 characters, with two dots; its length varies
//!   with what it carries. Its segments are base64url, so besides letters and digits it holds `_`
//!   and `-`. GitHub checks the signature and expiry, and keeps a list of revoked tokens.
//!
//! `X-GitHub-Stateless-S2S-Token: enabled|disabled` on the mint forces one format or the other; any
//! other value, or none, leaves it to the rollout: here [`TokenFormat::Stateless`], unless a test set
//! the double's default with [`super::GitHubDouble::set_token_format`]. Callers must treat both as
//! opaque strings; only the double and the tests that check its shapes look inside.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::rand_core::{OsRng, RngCore};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The request header that forces a token format on `POST /app/installations/{id}/access_tokens`.
pub const STATELESS_HEADER: &str = "x-github-stateless-s2s-token";

/// The format of an installation token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenFormat {
    /// `ghs_` and 36 letters and digits.
    Classic,
    /// `ghs_<APPID>_<JWT>`: GitHub's default since its 2026 rollout.
    #[default]
    Stateless,
}

impl TokenFormat {
    /// What the request's `X-GitHub-Stateless-S2S-Token` asks for: `enabled` and `disabled` only;
    /// any other value is ignored, as GitHub ignores it.
    pub fn requested(headers: &HeaderMap) -> Option<TokenFormat> {
        match headers.get(STATELESS_HEADER).and_then(|v| v.to_str().ok()) {
            Some("enabled") => Some(TokenFormat::Stateless),
            Some("disabled") => Some(TokenFormat::Classic),
            _ => None,
        }
    }

    /// The format `token` has, judged strictly by its shape (for tests): `None` for anything that
    /// is neither exactly a classic token nor exactly a stateless one.
    pub fn of(token: &str) -> Option<TokenFormat> {
        let rest = token.strip_prefix("ghs_")?;
        if rest.len() == 36 && rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Some(TokenFormat::Classic);
        }
        let (app_id, jwt) = rest.split_once('_')?;
        let segment = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let parts: Vec<&str> = jwt.split('.').collect();
        let well_formed = !app_id.is_empty()
            && app_id.bytes().all(|b| b.is_ascii_digit())
            && parts.len() == 3
            && parts.iter().all(|p| segment(p));
        well_formed.then_some(TokenFormat::Stateless)
    }
}

/// The claims of a stateless token (for tests that check what the double put in it). `None` if
/// `token` is not one.
pub fn stateless_claims(token: &str) -> Option<Value> {
    if TokenFormat::of(token) != Some(TokenFormat::Stateless) {
        return None;
    }
    let claims = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()
}

/// What a stateless token is minted for.
pub(super) struct Grant<'a> {
    pub app_id: i64,
    pub installation_id: i64,
    pub expires_at: i64,
    pub permissions: &'a BTreeMap<String, String>,
    /// `None`: all of the installation's repositories.
    pub repositories: Option<&'a [String]>,
}

/// The double's token issuer: a counter for classic tokens and a signing key for stateless ones.
pub(super) struct Minter {
    key: [u8; 32],
    next: u64,
}

impl Default for Minter {
    fn default() -> Self {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        Minter { key, next: 0 }
    }
}

impl Minter {
    /// A new token of `format` for `grant`.
    pub(super) fn mint(&mut self, format: TokenFormat, grant: &Grant<'_>) -> String {
        self.next += 1;
        match format {
            // 36 random letters (both cases) and digits after the prefix, as GitHub's.
            TokenFormat::Classic => {
                const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
                let mut random = [0u8; 36];
                OsRng.fill_bytes(&mut random);
                let body: String = random.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
                format!("ghs_{body}")
            }
            TokenFormat::Stateless => self.stateless(grant),
        }
    }

    fn stateless(&self, grant: &Grant<'_>) -> String {
        let mut jti = [0u8; 16];
        OsRng.fill_bytes(&mut jti);
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": "appcreds-github-double"});
        let issued_at = grant.expires_at - 3600;
        let claims = json!({
            "iss": "https://api.github.com/appcreds-github-double",
            "aud": "api.github.com",
            "sub": format!("installation:{}", grant.installation_id),
            "app_id": grant.app_id,
            "installation_id": grant.installation_id,
            "permissions": grant.permissions,
            "repository_selection": if grant.repositories.is_some() { "selected" } else { "all" },
            "repositories": grant.repositories,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": grant.expires_at,
            "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "seq": self.next,
        });
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(&self.key, input.as_bytes()));
        format!("ghs_{}_{input}.{signature}", grant.app_id)
    }

    /// Whether a stateless token is one this double signed, for the App its prefix names, and
    /// unexpired at `now`; as GitHub checks one before it looks at its revocation list.
    pub(super) fn verify_stateless(&self, token: &str, now: i64) -> bool {
        let Some(rest) = token.strip_prefix("ghs_") else { return false };
        let Some((app_id, jwt)) = rest.split_once('_') else { return false };
        let Some((input, signature)) = jwt.rsplit_once('.') else { return false };
        let expected = URL_SAFE_NO_PAD.encode(hmac_sha256(&self.key, input.as_bytes()));
        if signature != expected {
            return false;
        }
        let Some(claims) = stateless_claims(token) else { return false };
        let app_matches = claims["app_id"].as_i64().is_some_and(|id| id.to_string() == app_id);
        app_matches && claims["exp"].as_i64().is_some_and(|exp| exp > now)
    }
}

/// HMAC-SHA-256 (RFC 2104) with a 32-byte key.
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let (mut inner_pad, mut outer_pad) = ([0x36u8; 64], [0x5cu8; 64]);
    for (i, k) in key.iter().enumerate() {
        inner_pad[i] ^= k;
        outer_pad[i] ^= k;
    }
    let inner = Sha256::new().chain_update(inner_pad).chain_update(message).finalize();
    Sha256::new().chain_update(outer_pad).chain_update(inner).finalize().into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn grant(permissions: &BTreeMap<String, String>) -> Grant<'_> {
        Grant { app_id: 1200, installation_id: 71, expires_at: 2_000_000_000, permissions, repositories: None }
    }

    #[test]
    fn hmac_is_rfc_2104s() {
        // Computed independently: `printf 'Hi There' | openssl dgst -sha256 -mac HMAC -macopt hexkey:0b0b…0b`.
        let key = [0x0bu8; 32];
        let mac = hmac_sha256(&key, b"Hi There");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7");
    }

    #[test]
    fn both_formats_have_githubs_shapes_and_only_stateless_ones_verify_as_such() {
        let permissions = BTreeMap::from([("metadata".to_string(), "read".to_string())]);
        let mut minter = Minter::default();
        let classic = minter.mint(TokenFormat::Classic, &grant(&permissions));
        assert_eq!(classic.len(), 40);
        assert_eq!(TokenFormat::of(&classic), Some(TokenFormat::Classic));
        let stateless = minter.mint(TokenFormat::Stateless, &grant(&permissions));
        assert_eq!(TokenFormat::of(&stateless), Some(TokenFormat::Stateless));
        assert!(stateless.starts_with("ghs_1200_"), "{stateless}");
        assert_eq!(stateless.matches('.').count(), 2);
        assert!(minter.verify_stateless(&stateless, 1_900_000_000));
        assert!(!minter.verify_stateless(&stateless, 2_000_000_000), "expired");
        assert!(!minter.verify_stateless(&stateless.replacen("ghs_1200_", "ghs_1201_", 1), 0), "another App");
        assert!(!Minter::default().verify_stateless(&stateless, 0), "another signer");
        assert_eq!(stateless_claims(&stateless).unwrap()["installation_id"], 71);
        for not_a_token in ["ghs_", "ghs_abc", "ghp_16C7e42F292c6912E7710c838347Ae178B4a", "ghs_12_a.b", "ghs_x_a.b.c"]
        {
            assert_eq!(TokenFormat::of(not_a_token), None, "{not_a_token}");
        }
    }
}
