//! The App table (`AppId` → `KmsKeyArn`) in DynamoDB: the [`AppStore`] port, and the
//! conditional key writes the operator CLI registers and rotates keys with.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::aws::{dynamo_error, scan_all};
use crate::error::Error;
use crate::ports::AppStore;

/// A row of the App table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    /// The GitHub App ID.
    pub app_id: i64,
    /// The ARN of the App's KMS key, if one was imported.
    pub kms_key_arn: Option<String>,
}

/// The App table in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoAppStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoAppStore {
    /// The App table `table` on `client`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

#[async_trait]
impl AppStore for DynamoAppStore {
    async fn get_app(&self, app_id: i64) -> Result<Option<AppRecord>, Error> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("AppId", AttributeValue::N(app_id.to_string()))
            .projection_expression("AppId, KmsKeyArn")
            .send()
            .await
            .map_err(|e| dynamo_error("reading the App table", e))?;
        Ok(out.item.map(|item| AppRecord {
            app_id,
            kms_key_arn: item.get("KmsKeyArn").and_then(|v| v.as_s().ok()).filter(|s| !s.is_empty()).cloned(),
        }))
    }

    async fn list_apps(&self) -> Result<Vec<AppRecord>, Error> {
        let items = scan_all(&self.client, &self.table, Some("AppId, KmsKeyArn"), "listing the App table").await?;
        let mut apps: Vec<AppRecord> = items
            .iter()
            .filter_map(|item| {
                let app_id = item.get("AppId")?.as_n().ok()?.parse().ok()?;
                Some(AppRecord { app_id, kms_key_arn: item.get("KmsKeyArn").and_then(|v| v.as_s().ok()).cloned() })
            })
            .collect();
        apps.sort_by_key(|a| a.app_id);
        Ok(apps)
    }
}

/// What a conditional write of the App table found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyWrite {
    /// The row now names the new key.
    Written,
    /// The row was not as expected, so nothing was written; this is the row's current key.
    Conflict { current: Option<String> },
}

impl DynamoAppStore {
    /// Registers `key_arn` as the signing key of an App that has none yet (no row, or a row
    /// without `KmsKeyArn`). An App that already has a key is left alone: rotate it instead.
    pub async fn register_key(&self, app_id: i64, key_arn: &str) -> Result<KeyWrite, Error> {
        self.write_key(app_id, key_arn, "attribute_not_exists(KmsKeyArn) OR KmsKeyArn = :expected", "").await
    }

    /// Switches an App from `old_arn` to `new_arn` in one conditional write: callers read either
    /// the old key or the new one, and a concurrent rotation is detected instead of overwritten.
    pub async fn switch_key(&self, app_id: i64, old_arn: &str, new_arn: &str) -> Result<KeyWrite, Error> {
        self.write_key(app_id, new_arn, "KmsKeyArn = :expected", old_arn).await
    }

    /// Sets the App's `KmsKeyArn` if `condition` (on `:expected`) holds; otherwise reports the
    /// row's current key.
    async fn write_key(&self, app_id: i64, key_arn: &str, condition: &str, expected: &str) -> Result<KeyWrite, Error> {
        let written = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("AppId", AttributeValue::N(app_id.to_string()))
            .update_expression("SET KmsKeyArn = :new")
            .condition_expression(condition)
            .expression_attribute_values(":new", AttributeValue::S(key_arn.to_string()))
            .expression_attribute_values(":expected", AttributeValue::S(expected.to_string()))
            .send()
            .await;
        match written {
            Ok(_) => Ok(KeyWrite::Written),
            Err(e) if matches!(e.as_service_error(), Some(UpdateItemError::ConditionalCheckFailedException(_))) => {
                let current = self.get_app(app_id).await?.and_then(|app| app.kms_key_arn);
                if current.as_deref() == Some(key_arn) {
                    // The row already names this key: our own write, whose answer was lost and
                    // whose retry the condition then refused. A new key's ARN is never another's.
                    return Ok(KeyWrite::Written);
                }
                Ok(KeyWrite::Conflict { current })
            }
            Err(e) => Err(dynamo_error("writing the App table", e)),
        }
    }
}
