//! The access table in DynamoDB (`RuleId` S; `Version` N, `Document` S: the rule as JSON,
//! `UpdatedAt` S) behind the [`AccessStore`] port, and the conditional writes the operator CLI
//! manages rules with: a write names the version it replaces, so one that loses a race is refused.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::aws::{Item, dynamo_error, scan_all};
use crate::domain::access::{MAX_RULES, Rule, RuleDocument};
use crate::error::Error;
use crate::ports::AccessStore;

/// The access table on `client`.
#[derive(Debug, Clone)]
pub struct DynamoAccessStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// What a conditional write of a rule found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleWrite {
    /// Done; the rule's version now (0 after a delete).
    Written { version: u64 },
    /// The rule was not at the expected version, so nothing was written; its version now (0: absent).
    Conflict { current: u64 },
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The rule of an item, or why it is not one.
fn rule_of(item: &Item) -> Result<Rule, String> {
    let id = item.get("RuleId").and_then(|v| v.as_s().ok()).ok_or("no RuleId")?;
    let version = item.get("Version").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).ok_or("no Version")?;
    let text = item.get("Document").and_then(|v| v.as_s().ok()).ok_or("no Document")?;
    let document: RuleDocument = serde_json::from_str(text).map_err(|e| format!("rule {id}: {e}"))?;
    if &document.id != id {
        return Err(format!("rule {id}: the document's id is {:?}", document.id));
    }
    Rule::from_document(document, version).map_err(|problems| format!("rule {id}: {}", problems.join("; ")))
}

impl DynamoAccessStore {
    /// The access table `table` on `client`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// The rule `id`, if there is one.
    pub async fn get_rule(&self, id: &str) -> Result<Option<Rule>, Error> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("RuleId", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_error("reading the access table", e))?;
        out.item.map(|item| rule_of(&item).map_err(|e| Error::internal("reading the access table", e))).transpose()
    }

    /// Writes `rule` if its current version is `expected` (0: it must not exist yet).
    pub async fn put_rule(&self, rule: &RuleDocument, expected: u64, now_rfc3339: &str) -> Result<RuleWrite, Error> {
        let document = serde_json::to_string(rule).map_err(|e| Error::internal("writing a rule", e))?;
        let condition = if expected == 0 { "attribute_not_exists(RuleId)" } else { "Version = :expected" };
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("RuleId", s(&rule.id))
            .item("Version", n(expected + 1))
            .item("Document", s(&document))
            .item("UpdatedAt", s(now_rfc3339))
            .condition_expression(condition);
        if expected != 0 {
            put = put.expression_attribute_values(":expected", n(expected));
        }
        match put.send().await {
            Ok(_) => Ok(RuleWrite::Written { version: expected + 1 }),
            Err(e) if matches!(e.as_service_error(), Some(PutItemError::ConditionalCheckFailedException(_))) => {
                Ok(RuleWrite::Conflict { current: self.version_of(&rule.id).await? })
            }
            Err(e) => Err(dynamo_error("writing the access table", e)),
        }
    }

    /// Deletes rule `id` if its current version is `expected`.
    pub async fn delete_rule(&self, id: &str, expected: u64) -> Result<RuleWrite, Error> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("RuleId", s(id))
            .condition_expression("Version = :expected")
            .expression_attribute_values(":expected", n(expected))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(RuleWrite::Written { version: 0 }),
            Err(e) if matches!(e.as_service_error(), Some(DeleteItemError::ConditionalCheckFailedException(_))) => {
                Ok(RuleWrite::Conflict { current: self.version_of(id).await? })
            }
            Err(e) => Err(dynamo_error("writing the access table", e)),
        }
    }

    async fn version_of(&self, id: &str) -> Result<u64, Error> {
        Ok(self.get_rule(id).await?.map_or(0, |r| r.version))
    }
}

#[async_trait]
impl AccessStore for DynamoAccessStore {
    async fn list_rules(&self) -> Result<Vec<Rule>, Error> {
        let (rules, problems) = self.read_rules().await?;
        for problem in problems {
            tracing::error!(%problem, "an access-table row is not a valid rule; it grants nothing");
        }
        Ok(rules)
    }
}

impl DynamoAccessStore {
    /// Every row of the table: the valid rules, and why each other row grants nothing (a row
    /// written by hand or by an older version that today's checks refuse).
    pub async fn read_rules(&self) -> Result<(Vec<Rule>, Vec<String>), Error> {
        let items = scan_all(&self.client, &self.table, None, "reading the access table").await?;
        if items.len() > MAX_RULES {
            return Err(Error::Misconfigured("the access table holds more than 10,000 rules"));
        }
        let (mut rules, mut problems) = (Vec::new(), Vec::new());
        for item in &items {
            match rule_of(item) {
                Ok(rule) => rules.push(rule),
                Err(problem) => problems.push(problem),
            }
        }
        Ok((rules, problems))
    }
}
