//! The rate-limit scanner: for every installation in the Installation table, GitHub's
//! `GET /rate_limit` with an installation token scoped to `metadata: read` (an enterprise's
//! installation's is not narrowed; reused from the token cache), published to CloudWatch per
//! resource category.
//!
//! Built for 10,000 installations inside one 5-minute schedule:
//! - **Publishes as it goes.** Each installation's metrics go to a publisher task as soon as they
//!   are read, which sends them in batches of 1,000 (several `PutMetricData` calls in flight). A
//!   run cut short keeps everything it read.
//! - **Stops cleanly before its deadline.** Installations are started only while more than
//!   [`PUBLISH_RESERVE`] is left; GitHub calls in flight are cut off there; the reserve flushes
//!   the last batch and the heartbeat.
//! - **Resumes.** Installations are scanned in a fixed order (App, installation), starting after
//!   the last one a previous run of this process did not reach; so a run that cannot cover
//!   everyone is followed by one that starts with those it missed. A new process (no memory of
//!   earlier runs) starts at a random point, so no installation is left out run after run. This
//!   is chosen over fanning out across invocations: one run covers 10,000 installations in well
//!   under its timeout (see docs/benchmarks.md), and resuming needs no state outside the
//!   process, no extra IAM, and no second invocation that could fail on its own.
//! - **Cannot fail silently.** Every run publishes a heartbeat (installations in the table,
//!   scanned, failed, deferred) that the template alarms on, when it is missing as much as when
//!   failures pass a threshold; and logs one summary line with the first few errors, never a
//!   line per installation.
//! - **Backs off an App GitHub throttles**: its remaining installations wait for the next run
//!   instead of each hitting the limit again.
//!
//! `GET /rate_limit` does not count against GitHub's rate limit; minting a token does (once per
//! installation per token lifetime in a warm process). Every run counts its GitHub calls.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;

use crate::deadline;
use crate::domain::scope::ScopeDown;
use crate::error::Error;
use crate::github::Auth;
use crate::github::types::{Rate, RateLimitOverview};
use crate::ports::{InstallationRecord, METRICS_PER_PUT, Metric, MetricSink, Unit};
use crate::services::Services;
use crate::tokens::installation::InstallationTokens;

pub use appcreds_wire::metrics::NAMESPACE;

/// Installations scanned at once.
pub const CONCURRENCY: usize = 50;
/// `PutMetricData` calls in flight at once.
const PUTS_IN_FLIGHT: usize = 4;
/// Kept back from the deadline for the last batch and the heartbeat: no installation is started
/// later, and GitHub calls in flight are cut off there.
pub const PUBLISH_RESERVE: Duration = Duration::from_secs(10);
/// The least time left for starting an installation: a token mint and a `/rate_limit` read.
pub const PER_INSTALLATION: Duration = Duration::from_secs(3);
/// Errors quoted in a run's summary line.
const QUOTED_ERRORS: usize = 5;
/// The caller the scanner's audit line names for a token too wide.
const SCANNER: &str = "rate-limit-scanner";

/// **(ext)** The heartbeat metrics, published once per run with the one dimension
/// [`heartbeat::DIMENSION`] (the scanner function's name, so that stacks sharing an account
/// keep their heartbeats apart).
pub mod heartbeat {
    /// The dimension naming the scanner.
    pub const DIMENSION: &str = "FunctionName";
    /// Installations in the Installation table.
    pub const INSTALLATIONS: &str = "ScannerInstallations";
    /// Installations whose metrics were published; its sample count is the run heartbeat.
    pub const SCANNED: &str = "ScannerInstallationsScanned";
    /// Installations that could not be scanned.
    pub const FAILED: &str = "ScannerInstallationsFailed";
    /// Installations left for the next run (the deadline came, or GitHub throttled their App).
    pub const DEFERRED: &str = "ScannerInstallationsDeferred";
}

/// The least a token of `record`'s installation needs to read `/rate_limit`: `metadata: read`,
/// which every installation on a user or an organization has. An installation on an enterprise
/// has no repositories and only enterprise permissions, and GitHub refuses (422) a permission an
/// installation was not granted: its token is not narrowed (it never leaves the scanner, which
/// only reads `/rate_limit` with it).
pub(crate) fn scanner_scope(record: &InstallationRecord) -> ScopeDown {
    if record.target_type == "Enterprise" {
        return ScopeDown::default();
    }
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
    /// Installations whose metrics were read.
    pub scanned: usize,
    /// `(app, installation)` that could not be scanned.
    pub failed: Vec<(i64, i64)>,
    /// Installations left for the next run: not started before the deadline, or of an App
    /// GitHub throttled during the run.
    pub deferred: usize,
    /// Metrics published (the heartbeat included).
    pub metrics_sent: usize,
    /// `PutMetricData` calls made.
    pub put_calls: usize,
    /// `PutMetricData` calls that failed (their metrics are lost; the run goes on).
    pub put_failures: usize,
    /// GitHub calls made: tokens minted plus `/rate_limit` reads.
    pub github_calls: usize,
}

/// Where the next run of this process starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// No run yet: anywhere (at random).
    Anywhere,
    /// The last run covered everyone.
    Beginning,
    /// After this `(app, installation)`: the last run stopped before the next one.
    After((i64, i64)),
}

/// What became of one installation.
enum Outcome {
    Scanned(Vec<Metric>),
    Failed(Error),
    /// Not started: `true` if because time ran out (else its App is throttled).
    Deferred {
        out_of_time: bool,
    },
}

/// The scanner, built once per cold start.
pub struct RateLimitScanner {
    tokens: InstallationTokens,
    services: Services,
    concurrency: usize,
    reserve: Duration,
    per_installation: Duration,
    start: Mutex<Start>,
    /// The value of the heartbeat's dimension.
    name: String,
}

impl RateLimitScanner {
    /// The scanner on `services` (Installation table, signer, GitHub, metric sink); its
    /// `metadata: read` tokens stay in its own cache.
    pub fn new(services: &Services) -> Self {
        Self {
            tokens: InstallationTokens::new(services),
            services: services.clone(),
            concurrency: CONCURRENCY,
            reserve: PUBLISH_RESERVE,
            per_installation: PER_INSTALLATION,
            start: Mutex::new(Start::Anywhere),
            name: "appcreds-rate-limit-scanner".to_string(),
        }
    }

    /// The same scanner, named `name` in its heartbeat (the function's name, in Lambda).
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// The same scanner with `concurrency` installations at once, `reserve` kept back from the
    /// deadline, and an installation started only with `per_installation` left (tests and
    /// benchmarks).
    pub fn tuned(mut self, concurrency: usize, reserve: Duration, per_installation: Duration) -> Self {
        self.concurrency = concurrency.max(1);
        self.reserve = reserve;
        self.per_installation = per_installation;
        self
    }

    /// Scans the installations in turn, publishing as it goes, until all are done or the
    /// deadline (if any) is near; then publishes the heartbeat and logs one summary line.
    pub async fn run(&self) -> Result<ScanReport, Error> {
        let mut installations = self.services.installations.all().await?;
        installations.sort_unstable_by_key(|r| (r.app_id, r.installation_id));
        let count = installations.len();
        let first = match *self.start.lock().unwrap_or_else(PoisonError::into_inner) {
            Start::Anywhere => fastrand::usize(0..count.max(1)),
            Start::Beginning => 0,
            Start::After(key) => installations.partition_point(|r| (r.app_id, r.installation_id) <= key),
        };
        installations.rotate_left(first.min(count));

        let (tx, rx) = mpsc::channel::<Vec<Metric>>(self.concurrency * 2);
        // Stopped with the run, whatever ends it: a publisher must not outlive its run.
        let mut publisher = AbortOnDrop(tokio::spawn(publish(self.services.metrics.clone(), rx)));
        // Installations are started, and GitHub calls cut off, by the reserve before the deadline.
        let scan_by = deadline::current().map(|d| d.checked_sub(self.reserve).unwrap_or(d));
        let scanning = self.scan_all(installations, &tx);
        let mut tally = match scan_by {
            Some(at) => deadline::within(at, scanning).await,
            None => scanning.await,
        };

        let mut report = ScanReport {
            installations: count,
            scanned: tally.scanned,
            deferred: tally.deferred,
            github_calls: tally.github_calls,
            ..ScanReport::default()
        };
        report.failed = std::mem::take(&mut tally.failed);
        report.failed.sort_unstable();
        // The heartbeat goes out even when nothing else could.
        send_in_time(&tx, self.heartbeat(&report)).await;
        drop(tx);
        // The publisher flushes within the reserve; past the deadline it is stopped.
        let finished = match deadline::current() {
            Some(at) => tokio::time::timeout_at(at, &mut publisher.0).await.ok(),
            None => Some((&mut publisher.0).await),
        };
        let published = match finished {
            Some(Ok(published)) => published,
            Some(Err(e)) => return Err(Error::internal("the metric publisher", e)),
            None => Published {
                first_error: Some("the last batches were not published before the deadline".into()),
                ..Published::default()
            },
        };
        report.metrics_sent = published.sent;
        report.put_calls = published.calls;
        report.put_failures = published.failures;
        tracing::info!(
            installations = report.installations,
            scanned = report.scanned,
            failed = report.failed.len(),
            deferred = report.deferred,
            metrics_sent = report.metrics_sent,
            put_metric_data_calls = report.put_calls,
            put_metric_data_failures = report.put_failures,
            github_calls = report.github_calls,
            "rate-limit scan"
        );
        if !tally.errors.is_empty() || published.first_error.is_some() {
            tracing::error!(
                failed = report.failed.len(),
                put_metric_data_failures = report.put_failures,
                first_errors = %tally.errors.join("; "),
                first_put_error = published.first_error.as_deref().unwrap_or(""),
                "rate-limit scan failures (the first few)"
            );
        }
        Ok(report)
    }

    /// [`AppJwts::settle`](crate::tokens::app_jwt::AppJwts::settle) on the JWTs the scan's tokens
    /// are minted with.
    pub async fn settle(&self, by: tokio::time::Instant) {
        self.tokens.settle(by).await;
    }

    /// The scheduled run: the report as the function's result, and an error only if there were
    /// installations and none could be scanned.
    pub async fn scheduled(&self) -> Result<serde_json::Value, Error> {
        let report = self.run().await?;
        if report.installations > 0 && report.scanned == 0 && !report.failed.is_empty() {
            return Err(Error::internal("rate-limit scanner", "no installation could be scanned"));
        }
        Ok(serde_json::json!({
            "installations": report.installations,
            "scanned": report.scanned,
            "failed": report.failed.len(),
            "deferred": report.deferred,
            "metricsSent": report.metrics_sent,
            "githubCalls": report.github_calls,
        }))
    }

    /// Scans `installations` in order, `concurrency` at once, sending each one's metrics to `tx`
    /// and moving the resume point past each installation as its outcome arrives (so a run cut
    /// off from outside still leaves the next one a true starting point).
    async fn scan_all(&self, installations: Vec<InstallationRecord>, tx: &mpsc::Sender<Vec<Metric>>) -> Tally {
        let github_calls = AtomicUsize::new(0);
        let throttled: Mutex<HashSet<i64>> = Mutex::new(HashSet::new());
        let (throttled, calls) = (&throttled, &github_calls);
        let is_throttled = |app: i64| throttled.lock().unwrap_or_else(PoisonError::into_inner).contains(&app);
        let mut tally = Tally::default();
        let mut outcomes = futures_util::stream::iter(installations)
            .map(|record| async move {
                // Checked when the installation starts, not when it was queued: a throttled App,
                // or too little time left for a mint and a read, leaves it for the next run.
                if !deadline::allows(Duration::ZERO, self.per_installation) {
                    return (record, Outcome::Deferred { out_of_time: true });
                }
                if is_throttled(record.app_id) {
                    return (record, Outcome::Deferred { out_of_time: false });
                }
                let outcome = match self.scan_one(&record, &scanner_scope(&record), calls).await {
                    Ok(metrics) => Outcome::Scanned(metrics),
                    Err(Error::OutOfTime) => Outcome::Deferred { out_of_time: true },
                    Err(e) => {
                        if let Error::Throttled { service: "GitHub", .. } = e {
                            throttled.lock().unwrap_or_else(PoisonError::into_inner).insert(record.app_id);
                        }
                        Outcome::Failed(e)
                    }
                };
                (record, outcome)
            })
            .buffered(self.concurrency);
        // `buffered` answers in order, so the first installation deferred for time marks where the
        // next run starts.
        while let Some((record, outcome)) = outcomes.next().await {
            let key = (record.app_id, record.installation_id);
            let outcome = match outcome {
                Outcome::Scanned(metrics) => {
                    if send_in_time(tx, metrics).await {
                        Outcome::Scanned(Vec::new())
                    } else {
                        // Read, but the publisher cannot take it before the deadline: left for the next run.
                        Outcome::Deferred { out_of_time: true }
                    }
                }
                other => other,
            };
            match outcome {
                Outcome::Scanned(_) => tally.scanned += 1,
                Outcome::Failed(e) => {
                    if tally.errors.len() < QUOTED_ERRORS {
                        tally.errors.push(format!("App {} installation {}: {e}", key.0, key.1));
                    }
                    tally.failed.push(key);
                }
                Outcome::Deferred { out_of_time } => {
                    tally.deferred += 1;
                    tally.stopped |= out_of_time;
                }
            }
            if !tally.stopped {
                self.set_start(Start::After(key));
            }
        }
        if !tally.stopped {
            self.set_start(Start::Beginning);
        }
        tally.github_calls = github_calls.load(Ordering::Relaxed);
        tally
    }

    fn set_start(&self, start: Start) {
        *self.start.lock().unwrap_or_else(PoisonError::into_inner) = start;
    }

    async fn scan_one(
        &self,
        record: &InstallationRecord,
        scope: &ScopeDown,
        calls: &AtomicUsize,
    ) -> Result<Vec<Metric>, Error> {
        let (token, cached) = self
            .tokens
            .internal_token(record, scope)
            .await
            .inspect_err(|e| crate::tokens::audit_too_wide(SCANNER, record.app_id, e))?;
        if !cached {
            calls.fetch_add(1, Ordering::Relaxed);
        }
        calls.fetch_add(1, Ordering::Relaxed);
        let overview: RateLimitOverview =
            self.services.github()?.get("/rate_limit", Auth::Installation(&token.token)).await?;
        let now = self.services.now();
        Ok(overview.resources.iter().flat_map(|(category, rate)| metrics(record, category, rate, now)).collect())
    }

    /// The run's heartbeat metrics.
    fn heartbeat(&self, report: &ScanReport) -> Vec<Metric> {
        let now = self.services.now();
        [
            (heartbeat::INSTALLATIONS, report.installations),
            (heartbeat::SCANNED, report.scanned),
            (heartbeat::FAILED, report.failed.len()),
            (heartbeat::DEFERRED, report.deferred),
        ]
        .into_iter()
        .map(|(name, value)| Metric {
            name,
            dimensions: vec![(heartbeat::DIMENSION, self.name.clone())],
            value: value as f64,
            unit: Unit::Count,
            timestamp: now,
        })
        .collect()
    }
}

/// What the scanning part of a run counted.
#[derive(Default)]
struct Tally {
    scanned: usize,
    failed: Vec<(i64, i64)>,
    deferred: usize,
    github_calls: usize,
    /// The first few errors, for the summary line.
    errors: Vec<String>,
    /// Whether time ran out before every installation was scanned.
    stopped: bool,
}

/// Hands `metrics` to the publisher, waiting no longer than the current deadline; whether it
/// took them.
async fn send_in_time(tx: &mpsc::Sender<Vec<Metric>>, metrics: Vec<Metric>) -> bool {
    match deadline::current() {
        Some(at) => matches!(tokio::time::timeout_at(at, tx.send(metrics)).await, Ok(Ok(()))),
        None => tx.send(metrics).await.is_ok(),
    }
}

/// A task that is aborted when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the publisher did.
#[derive(Default)]
struct Published {
    sent: usize,
    calls: usize,
    failures: usize,
    first_error: Option<String>,
}

/// Sends what arrives on `rx` to `sink` in batches of [`METRICS_PER_PUT`], a few at a time, and
/// the rest when `rx` closes. A failed batch is counted and the publishing goes on.
async fn publish(sink: std::sync::Arc<dyn MetricSink>, mut rx: mpsc::Receiver<Vec<Metric>>) -> Published {
    let mut published = Published::default();
    let mut batch: Vec<Metric> = Vec::with_capacity(METRICS_PER_PUT);
    let mut in_flight = FuturesUnordered::new();
    let put = |data: Vec<Metric>| {
        let sink = sink.clone();
        async move {
            let n = data.len();
            (n, sink.put(data).await)
        }
    };
    let mut closed = false;
    while !closed || !batch.is_empty() || !in_flight.is_empty() {
        // Room for another call, and a full batch (or the last one): send it.
        if in_flight.len() < PUTS_IN_FLIGHT && (batch.len() >= METRICS_PER_PUT || (closed && !batch.is_empty())) {
            let rest = batch.split_off(batch.len().min(METRICS_PER_PUT));
            in_flight.push(put(std::mem::replace(&mut batch, rest)));
            continue;
        }
        tokio::select! {
            Some((n, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                published.calls += 1;
                match outcome {
                    Ok(()) => published.sent += n,
                    Err(e) => {
                        published.failures += 1;
                        published.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            received = rx.recv(), if !closed && batch.len() < METRICS_PER_PUT => match received {
                Some(metrics) => batch.extend(metrics),
                None => closed = true,
            },
        }
    }
    published
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;

    /// Records the size of each batch; fails the `fail_at`-th call.
    struct Recorder {
        batches: Mutex<Vec<usize>>,
        fail_at: usize,
    }

    #[async_trait]
    impl MetricSink for Recorder {
        async fn put(&self, data: Vec<Metric>) -> Result<(), Error> {
            let mut batches = self.batches.lock().unwrap();
            batches.push(data.len());
            if batches.len() == self.fail_at { Err(Error::internal("PutMetricData", "refused")) } else { Ok(()) }
        }
    }

    #[tokio::test]
    async fn the_publisher_sends_full_batches_as_they_fill_and_goes_on_after_a_failure() {
        let sink = std::sync::Arc::new(Recorder { batches: Mutex::new(Vec::new()), fail_at: 2 });
        let (tx, rx) = mpsc::channel(4);
        let publisher = tokio::spawn(publish(sink.clone(), rx));
        let metric = Metric { name: "m", dimensions: Vec::new(), value: 1.0, unit: Unit::Count, timestamp: 0 };
        // 2,550 metrics in pieces of 15 (one installation's worth of three categories).
        for _ in 0..170 {
            tx.send(vec![metric.clone(); 15]).await.unwrap();
        }
        drop(tx);
        let published = publisher.await.unwrap();
        let mut batches = sink.batches.lock().unwrap().clone();
        batches.sort_unstable();
        assert_eq!(batches, [550, 1000, 1000], "full batches, then the rest");
        assert_eq!((published.calls, published.failures), (3, 1));
        assert_eq!(published.sent, 2550 - 1000, "the failed batch is not counted as sent");
        assert!(published.first_error.unwrap().contains("PutMetricData"));
    }

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
        let record = |target_type: &str| InstallationRecord {
            app_id: 1,
            installation_id: 2,
            node_id: "N".into(),
            target_type: target_type.into(),
            name: "o".into(),
        };
        for kind in ["Organization", "User"] {
            assert_eq!(
                crate::domain::scope::github_body(&scanner_scope(&record(kind))),
                serde_json::json!({"permissions": {"metadata": "read"}})
            );
        }
        // An enterprise's installation has no metadata permission to narrow to.
        assert_eq!(scanner_scope(&record("Enterprise")), ScopeDown::default());
    }
}
