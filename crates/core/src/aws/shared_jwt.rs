//! **(ext)** The shared App JWTs in the lease table, behind the [`SharedJwts`] port: one item per
//! App, `LeaseId` = `AppJwt#APP_ID`, holding the encrypted JWT (`Jwt`, binary), the key it was
//! signed with (`KeyArn`), its expiry (`JwtExpiresAt`), the App's slug if the signer got it
//! (`AppSlug`, plain) and the claim on its signing (`ClaimedBy`, `ClaimedUntil`). `ExpiresAt`,
//! the table's TTL attribute, is the JWT's expiry (the claim's, until a JWT is written), so
//! DynamoDB removes what has expired. Given the App table ([`DynamoSharedJwts::with_app_table`]),
//! an App's row and its item are read in one `BatchGetItem`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::builders::KeysAndAttributesBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValuesOnConditionCheckFailure};

use crate::aws::app_table::{PROJECTION, record};
use crate::aws::{Item, dynamo_error};
use crate::deadline;
use crate::error::Error;
use crate::ports::{ClaimIf, JwtClaim, RowAndItem, SharedItem, SharedJwt, SharedJwts};

/// The shared App JWTs in the lease table.
#[derive(Debug, Clone)]
pub struct DynamoSharedJwts {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// The App table, read with the entries ([`SharedJwts::read_with_app`]).
    apps: Option<String>,
}

impl DynamoSharedJwts {
    /// The entries in the lease table `table` on `client`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), apps: None }
    }

    /// The same entries, an App's item read together with its row of the App table `table`
    /// (on the same client), in one request.
    pub fn with_app_table(self, table: impl Into<String>) -> Self {
        Self { apps: Some(table.into()), ..self }
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

/// What the App's item holds (none: nothing).
fn shared_item(item: Option<&Item>) -> Result<SharedItem, Error> {
    let Some(item) = item else { return Ok(SharedItem::default()) };
    let entry = entry(item).map_err(|why| Error::internal("reading the shared App JWT", why))?;
    Ok(SharedItem { entry, claimed_until: claimed_until(item) })
}

/// The App row and the App's item from `BatchGetItem`'s answer, if it answered for both tables:
/// `None` if it left a key unprocessed, or names a table otherwise than it was asked (then each
/// is read on its own).
fn both(app_id: i64, mut out: BatchGetItemOutput, apps: &str, table: &str) -> Option<RowAndItem> {
    if out.unprocessed_keys.as_ref().is_some_and(|left| !left.is_empty()) {
        tracing::debug!(app_id, "DynamoDB left the App row or its shared JWT unread; reading each");
        return None;
    }
    let mut responses = out.responses.take().unwrap_or_default();
    // A table with no item is an empty list; a table missing is not an answer.
    let (Some(row), Some(item)) = (responses.remove(apps), responses.remove(table)) else {
        tracing::debug!(app_id, "DynamoDB's answer does not name both tables; reading each");
        return None;
    };
    let app = row.into_iter().next().map(|item| record(app_id, &item));
    Some((Ok(app), shared_item(item.first())))
}

/// One key, as `BatchGetItem` takes it.
fn one_key(name: &str, value: AttributeValue) -> KeysAndAttributesBuilder {
    KeysAndAttributes::builder().keys(HashMap::from([(name.to_string(), value)]))
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
        shared_item(out.item.as_ref())
    }

    async fn read_with_app(&self, app_id: i64) -> Option<RowAndItem> {
        // Both tables one name: the answers could not be told apart.
        let apps = self.apps.as_ref().filter(|apps| **apps != self.table)?;
        // The App row as `DynamoAppStore` reads it; the item strongly consistent, as `read` does.
        let row = one_key("AppId", n(app_id)).projection_expression(PROJECTION).build();
        let item = one_key("LeaseId", s(&item_key(app_id))).consistent_read(true).build();
        let (Ok(row), Ok(item)) = (row, item) else { return None };
        let read = self.client.batch_get_item().request_items(apps, row).request_items(&self.table, item).send().await;
        match read {
            Ok(out) => both(app_id, out, apps, &self.table),
            // Another call needs time for one more: with less left, the failure is the row's.
            Err(e) if !deadline::allows(Duration::ZERO, deadline::AWS_CALL) => {
                Some((Err(dynamo_error("reading the App table", e)), Ok(SharedItem::default())))
            }
            Err(e) => {
                let e = dynamo_error("reading the App row with the shared App JWT", e);
                tracing::warn!(app_id, error = %e, "reading the App row and the shared App JWT one at a time");
                None
            }
        }
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

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::KeysAndAttributes;

    use super::*;

    fn answer(
        tables: &[(&str, Vec<Item>)],
    ) -> aws_sdk_dynamodb::operation::batch_get_item::builders::BatchGetItemOutputBuilder {
        let mut out = BatchGetItemOutput::builder();
        for (table, items) in tables {
            out = out.responses(*table, items.clone());
        }
        out
    }

    fn row() -> Item {
        HashMap::from([
            ("AppId".to_string(), AttributeValue::N("7".into())),
            ("KmsKeyArn".to_string(), AttributeValue::S("arn:aws:kms:us-east-1:1:key/k".into())),
        ])
    }

    #[test]
    fn an_answer_for_both_tables_is_taken() {
        let claim = HashMap::from([("ClaimedUntil".to_string(), AttributeValue::N("99".into()))]);
        let out = answer(&[("apps", vec![row()]), ("leases", vec![claim])]).build();
        let (app, shared) = both(7, out, "apps", "leases").unwrap();
        assert_eq!(app.unwrap().unwrap().kms_key_arn.as_deref(), Some("arn:aws:kms:us-east-1:1:key/k"));
        assert_eq!(shared.unwrap(), SharedItem { entry: None, claimed_until: Some(99) });
        // No row and no item: an App without a row, and an empty item.
        let (app, shared) = both(7, answer(&[("apps", vec![]), ("leases", vec![])]).build(), "apps", "leases").unwrap();
        assert_eq!((app.unwrap(), shared.unwrap()), (None, SharedItem::default()));
    }

    #[test]
    fn an_answer_that_leaves_a_key_or_a_table_out_is_none() {
        let unprocessed = KeysAndAttributes::builder()
            .keys(HashMap::from([("LeaseId".to_string(), AttributeValue::S("AppJwt#7".into()))]))
            .build()
            .unwrap();
        let out = answer(&[("apps", vec![row()])]).unprocessed_keys("leases", unprocessed).build();
        assert!(both(7, out, "apps", "leases").is_none(), "a key unprocessed");
        // Named otherwise (an ARN asked, a name answered): not read as "no App".
        let out = answer(&[("apps", vec![row()]), ("leases", vec![])]).build();
        assert!(both(7, out, "arn:aws:dynamodb:us-east-1:1:table/apps", "leases").is_none());
        assert!(both(7, answer(&[("apps", vec![row()])]).build(), "apps", "leases").is_none());
    }

    #[test]
    fn an_item_that_is_not_an_entry_is_the_items_error_alone() {
        let broken = HashMap::from([("Jwt".to_string(), AttributeValue::S("not binary".into()))]);
        let (app, shared) =
            both(7, answer(&[("apps", vec![row()]), ("leases", vec![broken])]).build(), "apps", "leases").unwrap();
        assert!(app.unwrap().is_some());
        assert!(shared.is_err());
    }
}
