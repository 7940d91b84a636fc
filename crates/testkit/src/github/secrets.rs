//! Actions secrets, as GitHub serves them, for repositories, environments and organisations:
//! `GET …/secrets/public-key`, `PUT …/secrets/{name}` and `GET …/secrets`. Each place has a real
//! X25519 key pair, and every sealed value is **opened** with it, so that a test can compare what
//! a place holds with what was meant, byte for byte.
//!
//! Authorization is GitHub's: an installation token that covers the repository (or, for an
//! organisation, belongs to the organisation's installation) and grants `secrets` (repository),
//! `environments` and `secrets` (environment) or `organization_secrets` (`write` to write). An environment must exist
//! ([`super::GitHubDouble::add_environment`]); a value that does not open, a stale `key_id`, an
//! organisation secret without a valid `visibility` or with repositories that are not the
//! organisation's: 422.
//!
//! Actions variables too (`POST …/variables`, `PATCH …/variables/{name}`), kept in clear as GitHub
//! keeps them, under `actions_variables`, `environments` or `organization_actions_variables`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, PoisonError};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::installations::authenticate_installation;
use super::{Inner, Refusal, gh_error, now, rfc3339};

/// One stored secret: the opened value, created and updated times, and (organisation secrets)
/// the visibility and selected repository IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub value: Vec<u8>,
    pub created_at: i64,
    pub updated_at: i64,
    pub visibility: Option<String>,
    pub selected_repository_ids: Vec<i64>,
}

/// One place's secrets.
struct PlaceSecrets {
    key: crypto_box::SecretKey,
    key_id: String,
    /// Name (as GitHub keeps it, upper case) → the secret.
    values: BTreeMap<String, StoredSecret>,
}

/// Every place's secrets, by place ID (`repo:owner/name`, `env:owner/name:environment`,
/// `org:login`; owners and repositories in lower case), and the environments that exist.
#[derive(Default)]
pub(super) struct Secrets {
    places: HashMap<String, PlaceSecrets>,
    pub(super) environments: BTreeSet<String>,
    /// Actions variables: place ID → name (upper case) → the variable.
    variables: HashMap<String, BTreeMap<String, StoredVariable>>,
}

/// One Actions variable: its value (in clear, as GitHub keeps variables) and, for an
/// organisation's, the visibility and selected repository IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVariable {
    pub value: String,
    pub visibility: Option<String>,
    pub selected_repository_ids: Vec<i64>,
}

/// Where a request points.
enum Place {
    Repository { owner: String, repo: String },
    Environment { owner: String, repo: String, environment: String },
    Organization { org: String },
}

impl Place {
    fn id(&self) -> String {
        match self {
            Place::Repository { owner, repo } => repository_id(&format!("{owner}/{repo}")),
            Place::Environment { owner, repo, environment } => environment_id(&format!("{owner}/{repo}"), environment),
            Place::Organization { org } => organization_id(org),
        }
    }

    fn permission(&self) -> &'static str {
        match self {
            Place::Repository { .. } => "secrets",
            Place::Environment { .. } => "environments",
            Place::Organization { .. } => "organization_secrets",
        }
    }
}

impl Secrets {
    fn place(&mut self, id: &str) -> &mut PlaceSecrets {
        let n = self.places.len();
        self.places.entry(id.to_string()).or_insert_with(|| PlaceSecrets {
            key: crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng),
            key_id: format!("568250167242549{n:03}"),
            values: BTreeMap::new(),
        })
    }

    /// Variable `name` of the place `id`, if it was set.
    pub(super) fn variable(&self, id: &str, name: &str) -> Option<StoredVariable> {
        self.variables.get(id)?.get(&name.to_ascii_uppercase()).cloned()
    }

    /// Stores a secret as if someone had put it there by hand (not through the rotator).
    pub(super) fn set(&mut self, id: &str, name: &str, value: &[u8]) {
        let t = now();
        let stored = StoredSecret {
            value: value.to_vec(),
            created_at: t,
            updated_at: t,
            visibility: None,
            selected_repository_ids: vec![],
        };
        self.place(id).values.insert(name.to_ascii_uppercase(), stored);
    }

    /// Secret `name` of the place `id`, if it was written.
    pub(super) fn get(&self, id: &str, name: &str) -> Option<StoredSecret> {
        self.places.get(id)?.values.get(&name.to_ascii_uppercase()).cloned()
    }
}

/// The place ID of a repository (`owner/name`).
pub(super) fn repository_id(repository: &str) -> String {
    format!("repo:{}", repository.to_ascii_lowercase())
}

/// The place ID of an environment.
pub(super) fn environment_id(repository: &str, environment: &str) -> String {
    format!("env:{}:{environment}", repository.to_ascii_lowercase())
}

/// The place ID of an organisation.
pub(super) fn organization_id(org: &str) -> String {
    format!("org:{}", org.to_ascii_lowercase())
}

/// Whether the caller's installation token may read (or, with `write`, write) the place's
/// secrets: its installation has the repository (or is the organisation's), the token covers it,
/// and grants the place's permission. Returns the installation's repositories (ID, name).
fn authorize(inner: &Inner, headers: &HeaderMap, place: &Place, write: bool) -> Result<Vec<(i64, String)>, Refusal> {
    // GitHub documents `environments` and `secrets` for environment secrets: both are required.
    if let Place::Environment { .. } = place {
        authorize_for(inner, headers, place, "secrets", write)?;
    }
    authorize_for(inner, headers, place, place.permission(), write)
}

/// [`authorize`] with the permission named.
fn authorize_for(
    inner: &Inner,
    headers: &HeaderMap,
    place: &Place,
    permission: &str,
    write: bool,
) -> Result<Vec<(i64, String)>, Refusal> {
    let token = authenticate_installation(inner, headers)?;
    let state = inner.installations.lock().unwrap_or_else(PoisonError::into_inner);
    let installation = state.by_id.get(&token.installation_id).ok_or(Refusal(StatusCode::NOT_FOUND, "Not Found"))?;
    let covered = match place {
        Place::Repository { owner, repo } | Place::Environment { owner, repo, .. } => {
            installation.account.login.eq_ignore_ascii_case(owner)
                && installation.repositories.iter().any(|r| r.name.eq_ignore_ascii_case(repo))
                && token.repositories.as_ref().is_none_or(|names| names.iter().any(|n| n.eq_ignore_ascii_case(repo)))
        }
        Place::Organization { org } => {
            installation.account.login.eq_ignore_ascii_case(org) && installation.account.kind == "Organization"
        }
    };
    if !covered {
        return Err(Refusal(StatusCode::NOT_FOUND, "Not Found"));
    }
    let level = token.permissions.get(permission).map(String::as_str);
    let allowed = if write { level == Some("write") } else { matches!(level, Some("read" | "write")) };
    if !allowed {
        return Err(Refusal(StatusCode::FORBIDDEN, "Resource not accessible by integration"));
    }
    if let Place::Environment { .. } = place {
        let secrets = inner.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        if !secrets.environments.contains(&place.id()) {
            return Err(Refusal(StatusCode::NOT_FOUND, "Not Found"));
        }
    }
    Ok(installation.repositories.iter().map(|r| (r.id, r.name.clone())).collect())
}

fn public_key(inner: &Inner, headers: &HeaderMap, place: Place) -> Response {
    if let Err(refusal) = authorize(inner, headers, &place, false) {
        return refusal.into_response();
    }
    let mut secrets = inner.secrets.lock().unwrap_or_else(PoisonError::into_inner);
    let p = secrets.place(&place.id());
    axum::Json(json!({"key_id": p.key_id, "key": STANDARD.encode(p.key.public_key().as_bytes())})).into_response()
}

fn list(inner: &Inner, headers: &HeaderMap, place: Place) -> Response {
    if let Err(refusal) = authorize(inner, headers, &place, false) {
        return refusal.into_response();
    }
    let mut secrets = inner.secrets.lock().unwrap_or_else(PoisonError::into_inner);
    let is_org = matches!(place, Place::Organization { .. });
    let listed: Vec<Value> = secrets
        .place(&place.id())
        .values
        .iter()
        .map(|(name, s)| {
            let mut item =
                json!({"name": name, "created_at": rfc3339(s.created_at), "updated_at": rfc3339(s.updated_at)});
            if is_org {
                item["visibility"] = json!(s.visibility);
            }
            item
        })
        .collect();
    axum::Json(json!({"total_count": listed.len(), "secrets": listed})).into_response()
}

/// One secret's metadata (never its value): `name`, `created_at`, `updated_at`, and an
/// organisation's `visibility`; 404 if it was never written.
fn get_one(inner: &Inner, headers: &HeaderMap, place: Place, name: &str) -> Response {
    if let Err(refusal) = authorize(inner, headers, &place, false) {
        return refusal.into_response();
    }
    let mut secrets = inner.secrets.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(s) = secrets.place(&place.id()).values.get(&name.to_ascii_uppercase()) else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let mut item = json!({
        "name": name.to_ascii_uppercase(),
        "created_at": rfc3339(s.created_at),
        "updated_at": rfc3339(s.updated_at),
    });
    if let Place::Organization { .. } = place {
        item["visibility"] = json!(s.visibility);
    }
    axum::Json(item).into_response()
}

fn put(inner: &Inner, headers: &HeaderMap, place: Place, name: &str, body: Option<axum::Json<Value>>) -> Response {
    let repositories = match authorize(inner, headers, &place, true) {
        Ok(repositories) => repositories,
        Err(refusal) => return refusal.into_response(),
    };
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
    let (visibility, selected) = match visibility_of(&place, &body, &repositories, true) {
        Ok(v) => v,
        Err(refusal) => return refusal.into_response(),
    };
    let mut secrets = inner.secrets.lock().unwrap_or_else(PoisonError::into_inner);
    let p = secrets.place(&place.id());
    if key_id != p.key_id {
        return gh_error(StatusCode::UNPROCESSABLE_ENTITY, "Bad key_id");
    }
    let Some(value) = STANDARD.decode(sealed).ok().and_then(|s| p.key.unseal(&s).ok()) else {
        return gh_error(StatusCode::UNPROCESSABLE_ENTITY, "Unable to decrypt the secret value");
    };
    let t = now();
    match p.values.get_mut(&upper) {
        Some(existing) => {
            *existing = StoredSecret {
                value,
                created_at: existing.created_at,
                updated_at: t,
                visibility,
                selected_repository_ids: selected,
            };
            StatusCode::NO_CONTENT.into_response()
        }
        None => {
            let stored =
                StoredSecret { value, created_at: t, updated_at: t, visibility, selected_repository_ids: selected };
            p.values.insert(upper, stored);
            (StatusCode::CREATED, axum::Json(json!({}))).into_response()
        }
    }
}

/// An organisation's `visibility` and `selected_repository_ids` from a request body (`None` and
/// none for other places): `all`, `private` or `selected` with repositories of the organisation's
/// installation; 422 otherwise, or if `required` and missing (a variable's `PATCH` may leave it).
fn visibility_of(
    place: &Place,
    body: &Value,
    repositories: &[(i64, String)],
    required: bool,
) -> Result<(Option<String>, Vec<i64>), Refusal> {
    if !matches!(place, Place::Organization { .. }) {
        return Ok((None, Vec::new()));
    }
    match body["visibility"].as_str() {
        Some(v @ ("all" | "private")) => Ok((Some(v.to_string()), Vec::new())),
        Some("selected") => {
            let selected: Vec<i64> = body["selected_repository_ids"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            if selected.iter().any(|id| !repositories.iter().any(|(r, _)| r == id)) {
                return Err(Refusal(StatusCode::UNPROCESSABLE_ENTITY, "Invalid repository ids"));
            }
            Ok((Some("selected".into()), selected))
        }
        None if !required => Ok((None, Vec::new())),
        _ => Err(Refusal(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request.\n\n\"visibility\" wasn't supplied.")),
    }
}

/// `GET /repos/{owner}/{repo}/actions/secrets/public-key` (schema `actions-public-key`).
pub(super) async fn repo_public_key(
    State(inner): State<Arc<Inner>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    public_key(&inner, &headers, Place::Repository { owner, repo })
}

/// `PUT /repos/{owner}/{repo}/actions/secrets/{secret_name}`: 201 created, 204 updated.
pub(super) async fn repo_put(
    State(inner): State<Arc<Inner>>,
    Path((owner, repo, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Option<axum::Json<Value>>,
) -> Response {
    put(&inner, &headers, Place::Repository { owner, repo }, &name, body)
}

/// `GET /repos/{owner}/{repo}/actions/secrets` (names and times, never values).
pub(super) async fn repo_list(
    State(inner): State<Arc<Inner>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    list(&inner, &headers, Place::Repository { owner, repo })
}

/// `GET /repos/{owner}/{repo}/environments/{environment_name}/secrets/public-key`.
pub(super) async fn env_public_key(
    State(inner): State<Arc<Inner>>,
    Path((owner, repo, environment)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    public_key(&inner, &headers, Place::Environment { owner, repo, environment })
}

/// `PUT /repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}`.
pub(super) async fn env_put(
    State(inner): State<Arc<Inner>>,
    Path((owner, repo, environment, name)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Option<axum::Json<Value>>,
) -> Response {
    put(&inner, &headers, Place::Environment { owner, repo, environment }, &name, body)
}

/// `GET /repos/{owner}/{repo}/environments/{environment_name}/secrets`.
pub(super) async fn env_list(
    State(inner): State<Arc<Inner>>,
    Path((owner, repo, environment)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    list(&inner, &headers, Place::Environment { owner, repo, environment })
}

/// `GET /orgs/{org}/actions/secrets/public-key`.
pub(super) async fn org_public_key(
    State(inner): State<Arc<Inner>>,
    Path(org): Path<String>,
    headers: HeaderMap,
) -> Response {
    public_key(&inner, &headers, Place::Organization { org })
}

/// `PUT /orgs/{org}/actions/secrets/{secret_name}` (with `visibility`, and
/// `selected_repository_ids` for `selected`).
pub(super) async fn org_put(
    State(inner): State<Arc<Inner>>,
    Path((org, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<axum::Json<Value>>,
) -> Response {
    put(&inner, &headers, Place::Organization { org }, &name, body)
}

/// `GET /orgs/{org}/actions/secrets` (names, times and visibility).
pub(super) async fn org_list(State(inner): State<Arc<Inner>>, Path(org): Path<String>, headers: HeaderMap) -> Response {
    list(&inner, &headers, Place::Organization { org })
}

/// The permission that writes a place's variables: `actions_variables` for a repository,
/// `environments` for an environment, `organization_actions_variables` for an organisation.
fn variables_permission(place: &Place) -> &'static str {
    match place {
        Place::Repository { .. } => "actions_variables",
        Place::Environment { .. } => "environments",
        Place::Organization { .. } => "organization_actions_variables",
    }
}

/// `POST …/variables` (create: 201, or 409 if it exists) and `PATCH …/variables/{name}` (update:
/// 204, or 404 if it does not). An organisation's variable needs a `visibility` to be created;
/// an update without one keeps the one it had.
fn set_variable(
    inner: &Inner,
    headers: &HeaderMap,
    place: Place,
    name: Option<&str>,
    body: Option<axum::Json<Value>>,
) -> Response {
    let repositories = match authorize_for(inner, headers, &place, variables_permission(&place), true) {
        Ok(repositories) => repositories,
        Err(refusal) => return refusal.into_response(),
    };
    let body = body.map(|b| b.0).unwrap_or(Value::Null);
    let (Some(given), Some(value)) = (body["name"].as_str().or(name), body["value"].as_str()) else {
        return gh_error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request.\n\n\"name\", \"value\" wasn't supplied.");
    };
    let (visibility, selected) = match visibility_of(&place, &body, &repositories, name.is_none()) {
        Ok(v) => v,
        Err(refusal) => return refusal.into_response(),
    };
    let upper = given.to_ascii_uppercase();
    let mut secrets = inner.secrets.lock().unwrap_or_else(PoisonError::into_inner);
    let vars = secrets.variables.entry(place.id()).or_default();
    match name {
        None if vars.contains_key(&upper) => gh_error(StatusCode::CONFLICT, "Already exists - Variable already exists"),
        None => {
            let stored = StoredVariable { value: value.to_string(), visibility, selected_repository_ids: selected };
            vars.insert(upper, stored);
            (StatusCode::CREATED, axum::Json(json!({}))).into_response()
        }
        Some(existing) => match vars.get_mut(&existing.to_ascii_uppercase()) {
            Some(v) => {
                v.value = value.to_string();
                if visibility.is_some() {
                    (v.visibility, v.selected_repository_ids) = (visibility, selected);
                }
                StatusCode::NO_CONTENT.into_response()
            }
            None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
        },
    }
}

/// `POST /repos/{owner}/{repo}/actions/variables`.
pub(super) async fn repo_variable_create(
    State(inner): State<Arc<Inner>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<axum::Json<Value>>,
) -> Response {
    set_variable(&inner, &headers, Place::Repository { owner, repo }, None, body)
}

/// `PATCH /repos/{owner}/{repo}/actions/variables/{name}`.
pub(super) async fn repo_variable_update(
    State(inner): State<Arc<Inner>>,
    Path((owner, repo, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Option<axum::Json<Value>>,
) -> Response {
    set_variable(&inner, &headers, Place::Repository { owner, repo }, Some(&name), body)
}

/// `POST /repos/{owner}/{repo}/environments/{environment_name}/variables`.
pub(super) async fn env_variable_create(
    State(inner): State<Arc<Inner>>,
    Path((owner, repo, environment)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Option<axum::Json<Value>>,
) -> Response {
    set_variable(&inner, &headers, Place::Environment { owner, repo, environment }, None, body)
}

/// `PATCH /repos/{owner}/{repo}/environments/{environment_name}/variables/{name}`.
pub(super) async fn env_variable_update(
    State(inner): State<Arc<Inner>>,
    Path((owner, repo, environment, name)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Option<axum::Json<Value>>,
) -> Response {
    set_variable(&inner, &headers, Place::Environment { owner, repo, environment }, Some(&name), body)
}

/// `POST /orgs/{org}/actions/variables` (with `visibility`, and `selected_repository_ids` for
/// `selected`).
pub(super) async fn org_variable_create(
    State(inner): State<Arc<Inner>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    body: Option<axum::Json<Value>>,
) -> Response {
    set_variable(&inner, &headers, Place::Organization { org }, None, body)
}

/// `PATCH /orgs/{org}/actions/variables/{name}`.
pub(super) async fn org_variable_update(
    State(inner): State<Arc<Inner>>,
    Path((org, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<axum::Json<Value>>,
) -> Response {
    set_variable(&inner, &headers, Place::Organization { org }, Some(&name), body)
}

/// `GET /repos/{owner}/{repo}/actions/secrets/{secret_name}` (schema `actions-secret`).
pub(super) async fn repo_get(
    State(inner): State<Arc<Inner>>,
    Path((owner, repo, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    get_one(&inner, &headers, Place::Repository { owner, repo }, &name)
}

/// `GET /repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}`.
pub(super) async fn env_get(
    State(inner): State<Arc<Inner>>,
    Path((owner, repo, environment, name)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    get_one(&inner, &headers, Place::Environment { owner, repo, environment }, &name)
}

/// `GET /orgs/{org}/actions/secrets/{secret_name}` (schema `organization-actions-secret`).
pub(super) async fn org_get(
    State(inner): State<Arc<Inner>>,
    Path((org, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    get_one(&inner, &headers, Place::Organization { org }, &name)
}
