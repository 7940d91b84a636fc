//! App JWTs with a per-App, single-flight, in-process cache, and **(ext)** a JWT shared by the
//! functions through DynamoDB.
//!
//! A warm function signs once per App every few minutes instead of once per request: the JWT (and
//! the App row it was signed under) is reused while it still has more than
//! [`MIN_REMAINING_SECS`] of life. Concurrent requests for one App wait for the same signing.
//! The App row is cached no longer than the JWT, so a rotated key is picked up within minutes.
//!
//! **(ext)** With a [`JwtShare`], a function whose own cache has no JWT takes the one another
//! function signed, so that a burst of cold functions costs one KMS `Sign` per App, not one each:
//! - The shared entry (one per App) is used if it is for the App's current key (its row's),
//!   has more than [`MIN_REMAINING_SECS`] left and decrypts under its encryption context (the
//!   App, the key, the expiry): one KMS `Decrypt`, no `Sign`.
//! - Otherwise one function signs: it claims the signing with a conditional write (for
//!   [`CLAIM_SECS`]), signs, encrypts the JWT and writes the entry; if it cannot sign, or signs
//!   with a previous key, it ends its claim at once. The others read the entry again, with
//!   jittered pauses, for at most [`SHARE_WAIT`] (and never into the time the invocation needs
//!   after), while the claim lasts: once it ended with no entry, one of them claims the signing
//!   in turn, and those that do not sign their own. A claim further out than [`CLAIM_SECS`] (a
//!   clock ahead, or garbage) is no claim. The claimed signing runs in a task of its own, so that
//!   a request dropped meanwhile does not cancel what the others wait for; a claim left by a
//!   holder that failed without ending it is ended by its guard.
//! - An entry that does not read, decrypt or make sense is broken: the function signs, and
//!   replaces it (claiming the signing whatever the entry says). Making sense: the JWT's claims
//!   are the ones this code signs for the App at the entry's expiry (its issuer, `exp`, and
//!   `iat` a lifetime before), so that another App's JWT, or another expiry's, is not taken even
//!   under the right encryption context. Any failure of the share (the
//!   table, KMS `Encrypt`/`Decrypt`) falls back to signing here: the share saves signatures, it
//!   never fails a request.
//! - The App's slug goes with the entry: the function that signs asks GitHub for it (`GET /app`,
//!   best effort, within `SLUG_BUDGET`, while it encrypts the JWT) and writes it in plain (it is
//!   public), so that the functions that take the JWT ask GitHub nothing more. It is trusted no
//!   longer than the JWT it came with ([`AppJwt::slug`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use tracing::Instrument;

use crate::cache::{FlightCache, Limits};
use crate::deadline;
use crate::domain::jwt::{self, Claims, LIFETIME_SECS};
use crate::domain::secret::Secret;
use crate::error::{Error, KeyProblem};
use crate::github::installations;
use crate::github::types::{App, GitHubInstallation};
use crate::github::{Auth, GitHubClient};
use crate::ports::{AppStore, ClaimIf, Clock, JwtClaim, JwtShare, SharedItem, SharedJwt, SharedJwts, Signer};
use crate::services::Services;
use crate::tokens::installation::SLUG_BUDGET;

/// How long a claim on the signing of a shared JWT holds: its signing, encryption and write take
/// well under it.
pub const CLAIM_SECS: i64 = 10;
/// How long an App row read for one request's JWT also serves the requests that follow it.
pub const ROW_SHARE_SECS: i64 = 1;
/// The most a function waits for the JWT another function claimed to sign: as long as a claim
/// lasts. A live claim means a signing is under way, and waiting for it costs less than another
/// `Sign` (the very call a burst must not multiply, and the one KMS throttles first). In a
/// function with Lambda's 15 s timeout the deadline ends the wait sooner (`AFTER_WAIT`: 8.5 s
/// after the invocation starts, at the latest).
pub const SHARE_WAIT: Duration = Duration::from_secs(CLAIM_SECS as u64);
/// The first pause before the entry is read again (then doubled, and at least twice as long as
/// the last read took; jittered), and the longest:
/// a signing, an encryption and a write take a few round trips, and a burst's waiting readers must
/// not crowd out the claimant's own calls.
const POLL_FIRST: Duration = Duration::from_millis(50);
const POLL_MAX: Duration = Duration::from_secs(1);
/// The longest pause after reads that took long (a table under load).
const POLL_LOADED: Duration = Duration::from_secs(4);
/// Less than this left of a wait, the shared JWT is not read again.
const MIN_READ: Duration = Duration::from_millis(100);
/// What the invocation keeps back from its deadline while it waits for the shared JWT: one
/// attempt of the AWS call that follows (its own `Sign`, or the `Decrypt` of the JWT that came)
/// and [`AFTER_JWT`] for what the request does with the JWT. Not a whole call with its retries:
/// a claimant is slow when KMS or DynamoDB is, so a waiter that gave up early to keep time for a
/// `Sign`'s retries would add its `Sign` to the very load that makes them needed. Its one attempt
/// still ends in the contract's error, in time, if it fails.
const AFTER_WAIT: Duration = Duration::from_secs(deadline::AWS_ATTEMPT.as_secs() + AFTER_JWT.as_secs());
/// What a request keeps back for its work at GitHub after the App JWT: an installation token's
/// mint (and the installation's lookup, when the installation table had no answer), each a
/// fraction of a second at GitHub.
const AFTER_JWT: Duration = Duration::from_secs(3);

/// The longest a claim's guard spends ending it ([`ClaimGuard`]): a request waits for it before it
/// answers, and a store that does not answer soon (DynamoDB in trouble) must not hold every answer
/// until the deadline.
const RELEASE_BUDGET: Duration = Duration::from_secs(1);

/// A JWT handed to a caller has at least this much life left.
pub const MIN_REMAINING_SECS: i64 = 5 * 60;

/// An App JWT.
#[derive(Debug, Clone)]
pub struct AppJwt {
    /// The JWT.
    pub token: Secret,
    /// The JWT's `exp` claim (Unix seconds).
    pub expires_at: i64,
    /// Whether it came from the cache.
    pub cached: bool,
    /// **(ext)** The App's slug, if it came with the JWT: from the shared entry, or asked of
    /// GitHub by this function when it signed the entry's JWT. Trusted no longer than the JWT.
    pub slug: Option<String>,
}

/// Issues App JWTs: reads the App's key ARN from the [`AppStore`] and signs with the [`Signer`],
/// or takes the JWT shared through the [`JwtShare`].
pub struct AppJwts {
    signing: Signing,
    cache: FlightCache<i64, AppJwt>,
    /// App rows read for [`Self::get_decided`], shared while they are read and for
    /// [`ROW_SHARE_SECS`] after: the requests that come while the first one's access is still
    /// being decided (its JWT not yet being made) read no row of their own.
    rows: FlightCache<i64, Row>,
    share: Option<JwtShare>,
    /// This process's name: a claim's holder is it and the claim's number ([`Self::new_holder`]).
    holder: String,
    /// The claims made so far.
    claims: AtomicU64,
    /// The claims still to be shared or ended ([`Self::settle`]).
    endings: Endings,
    /// Per App, when GitHub last refused this process's JWT (Unix seconds): a shared JWT signed
    /// by then is not taken again, but replaced. One entry at most per App whose JWT GitHub
    /// refused, and a JWT is only made for an App of the App table with a key: bounded by it.
    refused: Mutex<HashMap<i64, i64>>,
}

/// An App row as read to make a JWT, and the shared item read at the same time (with a share):
/// a cold start waits for one round trip to the tables, not one and then another.
#[derive(Debug, Clone)]
struct Row {
    key_arn: String,
    client_id: Option<String>,
    /// When it was read (Unix seconds).
    read_at: i64,
    /// The App's shared item, as read with the row (`None` without a share).
    shared: Option<Result<SharedItem, Error>>,
}

/// A claim on the signing of a shared JWT, from before it is sent until its holder shared its JWT
/// or ended the claim itself (then disarmed: `None`): dropped armed (the claim's call failed or was
/// dropped, the holder panicked, the signing was stopped at the deadline), it ends the claim from
/// a task of its own, so that the other functions need not wait for it to lapse. Armed, and until
/// that end is sent, it is one of the process's [`Endings`].
struct ClaimGuard {
    holder: String,
    share: Option<(Arc<dyn SharedJwts>, i64, Ending)>,
}

impl ClaimGuard {
    /// Armed for `holder`'s claim on `app_id`'s signing, counted in `endings`.
    fn new(share: &JwtShare, app_id: i64, holder: &str, endings: &Endings) -> Self {
        ClaimGuard { holder: holder.to_string(), share: Some((share.store.clone(), app_id, endings.start())) }
    }

    /// The claim was refused, or its holder shared its JWT or ended it: nothing to end.
    fn disarm(mut self) {
        self.share = None;
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        let Some((store, app_id, ending)) = self.share.take() else { return };
        let holder = std::mem::take(&mut self.holder);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        tracing::debug!(app_id, "the signing of the shared App JWT was left unfinished; ending its claim");
        runtime.spawn(async move {
            // Within its budget: a request settles on it before it answers (a claim left to lapse
            // holds the others for at most CLAIM_SECS).
            match tokio::time::timeout(RELEASE_BUDGET, store.release(app_id, &holder)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(app_id, error = %e, "could not end the claim on the shared App JWT"),
                Err(_) => tracing::warn!(app_id, "the end of the claim on the shared App JWT did not come in time"),
            }
            drop(ending);
        });
    }
}

/// The claims of this process still to be shared or ended: each armed [`ClaimGuard`], until its
/// holder shared its JWT or its claim's end was sent. [`AppJwts::settle`] waits for none to be
/// left before a request answers.
#[derive(Clone)]
struct Endings(Arc<tokio::sync::watch::Sender<usize>>);

/// One of the [`Endings`], counted until it is dropped.
struct Ending(Endings);

impl Endings {
    fn new() -> Self {
        Endings(Arc::new(tokio::sync::watch::channel(0).0))
    }

    fn start(&self) -> Ending {
        self.0.send_modify(|n| *n += 1);
        Ending(self.clone())
    }

    /// Once none is left.
    async fn settled(&self) {
        // The sender lives in `self`: the wait ends only when the count reaches 0.
        let _ = self.0.subscribe().wait_for(|n| *n == 0).await;
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        self.0.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A claimed signing running in a task of its own, for the request that started it. Dropped
/// before it finished, at the invocation's deadline (within twice [`deadline::ANSWER_MARGIN`] of
/// it: the request was cut to answer in time), the task is stopped: in Lambda the process is
/// frozen once it has answered, and a frozen signing would hold its claim until it lapsed;
/// stopped, its claim's guard ends the claim. Dropped sooner (a narrower budget around the
/// request's work), the task goes on and shares its JWT.
struct Detached {
    handle: tokio::task::JoinHandle<Result<AppJwt, Error>>,
    /// The deadline in scope when it started.
    by: Option<tokio::time::Instant>,
}

impl Drop for Detached {
    fn drop(&mut self) {
        let at_the_deadline = self.by.is_some_and(|by| tokio::time::Instant::now() + 2 * deadline::ANSWER_MARGIN >= by);
        if at_the_deadline && !self.handle.is_finished() {
            self.handle.abort();
        }
    }
}

/// What the shared entry is worth to a function of the App whose current key is the one asked.
enum Found {
    /// For the current key, with time left: to be decrypted.
    Usable(SharedJwt),
    /// None, or for another key, or expiring: a new one is signed (unless one came meanwhile).
    Stale,
    /// Unreadable, implausible, or not to be trusted: a new one is signed and replaces it.
    Broken(Option<SharedJwt>),
}

/// What a claim on the signing of a shared JWT found.
enum Claim {
    /// The signing is this function's: its claim's guard, armed.
    Won(ClaimGuard),
    /// Another holder's claim holds, or the entry became usable: the item as it is now.
    Lost(SharedItem),
}

/// How waiting for the JWT another function claimed to sign ended.
enum Waited {
    /// It came.
    Came(AppJwt),
    /// The claim ended with no usable entry: the signing may be claimed again.
    Free,
    /// Not in time, or broken, or the share failed.
    NotCome,
}

/// Whether a slug read from the shared entry can be an App's: 1 to 100 letters, digits, `-` or
/// `_` (anything else is not handed out; GitHub is asked instead).
fn plausible_slug(slug: &str) -> bool {
    (1..=100).contains(&slug.len()) && slug.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The encryption context a shared JWT is bound to.
struct Context<'a> {
    app_id: String,
    key_arn: &'a str,
    expires_at: String,
}

impl<'a> Context<'a> {
    fn new(app_id: i64, key_arn: &'a str, expires_at: i64) -> Self {
        Context { app_id: app_id.to_string(), key_arn, expires_at: expires_at.to_string() }
    }

    /// The context as the [`Vault`](crate::ports::Vault) takes it.
    fn pairs(&self) -> [(&str, &str); 3] {
        [("appcreds:AppId", &self.app_id), ("appcreds:KeyArn", self.key_arn), ("appcreds:ExpiresAt", &self.expires_at)]
    }
}

impl AppJwts {
    /// A cache that signs through `services`' signer, App table and clock, and shares through
    /// its [`JwtShare`] if it has one.
    pub fn new(services: &Services) -> Self {
        Self {
            signing: Signing {
                signer: services.signer.clone(),
                store: services.apps.clone(),
                clock: services.clock.clone(),
                github: services.github.clone(),
            },
            cache: FlightCache::new(Limits { entries: 10_000, bytes: 8 << 20 }, |_, jwt| {
                size_of::<(i64, AppJwt)>() + jwt.token.expose().len()
            }),
            rows: FlightCache::new(Limits { entries: 10_000, bytes: 8 << 20 }, |_, row: &Row| {
                let entry = match &row.shared {
                    Some(Ok(SharedItem { entry: Some(e), .. })) => {
                        e.key_arn.len() + e.sealed.len() + e.slug.as_ref().map_or(0, String::len)
                    }
                    _ => 0,
                };
                size_of::<(i64, Row)>() + row.key_arn.len() + row.client_id.as_ref().map_or(0, String::len) + entry
            }),
            share: services.jwt_share.clone(),
            holder: format!("{:016x}", fastrand::u64(..)),
            claims: AtomicU64::new(0),
            endings: Endings::new(),
            refused: Mutex::new(HashMap::new()),
        }
    }

    /// A JWT for `app_id` with at least [`MIN_REMAINING_SECS`] of life left.
    pub async fn get(&self, app_id: i64) -> Result<AppJwt, Error> {
        let fresh = |jwt: &AppJwt| jwt.expires_at - self.now() > MIN_REMAINING_SECS;
        // Boxed (type-erased): signing, shared or not, nests deep enough that the futures of the jobs
        // above it would overflow the compiler's type-depth limit.
        let (jwt, cached) = self.cache.get_or_fill(app_id, fresh, || self.mint(app_id, None).boxed()).await?;
        Ok(AppJwt { cached, ..jwt })
    }

    /// [`Self::get`] once `decided` (the caller's access decision) allows it, and its outcome. When
    /// a JWT must be made, the App row is read while the access is decided (a cold start's first
    /// answer waits for both reads at once; concurrent requests share one read), and nothing is
    /// signed unless it allows; a refusal is the answer even for an App that does not exist.
    pub async fn get_decided<T>(
        &self,
        app_id: i64,
        decided: impl Future<Output = Result<T, Error>>,
    ) -> Result<(T, AppJwt), Error> {
        let fresh = |jwt: &AppJwt| jwt.expires_at - self.now() > MIN_REMAINING_SECS;
        if self.cache.holds(&app_id, fresh) {
            let decision = decided.await?;
            return Ok((decision, self.get(app_id).await?));
        }
        // A row read is shared while it runs and for ROW_SHARE_SECS after, no longer: a rotated
        // key is seen by the next request that makes a JWT. A shared item that could not be read
        // is read again by the next.
        let recent = |row: &Row| self.now() - row.read_at <= ROW_SHARE_SECS && !matches!(row.shared, Some(Err(_)));
        let row = self.rows.get_or_fill(app_id, recent, || self.read_row(app_id));
        let (decision, row) = tokio::join!(decided, row);
        let (decision, (row, _)) = (decision?, row?);
        let (jwt, cached) = self.cache.get_or_fill(app_id, fresh, || self.mint(app_id, Some(row)).boxed()).await?;
        Ok((decision, AppJwt { cached, ..jwt }))
    }

    /// Drops the cached JWT of `app_id`, e.g. after GitHub refused it (and distrusts the shared
    /// one signed by now), and the row read with the shared item as it was: the next JWT is made
    /// from the item as it is now (the refused JWT in it is replaced, not waited for).
    pub async fn invalidate(&self, app_id: i64) {
        let now = self.now();
        self.refused.lock().unwrap_or_else(PoisonError::into_inner).insert(app_id, now);
        self.rows.invalidate(&app_id).await;
        self.cache.invalidate(&app_id).await;
    }

    /// Waits, until `by` at the latest, for this process's claims on the signing of a shared JWT
    /// to be shared or ended: a claimed signing that outlived its request, or the end of a claim
    /// whose signing was stopped at the deadline (or failed). A request calls it before it answers:
    /// in Lambda the process is frozen once it has answered, and a claim it had not yet shared or
    /// ended would hold the other functions until it lapsed ([`CLAIM_SECS`]).
    pub async fn settle(&self, by: tokio::time::Instant) {
        let _ = tokio::time::timeout_at(by, self.endings.settled()).await;
    }

    /// The App's key ARN and client ID, as the App table has them now, and with a share, its
    /// shared item, read at the same time (in one request, if the share's store can).
    async fn read_row(&self, app_id: i64) -> Result<Row, Error> {
        let (app, shared) = match &self.share {
            Some(share) => match share.store.read_with_app(app_id).await {
                Some((app, shared)) => (app, Some(shared)),
                None => {
                    let (app, shared) = tokio::join!(self.signing.store.get_app(app_id), share.store.read(app_id));
                    (app, Some(shared))
                }
            },
            None => (self.signing.store.get_app(app_id).await, None),
        };
        let app = app?.ok_or(Error::UnknownApp(app_id))?;
        let key_arn = app.kms_key_arn.ok_or(Error::AppKeyMissing(app_id))?;
        Ok(Row { key_arn, client_id: app.client_id, read_at: self.now(), shared })
    }

    /// Every installation of `app_id` as GitHub lists it (all pages). A JWT GitHub refuses is
    /// dropped, so that the next call signs afresh (the key may have been rotated).
    pub(crate) async fn list_installations(
        &self,
        github: &GitHubClient,
        app_id: i64,
    ) -> Result<Vec<GitHubInstallation>, Error> {
        let jwt = self.get(app_id).await?;
        let listed = installations::list(github, app_id, &jwt.token).await;
        if let Err(Error::GitHubUnauthorized { .. }) = &listed {
            self.invalidate(app_id).await;
        }
        listed
    }

    /// A new JWT for `app_id`, under the key ARN and client ID its row names (`row`, if it was
    /// read already).
    async fn mint(&self, app_id: i64, row: Option<Row>) -> Result<AppJwt, Error> {
        let row = match row {
            Some(row) => row,
            None => self.read_row(app_id).await?,
        };
        let (key_arn, client_id) = (&row.key_arn, row.client_id.as_deref());
        match (&self.share, row.shared) {
            (Some(share), read) => self.shared(share, app_id, key_arn, client_id, read).await,
            (None, _) => Ok(self.signing.sign(app_id, key_arn, client_id).await?.0),
        }
    }

    /// **(ext)** The shared JWT of `app_id` for `key_arn` (the App's current key), or one signed
    /// here: by the one function that claims the signing, which shares it, or by any function
    /// the share fails. `read`: the App's shared item, if it was read with the row.
    async fn shared(
        &self,
        share: &JwtShare,
        app_id: i64,
        key_arn: &str,
        client_id: Option<&str>,
        read: Option<Result<SharedItem, Error>>,
    ) -> Result<AppJwt, Error> {
        let now = self.now();
        let read = match read {
            Some(read) => read,
            None => share.store.read(app_id).await,
        };
        let found = match read {
            Ok(item) => self.judge(app_id, item.entry, key_arn),
            Err(e) => {
                tracing::warn!(app_id, error = %e, "could not read the shared App JWT; signing one");
                Found::Broken(None)
            }
        };
        let broken = match found {
            Found::Usable(entry) => match self.open(share, app_id, &entry, client_id).await {
                Some(jwt) => return Ok(jwt),
                None => Some(Some(entry)),
            },
            Found::Stale => None,
            Found::Broken(entry) => Some(entry),
        };
        // A stale entry is replaced only if it still is one, a broken one only if it is still there.
        let only_if = match &broken {
            None => ClaimIf::NotUsable { key_arn, after: now + MIN_REMAINING_SECS },
            Some(seen) => ClaimIf::Still(seen.as_ref()),
        };
        let seen = broken.clone().flatten();
        let holder = self.new_holder();
        match self.claim(share, app_id, &holder, only_if).await {
            Ok(Claim::Won(claim)) => self.sign_apart(share, claim, app_id, (key_arn, client_id)).await,
            Ok(Claim::Lost(item)) => {
                if let Some(Found::Usable(entry)) =
                    item.entry.filter(|e| Some(e) != seen.as_ref()).map(|e| self.judge(app_id, Some(e), key_arn))
                    && let Some(jwt) = self.open(share, app_id, &entry, client_id).await
                {
                    return Ok(jwt);
                }
                let waited = self.wait_for(share, app_id, (key_arn, client_id), seen.as_ref(), item.claimed_until);
                match waited.await {
                    Waited::Came(jwt) => Ok(jwt),
                    // Its holder could not sign: one of those waiting signs for the others.
                    Waited::Free => match self.claim(share, app_id, &holder, only_if).await {
                        Ok(Claim::Won(claim)) => self.sign_apart(share, claim, app_id, (key_arn, client_id)).await,
                        _ => Ok(self.signing.sign(app_id, key_arn, client_id).await?.0),
                    },
                    Waited::NotCome => Ok(self.signing.sign(app_id, key_arn, client_id).await?.0),
                }
            }
            Err(e) => {
                tracing::warn!(app_id, error = %e, "could not claim the signing of the shared App JWT; signing one");
                Ok(self.signing.sign(app_id, key_arn, client_id).await?.0)
            }
        }
    }

    /// Claims the signing of `app_id`'s JWT for `holder` (for [`CLAIM_SECS`]), if `only_if`. Its
    /// guard is armed before the claim is sent and given back armed only if the claim holds: a
    /// claim that lands as its sender is dropped, or whose answer is lost (an error), is ended by
    /// the guard at once, before this function does anything else.
    async fn claim(&self, share: &JwtShare, app_id: i64, holder: &str, only_if: ClaimIf<'_>) -> Result<Claim, Error> {
        let now = self.now();
        let guard = ClaimGuard::new(share, app_id, holder, &self.endings);
        match share.store.claim(app_id, holder, now, now + CLAIM_SECS, only_if).await? {
            JwtClaim::Claimed => Ok(Claim::Won(guard)),
            JwtClaim::Refused(item) => {
                guard.disarm();
                Ok(Claim::Lost(item))
            }
        }
    }

    /// The time (Unix seconds), as the signing's clock has it.
    fn now(&self) -> i64 {
        self.signing.clock.now()
    }

    /// A name for one claim: this process's and the claim's number. A claim sent again (by the
    /// SDK) is its holder's still; another mint in this process (one started after a JWT GitHub
    /// refused was dropped) makes a claim of its own, refused while this one holds.
    fn new_holder(&self) -> String {
        format!("{}-{}", self.holder, self.claims.fetch_add(1, Ordering::Relaxed))
    }

    /// [`Signing::sign_claimed`] in a task of its own, awaited here: once this function holds the
    /// claim the others wait for its JWT, so its signing and sharing go on even if this request is
    /// dropped meanwhile by a narrower budget around its work; at the invocation's deadline they
    /// are stopped ([`Detached`]). The task keeps the deadline in scope and the log span.
    async fn sign_apart(
        &self,
        share: &JwtShare,
        claim: ClaimGuard,
        app_id: i64,
        (key_arn, client_id): (&str, Option<&str>),
    ) -> Result<AppJwt, Error> {
        let (signing, share) = (self.signing.clone(), share.clone());
        let (key_arn, client_id) = (key_arn.to_string(), client_id.map(str::to_string));
        let work = async move { signing.sign_claimed(&share, claim, app_id, &key_arn, client_id.as_deref()).await };
        let by = deadline::current();
        let work = match by {
            Some(by) => deadline::within(by, work).boxed(),
            None => work.boxed(),
        };
        let mut task = Detached { handle: tokio::spawn(work.in_current_span()), by };
        match (&mut task.handle).await {
            Ok(signed) => signed,
            Err(failed) => Err(Error::internal("signing the App JWT", failed)),
        }
    }

    /// What `entry` is worth for `key_arn`, now.
    fn judge(&self, app_id: i64, entry: Option<SharedJwt>, key_arn: &str) -> Found {
        let Some(entry) = entry else { return Found::Stale };
        let now = self.now();
        if entry.key_arn != key_arn || entry.expires_at - now <= MIN_REMAINING_SECS {
            return Found::Stale;
        }
        let refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner).get(&app_id).copied();
        // No JWT outlives its lifetime; one GitHub refused here is not taken again.
        let signed_at = entry.expires_at - LIFETIME_SECS;
        if signed_at > now + 60 || refused.is_some_and(|at| signed_at <= at) {
            return Found::Broken(Some(entry));
        }
        Found::Usable(entry)
    }

    /// The JWT `entry` holds, if it decrypts under its context and is the JWT this code signs
    /// for the App (issued by its client ID if it has one) that expires at the entry's expiry.
    async fn open(&self, share: &JwtShare, app_id: i64, entry: &SharedJwt, client_id: Option<&str>) -> Option<AppJwt> {
        let context = Context::new(app_id, &entry.key_arn, entry.expires_at);
        let signed = Claims::for_app(app_id, entry.expires_at - LIFETIME_SECS).with_client_id(client_id);
        match share.vault.open(&context.pairs(), &entry.sealed).await {
            Ok(token) if Claims::of(token.expose()).as_ref() == Some(&signed) => {
                tracing::debug!(app_id, expires_at = entry.expires_at, "took the shared App JWT");
                let slug = entry.slug.clone().filter(|slug| plausible_slug(slug));
                Some(AppJwt { token, expires_at: entry.expires_at, cached: true, slug })
            }
            Ok(_) => {
                tracing::warn!(app_id, "the shared App JWT is not the App's JWT for its expiry; signing one");
                None
            }
            Err(e) => {
                tracing::warn!(app_id, error = %e, "could not decrypt the shared App JWT; signing one");
                None
            }
        }
    }

    /// The JWT another function claimed to sign, read again with jittered pauses for at most
    /// [`SHARE_WAIT`], never into the time the invocation needs after ([`AFTER_WAIT`]: the pauses
    /// and the reads alike), and only while the claim (until `claimed_until`, as last read) lasts.
    /// `NotCome` if it does not come in time or is broken (not `broken`, the entry found broken
    /// before).
    async fn wait_for(
        &self,
        share: &JwtShare,
        app_id: i64,
        (key_arn, client_id): (&str, Option<&str>),
        broken: Option<&SharedJwt>,
        mut claimed_until: Option<i64>,
    ) -> Waited {
        let started = tokio::time::Instant::now();
        let mut pause = POLL_FIRST;
        loop {
            // No claim, a lapsed one, or one no holder could have made: nothing is on its way.
            let now = self.now();
            if claimed_until.is_none_or(|until| until < now || until > now + CLAIM_SECS) {
                tracing::debug!(app_id, "the signing of the shared App JWT is no longer claimed");
                return Waited::Free;
            }
            // What is left of the wait: until SHARE_WAIT, and never into the time kept back.
            let left = SHARE_WAIT.saturating_sub(started.elapsed());
            let left = deadline::remaining().map_or(left, |d| left.min(d.saturating_sub(AFTER_WAIT)));
            if left < MIN_READ {
                tracing::debug!(app_id, "the shared App JWT did not come in time; signing one");
                return Waited::NotCome;
            }
            // A pause leaves at least half of what is left for the read after it: the last read
            // comes at the end of the wait, not a whole pause before it.
            let half = pause / 2;
            let wait = half + Duration::from_millis(fastrand::u64(0..=half.as_millis() as u64));
            let wait = wait.min(left / 2);
            tokio::time::sleep(wait).await;
            // The read, too, ends where the time kept back begins.
            let read_at = tokio::time::Instant::now();
            let read = tokio::time::timeout(left - wait, share.store.read(app_id)).await;
            let item = match read {
                Ok(Ok(item)) => item,
                Ok(Err(e)) => {
                    tracing::warn!(app_id, error = %e, "could not read the shared App JWT; signing one");
                    return Waited::NotCome;
                }
                Err(_) => {
                    tracing::debug!(app_id, "the shared App JWT's item did not come in time; signing one");
                    return Waited::NotCome;
                }
            };
            claimed_until = item.claimed_until;
            if let Some(entry) = item.entry.filter(|e| Some(e) != broken) {
                match self.judge(app_id, Some(entry), key_arn) {
                    Found::Usable(entry) => {
                        return self.open(share, app_id, &entry, client_id).await.map_or(Waited::NotCome, Waited::Came);
                    }
                    Found::Stale => {}
                    Found::Broken(_) => return Waited::NotCome,
                }
            }
            // Reads that take long are a table (or a network) under load: the pauses grow with
            // them, so that a burst's waiters do not crowd out the claimant's own calls.
            pause = (pause * 2).min(POLL_MAX).max((read_at.elapsed() * 2).min(POLL_LOADED));
        }
    }
}

/// What signs an App JWT and shares it: the part of [`AppJwts`] a claimed signing takes into a task
/// of its own (cheap to clone: the ports).
#[derive(Clone)]
struct Signing {
    signer: Arc<dyn Signer>,
    store: Arc<dyn AppStore>,
    clock: Arc<dyn Clock>,
    /// Asks the App's slug for the shared entry (`None`: the entry goes without it).
    github: Option<GitHubClient>,
}

impl Signing {
    /// A new JWT, and whether it was signed with `key_arn` (not another of the App's keys).
    async fn sign(&self, app_id: i64, key_arn: &str, client_id: Option<&str>) -> Result<(AppJwt, bool), Error> {
        // The client ID is the issuer when the App table names one (GitHub accepts either).
        let claims = Claims::for_app(app_id, self.clock.now()).with_client_id(client_id);
        let input = claims.signing_input();
        let (signature, with_key) = match self.signer.sign(key_arn, input.as_bytes()).await {
            Ok(signature) => (signature, true),
            Err(Error::SigningKey(problem)) => {
                (self.sign_with_another_key(app_id, key_arn, input.as_bytes(), problem).await?, false)
            }
            Err(err) => return Err(err),
        };
        tracing::debug!(app_id, expires_at = claims.exp, "signed a new App JWT");
        let token = Secret::new(jwt::assemble(&input, &signature));
        Ok((AppJwt { token, expires_at: claims.exp, cached: false, slug: None }, with_key))
    }

    /// A JWT signed under `claim` (this function's; ended by its guard if this stops unfinished),
    /// shared with the others; or, if it cannot be signed, was signed with a previous key (the
    /// current one refused: not for the others), or could not be shared, the claim ended at once,
    /// so that the others need not wait for it to lapse.
    async fn sign_claimed(
        &self,
        share: &JwtShare,
        claim: ClaimGuard,
        app_id: i64,
        key_arn: &str,
        client_id: Option<&str>,
    ) -> Result<AppJwt, Error> {
        let holder = &claim.holder;
        let mut signed = self.sign(app_id, key_arn, client_id).await;
        let shared = match &mut signed {
            Ok((jwt, true)) => self.share_out(share, holder, app_id, key_arn, jwt).await,
            _ => false,
        };
        if !shared && let Err(e) = share.store.release(app_id, holder).await {
            tracing::warn!(app_id, error = %e, "could not end the claim on the shared App JWT");
        }
        claim.disarm();
        Ok(signed?.0)
    }

    /// Encrypts `jwt` under its context and writes it for the other functions while `holder`'s
    /// claim holds, with the App's slug (asked of GitHub meanwhile, and kept in `jwt`), best
    /// effort; whether it was written.
    async fn share_out(&self, share: &JwtShare, holder: &str, app_id: i64, key_arn: &str, jwt: &mut AppJwt) -> bool {
        let context = Context::new(app_id, key_arn, jwt.expires_at);
        let context = context.pairs();
        // Boxed: the future of a cold function's first answer is deep enough as it is.
        let slug = Box::pin(self.ask_slug(app_id, &jwt.token));
        let (sealed, slug) = tokio::join!(share.vault.seal(&context, &jwt.token), slug);
        jwt.slug = slug;
        let sealed = match sealed {
            Ok(sealed) => sealed,
            Err(e) => {
                tracing::warn!(app_id, error = %e, "could not encrypt the App JWT to share it");
                return false;
            }
        };
        let entry =
            SharedJwt { key_arn: key_arn.to_string(), expires_at: jwt.expires_at, sealed, slug: jwt.slug.clone() };
        match share.store.put(app_id, holder, &entry).await {
            Ok(true) => {
                tracing::debug!(app_id, expires_at = jwt.expires_at, "shared the App JWT");
                true
            }
            Ok(false) => {
                tracing::debug!(app_id, "the claim lapsed before the App JWT was shared");
                false
            }
            Err(e) => {
                tracing::warn!(app_id, error = %e, "could not share the App JWT");
                false
            }
        }
    }

    /// **(ext)** The App's slug (`GET /app` with its new JWT `jwt`), for the shared entry: best
    /// effort, within [`SLUG_BUDGET`] and never into the last [`AFTER_WAIT`] of the invocation
    /// (what a waiter keeps back; here, for the entry's write and the mint); `None` without a
    /// GitHub client, or if GitHub does not say in time.
    async fn ask_slug(&self, app_id: i64, jwt: &Secret) -> Option<String> {
        let github = self.github.as_ref()?;
        let budget = deadline::remaining().map_or(SLUG_BUDGET, |left| SLUG_BUDGET.min(left.saturating_sub(AFTER_WAIT)));
        if budget.is_zero() {
            return None;
        }
        match tokio::time::timeout(budget, github.get::<App>("/app", Auth::App { app_id, jwt })).await {
            Ok(Ok(app)) => app.slug.filter(|slug| !slug.is_empty()),
            Ok(Err(e)) => {
                tracing::warn!(app_id, error = %e, "could not read the App's slug; sharing the JWT without it");
                None
            }
            Err(_) => {
                tracing::warn!(app_id, "GitHub did not give the App's slug in time; sharing the JWT without it");
                None
            }
        }
    }

    /// After `refused` would not sign: the other keys the App may sign with, as its row says now,
    /// the first that signs winning.
    /// - The row's current key, if a rotation switched it meanwhile: a row read just before the
    ///   switch names the old key, which stops signing once it is retired.
    /// - The previous key while the rotation's grace period lasts: IAM can take minutes to see a
    ///   new key's `Status=Active` tag, and a cold function must not fail meanwhile.
    async fn sign_with_another_key(
        &self,
        app_id: i64,
        refused: &str,
        message: &[u8],
        problem: KeyProblem,
    ) -> Result<Vec<u8>, Error> {
        let app = self.store.get_app(app_id).await?.ok_or(Error::UnknownApp(app_id))?;
        let now = self.clock.now();
        let current = app.kms_key_arn.filter(|k| k != refused);
        let previous = app.previous_key.filter(|p| p.usable_until > now && p.arn != refused).map(|p| p.arn);
        for (key, why) in [
            (current, "the App's key was rotated"),
            (previous, "the new key is refused; the previous one is in its grace period"),
        ] {
            let Some(key) = key else { continue };
            match self.signer.sign(&key, message).await {
                Ok(signature) => {
                    tracing::info!(app_id, %problem, reason = why, "signed with another of the App's keys");
                    return Ok(signature);
                }
                Err(Error::SigningKey(other)) => {
                    tracing::warn!(app_id, %other, "another of the App's keys refused too")
                }
                Err(err) => return Err(err),
            }
        }
        Err(Error::SigningKey(problem))
    }
}
