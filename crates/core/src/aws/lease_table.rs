//! The lease table (`LeaseId` → `Holder`, `ExpiresAt`) in DynamoDB: the [`Leases`] port, so that
//! one installation sync runs at a time across refresh-cache and the tracker.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::aws::dynamo_error;
use crate::error::Error;
use crate::ports::{Lease, Leases};

/// The lease table in DynamoDB (its `ExpiresAt` is also the table's TTL attribute).
#[derive(Debug, Clone)]
pub struct DynamoLeases {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoLeases {
    /// The lease table `table` on `client`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

#[async_trait]
impl Leases for DynamoLeases {
    async fn acquire(&self, name: &str, holder: &str, now: i64, until: i64) -> Result<Lease, Error> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("LeaseId", AttributeValue::S(name.to_string()))
            .item("Holder", AttributeValue::S(holder.to_string()))
            .item("ExpiresAt", AttributeValue::N(until.to_string()))
            .condition_expression("attribute_not_exists(LeaseId) OR ExpiresAt < :now OR Holder = :holder")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":holder", AttributeValue::S(holder.to_string()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(Lease::Acquired),
            Err(e) if matches!(e.as_service_error(), Some(PutItemError::ConditionalCheckFailedException(_))) => {
                let held = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("LeaseId", AttributeValue::S(name.to_string()))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| dynamo_error("reading the lease table", e))?;
                let until = held
                    .item
                    .as_ref()
                    .and_then(|i| i.get("ExpiresAt"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(now + 1);
                Ok(Lease::HeldUntil(until))
            }
            Err(e) => Err(dynamo_error("writing the lease table", e)),
        }
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), Error> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("LeaseId", AttributeValue::S(name.to_string()))
            .condition_expression("Holder = :holder")
            .expression_attribute_values(":holder", AttributeValue::S(holder.to_string()))
            .send()
            .await;
        match deleted {
            // Taken over after it expired, or already released: nothing of ours to give back.
            Err(e) if matches!(e.as_service_error(), Some(DeleteItemError::ConditionalCheckFailedException(_))) => {
                Ok(())
            }
            Err(e) => Err(dynamo_error("writing the lease table", e)),
            Ok(_) => Ok(()),
        }
    }
}
