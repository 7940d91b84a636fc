//! refresh-cache (`POST /installations/refresh`) and the installation tracker (EventBridge):
//! both run the [`crate::sync`].

use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

use crate::api::{self, Transport};
use crate::app_jwt::AppJwts;
use crate::clock::Clock;
use crate::error::Error;
use crate::github::GitHubClient;
use crate::installations::InstallationStore;
use crate::signer::Signer;
use crate::store::{AppLister, AppStore};
use crate::sync::{Sync, SyncReport};

pub const PATH: &str = "/installations/refresh";
/// Apps synced at once.
pub const CONCURRENCY: usize = 4;

/// Everything the sync needs, built once per cold start.
pub struct Syncer<S, A, C, L, I> {
    pub jwts: AppJwts<S, A, C>,
    pub apps: L,
    pub github: GitHubClient,
    pub store: I,
}

impl<S: Signer, A: AppStore, C: Clock, L: AppLister, I: InstallationStore> Syncer<S, A, C, L, I> {
    pub async fn run(&self) -> Result<SyncReport, Error> {
        Sync {
            jwts: &self.jwts,
            apps: &self.apps,
            github: &self.github,
            store: &self.store,
            clock: self.jwts.clock(),
            concurrency: CONCURRENCY,
        }
        .run()
        .await
    }

    /// The installation tracker's run: a summary line, and an error only if no App could be synced.
    pub async fn scheduled(&self) -> Result<Value, Error> {
        let report = self.run().await?;
        let failed = report.failed_apps();
        let summary = summary(&report);
        tracing::info!(
            apps = report.apps.len(),
            failed = failed.len(),
            written = summary.1,
            deleted = summary.2,
            orphans_removed = report.orphans_removed,
            "installation tracker run"
        );
        if !report.apps.is_empty() && failed.len() == report.apps.len() {
            return Err(Error::internal("installation tracker", "no App could be synced"));
        }
        Ok(json!({ "refreshedDate": report.started, "failedApps": failed }))
    }
}

fn summary(report: &SyncReport) -> (usize, usize, usize) {
    report
        .apps
        .iter()
        .filter_map(|a| a.result.as_ref().ok())
        .fold((0, 0, 0), |acc, c| (acc.0 + c.listed, acc.1 + c.written, acc.2 + c.deleted))
}

/// The refresh-cache function's request handler.
pub struct RefreshHandler<S, A, C, L, I> {
    syncer: Syncer<S, A, C, L, I>,
    transport: Transport,
}

impl<S: Signer, A: AppStore, C: Clock, L: AppLister, I: InstallationStore> RefreshHandler<S, A, C, L, I> {
    pub fn new(syncer: Syncer<S, A, C, L, I>, transport: Transport) -> Self {
        Self { syncer, transport }
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        api::respond(self.call(req).await)
    }

    async fn call(&self, req: Request) -> Result<Value, Error> {
        let call = api::parse_call(&req, &[PATH], self.transport)?;
        let report = self.syncer.run().await?;
        let failed = report.failed_apps();
        let (listed, written, deleted) = summary(&report);
        tracing::info!(
            caller = call.caller.audit_name(),
            apps = report.apps.len(),
            failed = failed.len(),
            "refreshed installations"
        );
        let message = if failed.is_empty() {
            format!(
                "Refreshed the installations of {} Apps: {listed} installations, {written} rows written, {deleted} removed",
                report.apps.len()
            )
        } else {
            format!("Refreshed {} of {} Apps; failed: {failed:?}", report.apps.len() - failed.len(), report.apps.len())
        };
        Ok(json!({ "message": message, "refreshedDate": report.started, "failedApps": failed }))
    }
}
