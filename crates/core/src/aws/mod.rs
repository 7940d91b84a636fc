//! The AWS adapters behind the [`crate::ports`]: KMS signing, MACs and sealing ([`kms`]); the
//! DynamoDB tables: Apps ([`app_table`]), installations ([`installation_table`]), access rules
//! ([`access_table`]), leases ([`lease_table`]), the shared App JWTs, kept with the leases
//! ([`shared_jwt`]), and rotation targets ([`rotation_table`]); with the
//! `cloudwatch` feature, the CloudWatch metric sink (`cloudwatch`); with the `rotator` feature, IAM
//! access keys and STS (`iam`). The SDK's HTTP client ([`https`]). Plus the timeouts of every AWS call and the mapping of DynamoDB
//! failures. Only the cold start (and the operator CLI) names these types; everything else reaches
//! AWS through the ports.

use std::collections::HashMap;

use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use crate::deadline;
use crate::error::Error;

pub mod access_table;
pub mod app_table;
#[cfg(feature = "cloudwatch")]
pub mod cloudwatch;
pub mod https;
#[cfg(feature = "rotator")]
pub mod iam;
pub mod installation_table;
pub mod kms;
pub mod lease_table;
pub mod rotation_table;
pub mod shared_jwt;

/// Timeouts for every AWS call: a hung dependency fails the request well before Lambda's timeout.
/// The numbers are [`deadline`]'s, which the jobs budget their AWS calls with.
pub fn aws_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(deadline::AWS_CONNECT)
        .operation_attempt_timeout(deadline::AWS_ATTEMPT)
        .operation_timeout(deadline::AWS_CALL)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_timeouts_are_the_deadline_budgets() {
        let timeouts = aws_timeouts();
        assert_eq!(timeouts.operation_timeout(), Some(deadline::AWS_CALL));
        assert_eq!(timeouts.operation_attempt_timeout(), Some(deadline::AWS_ATTEMPT));
        assert_eq!(timeouts.connect_timeout(), Some(deadline::AWS_CONNECT));
    }
}
