//! The rotation table in DynamoDB (`UserName` → `Spec`, `State`, `Pending`, `Version`): the
//! [`RotationStore`] port. `Spec` and `State` are JSON documents (the shapes of
//! [`TargetSpec`] and [`RotationState`]); `Pending` is KMS ciphertext, never a secret in clear.
//!
//! A spec write never touches the state or the version, so an operator editing a target does not
//! make a running rotation lose what it recorded; state writes are conditional on the version.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use crate::aws::{Item, dynamo_error, scan_all};
use crate::domain::rotation::{RotationState, TargetSpec};
use crate::error::Error;
use crate::ports::{Pending, RotationStore, TargetList, TargetRecord};

/// The rotation table.
#[derive(Debug, Clone)]
pub struct DynamoRotationStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoRotationStore {
    /// The rotation table `table` on `client`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

fn record(item: &Item) -> Result<TargetRecord, Error> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok());
    let spec: TargetSpec = serde_json::from_str(text("Spec").ok_or_else(|| bad("no Spec"))?)
        .map_err(|e| Error::internal("reading a rotation target's Spec", e))?;
    // Held to the rules the CLI checks: a row written past it reaches no GitHub URL.
    if let Err(e) = spec.validate() {
        return Err(Error::RotationRefused(format!("the stored target of {:?} is invalid: {e}", spec.user_name)));
    }
    if text("UserName").map(String::as_str) != Some(spec.user_name.as_str()) {
        return Err(Error::RotationRefused("a stored target's UserName differs from its Spec".into()));
    }
    let state: RotationState = match text("State") {
        Some(s) => serde_json::from_str(s).map_err(|e| Error::internal("reading a rotation target's State", e))?,
        None => RotationState::default(),
    };
    let pending = item.get("Pending").and_then(|v| v.as_b().ok()).map(|b| b.as_ref().to_vec());
    let version = item.get("Version").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(0);
    Ok(TargetRecord { spec, state, pending, version })
}

fn bad(what: &'static str) -> Error {
    Error::internal("reading the rotation table", what)
}

#[async_trait]
impl RotationStore for DynamoRotationStore {
    async fn get(&self, user: &str) -> Result<Option<TargetRecord>, Error> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("UserName", AttributeValue::S(user.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_error("reading the rotation table", e))?;
        out.item.as_ref().map(record).transpose()
    }

    async fn list(&self) -> Result<TargetList, Error> {
        let items = scan_all(&self.client, &self.table, None, "reading the rotation table").await?;
        // One bad row (written past the CLI) is set aside; it does not stop the others.
        let mut records = Vec::new();
        let mut invalid = Vec::new();
        for item in &items {
            match record(item) {
                Ok(r) => records.push(r),
                Err(e) => {
                    let user = item.get("UserName").and_then(|v| v.as_s().ok()).map_or("?", String::as_str);
                    invalid.push((user.to_string(), e.to_string()));
                }
            }
        }
        records.sort_by(|a, b| a.spec.user_name.cmp(&b.spec.user_name));
        Ok(TargetList { records, invalid })
    }

    async fn put_spec(&self, spec: &TargetSpec) -> Result<(), Error> {
        let json = serde_json::to_string(spec).map_err(|e| Error::internal("writing a rotation target", e))?;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("UserName", AttributeValue::S(spec.user_name.clone()))
            .update_expression("SET Spec = :spec, Version = if_not_exists(Version, :zero)")
            .expression_attribute_values(":spec", AttributeValue::S(json))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .send()
            .await
            .map_err(|e| dynamo_error("writing the rotation table", e))?;
        Ok(())
    }

    async fn delete(&self, user: &str) -> Result<bool, Error> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("UserName", AttributeValue::S(user.to_string()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| dynamo_error("writing the rotation table", e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn save_state(
        &self,
        user: &str,
        state: &RotationState,
        pending: Pending,
        version: i64,
    ) -> Result<i64, Error> {
        let json = serde_json::to_string(state).map_err(|e| Error::internal("writing a rotation state", e))?;
        let mut update = "SET #state = :state, Version = :next".to_string();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("UserName", AttributeValue::S(user.to_string()))
            .condition_expression("attribute_exists(UserName) AND Version = :version")
            .expression_attribute_names("#state", "State")
            .expression_attribute_values(":state", AttributeValue::S(json))
            .expression_attribute_values(":next", AttributeValue::N((version + 1).to_string()))
            .expression_attribute_values(":version", AttributeValue::N(version.to_string()));
        match pending {
            Pending::Keep => {}
            Pending::Set(ciphertext) => {
                update.push_str(", Pending = :pending");
                request = request.expression_attribute_values(":pending", AttributeValue::B(Blob::new(ciphertext)));
            }
            Pending::Clear => update.push_str(" REMOVE Pending"),
        }
        match request.update_expression(update).send().await {
            Ok(_) => Ok(version + 1),
            Err(e) if matches!(e.as_service_error(), Some(UpdateItemError::ConditionalCheckFailedException(_))) => {
                Err(Error::internal(
                    "writing a rotation state",
                    "the target was deleted or written by another run meanwhile",
                ))
            }
            Err(e) => Err(dynamo_error("writing the rotation table", e)),
        }
    }
}
