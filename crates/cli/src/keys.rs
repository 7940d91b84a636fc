//! GitHub App keys in KMS: import, rotate, retire and list.
//!
//! An import creates an `RSA_2048` / `SIGN_VERIFY` key with `Origin EXTERNAL` (tagged
//! `Status=Importing`), wraps the App's key for it and uploads it with `ImportKeyMaterial`, then
//! proves it: KMS signs a fresh challenge and the signature must verify with the PEM's public key.
//! Only then is the key tagged `Status=Active` and named in the App table. A key that fails after
//! it was created is tagged `Status=Failed`, and the error carries the command that deletes it.

use std::collections::{BTreeMap, HashSet};

use appcreds_core::aws::app_table::{DynamoAppStore, KeyWrite};
use appcreds_core::domain::clock::{Clock, SystemClock, rfc3339};
use appcreds_core::ports::{AppRecord, AppStore};
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    AlgorithmSpec, ExpirationModelType, KeySpec, KeyUsageType, MessageType, OriginType, SigningAlgorithmSpec, Tag,
    WrappingKeySpec,
};
use serde_json::{Value, json};

use crate::keywrap::{AppPrivateKey, wrap_for_import};
use crate::{AwsFailure, CliError};

/// The tag every appcreds App key carries (the functions may sign only with keys that have it).
pub const MANAGED_TAG: &str = "FrameworkForGitHubAppOnAwsManaged";

/// The tag that scopes a key to one stack's functions (the template's `SigningKeyScope`).
pub const SCOPE_TAG: &str = "AppcredsScope";

/// Days a failed key waits for deletion in the printed cleanup command.
const CLEANUP_WINDOW_DAYS: u32 = 7;

/// Reports what a long operation is doing (a spinner's message in the CLI).
pub trait Progress: Sync {
    fn step(&self, what: &str);
}

impl<F: Fn(&str) + Sync> Progress for F {
    fn step(&self, what: &str) {
        self(what)
    }
}

/// The IAM roles of the stack's functions, which the key policy lets sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningRoles {
    partition: String,
    account: String,
    roles: Vec<String>,
    /// The stack's signing scope (`SigningKeyScope`): the `AppcredsScope` tag every key gets and
    /// the functions' `kms:Sign` requires.
    scope: Option<String>,
}

impl SigningRoles {
    /// Checks the role ARNs (`arn:PARTITION:iam::ACCOUNT:role/NAME`, one account).
    pub fn new(roles: Vec<String>) -> Result<Self, CliError> {
        let mut parsed = roles.iter().map(|arn| {
            let parts: Vec<&str> = arn.splitn(6, ':').collect();
            match parts.as_slice() {
                ["arn", partition, "iam", "", account, resource]
                    if resource.starts_with("role/")
                        && account.len() == 12
                        && account.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    Ok((partition.to_string(), account.to_string()))
                }
                _ => Err(CliError::Usage(format!("--function-role-arn: {arn:?} is not an IAM role ARN"))),
            }
        });
        let (partition, account) = parsed.next().ok_or_else(|| {
            CliError::Usage(
                "the key policy needs the functions' roles: give --stack NAME or --function-role-arn ARN".into(),
            )
        })??;
        for other in parsed {
            if other? != (partition.clone(), account.clone()) {
                return Err(CliError::Usage("--function-role-arn: the roles are not all in one account".into()));
            }
        }
        Ok(SigningRoles { partition, account, roles, scope: None })
    }

    /// The key policy: the account administers the key through IAM; the functions' roles may
    /// only `kms:Sign`, only with RSASSA_PKCS1_V1_5_SHA_256 over a RAW message (as the template's
    /// IAM grants it), and only while the key is tagged as an active appcreds key.
    /// The same roles, for a stack whose functions sign only with keys tagged
    /// `AppcredsScope=<scope>` (its `SigningKeyScope`); `None` or empty for no scope.
    pub fn with_scope(mut self, scope: Option<String>) -> Result<Self, CliError> {
        let scope = scope.filter(|s| !s.is_empty());
        if let Some(s) = &scope
            && (s.len() > 64 || !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(CliError::Usage(format!("--key-scope {s:?}: use up to 64 letters, digits, '.', '_' and '-'")));
        }
        self.scope = scope;
        Ok(self)
    }

    /// The key's tags beyond the App's: the scope, if any.
    fn scope_tags(&self) -> Vec<Tag> {
        self.scope.iter().map(|s| tag(SCOPE_TAG, s)).collect()
    }

    pub fn key_policy(&self) -> Value {
        let roles = &self.roles;
        let mut sign_condition = json!({
            "kms:SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256",
            "kms:MessageType": "RAW",
            format!("aws:ResourceTag/{MANAGED_TAG}"): "true",
            "aws:ResourceTag/Status": "Active"
        });
        if let Some(scope) = &self.scope {
            sign_condition[format!("aws:ResourceTag/{SCOPE_TAG}")] = json!(scope);
        }
        json!({
            "Version": "2012-10-17",
            "Id": "appcreds-github-app-key",
            "Statement": [
                {
                    "Sid": "AccountAdministersTheKeyThroughIAM",
                    "Effect": "Allow",
                    "Principal": {"AWS": format!("arn:{}:iam::{}:root", self.partition, self.account)},
                    "Action": "kms:*",
                    "Resource": "*"
                },
                {
                    "Sid": "FunctionsSignWhileTheKeyIsActive",
                    "Effect": "Allow",
                    "Principal": {"AWS": roles},
                    "Action": "kms:Sign",
                    "Resource": "*",
                    "Condition": {"StringEquals": sign_condition}
                },
                {
                    "Sid": "FunctionsDoNothingButSign",
                    "Effect": "Deny",
                    "Principal": {"AWS": roles},
                    "NotAction": "kms:Sign",
                    "Resource": "*"
                },
                {
                    "Sid": "FunctionsSignOnlyWithPkcs1Sha256",
                    "Effect": "Deny",
                    "Principal": {"AWS": roles},
                    "Action": "kms:Sign",
                    "Resource": "*",
                    "Condition": {"StringNotEquals": {"kms:SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256"}}
                }
            ]
        })
    }
}

/// An imported key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub app_id: i64,
    pub key_arn: String,
}

/// A rotation's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub app_id: i64,
    pub key_arn: String,
    pub previous_key_arn: String,
    /// Until when the functions may still sign with the previous key (RFC 3339).
    pub previous_usable_until: String,
    /// The same, in Unix seconds.
    pub previous_usable_until_secs: i64,
}

/// A retirement's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retired {
    pub app_id: i64,
    /// The key retired (`Status=Inactive`).
    pub key_arn: String,
    /// The key that replaced it.
    pub replaced_by: String,
    /// When KMS deletes the retired key, if its deletion was scheduled (RFC 3339).
    pub deletion: Option<String>,
}

/// An App and its key, for `key list`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppKeyInfo {
    pub app_id: i64,
    pub kms_key_arn: Option<String>,
    /// The App's client ID, the issuer of its JWTs, if the App table names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// KMS's key state (`Enabled`, `Disabled`, `PendingDeletion`, `PendingImport`, ...).
    pub key_state: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// Why the key could not be described, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A KMS key tagged as an appcreds App key, whether or not an App uses it (`key list --all-keys`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedKey {
    pub key_arn: String,
    pub key_state: String,
    /// Whether the App table names this key.
    pub in_use: bool,
    pub tags: BTreeMap<String, String>,
}

/// Imports, rotates and lists App keys.
#[derive(Debug, Clone)]
pub struct KeyManager {
    kms: aws_sdk_kms::Client,
    apps: DynamoAppStore,
    /// The App's client ID, written with the key by an import or a rotation.
    client_id: Option<String>,
}

impl KeyManager {
    pub fn new(kms: aws_sdk_kms::Client, apps: DynamoAppStore) -> Self {
        KeyManager { kms, apps, client_id: None }
    }

    /// The same manager, writing `client_id` to the App table (`ClientId`) in the same write that
    /// registers or switches the key, so that the App's JWTs name it as their issuer. `None`
    /// leaves the row's client ID as it is.
    pub fn with_client_id(self, client_id: Option<String>) -> Self {
        KeyManager { client_id, ..self }
    }

    /// Imports the first key of an App and registers the App (`AppId → KmsKeyArn`).
    pub async fn import(
        &self,
        app_id: i64,
        key: &AppPrivateKey,
        roles: &SigningRoles,
        progress: &dyn Progress,
    ) -> Result<Imported, CliError> {
        progress.step("reading the App table");
        if let Some(current) = self.current_key(app_id).await? {
            return Err(CliError::Refused(format!(
                "App {app_id} already has a key ({current}); use `appcreds key rotate` to replace it"
            )));
        }
        let key_arn = self
            .new_key(app_id, key, roles, progress, async |key_arn: &str| {
                progress.step("registering the App");
                let client_id = self.client_id.as_deref();
                match self.apps.register_key(app_id, key_arn, client_id).await.map_err(CliError::from_core)? {
                    KeyWrite::Written => Ok(()),
                    KeyWrite::Conflict { current } => Err(CliError::Refused(format!(
                        "App {app_id} got a key from someone else meanwhile ({}); nothing was changed",
                        current.as_deref().unwrap_or("none")
                    ))),
                }
            })
            .await?;
        Ok(Imported { app_id, key_arn })
    }

    /// Replaces an App's key: imports `key` as a new KMS key (tagged `Status=Active` once KMS
    /// proved it), then switches the App table to it in one conditional write that keeps the old
    /// key as the previous one, usable for `grace`. The old key is not retired here: AWS
    /// documents that a tag change can take up to five minutes to affect authorization, so during
    /// the grace period a function that IAM still refuses on the new key signs with the old one,
    /// and a function still holding the old key keeps signing. [`KeyManager::retire`] ends it.
    pub async fn rotate(
        &self,
        app_id: i64,
        key: &AppPrivateKey,
        roles: &SigningRoles,
        grace: std::time::Duration,
        progress: &dyn Progress,
    ) -> Result<Rotated, CliError> {
        progress.step("reading the App table");
        let app = self.apps.get_app(app_id).await.map_err(CliError::from_core)?;
        let old = app.as_ref().and_then(|a| a.kms_key_arn.clone()).ok_or_else(|| {
            CliError::Refused(format!("App {app_id} has no key to rotate; use `appcreds key import`"))
        })?;
        if let Some(previous) = app.and_then(|a| a.previous_key) {
            return Err(CliError::Refused(format!(
                "App {app_id}'s last rotation is not finished: its previous key {} is usable until {}; \
                 retire it first with `appcreds key retire --app-id {app_id}`",
                previous.arn,
                rfc3339(previous.usable_until)
            )));
        }
        let new_public = key.public_key()?;
        if self.public_key(&old).await.is_some_and(|current| current == new_public) {
            return Err(CliError::Refused(format!("the PEM is App {app_id}'s current key ({old})")));
        }
        let until_secs = SystemClock.now() + grace.as_secs() as i64;
        let until = rfc3339(until_secs);
        let key_arn = self
            .new_key(app_id, key, roles, progress, async |key_arn: &str| {
                progress.step("switching the App to the new key");
                let client_id = self.client_id.as_deref();
                match self
                    .apps
                    .switch_key(app_id, &old, key_arn, &until, client_id)
                    .await
                    .map_err(CliError::from_core)?
                {
                    KeyWrite::Written => Ok(()),
                    KeyWrite::Conflict { current } => Err(CliError::Refused(format!(
                        "App {app_id}'s key changed meanwhile (now {}); nothing was switched",
                        current.as_deref().unwrap_or("none")
                    ))),
                }
            })
            .await?;
        Ok(Rotated {
            app_id,
            key_arn,
            previous_key_arn: old,
            previous_usable_until: until,
            previous_usable_until_secs: until_secs,
        })
    }

    /// Ends an App's rotation: tags its previous key `Status=Inactive` (with `ReplacedBy` and
    /// `ReplacedOn`), schedules its deletion if asked, and removes it from the App row. Refused
    /// while the grace period lasts, unless `early`.
    pub async fn retire(
        &self,
        app_id: i64,
        schedule_deletion_days: Option<i32>,
        early: bool,
        progress: &dyn Progress,
    ) -> Result<Retired, CliError> {
        progress.step("reading the App table");
        let app = self.apps.get_app(app_id).await.map_err(CliError::from_core)?;
        let (current, previous) = match app {
            Some(AppRecord { kms_key_arn: Some(current), previous_key: Some(previous), .. }) => (current, previous),
            _ => return Err(CliError::Refused(format!("App {app_id} has no previous key to retire"))),
        };
        if !early && SystemClock.now() < previous.usable_until {
            return Err(CliError::Refused(format!(
                "App {app_id}'s previous key {} is usable until {} (functions may still sign with it); \
                 retire it after that, or now with --early",
                previous.arn,
                rfc3339(previous.usable_until)
            )));
        }
        progress.step("retiring the previous key");
        let deletion = self.retire_key(&previous.arn, &current, schedule_deletion_days).await?;
        progress.step("closing the rotation in the App table");
        self.apps.clear_previous_key(app_id, &previous.arn).await.map_err(CliError::from_core)?;
        Ok(Retired { app_id, key_arn: previous.arn, replaced_by: current, deletion })
    }

    /// Every App of the App table with its key's state and tags.
    pub async fn list(&self) -> Result<Vec<AppKeyInfo>, CliError> {
        let apps = self.apps.list_apps().await.map_err(CliError::from_core)?;
        let mut out = Vec::with_capacity(apps.len());
        for app in apps {
            let mut info = AppKeyInfo {
                app_id: app.app_id,
                kms_key_arn: app.kms_key_arn,
                client_id: app.client_id,
                key_state: None,
                tags: BTreeMap::new(),
                error: None,
            };
            if let Some(arn) = &info.kms_key_arn {
                match self.describe(arn).await {
                    Ok((state, tags)) => (info.key_state, info.tags) = (Some(state), tags),
                    Err(err) => info.error = Some(err.to_string()),
                }
            }
            out.push(info);
        }
        Ok(out)
    }

    /// Every KMS key tagged `FrameworkForGitHubAppOnAwsManaged=true` (keys whose tags the caller
    /// cannot read are someone else's and skipped): Active keys in use, and the Inactive, Failed
    /// or Importing ones left to clean up.
    pub async fn managed_keys(&self) -> Result<Vec<ManagedKey>, CliError> {
        let apps = self.apps.list_apps().await.map_err(CliError::from_core)?;
        let in_use: HashSet<String> = apps.into_iter().filter_map(|app| app.kms_key_arn).collect();
        let mut listed = self.kms.list_keys().into_paginator().items().send();
        let mut keys = Vec::new();
        while let Some(entry) = listed.next().await {
            let entry = entry.map_err(aws("KMS ListKeys"))?;
            let Some(arn) = entry.key_arn() else { continue };
            let Ok(tags) = self.tags(arn).await else { continue };
            if tags.get(MANAGED_TAG).map(String::as_str) != Some("true") {
                continue;
            }
            keys.push(ManagedKey {
                key_arn: arn.to_string(),
                key_state: self.state(arn).await?,
                in_use: in_use.contains(arn),
                tags,
            });
        }
        keys.sort_by(|a, b| {
            (a.tags.get("AppId"), a.tags.get("CreatedOn")).cmp(&(b.tags.get("AppId"), b.tags.get("CreatedOn")))
        });
        Ok(keys)
    }

    async fn current_key(&self, app_id: i64) -> Result<Option<String>, CliError> {
        Ok(self.apps.get_app(app_id).await.map_err(CliError::from_core)?.and_then(|app| app.kms_key_arn))
    }

    /// The public key of `key`, if KMS gives it.
    /// The public key of `key` as DER SubjectPublicKeyInfo, if KMS gives it.
    async fn public_key(&self, key: &str) -> Option<Vec<u8>> {
        let out = self.kms.get_public_key().key_id(key).send().await.ok()?;
        Some(out.public_key()?.as_ref().to_vec())
    }

    async fn describe(&self, arn: &str) -> Result<(String, BTreeMap<String, String>), CliError> {
        Ok((self.state(arn).await?, self.tags(arn).await?))
    }

    /// KMS's key state (`Enabled`, `PendingDeletion`, ...).
    async fn state(&self, arn: &str) -> Result<String, CliError> {
        let described = self.kms.describe_key().key_id(arn).send().await.map_err(aws("KMS DescribeKey"))?;
        let state = described.key_metadata().and_then(|m| m.key_state()).map(|s| s.as_str().to_string());
        Ok(state.unwrap_or_else(|| "Unknown".into()))
    }

    async fn tags(&self, arn: &str) -> Result<BTreeMap<String, String>, CliError> {
        let tags = self.kms.list_resource_tags().key_id(arn).send().await.map_err(aws("KMS ListResourceTags"))?;
        Ok(tags.tags().iter().map(|t| (t.tag_key().to_string(), t.tag_value().to_string())).collect())
    }

    /// Creates a key, imports and proves `key` in it, then lets `adopt` point the App at it. A
    /// failure once the key exists tags it `Status=Failed` and names the cleanup.
    async fn new_key(
        &self,
        app_id: i64,
        key: &AppPrivateKey,
        roles: &SigningRoles,
        progress: &dyn Progress,
        adopt: impl AsyncFnOnce(&str) -> Result<(), CliError>,
    ) -> Result<String, CliError> {
        let key_arn = self.create_key(app_id, roles, progress).await?;
        let adopted = async {
            self.import_and_prove(&key_arn, app_id, key, progress).await?;
            adopt(&key_arn).await
        }
        .await;
        match adopted {
            Ok(()) => Ok(key_arn),
            Err(err) => Err(self.fail_key(&key_arn, err).await),
        }
    }

    async fn create_key(&self, app_id: i64, roles: &SigningRoles, progress: &dyn Progress) -> Result<String, CliError> {
        progress.step("creating the KMS key");
        let mut tags = vec![
            tag(MANAGED_TAG, "true"),
            tag("Status", "Importing"),
            tag("AppId", &app_id.to_string()),
            tag("CreatedOn", &rfc3339(SystemClock.now())),
        ];
        tags.extend(roles.scope_tags());
        let created = self
            .kms
            .create_key()
            .key_spec(KeySpec::Rsa2048)
            .key_usage(KeyUsageType::SignVerify)
            .origin(OriginType::External)
            .description(format!("GitHub App {app_id} private key (appcreds)"))
            .policy(roles.key_policy().to_string())
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(aws("KMS CreateKey"))?;
        created
            .key_metadata()
            .and_then(|m| m.arn())
            .map(str::to_string)
            .ok_or_else(|| CliError::Aws(AwsFailure::other("KMS CreateKey", "the answer has no key ARN")))
    }

    /// Wraps and imports the material, proves that KMS signs with it, and tags the key Active.
    async fn import_and_prove(
        &self,
        key_arn: &str,
        app_id: i64,
        key: &AppPrivateKey,
        progress: &dyn Progress,
    ) -> Result<(), CliError> {
        progress.step("getting KMS's wrapping key");
        let params = self
            .kms
            .get_parameters_for_import()
            .key_id(key_arn)
            .wrapping_algorithm(AlgorithmSpec::RsaAesKeyWrapSha256)
            .wrapping_key_spec(WrappingKeySpec::Rsa4096)
            .send()
            .await
            .map_err(aws("KMS GetParametersForImport"))?;
        let (Some(token), Some(wrapping_key)) = (params.import_token(), params.public_key()) else {
            return Err(CliError::Aws(AwsFailure::other(
                "KMS GetParametersForImport",
                "the answer lacks the import token or the wrapping key",
            )));
        };
        progress.step("wrapping and importing the key");
        let material = key.pkcs8_der()?;
        let wrapped = wrap_for_import(&material, wrapping_key.as_ref())?;
        drop(material);
        self.kms
            .import_key_material()
            .key_id(key_arn)
            .import_token(token.clone())
            .encrypted_key_material(Blob::new(wrapped))
            .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire)
            .send()
            .await
            .map_err(aws("KMS ImportKeyMaterial"))?;
        progress.step("checking that KMS signs with the App's key");
        self.prove(key_arn, app_id, &key.public_key()?).await?;
        self.kms
            .tag_resource()
            .key_id(key_arn)
            .tags(tag("Status", "Active"))
            .send()
            .await
            .map_err(aws("KMS TagResource"))?;
        Ok(())
    }

    /// KMS signs a fresh challenge the way the functions sign JWTs; the PEM's public key must verify it.
    async fn prove(&self, key_arn: &str, app_id: i64, public_spki: &[u8]) -> Result<(), CliError> {
        let mut nonce = [0u8; 16];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| CliError::Import("no random bytes".into()))?;
        let challenge = format!("appcreds import check: App {app_id}, nonce {}", hex::encode(nonce));
        let signed = self
            .kms
            .sign()
            .key_id(key_arn)
            .message(Blob::new(challenge.as_bytes()))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::RsassaPkcs1V15Sha256)
            .send()
            .await
            .map_err(aws("KMS Sign"))?;
        let signature = signed
            .signature()
            .ok_or_else(|| CliError::Aws(AwsFailure::other("KMS Sign", "the answer has no signature")))?;
        let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_spki);
        public.verify(challenge.as_bytes(), signature.as_ref()).map_err(|_| {
            CliError::Import(
                "KMS signs with other key material than the PEM's: the import did not take this key".into(),
            )
        })
    }

    /// Tags the old key as replaced and, if asked, schedules its deletion.
    async fn retire_key(
        &self,
        old: &str,
        new: &str,
        schedule_deletion_days: Option<i32>,
    ) -> Result<Option<String>, CliError> {
        self.kms
            .tag_resource()
            .key_id(old)
            .tags(tag("Status", "Inactive"))
            .tags(tag("ReplacedBy", new))
            .tags(tag("ReplacedOn", &rfc3339(SystemClock.now())))
            .send()
            .await
            .map_err(aws("KMS TagResource"))?;
        let Some(days) = schedule_deletion_days else { return Ok(None) };
        let scheduled = self
            .kms
            .schedule_key_deletion()
            .key_id(key_id(old))
            .pending_window_in_days(days)
            .send()
            .await
            .map_err(aws("KMS ScheduleKeyDeletion"))?;
        Ok(Some(scheduled.deletion_date().map(|d| rfc3339(d.secs())).unwrap_or_else(|| format!("in {days} days"))))
    }

    /// Tags a key that failed `Status=Failed` and wraps `cause` with the command that deletes it.
    async fn fail_key(&self, key_arn: &str, cause: CliError) -> CliError {
        let tagged = self.kms.tag_resource().key_id(key_arn).tags(tag("Status", "Failed")).send().await;
        CliError::KeyFailed {
            cause: Box::new(cause),
            tagged: tagged.is_ok(),
            cleanup: format!(
                "aws kms schedule-key-deletion --key-id {key_arn} --pending-window-in-days {CLEANUP_WINDOW_DAYS}"
            ),
        }
    }
}

/// The key ID of a key ARN (some AWS-protocol servers accept only the ID for some operations).
fn key_id(arn: &str) -> &str {
    arn.rsplit_once(":key/").map_or(arn, |(_, id)| id)
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().tag_key(key).tag_value(value).build().expect("a tag with a key and a value is complete")
}

/// Maps an SDK failure of `operation` to a [`CliError`].
pub fn aws<E, R>(operation: &'static str) -> impl FnOnce(SdkError<E, R>) -> CliError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    move |err| CliError::Aws(AwsFailure::of(operation, &err))
}
