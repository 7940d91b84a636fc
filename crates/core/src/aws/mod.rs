//! The AWS adapters behind the [`crate::ports`]: KMS ([`kms`]), the DynamoDB tables ([`app_table`],
//! [`installation_table`]) and, with the `cloudwatch` feature, CloudWatch (`cloudwatch`); plus the
//! timeouts of every AWS call and the mapping of DynamoDB failures.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::Error;

pub mod access_table;
pub mod app_table;
#[cfg(feature = "cloudwatch")]
pub mod cloudwatch;
#[cfg(feature = "rotator")]
pub mod iam;
pub mod installation_table;
pub mod kms;
pub mod lease_table;
pub mod rotation_table;

/// Timeouts for every AWS call: a hung dependency fails the request well before Lambda's timeout.
pub fn aws_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(8))
        .build()
}

/// Maps a DynamoDB failure: throttling becomes `ThrottlingException`, the rest is internal.
pub(crate) fn dynamo_error<E, R>(context: &'static str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let throttled = err.as_service_error().and_then(|e| e.code()).is_some_and(|code| {
        matches!(code, "ProvisionedThroughputExceededException" | "ThrottlingException" | "RequestLimitExceeded")
    });
    if throttled {
        Error::Throttled { service: "DynamoDB", retry_after_seconds: 1 }
    } else {
        Error::internal(context, err)
    }
}

/// A DynamoDB item.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// Items per Query/Scan page when reading a whole partition or table: each request stays short.
pub(crate) const PAGE: i32 = 1000;

/// Every item of `table` (only the `projection` attributes, if given), page after page.
pub(crate) async fn scan_all(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    projection: Option<&str>,
    context: &'static str,
) -> Result<Vec<Item>, Error> {
    client
        .scan()
        .table_name(table)
        .set_projection_expression(projection.map(str::to_string))
        .limit(PAGE)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| dynamo_error(context, e))
}
