//! The installation-token operation: `POST /tokens/installation`.
//!
//! The installation is named by `nodeId` (the account's node ID; looked up in the Installation
//! table, then in GitHub's listing, and written back), or **(ext)** by `owner` (login) or
//! `repository` (`owner/name`) through GitHub's lookup endpoints. Tokens are minted with the
//! requested `scopeDown` and kept in process until 10 minutes before they expire; resolutions are
//! kept for [`RESOLUTION_TTL_SECS`]. A cache hit makes no KMS, DynamoDB or GitHub call.

use std::sync::Arc;

use lambda_http::{Body, Request, Response};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{self, Fields, Transport};
use crate::app_jwt::{AppJwt, AppJwts};
use crate::audit;
use crate::cache::FlightCache;
use crate::clock::{Clock, rfc3339};
use crate::error::Error;
use crate::github::{Auth, GitHubClient};
use crate::installations::{InstallationRecord, InstallationStore};
use crate::scope::ScopeDown;
use crate::secret::Secret;
use crate::signer::Signer;
use crate::store::AppStore;
use crate::sync::{GitHubInstallation, list_installations};

pub const PATH: &str = "/tokens/installation";
/// A cached token is handed out only while it has more than this much life left.
pub const REUSE_MARGIN_SECS: i64 = 10 * 60;
/// How long a resolved installation is trusted without asking the table or GitHub again.
pub const RESOLUTION_TTL_SECS: i64 = 10 * 60;

/// What names the installation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    NodeId(String),
    Owner(String),
    Repository { owner: String, name: String },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::NodeId(n) => write!(f, "node ID {n}"),
            Target::Owner(o) => write!(f, "owner {o}"),
            Target::Repository { owner, name } => write!(f, "repository {owner}/{name}"),
        }
    }
}

/// A minted installation token and what GitHub granted.
#[derive(Debug, Clone)]
pub struct InstallationToken {
    pub token: Secret,
    pub expires_at: i64,
    /// GitHub's `expires_at`, as it wrote it.
    pub expires_at_text: String,
    pub granted: ScopeDown,
}

#[derive(Debug, Clone)]
struct Resolved {
    record: InstallationRecord,
    at: i64,
    /// Whether it came from the table (and so may be stale).
    from_table: bool,
}

/// Mints installation tokens.
pub struct InstallationTokens<S, A, C, I> {
    jwts: Arc<AppJwts<S, A, C>>,
    github: GitHubClient,
    store: I,
    resolutions: FlightCache<(i64, Target), Resolved>,
    tokens: FlightCache<(i64, i64, String), InstallationToken>,
    slugs: FlightCache<i64, (String, i64)>,
}

/// How long an App's slug is kept.
pub const SLUG_TTL_SECS: i64 = 3600;

#[derive(Deserialize)]
struct AccessToken {
    token: String,
    expires_at: String,
    #[serde(default)]
    permissions: std::collections::BTreeMap<String, String>,
    repositories: Option<Vec<RepoRef>>,
}

#[derive(Deserialize)]
struct RepoRef {
    id: i64,
    name: String,
}

impl<S: Signer, A: AppStore, C: Clock, I: InstallationStore> InstallationTokens<S, A, C, I> {
    pub fn new(jwts: Arc<AppJwts<S, A, C>>, github: GitHubClient, store: I) -> Self {
        Self {
            jwts,
            github,
            store,
            resolutions: FlightCache::new(10_000),
            tokens: FlightCache::new(10_000),
            slugs: FlightCache::new(10_000),
        }
    }

    fn now(&self) -> i64 {
        self.jwts.clock().now()
    }

    /// A token for the installation `target` of `app_id`, scoped to `scope`; the record it was
    /// minted for; and whether it came from the cache.
    pub async fn issue(
        &self,
        app_id: i64,
        target: &Target,
        scope: &ScopeDown,
    ) -> Result<(InstallationToken, InstallationRecord, bool), Error> {
        let resolved = self.resolve(app_id, target).await?;
        match self.token(app_id, &resolved.record, scope).await {
            // A table row can be stale (uninstalled, reinstalled): ask GitHub once more.
            Err(Error::GitHubRejected { status: 404, .. }) if resolved.from_table => {
                self.resolutions.invalidate(&(app_id, target.clone())).await;
                let fresh = self.resolve_at_github(app_id, target).await?;
                self.store.write(vec![fresh.clone()], Vec::new(), &rfc3339(self.now())).await?;
                let (token, cached) = self.token(app_id, &fresh, scope).await?;
                Ok((token, fresh, cached))
            }
            Err(e) => Err(e),
            Ok((token, cached)) => Ok((token, resolved.record, cached)),
        }
    }

    /// **(ext)** The App's slug (`GET /app`), kept for an hour; `None` if GitHub does not say.
    pub async fn app_slug(&self, app_id: i64) -> Option<String> {
        #[derive(Deserialize)]
        struct App {
            slug: Option<String>,
        }
        let fresh = |(_, at): &(String, i64)| self.now() - at < SLUG_TTL_SECS;
        let fetched = self
            .slugs
            .get_or_fill(app_id, fresh, || async {
                let jwt = self.jwts.get(app_id).await?;
                let app: App = self.github.get("/app", Auth::App { app_id, jwt: &jwt.token }).await?;
                Ok((app.slug.unwrap_or_default(), self.now()))
            })
            .await;
        match fetched {
            Ok(((slug, _), _)) if !slug.is_empty() => Some(slug),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(app_id, error = %e, "could not read the App's slug");
                None
            }
        }
    }

    /// A token for an installation already known (as the rate-limit scanner has them).
    pub async fn issue_for(
        &self,
        record: &InstallationRecord,
        scope: &ScopeDown,
    ) -> Result<(InstallationToken, bool), Error> {
        self.token(record.app_id, record, scope).await
    }

    async fn token(
        &self,
        app_id: i64,
        record: &InstallationRecord,
        scope: &ScopeDown,
    ) -> Result<(InstallationToken, bool), Error> {
        let key = (app_id, record.installation_id, scope.cache_key());
        let fresh = |t: &InstallationToken| t.expires_at - self.now() > REUSE_MARGIN_SECS;
        self.tokens.get_or_fill(key, fresh, || self.mint(app_id, record.installation_id, scope)).await
    }

    async fn mint(&self, app_id: i64, installation_id: i64, scope: &ScopeDown) -> Result<InstallationToken, Error> {
        let (path, body) = (&format!("/app/installations/{installation_id}/access_tokens"), &scope.github_body());
        let send = |jwt: AppJwt| async move {
            self.github.send(Method::POST, path, Auth::App { app_id, jwt: &jwt.token }, Some(body)).await
        };
        let jwt = self.jwts.get(app_id).await?;
        let cached = jwt.cached;
        let mut reply = send(jwt).await;
        if let Err(Error::GitHubUnauthorized { .. }) = &reply {
            self.jwts.invalidate(app_id).await;
            // GitHub refused a JWT it may have accepted before: the App's key was rotated and the
            // old one deleted on GitHub. One more try with a JWT signed under the current key.
            if cached {
                reply = send(self.jwts.get(app_id).await?).await;
                if let Err(Error::GitHubUnauthorized { .. }) = &reply {
                    self.jwts.invalidate(app_id).await;
                }
            }
        }
        let minted: AccessToken =
            serde_json::from_value(reply?.body).map_err(|e| Error::internal("reading GitHub's token", e))?;
        let expires_at =
            aws_smithy_types::DateTime::from_str(&minted.expires_at, aws_smithy_types::date_time::Format::DateTime)
                .map_err(|e| Error::internal("reading GitHub's expires_at", e))?
                .secs();
        let repositories = minted.repositories.unwrap_or_default();
        let granted = ScopeDown {
            repository_ids: repositories.iter().map(|r| r.id).collect(),
            repository_names: repositories.into_iter().map(|r| r.name).collect(),
            permissions: minted.permissions,
        };
        Ok(InstallationToken {
            token: Secret::new(minted.token),
            expires_at,
            expires_at_text: minted.expires_at,
            granted,
        })
    }

    async fn resolve(&self, app_id: i64, target: &Target) -> Result<Resolved, Error> {
        let fresh = |r: &Resolved| self.now() - r.at < RESOLUTION_TTL_SECS;
        let (resolved, _) = self
            .resolutions
            .get_or_fill((app_id, target.clone()), fresh, || async {
                if let Target::NodeId(node_id) = target
                    && let Some(record) = self.store.get(app_id, node_id).await?
                {
                    return Ok(Resolved { record, at: self.now(), from_table: true });
                }
                let record = self.resolve_at_github(app_id, target).await?;
                if self.store.get(app_id, &record.node_id).await?.as_ref() != Some(&record) {
                    self.store.write(vec![record.clone()], Vec::new(), &rfc3339(self.now())).await?;
                }
                Ok(Resolved { record, at: self.now(), from_table: false })
            })
            .await?;
        Ok(resolved)
    }

    async fn resolve_at_github(&self, app_id: i64, target: &Target) -> Result<InstallationRecord, Error> {
        let unknown = || Error::UnknownInstallation { app_id, target: target.to_string() };
        let found: Option<GitHubInstallation> = match target {
            Target::NodeId(node_id) => list_installations(&self.jwts, &self.github, app_id)
                .await?
                .into_iter()
                .find(|i| i.account.as_ref().is_some_and(|a| &a.node_id == node_id)),
            Target::Owner(login) => match self.lookup(app_id, &format!("/users/{login}/installation")).await? {
                Some(i) => Some(i),
                None => self.lookup(app_id, &format!("/orgs/{login}/installation")).await?,
            },
            Target::Repository { owner, name } => {
                self.lookup(app_id, &format!("/repos/{owner}/{name}/installation")).await?
            }
        };
        found.and_then(|i| i.record(app_id)).ok_or_else(unknown)
    }

    /// A lookup endpoint's installation, or `None` on 404.
    async fn lookup(&self, app_id: i64, path: &str) -> Result<Option<GitHubInstallation>, Error> {
        let jwt = self.jwts.get(app_id).await?;
        match self.github.get::<GitHubInstallation>(path, Auth::App { app_id, jwt: &jwt.token }).await {
            Ok(i) => Ok(Some(i)),
            Err(Error::GitHubRejected { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// GitHub logins: 1 to 39 characters, ASCII letters, digits and single inner hyphens.
fn valid_login(login: &str) -> bool {
    (1..=39).contains(&login.len())
        && login.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !login.starts_with('-')
        && !login.ends_with('-')
}

fn valid_repo_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Reads the installation target: exactly one of `nodeId`, `owner`, `repository`.
pub fn target_from_request(body: &Fields<'_>) -> Result<Target, Error> {
    let node_id = body.str("nodeId")?;
    let owner = body.str("owner")?;
    let repository = body.str("repository")?;
    let given = [node_id.is_some(), owner.is_some(), repository.is_some()].iter().filter(|g| **g).count();
    if given == 0 {
        return Err(Error::invalid("/nodeId", "must not be null (or give owner or repository)"));
    }
    if given > 1 {
        return Err(Error::invalid("/nodeId", "give only one of nodeId, owner and repository"));
    }
    if let Some(node_id) = node_id {
        if node_id.is_empty() || node_id.chars().count() > 256 {
            return Err(Error::invalid("/nodeId", "must be 1 to 256 characters long"));
        }
        return Ok(Target::NodeId(node_id.to_string()));
    }
    if let Some(owner) = owner {
        if !valid_login(owner) {
            return Err(Error::invalid("/owner", "is not a GitHub login"));
        }
        return Ok(Target::Owner(owner.to_string()));
    }
    let repository = repository.unwrap_or_default();
    match repository.split_once('/') {
        Some((owner, name)) if valid_login(owner) && valid_repo_name(name) => {
            Ok(Target::Repository { owner: owner.to_string(), name: name.to_string() })
        }
        _ => Err(Error::invalid("/repository", "must be owner/name")),
    }
}

/// The installation-token function's request handler.
pub struct InstallationTokenHandler<S, A, C, I> {
    tokens: InstallationTokens<S, A, C, I>,
    transport: Transport,
}

impl<S: Signer, A: AppStore, C: Clock, I: InstallationStore> InstallationTokenHandler<S, A, C, I> {
    pub fn new(tokens: InstallationTokens<S, A, C, I>, transport: Transport) -> Self {
        Self { tokens, transport }
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        api::respond(self.call(req).await)
    }

    async fn call(&self, req: Request) -> Result<Value, Error> {
        let call = api::parse_call(&req, &[PATH], self.transport)?;
        let fields = Fields::new(&call.body);
        let app_id = api::required_id(&fields, "appId")?;
        let target = target_from_request(&fields)?;
        let scope = ScopeDown::from_request(&fields)?.unwrap_or_default();
        let (token, record, cached) = self.tokens.issue(app_id, &target, &scope).await?;
        let slug = self.tokens.app_slug(app_id).await;
        audit::credential_issued(
            &call.caller,
            "installation-token",
            app_id,
            Some(record.installation_id),
            &token.token,
            &token.expires_at_text,
            cached,
        );
        let mut out = json!({
            "installationToken": token.token.expose(),
            "nodeId": record.node_id,
            "appId": app_id,
            "installationId": record.installation_id,
            "expirationTime": token.expires_at_text,
            "requestedScopeDown": scope.to_api(),
            "actualScopeDown": token.granted.to_api(),
        });
        if let Some(slug) = slug {
            out["appSlug"] = json!(slug);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(v: Value) -> Result<Target, &'static str> {
        let Value::Object(m) = v else { unreachable!() };
        target_from_request(&Fields::new(&m)).map_err(|e| api::error_parts(&e).1)
    }

    #[test]
    fn exactly_one_target() {
        assert_eq!(target(json!({"nodeId": "MDEy"})), Ok(Target::NodeId("MDEy".into())));
        assert_eq!(target(json!({"owner": "octo-org"})), Ok(Target::Owner("octo-org".into())));
        assert_eq!(
            target(json!({"repository": "octo-org/hello.world"})),
            Ok(Target::Repository { owner: "octo-org".into(), name: "hello.world".into() })
        );
        for bad in [
            json!({}),
            json!({"nodeId": ""}),
            json!({"nodeId": "x".repeat(257)}),
            json!({"nodeId": "a", "owner": "b"}),
            json!({"owner": "-bad"}),
            json!({"owner": "a/b"}),
            json!({"owner": "x".repeat(40)}),
            json!({"repository": "noslash"}),
            json!({"repository": "a/b/c"}),
            json!({"repository": "a/.."}),
            json!({"repository": "../x"}),
        ] {
            assert_eq!(target(bad.clone()), Err("ValidationException"), "{bad}");
        }
        assert_eq!(target(json!({"nodeId": 5})), Err("SerializationException"));
    }
}
