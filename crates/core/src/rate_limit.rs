//! The rate-limit scanner: for every installation in the Installation table, GitHub's
//! `GET /rate_limit` with an installation token scoped to `metadata: read` (reused from the token
//! cache), published to CloudWatch per resource category.
//!
//! `GET /rate_limit` does not count against GitHub's rate limit; minting a token does (once per
//! installation per token lifetime in a warm process). Every run counts its GitHub calls.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use futures_util::StreamExt;
use serde::Deserialize;

use crate::clock::Clock;
use crate::error::Error;
use crate::github::{Auth, GitHubClient};
use crate::installation_token::InstallationTokens;
use crate::installations::{InstallationRecord, InstallationStore};
use crate::scope::ScopeDown;
use crate::signer::Signer;
use crate::store::AppStore;

/// The CloudWatch namespace of the wire contract.
pub const NAMESPACE: &str = "AppFrameworkGitHubAPICallMetrics";
/// PutMetricData takes at most 1,000 metrics per call.
pub const METRICS_PER_CALL: usize = 1000;
/// Installations scanned at once.
pub const CONCURRENCY: usize = 8;

/// One resource category of `GET /rate_limit` (schema `rate-limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Rate {
    pub limit: i64,
    pub used: i64,
    pub remaining: i64,
    /// Unix seconds when the window resets.
    pub reset: i64,
}

#[derive(Debug, Deserialize)]
struct Overview {
    resources: BTreeMap<String, Rate>,
}

/// The least a token needs to read `/rate_limit`.
pub fn scanner_scope() -> ScopeDown {
    ScopeDown { permissions: BTreeMap::from([("metadata".to_string(), "read".to_string())]), ..ScopeDown::default() }
}

/// The five metrics of the contract for one installation's category.
pub fn metrics(record: &InstallationRecord, category: &str, rate: &Rate, now: i64) -> Vec<MetricDatum> {
    let dimensions = [
        ("Category", category.to_string()),
        ("AppID", record.app_id.to_string()),
        ("InstallationID", record.installation_id.to_string()),
    ]
    .map(|(name, value)| Dimension::builder().name(name).value(value).build());
    let percent = if rate.limit > 0 { rate.remaining as f64 * 100.0 / rate.limit as f64 } else { 0.0 };
    [
        ("GitHubAPICalls", rate.used as f64, StandardUnit::Count),
        ("GitHubAPICallsRemaining", rate.remaining as f64, StandardUnit::Count),
        ("GitHubAPICallsRemainingPercent", percent, StandardUnit::Percent),
        ("GitHubAPIRateLimit", rate.limit as f64, StandardUnit::Count),
        ("GitHubRateLimitTimeToReset", (rate.reset - now).max(0) as f64, StandardUnit::Seconds),
    ]
    .into_iter()
    .map(|(name, value, unit)| {
        MetricDatum::builder()
            .metric_name(name)
            .set_dimensions(Some(dimensions.to_vec()))
            .value(value)
            .unit(unit)
            .timestamp(DateTime::from_secs(now))
            .build()
    })
    .collect()
}

/// Where metrics go.
pub trait MetricSink: Send + Sync {
    fn put(&self, data: Vec<MetricDatum>) -> impl Future<Output = Result<(), Error>> + Send;
}

/// CloudWatch `PutMetricData` in namespace [`NAMESPACE`].
#[derive(Debug, Clone)]
pub struct CloudWatchSink {
    client: aws_sdk_cloudwatch::Client,
}

impl CloudWatchSink {
    pub fn new(client: aws_sdk_cloudwatch::Client) -> Self {
        Self { client }
    }
}

impl MetricSink for CloudWatchSink {
    async fn put(&self, data: Vec<MetricDatum>) -> Result<(), Error> {
        self.client
            .put_metric_data()
            .namespace(NAMESPACE)
            .set_metric_data(Some(data))
            .send()
            .await
            .map_err(|e| Error::internal("CloudWatch PutMetricData", e))?;
        Ok(())
    }
}

/// The outcome of a scan.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    pub installations: usize,
    /// `(app, installation)` that could not be scanned.
    pub failed: Vec<(i64, i64)>,
    pub metrics_sent: usize,
    pub put_calls: usize,
    /// GitHub calls made: tokens minted plus `/rate_limit` reads.
    pub github_calls: usize,
}

/// The scanner, built once per cold start.
pub struct RateLimitScanner<S, A, C, I, M> {
    pub tokens: InstallationTokens<S, A, C, I>,
    pub github: GitHubClient,
    pub store: I,
    pub sink: M,
    pub clock: C,
}

impl<S: Signer, A: AppStore, C: Clock, I: InstallationStore, M: MetricSink> RateLimitScanner<S, A, C, I, M> {
    pub async fn run(&self) -> Result<ScanReport, Error> {
        let installations = self.store.all().await?;
        let scope = scanner_scope();
        let github_calls = AtomicUsize::new(0);
        let results: Vec<(InstallationRecord, Result<Vec<MetricDatum>, Error>)> =
            futures_util::stream::iter(installations.iter())
                .map(|record| {
                    let (scope, calls) = (&scope, &github_calls);
                    async move { (record.clone(), self.scan_one(record, scope, calls).await) }
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        let mut report = ScanReport { installations: installations.len(), ..ScanReport::default() };
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
        for chunk in data.chunks(METRICS_PER_CALL) {
            self.sink.put(chunk.to_vec()).await?;
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

    async fn scan_one(
        &self,
        record: &InstallationRecord,
        scope: &ScopeDown,
        calls: &AtomicUsize,
    ) -> Result<Vec<MetricDatum>, Error> {
        let (token, cached) = self.tokens.issue_for(record, scope).await?;
        if !cached {
            calls.fetch_add(1, Ordering::Relaxed);
        }
        calls.fetch_add(1, Ordering::Relaxed);
        let overview: Overview = self.github.get("/rate_limit", Auth::Installation(&token.token)).await?;
        let now = self.clock.now();
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
        let got: Vec<(&str, f64, &StandardUnit)> =
            m.iter().map(|d| (d.metric_name().unwrap(), d.value().unwrap(), d.unit().unwrap())).collect();
        assert_eq!(
            got,
            [
                ("GitHubAPICalls", 1250.0, &StandardUnit::Count),
                ("GitHubAPICallsRemaining", 3750.0, &StandardUnit::Count),
                ("GitHubAPICallsRemainingPercent", 75.0, &StandardUnit::Percent),
                ("GitHubAPIRateLimit", 5000.0, &StandardUnit::Count),
                ("GitHubRateLimitTimeToReset", 900.0, &StandardUnit::Seconds),
            ]
        );
        let dims: Vec<(&str, &str)> =
            m[0].dimensions().iter().map(|d| (d.name().unwrap(), d.value().unwrap())).collect();
        assert_eq!(dims, [("Category", "core"), ("AppID", "7"), ("InstallationID", "70")]);
        // A past reset is 0 s away; a zero limit is 0 % remaining.
        let odd = metrics(&record, "x", &Rate { limit: 0, used: 0, remaining: 0, reset: 1 }, 1_000_000);
        assert_eq!((odd[2].value(), odd[4].value()), (Some(0.0), Some(0.0)));
    }

    #[test]
    fn the_scanner_asks_for_metadata_read_only() {
        assert_eq!(scanner_scope().github_body(), serde_json::json!({"permissions": {"metadata": "read"}}));
    }
}
