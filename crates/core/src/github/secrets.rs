//! GitHub Actions secrets of a repository, an environment or an organisation: the place's public
//! key (`GET …/secrets/public-key`) and writing a secret (`PUT …/secrets/{name}`), the value sealed for that key with
//! libsodium's sealed box (X25519 + XSalsa20-Poly1305, through the `crypto_box` crate) as GitHub
//! requires. A value exists only in [`Secret`]s, which are zeroed when dropped; it is never logged.
//!
//! The token needs `secrets: write` (repository), `environments` and `secrets: write`
//! (environment) or `organization_secrets: write` (organisation): GitHub's App permissions, in the
//! list `crates/core/data/app-permissions.json` derives from its OpenAPI description. Actions
//! variables (not secret) need `actions_variables`, `environments` or
//! `organization_actions_variables` at `write`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::domain::rotation::{Visibility, valid_secret_name};
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

/// Where a secret lives: a repository's Actions secrets, an environment's secrets, or an
/// organisation's Actions secrets (with which of its repositories may use them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place<'a> {
    /// `owner/name`'s Actions secrets (`secrets: write`).
    Repository(&'a str),
    /// An environment of `owner/name` (`environments: write`).
    Environment { repository: &'a str, environment: &'a str },
    /// An organisation's Actions secrets (`organization_secrets: write`).
    Organization { org: &'a str, visibility: Visibility, selected_repository_ids: Vec<i64> },
}

impl Place<'_> {
    /// The path of the place's secrets collection.
    fn collection(&self) -> String {
        match self {
            Place::Repository(repository) => format!("/repos/{repository}/actions/secrets"),
            Place::Environment { repository, environment } => {
                format!("/repos/{repository}/environments/{}/secrets", path_segment(environment))
            }
            Place::Organization { org, .. } => format!("/orgs/{org}/actions/secrets"),
        }
    }
}

impl Place<'_> {
    /// The path of the place's Actions variables (repositories: `actions_variables: write`;
    /// environments: `environments: write`; organisations: `organization_actions_variables: write`).
    fn variables(&self) -> String {
        match self {
            Place::Repository(repository) => format!("/repos/{repository}/actions/variables"),
            Place::Environment { repository, environment } => {
                format!("/repos/{repository}/environments/{}/variables", path_segment(environment))
            }
            Place::Organization { org, .. } => format!("/orgs/{org}/actions/variables"),
        }
    }

    /// An organisation's `visibility` (and `selected_repository_ids` for `selected`), which its
    /// secrets and variables carry; nothing for the other places.
    fn add_visibility(&self, body: &mut serde_json::Value) {
        if let Place::Organization { visibility, selected_repository_ids, .. } = self {
            body["visibility"] = json!(visibility.as_str());
            if *visibility == Visibility::Selected {
                body["selected_repository_ids"] = json!(selected_repository_ids);
            }
        }
    }
}

/// Sets the Actions variable `name` of `place` to `value` (not a secret: variables are shown in
/// clear by GitHub): `PATCH` the variable, or `POST` it where it does not exist yet. An
/// organisation's variable gets the same visibility (and selected repositories) as its secrets.
pub async fn put_variable(
    github: &GitHubClient,
    token: &Secret,
    place: &Place<'_>,
    name: &str,
    value: &str,
) -> Result<Written, Error> {
    let collection = place.variables();
    let mut body = json!({"name": name, "value": value});
    place.add_visibility(&mut body);
    let auth = Auth::Installation(token);
    match github.send(Method::PATCH, &format!("{collection}/{name}"), auth, Some(&body)).await {
        Ok(_) => Ok(Written::Updated),
        Err(Error::GitHubRejected { status: 404, .. }) => {
            github.send(Method::POST, &collection, Auth::Installation(token), Some(&body)).await?;
            Ok(Written::Created)
        }
        Err(e) => Err(e),
    }
}

/// `segment` percent-encoded for a URL path (environment names may hold spaces and more).
fn path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The public key that values written to `place` are sealed for.
pub async fn public_key(github: &GitHubClient, token: &Secret, place: &Place<'_>) -> Result<SecretsKey, Error> {
    let body: PublicKeyBody =
        github.get(&format!("{}/public-key", place.collection()), Auth::Installation(token)).await?;
    let key: [u8; 32] = STANDARD
        .decode(&body.key)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| Error::internal("reading a secrets public key", "not 32 bytes of base64"))?;
    Ok(SecretsKey { key_id: body.key_id, key })
}

#[derive(Deserialize)]
struct SecretMetadata {
    updated_at: String,
}

/// When GitHub last wrote the secret `name` of `place` (`updated_at`, RFC 3339 in GitHub's own
/// clock; never the value, which GitHub does not give back).
pub async fn updated_at(github: &GitHubClient, token: &Secret, place: &Place<'_>, name: &str) -> Result<String, Error> {
    let path = format!("{}/{name}", place.collection());
    let metadata: SecretMetadata = github.get(&path, Auth::Installation(token)).await?;
    Ok(metadata.updated_at)
}

/// `value` sealed for `key`, base64-encoded, as `encrypted_value` takes it.
pub fn seal(key: &SecretsKey, value: &Secret) -> Result<String, Error> {
    let sealed = crypto_box::PublicKey::from(key.key)
        .seal(&mut crypto_box::aead::OsRng, value.expose().as_bytes())
        .map_err(|_| Error::internal("sealing a secret", "the sealed box failed"))?;
    Ok(STANDARD.encode(sealed))
}

/// Writes the secret `name` of `place` with `value`, sealed for `key` (the place's public key).
pub async fn put_secret(
    github: &GitHubClient,
    token: &Secret,
    place: &Place<'_>,
    key: &SecretsKey,
    name: &str,
    value: &Secret,
) -> Result<Written, Error> {
    if !valid_secret_name(name) {
        return Err(Error::internal("writing a secret", format!("{name:?} is not a GitHub secret name")));
    }
    let mut body = json!({"encrypted_value": seal(key, value)?, "key_id": key.key_id});
    place.add_visibility(&mut body);
    let path = format!("{}/{name}", place.collection());
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
    fn places_and_their_paths() {
        assert_eq!(Place::Repository("o/r").collection(), "/repos/o/r/actions/secrets");
        let env = Place::Environment { repository: "o/r", environment: "prod eu/1" };
        assert_eq!(env.collection(), "/repos/o/r/environments/prod%20eu%2F1/secrets");
        let org = Place::Organization { org: "o", visibility: Visibility::All, selected_repository_ids: vec![] };
        assert_eq!(org.collection(), "/orgs/o/actions/secrets");
        assert_eq!(org.variables(), "/orgs/o/actions/variables");
        assert_eq!(env.variables(), "/repos/o/r/environments/prod%20eu%2F1/variables");
        let selected =
            Place::Organization { org: "o", visibility: Visibility::Selected, selected_repository_ids: vec![7, 9] };
        let mut body = json!({"name": "AWS_REGION"});
        selected.add_visibility(&mut body);
        assert_eq!(body, json!({"name": "AWS_REGION", "visibility": "selected", "selected_repository_ids": [7, 9]}));
        let mut body = json!({});
        org.add_visibility(&mut body);
        assert_eq!(body, json!({"visibility": "all"}), "no repository list unless selected");
        Place::Repository("o/r").add_visibility(&mut body);
        assert_eq!(body, json!({"visibility": "all"}), "nothing added for a repository");
    }
}
