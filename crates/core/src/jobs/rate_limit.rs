//! The rate-limit scanner: for every installation in the Installation table, GitHub's
//! `GET /rate_limit` with an installation token scoped to `metadata: read` (reused from the token
//! cache), published to CloudWatch per resource category.
//!
//! `GET /rate_limit` does not count against GitHub's rate limit; minting a token does (once per
//! installation per token lifetime in a warm process). Every run counts its GitHub calls.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;

use crate::domain::scope::ScopeDown;
use crate::error::Error;
use crate::github::Auth;
use crate::github::types::{Rate, RateLimitOverview};
use crate::ports::{InstallationRecord, METRICS_PER_PUT, Metric, Services, Unit};
use crate::tokens::installation::InstallationTokens;

pub use appcreds_wire::metrics::NAMESPACE;

/// Installations scanned at once.
pub(crate) const CONCURRENCY: usize = 8;

/// The least a token needs to read `/rate_limit`.
pub(crate) fn scanner_scope() -> ScopeDown {
    ScopeDown { permissions: BTreeMap::from([("metadata".to_string(), "read".to_string())]), ..ScopeDown::default() }
}

/// The five metrics of the contract for one installation's category.
pub(crate) fn metrics(record: &InstallationRecord, category: &str, rate: &Rate, now: i64) -> Vec<Metric> {
    let dimensions = vec![
        ("Category", category.to_string()),
        ("AppID", record.app_id.to_string()),
        ("InstallationID", record.installation_id.to_string()),
    ];
    let percent = if rate.limit > 0 { rate.remaining as f64 * 100.0 / rate.limit as f64 } else { 0.0 };
    [
        ("GitHubAPICalls", rate.used as f64, Unit::Count),
        ("GitHubAPICallsRemaining", rate.remaining as f64, Unit::Count),
        ("GitHubAPICallsRemainingPercent", percent, Unit::Percent),
        ("GitHubAPIRateLimit", rate.limit as f64, Unit::Count),
        ("GitHubRateLimitTimeToReset", (rate.reset - now).max(0) as f64, Unit::Seconds),
    ]
    .into_iter()
    .map(|(name, value, unit)| Metric { name, dimensions: dimensions.clone(), value, unit, timestamp: now })
    .collect()
}

/// The outcome of a scan.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Installations in the table.
    pub installations: usize,
    /// `(app, installation)` that could not be scanned.
    pub failed: Vec<(i64, i64)>,
    /// Metrics published.
    pub metrics_sent: usize,
    /// `PutMetricData` calls made.
    pub put_calls: usize,
    /// GitHub calls made: tokens minted plus `/rate_limit` reads.
    pub github_calls: usize,
}

/// The scanner, built once per cold start.
pub struct RateLimitScanner {
    tokens: InstallationTokens,
    services: Services,
}

impl RateLimitScanner {
    /// The scanner on `services` (Installation table, signer, GitHub, metric sink); its
    /// `metadata: read` tokens stay in its own cache.
    pub fn new(services: &Services) -> Self {
        Self { tokens: InstallationTokens::new(services), services: services.clone() }
    }

    /// Scans every installation and publishes its metrics.
    pub async fn run(&self) -> Result<ScanReport, Error> {
        let installations = self.services.installations.all().await?;
        let count = installations.len();
        let scope = scanner_scope();
        let github_calls = AtomicUsize::new(0);
        let results: Vec<(InstallationRecord, Result<Vec<Metric>, Error>)> = futures_util::stream::iter(installations)
            .map(|record| {
                let (scope, calls) = (&scope, &github_calls);
                async move {
                    let result = self.scan_one(&record, scope, calls).await;
                    (record, result)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut report = ScanReport { installations: count, ..ScanReport::default() };
        let mut data = Vec::new();
        for (record, result) in results {
            match result {
                Ok(metrics) => data.extend(metrics),
                Err(e) => {
                    tracing::error!(app_id = record.app_id, installation_id = record.installation_id, error = %e, "rate-limit scan failed for this installation");
                    report.failed.push((record.app_id, record.installation_id));
                }
            }
        }
        report.failed.sort_unstable();
        for chunk in data.chunks(METRICS_PER_PUT) {
            self.services.metrics.put(chunk.to_vec()).await?;
            report.metrics_sent += chunk.len();
            report.put_calls += 1;
        }
        report.github_calls = github_calls.load(Ordering::Relaxed);
        tracing::info!(
            installations = report.installations,
            failed = report.failed.len(),
            metrics_sent = report.metrics_sent,
            put_metric_data_calls = report.put_calls,
            github_calls = report.github_calls,
            "rate-limit scan"
        );
        Ok(report)
    }

    /// The scheduled run: the report as the function's result, and an error only if no
    /// installation could be scanned.
    pub async fn scheduled(&self) -> Result<serde_json::Value, Error> {
        let report = self.run().await?;
        if report.installations > 0 && report.failed.len() == report.installations {
            return Err(Error::internal("rate-limit scanner", "no installation could be scanned"));
        }
        Ok(serde_json::json!({
            "installations": report.installations,
            "failed": report.failed.len(),
            "metricsSent": report.metrics_sent,
            "githubCalls": report.github_calls,
        }))
    }

    async fn scan_one(
        &self,
        record: &InstallationRecord,
        scope: &ScopeDown,
        calls: &AtomicUsize,
    ) -> Result<Vec<Metric>, Error> {
        let (token, cached) = self.tokens.internal_token(record, scope).await?;
        if !cached {
            calls.fetch_add(1, Ordering::Relaxed);
        }
        calls.fetch_add(1, Ordering::Relaxed);
        let overview: RateLimitOverview =
            self.services.github()?.get("/rate_limit", Auth::Installation(&token.token)).await?;
        let now = self.services.now();
        Ok(overview.resources.iter().flat_map(|(category, rate)| metrics(record, category, rate, now)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_metrics_per_category_with_units_and_dimensions() {
        let record = InstallationRecord {
            app_id: 7,
            installation_id: 70,
            node_id: "N".into(),
            target_type: "Organization".into(),
            name: "o".into(),
        };
        let rate = Rate { limit: 5000, used: 1250, remaining: 3750, reset: 1_000_900 };
        let m = metrics(&record, "core", &rate, 1_000_000);
        let got: Vec<(&str, f64, Unit)> = m.iter().map(|d| (d.name, d.value, d.unit)).collect();
        assert_eq!(
            got,
            [
                ("GitHubAPICalls", 1250.0, Unit::Count),
                ("GitHubAPICallsRemaining", 3750.0, Unit::Count),
                ("GitHubAPICallsRemainingPercent", 75.0, Unit::Percent),
                ("GitHubAPIRateLimit", 5000.0, Unit::Count),
                ("GitHubRateLimitTimeToReset", 900.0, Unit::Seconds),
            ]
        );
        let dims: Vec<(&str, &str)> = m[0].dimensions.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(dims, [("Category", "core"), ("AppID", "7"), ("InstallationID", "70")]);
        assert!(m.iter().all(|d| d.timestamp == 1_000_000));
        // A past reset is 0 s away; a zero limit is 0 % remaining.
        let odd = metrics(&record, "x", &Rate { limit: 0, used: 0, remaining: 0, reset: 1 }, 1_000_000);
        assert_eq!((odd[2].value, odd[4].value), (0.0, 0.0));
    }

    #[test]
    fn the_scanner_asks_for_metadata_read_only() {
        assert_eq!(
            crate::domain::scope::github_body(&scanner_scope()),
            serde_json::json!({"permissions": {"metadata": "read"}})
        );
    }
}
