//! The records that cross the ports: the rows of the tables and the positions in them. The
//! adapters read and write them; they are defined here, so that nothing above the ports names an
//! adapter to use them.

use crate::domain::rotation::{RotationState, TargetSpec};
use crate::domain::scope::InstallationGrants;

/// A row of the App table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    /// The GitHub App ID.
    pub app_id: i64,
    /// The ARN of the App's KMS key, if one was imported.
    pub kms_key_arn: Option<String>,
    /// **(ext)** The key a rotation switched away from, while its grace period lasts.
    pub previous_key: Option<PreviousKey>,
    /// **(ext)** The App's client ID (`ClientId`): when set, the App JWT's issuer (`iss`), as
    /// GitHub recommends; otherwise the App ID is.
    pub client_id: Option<String>,
}

/// **(ext)** The key an App was switched away from (`PreviousKmsKeyArn`), still usable until
/// `PreviousKeyUsableUntil`: AWS documents that a tag change can take up to five minutes to
/// affect authorization, so a function refused on the new key signs with this one meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousKey {
    /// The previous key's ARN.
    pub arn: String,
    /// Until when functions may sign with it (Unix seconds).
    pub usable_until: i64,
}

/// A row of the Installation table is the contract's `InstallationRecord`.
pub use appcreds_wire::InstallationRecord;

/// **(ext)** A row of the Installation table with what the installation grants (the attributes
/// `Permissions` and `RepositorySelection`), for the pre-flight check of token requests: written
/// by whoever wrote the row from GitHub's installation object (the sync, a resolution at GitHub).
/// `grants` is `None` for a row without them (written by an earlier version, or the TypeScript
/// framework).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationRow {
    /// The row as the contract has it.
    pub record: InstallationRecord,
    /// What the installation grants, if the row holds it.
    pub grants: Option<InstallationGrants>,
}

/// A position in a listing of the whole table (DynamoDB's `LastEvaluatedKey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePosition {
    /// The row's App.
    pub app_id: i64,
    /// The row's node ID.
    pub node_id: String,
}

/// A rotation target as stored: the operator's spec, the rotator's state, and the pending
/// secret access key (KMS ciphertext) while destinations are behind.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRecord {
    /// What the operator asked for.
    pub spec: TargetSpec,
    /// What the rotator did.
    pub state: RotationState,
    /// The current key's secret, encrypted by the [`Vault`](super::Vault), while some destination lacks it.
    pub pending: Option<Vec<u8>>,
    /// Bumped by every state write (optimistic concurrency).
    pub version: i64,
}

/// Every target of the rotation table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetList {
    /// The valid targets, by user name.
    pub records: Vec<TargetRecord>,
    /// Rows that are not valid targets: their `UserName` and why.
    pub invalid: Vec<(String, String)>,
}
