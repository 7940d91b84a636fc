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
}
