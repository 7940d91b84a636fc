//! GitHub App private keys, and wrapping them for KMS `ImportKeyMaterial`, on aws-lc-rs (the
//! crypto the AWS SDK and rustls already use).
//!
//! KMS `GetParametersForImport` with `RSA_AES_KEY_WRAP_SHA_256` / `RSA_4096` returns a wrapping
//! public key. The key material (the App key as PKCS#8 DER) is wrapped by a fresh AES-256 key with
//! RFC 5649 key wrap with padding; that AES key is wrapped by RSA-OAEP-SHA-256 under KMS's wrapping
//! key; the upload is the two concatenated: `RSA-OAEP(aes key) || AES-KWP(material)`.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::key_wrap::{AES_256, KeyEncryptionKey, KeyWrapPadded};
use aws_lc_rs::rsa::{KeyPair, OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use zeroize::Zeroizing;

use crate::CliError;

/// GitHub App keys are RSA-2048; the KMS key spec is `RSA_2048`.
pub const APP_KEY_BITS: usize = 2048;

/// A GitHub App private key, held only in memory. `Debug` does not show it.
pub struct AppPrivateKey {
    key: KeyPair,
}

impl std::fmt::Debug for AppPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AppPrivateKey(RSA-{}, redacted)", self.key.public_modulus_len() * 8)
    }
}

impl AppPrivateKey {
    /// Reads a PEM as GitHub hands it out (PKCS#1 `RSA PRIVATE KEY`) or as PKCS#8 (`PRIVATE KEY`),
    /// and checks that it is a consistent RSA-2048 key.
    pub fn from_pem(text: &str) -> Result<Self, CliError> {
        // Anything before the BEGIN line (comments, "Bag Attributes") is not part of the PEM.
        let text = text.find("-----BEGIN ").map(|at| &text[at..]).unwrap_or(text);
        let label = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")))
            .ok_or_else(|| CliError::BadKey("not a PEM file (no -----BEGIN ...----- line)".into()))?;
        let der = || pem_body(text, label);
        // aws-lc-rs refuses keys below 2,048 bits outright; say what a GitHub App key is.
        let too_small = |e: &aws_lc_rs::error::KeyRejected| e.to_string() == "TooSmall";
        let small = || {
            CliError::BadKey(format!(
                "the key is smaller than RSA-{APP_KEY_BITS}; GitHub App keys are RSA-{APP_KEY_BITS}"
            ))
        };
        let key = match label {
            "RSA PRIVATE KEY" => KeyPair::from_der(&der()?).map_err(|e| {
                if too_small(&e) {
                    small()
                } else {
                    CliError::BadKey(format!("the PKCS#1 RSA key cannot be read: {e}"))
                }
            })?,
            "PRIVATE KEY" => KeyPair::from_pkcs8(&der()?).map_err(|e| {
                if too_small(&e) {
                    small()
                } else {
                    CliError::BadKey(format!("not an RSA private key (PKCS#8 of another algorithm, or corrupt): {e}"))
                }
            })?,
            "ENCRYPTED PRIVATE KEY" => {
                return Err(CliError::BadKey("the key is encrypted; decrypt it first (openssl pkcs8)".into()));
            }
            other => return Err(CliError::BadKey(format!("a {other} is not a GitHub App private key (RSA)"))),
        };
        let bits = key.public_modulus_len() * 8;
        if bits != APP_KEY_BITS {
            return Err(CliError::BadKey(format!("the key is RSA-{bits}; GitHub App keys are RSA-{APP_KEY_BITS}")));
        }
        Ok(AppPrivateKey { key })
    }

    /// The key material KMS imports: PKCS#8 DER (zeroed when dropped).
    pub fn pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, CliError> {
        let der = self.key.as_der().map_err(|e| CliError::BadKey(format!("cannot encode the key as PKCS#8: {e}")))?;
        Ok(Zeroizing::new(der.as_ref().to_vec()))
    }

    /// The public key as DER SubjectPublicKeyInfo, as KMS's `GetPublicKey` gives it.
    pub fn public_key(&self) -> Result<Vec<u8>, CliError> {
        let der = self
            .key
            .public_key()
            .as_der()
            .map_err(|e| CliError::BadKey(format!("cannot encode the public key: {e}")))?;
        Ok(der.as_ref().to_vec())
    }
}

/// The DER between a PEM's `BEGIN label` and `END label` lines (zeroed when dropped).
fn pem_body(text: &str, label: &str) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let (begin, end) = (format!("-----BEGIN {label}-----"), format!("-----END {label}-----"));
    let body = text
        .split_once(begin.as_str())
        .and_then(|(_, rest)| rest.split_once(end.as_str()))
        .map(|(body, _)| body)
        .ok_or_else(|| CliError::BadKey(format!("the {label} cannot be read: no END line")))?;
    let base64: Zeroizing<String> = Zeroizing::new(body.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    base64::engine::general_purpose::STANDARD
        .decode(base64.as_bytes())
        .map(Zeroizing::new)
        .map_err(|e| CliError::BadKey(format!("the {label} cannot be read: {e}")))
}

/// Wraps `material` for `ImportKeyMaterial` under KMS's wrapping public key (DER SPKI).
pub fn wrap_for_import(material: &[u8], wrapping_public_key_der: &[u8]) -> Result<Vec<u8>, CliError> {
    let not_rsa = || CliError::Import("KMS's wrapping key is not an RSA public key".into());
    let wrapping = PublicEncryptingKey::from_der(wrapping_public_key_der).map_err(|_| not_rsa())?;
    let wrapping = OaepPublicEncryptingKey::new(wrapping).map_err(|_| not_rsa())?;
    let mut aes_key = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(aes_key.as_mut()).map_err(|_| CliError::Import("no random bytes".into()))?;
    let wrapped_material = kwp_wrap(&aes_key, material)?;
    let mut wrapped_key = vec![0u8; wrapping.ciphertext_size()];
    let wrapped_key = wrapping
        .encrypt(&OAEP_SHA256_MGF1SHA256, aes_key.as_ref(), &mut wrapped_key, None)
        .map_err(|_| CliError::Import("RSA-OAEP failed".into()))?
        .to_vec();
    Ok([wrapped_key, wrapped_material].concat())
}

/// RFC 5649 AES key wrap with padding, AES-256.
pub fn kwp_wrap(kek: &[u8; 32], data: &[u8]) -> Result<Vec<u8>, CliError> {
    let kek = KeyEncryptionKey::new(&AES_256, kek).map_err(|_| CliError::Import("bad AES key length".into()))?;
    let mut buf = vec![0u8; data.len().div_ceil(8) * 8 + 8];
    let wrapped = kek.wrap_with_padding(data, &mut buf).map_err(|_| CliError::Import("AES key wrap failed".into()))?;
    Ok(wrapped.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_kw::{KeyInit, KwpAes192, KwpAes256};
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
    use rsa::sha2::Sha256;
    use rsa::{Oaep, RsaPrivateKey};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// RFC 5649, section 6: both published examples (a 192-bit KEK).
    #[test]
    fn rfc5649_vectors() {
        let kek = hex("5840df6e29b02af1 ab493b705bf16ea1 ae8338f4dcc176a8");
        let kwp = KwpAes192::new_from_slice(&kek).unwrap();
        for (key, wrapped) in [
            (
                "c37b7e6492584340 bed1220780894115 5068f738",
                "138bdeaa9b8fa7fc 61f97742e72248ee 5ae6ae5360d1ae6a 5f54f373fa543b6a",
            ),
            ("466f7250617369", "afbeb0f07dfbf541 9200f2ccb50bb24f"),
        ] {
            let (key, wrapped) = (hex(key), hex(wrapped));
            let mut buf = vec![0u8; wrapped.len()];
            assert_eq!(kwp.wrap_key(&key, &mut buf).unwrap(), wrapped.as_slice());
            let mut out = vec![0u8; wrapped.len() - 8];
            assert_eq!(kwp.unwrap_key(&wrapped, &mut out).unwrap(), key.as_slice());
        }
    }

    /// Our AES-256 KWP (aws-lc-rs) wraps exactly as the RFC-checked implementation above does,
    /// for every length from 1 to 300 bytes: so it meets RFC 5649 too (whose published examples
    /// are for a 192-bit KEK, which aws-lc-rs does not offer).
    #[test]
    fn kwp_wrap_matches_the_rfc_checked_implementation() {
        let kek = [0x5au8; 32];
        let reference = KwpAes256::new_from_slice(&kek).unwrap();
        for len in 1..=300usize {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let mut buf = vec![0u8; len.div_ceil(8) * 8 + 8];
            assert_eq!(kwp_wrap(&kek, &data).unwrap(), reference.wrap_key(&data, &mut buf).unwrap(), "{len} bytes");
        }
    }

    #[test]
    fn kwp_wrap_round_trips_and_detects_tampering() {
        let kek = [7u8; 32];
        let data = b"a PKCS#8 DER is about 1,200 bytes; any length works with padding";
        let wrapped = kwp_wrap(&kek, data).unwrap();
        assert_eq!(wrapped.len(), data.len().div_ceil(8) * 8 + 8);
        let kwp = KwpAes256::new_from_slice(&kek).unwrap();
        let mut out = vec![0u8; wrapped.len() - 8];
        assert_eq!(kwp.unwrap_key(&wrapped, &mut out).unwrap(), data);
        let mut bad = wrapped.clone();
        bad[3] ^= 1;
        assert!(kwp.unwrap_key(&bad, &mut out).is_err(), "integrity check");
    }

    fn test_key(bits: usize) -> RsaPrivateKey {
        RsaPrivateKey::new(&mut rand_core::OsRng, bits).unwrap()
    }

    /// The whole import wrapping against a locally made RSA-4096 wrapping key: unwrap and compare
    /// the PKCS#8 DER byte for byte.
    #[test]
    fn wrap_for_import_round_trips_byte_for_byte() {
        let app = AppPrivateKey::from_pem(&test_key(2048).to_pkcs1_pem(LineEnding::LF).unwrap()).unwrap();
        let material = app.pkcs8_der().unwrap();
        let wrapping = test_key(4096);
        let spki = wrapping.to_public_key().to_public_key_der().unwrap();
        let blob = wrap_for_import(&material, spki.as_bytes()).unwrap();
        assert_eq!(blob.len(), 512 + material.len().div_ceil(8) * 8 + 8);
        let (wrapped_key, wrapped_material) = blob.split_at(512);
        let aes_key = wrapping.decrypt(Oaep::new::<Sha256>(), wrapped_key).unwrap();
        assert_eq!(aes_key.len(), 32);
        let kwp = KwpAes256::new_from_slice(&aes_key).unwrap();
        let mut out = vec![0u8; wrapped_material.len() - 8];
        assert_eq!(kwp.unwrap_key(wrapped_material, &mut out).unwrap(), material.as_slice());
        // The material is the same key, as PKCS#8 that another implementation reads.
        let reread = RsaPrivateKey::from_pkcs8_der(&material).unwrap().to_public_key().to_public_key_der().unwrap();
        assert_eq!(reread.as_bytes(), app.public_key().unwrap());
    }

    #[test]
    fn pkcs1_and_pkcs8_pems_give_the_same_material() {
        let key = test_key(2048);
        let pkcs1 = key.to_pkcs1_pem(LineEnding::LF).unwrap();
        let pkcs8 = key.to_pkcs8_pem(LineEnding::CRLF).unwrap();
        assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
        let a = AppPrivateKey::from_pem(&pkcs1).unwrap().pkcs8_der().unwrap();
        let b = AppPrivateKey::from_pem(&format!("\n{}\n", pkcs8.as_str())).unwrap().pkcs8_der().unwrap();
        assert_eq!(a.as_slice(), b.as_slice());
        // Byte for byte what the rsa crate writes as PKCS#8 for the same key.
        assert_eq!(a.as_slice(), key.to_pkcs8_der().unwrap().as_bytes());
        let debug = format!("{:?}", AppPrivateKey::from_pem(&pkcs1).unwrap());
        assert_eq!(debug, "AppPrivateKey(RSA-2048, redacted)");
    }

    #[test]
    fn bad_pems_are_refused_with_a_clear_message() {
        let small = test_key(1024).to_pkcs1_pem(LineEnding::LF).unwrap();
        let good = test_key(2048).to_pkcs1_pem(LineEnding::LF).unwrap();
        let corrupt = good.replacen("MII", "MIX", 1);
        let truncated: String = good.lines().take(5).collect::<Vec<_>>().join("\n");
        let ec = include_str!("../tests/data/ec-p256.pem");
        let cases = [
            (small.to_string(), "GitHub App keys are RSA-2048"),
            (ec.to_string(), "not an RSA private key"),
            (corrupt, "cannot be read"),
            (truncated, "cannot be read"),
            ("hello".to_string(), "not a PEM file"),
            ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_string(), "a CERTIFICATE is not"),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n".to_string(),
                "encrypted",
            ),
        ];
        for (pem, want) in cases {
            let err = AppPrivateKey::from_pem(&pem).unwrap_err().to_string();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }
}
