//! GitHub Actions secrets of a repository: its public key (`GET …/actions/secrets/public-key`)
//! and writing a secret (`PUT …/actions/secrets/{name}`), the value sealed for that key with
//! libsodium's sealed box (X25519 + XSalsa20-Poly1305, through the `crypto_box` crate) as GitHub
//! requires. A value exists only in [`Secret`]s, which are zeroed when dropped; it is never logged.
//!
//! The token needs the repository permission `secrets: write` (GitHub's App permission
//! `secrets`, in the list `crates/core/data/app-permissions.json` derives from its OpenAPI
//! description).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::domain::secret::Secret;
use crate::error::Error;
use crate::github::{Auth, GitHubClient};

/// A repository's secrets public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretsKey {
    /// GitHub's ID of the key, sent back with each sealed value.
    pub key_id: String,
    key: [u8; 32],
}

#[derive(Deserialize)]
struct PublicKeyBody {
    key_id: String,
    key: String,
}

/// Whether a `PUT` created the secret or replaced its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated,
}

/// GitHub's secret names: letters, digits and `_`, not starting with a digit or `GITHUB_`.
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && !name.to_ascii_uppercase().starts_with("GITHUB_")
}

/// The public key of `repository`'s (`owner/name`) Actions secrets.
pub async fn repository_key(github: &GitHubClient, token: &Secret, repository: &str) -> Result<SecretsKey, Error> {
    let body: PublicKeyBody =
        github.get(&format!("/repos/{repository}/actions/secrets/public-key"), Auth::Installation(token)).await?;
    let key: [u8; 32] = STANDARD
        .decode(&body.key)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| Error::internal("reading a secrets public key", "not 32 bytes of base64"))?;
    Ok(SecretsKey { key_id: body.key_id, key })
}

/// `value` sealed for `key`, base64-encoded, as `encrypted_value` takes it.
pub fn seal(key: &SecretsKey, value: &Secret) -> Result<String, Error> {
    let sealed = crypto_box::PublicKey::from(key.key)
        .seal(&mut crypto_box::aead::OsRng, value.expose().as_bytes())
        .map_err(|_| Error::internal("sealing a secret", "the sealed box failed"))?;
    Ok(STANDARD.encode(sealed))
}

/// Writes the Actions secret `name` of `repository` with `value`, sealed for `key`.
pub async fn put_repository_secret(
    github: &GitHubClient,
    token: &Secret,
    repository: &str,
    key: &SecretsKey,
    name: &str,
    value: &Secret,
) -> Result<Written, Error> {
    if !valid_secret_name(name) {
        return Err(Error::internal("writing a secret", format!("{name:?} is not a GitHub secret name")));
    }
    let body = json!({"encrypted_value": seal(key, value)?, "key_id": key.key_id});
    let path = format!("/repos/{repository}/actions/secrets/{name}");
    let reply = github.send(Method::PUT, &path, Auth::Installation(token), Some(&body)).await?;
    Ok(if reply.status.as_u16() == 201 { Written::Created } else { Written::Updated })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_the_secret_key_only() {
        let recipient = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
        let key = SecretsKey { key_id: "k1".into(), key: *recipient.public_key().as_bytes() };
        let value = Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
        let sealed = STANDARD.decode(seal(&key, &value).unwrap()).unwrap();
        assert_eq!(sealed.len(), 32 + 16 + value.expose().len(), "ephemeral key, tag, value");
        assert_eq!(recipient.unseal(&sealed).unwrap(), value.expose().as_bytes());
        let other = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
        assert!(other.unseal(&sealed).is_err());
        // Two seals of one value differ (a fresh ephemeral key each time).
        assert_ne!(seal(&key, &value).unwrap(), seal(&key, &value).unwrap());
    }

    #[test]
    fn secret_names_as_github_takes_them() {
        for good in ["AWS_ACCESS_KEY_ID", "aws_secret", "A1", "_X"] {
            assert!(valid_secret_name(good), "{good}");
        }
        for bad in ["", "1ABC", "GITHUB_TOKEN", "github_x", "A-B", "A B", "É", &"A".repeat(256)] {
            assert!(!valid_secret_name(bad), "{bad}");
        }
    }
}
