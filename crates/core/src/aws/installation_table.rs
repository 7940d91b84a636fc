//! The Installation table in DynamoDB (`AppId` N + `NodeId` S, GSIs `NodeID` and
//! `InstallationID`) behind the [`InstallationStore`] port. **(ext)** A row may also hold what the
//! installation grants: `Permissions` (a map of permission to level) and `RepositorySelection`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};

use crate::aws::{Item, PAGE, dynamo_error, scan_all};
use crate::deadline;
use crate::domain::scope::InstallationGrants;
use crate::error::Error;
use crate::ports::{InstallationRecord, InstallationRow, InstallationStore, RowBound, TablePosition};

/// The Installation table in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoInstallationStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    scans_per_page: usize,
}

/// The most `Scan` requests one [`InstallationStore::page`] makes (by default): with requests
/// of 2 rows and then 4 times more each time (at most 1,000), at `maxResults` 1 that is up to
/// 3,682 rows scanned for one page.
pub const SCANS_PER_PAGE: usize = 8;

impl DynamoInstallationStore {
    /// The Installation table `table` on `client`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), scans_per_page: SCANS_PER_PAGE }
    }

    /// The same store, making at most `scans` (at least one) `Scan` requests a page instead of
    /// [`SCANS_PER_PAGE`].
    pub fn scans_per_page(mut self, scans: usize) -> Self {
        self.scans_per_page = scans.max(1);
        self
    }
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn get_s(item: &Item, name: &str) -> Option<String> {
    item.get(name)?.as_s().ok().cloned()
}

fn record(item: &Item) -> Option<InstallationRecord> {
    Some(InstallationRecord {
        app_id: get_n(item, "AppId")?,
        installation_id: get_n(item, "InstallationId")?,
        node_id: get_s(item, "NodeId")?,
        target_type: get_s(item, "TargetType").unwrap_or_default(),
        name: get_s(item, "Name").unwrap_or_default(),
    })
}

/// A row with what the installation grants, when it holds `Permissions`: a map of strings. Any
/// other `Permissions` reads as not known, never as a map with entries left out.
fn row(item: &Item) -> Option<InstallationRow> {
    let grants = item.get("Permissions").and_then(|p| p.as_m().ok()).and_then(|permissions| {
        Some(InstallationGrants {
            permissions: permissions
                .iter()
                .map(|(k, v)| Some((k.clone(), v.as_s().ok()?.clone())))
                .collect::<Option<_>>()?,
            repository_selection: get_s(item, "RepositorySelection").unwrap_or_default(),
        })
    });
    Some(InstallationRow { record: record(item)?, grants })
}

fn position(item: &Item) -> Option<TablePosition> {
    Some(TablePosition { app_id: get_n(item, "AppId")?, node_id: get_s(item, "NodeId")? })
}

fn key_item(p: &TablePosition) -> Item {
    HashMap::from([("AppId".to_string(), n(p.app_id)), ("NodeId".to_string(), s(&p.node_id))])
}

/// BatchWriteItem takes at most 25 requests.
const BATCH: usize = 25;
/// Time kept for one more `BatchWriteItem` (the SDK's operation timeout, its retries included).
fn write_budget() -> Duration {
    crate::aws::aws_timeouts().operation_timeout().unwrap_or(Duration::from_secs(8))
}
/// Time kept for one more `Scan` of a page (one attempt: a listing that is short of time
/// answers with what it found rather than wait on a retry).
fn scan_budget() -> Duration {
    crate::aws::aws_timeouts().operation_attempt_timeout().unwrap_or(Duration::from_secs(3))
}
/// What a failed scan of the table was doing.
const LISTING: &str = "listing the Installation table";

impl DynamoInstallationStore {
    /// Every row matching `condition` (on the table, or on `index`), `:v` bound to `value`.
    async fn query_all(
        &self,
        index: Option<&str>,
        condition: &str,
        value: AttributeValue,
    ) -> Result<Vec<InstallationRow>, Error> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(index.map(str::to_string))
            .key_condition_expression(condition)
            .expression_attribute_values(":v", value)
            .limit(PAGE)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| dynamo_error("querying the Installation table", e))?;
        Ok(items.iter().filter_map(row).collect())
    }
}

#[async_trait]
impl InstallationStore for DynamoInstallationStore {
    async fn get(&self, app_id: i64, node_id: &str) -> Result<Option<InstallationRow>, Error> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("AppId", n(app_id))
            .key("NodeId", s(node_id))
            .send()
            .await
            .map_err(|e| dynamo_error("reading the Installation table", e))?;
        Ok(out.item.as_ref().and_then(row))
    }

    async fn by_node_id(&self, node_id: &str) -> Result<Vec<InstallationRecord>, Error> {
        Ok(self.query_all(Some("NodeID"), "NodeId = :v", s(node_id)).await?.into_iter().map(|r| r.record).collect())
    }

    async fn list_app(&self, app_id: i64, bound: Option<RowBound>) -> Result<Option<Vec<InstallationRow>>, Error> {
        let Some(RowBound { max_rows, reserve }) = bound else {
            return Ok(Some(self.query_all(None, "AppId = :v", n(app_id)).await?));
        };
        let mut rows = Vec::new();
        let mut start = None;
        loop {
            // One row more than the bound says that there are more.
            let limit = (max_rows + 1 - rows.len()).min(PAGE as usize) as i32;
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("AppId = :v")
                .expression_attribute_values(":v", n(app_id))
                .limit(limit)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| dynamo_error("querying the Installation table", e))?;
            rows.extend(page.items.unwrap_or_default().iter().filter_map(row));
            if rows.len() > max_rows {
                return Ok(None);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(Some(rows));
            }
            // The first page always runs; another only if it and what follows fit the deadline.
            if !deadline::allows(Duration::ZERO, scan_budget() + reserve) {
                return Ok(None);
            }
        }
    }

    async fn page(
        &self,
        limit: usize,
        after: Option<TablePosition>,
        keep: &(dyn for<'r> Fn(&'r InstallationRecord) -> bool + Send + Sync),
    ) -> Result<(Vec<InstallationRecord>, Option<TablePosition>), Error> {
        let limit = limit.max(1);
        let mut out: Vec<InstallationRecord> = Vec::with_capacity(limit);
        let mut start = after.as_ref().map(key_item);
        // The last row looked at: once `limit` rows are found, the next admitted row is left
        // for the next page, which starts after the row before it.
        let mut last: Option<TablePosition> = None;
        // One row more than a page, to see whether another follows; larger while rows are
        // refused, so that a caller who may read few rows is not answered in many small scans.
        let mut batch = (limit + 1).min(PAGE as usize);
        for scan in 0..self.scans_per_page {
            // The first scan always runs, so every page gets on; another only if it fits the deadline.
            if scan > 0 && !deadline::allows(Duration::ZERO, scan_budget()) {
                break;
            }
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .limit(batch as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| dynamo_error(LISTING, e))?;
            for item in page.items.unwrap_or_default() {
                if let Some(row) = record(&item).filter(|r| keep(r)) {
                    if out.len() == limit {
                        return Ok((out, last));
                    }
                    out.push(row);
                }
                last = position(&item).or(last);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok((out, None));
            }
            batch = (batch * 4).min(PAGE as usize);
        }
        // Stopped short, by the bound or the deadline: the next page goes on after the last row scanned.
        Ok((out, start.as_ref().and_then(position)))
    }

    async fn all(&self) -> Result<Vec<InstallationRecord>, Error> {
        Ok(scan_all(&self.client, &self.table, None, LISTING).await?.iter().filter_map(record).collect())
    }

    async fn all_keys(&self) -> Result<Vec<TablePosition>, Error> {
        Ok(scan_all(&self.client, &self.table, Some("AppId, NodeId"), LISTING)
            .await?
            .iter()
            .filter_map(position)
            .collect())
    }

    async fn write(
        &self,
        puts: Vec<InstallationRow>,
        deletes: Vec<TablePosition>,
        now_rfc3339: &str,
    ) -> Result<(), Error> {
        let mut requests: Vec<WriteRequest> = Vec::with_capacity(puts.len() + deletes.len());
        for InstallationRow { record: r, grants } in puts {
            let mut item = HashMap::from([
                ("AppId".to_string(), n(r.app_id)),
                ("NodeId".to_string(), s(&r.node_id)),
                ("InstallationId".to_string(), n(r.installation_id)),
                ("TargetType".to_string(), s(&r.target_type)),
                ("Name".to_string(), s(&r.name)),
                ("LastRefreshed".to_string(), s(now_rfc3339)),
            ]);
            if let Some(grants) = grants {
                let permissions = grants.permissions.iter().map(|(k, v)| (k.clone(), s(v))).collect();
                item.insert("Permissions".to_string(), AttributeValue::M(permissions));
                item.insert("RepositorySelection".to_string(), s(&grants.repository_selection));
            }
            let put = PutRequest::builder().set_item(Some(item)).build().map_err(|e| Error::internal("a put", e))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        for d in deletes {
            let del = DeleteRequest::builder()
                .set_key(Some(key_item(&d)))
                .build()
                .map_err(|e| Error::internal("a delete", e))?;
            requests.push(WriteRequest::builder().delete_request(del).build());
        }
        for chunk in requests.chunks(BATCH) {
            // No chunk is started that could not finish before the invocation's deadline.
            if !deadline::allows(Duration::ZERO, write_budget()) {
                return Err(Error::OutOfTime);
            }
            let mut pending = chunk.to_vec();
            // Unprocessed items (throttling) are sent again with a growing pause, a bounded number of times.
            for attempt in 0..8u32 {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| dynamo_error("writing the Installation table", e))?;
                pending = out.unprocessed_items.and_then(|mut m| m.remove(&self.table)).unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                let pause = Duration::from_millis(50 << attempt);
                // The pause, and one more write after it, must fit before the invocation's deadline.
                if attempt == 7 || !deadline::allows(pause, write_budget()) {
                    return Err(Error::Throttled { service: "DynamoDB", retry_after_seconds: 1 });
                }
                tokio::time::sleep(pause).await;
            }
        }
        Ok(())
    }

    async fn write_grants(
        &self,
        position: &TablePosition,
        installation_id: i64,
        grants: &InstallationGrants,
        now_rfc3339: &str,
    ) -> Result<bool, Error> {
        let permissions = grants.permissions.iter().map(|(k, v)| (k.clone(), s(v))).collect();
        let written = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_item(position)))
            .condition_expression("InstallationId = :id")
            .update_expression("SET #p = :p, #s = :s, #t = :t")
            .expression_attribute_names("#p", "Permissions")
            .expression_attribute_names("#s", "RepositorySelection")
            .expression_attribute_names("#t", "LastRefreshed")
            .expression_attribute_values(":id", n(installation_id))
            .expression_attribute_values(":p", AttributeValue::M(permissions))
            .expression_attribute_values(":s", s(&grants.repository_selection))
            .expression_attribute_values(":t", s(now_rfc3339))
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            // Deleted (an uninstall the sync confirmed) or reinstalled meanwhile: not brought back.
            Err(e) if matches!(e.as_service_error(), Some(UpdateItemError::ConditionalCheckFailedException(_))) => {
                Ok(false)
            }
            Err(e) => Err(dynamo_error("writing the Installation table", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(permissions: Option<AttributeValue>) -> Item {
        let mut item = HashMap::from([
            ("AppId".to_string(), n(500)),
            ("NodeId".to_string(), s("O_kgDOocto-org")),
            ("InstallationId".to_string(), n(71)),
            ("RepositorySelection".to_string(), s("selected")),
        ]);
        if let Some(p) = permissions {
            item.insert("Permissions".to_string(), p);
        }
        item
    }

    #[test]
    fn permissions_read_whole_or_not_at_all() {
        let map = |entries: &[(&str, AttributeValue)]| {
            AttributeValue::M(entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
        };
        let whole = row(&item(Some(map(&[("contents", s("write")), ("issues", s("read"))])))).unwrap();
        let grants = whole.grants.expect("a map of strings");
        assert_eq!((grants.permissions.len(), grants.permissions["contents"].as_str()), (2, "write"));
        assert_eq!(grants.repository_selection, "selected");
        assert_eq!(row(&item(Some(map(&[])))).unwrap().grants.unwrap().permissions.len(), 0, "grants nothing");
        let odd = row(&item(Some(map(&[("contents", s("write")), ("issues", n(1))])))).unwrap();
        assert_eq!(odd.grants, None, "a value not a string: not known, no entry dropped");
        assert_eq!(row(&item(Some(s("contents")))).unwrap().grants, None, "not a map");
        assert_eq!(row(&item(None)).unwrap().grants, None, "an earlier version's row");
    }
}
