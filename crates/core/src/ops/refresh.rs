//! refresh-cache: `POST /installations/refresh` → run the [`InstallationSync`] now.

use appcreds_wire::{RefreshResponse, paths};
use async_trait::async_trait;
use serde_json::Value;

use crate::access_control::AccessControl;
use crate::domain::access::Action;
use crate::error::Error;
use crate::http::{Call, Operation, reply};
use crate::jobs::sync::InstallationSync;
use crate::services::Services;

/// The refresh-cache operation.
pub struct Refresh {
    access: AccessControl,
    sync: InstallationSync,
}

impl Refresh {
    /// The operation on `services`.
    pub fn new(services: &Services) -> Self {
        Self { access: AccessControl::new(services), sync: InstallationSync::new(services) }
    }
}

#[async_trait]
impl Operation for Refresh {
    const ROUTES: &'static [&'static str] = &[paths::REFRESH];

    async fn settle(&self, by: tokio::time::Instant) {
        self.sync.settle(by).await;
    }

    async fn call(&self, call: Call) -> Result<Value, Error> {
        let rule = self.access.judge(&call).await?.allow(Action::Refresh, None)?;
        // One sync at a time: a second caller is told when to retry (ThrottlingException).
        let report = self.sync.run_exclusive().await?;
        let failed = report.failed_apps();
        let totals = report.totals();
        tracing::info!(
            caller = call.caller.audit_name(),
            rule = rule.as_deref().unwrap_or("-"),
            apps = report.apps.len(),
            failed = failed.len(),
            "refreshed installations"
        );
        let message = if failed.is_empty() {
            format!(
                "Refreshed the installations of {} Apps: {} installations, {} rows written, {} removed",
                report.apps.len(),
                totals.listed,
                totals.written,
                totals.deleted
            )
        } else {
            format!("Refreshed {} of {} Apps; failed: {failed:?}", report.apps.len() - failed.len(), report.apps.len())
        };
        let response = RefreshResponse { message, refreshed_date: report.started, failed_apps: failed };
        reply(response)
    }
}
