//! The ports: the small traits through which credentials, jobs and operations reach KMS,
//! DynamoDB, CloudWatch, IAM, GitHub's OIDC keys and the clock ([`Signer`], [`Mac`],
//! [`AppStore`], [`InstallationStore`], [`AccessStore`], [`Leases`], [`SharedJwts`],
//! [`OidcVerifier`], [`Vault`], [`AccessKeys`], [`RotationStore`], [`MetricSink`], [`Clock`]); the
//! records that cross them (`records`: [`AppRecord`], [`InstallationRecord`], [`TablePosition`],
//! [`SharedJwt`], [`TargetRecord`] and the like, defined here so that the adapters import them and nothing
//! above names an adapter); and `Unconfigured` (`unconfigured`), the stand-in for a port a
//! function lacks. The `Services` bundle of the layer above holds one of each. GitHub's REST API
//! is no port: its client is concrete, and credentials and jobs call it directly.
//!
//! **A function that lacks a port** holds `Unconfigured(why)` in its place, never an `Option`:
//! every call answers `Error::Misconfigured(why)`, a `ServerSideError` that names what is
//! missing, so a miswired deployment is visible, not silent. The one exception is a lease: with
//! no lease table, [`Leases::acquire`] grants every lease, so runs are not kept apart (as in tests
//! and local runs; every deployed function has the table). The GitHub client, no port, answers
//! the same way: `Services::github` is the same `Misconfigured` error for a function built
//! without it.
//!
//! Each call through a port is one dynamic dispatch (and, for async methods, one boxed future):
//! nanoseconds beside the network call behind it.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::access::{Claims, Rule};
pub use crate::domain::clock::Clock;
pub use crate::domain::rotation::{AccessKeyInfo, RotationState, TargetSpec};
use crate::domain::scope::InstallationGrants;
use crate::domain::secret::Secret;
use crate::error::Error;

mod records;
mod unconfigured;

pub use records::{
    AppRecord, InstallationRecord, InstallationRow, PreviousKey, SharedItem, SharedJwt, TablePosition, TargetList,
    TargetRecord,
};
pub(crate) use unconfigured::Unconfigured;

/// Signs bytes with RSASSA-PKCS1-v1_5 / SHA-256 under a key named by ARN (KMS `Sign`).
#[async_trait]
pub trait Signer: Send + Sync {
    /// The signature of `message` under `key_id`.
    async fn sign(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>, Error>;
}

/// Makes and checks MACs (KMS HMAC): page tokens derive their encryption keys with it.
#[async_trait]
pub trait Mac: Send + Sync {
    /// The MAC of `message`.
    async fn generate(&self, message: &[u8]) -> Result<Vec<u8>, Error>;
    /// `Ok(false)` for a MAC that does not verify.
    async fn verify(&self, message: &[u8], mac: &[u8]) -> Result<bool, Error>;
}

/// The App table.
#[async_trait]
pub trait AppStore: Send + Sync {
    /// The App's row, if it is registered.
    async fn get_app(&self, app_id: i64) -> Result<Option<AppRecord>, Error>;
    /// Every App, by App ID.
    async fn list_apps(&self) -> Result<Vec<AppRecord>, Error>;
}

/// How far [`InstallationStore::list_app`] reads before it gives up: at most `max_rows` rows,
/// read before the invocation's deadline with `reserve` kept back for what follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowBound {
    /// The most rows the App may have.
    pub max_rows: usize,
    /// Time kept back, after the listing, for what follows it.
    pub reserve: std::time::Duration,
}

/// The Installation table. **(ext)** Rows hold what each installation grants, when the writer
/// knew it ([`InstallationRow`]); a caller that wants only the record takes its `record`.
#[async_trait]
pub trait InstallationStore: Send + Sync {
    /// The row of (`app_id`, `node_id`).
    async fn get(&self, app_id: i64, node_id: &str) -> Result<Option<InstallationRow>, Error>;
    /// Rows with this node ID, any App (GSI `NodeID`).
    async fn by_node_id(&self, node_id: &str) -> Result<Vec<InstallationRecord>, Error>;
    /// The rows of one App: every one (`Some`) when `bound` is `None`; within `bound`, `None`
    /// when the App has more rows than it allows or they would not all be read in time (what was
    /// read then answers nothing for sure).
    async fn list_app(&self, app_id: i64, bound: Option<RowBound>) -> Result<Option<Vec<InstallationRow>>, Error>;
    /// The next rows after `after` that `keep` admits, up to `limit` (at least one), and the
    /// position to continue from while more admitted rows may follow: `None` once the table
    /// ended. Rows `keep` refuses are scanned past, not returned. The scan stops early, with
    /// fewer rows (maybe none), at a bound of its own or when the invocation's deadline nears;
    /// the position is then the last row scanned, which `keep` may refuse (so it must not be
    /// shown to whoever `keep` stands for).
    async fn page(
        &self,
        limit: usize,
        after: Option<TablePosition>,
        keep: &(dyn for<'r> Fn(&'r InstallationRecord) -> bool + Send + Sync),
    ) -> Result<(Vec<InstallationRecord>, Option<TablePosition>), Error>;
    /// Every row, all Apps.
    async fn all(&self) -> Result<Vec<InstallationRecord>, Error>;
    /// The key of every row, all Apps.
    async fn all_keys(&self) -> Result<Vec<TablePosition>, Error>;
    /// Writes `puts` (stamped `LastRefreshed` = `now_rfc3339`) and deletes `deletes`, in batches.
    /// A put replaces the whole row: one without grants leaves the row without them.
    async fn write(
        &self,
        puts: Vec<InstallationRow>,
        deletes: Vec<TablePosition>,
        now_rfc3339: &str,
    ) -> Result<(), Error>;
    /// **(ext)** Sets what installation `installation_id` grants on the row at `position`
    /// (stamped `LastRefreshed`), leaving the rest of the row as it is, and only while the row is
    /// there and still holds that installation: a row the sync deleted meanwhile (an uninstall)
    /// stays deleted, where a put of the row as it was read would bring it back. Whether the row
    /// was written.
    async fn write_grants(
        &self,
        position: &TablePosition,
        installation_id: i64,
        grants: &InstallationGrants,
        now_rfc3339: &str,
    ) -> Result<bool, Error>;
}

/// The access table.
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Every valid rule (a row that does not validate grants nothing and is logged).
    async fn list_rules(&self) -> Result<Vec<Rule>, Error>;
}

/// What [`Leases::acquire`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// The lease is the caller's until it releases it or it expires.
    Acquired,
    /// Another holder has it, until this time (Unix seconds).
    HeldUntil(i64),
}

/// One-at-a-time leases (the installation sync's), held until released or expired.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Takes lease `name` for `holder` until `until` (Unix seconds), unless another holder's is
    /// unexpired at `now`.
    async fn acquire(&self, name: &str, holder: &str, now: i64, until: i64) -> Result<Lease, Error>;
    /// Gives lease `name` back, if `holder` still has it.
    async fn release(&self, name: &str, holder: &str) -> Result<(), Error>;
}

/// What [`SharedJwts::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtClaim {
    /// The signing is the caller's until its claim expires.
    Claimed,
    /// Another holder's claim is unexpired, or the entry became usable meanwhile: the item as it
    /// is now (its entry only if it reads as one).
    Refused(SharedItem),
}

/// **(ext)** The App JWT one function signed for the others, one entry per App (in the lease
/// table), and the claim that keeps its signing to one function at a time.
#[async_trait]
pub trait SharedJwts: Send + Sync {
    /// The App's item (strongly consistent): its entry and claim; an item whose entry does not
    /// read as one is an error.
    async fn read(&self, app_id: i64) -> Result<SharedItem, Error>;
    /// The App's row of the App table and its item ([`Self::read`]) in one request, if this store
    /// was given the App table: a cold function's first JWT waits for one round trip to the
    /// tables, not two side by side. `None` if it was not given it, or the request did not answer
    /// for both (failed, left a key unprocessed, or named a table otherwise): then each is read on
    /// its own, so that the share never fails what the App row alone would answer. A request that
    /// failed with no time left for another AWS call is the row's error.
    async fn read_with_app(&self, _app_id: i64) -> Option<RowAndItem> {
        None
    }
    /// Claims the signing of the App's JWT for `holder` until `until` (Unix seconds), unless
    /// another holder's claim is unexpired at `now`, or the entry is not as `only_if` says. A
    /// claim that ends after `until` is no claim (a clock ahead, or garbage): it is taken over.
    async fn claim(
        &self,
        app_id: i64,
        holder: &str,
        now: i64,
        until: i64,
        only_if: ClaimIf<'_>,
    ) -> Result<JwtClaim, Error>;
    /// Writes the entry, and ends the claim, while `holder` still holds it; whether it was written.
    async fn put(&self, app_id: i64, holder: &str, entry: &SharedJwt) -> Result<bool, Error>;
    /// Ends `holder`'s claim without writing an entry (its signing failed, or its JWT is not for
    /// the others), so that the next function claims at once; nothing if it holds none.
    async fn release(&self, app_id: i64, holder: &str) -> Result<(), Error>;
}

/// An App's row of the App table and its shared item, as [`SharedJwts::read_with_app`] reads
/// them: each its own result.
pub type RowAndItem = (Result<Option<AppRecord>, Error>, Result<SharedItem, Error>);

/// What [`SharedJwts::claim`] requires of the entry.
#[derive(Debug, Clone, Copy)]
pub enum ClaimIf<'a> {
    /// That it is not usable: none, or not for `key_arn`, or expiring by `after`.
    NotUsable {
        /// The App's current key.
        key_arn: &'a str,
        /// An entry that expires by then is not usable.
        after: i64,
    },
    /// That it is still the one found broken (`None`: one that did not read as an entry, which
    /// any entry replaces).
    Still(Option<&'a SharedJwt>),
}

/// **(ext)** The shared App JWT: its entries, and the KMS key that encrypts them. Without it
/// (`Services::jwt_share` is `None`) every function signs its own JWTs.
#[derive(Clone)]
pub struct JwtShare {
    /// The entries.
    pub store: Arc<dyn SharedJwts>,
    /// Encrypts and decrypts the JWTs, bound to the App, the key and the expiry.
    pub vault: Arc<dyn Vault>,
}

/// Verifies a caller's GitHub Actions OIDC token.
#[async_trait]
pub trait OidcVerifier: Send + Sync {
    /// The token's claims, or `AccessDeniedException` naming why it is refused.
    async fn verify(&self, token: &str) -> Result<Claims, Error>;
}

/// Encrypts and decrypts a value under a key that never leaves KMS, bound to `context` (KMS
/// encryption context): the rotator's pending secret access key, between runs.
#[async_trait]
pub trait Vault: Send + Sync {
    /// `value` encrypted, bound to `context`.
    async fn seal(&self, context: &[(&str, &str)], value: &Secret) -> Result<Vec<u8>, Error>;
    /// The value `sealed` holds, if `context` is the one it was sealed with.
    async fn open(&self, context: &[(&str, &str)], sealed: &[u8]) -> Result<Secret, Error>;
}

/// An IAM user, as far as the rotator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamUser {
    /// Its name, as IAM spells it (names are unique regardless of case).
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// Its IAM path (`/appcreds-rotated/`).
    pub path: String,
}

/// A new access key: its secret is shown once, at creation.
#[derive(Debug)]
pub struct NewAccessKey {
    /// The access key ID.
    pub key_id: String,
    /// The secret access key.
    pub secret: Secret,
    /// When it was created (Unix seconds).
    pub created: i64,
}

/// IAM access keys of users, and STS to prove that a key works.
#[async_trait]
pub trait AccessKeys: Send + Sync {
    /// The user, or `None` if IAM has no such user.
    async fn user(&self, user: &str) -> Result<Option<IamUser>, Error>;
    /// The user's access keys.
    async fn list(&self, user: &str) -> Result<Vec<AccessKeyInfo>, Error>;
    /// Creates an access key for the user.
    async fn create(&self, user: &str) -> Result<NewAccessKey, Error>;
    /// Makes a key `Active` or `Inactive`.
    async fn set_active(&self, user: &str, key_id: &str, active: bool) -> Result<(), Error>;
    /// Deletes a key (gone already counts as deleted).
    async fn delete(&self, user: &str, key_id: &str) -> Result<(), Error>;
    /// The ARN STS `GetCallerIdentity` answers when called with this key, or `None` while AWS
    /// does not accept the key (yet).
    async fn identity(&self, key_id: &str, secret: &Secret) -> Result<Option<String>, Error>;
}

/// What a state write does with the pending secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// Leave it as it is.
    Keep,
    /// Store this ciphertext.
    Set(Vec<u8>),
    /// Remove it.
    Clear,
}

/// The rotation table.
#[async_trait]
pub trait RotationStore: Send + Sync {
    /// The target of IAM user `user`.
    async fn get(&self, user: &str) -> Result<Option<TargetRecord>, Error>;
    /// Every target, and the rows that are not valid targets (written past the CLI).
    async fn list(&self) -> Result<TargetList, Error>;
    /// Writes a target's spec (new, or replacing the spec and keeping the state).
    async fn put_spec(&self, spec: &TargetSpec) -> Result<(), Error>;
    /// Deletes a target; `false` if there was none.
    async fn delete(&self, user: &str) -> Result<bool, Error>;
    /// Writes the state if the record is still at `version`; the new version, or
    /// `Error::Internal` if another writer got there first.
    async fn save_state(&self, user: &str, state: &RotationState, pending: Pending, version: i64)
    -> Result<i64, Error>;
}

/// Whether requests are checked against the access rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessMode {
    /// A request no rule allows is refused (the default).
    Enforce,
    /// Every IAM-authenticated caller gets what it asks for, as in the TypeScript framework.
    Open,
}

/// A unit of a [`Metric`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count.
    Count,
    /// A percentage (0 to 100).
    Percent,
    /// Seconds.
    Seconds,
    /// No unit (hours, which CloudWatch has no unit for).
    None,
}

/// One metric value, as the rate-limit scanner publishes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The metric's name.
    pub name: &'static str,
    /// Its dimensions, in order.
    pub dimensions: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
    /// The unit.
    pub unit: Unit,
    /// When it was measured (Unix seconds).
    pub timestamp: i64,
}

/// Where metrics go (CloudWatch `PutMetricData` in production).
#[async_trait]
pub trait MetricSink: Send + Sync {
    /// Publishes one batch (at most `METRICS_PER_PUT`, 1,000 metrics).
    async fn put(&self, data: Vec<Metric>) -> Result<(), Error>;
}

/// The most metrics one [`MetricSink::put`] takes (CloudWatch's PutMetricData limit).
pub(crate) const METRICS_PER_PUT: usize = 1000;
