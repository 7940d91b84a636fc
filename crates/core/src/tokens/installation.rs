//! Installation access tokens.
//!
//! The installation is named by node ID (the account's node ID; looked up in the Installation
//! table, then in GitHub's listing, and written back), or **(ext)** by owner (login), repository
//! (`owner/name`) or enterprise (slug): from the App's rows in the Installation table first, then
//! through GitHub's account lookup endpoints (a repository by its owner's installation: names are
//! never looked up one by one); resolutions are kept for 10
//! minutes, App JWTs while they have 5 minutes left. Every caller's request mints a token of its
//! own (one GitHub call on a warm function, and no AWS call); only the rate-limit scanner's
//! internal tokens are cached.
//!
//! **(ext)** Tokens proven narrow: before the mint, the scope is checked against what the
//! installation grants (the pre-flight check, `scope::beyond_installation`); after it, GitHub's
//! answer against the scope sent (`scope::excess`), and a wider token is revoked at once and
//! answered as [`Error::TokenTooWide`], never handed out.

use std::collections::BTreeMap;
use std::sync::Arc;

use appcreds_wire::Target;
use reqwest::Method;

use crate::cache::{FlightCache, Limits};
use crate::deadline;
use crate::domain::clock::rfc3339;
use crate::domain::scope::{self, InstallationGrants, ScopeDown};
use crate::domain::secret::Secret;
use crate::error::Error;
use crate::github::installations;
use crate::github::types::{AccessToken, App, GitHubInstallation, RepoRef};
use crate::github::{Auth, GitHubClient};
use crate::ports::{InstallationRecord, InstallationRow, InstallationStore, RowBound, TablePosition};
use crate::services::Services;
use crate::tokens::app_jwt::{AppJwt, AppJwts};

/// A cached token is handed out only while it has more than this much life left.
pub(crate) const REUSE_MARGIN_SECS: i64 = 10 * 60;
/// How long a resolved installation is trusted without asking the table or GitHub again.
pub(crate) const RESOLUTION_TTL_SECS: i64 = 10 * 60;

/// A minted installation token and what GitHub granted.
#[derive(Debug, Clone)]
pub struct InstallationToken {
    /// The token (`ghs_…`).
    pub token: Secret,
    /// When it expires (Unix seconds).
    pub expires_at: i64,
    /// GitHub's `expires_at`, as it wrote it.
    pub expires_at_text: String,
    /// The repositories and permissions GitHub granted.
    pub granted: ScopeDown,
}

impl InstallationToken {
    /// The bytes it holds on the heap.
    fn heap_bytes(&self) -> usize {
        self.token.expose().len()
            + self.expires_at_text.len()
            + self.granted.repository_ids.len() * size_of::<i64>()
            + self.granted.repository_names.iter().map(|n| size_of::<String>() + n.len()).sum::<usize>()
            + self.granted.permissions.iter().map(|(k, v)| 2 * size_of::<String>() + k.len() + v.len()).sum::<usize>()
    }
}

fn target_bytes(target: &Target) -> usize {
    match target {
        Target::NodeId(s) | Target::Owner(s) | Target::Repository(s) | Target::Enterprise(s) => s.len(),
    }
}

fn record_bytes(record: &InstallationRecord) -> usize {
    record.node_id.len() + record.target_type.len() + record.name.len()
}

/// The pre-flight check of `scope` (what the access rules let the caller mint) against what the
/// installation grants, when that is known: a request beyond it is refused before the mint, naming
/// what it lacks.
fn refusal(
    app_id: i64,
    record: &InstallationRecord,
    grants: Option<&InstallationGrants>,
    scope: &ScopeDown,
) -> Result<(), Error> {
    match grants.and_then(|g| scope::beyond_installation(scope, g)) {
        Some(what) => Err(Error::BeyondInstallation { app_id, account: record.name.clone(), what }),
        None => Ok(()),
    }
}

/// The proof after the mint: what GitHub's answer (its `permissions`, `repository_selection` and
/// `repositories`) grants, and what of it is beyond `asked` (empty when within). An answer that
/// does not name its permissions, when some were asked, proves nothing: it counts as wider.
fn proof(
    asked: &ScopeDown,
    permissions: Option<BTreeMap<String, String>>,
    repository_selection: Option<String>,
    repositories: Option<Vec<RepoRef>>,
) -> (ScopeDown, Vec<String>) {
    let all_repositories = repository_selection.as_deref() != Some("selected") || repositories.is_none();
    let repositories = repositories.unwrap_or_default();
    let unnamed = permissions.is_none() && !asked.permissions.is_empty();
    let granted = ScopeDown {
        repository_ids: repositories.iter().map(|r| r.id).collect(),
        repository_names: repositories.into_iter().map(|r| r.name).collect(),
        permissions: permissions.unwrap_or_default(),
    };
    let mut wider = scope::excess(asked, &granted, all_repositories);
    if unnamed {
        wider.insert(0, "permissions not named in GitHub's answer (asked for named ones)".into());
    }
    (granted, wider)
}

/// The target an installation is looked up by: a repository's is its owner's, since an App is
/// installed on the account that owns the repository. So a repository costs no lookup of its own:
/// the names a caller tries cost GitHub one lookup per owner (kept like any other), never one per
/// name, and whether a repository exists is never asked (the mint, scoped to it, tells). Logins
/// and slugs are lower-cased, as GitHub compares them: spellings of one name share one lookup.
fn lookup_target(target: &Target) -> Target {
    match target.account() {
        Some((slug, true)) => Target::Enterprise(slug.to_ascii_lowercase()),
        Some((login, false)) => Target::Owner(login.to_ascii_lowercase()),
        None => target.clone(),
    }
}

/// How a login or slug is looked up at GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Through the account's own lookup endpoint: one call per name (kept like any other).
    ByName,
    /// In the App's installation listing (kept [`LISTING_TTL_SECS`]), as node IDs are: for a name
    /// no access rule names, which only a rule by node ID could cover, so that names made up by
    /// the caller cost GitHub at most one listing per 30 s.
    ByListing,
}

/// A token handed out, what it was minted for, and under which access rule.
#[derive(Debug)]
pub(crate) struct Issued {
    pub(crate) token: InstallationToken,
    pub(crate) record: InstallationRecord,
    /// The access rule that allowed it (`None` in open mode).
    pub(crate) rule: Option<String>,
}

/// A target resolved, granted its scope and pre-flight checked ([`InstallationTokens::prepare`]):
/// what is left is the mint.
#[derive(Debug)]
pub(crate) struct Prepared {
    app_id: i64,
    /// The target as it is looked up (see `lookup_target`).
    target: Target,
    lookup: Lookup,
    resolved: Resolved,
    rule: Option<String>,
    scope: ScopeDown,
}

impl Prepared {
    /// The App it is minted by.
    pub(crate) fn app_id(&self) -> i64 {
        self.app_id
    }

    /// The installation it is minted for (unless the mint finds its table row stale).
    pub(crate) fn installation_id(&self) -> i64 {
        self.resolved.record.installation_id
    }
}

#[derive(Debug, Clone)]
struct Resolved {
    record: InstallationRecord,
    at: i64,
    /// Whether it came from the table (and so may be stale).
    from_table: bool,
    /// What the installation grants: from GitHub's answer, or from the row (`None` for a row
    /// written without it, or an answer that did not say).
    grants: Option<InstallationGrants>,
    /// When GitHub said what it grants (`None` when the row did: it may be stale).
    grants_at: Option<i64>,
}

/// What a target resolved to.
#[derive(Debug, Clone)]
enum Resolution {
    Found(Resolved),
    /// GitHub has no such installation (as of `at`).
    Unknown {
        at: i64,
    },
}

/// Mints installation tokens.
pub(crate) struct InstallationTokens {
    jwts: AppJwts,
    services: Services,
    resolutions: FlightCache<(i64, Target), Resolution>,
    tokens: FlightCache<(i64, i64, String), InstallationToken>,
    /// Each App's slug (empty: GitHub did not say), and until when it is kept.
    slugs: FlightCache<i64, (String, i64)>,
    /// Each App's installation listing, with when it was made.
    listings: FlightCache<i64, (Arc<Vec<GitHubInstallation>>, i64)>,
    /// What installations whose rows lack it grant (`None`: GitHub did not say), with when it
    /// was asked.
    grants: FlightCache<(i64, i64), (Option<InstallationGrants>, i64)>,
    /// Each App's rows of the Installation table, with when they were read.
    table_rows: FlightCache<i64, (Arc<Vec<InstallationRow>>, i64)>,
}

/// How long "no such installation" is kept.
pub(crate) const UNKNOWN_TTL_SECS: i64 = 30;

/// How long an App's installation listing answers node-ID lookups.
pub(crate) const LISTING_TTL_SECS: i64 = 30;
/// **(ext)** The most rows of an App a function reads from the Installation table to resolve
/// owners by name (a few hundred KB kept): an App installed more widely is resolved at GitHub.
pub const TABLE_ROWS_MAX: usize = 1_000;
/// **(ext)** Kept back from the deadline while the App's rows are read: for the lookup at
/// GitHub and the mint that follow.
const AFTER_TABLE: std::time::Duration = std::time::Duration::from_secs(6);

/// How long an App's slug is kept.
pub(crate) const SLUG_TTL_SECS: i64 = 3600;
/// How long a failure to read an App's slug is kept before GitHub is asked again.
pub(crate) const SLUG_RETRY_SECS: i64 = 300;
/// The most a request waits for GitHub to revoke a token minted wider than asked.
pub(crate) const REVOKE_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);
/// The most a request waits for the slug.
pub(crate) const SLUG_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);
/// The most a request waits for `GET /app/installations/{id}` (what the installation grants).
pub(crate) const GRANTS_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);
/// How long GitHub's answer of what an installation grants may refuse a request: older grants
/// (a row's, or a resolution's) that would refuse are asked of GitHub again first.
pub(crate) const CONFIRM_TTL_SECS: i64 = 30;

impl InstallationTokens {
    /// Tokens minted through `services`, with App JWTs of their own cache.
    pub fn new(services: &Services) -> Self {
        Self {
            jwts: AppJwts::new(services),
            services: services.clone(),
            resolutions: FlightCache::new(Limits { entries: 10_000, bytes: 8 << 20 }, |(_, target), r| {
                let record = match r {
                    Resolution::Found(r) => {
                        record_bytes(&r.record) + r.grants.as_ref().map_or(0, InstallationGrants::heap_bytes)
                    }
                    Resolution::Unknown { .. } => 0,
                };
                size_of::<((i64, Target), Resolution)>() + target_bytes(target) + record
            }),
            // The scanner's: one per installation (10,000 and more), each a few hundred bytes.
            tokens: FlightCache::new(Limits { entries: 20_000, bytes: 32 << 20 }, |(_, _, scope), t| {
                size_of::<((i64, i64, String), InstallationToken)>() + scope.len() + t.heap_bytes()
            }),
            slugs: FlightCache::new(Limits { entries: 1_000, bytes: 1 << 20 }, |_, (slug, _)| {
                size_of::<(i64, (String, i64))>() + slug.len()
            }),
            // An App with 10,000 installations lists about 1.5 MB.
            listings: FlightCache::new(Limits { entries: 100, bytes: 32 << 20 }, |_, (listing, _)| {
                size_of::<(i64, (Arc<Vec<GitHubInstallation>>, i64))>()
                    + listing.iter().map(GitHubInstallation::weight).sum::<usize>()
            }),
            grants: FlightCache::new(Limits { entries: 10_000, bytes: 8 << 20 }, |_, (grants, _)| {
                size_of::<((i64, i64), (Option<InstallationGrants>, i64))>()
                    + grants.as_ref().map_or(0, InstallationGrants::heap_bytes)
            }),
            table_rows: FlightCache::new(Limits { entries: 100, bytes: 32 << 20 }, |_, (rows, _)| {
                size_of::<(i64, (Arc<Vec<InstallationRow>>, i64))>()
                    + rows
                        .iter()
                        .map(|r| {
                            size_of::<InstallationRow>()
                                + record_bytes(&r.record)
                                + r.grants.as_ref().map_or(0, InstallationGrants::heap_bytes)
                        })
                        .sum::<usize>()
            }),
        }
    }

    fn now(&self) -> i64 {
        self.services.now()
    }

    fn github(&self) -> Result<&GitHubClient, Error> {
        self.services.github()
    }

    fn store(&self) -> &dyn InstallationStore {
        self.services.installations.as_ref()
    }

    /// A token for the installation `target` of `app_id`, with the scope `grant` gives for the
    /// installation it resolves to (or refuses it).
    pub(crate) async fn issue<G>(&self, app_id: i64, target: &Target, lookup: Lookup, grant: G) -> Result<Issued, Error>
    where
        G: Fn(&InstallationRecord) -> Result<(Option<String>, ScopeDown), Error> + Send + Sync,
    {
        let prepared = self.prepare(app_id, target, lookup, &grant).await?;
        self.mint_prepared(prepared, &grant).await
    }

    /// The first half of [`issue`](Self::issue): resolves `target`, has `grant` give the scope
    /// (or refuse), and runs the pre-flight check. Nothing is minted.
    pub(crate) async fn prepare<G>(
        &self,
        app_id: i64,
        target: &Target,
        lookup: Lookup,
        grant: &G,
    ) -> Result<Prepared, Error>
    where
        G: Fn(&InstallationRecord) -> Result<(Option<String>, ScopeDown), Error> + Send + Sync,
    {
        let target = lookup_target(target);
        let resolved = self.resolve(app_id, &target, lookup).await?;
        let (rule, scope) = grant(&resolved.record)?;
        self.pre_flight(app_id, &target, &resolved, &scope).await?;
        Ok(Prepared { app_id, target, lookup, resolved, rule, scope })
    }

    /// The second half of [`issue`](Self::issue): mints the token `prepared` was checked for. A
    /// table row found stale by the mint's 404 is resolved at GitHub once more, and `grant` judges
    /// the fresh installation before the one retry.
    pub(crate) async fn mint_prepared<G>(&self, prepared: Prepared, grant: &G) -> Result<Issued, Error>
    where
        G: Fn(&InstallationRecord) -> Result<(Option<String>, ScopeDown), Error> + Send + Sync,
    {
        let Prepared { app_id, target, lookup, resolved, rule, scope } = prepared;
        let target = &target;
        // Every caller gets a token of its own, with GitHub's full lifetime: one that is shared
        // breaks every holder when one of them revokes it.
        match self.mint(app_id, resolved.record.installation_id, &scope).await {
            // A table row can be stale (uninstalled, reinstalled): ask GitHub once more.
            Err(Error::GitHubRejected { status: 404, .. }) if resolved.from_table => {
                let key = (app_id, target.clone());
                self.resolutions.invalidate(&key).await;
                let (fresh, grants) = match self.resolve_at_github(app_id, target, lookup).await {
                    Ok(fresh) => fresh,
                    Err(unknown @ Error::UnknownInstallation { .. }) => {
                        // Uninstalled: the row goes (the sync would confirm and delete it too),
                        // and "none" is kept like any other, so asking again costs nothing.
                        let gone = TablePosition { app_id, node_id: resolved.record.node_id.clone() };
                        if let Err(e) = self.store().write(Vec::new(), vec![gone], &rfc3339(self.now())).await {
                            tracing::warn!(app_id, error = %e, "could not delete the row of an uninstalled installation");
                        }
                        let at = self.now();
                        let fresh = |_: &Resolution| true;
                        let _ =
                            self.resolutions.get_or_fill(key, fresh, || async { Ok(Resolution::Unknown { at }) }).await;
                        return Err(unknown);
                    }
                    Err(e) => return Err(e),
                };
                let row = InstallationRow { record: fresh.clone(), grants: grants.clone() };
                self.store().write(vec![row], Vec::new(), &rfc3339(self.now())).await?;
                let (rule, scope) = grant(&fresh)?;
                refusal(app_id, &fresh, grants.as_ref(), &scope)?;
                let token = self.mint(app_id, fresh.installation_id, &scope).await?;
                Ok(Issued { token, record: fresh, rule })
            }
            Err(e) => Err(e),
            Ok(token) => Ok(Issued { token, record: resolved.record, rule }),
        }
    }

    /// [`AppJwts::settle`] on the JWTs these tokens are minted with.
    pub async fn settle(&self, by: tokio::time::Instant) {
        self.jwts.settle(by).await;
    }

    /// **(ext)** The App's slug (`GET /app`), best effort: kept for an hour, and a failure to
    /// read it for [`SLUG_RETRY_SECS`] (so a GitHub outage costs one call per App, not one per
    /// request); `None` if GitHub does not say or did not answer within [`SLUG_BUDGET`]. A slug
    /// that came with the App JWT (the shared entry's) costs GitHub nothing, and is kept no
    /// longer than that JWT.
    pub async fn app_slug(&self, app_id: i64) -> Option<String> {
        // The slug, and until when it is kept.
        let fresh = |(_, until): &(String, i64)| self.now() < *until;
        let fill = || async {
            // The JWT outside the slug's budget: the request's mint waits for the same one, and a
            // slow JWT is no reason to answer without the slug (kept for minutes).
            let jwt = self.jwts.get(app_id).await;
            let fetch = async {
                let jwt = jwt?;
                if let Some(slug) = jwt.slug {
                    return Ok::<_, Error>((slug, Some(jwt.expires_at)));
                }
                let app: App = self.github()?.get("/app", Auth::App { app_id, jwt: &jwt.token }).await?;
                Ok((app.slug.unwrap_or_default(), None))
            };
            let budget = deadline::clamp(SLUG_BUDGET);
            let (slug, until) = match tokio::time::timeout(budget, fetch).await {
                Ok(Ok(found)) => found,
                // Out of this request's time: nothing learnt about GitHub, nothing kept.
                Ok(Err(Error::OutOfTime)) => return Err(Error::OutOfTime),
                Err(_) if budget < SLUG_BUDGET => return Err(Error::OutOfTime),
                Ok(Err(e)) => {
                    tracing::warn!(app_id, error = %e, "could not read the App's slug; answering without it");
                    (String::new(), None)
                }
                Err(_) => {
                    tracing::warn!(app_id, "GitHub did not give the App's slug in time; answering without it");
                    (String::new(), None)
                }
            };
            let ttl = if slug.is_empty() { SLUG_RETRY_SECS } else { SLUG_TTL_SECS };
            Ok((slug, until.unwrap_or_else(|| self.now() + ttl)))
        };
        match self.slugs.get_or_fill(app_id, fresh, fill).await {
            Ok(((slug, _), _)) if !slug.is_empty() => Some(slug),
            _ => None,
        }
    }

    /// A token for an installation already known, reused from this process's own cache until
    /// 10 minutes before it expires: for the rate-limit scanner's internal `metadata: read` tokens,
    /// which never leave the process. Callers' tokens are never cached.
    pub(crate) async fn internal_token(
        &self,
        record: &InstallationRecord,
        scope: &ScopeDown,
    ) -> Result<(InstallationToken, bool), Error> {
        let key = (record.app_id, record.installation_id, scope::cache_key(scope));
        let fresh = |t: &InstallationToken| t.expires_at - self.now() > REUSE_MARGIN_SECS;
        self.tokens.get_or_fill(key, fresh, || self.mint(record.app_id, record.installation_id, scope)).await
    }

    async fn mint(&self, app_id: i64, installation_id: i64, scope: &ScopeDown) -> Result<InstallationToken, Error> {
        let (path, body) = (&format!("/app/installations/{installation_id}/access_tokens"), &scope::github_body(scope));
        let github = self.github()?;
        let send = |jwt: AppJwt| async move {
            github.send(Method::POST, path, Auth::App { app_id, jwt: &jwt.token }, Some(body)).await
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
        let token = Secret::new(minted.token);
        // The proof after the mint: a token wider than the request is never handed out.
        let (granted, wider) = proof(scope, minted.permissions, minted.repository_selection, minted.repositories);
        if !wider.is_empty() {
            return Err(self.revoke_too_wide(installation_id, token, wider.join("; ")).await);
        }
        Ok(InstallationToken { token, expires_at, expires_at_text: minted.expires_at, granted })
    }

    /// Revokes a token GitHub minted wider than asked (`DELETE /installation/token`, authenticated
    /// by the token itself) at once, within [`REVOKE_BUDGET`], and the error that answers for it.
    /// One that could not be revoked expires within the hour, and is never handed out either.
    async fn revoke_too_wide(&self, installation_id: i64, token: Secret, wider: String) -> Error {
        let revoked = self.revoke(installation_id, &token, "a token wider than asked").await;
        Error::TokenTooWide {
            installation_id,
            token_sha256: token.sha256_hex(),
            hashed_token: token.sha256_base64(),
            wider,
            revoked,
        }
    }

    /// Revokes `token` (`DELETE /installation/token`, authenticated by the token itself) within
    /// [`REVOKE_BUDGET`] and the time left; whether GitHub confirmed. `what` names the token in
    /// the warning a failure leaves.
    pub(crate) async fn revoke(&self, installation_id: i64, token: &Secret, what: &str) -> bool {
        let revoke =
            async { self.github()?.send(Method::DELETE, "/installation/token", Auth::Installation(token), None).await };
        match tokio::time::timeout(deadline::clamp(REVOKE_BUDGET), revoke).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::warn!(installation_id, error = %e, "could not revoke {what}");
                false
            }
            Err(_) => {
                tracing::warn!(installation_id, "revoking {what} took too long");
                false
            }
        }
    }

    /// The installation `target` names: kept [`RESOLUTION_TTL_SECS`], and "none" kept
    /// [`UNKNOWN_TTL_SECS`], so asking again and again for an installation that does not exist
    /// costs GitHub nothing more.
    async fn resolve(&self, app_id: i64, target: &Target, lookup: Lookup) -> Result<Resolved, Error> {
        let fresh = |r: &Resolution| match r {
            Resolution::Found(r) => self.now() - r.at < RESOLUTION_TTL_SECS,
            Resolution::Unknown { at } => self.now() - at < UNKNOWN_TTL_SECS,
        };
        let (resolution, _) = self
            .resolutions
            .get_or_fill((app_id, target.clone()), fresh, || async {
                if let Target::NodeId(node_id) = target
                    && let Some(InstallationRow { record, grants }) = self.store().get(app_id, node_id).await?
                {
                    let at = self.now();
                    return Ok(Resolution::Found(Resolved { record, at, from_table: true, grants, grants_at: None }));
                }
                if let Some(InstallationRow { record, grants }) = self.row_in_table(app_id, target).await {
                    let at = self.now();
                    return Ok(Resolution::Found(Resolved { record, at, from_table: true, grants, grants_at: None }));
                }
                let (record, grants) = match self.resolve_at_github(app_id, target, lookup).await {
                    Ok(found) => found,
                    Err(Error::UnknownInstallation { .. }) => return Ok(Resolution::Unknown { at: self.now() }),
                    Err(e) => return Err(e),
                };
                let row = InstallationRow { record: record.clone(), grants: grants.clone() };
                if self.store().get(app_id, &record.node_id).await?.as_ref() != Some(&row) {
                    self.store().write(vec![row], Vec::new(), &rfc3339(self.now())).await?;
                }
                let at = self.now();
                Ok(Resolution::Found(Resolved { record, at, from_table: false, grants, grants_at: Some(at) }))
            })
            .await?;
        match resolution {
            Resolution::Found(resolved) => Ok(resolved),
            Resolution::Unknown { .. } => Err(Error::UnknownInstallation { app_id, target: target.to_string() }),
        }
    }

    /// **(ext)** The row of the account `target` names by name (an owner, a repository's owner, an
    /// enterprise), from the App's rows in the Installation table (kept [`LISTING_TTL_SECS`]), as
    /// the sync and earlier resolutions wrote them: logins and slugs compared regardless of case,
    /// as GitHub does. So a cold function resolves a known owner with no call to GitHub; a stale
    /// row is found out by the mint (a 404), which asks GitHub once more. `None` (GitHub is asked
    /// then) when no row names it, or more than one does (a stale row beside the current one),
    /// or the table could not be read: a failure, more than [`TABLE_ROWS_MAX`] rows, or rows
    /// that would not all be read in time (kept as none for [`LISTING_TTL_SECS`]).
    async fn row_in_table(&self, app_id: i64, target: &Target) -> Option<InstallationRow> {
        let (name, enterprise) = target.account()?;
        let fresh = |(_, at): &(Arc<Vec<InstallationRow>>, i64)| self.now() - at < LISTING_TTL_SECS;
        let fill = || async {
            let bound = RowBound { max_rows: TABLE_ROWS_MAX, reserve: AFTER_TABLE };
            let rows = self.store().list_app(app_id, Some(bound)).await?;
            if rows.is_none() {
                tracing::debug!(app_id, "the App's rows are too many to read in time; resolving at GitHub");
            }
            Ok((Arc::new(rows.unwrap_or_default()), self.now()))
        };
        let rows = match self.table_rows.get_or_fill(app_id, fresh, fill).await {
            Ok(((rows, _), _)) => rows,
            Err(e) => {
                tracing::warn!(app_id, error = %e, "could not read the App's installations from the table; asking GitHub");
                return None;
            }
        };
        let named = |r: &&InstallationRow| {
            r.record.name.eq_ignore_ascii_case(name) && (r.record.target_type == "Enterprise") == enterprise
        };
        let mut named = rows.iter().filter(named);
        match (named.next(), named.next()) {
            (Some(row), None) => Some(row.clone()),
            (Some(_), Some(_)) => {
                tracing::debug!(app_id, "several rows name the account; asking GitHub");
                None
            }
            _ => None,
        }
    }

    async fn resolve_at_github(
        &self,
        app_id: i64,
        target: &Target,
        lookup: Lookup,
    ) -> Result<(InstallationRecord, Option<InstallationGrants>), Error> {
        let unknown = || Error::UnknownInstallation { app_id, target: target.to_string() };
        // A repository's installation is its owner's (see `lookup_target`).
        let found: Option<GitHubInstallation> = match (target, target.account()) {
            (Target::NodeId(node_id), _) => self
                .listing(app_id)
                .await?
                .iter()
                .find(|i| i.account.as_ref().is_some_and(|a| &a.node_id == node_id))
                .cloned(),
            (_, Some((name, enterprise))) if lookup == Lookup::ByListing => {
                let named = |a: &crate::github::types::GitHubAccount| {
                    if enterprise { a.slug.clone() } else { a.login.clone() }
                };
                self.listing(app_id)
                    .await?
                    .iter()
                    .find(|i| i.account.as_ref().and_then(named).is_some_and(|n| n.eq_ignore_ascii_case(name)))
                    .cloned()
            }
            (_, Some((slug, true))) => self.lookup(app_id, &format!("/enterprises/{slug}/installation")).await?,
            (_, Some((login, false))) => self.by_owner(app_id, login).await?,
            (_, None) => None,
        };
        let found = found.and_then(|i| Some((i.record(app_id)?, i.grants()))).ok_or_else(unknown)?;
        if target.account().is_some() {
            // The App's rows as kept lacked this account, or named a stale installation: they
            // are read again next time, with the row this resolution writes.
            self.table_rows.invalidate(&app_id).await;
        }
        Ok(found)
    }

    /// The pre-flight check of `scope` against what the installation grants. What is known of it
    /// (a row's, or a resolution's up to [`RESOLUTION_TTL_SECS`] old) may be stale: the owner may
    /// have accepted a new permission, or reinstalled, since. So only GitHub's own answer, at most
    /// [`CONFIRM_TTL_SECS`] old, refuses: older grants that would refuse are asked of GitHub again
    /// (`GET /app/installations/{id}`, once for concurrent requests), the resolution and the row
    /// refreshed with the answer, and the request is refused only if the answer refuses it too.
    /// An answer that does not say (a 404, a failure, a timeout) refuses nothing: the mint decides.
    async fn pre_flight(
        &self,
        app_id: i64,
        target: &Target,
        resolved: &Resolved,
        scope: &ScopeDown,
    ) -> Result<(), Error> {
        let (known, known_at) = self.grants(app_id, resolved).await?;
        let Err(refused) = refusal(app_id, &resolved.record, known.as_ref(), scope) else { return Ok(()) };
        if known_at.is_some_and(|at| self.now() - at < CONFIRM_TTL_SECS) {
            return Err(refused);
        }
        let Some((fresh, at)) = self.ask_grants(app_id, resolved, CONFIRM_TTL_SECS).await? else { return Ok(()) };
        let updated = Resolved { grants: Some(fresh.clone()), grants_at: Some(at), ..resolved.clone() };
        let fill = || async { Ok(Resolution::Found(updated)) };
        if let Err(e) = self.resolutions.get_or_fill((app_id, target.clone()), |_| false, fill).await {
            tracing::warn!(app_id, error = %e, "could not keep what the installation grants");
        }
        refusal(app_id, &resolved.record, Some(&fresh), scope)
    }

    /// What the installation grants, and when GitHub said so (`None` when only the row did): from
    /// its resolution (GitHub's answer, or a table row that holds it), or, for a row without it
    /// (written by an earlier version or the TypeScript framework), from
    /// [`ask_grants`](Self::ask_grants), kept as long as a resolution. `None` when not known.
    async fn grants(
        &self,
        app_id: i64,
        resolved: &Resolved,
    ) -> Result<(Option<InstallationGrants>, Option<i64>), Error> {
        if resolved.grants.is_some() {
            return Ok((resolved.grants.clone(), resolved.grants_at));
        }
        Ok(self
            .ask_grants(app_id, resolved, RESOLUTION_TTL_SECS)
            .await?
            .map_or((None, None), |(g, at)| (Some(g), Some(at))))
    }

    /// What the installation grants as GitHub said it at most `ttl` seconds ago, with when:
    /// `GET /app/installations/{id}` (within [`GRANTS_BUDGET`]), shared by concurrent requests and
    /// written back to the row when the row said otherwise. `None` when GitHub does not say: a 404
    /// (the row is stale; the mint finds that out), an answer without permissions (kept), or a
    /// failure or timeout (not kept).
    async fn ask_grants(
        &self,
        app_id: i64,
        resolved: &Resolved,
        ttl: i64,
    ) -> Result<Option<(InstallationGrants, i64)>, Error> {
        let id = resolved.record.installation_id;
        let fresh = |(_, at): &(Option<InstallationGrants>, i64)| self.now() - at < ttl;
        let fill = || async {
            let path = format!("/app/installations/{id}");
            // The JWT outside the budget, as for the slug: the budget is GitHub's answer's.
            let jwt = self.jwts.get(app_id).await?;
            let lookup = installations::lookup(self.github()?, app_id, &jwt.token, &path);
            let budget = deadline::clamp(GRANTS_BUDGET);
            let grants = match tokio::time::timeout(budget, lookup).await {
                Ok(found) => found?.and_then(|i| i.grants()),
                Err(_) if budget < GRANTS_BUDGET => return Err(Error::OutOfTime),
                Err(_) => return Err(Error::GitHubUnavailable("no answer in time".into())),
            };
            if let Some(grants) = grants.as_ref().filter(|g| resolved.grants.as_ref() != Some(g)) {
                // Only the grants, and only onto the row as it was read: a whole row put back could
                // bring back one the sync deleted meanwhile, or undo its newer name.
                let at = TablePosition { app_id, node_id: resolved.record.node_id.clone() };
                match self.store().write_grants(&at, id, grants, &rfc3339(self.now())).await {
                    Ok(true) => {}
                    Ok(false) => tracing::debug!(app_id, installation_id = id, "row gone or changed: not written"),
                    Err(e) => {
                        tracing::warn!(app_id, installation_id = id, error = %e, "could not write what the installation grants to its row");
                    }
                }
            }
            Ok((grants, self.now()))
        };
        match self.grants.get_or_fill((app_id, id), fresh, fill).await {
            Ok(((grants, at), _)) => Ok(grants.map(|g| (g, at))),
            Err(Error::OutOfTime) => Err(Error::OutOfTime),
            Err(e) => {
                tracing::warn!(app_id, installation_id = id, error = %e, "could not read what the installation grants; the mint decides");
                Ok(None)
            }
        }
    }

    /// The App's installations as GitHub listed them at most [`LISTING_TTL_SECS`] ago (one listing
    /// at a time): node IDs that match nothing, random ones included, cost no more listings.
    async fn listing(&self, app_id: i64) -> Result<Arc<Vec<GitHubInstallation>>, Error> {
        let fresh = |(_, at): &(Arc<Vec<GitHubInstallation>>, i64)| self.now() - at < LISTING_TTL_SECS;
        let ((listing, _), _) = self
            .listings
            .get_or_fill(app_id, fresh, || async {
                let listed = self.jwts.list_installations(self.github()?, app_id).await?;
                Ok((Arc::new(listed), self.now()))
            })
            .await?;
        Ok(listing)
    }

    /// The installation on the account `login` (a user's or an organization's), or `None`.
    async fn by_owner(&self, app_id: i64, login: &str) -> Result<Option<GitHubInstallation>, Error> {
        match self.lookup(app_id, &format!("/users/{login}/installation")).await? {
            Some(i) => Ok(Some(i)),
            None => self.lookup(app_id, &format!("/orgs/{login}/installation")).await,
        }
    }

    /// A lookup endpoint's installation, or `None` on 404.
    async fn lookup(&self, app_id: i64, path: &str) -> Result<Option<GitHubInstallation>, Error> {
        let jwt = self.jwts.get(app_id).await?;
        installations::lookup(self.github()?, app_id, &jwt.token, path).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_answer_that_does_not_name_its_permissions_proves_nothing() {
        let asked: ScopeDown = serde_json::from_value(json!({"permissions": {"contents": "read"}})).unwrap();
        let repos = || Some(vec![RepoRef { id: 7101, name: "hello-world".into() }]);
        let selected = || Some("selected".to_string());
        let (_, wider) = proof(&asked, None, selected(), repos());
        assert_eq!(wider, ["permissions not named in GitHub's answer (asked for named ones)"]);
        let named = BTreeMap::from([("contents".to_string(), "read".to_string())]);
        let (granted, wider) = proof(&asked, Some(named), selected(), repos());
        assert!(wider.is_empty(), "{wider:?}");
        assert_eq!(granted.repository_ids, [7101]);
        let (_, wider) = proof(&ScopeDown::default(), None, None, None);
        assert!(wider.is_empty(), "nothing asked: nothing to prove");
    }
}
