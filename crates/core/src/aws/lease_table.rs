//! The lease table (`LeaseId` → `Holder`, `ExpiresAt`) in DynamoDB: the [`Leases`] port, so that
//! one installation sync runs at a time across refresh-cache and the tracker.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

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
        // Twice at most: a holder that released between our refused put and its answer leaves
        // no item behind, and then the lease is free to take.
        for _ in 0..2 {
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
                // The item that refused us comes with the refusal: no second read, no race.
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            match put {
                Ok(_) => return Ok(Lease::Acquired),
                Err(e) => match e.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(refused)) => {
                        let until = refused
                            .item()
                            .and_then(|i| i.get("ExpiresAt"))
                            .and_then(|v| v.as_n().ok())
                            .and_then(|n| n.parse().ok());
                        if let Some(until) = until {
                            return Ok(Lease::HeldUntil(until));
                        }
                    }
                    _ => return Err(dynamo_error("writing the lease table", e)),
                },
            }
        }
        Ok(Lease::HeldUntil(now + 1))
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
