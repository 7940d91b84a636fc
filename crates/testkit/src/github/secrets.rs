//! Repository Actions secrets, as GitHub serves them (`GET …/actions/secrets/public-key`,
//! `PUT …/actions/secrets/{name}`, `GET …/actions/secrets`): each repository has a real X25519
//! key pair, and every sealed value is **opened** with it, so that a test can compare what a
//! repository holds with what was meant, byte for byte. Writing needs an installation token with
//! `secrets: write` that covers the repository; a value that does not open is a 422.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::installations::authenticate_installation;
use super::{Inner, Refusal, gh_error, now, rfc3339};

/// One repository's secrets.
struct RepoSecrets {
    key: crypto_box::SecretKey,
    key_id: String,
    /// Name (as GitHub keeps it, upper case) → the opened value, created and updated times.
    values: BTreeMap<String, (Vec<u8>, i64, i64)>,
}

/// Every repository's secrets, by `owner/name` in lower case.
#[derive(Default)]
pub(super) struct Secrets {
    repos: HashMap<String, RepoSecrets>,
}

impl Secrets {
    fn repo(&mut self, repository: &str) -> &mut RepoSecrets {
        let n = self.repos.len();
        self.repos.entry(repository.to_ascii_lowercase()).or_insert_with(|| RepoSecrets {
            key: crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng),
            key_id: format!("568250167242549{n:03}"),
            values: BTreeMap::new(),
        })
    }

    /// The opened value of secret `name` of `repository`, if it was written.
    pub(super) fn value(&self, repository: &str, name: &str) -> Option<Vec<u8>> {
        let repo = self.repos.get(&repository.to_ascii_lowercase())?;
        repo.values.get(&name.to_ascii_uppercase()).map(|(v, _, _)| v.clone())
    }
}

/// Whether the caller's installation token may read (or, with `write`, write) the secrets of
/// `owner/repo`: its installation has the repository, the token covers it, and grants `secrets`.
fn authorize(inner: &Inner, headers: &HeaderMap, owner: &str, repo: &str, write: bool) -> Result<(), Refusal> {
    let token = authenticate_installation(inner, headers)?;
    let state = inner.installations.lock().unwrap_or_else(PoisonError::into_inner);
    let installation = state.by_id.get(&token.installation_id).ok_or(Refusal(StatusCode::NOT_FOUND, "Not Found"))?;
    let has_repo = installation.account.login.eq_ignore_ascii_case(owner)
        && installation.repositories.iter().any(|r| r.name.eq_ignore_ascii_case(repo))
        && token.repositories.as_ref().is_none_or(|names| names.iter().any(|n| n.eq_ignore_ascii_case(repo)));
    if !has_repo {
        return Err(Refusal(StatusCode::NOT_FOUND, "Not Found"));
    }
    let level = token.permissions.get("secrets").map(String::as_str);
    let allowed = if write { level == Some("write") } else { matches!(level, Some("read" | "write")) };
    if !allowed {
        return Err(Refusal(StatusCode::FORBIDDEN, "Resource not accessible by integration"));
    }
    Ok(())
}

/// A read of `owner/repo`'s secrets by an authorized caller: `answer` on the repository's state.
fn read(
    inner: &Inner,
    headers: &HeaderMap,
    owner: &str,
    repo: &str,
    answer: impl FnOnce(&RepoSecrets) -> Value,
) -> Response {
    if let Err(refusal) = authorize(inner, headers, owner, repo, false) {
        return refusal.into_response();
    }
    let mut secrets = inner.secrets.lock().unwrap_or_else(PoisonError::into_inner);
    axum::Json(answer(secrets.repo(&format!("{owner}/{repo}")))).into_response()
}

/// `GET /repos/{owner}/{repo}/actions/secrets/public-key` (schema `actions-public-key`).
pub(super) async fn public_key(
    State(inner): State<Arc<Inner>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    read(
        &inner,
        &headers,
        &owner,
        &repo,
        |r| json!({"key_id": r.key_id, "key": STANDARD.encode(r.key.public_key().as_bytes())}),
    )
}

/// `PUT /repos/{owner}/{repo}/actions/secrets/{secret_name}`: 201 created, 204 updated.
pub(super) async fn put(
    State(inner): State<Arc<Inner>>,
    Path((owner, repo, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Option<axum::Json<Value>>,
) -> Response {
    if let Err(refusal) = authorize(&inner, &headers, &owner, &repo, true) {
        return refusal.into_response();
    }
    let upper = name.to_ascii_uppercase();
    let valid_name = !upper.is_empty()
        && upper.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !upper.starts_with(|c: char| c.is_ascii_digit())
        && !upper.starts_with("GITHUB_");
    if !valid_name {
        return gh_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Secret names can only contain alphanumeric characters ([a-z], [A-Z], [0-9]) or underscores (_).",
        );
    }
    let body = body.map(|b| b.0).unwrap_or(Value::Null);
    let (Some(sealed), Some(key_id)) = (body["encrypted_value"].as_str(), body["key_id"].as_str()) else {
        return gh_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request.\n\n\"encrypted_value\", \"key_id\" wasn't supplied.",
        );
    };
    let mut secrets = inner.secrets.lock().unwrap_or_else(PoisonError::into_inner);
    let repo = secrets.repo(&format!("{owner}/{repo}"));
    if key_id != repo.key_id {
        return gh_error(StatusCode::UNPROCESSABLE_ENTITY, "Bad key_id");
    }
    let Some(value) = STANDARD.decode(sealed).ok().and_then(|s| repo.key.unseal(&s).ok()) else {
        return gh_error(StatusCode::UNPROCESSABLE_ENTITY, "Unable to decrypt the secret value");
    };
    let t = now();
    match repo.values.get_mut(&upper) {
        Some(existing) => {
            *existing = (value, existing.1, t);
            StatusCode::NO_CONTENT.into_response()
        }
        None => {
            repo.values.insert(upper, (value, t, t));
            (StatusCode::CREATED, axum::Json(json!({}))).into_response()
        }
    }
}

/// `GET /repos/{owner}/{repo}/actions/secrets` (names and times, never values).
pub(super) async fn list(
    State(inner): State<Arc<Inner>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    read(&inner, &headers, &owner, &repo, |r| {
        let listed: Vec<Value> = r
            .values
            .iter()
            .map(|(name, (_, created, updated))| {
                json!({"name": name, "created_at": rfc3339(*created), "updated_at": rfc3339(*updated)})
            })
            .collect();
        json!({"total_count": listed.len(), "secrets": listed})
    })
}
