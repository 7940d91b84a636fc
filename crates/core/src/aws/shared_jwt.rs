//! **(ext)** The shared App JWTs in the lease table, behind the [`SharedJwts`] port: one item per
//! App, `LeaseId` = `AppJwt#APP_ID`, holding the encrypted JWT (`Jwt`, binary), the key it was
//! signed with (`KeyArn`), its expiry (`JwtExpiresAt`), the App's slug if the signer got it
//! (`AppSlug`, plain) and the claim on its signing (`ClaimedBy`, `ClaimedUntil`). `ExpiresAt`, the table's TTL attribute, is the JWT's expiry (the claim's, until
//! a JWT is written), so DynamoDB removes what has expired.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use crate::aws::{Item, dynamo_error};
use crate::error::Error;
use crate::ports::{ClaimIf, JwtClaim, SharedItem, SharedJwt, SharedJwts};

/// The shared App JWTs in the lease table.
#[derive(Debug, Clone)]
pub struct DynamoSharedJwts {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoSharedJwts {
    /// The entries in the lease table `table` on `client`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

/// The item's key: what IAM confines the functions to (`dynamodb:LeadingKeys` `AppJwt#*`).
pub fn item_key(app_id: i64) -> String {
    format!("AppJwt#{app_id}")
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

/// The entry an item holds; `None` for one without a JWT (a claim alone), `Err` for one that
/// does not read as an entry.
fn entry(item: &Item) -> Result<Option<SharedJwt>, &'static str> {
    let Some(jwt) = item.get("Jwt") else { return Ok(None) };
    let sealed = jwt.as_b().map_err(|_| "Jwt is not binary")?.as_ref().to_vec();
    let key_arn = item.get("KeyArn").and_then(|v| v.as_s().ok()).ok_or("no KeyArn")?.clone();
    let expires_at =
        item.get("JwtExpiresAt").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).ok_or("no JwtExpiresAt")?;
    let slug = item.get("AppSlug").and_then(|v| v.as_s().ok()).cloned();
    Ok(Some(SharedJwt { key_arn, expires_at, sealed, slug }))
}

/// Until when the item's signing is claimed, if it is.
fn claimed_until(item: &Item) -> Option<i64> {
    item.get("ClaimedUntil").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

#[async_trait]
impl SharedJwts for DynamoSharedJwts {
    async fn read(&self, app_id: i64) -> Result<SharedItem, Error> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("LeaseId", s(&item_key(app_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_error("reading the shared App JWT", e))?;
        let Some(item) = out.item else { return Ok(SharedItem::default()) };
        let entry = entry(&item).map_err(|why| Error::internal("reading the shared App JWT", why))?;
        Ok(SharedItem { entry, claimed_until: claimed_until(&item) })
    }

    async fn claim(
        &self,
        app_id: i64,
        holder: &str,
        now: i64,
        until: i64,
        only_if: ClaimIf<'_>,
    ) -> Result<JwtClaim, Error> {
        // Unclaimed, lapsed, or further out than any claim made now: a clock ahead, or garbage,
        // must not hold every function off until then. Or the holder's own: the SDK sends an
        // attempt again when the answer to the first is late, and the first may have claimed.
        let free = "(attribute_not_exists(ClaimedUntil) OR ClaimedUntil < :now OR ClaimedUntil > :until \
                    OR ClaimedBy = :holder)";
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("LeaseId", s(&item_key(app_id)))
            .update_expression("SET ClaimedBy = :holder, ClaimedUntil = :until, ExpiresAt = :until")
            .expression_attribute_values(":holder", s(holder))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":now", n(now))
            // The item that refused the claim comes with the refusal: no second read.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        update = match only_if {
            ClaimIf::NotUsable { key_arn, after } => update
                .condition_expression(format!(
                    "{free} AND (attribute_not_exists(Jwt) OR attribute_not_exists(JwtExpiresAt) \
                     OR JwtExpiresAt <= :after OR KeyArn <> :key)"
                ))
                .expression_attribute_values(":after", n(after))
                .expression_attribute_values(":key", s(key_arn)),
            // Replaced meanwhile: the claim is refused, and the new entry comes with the refusal.
            ClaimIf::Still(Some(broken)) => update
                .condition_expression(format!("{free} AND Jwt = :seen"))
                .expression_attribute_values(":seen", AttributeValue::B(Blob::new(broken.sealed.clone()))),
            ClaimIf::Still(None) => update.condition_expression(free),
        };
        match update.send().await {
            Ok(_) => Ok(JwtClaim::Claimed),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(refused)) => {
                    let item = refused.item();
                    Ok(JwtClaim::Refused(SharedItem {
                        entry: item.and_then(|item| entry(item).ok().flatten()),
                        claimed_until: item.and_then(claimed_until),
                    }))
                }
                _ => Err(dynamo_error("claiming the signing of the shared App JWT", e)),
            },
        }
    }

    async fn put(&self, app_id: i64, holder: &str, entry: &SharedJwt) -> Result<bool, Error> {
        // A slug is never left from an entry before.
        let set = "SET Jwt = :jwt, KeyArn = :key, JwtExpiresAt = :exp, ExpiresAt = :exp";
        let update = match entry.slug {
            Some(_) => format!("{set}, AppSlug = :slug REMOVE ClaimedBy, ClaimedUntil"),
            None => format!("{set} REMOVE ClaimedBy, ClaimedUntil, AppSlug"),
        };
        let mut put = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("LeaseId", s(&item_key(app_id)))
            .update_expression(update)
            .condition_expression("ClaimedBy = :holder")
            .expression_attribute_values(":jwt", AttributeValue::B(Blob::new(entry.sealed.clone())))
            .expression_attribute_values(":key", s(&entry.key_arn))
            .expression_attribute_values(":exp", n(entry.expires_at))
            .expression_attribute_values(":holder", s(holder));
        if let Some(slug) = &entry.slug {
            put = put.expression_attribute_values(":slug", s(slug));
        }
        let put = put.send().await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.as_service_error(), Some(UpdateItemError::ConditionalCheckFailedException(_))) => {
                Ok(false)
            }
            Err(e) => Err(dynamo_error("writing the shared App JWT", e)),
        }
    }

    async fn release(&self, app_id: i64, holder: &str) -> Result<(), Error> {
        let release = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("LeaseId", s(&item_key(app_id)))
            .update_expression("REMOVE ClaimedBy, ClaimedUntil")
            .condition_expression("ClaimedBy = :holder")
            .expression_attribute_values(":holder", s(holder))
            .send()
            .await;
        match release {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.as_service_error(), Some(UpdateItemError::ConditionalCheckFailedException(_))) => {
                Ok(())
            }
            Err(e) => Err(dynamo_error("releasing the claim on the shared App JWT", e)),
        }
    }
}
