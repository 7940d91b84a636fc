//! The App table (`AppId` → `KmsKeyArn`, and the optional `ClientId`) in DynamoDB: the
//! [`AppStore`] port, and the conditional key writes the operator CLI registers and rotates keys
//! with. The TypeScript framework's readers ignore attributes they do not know, such as `ClientId`.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::aws::{dynamo_error, scan_all};
use crate::domain::jwt::client_id_problem;
use crate::error::Error;
use crate::ports::{AppRecord, AppStore, PreviousKey};

/// The App table's attributes appcreds reads.
pub(crate) const PROJECTION: &str = "AppId, KmsKeyArn, PreviousKmsKeyArn, PreviousKeyUsableUntil, ClientId";

/// A row of the App table from its item.
pub(crate) fn record(app_id: i64, item: &std::collections::HashMap<String, AttributeValue>) -> AppRecord {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).filter(|s| !s.is_empty()).cloned();
    let previous_key = match (text("PreviousKmsKeyArn"), text("PreviousKeyUsableUntil")) {
        (Some(arn), Some(until)) => {
            aws_smithy_types::DateTime::from_str(&until, aws_smithy_types::date_time::Format::DateTime)
                .ok()
                .map(|until| PreviousKey { arn, usable_until: until.secs() })
        }
        _ => None,
    };
    // A client ID that is not one (written by hand) is not put in a JWT: the App ID is.
    let client_id = text("ClientId").filter(|id| match client_id_problem(id) {
        None => true,
        Some(problem) => {
            tracing::warn!(app_id, %problem, "ignoring the App table's ClientId; the App ID is the JWT's issuer");
            false
        }
    });
    AppRecord { app_id, kms_key_arn: text("KmsKeyArn"), previous_key, client_id }
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
            .projection_expression(PROJECTION)
            .send()
            .await
            .map_err(|e| dynamo_error("reading the App table", e))?;
        Ok(out.item.map(|item| record(app_id, &item)))
    }

    async fn list_apps(&self) -> Result<Vec<AppRecord>, Error> {
        let items = scan_all(&self.client, &self.table, Some(PROJECTION), "listing the App table").await?;
        let mut apps: Vec<AppRecord> =
            items.iter().filter_map(|item| Some(record(item.get("AppId")?.as_n().ok()?.parse().ok()?, item))).collect();
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
    /// without `KmsKeyArn`), and, in the same write, its `client_id` if given. An App that already
    /// has a key is left alone: rotate it instead.
    pub async fn register_key(&self, app_id: i64, key_arn: &str, client_id: Option<&str>) -> Result<KeyWrite, Error> {
        let values = [(":new", key_arn), (":expected", "")];
        self.write_key(
            app_id,
            key_arn,
            "SET KmsKeyArn = :new",
            "attribute_not_exists(KmsKeyArn) OR KmsKeyArn = :expected",
            &values,
            client_id,
        )
        .await
    }

    /// Switches an App from `old_arn` to `new_arn` in one conditional write, keeping `old_arn`
    /// as the previous key, usable until `usable_until` (RFC 3339): callers read either the old
    /// key or the new one, and a concurrent rotation, or one whose grace period has not been
    /// closed ([`DynamoAppStore::clear_previous_key`]), is detected instead of overwritten. A
    /// `client_id`, if given, is written in the same write (none given: the row's stays).
    pub async fn switch_key(
        &self,
        app_id: i64,
        old_arn: &str,
        new_arn: &str,
        usable_until: &str,
        client_id: Option<&str>,
    ) -> Result<KeyWrite, Error> {
        let values = [(":new", new_arn), (":expected", old_arn), (":until", usable_until)];
        self.write_key(
            app_id,
            new_arn,
            "SET KmsKeyArn = :new, PreviousKmsKeyArn = :expected, PreviousKeyUsableUntil = :until",
            "KmsKeyArn = :expected AND attribute_not_exists(PreviousKmsKeyArn)",
            &values,
            client_id,
        )
        .await
    }

    /// Ends a rotation's grace period: the row no longer names `previous_arn`. Done already (a
    /// retry after a lost answer) is success.
    pub async fn clear_previous_key(&self, app_id: i64, previous_arn: &str) -> Result<(), Error> {
        let cleared = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("AppId", AttributeValue::N(app_id.to_string()))
            .update_expression("REMOVE PreviousKmsKeyArn, PreviousKeyUsableUntil")
            .condition_expression("PreviousKmsKeyArn = :previous")
            .expression_attribute_values(":previous", AttributeValue::S(previous_arn.to_string()))
            .send()
            .await;
        match cleared {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.as_service_error(), Some(UpdateItemError::ConditionalCheckFailedException(_))) => {
                Ok(())
            }
            Err(e) => Err(dynamo_error("writing the App table", e)),
        }
    }

    /// Applies `update` (and sets `ClientId` to `client_id`, if given) if `condition` holds
    /// (with `values`); otherwise reports the row's current key.
    async fn write_key(
        &self,
        app_id: i64,
        key_arn: &str,
        update: &str,
        condition: &str,
        values: &[(&str, &str)],
        client_id: Option<&str>,
    ) -> Result<KeyWrite, Error> {
        if let Some(problem) = client_id.and_then(client_id_problem) {
            return Err(Error::internal("writing the App table", problem));
        }
        let update = match client_id {
            Some(_) => format!("{update}, ClientId = :client"),
            None => update.to_string(),
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("AppId", AttributeValue::N(app_id.to_string()))
            .update_expression(update)
            .condition_expression(condition);
        if let Some(client_id) = client_id {
            request = request.expression_attribute_values(":client", AttributeValue::S(client_id.to_string()));
        }
        for (name, value) in values {
            request = request.expression_attribute_values(*name, AttributeValue::S(value.to_string()));
        }
        match request.send().await {
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
