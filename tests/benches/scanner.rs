//! The rate-limit scanner over 10,000 installations across 3 Apps, against the GitHub double with
//! 100 ms of latency on every response and moto for DynamoDB and KMS, inside the template's 120 s
//! deadline: a cold run (every token minted) and a warm one (tokens reused). Prints wall time,
//! GitHub calls, `PutMetricData` calls and the process's peak RSS (the scanner and the in-process
//! GitHub double together).
//!
//! CloudWatch is a sink that counts and answers each `PutMetricData` after 50 ms: moto parses the
//! SDK's awsQuery form in time that grows with the square of its size, so one 1,000-metric call
//! takes seconds there (the bench measures and prints it) where CloudWatch takes tens of
//! milliseconds. The tests check what is published against moto's CloudWatch.
//!
//! Run: `cargo bench -p appcreds-tests --bench benches -- scanner`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use appcreds_core::aws::cloudwatch::CloudWatchSink;
use appcreds_core::deadline;
use appcreds_core::domain::clock::{Clock, SystemClock};
use appcreds_core::jobs::rate_limit::RateLimitScanner;
use appcreds_core::ports::{Metric, MetricSink, Unit};
use appcreds_tests::Stack;
use appcreds_tests::github::Installation;
use async_trait::async_trait;
use std::sync::atomic::{AtomicUsize, Ordering};

const APPS: [i64; 3] = [911, 912, 913];
const PER_APP: i64 = 3334;
const LATENCY: Duration = Duration::from_millis(100);
/// The scanner function's `Timeout` in template.yaml.
const FUNCTION_TIMEOUT: Duration = Duration::from_secs(120);
/// The categories GitHub's `GET /rate_limit` reports for an installation (its OpenAPI example).
const CATEGORIES: [&str; 8] = [
    "core",
    "search",
    "graphql",
    "integration_manifest",
    "source_import",
    "code_scanning_upload",
    "actions_runner_registration",
    "scim",
];

/// CloudWatch's side of `PutMetricData`: counts calls and metrics, answers after [`PUT_LATENCY`].
#[derive(Default)]
struct CountingSink {
    calls: AtomicUsize,
    metrics: AtomicUsize,
}

const PUT_LATENCY: Duration = Duration::from_millis(50);

#[async_trait]
impl MetricSink for CountingSink {
    async fn put(&self, data: Vec<Metric>) -> Result<(), appcreds_core::Error> {
        assert!(data.len() <= 1000, "CloudWatch takes at most 1,000 metrics per call");
        tokio::time::sleep(PUT_LATENCY).await;
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.metrics.fetch_add(data.len(), Ordering::Relaxed);
        Ok(())
    }
}

/// This process's peak resident set size, in MiB.
fn peak_rss_mib() -> f64 {
    appcreds_testkit::peak_rss_mib("/proc/self/status").unwrap_or(0.0)
}

/// Runs the cold and the warm scan and prints their figures. It installs the process's global
/// subscriber, so it runs last.
pub fn run() {
    // Warnings and the runs' summary lines, on stderr.
    tracing_subscriber::fmt().with_max_level(tracing::Level::INFO).with_writer(std::io::stderr).init();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let stack = Stack::start().await;
        let reset = SystemClock.now() + 3600;
        let figures: Vec<(&str, i64, i64, i64)> = CATEGORIES.iter().map(|c| (*c, 5000, 17, reset)).collect();
        for app in APPS {
            stack.add_app(app).await;
            for i in 0..PER_APP {
                let id = app * 100_000 + i;
                stack.github.install(Installation::org(app, id, &format!("o{app}x{i}"), &[]));
                stack.github.set_rate_limit(id, &figures);
            }
        }
        // The Installation table, filled by the sync as in production.
        stack.syncer().run().await.unwrap();
        let installations = (PER_APP * APPS.len() as i64) as usize;
        stack.github.set_latency(LATENCY);
        // How long moto takes for one full PutMetricData through the SDK (with time to finish).
        let patient = aws_sdk_cloudwatch::config::Builder::from(&stack.sdk)
            .timeout_config(aws_sdk_cloudwatch::config::timeout::TimeoutConfig::disabled())
            .build();
        let moto = CloudWatchSink::new(aws_sdk_cloudwatch::Client::from_conf(patient));
        let batch: Vec<Metric> = (0..1000)
            .map(|i| Metric {
                name: "GitHubAPICalls",
                dimensions: vec![("Category", "core".into()), ("AppID", "1".into()), ("InstallationID", i.to_string())],
                value: 1.0,
                unit: Unit::Count,
                timestamp: SystemClock.now(),
            })
            .collect();
        let started = Instant::now();
        moto.put(batch).await.unwrap();
        println!("scanner: moto's CloudWatch takes {:.1} s for one PutMetricData of 1,000 metrics", started.elapsed().as_secs_f64());

        let sink = Arc::new(CountingSink::default());
        let mut services = stack.services();
        services.metrics = sink.clone();
        let scanner = RateLimitScanner::new(&services);
        println!(
            "scanner: {installations} installations across {} Apps, {} categories each, GitHub latency {LATENCY:?} per response, deadline {FUNCTION_TIMEOUT:?}",
            APPS.len(),
            CATEGORIES.len()
        );
        let rss_before = peak_rss_mib();
        for label in ["cold (every token minted)", "warm (tokens reused)"] {
            sink.calls.store(0, Ordering::Relaxed);
            sink.metrics.store(0, Ordering::Relaxed);
            let calls_before: BTreeMap<String, usize> = stack.github.all_calls();
            let started = Instant::now();
            let deadline = tokio::time::Instant::now() + FUNCTION_TIMEOUT - deadline::ANSWER_MARGIN;
            let report = deadline::within(deadline, scanner.run()).await.unwrap();
            let elapsed = started.elapsed();
            let github: usize = stack
                .github
                .all_calls()
                .iter()
                .map(|(route, n)| n - calls_before.get(route).copied().unwrap_or(0))
                .sum();
            assert_eq!(
                (report.scanned, report.deferred, report.failed.len(), report.put_failures),
                (installations, 0, 0, 0),
                "after {elapsed:?}"
            );
            assert!(report.failed.is_empty());
            assert_eq!(report.metrics_sent, installations * CATEGORIES.len() * 5 + 4);
            assert!(elapsed < Duration::from_secs(300), "within one 5-minute period");
            println!(
                "scanner: {label:<26} {:>6.1} s  GitHub calls {:>6}  PutMetricData {:>4} ({} metrics)  peak RSS {:>6.1} MiB",
                elapsed.as_secs_f64(),
                github,
                sink.calls.load(Ordering::Relaxed),
                sink.metrics.load(Ordering::Relaxed),
                peak_rss_mib(),
            );
        }
        println!("scanner: peak RSS before the runs {rss_before:.1} MiB (the double's 10,000 installations, the SDK clients)");
    });
}
