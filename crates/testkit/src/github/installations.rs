//! Installations, installation tokens, and injected faults of the GitHub double.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::tokens::{Grant, Minter, TokenFormat};
use super::{Inner, Refusal, authenticate_app, gh_error, now};

/// An account (user, organization or enterprise) an App is installed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The login (an enterprise's slug).
    pub login: String,
    pub id: i64,
    pub node_id: String,
    /// `User`, `Organization` or `Enterprise`.
    pub kind: String,
}

/// A repository of an installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub id: i64,
    pub name: String,
}

/// An installation of an App.
#[derive(Debug, Clone)]
pub struct Installation {
    pub id: i64,
    pub app_id: i64,
    pub account: Account,
    pub repositories: Vec<Repo>,
    /// What the installation granted: permission → `read`/`write`/`admin`.
    pub permissions: BTreeMap<String, String>,
}

impl Installation {
    /// An installation on an organization `login` with repositories `repos` and the
    /// permissions `metadata: read, contents: write, issues: write`.
    pub fn org(app_id: i64, id: i64, login: &str, repos: &[(i64, &str)]) -> Self {
        Installation {
            id,
            app_id,
            account: Account {
                login: login.to_string(),
                id: id * 10,
                node_id: format!("O_kgDO{login}"),
                kind: "Organization".into(),
            },
            repositories: repos.iter().map(|(id, name)| Repo { id: *id, name: name.to_string() }).collect(),
            permissions: [("metadata", "read"), ("contents", "write"), ("issues", "write")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The same, on a user account.
    pub fn user(app_id: i64, id: i64, login: &str, repos: &[(i64, &str)]) -> Self {
        let mut i = Self::org(app_id, id, login, repos);
        i.account.kind = "User".into();
        i.account.node_id = format!("U_kgDO{login}");
        i
    }

    /// An installation on the enterprise `slug` (no repositories; the permission
    /// `enterprise_custom_properties_for_organizations: write`): GitHub serves its account as an
    /// `enterprise` (a slug, no login) and its `target_type` as `Enterprise`.
    pub fn enterprise(app_id: i64, id: i64, slug: &str) -> Self {
        let mut i = Self::org(app_id, id, slug, &[]);
        i.account.kind = "Enterprise".into();
        i.account.node_id = format!("E_kgDO{slug}");
        i.permissions = BTreeMap::from([("enterprise_custom_properties_for_organizations".into(), "write".into())]);
        i
    }
}

/// An installation token the double issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub installation_id: i64,
    pub expires_at: i64,
    pub permissions: BTreeMap<String, String>,
    /// `None`: all of the installation's repositories.
    pub repositories: Option<Vec<String>>,
    pub revoked: bool,
    /// The format it was minted in.
    pub format: TokenFormat,
}

/// A failure to inject for requests whose `METHOD /path?query` contains `matches`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub matches: String,
    /// How many matching requests it hits.
    pub times: usize,
    pub kind: FaultKind,
}

#[derive(Debug, Clone)]
pub enum FaultKind {
    /// Answer with this status and a GitHub error body.
    Status(u16),
    /// A rate limit: 403 or 429 with `retry-after` seconds (or none: a secondary limit message).
    RateLimit { status: u16, retry_after: Option<u64> },
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Act on the request (mint the token), then wait this long before answering: a caller that
    /// times out cannot know whether anything happened.
    AnswerLate(Duration),
    /// Act on the request, then answer with this status (a gateway's 502 after the write landed):
    /// the caller cannot tell from the answer whether anything happened.
    LandThenFail(u16),
}

impl Fault {
    pub fn new(matches: &str, times: usize, kind: FaultKind) -> Self {
        Fault { matches: matches.to_string(), times, kind }
    }
}

/// The installation-related state.
#[derive(Default)]
pub(super) struct Installations {
    pub by_id: BTreeMap<i64, Installation>,
    pub tokens: HashMap<String, IssuedToken>,
    pub faults: Vec<Fault>,
    pub latency: Duration,
    /// Mints tokens in either format (and checks stateless ones).
    pub minter: Minter,
    /// The format minted when the request does not force one ([`TokenFormat::Stateless`]).
    pub token_format: TokenFormat,
    /// `GET /rate_limit` figures per installation: category → (limit, used, reset).
    pub rate_limits: HashMap<i64, BTreeMap<String, (i64, i64, i64)>>,
    /// The token of every `GET /rate_limit` call, in order.
    pub rate_limit_tokens: Vec<IssuedToken>,
    /// Installations uninstalled right after a listing page is served: (page, installation).
    pub uninstall_after_page: Vec<(usize, i64)>,
    /// How long a token lives, in seconds, if not GitHub's hour.
    pub token_lifetime: Option<i64>,
    /// Whether mints ignore the scope asked for (see [`super::GitHubDouble::answer_mints_too_wide`]).
    pub too_wide: bool,
}

impl Installations {
    /// Issues an installation token valid for an hour, as GitHub does (or for the lifetime of
    /// [`super::GitHubDouble::set_token_lifetime`]), and remembers it: in the
    /// format `forced` (the request's `X-GitHub-Stateless-S2S-Token`), else the double's default.
    fn issue(
        &mut self,
        installation_id: i64,
        permissions: BTreeMap<String, String>,
        repositories: Option<Vec<String>>,
        forced: Option<TokenFormat>,
    ) -> IssuedToken {
        let format = forced.unwrap_or(self.token_format);
        let app_id = self.by_id.get(&installation_id).map_or(0, |i| i.app_id);
        let expires_at = now() + self.token_lifetime.unwrap_or(3600);
        let grant = Grant {
            app_id,
            installation_id,
            expires_at,
            permissions: &permissions,
            repositories: repositories.as_deref(),
        };
        let token = self.minter.mint(format, &grant);
        let issued =
            IssuedToken { token, installation_id, expires_at, permissions, repositories, revoked: false, format };
        self.tokens.insert(issued.token.clone(), issued.clone());
        issued
    }
}

impl super::GitHubDouble {
    /// Adds or replaces an installation.
    pub fn install(&self, installation: Installation) {
        self.installations().by_id.insert(installation.id, installation);
    }

    /// Removes an installation (an uninstall).
    pub fn uninstall(&self, installation_id: i64) {
        self.installations().by_id.remove(&installation_id);
    }

    /// Uninstalls `installation_id` just after page `page` of `GET /app/installations` is served,
    /// as happens when someone uninstalls the App during a listing: GitHub's offset pages then
    /// shift, and the first installation of the next page is never listed.
    pub fn uninstall_after_page(&self, page: usize, installation_id: i64) {
        self.installations().uninstall_after_page.push((page, installation_id));
    }

    /// The format minted from now on when a mint does not force one with
    /// `X-GitHub-Stateless-S2S-Token` (also for the `issue_*_for_test` helpers). GitHub's, and the
    /// double's, default is [`TokenFormat::Stateless`].
    pub fn set_token_format(&self, format: TokenFormat) {
        self.installations().token_format = format;
    }

    /// While `on`, every mint ignores the scope asked for and grants (and answers) all the
    /// installation's permissions and repositories (`repository_selection: all`): a GitHub that
    /// answers wider than asked, for the tests of the proof after the mint.
    pub fn answer_mints_too_wide(&self, on: bool) {
        self.installations().too_wide = on;
    }

    /// Tokens issued from now on expire after `lifetime` instead of GitHub's hour, so that tests
    /// see their users renew them.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.installations().token_lifetime = Some(lifetime.as_secs() as i64);
    }

    /// Every token issued so far.
    pub fn issued_tokens(&self) -> Vec<IssuedToken> {
        let mut tokens: Vec<_> = self.installations().tokens.values().cloned().collect();
        tokens.sort_by(|a, b| a.token.cmp(&b.token));
        tokens
    }

    /// Issues a `metadata: read` token directly (for tests of token users, without an App JWT).
    pub fn issue_token_for_test(&self, installation_id: i64) -> String {
        let permissions = BTreeMap::from([("metadata".to_string(), "read".to_string())]);
        self.installations().issue(installation_id, permissions, None, None).token
    }

    /// Issues a token with `permissions` for `repositories` (`None`: all of the installation's)
    /// directly, for tests of token users, without an App JWT.
    pub fn issue_scoped_token_for_test(
        &self,
        installation_id: i64,
        permissions: &[(&str, &str)],
        repositories: Option<&[&str]>,
    ) -> String {
        let permissions = permissions.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let repositories = repositories.map(|r| r.iter().map(|n| n.to_string()).collect());
        self.installations().issue(installation_id, permissions, repositories, None).token
    }

    /// The token record of `token`, if the double issued it.
    pub fn issued(&self, token: &str) -> Option<IssuedToken> {
        self.installations().tokens.get(token).cloned()
    }

    /// Injects a fault.
    pub fn inject(&self, fault: Fault) {
        self.installations().faults.push(fault);
    }

    /// Removes all injected faults.
    pub fn clear_faults(&self) {
        self.installations().faults.clear();
    }

    /// Sets what `GET /rate_limit` reports for an installation: category → (limit, used, reset).
    pub fn set_rate_limit(&self, installation_id: i64, figures: &[(&str, i64, i64, i64)]) {
        let figures = figures.iter().map(|(c, l, u, r)| (c.to_string(), (*l, *u, *r))).collect();
        self.installations().rate_limits.insert(installation_id, figures);
    }

    /// The tokens `GET /rate_limit` was called with.
    pub fn rate_limit_tokens(&self) -> Vec<IssuedToken> {
        self.installations().rate_limit_tokens.clone()
    }

    /// Adds latency to every response.
    pub fn set_latency(&self, latency: Duration) {
        self.installations().latency = latency;
    }

    fn installations(&self) -> std::sync::MutexGuard<'_, Installations> {
        self.inner.installations.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Middleware: latency and injected faults, before any handler.
pub(super) async fn faults(State(inner): State<Arc<Inner>>, req: Request, next: axum::middleware::Next) -> Response {
    let target = format!("{} {}", req.method(), req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(""));
    let (latency, fault) = {
        let mut state = inner.installations.lock().unwrap_or_else(PoisonError::into_inner);
        let fault = state.faults.iter_mut().find(|f| f.times > 0 && target.contains(&f.matches)).map(|f| {
            f.times -= 1;
            f.kind.clone()
        });
        (state.latency, fault)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        None => next.run(req).await,
        Some(FaultKind::Delay(d)) => {
            tokio::time::sleep(d).await;
            next.run(req).await
        }
        Some(FaultKind::AnswerLate(d)) => {
            let resp = next.run(req).await;
            tokio::time::sleep(d).await;
            resp
        }
        Some(FaultKind::LandThenFail(code)) => {
            let _landed = next.run(req).await;
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            gh_error(status, "Server Error")
        }
        Some(FaultKind::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            gh_error(status, if code >= 500 { "Server Error" } else { "Injected failure" })
        }
        Some(FaultKind::RateLimit { status, retry_after }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            let mut resp = gh_error(
                status,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            );
            if let Some(secs) = retry_after
                && let Ok(v) = HeaderValue::from_str(&secs.to_string())
            {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
    }
}

#[derive(Deserialize)]
pub(super) struct PageQuery {
    per_page: Option<usize>,
    page: Option<usize>,
}

/// `GET /app/installations`: the App's installations, paginated (per_page ≤ 100, default 30),
/// with a `Link` header as GitHub sends it.
pub(super) async fn list(State(inner): State<Arc<Inner>>, Query(q): Query<PageQuery>, headers: HeaderMap) -> Response {
    let app = match authenticate_app(&inner, &headers) {
        Ok(app) => app,
        Err(refusal) => return refusal.into_response(),
    };
    let per_page = q.per_page.unwrap_or(30).clamp(1, 100);
    let page = q.page.unwrap_or(1).max(1);
    let all: Vec<Value> = {
        let state = inner.installations.lock().unwrap_or_else(PoisonError::into_inner);
        state.by_id.values().filter(|i| i.app_id == app.id).map(installation_json).collect()
    };
    let last = all.len().div_ceil(per_page).max(1);
    let items: Vec<Value> = all.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    {
        let mut state = inner.installations.lock().unwrap_or_else(PoisonError::into_inner);
        let due: Vec<i64> = state.uninstall_after_page.iter().filter(|(p, _)| *p == page).map(|(_, id)| *id).collect();
        state.uninstall_after_page.retain(|(p, _)| *p != page);
        for id in due {
            state.by_id.remove(&id);
        }
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let link =
        |p: usize, rel: &str| format!("<http://{host}/app/installations?per_page={per_page}&page={p}>; rel=\"{rel}\"");
    let mut links = Vec::new();
    if page < last {
        links.push(link(page + 1, "next"));
        links.push(link(last, "last"));
    }
    if page > 1 {
        links.push(link(1, "first"));
        links.push(link(page - 1, "prev"));
    }
    let mut resp = axum::Json(Value::Array(items)).into_response();
    if !links.is_empty()
        && let Ok(v) = HeaderValue::from_str(&links.join(", "))
    {
        resp.headers_mut().insert(header::LINK, v);
    }
    resp
}

/// `GET /app/installations/{id}`: one installation of the App, or 404.
pub(super) async fn get_one(State(inner): State<Arc<Inner>>, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    find(&inner, &headers, |i| i.id == id)
}

/// `GET /users/{u}/installation`, `/orgs/{o}/installation`: the App's installation on an account.
pub(super) async fn by_account(
    State(inner): State<Arc<Inner>>,
    Path(login): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let want_kind = if req.uri().path().starts_with("/orgs/") { "Organization" } else { "User" };
    find(&inner, &headers, |i| i.account.login.eq_ignore_ascii_case(&login) && i.account.kind == want_kind)
}

/// `GET /enterprises/{enterprise}/installation`: the App's installation on an enterprise (by slug).
pub(super) async fn by_enterprise(
    State(inner): State<Arc<Inner>>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Response {
    find(&inner, &headers, |i| i.account.login.eq_ignore_ascii_case(&slug) && i.account.kind == "Enterprise")
}

/// `GET /repos/{owner}/{repo}/installation`.
pub(super) async fn by_repo(
    State(inner): State<Arc<Inner>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    find(&inner, &headers, |i| {
        i.account.login.eq_ignore_ascii_case(&owner)
            && i.repositories.iter().any(|r| r.name.eq_ignore_ascii_case(&repo))
    })
}

fn find(inner: &Inner, headers: &HeaderMap, pred: impl Fn(&Installation) -> bool) -> Response {
    let app = match authenticate_app(inner, headers) {
        Ok(app) => app,
        Err(refusal) => return refusal.into_response(),
    };
    let state = inner.installations.lock().unwrap_or_else(PoisonError::into_inner);
    match state.by_id.values().find(|i| i.app_id == app.id && pred(i)) {
        Some(i) => axum::Json(installation_json(i)).into_response(),
        None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// `POST /app/installations/{id}/access_tokens`: mints a token, optionally scoped down to
/// `repositories` (names), `repository_ids` and `permissions`, refusing (422) what the
/// installation does not have, as GitHub does; stateless unless `X-GitHub-Stateless-S2S-Token:
/// disabled` (or the double's default) says classic.
pub(super) async fn mint(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Option<axum::Json<Value>>,
) -> Response {
    let app = match authenticate_app(&inner, &headers) {
        Ok(app) => app,
        Err(refusal) => return refusal.into_response(),
    };
    let body = body.map(|b| b.0).unwrap_or(Value::Null);
    let mut state = inner.installations.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(installation) = state.by_id.get(&id).filter(|i| i.app_id == app.id).cloned() else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let rank = |level: &str| match level {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        _ => 99,
    };
    let mut permissions = installation.permissions.clone();
    if let Some(requested) = body.get("permissions").and_then(Value::as_object) {
        permissions = BTreeMap::new();
        for (name, level) in requested {
            let level = level.as_str().unwrap_or_default();
            match installation.permissions.get(name) {
                Some(granted) if rank(level) <= rank(granted) => {
                    permissions.insert(name.clone(), level.to_string());
                }
                _ => {
                    return gh_error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "The permissions requested are not granted to this installation.",
                    );
                }
            }
        }
    }
    let mut repos: Option<Vec<Repo>> = None;
    let names = body.get("repositories").and_then(Value::as_array);
    let ids = body.get("repository_ids").and_then(Value::as_array);
    if names.is_some() || ids.is_some() {
        let mut chosen = Vec::new();
        for n in names.into_iter().flatten() {
            match installation.repositories.iter().find(|r| Some(r.name.as_str()) == n.as_str()) {
                Some(r) => chosen.push(r.clone()),
                None => return unknown_repo(),
            }
        }
        for i in ids.into_iter().flatten() {
            match installation.repositories.iter().find(|r| Some(r.id) == i.as_i64()) {
                Some(r) if !chosen.contains(r) => chosen.push(r.clone()),
                Some(_) => {}
                None => return unknown_repo(),
            }
        }
        repos = Some(chosen);
    }
    if state.too_wide {
        (permissions, repos) = (installation.permissions.clone(), None);
    }
    let names = repos.as_ref().map(|r| r.iter().map(|r| r.name.clone()).collect());
    let issued = state.issue(id, permissions.clone(), names, TokenFormat::requested(&headers));
    let (token, expires_at) = (issued.token, issued.expires_at);
    let mut out = json!({
        "token": token,
        "expires_at": super::rfc3339(expires_at),
        "permissions": permissions,
        "repository_selection": if repos.is_some() { "selected" } else { "all" },
    });
    if let Some(repos) = &repos {
        out["repositories"] = Value::Array(repos.iter().map(|r| repo_json(&installation.account, r)).collect());
    }
    (StatusCode::CREATED, axum::Json(out)).into_response()
}

fn unknown_repo() -> Response {
    gh_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "There is at least one repository that does not exist or is not accessible to the parent installation.",
    )
}

/// The installation token of a request (`Authorization: Bearer ghs_…` or `token ghs_…`), if live:
/// a classic one by lookup; a stateless one by its signature, App and expiry first, then the lookup
/// (which holds what it grants, and whether it was revoked).
pub(super) fn authenticate_installation(inner: &Inner, headers: &HeaderMap) -> Result<IssuedToken, Refusal> {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let token = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("token ")).unwrap_or_default();
    let state = inner.installations.lock().unwrap_or_else(PoisonError::into_inner);
    if TokenFormat::of(token) == Some(TokenFormat::Stateless) && !state.minter.verify_stateless(token, now()) {
        return Err(Refusal(StatusCode::UNAUTHORIZED, "Bad credentials"));
    }
    match state.tokens.get(token) {
        Some(t) if !t.revoked && t.expires_at > now() => Ok(t.clone()),
        _ => Err(Refusal(StatusCode::UNAUTHORIZED, "Bad credentials")),
    }
}

/// `DELETE /installation/token`: revokes the token used to call it, in either format.
pub(super) async fn revoke(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    match authenticate_installation(&inner, &headers) {
        Ok(t) => {
            let mut state = inner.installations.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(t) = state.tokens.get_mut(&t.token) {
                t.revoked = true;
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// An installation as GitHub's `installation` schema has it.
pub fn installation_json(i: &Installation) -> Value {
    json!({
        "id": i.id,
        "account": account_json(&i.account),
        "repository_selection": "selected",
        "access_tokens_url": format!("https://api.github.com/app/installations/{}/access_tokens", i.id),
        "repositories_url": "https://api.github.com/installation/repositories",
        "html_url": format!("https://github.com/organizations/{}/settings/installations/{}", i.account.login, i.id),
        "app_id": i.app_id,
        "app_slug": format!("appcreds-test-app-{}", i.app_id),
        "target_id": i.account.id,
        "target_type": i.account.kind,
        "permissions": i.permissions,
        "events": ["push", "pull_request"],
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "single_file_name": null,
        "has_multiple_single_files": false,
        "single_file_paths": [],
        "suspended_by": null,
        "suspended_at": null
    })
}

/// An account as GitHub's `simple-user` schema has it, or an enterprise as its `enterprise`
/// schema has it (a slug and a name, no login and no type).
pub fn account_json(a: &Account) -> Value {
    if a.kind == "Enterprise" {
        return json!({
            "id": a.id, "slug": a.login, "name": format!("{} (enterprise)", a.login), "node_id": a.node_id,
            "html_url": format!("https://github.com/enterprises/{}", a.login),
            "website_url": null, "description": null,
            "avatar_url": format!("https://avatars.githubusercontent.com/b/{}?v=4", a.id),
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        });
    }
    let api = format!("https://api.github.com/users/{}", a.login);
    json!({
        "login": a.login, "id": a.id, "node_id": a.node_id, "type": a.kind, "site_admin": false,
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", a.id),
        "gravatar_id": "",
        "url": api,
        "html_url": format!("https://github.com/{}", a.login),
        "followers_url": format!("{api}/followers"),
        "following_url": format!("{api}/following{{/other_user}}"),
        "gists_url": format!("{api}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/subscriptions"),
        "organizations_url": format!("{api}/orgs"),
        "repos_url": format!("{api}/repos"),
        "events_url": format!("{api}/events{{/privacy}}"),
        "received_events_url": format!("{api}/received_events")
    })
}

fn repo_json(owner: &Account, r: &Repo) -> Value {
    json!({
        "id": r.id, "node_id": format!("R_kgDO{}", r.id), "name": r.name,
        "full_name": format!("{}/{}", owner.login, r.name), "private": true, "owner": account_json(owner),
        "html_url": format!("https://github.com/{}/{}", owner.login, r.name)
    })
}

/// `GET /rate_limit` (schema `rate-limit-overview`): the figures a test set for the token's
/// installation, or GitHub's defaults for an installation.
pub(super) async fn rate_limit(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    let token = match authenticate_installation(&inner, &headers) {
        Ok(t) => t,
        Err(refusal) => return refusal.into_response(),
    };
    let mut state = inner.installations.lock().unwrap_or_else(PoisonError::into_inner);
    state.rate_limit_tokens.push(token.clone());
    let reset = now() + 3600;
    let figures = state.rate_limits.get(&token.installation_id).cloned().unwrap_or_else(|| {
        [("core", 5000, 0, reset), ("search", 30, 0, now() + 60), ("graphql", 5000, 0, reset)]
            .into_iter()
            .map(|(c, l, u, r)| (c.to_string(), (l, u, r)))
            .collect()
    });
    let resource = |(limit, used, reset): (i64, i64, i64)| json!({"limit": limit, "used": used, "remaining": limit - used, "reset": reset});
    let resources: serde_json::Map<String, Value> = figures.iter().map(|(c, f)| (c.clone(), resource(*f))).collect();
    let rate = figures.get("core").copied().map(resource).unwrap_or_else(|| resource((5000, 0, reset)));
    axum::Json(json!({"resources": resources, "rate": rate})).into_response()
}
