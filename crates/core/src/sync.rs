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
use serde::Deserialize;

use crate::app_jwt::AppJwts;
use crate::clock::{Clock, rfc3339};
use crate::error::Error;
use crate::github::{Auth, GitHubClient};
use crate::installations::{InstallationRecord, InstallationStore, TablePosition};
use crate::signer::Signer;
use crate::store::{AppLister, AppStore};

/// The listing endpoint, at GitHub's largest page size.
pub const LIST_PATH: &str = "/app/installations?per_page=100";

/// An installation as `GET /app/installations` lists it (the fields appcreds keeps).
#[derive(Debug, Clone, Deserialize)]
pub struct GitHubInstallation {
    pub id: i64,
    pub account: Option<GitHubAccount>,
    #[serde(default)]
    pub target_type: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GitHubAccount {
    pub login: Option<String>,
    /// Enterprises have a slug instead of a login.
    pub slug: Option<String>,
    pub node_id: String,
}

impl GitHubInstallation {
    /// The Installation row for this installation of `app_id`.
    pub fn record(&self, app_id: i64) -> Option<InstallationRecord> {
        let account = self.account.as_ref()?;
        Some(InstallationRecord {
            app_id,
            installation_id: self.id,
            node_id: account.node_id.clone(),
            target_type: self.target_type.clone(),
            name: account.login.clone().or_else(|| account.slug.clone()).unwrap_or_default(),
        })
    }
}

/// What happened to one App.
#[derive(Debug)]
pub struct AppOutcome {
    pub app_id: i64,
    pub result: Result<Changes, Error>,
}

/// The changes made for one App.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    pub listed: usize,
    pub written: usize,
    pub deleted: usize,
}

/// The outcome of a sync run.
#[derive(Debug)]
pub struct SyncReport {
    pub apps: Vec<AppOutcome>,
    /// Rows removed because their App is no longer in the App table.
    pub orphans_removed: usize,
    /// When the run started (RFC 3339).
    pub started: String,
}

impl SyncReport {
    pub fn failed_apps(&self) -> Vec<i64> {
        self.apps.iter().filter(|a| a.result.is_err()).map(|a| a.app_id).collect()
    }
}

/// Lists installations of one App from GitHub (all pages) with the App's JWT.
pub async fn list_installations<S: Signer, A: AppStore, C: Clock>(
    jwts: &AppJwts<S, A, C>,
    github: &GitHubClient,
    app_id: i64,
) -> Result<Vec<GitHubInstallation>, Error> {
    let jwt = jwts.get(app_id).await?;
    let listed = github.get_all(LIST_PATH, Auth::App { app_id, jwt: &jwt.token }, None).await;
    if let Err(Error::GitHubUnauthorized { .. }) = &listed {
        // The key may have been rotated since this JWT was signed: sign afresh next time.
        jwts.invalidate(app_id).await;
    }
    listed
}

/// The sync. `concurrency` Apps are synced at once.
pub struct Sync<'a, S, A, C, L, I> {
    pub jwts: &'a AppJwts<S, A, C>,
    pub apps: &'a L,
    pub github: &'a GitHubClient,
    pub store: &'a I,
    pub clock: &'a C,
    pub concurrency: usize,
}

impl<S: Signer, A: AppStore, C: Clock, L: AppLister, I: InstallationStore> Sync<'_, S, A, C, L, I> {
    pub async fn run(&self) -> Result<SyncReport, Error> {
        let started = rfc3339(self.clock.now());
        let apps = self.apps.list_apps().await?;
        let app_ids: BTreeSet<i64> = apps.iter().map(|a| a.app_id).collect();
        let outcomes: Vec<AppOutcome> = futures_util::stream::iter(app_ids.iter().copied())
            .map(|app_id| {
                let now = started.as_str();
                async move { AppOutcome { app_id, result: self.sync_app(app_id, now).await } }
            })
            .buffer_unordered(self.concurrency.max(1))
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
        let orphans: Vec<TablePosition> =
            self.store.all_keys().await?.into_iter().filter(|k| !app_ids.contains(&k.app_id)).collect();
        let orphans_removed = orphans.len();
        if !orphans.is_empty() {
            self.store.write(Vec::new(), orphans, &started).await?;
        }
        Ok(SyncReport { apps: outcomes, orphans_removed, started })
    }

    async fn sync_app(&self, app_id: i64, now: &str) -> Result<Changes, Error> {
        let listed = list_installations(self.jwts, self.github, app_id).await?;
        // Complete listing in hand: only now may rows be deleted.
        let mut desired: BTreeMap<String, InstallationRecord> = BTreeMap::new();
        for record in listed.iter().filter_map(|i| i.record(app_id)) {
            // One installation per account and App; on a (transient) duplicate keep the newest.
            match desired.get(&record.node_id) {
                Some(existing) if existing.installation_id > record.installation_id => {}
                _ => {
                    desired.insert(record.node_id.clone(), record);
                }
            }
        }
        let existing: BTreeMap<String, InstallationRecord> =
            self.store.list_app(app_id).await?.into_iter().map(|r| (r.node_id.clone(), r)).collect();
        let puts: Vec<InstallationRecord> =
            desired.values().filter(|r| existing.get(&r.node_id) != Some(*r)).cloned().collect();
        let deletes: Vec<TablePosition> = existing
            .keys()
            .filter(|node| !desired.contains_key(*node))
            .map(|node_id| TablePosition { app_id, node_id: node_id.clone() })
            .collect();
        let changes = Changes { listed: listed.len(), written: puts.len(), deleted: deletes.len() };
        if !puts.is_empty() || !deletes.is_empty() {
            self.store.write(puts, deletes, now).await?;
        }
        Ok(changes)
    }
}
