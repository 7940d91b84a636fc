//! AWS SDK clients for the moto server, an interceptor that counts operations, and fixtures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_kms::config::Credentials;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, OriginType, Tag};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// The region every test uses.
pub const REGION: &str = "us-east-1";

/// SDK configuration for an AWS-protocol server at `endpoint`, with the production timeouts.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "appcreds-testkit"))
        .timeout_config(appcreds_core::aws::aws_timeouts())
        .load()
        .await
}

/// Counts SDK operations by `Service.Operation` (once per operation; retries are not counted again).
#[derive(Debug, Clone, Default)]
pub struct CallCounter(Arc<Mutex<BTreeMap<String, usize>>>);

impl CallCounter {
    /// How many times `operation` (e.g. `"Sign"`, `"GetItem"`) was called, on any service.
    pub fn count(&self, operation: &str) -> usize {
        let calls = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        calls.iter().filter(|(k, _)| k.rsplit('.').next() == Some(operation)).map(|(_, n)| n).sum()
    }

    /// All counts, e.g. `{"DynamoDB.GetItem": 1, "KMS.Sign": 1}`.
    pub fn snapshot(&self) -> BTreeMap<String, usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn reset(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            let key = format!("{}.{}", meta.service(), meta.name());
            *self.0.lock().unwrap_or_else(PoisonError::into_inner).entry(key).or_default() += 1;
        }
        Ok(())
    }
}

/// A KMS client with `counter` attached.
pub fn kms_client(sdk: &SdkConfig, counter: &CallCounter) -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::from_conf(aws_sdk_kms::config::Builder::from(sdk).interceptor(counter.clone()).build())
}

/// A DynamoDB client with `counter` attached.
pub fn dynamodb_client(sdk: &SdkConfig, counter: &CallCounter) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk).interceptor(counter.clone()).build(),
    )
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder().attribute_name(name).key_type(kind).build().expect("complete key element")
}

fn attr(name: &str, kind: ScalarAttributeType) -> AttributeDefinition {
    AttributeDefinition::builder().attribute_name(name).attribute_type(kind).build().expect("complete attribute")
}

fn gsi(name: &str, hash: &str, range: &str) -> GlobalSecondaryIndex {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(hash, KeyType::Hash))
        .key_schema(key(range, KeyType::Range))
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .expect("complete index")
}

/// Creates the App table as the spec defines it: partition key `AppId` (N).
pub async fn create_app_table(ddb: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), BoxError> {
    create_keyed_table(ddb, name, "AppId", ScalarAttributeType::N).await
}

/// Creates the access table as `template.yaml` does: partition key `RuleId` (S).
pub async fn create_access_table(ddb: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), BoxError> {
    create_keyed_table(ddb, name, "RuleId", ScalarAttributeType::S).await
}

/// Creates the lease table: `LeaseId` (S).
pub async fn create_lease_table(ddb: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), BoxError> {
    create_keyed_table(ddb, name, "LeaseId", ScalarAttributeType::S).await
}

/// Creates the access-key rotator's table (`UserName`).
pub async fn create_rotation_table(ddb: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), BoxError> {
    create_keyed_table(ddb, name, "UserName", ScalarAttributeType::S).await
}

/// Creates a symmetric KMS key (`ENCRYPT_DECRYPT`), as the template's rotation key; its ARN.
pub async fn create_vault_key(kms: &aws_sdk_kms::Client) -> Result<String, BoxError> {
    let key = kms.create_key().description("appcreds rotation pending secrets (test)").send().await?;
    Ok(key.key_metadata().map(|m| m.arn().unwrap_or_default().to_string()).unwrap_or_default())
}

/// Creates IAM user `name` under `path` with one active access key (the key a rotation
/// replaces); the user's ARN and that key's ID.
pub async fn create_rotated_user(
    iam: &aws_sdk_iam::Client,
    name: &str,
    path: &str,
) -> Result<(String, String), BoxError> {
    let user = iam.create_user().user_name(name).path(path).send().await?;
    let arn = user.user().map(|u| u.arn().to_string()).unwrap_or_default();
    let key = iam.create_access_key().user_name(name).send().await?;
    Ok((arn, key.access_key().map(|k| k.access_key_id().to_string()).unwrap_or_default()))
}

async fn create_keyed_table(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
    partition_key: &str,
    kind: ScalarAttributeType,
) -> Result<(), BoxError> {
    ddb.create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr(partition_key, kind))
        .key_schema(key(partition_key, KeyType::Hash))
        .send()
        .await?;
    Ok(())
}

/// Creates the Installation table as the spec defines it: `AppId` (N) + `NodeId` (S), with the
/// GSIs `NodeID` (`NodeId`, `AppId`) and `InstallationID` (`InstallationId`, `AppId`).
pub async fn create_installation_table(ddb: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), BoxError> {
    ddb.create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("AppId", ScalarAttributeType::N))
        .attribute_definitions(attr("NodeId", ScalarAttributeType::S))
        .attribute_definitions(attr("InstallationId", ScalarAttributeType::N))
        .key_schema(key("AppId", KeyType::Hash))
        .key_schema(key("NodeId", KeyType::Range))
        .global_secondary_indexes(gsi("NodeID", "NodeId", "AppId"))
        .global_secondary_indexes(gsi("InstallationID", "InstallationId", "AppId"))
        .send()
        .await?;
    Ok(())
}

/// Writes an App row; `None` writes a row without `KmsKeyArn`.
pub async fn put_app(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    app_id: i64,
    kms_key_arn: Option<&str>,
) -> Result<(), BoxError> {
    let mut put = ddb.put_item().table_name(table).item("AppId", AttributeValue::N(app_id.to_string()));
    if let Some(arn) = kms_key_arn {
        put = put.item("KmsKeyArn", AttributeValue::S(arn.to_string()));
    }
    put.send().await?;
    Ok(())
}

/// A KMS key as the operator CLI creates it.
#[derive(Debug, Clone)]
pub struct AppKey {
    pub arn: String,
    /// The public key, DER SubjectPublicKeyInfo, from `GetPublicKey`.
    pub public_key_der: Vec<u8>,
}

/// Creates an RSA-2048 signing key tagged like an appcreds App key (`Status=Active`), and reads
/// its public key. (moto generates the key material itself.)
pub async fn create_app_key(kms: &aws_sdk_kms::Client, app_id: i64) -> Result<AppKey, BoxError> {
    let tag = |k: &str, v: &str| Tag::builder().tag_key(k).tag_value(v).build().expect("complete tag");
    let created = kms
        .create_key()
        .key_spec(KeySpec::Rsa2048)
        .key_usage(KeyUsageType::SignVerify)
        .origin(OriginType::AwsKms)
        .description(format!("GitHub App {app_id} (appcreds test)"))
        .tags(tag("FrameworkForGitHubAppOnAwsManaged", "true"))
        .tags(tag("Status", "Active"))
        .tags(tag("AppId", &app_id.to_string()))
        .tags(tag(
            "CreatedOn",
            &appcreds_core::domain::clock::rfc3339(appcreds_core::domain::clock::Clock::now(
                &appcreds_core::domain::clock::SystemClock,
            )),
        ))
        .send()
        .await?;
    let arn = created.key_metadata.and_then(|m| m.arn).ok_or("CreateKey returned no ARN")?;
    let public = kms.get_public_key().key_id(&arn).send().await?;
    let public_key_der = public.public_key.ok_or("GetPublicKey returned no key")?.into_inner();
    Ok(AppKey { arn, public_key_der })
}
