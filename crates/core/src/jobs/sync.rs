//! The installation sync, shared by refresh-cache (on demand) and the installation tracker
//! (every 30 minutes): for every App in the App table, make its Installation rows equal to the
//! installations GitHub lists.
//!
//! - Each App is synced on its own; one failing (bad key, GitHub down) does not stop the others,
//!   and the report names it.
//! - An App's rows are deleted only after its listing completed.
//! - Writes follow changes: an unchanged App costs reads only. Changes go out in batch writes.
//! - Rows of Apps no longer in the App table are removed.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::deadline;
use crate::domain::clock::rfc3339;
use crate::error::Error;
use crate::github::installations;
use crate::ports::{InstallationRow, Lease, TablePosition};
use crate::services::Services;
use crate::tokens::app_jwt::AppJwts;

/// What happened to one App.
#[derive(Debug)]
pub struct AppOutcome {
    /// The App.
    pub app_id: i64,
    /// What changed, or why it could not be synced.
    pub result: Result<Changes, Error>,
}

/// The changes made for one App.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    /// Installations GitHub listed.
    pub listed: usize,
    /// Rows written (new or changed).
    pub written: usize,
    /// Rows deleted.
    pub deleted: usize,
}

/// The outcome of a sync run.
#[derive(Debug)]
pub struct SyncReport {
    /// Each App's outcome, by App ID.
    pub apps: Vec<AppOutcome>,
    /// Rows removed because their App is no longer in the App table.
    pub orphans_removed: usize,
    /// When the run started (RFC 3339).
    pub started: String,
}

impl SyncReport {
    /// The changes of every App that was synced, added up.
    pub(crate) fn totals(&self) -> Changes {
        self.apps.iter().filter_map(|a| a.result.as_ref().ok()).fold(Changes::default(), |acc, c| Changes {
            listed: acc.listed + c.listed,
            written: acc.written + c.written,
            deleted: acc.deleted + c.deleted,
        })
    }

    /// The Apps that could not be synced.
    pub fn failed_apps(&self) -> Vec<i64> {
        self.apps.iter().filter(|a| a.result.is_err()).map(|a| a.app_id).collect()
    }
}

/// Apps synced at once.
pub(crate) const CONCURRENCY: usize = 4;
/// Uninstalls confirmed at GitHub at once, per App.
const CONFIRMATIONS: usize = 8;

/// The lease that keeps syncs apart.
const SYNC_LEASE: &str = "installation-sync";
/// The most a caller refused by a running sync is told to wait.
const MAX_RETRY_HINT_SECS: i64 = 30;
/// How long a sync's lease lasts without a deadline to bound it (the functions' 300 s timeout).
const LEASE_SECS: i64 = 300;

/// The sync, built once per cold start; refresh-cache runs it on demand, the tracker on schedule.
pub struct InstallationSync {
    jwts: AppJwts,
    services: Services,
}

impl InstallationSync {
    /// The sync on `services` (App table, Installation table, signer, GitHub).
    pub fn new(services: &Services) -> Self {
        Self { jwts: AppJwts::new(services), services: services.clone() }
    }

    /// [`AppJwts::settle`] on the JWTs the sync lists installations with.
    pub async fn settle(&self, by: tokio::time::Instant) {
        self.jwts.settle(by).await;
    }

    /// Syncs every App; one App's failure is in the report, not an error.
    pub async fn run(&self) -> Result<SyncReport, Error> {
        let started = rfc3339(self.services.now());
        let apps = self.services.apps.list_apps().await?;
        let app_ids: BTreeSet<i64> = apps.iter().map(|a| a.app_id).collect();
        let outcomes: Vec<AppOutcome> = futures_util::stream::iter(app_ids.iter().copied())
            .map(|app_id| {
                let now = started.as_str();
                async move { AppOutcome { app_id, result: self.sync_app(app_id, now).await } }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut outcomes = outcomes;
        outcomes.sort_by_key(|o| o.app_id);
        for o in &outcomes {
            match &o.result {
                Ok(c) => tracing::info!(
                    app_id = o.app_id,
                    listed = c.listed,
                    written = c.written,
                    deleted = c.deleted,
                    "synced installations"
                ),
                Err(e) => tracing::error!(app_id = o.app_id, error = %e, "installation sync failed for this App"),
            }
        }
        let orphans: Vec<TablePosition> = self
            .services
            .installations
            .all_keys()
            .await?
            .into_iter()
            .filter(|k| !app_ids.contains(&k.app_id))
            .collect();
        let orphans_removed = orphans.len();
        if !orphans.is_empty() {
            self.services.installations.write(Vec::new(), orphans, &started).await?;
        }
        Ok(SyncReport { apps: outcomes, orphans_removed, started })
    }

    async fn sync_app(&self, app_id: i64, now: &str) -> Result<Changes, Error> {
        let listed = self.jwts.list_installations(self.services.github()?, app_id).await?;
        // Complete listing in hand: only now may rows be deleted.
        // Each row with what its installation grants (for the pre-flight check of token requests).
        let mut desired: BTreeMap<String, InstallationRow> = BTreeMap::new();
        let rows =
            listed.iter().filter_map(|i| Some(InstallationRow { record: i.record(app_id)?, grants: i.grants() }));
        for row in rows {
            // One installation per account and App; on a (transient) duplicate keep the newest.
            match desired.get(&row.record.node_id) {
                Some(existing) if existing.record.installation_id > row.record.installation_id => {}
                _ => {
                    desired.insert(row.record.node_id.clone(), row);
                }
            }
        }
        let existing: BTreeMap<String, InstallationRow> = self
            .services
            .installations
            .list_app(app_id, None)
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.record.node_id.clone(), r))
            .collect();
        let puts: Vec<InstallationRow> =
            desired.values().filter(|r| existing.get(&r.record.node_id) != Some(*r)).cloned().collect();
        // GitHub's listing is offset-paginated: an installation removed while it was being read
        // shifts the pages, and another one goes unlisted. A row is deleted only once GitHub
        // answers 404 for its installation.
        let unlisted: Vec<(i64, String)> = existing
            .values()
            .map(|r| &r.record)
            .filter(|r| !desired.contains_key(&r.node_id))
            .map(|r| (r.installation_id, r.node_id.clone()))
            .collect();
        let confirmed: Vec<Option<TablePosition>> = futures_util::stream::iter(unlisted)
            .map(|(installation_id, node_id)| async move {
                match self.installation_is_gone(app_id, installation_id).await {
                    Ok(true) => Some(TablePosition { app_id, node_id }),
                    Ok(false) => {
                        tracing::info!(app_id, installation_id, "not listed, but installed: kept");
                        None
                    }
                    Err(e) => {
                        tracing::warn!(app_id, installation_id, error = %e, "cannot confirm an uninstall: kept");
                        None
                    }
                }
            })
            .buffer_unordered(CONFIRMATIONS)
            .collect()
            .await;
        let deletes: Vec<TablePosition> = confirmed.into_iter().flatten().collect();
        let changes = Changes { listed: listed.len(), written: puts.len(), deleted: deletes.len() };
        if !puts.is_empty() || !deletes.is_empty() {
            self.services.installations.write(puts, deletes, now).await?;
        }
        Ok(changes)
    }

    /// Whether GitHub answers 404 for the installation.
    async fn installation_is_gone(&self, app_id: i64, installation_id: i64) -> Result<bool, Error> {
        let jwt = self.jwts.get(app_id).await?;
        let path = format!("/app/installations/{installation_id}");
        Ok(installations::lookup(self.services.github()?, app_id, &jwt.token, &path).await?.is_none())
    }

    /// [`InstallationSync::run`], unless another sync (refresh-cache's or the tracker's, in any
    /// process) holds the lease: then `SyncRunning` with the time it has left. The lease lasts
    /// until this run ends, or at most until the invocation's deadline, so a run Lambda stops
    /// cannot hold it longer.
    pub async fn run_exclusive(&self) -> Result<SyncReport, Error> {
        let leases = &self.services.leases;
        let holder = format!("{:032x}", fastrand::u128(..));
        let now = self.services.now();
        let ttl = deadline::remaining().map_or(LEASE_SECS, |left| left.as_secs() as i64 + 1);
        match leases.acquire(SYNC_LEASE, &holder, now, now + ttl).await? {
            // The lease may run minutes; a running sync often ends sooner: ask again within 30 s.
            Lease::HeldUntil(until) => {
                Err(Error::SyncRunning { retry_after_seconds: (until - now).clamp(1, MAX_RETRY_HINT_SECS) as u64 })
            }
            Lease::Acquired => {
                let report = self.run().await;
                if let Err(e) = leases.release(SYNC_LEASE, &holder).await {
                    tracing::warn!(error = %e, "could not release the sync's lease; it expires by itself");
                }
                report
            }
        }
    }

    /// The installation tracker's run: a summary line, and an error only if no App could be
    /// synced. A sync already running (refresh-cache's) makes this run a no-op.
    pub async fn scheduled(&self) -> Result<Value, Error> {
        let report = match self.run_exclusive().await {
            Err(Error::SyncRunning { retry_after_seconds }) => {
                tracing::info!(retry_after_seconds, "installation tracker run skipped: a sync is already running");
                return Ok(json!({ "skipped": "an installation sync is already running" }));
            }
            other => other?,
        };
        let failed = report.failed_apps();
        let totals = report.totals();
        tracing::info!(
            apps = report.apps.len(),
            failed = failed.len(),
            written = totals.written,
            deleted = totals.deleted,
            orphans_removed = report.orphans_removed,
            "installation tracker run"
        );
        if !report.apps.is_empty() && failed.len() == report.apps.len() {
            return Err(Error::internal("installation tracker", "no App could be synced"));
        }
        Ok(json!({ "refreshedDate": report.started, "failedApps": failed }))
    }
}
