//! A string that never shows itself in logs or `Debug` output.

use sha2::{Digest, Sha256};

/// A credential (JWT, installation token, a secret's value), zeroed when dropped. `Debug` prints `Secret(sha256:…)` with a short hash
/// prefix so that log lines can be correlated without revealing the value. There is no `Display`.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself: only for putting it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Hex SHA-256 of the value, for audit lines.
    pub fn sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// The SHA-256 of the value in standard, padded base64: how GitHub's audit log identifies a
    /// token (`hashed_token`), whatever its format, so that audit lines join with GitHub's events.
    pub fn sha256_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl Drop for Secret {
    /// The value is zeroed before its memory is given back.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(sha256:{}…)", &self.sha256_hex()[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_does_not_reveal_the_value() {
        let s = Secret::new("ghs_supersecretvalue");
        let shown = format!("{s:?} {:?}", vec![s.clone()]);
        assert!(!shown.contains("supersecret"), "{shown}");
        assert!(shown.starts_with("Secret(sha256:"), "{shown}");
    }

    #[test]
    fn sha256_is_of_the_value() {
        // sha256("abc") from FIPS 180-2.
        assert_eq!(Secret::new("abc").sha256_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    /// GitHub's `hashed_token` of known tokens, each computed independently with
    /// `printf %s TOKEN | openssl dgst -sha256 -binary | base64`.
    #[test]
    fn sha256_base64_is_githubs_hashed_token() {
        assert_eq!(Secret::new("abc").sha256_base64(), "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
        // A classic token (GitHub's documentation example).
        let classic = "ghs_16C7e42F292c6912E7710c838347Ae178B4a";
        assert_eq!(Secret::new(classic).sha256_base64(), "eXwM5BRYbMjraSmv6UfHIOPk01HdBwpv459jC+qrMFQ=");
        assert_eq!(Secret::new(STATELESS).sha256_base64(), STATELESS_HASHED);
    }

    /// A stateless token's shape: `ghs_<APPID>_<JWT>`, with `-` and `_` in its base64url segments.
    const STATELESS: &str = concat!(
        "ghs_1200_eyJhbGciOiJIUzI1NiIsImtpZCI6ImFwcGNyZWRzLWdpdGh1Yi1kb3VibGUiLCJ0eXAiOiJKV1QifQ",
        ".eyJhcHBfaWQiOjEyMDAsImV4cCI6MTc5NjE0ODAwMCwiaW5zdGFsbGF0aW9uX2lkIjo3MSwic3ViIjoiaW5zdGFsbGF0aW9uOjcxIn0",
        ".q-ZfP3u_0x9Yk1-Hn8Wc2s_Jt4Gd7Lm0Rb5Va3Xe6Pk"
    );
    const STATELESS_HASHED: &str = "8IWTb4w+LeJyJYSdeVEjn9BTOTHIY16qj02xc1fNg1s=";
}
