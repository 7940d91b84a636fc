//! A double of the GitHub REST API on loopback, for the endpoints appcreds calls.
//!
//! It authenticates like GitHub: App endpoints need `Authorization: Bearer <JWT>`, an RS256 JWT
//! issued by the App (`iss`: its App ID, or its client ID) whose signature verifies with the App's
//! registered public key, `iat` not in the future (60 s
//! of skew allowed), `exp` in the future, and `exp − iat` at most 600 s. Errors carry GitHub's
//! `{message, documentation_url}` body. Responses follow the schemas of GitHub's OpenAPI
//! description (`@octokit/openapi`, `api.github.com.json`).

pub mod installations;
pub mod jwt;
pub mod oidc;
mod secrets;
pub mod tokens;

pub use secrets::{StoredSecret, StoredVariable};

pub use installations::{Account, Fault, FaultKind, Installation, IssuedToken, Repo};
pub use tokens::TokenFormat;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use rsa::RsaPublicKey;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Clock skew GitHub tolerates on `iat`.
pub const ALLOWED_SKEW_SECS: i64 = 60;
/// Longest JWT lifetime GitHub accepts.
pub const MAX_JWT_LIFETIME_SECS: i64 = 600;

const DOCS: &str = "https://docs.github.com/rest";

/// A GitHub App known to the double.
#[derive(Debug, Clone)]
pub struct App {
    pub id: i64,
    pub slug: String,
    /// The App's client ID (`Iv1.` and 16 hex digits of the ID): GitHub accepts it as a JWT's
    /// issuer as well as the App ID.
    pub client_id: String,
    /// The App's registered public keys: GitHub accepts a JWT signed by any of them (an App has
    /// two while its private key is being rotated).
    pub public_keys: Vec<RsaPublicKey>,
}

#[derive(Default)]
struct Inner {
    /// The double's own URL (the OIDC issuer).
    base: std::sync::OnceLock<String>,
    oidc: Mutex<oidc::Provider>,
    apps: RwLock<HashMap<i64, App>>,
    calls: Mutex<BTreeMap<String, usize>>,
    /// Requests being answered now, and the most there have been at once.
    in_flight: Mutex<(usize, usize)>,
    installations: Mutex<installations::Installations>,
    secrets: Mutex<secrets::Secrets>,
}

/// The running double. Dropping it stops the server.
pub struct GitHubDouble {
    addr: SocketAddr,
    inner: Arc<Inner>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl GitHubDouble {
    /// Starts the double on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0").await
    }

    /// Starts the double on `addr` (e.g. `127.0.0.1:9001` for the local stack).
    pub async fn start_on(addr: &str) -> std::io::Result<Self> {
        let inner = Arc::new(Inner::default());
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let _ = inner.base.set(format!("http://{addr}"));
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(GitHubDouble { addr, inner, stop: Some(stop), task: Some(task) })
    }

    /// The API base URL, e.g. `http://127.0.0.1:PORT` (as `GITHUB_API_URL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The value a repository's Actions secret holds, opened with the repository's key: what
    /// was sealed for it, byte for byte (`None` if never written).
    pub fn repository_secret(&self, repository: &str, name: &str) -> Option<Vec<u8>> {
        self.secret(&secrets::repository_id(repository), name).map(|s| s.value)
    }

    /// Puts a value into a repository's Actions secret, as someone would by hand.
    pub fn set_repository_secret(&self, repository: &str, name: &str, value: &[u8]) {
        self.inner.secrets.lock().unwrap_or_else(PoisonError::into_inner).set(
            &secrets::repository_id(repository),
            name,
            value,
        );
    }

    /// The value an environment's secret holds (`repository` is `owner/name`).
    pub fn environment_secret(&self, repository: &str, environment: &str, name: &str) -> Option<Vec<u8>> {
        self.secret(&secrets::environment_id(repository, environment), name).map(|s| s.value)
    }

    /// An organisation's Actions secret: its value, visibility and selected repositories.
    pub fn organization_secret(&self, org: &str, name: &str) -> Option<StoredSecret> {
        self.secret(&secrets::organization_id(org), name)
    }

    /// A repository's Actions variable (`repository` is `owner/name`).
    pub fn repository_variable(&self, repository: &str, name: &str) -> Option<String> {
        self.inner
            .secrets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .variable(&secrets::repository_id(repository), name)
            .map(|v| v.value)
    }

    /// An environment's variable.
    pub fn environment_variable(&self, repository: &str, environment: &str, name: &str) -> Option<String> {
        let secrets = self.inner.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        secrets.variable(&secrets::environment_id(repository, environment), name).map(|v| v.value)
    }

    /// An organisation's Actions variable: its value, visibility and selected repositories.
    pub fn organization_variable(&self, org: &str, name: &str) -> Option<StoredVariable> {
        let secrets = self.inner.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        secrets.variable(&secrets::organization_id(org), name)
    }

    fn secret(&self, place: &str, name: &str) -> Option<StoredSecret> {
        self.inner.secrets.lock().unwrap_or_else(PoisonError::into_inner).get(place, name)
    }

    /// Creates environment `environment` of `repository` (`owner/name`): its secrets can be
    /// written from then on (GitHub answers 404 for an environment that does not exist).
    pub fn add_environment(&self, repository: &str, environment: &str) {
        let mut secrets = self.inner.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        secrets.environments.insert(secrets::environment_id(repository, environment));
    }

    /// Registers an App with its public key (DER SubjectPublicKeyInfo, as from KMS `GetPublicKey`).
    pub fn register_app(&self, id: i64, public_key_der: &[u8]) -> Result<(), String> {
        let app = App {
            id,
            slug: format!("appcreds-test-app-{id}"),
            client_id: format!("Iv1.{id:016x}"),
            public_keys: vec![jwt::public_key(public_key_der)?],
        };
        self.inner.apps.write().unwrap_or_else(PoisonError::into_inner).insert(id, app);
        Ok(())
    }

    /// The client ID of a registered App.
    pub fn app_client_id(&self, id: i64) -> Option<String> {
        self.inner.apps.read().unwrap_or_else(PoisonError::into_inner).get(&id).map(|app| app.client_id.clone())
    }

    /// Adds a public key to a registered App, as "Generate a private key" in the App's settings
    /// does (the old key stays valid until it is deleted).
    pub fn add_app_key(&self, id: i64, public_key_der: &[u8]) -> Result<(), String> {
        let key = jwt::public_key(public_key_der)?;
        let mut apps = self.inner.apps.write().unwrap_or_else(PoisonError::into_inner);
        apps.get_mut(&id).ok_or(format!("App {id} is not registered"))?.public_keys.push(key);
        Ok(())
    }

    /// Deletes a public key from an App: JWTs it signed are refused from then on.
    pub fn remove_app_key(&self, id: i64, public_key_der: &[u8]) -> Result<(), String> {
        let key = jwt::public_key(public_key_der)?;
        let mut apps = self.inner.apps.write().unwrap_or_else(PoisonError::into_inner);
        apps.get_mut(&id).ok_or(format!("App {id} is not registered"))?.public_keys.retain(|k| *k != key);
        Ok(())
    }

    /// How many requests reached `route` (e.g. `"GET /app"`), whatever their outcome.
    pub fn calls(&self, route: &str) -> usize {
        self.inner.calls.lock().unwrap_or_else(PoisonError::into_inner).get(route).copied().unwrap_or(0)
    }

    /// All request counts by route.
    pub fn all_calls(&self) -> BTreeMap<String, usize> {
        self.inner.calls.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The most requests the double has been answering at once (since [`reset_in_flight`]).
    ///
    /// [`reset_in_flight`]: GitHubDouble::reset_in_flight
    pub fn max_in_flight(&self) -> usize {
        self.inner.in_flight.lock().unwrap_or_else(PoisonError::into_inner).1
    }

    /// Counts [`max_in_flight`](GitHubDouble::max_in_flight) from the requests under way now.
    pub fn reset_in_flight(&self) {
        let mut in_flight = self.inner.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        in_flight.1 = in_flight.0;
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        self.shutdown();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for GitHubDouble {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/app", get(get_app))
        .route("/app/installations", get(installations::list))
        .route("/app/installations/{id}", get(installations::get_one))
        .route("/app/installations/{id}/access_tokens", post(installations::mint))
        .route("/users/{login}/installation", get(installations::by_account))
        .route("/orgs/{login}/installation", get(installations::by_account))
        .route("/enterprises/{enterprise}/installation", get(installations::by_enterprise))
        .route("/repos/{owner}/{repo}/installation", get(installations::by_repo))
        .route("/installation/token", delete(installations::revoke))
        .route("/rate_limit", get(installations::rate_limit))
        .route("/repos/{owner}/{repo}/actions/secrets", get(secrets::repo_list))
        .route("/repos/{owner}/{repo}/actions/secrets/public-key", get(secrets::repo_public_key))
        .route("/repos/{owner}/{repo}/actions/secrets/{name}", put(secrets::repo_put).get(secrets::repo_get))
        .route("/repos/{owner}/{repo}/environments/{environment}/secrets", get(secrets::env_list))
        .route("/repos/{owner}/{repo}/environments/{environment}/secrets/public-key", get(secrets::env_public_key))
        .route(
            "/repos/{owner}/{repo}/environments/{environment}/secrets/{name}",
            put(secrets::env_put).get(secrets::env_get),
        )
        .route("/repos/{owner}/{repo}/actions/variables", post(secrets::repo_variable_create))
        .route("/repos/{owner}/{repo}/actions/variables/{name}", patch(secrets::repo_variable_update))
        .route("/repos/{owner}/{repo}/environments/{environment}/variables", post(secrets::env_variable_create))
        .route("/repos/{owner}/{repo}/environments/{environment}/variables/{name}", patch(secrets::env_variable_update))
        .route("/orgs/{org}/actions/secrets", get(secrets::org_list))
        .route("/orgs/{org}/actions/secrets/public-key", get(secrets::org_public_key))
        .route("/orgs/{org}/actions/secrets/{name}", put(secrets::org_put).get(secrets::org_get))
        .route("/orgs/{org}/actions/variables", post(secrets::org_variable_create))
        .route("/orgs/{org}/actions/variables/{name}", patch(secrets::org_variable_update))
        .route("/.well-known/openid-configuration", get(oidc::discovery))
        .route("/.well-known/jwks", get(oidc::jwks))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(inner.clone(), installations::faults))
        .layer(axum::middleware::from_fn_with_state(inner.clone(), count_calls))
        .with_state(inner)
}

async fn count_calls(State(inner): State<Arc<Inner>>, req: Request, next: axum::middleware::Next) -> Response {
    let route = format!("{} {}", req.method(), req.uri().path());
    *inner.calls.lock().unwrap_or_else(PoisonError::into_inner).entry(route).or_default() += 1;
    let _answering = InFlight::new(inner.clone());
    next.run(req).await
}

/// One request being answered (until dropped, also when the caller goes away).
struct InFlight(Arc<Inner>);

impl InFlight {
    fn new(inner: Arc<Inner>) -> Self {
        let mut in_flight = inner.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        in_flight.0 += 1;
        in_flight.1 = in_flight.1.max(in_flight.0);
        drop(in_flight);
        InFlight(inner)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.lock().unwrap_or_else(PoisonError::into_inner).0 -= 1;
    }
}

/// A GitHub error response: `{message, documentation_url}`.
pub fn gh_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message, "documentation_url": DOCS }))).into_response()
}

async fn not_found() -> Response {
    gh_error(StatusCode::NOT_FOUND, "Not Found")
}

fn rfc3339(unix: i64) -> String {
    appcreds_core::domain::clock::rfc3339(unix)
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

/// A refusal, as GitHub's status and message.
#[derive(Debug)]
pub struct Refusal(pub StatusCode, pub &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        gh_error(self.0, self.1)
    }
}

/// Authenticates an App request as GitHub does; returns the App or GitHub's 401.
fn authenticate_app(inner: &Inner, headers: &HeaderMap) -> Result<App, Refusal> {
    let unauthorized = |m: &'static str| Refusal(StatusCode::UNAUTHORIZED, m);
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let token = auth.strip_prefix("Bearer ").ok_or_else(|| unauthorized("A JSON web token could not be decoded"))?;
    let claims = jwt::peek_claims(token).map_err(|_| unauthorized("A JSON web token could not be decoded"))?;
    // The issuer is the App's ID (a number, or digits) or its client ID (any other string).
    let apps = inner.apps.read().unwrap_or_else(PoisonError::into_inner);
    let app = match claims.get("iss") {
        Some(Value::Number(n)) => n.as_i64().map(|id| apps.get(&id)),
        Some(Value::String(s)) => match s.parse::<i64>() {
            Ok(id) => Some(apps.get(&id)),
            Err(_) => Some(apps.values().find(|app| app.client_id == *s)),
        },
        _ => None,
    }
    .ok_or_else(|| unauthorized("'Issuer' claim ('iss') must be an Integer or a client ID"))?
    .cloned()
    .ok_or_else(|| unauthorized("Integration not found"))?;
    drop(apps);
    let verified = app
        .public_keys
        .iter()
        .find_map(|key| jwt::verify_rs256(key, token).ok())
        .ok_or_else(|| unauthorized("A JSON web token could not be decoded"))?;
    let (iat, exp) = match (
        verified.claims.get("iat").and_then(Value::as_i64),
        verified.claims.get("exp").and_then(Value::as_i64),
    ) {
        (Some(iat), Some(exp)) => (iat, exp),
        _ => {
            return Err(unauthorized("'Issued at' and 'Expiration time' claims must be Integers"));
        }
    };
    let now = now();
    if iat > now + ALLOWED_SKEW_SECS {
        return Err(unauthorized("'Issued at' claim ('iat') must be an Integer representing a time in the past"));
    }
    if exp <= now {
        return Err(unauthorized(
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        ));
    }
    if exp - iat > MAX_JWT_LIFETIME_SECS || exp > now + MAX_JWT_LIFETIME_SECS + ALLOWED_SKEW_SECS {
        return Err(unauthorized("Expiration time' claim ('exp') is too far in the future"));
    }
    Ok(app)
}

/// `GET /app`: the authenticated App (schema `integration`).
async fn get_app(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    match authenticate_app(&inner, &headers) {
        Ok(app) => axum::Json(app_json(&app)).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

fn app_json(app: &App) -> Value {
    json!({
        "id": app.id,
        "slug": app.slug,
        "node_id": format!("A_kwDOAppcreds{}", app.id),
        "client_id": app.client_id,
        "owner": installations::account_json(&Account {
            login: "appcreds-org".into(),
            id: 1001,
            node_id: "O_kgDOAppcreds".into(),
            kind: "Organization".into(),
        }),
        "name": format!("appcreds test app {}", app.id),
        "description": "A GitHub App served by the appcreds GitHub double",
        "external_url": "https://example.com",
        "html_url": format!("https://github.com/apps/{}", app.slug),
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "permissions": { "metadata": "read", "contents": "read", "issues": "write" },
        "events": ["push", "pull_request"],
        "installations_count": 0
    })
}
