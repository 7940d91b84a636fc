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

/// A row without what the installation grants.
impl From<InstallationRecord> for InstallationRow {
    fn from(record: InstallationRecord) -> Self {
        Self { record, grants: None }
    }
}

/// **(ext)** An App JWT as one function shared it with the others: encrypted with KMS under an
/// encryption context of the App, `key_arn` and `expires_at`, so that it opens only for them.
/// Its Debug print shows no ciphertext.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedJwt {
    /// The App key it was signed with.
    pub key_arn: String,
    /// Its `exp` claim (Unix seconds).
    pub expires_at: i64,
    /// The JWT, encrypted.
    pub sealed: Vec<u8>,
    /// The App's slug, as GitHub gave it to the function that signed (public: not encrypted).
    /// Trusted no longer than the entry; `None` if that function did not get it.
    pub slug: Option<String>,
}

impl std::fmt::Debug for SharedJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedJwt")
            .field("key_arn", &self.key_arn)
            .field("expires_at", &self.expires_at)
            .field("sealed", &format_args!("{} bytes", self.sealed.len()))
            .field("slug", &self.slug)
            .finish()
    }
}

/// **(ext)** What an App's item of the shared App JWTs holds: the entry, and the claim on the
/// signing of the next one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedItem {
    /// The entry, `None` without one (a claim alone, or no item).
    pub entry: Option<SharedJwt>,
    /// Until when (Unix seconds) a holder claimed the signing, `None` without a claim.
    pub claimed_until: Option<i64>,
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
