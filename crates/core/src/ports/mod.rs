//! The ports: the small traits through which credentials, jobs and operations reach KMS,
//! DynamoDB, CloudWatch, IAM, GitHub's OIDC keys and the clock ([`Signer`], [`Mac`],
//! [`AppStore`], [`InstallationStore`], [`AccessStore`], [`Leases`], [`OidcVerifier`],
//! [`Vault`], [`AccessKeys`], [`RotationStore`], [`MetricSink`], [`Clock`]); the records that
//! cross them (`records`: [`AppRecord`], [`InstallationRecord`], [`TablePosition`],
//! [`TargetRecord`] and the like, defined here so that the adapters import them and nothing
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

use async_trait::async_trait;

use crate::domain::access::{Claims, Rule};
pub use crate::domain::clock::Clock;
pub use crate::domain::rotation::{AccessKeyInfo, RotationState, TargetSpec};
use crate::domain::secret::Secret;
use crate::error::Error;

mod records;
mod unconfigured;

pub use records::{
    AppRecord, InstallationRecord, InstallationRow, PreviousKey, TablePosition, TargetList, TargetRecord,
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

/// The Installation table.
#[async_trait]
pub trait InstallationStore: Send + Sync {
    /// The row of (`app_id`, `node_id`).
    async fn get(&self, app_id: i64, node_id: &str) -> Result<Option<InstallationRecord>, Error>;
    /// Rows with this node ID, any App (GSI `NodeID`).
    async fn by_node_id(&self, node_id: &str) -> Result<Vec<InstallationRecord>, Error>;
    /// Every row of one App.
    async fn list_app(&self, app_id: i64) -> Result<Vec<InstallationRecord>, Error>;
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
    async fn write(
        &self,
        puts: Vec<InstallationRecord>,
        deletes: Vec<TablePosition>,
        now_rfc3339: &str,
    ) -> Result<(), Error>;
    /// **(ext)** [`InstallationStore::get`] with what the installation grants, when the row holds
    /// it (the same one read).
    async fn get_row(&self, app_id: i64, node_id: &str) -> Result<Option<InstallationRow>, Error> {
        Ok(self.get(app_id, node_id).await?.map(|record| InstallationRow { record, grants: None }))
    }
    /// **(ext)** [`InstallationStore::list_app`] with what each installation grants.
    async fn list_app_rows(&self, app_id: i64) -> Result<Vec<InstallationRow>, Error> {
        Ok(self.list_app(app_id).await?.into_iter().map(|record| InstallationRow { record, grants: None }).collect())
    }
    /// **(ext)** [`InstallationStore::write`] of rows with what each installation grants.
    async fn write_rows(
        &self,
        puts: Vec<InstallationRow>,
        deletes: Vec<TablePosition>,
        now_rfc3339: &str,
    ) -> Result<(), Error> {
        self.write(puts.into_iter().map(|r| r.record).collect(), deletes, now_rfc3339).await
    }
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
