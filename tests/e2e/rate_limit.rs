#![allow(clippy::unwrap_used)]
//! The rate-limit scanner against moto (DynamoDB, KMS, CloudWatch through aws-sdk-cloudwatch's
//! awsQuery protocol) and the GitHub double: what GetMetricData returns is what the double said.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use appcreds_core::deadline;

use appcreds_core::aws::cloudwatch::CloudWatchSink;
use appcreds_core::domain::clock::{Clock, SystemClock};
use appcreds_core::jobs::rate_limit::{NAMESPACE, RateLimitScanner};
use appcreds_core::ports::{InstallationRecord, InstallationStore};
use appcreds_tests::github::{Fault, FaultKind, Installation};
use appcreds_tests::{Logs, Stack};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, StandardUnit};

// Metrics in moto's CloudWatch are shared by every test of the process: each test here has its own
// App, and no other module publishes rate-limit metrics for these Apps.
fn record(app: i64, id: i64, login: &str) -> InstallationRecord {
    InstallationRecord {
        app_id: app,
        installation_id: id,
        node_id: format!("O_kgDO{login}"),
        target_type: "Organization".into(),
        name: login.into(),
    }
}

async fn stack(app: i64) -> Stack {
    let stack = Stack::start().await;
    stack.add_app(app).await;
    for (id, login) in [(7001, "alpha"), (7002, "beta"), (7003, "gamma")] {
        stack.github.install(Installation::org(app, id, login, &[(id * 10, "repo")]));
    }
    let rows = vec![record(app, 7001, "alpha"), record(app, 7002, "beta"), record(app, 7003, "gamma")];
    stack
        .installation_store()
        .write(rows.into_iter().map(Into::into).collect(), Vec::new(), "2026-11-24T00:00:00Z")
        .await
        .unwrap();
    stack
}

/// A stack with App `app` whose Installation table lists `ids` (accounts `org<id>`), installed at
/// GitHub too if `at_github`.
async fn stack_with(app: i64, ids: &[i64], at_github: bool) -> Stack {
    let stack = Stack::start().await;
    stack.add_app(app).await;
    if at_github {
        for &id in ids {
            stack.github.install(Installation::org(app, id, &format!("org{id}"), &[(id * 10, "repo")]));
        }
    }
    let rows: Vec<_> = ids.iter().map(|&id| record(app, id, &format!("org{id}"))).collect();
    stack
        .installation_store()
        .write(rows.into_iter().map(Into::into).collect(), Vec::new(), "2026-11-24T00:00:00Z")
        .await
        .unwrap();
    stack
}

fn scanner(stack: &Stack) -> (RateLimitScanner, aws_sdk_cloudwatch::Client) {
    let cloudwatch = aws_sdk_cloudwatch::Client::from_conf(
        aws_sdk_cloudwatch::config::Builder::from(&stack.sdk).interceptor(stack.counter.clone()).build(),
    );
    let mut services = stack.services();
    services.metrics = Arc::new(CloudWatchSink::new(cloudwatch.clone()));
    (RateLimitScanner::new(&services), cloudwatch)
}

/// The latest value of one metric, and its unit as listed.
async fn latest(
    cw: &aws_sdk_cloudwatch::Client,
    app: i64,
    name: &str,
    category: &str,
    installation: i64,
) -> Option<f64> {
    let dims =
        [("Category", category.to_string()), ("AppID", app.to_string()), ("InstallationID", installation.to_string())]
            .map(|(n, v)| Dimension::builder().name(n).value(v).build());
    let metric = Metric::builder().namespace(NAMESPACE).metric_name(name).set_dimensions(Some(dims.to_vec())).build();
    query(cw, metric, 60, "Maximum").await
}

/// The first value GetMetricData gives for `metric` over the last and next 10 minutes.
async fn query(cw: &aws_sdk_cloudwatch::Client, metric: Metric, period: i32, stat: &str) -> Option<f64> {
    let now = SystemClock.now();
    let out = cw
        .get_metric_data()
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("m")
                .metric_stat(MetricStat::builder().metric(metric).period(period).stat(stat).build())
                .build(),
        )
        .start_time(DateTime::from_secs(now - 600))
        .end_time(DateTime::from_secs(now + 600))
        .send()
        .await
        .unwrap();
    out.metric_data_results().first().and_then(|r| r.values().first().copied())
}

#[tokio::test]
async fn getmetricdata_returns_exactly_what_github_reported() {
    const APP: i64 = 701;
    let stack = stack(APP).await;
    let reset = SystemClock.now() + 1800;
    stack.github.set_rate_limit(7001, &[("core", 5000, 1250, reset), ("search", 30, 3, reset)]);
    stack.github.set_rate_limit(7002, &[("core", 15000, 14400, reset), ("graphql", 5000, 10, reset)]);
    let (scanner, cw) = scanner(&stack);
    let report = scanner.run().await.unwrap();
    assert_eq!((report.installations, report.scanned, report.deferred), (3, 3, 0));
    assert!(report.failed.is_empty());
    // 7001: 2 categories, 7002: 2, 7003: the double's 3 defaults; 5 metrics each; and the heartbeat's 4.
    assert_eq!(report.metrics_sent, (2 + 2 + 3) * 5 + 4);
    assert_eq!(report.put_calls, 1, "one batched PutMetricData");
    assert_eq!(stack.counter.count("PutMetricData"), 1);
    assert_eq!(report.github_calls, 3 + 3, "one mint and one /rate_limit per installation");

    let expect = [
        (7001, "core", "GitHubAPICalls", 1250.0),
        (7001, "core", "GitHubAPICallsRemaining", 3750.0),
        (7001, "core", "GitHubAPICallsRemainingPercent", 75.0),
        (7001, "core", "GitHubAPIRateLimit", 5000.0),
        (7001, "search", "GitHubAPICallsRemaining", 27.0),
        (7001, "search", "GitHubAPICallsRemainingPercent", 90.0),
        (7002, "core", "GitHubAPICallsRemainingPercent", 4.0),
        (7002, "core", "GitHubAPIRateLimit", 15000.0),
        (7002, "graphql", "GitHubAPICalls", 10.0),
    ];
    for (installation, category, name, value) in expect {
        assert_eq!(
            latest(&cw, APP, name, category, installation).await,
            Some(value),
            "{installation} {category} {name}"
        );
    }
    let ttr = latest(&cw, APP, "GitHubRateLimitTimeToReset", "core", 7001).await.unwrap();
    assert!((1790.0..=1800.0).contains(&ttr), "{ttr}");
    assert_eq!(latest(&cw, APP, "GitHubAPICalls", "search", 7002).await, None, "7002 reported no search category");

    // Units, as CloudWatch stored them.
    let units = stack_units(&stack, APP).await;
    assert_eq!(units["GitHubAPICallsRemainingPercent"], StandardUnit::Percent);
    assert_eq!(units["GitHubRateLimitTimeToReset"], StandardUnit::Seconds);
    assert_eq!(units["GitHubAPICalls"], StandardUnit::Count);
    assert_eq!(units["GitHubAPICallsRemaining"], StandardUnit::Count);
    assert_eq!(units["GitHubAPIRateLimit"], StandardUnit::Count);

    // A second run reuses the cached tokens: only the free /rate_limit reads.
    let again = scanner.run().await.unwrap();
    assert_eq!(again.github_calls, 3);
}

/// The unit of each core metric of installation 7001 as CloudWatch stored it (GetMetricStatistics).
async fn stack_units(stack: &Stack, app: i64) -> BTreeMap<String, StandardUnit> {
    let cw = aws_sdk_cloudwatch::Client::new(&stack.sdk);
    let now = SystemClock.now();
    let mut out = BTreeMap::new();
    for name in [
        "GitHubAPICalls",
        "GitHubAPICallsRemaining",
        "GitHubAPICallsRemainingPercent",
        "GitHubAPIRateLimit",
        "GitHubRateLimitTimeToReset",
    ] {
        let stats = cw
            .get_metric_statistics()
            .namespace(NAMESPACE)
            .metric_name(name)
            .dimensions(Dimension::builder().name("Category").value("core").build())
            .dimensions(Dimension::builder().name("AppID").value(app.to_string()).build())
            .dimensions(Dimension::builder().name("InstallationID").value("7001").build())
            .start_time(DateTime::from_secs(now - 600))
            .end_time(DateTime::from_secs(now + 600))
            .period(60)
            .statistics(aws_sdk_cloudwatch::types::Statistic::Maximum)
            .send()
            .await
            .unwrap();
        let unit = stats.datapoints().first().and_then(|d| d.unit().cloned()).expect("a datapoint with a unit");
        out.insert(name.to_string(), unit);
    }
    out
}

#[tokio::test]
async fn a_failing_installation_does_not_stop_the_others() {
    const APP: i64 = 702;
    let logs = Logs::capture();
    let stack = stack(APP).await;
    // 7002 was uninstalled on GitHub but is still in the table: minting its token fails (404).
    stack.github.uninstall(7002);
    let (scanner, cw) = scanner(&stack);
    let report = scanner.run().await.unwrap();
    assert_eq!(report.failed, vec![(APP, 7002)]);
    assert_eq!(report.metrics_sent, 2 * 3 * 5 + 4);
    assert_eq!(latest(&cw, APP, "GitHubAPIRateLimit", "core", 7001).await, Some(5000.0));
    assert_eq!(latest(&cw, APP, "GitHubAPIRateLimit", "core", 7003).await, Some(5000.0));
    assert_eq!(latest(&cw, APP, "GitHubAPIRateLimit", "core", 7002).await, None);
    let text = logs.text();
    let failures: Vec<&str> = text.lines().filter(|l| l.contains("rate-limit scan failures")).collect();
    assert_eq!(failures.len(), 1, "one line for the run's failures: {text}");
    assert!(failures[0].contains("installation 7002"), "it quotes the failure: {}", failures[0]);
    assert!(text.contains("\"failed\":1"), "the summary counts it: {text}");
}

/// **(ext)** A `metadata: read` token GitHub mints wider than asked is revoked, never used, and
/// leaves the same audit line as a request's, naming the scanner as the caller.
#[tokio::test]
async fn a_token_wider_than_asked_leaves_the_scanners_audit_line() {
    const APP: i64 = 707;
    let logs = Logs::capture();
    let stack = stack_with(APP, &[7071], true).await;
    stack.github.answer_mints_too_wide(true);
    let (scanner, _) = scanner(&stack);
    let report = scanner.run().await.unwrap();
    assert_eq!(report.failed, vec![(APP, 7071)]);
    assert!(stack.github.rate_limit_tokens().is_empty(), "the token was never used");
    let issued = stack.github.issued_tokens();
    assert_eq!((issued.len(), issued[0].revoked), (1, true), "one mint, revoked");
    let audit = logs.lines_for("appcreds::audit");
    assert_eq!(audit.len(), 1, "{audit:?}");
    let line = &audit[0]["fields"];
    assert_eq!(line["message"], "installation token wider than asked: revoked");
    assert_eq!(line["caller"], "rate-limit-scanner");
    assert_eq!((line["app_id"].as_i64(), line["installation_id"].as_i64()), (Some(APP), Some(7071)));
    assert_eq!(line["token_sha256"], appcreds_core::Secret::new(issued[0].token.clone()).sha256_hex());
}

/// The heartbeat's figures of scanner `scanner`, as CloudWatch stored them (sum over 10 minutes).
async fn heartbeat(cw: &aws_sdk_cloudwatch::Client, scanner: &str, name: &str) -> Option<f64> {
    let dimension = Dimension::builder().name("FunctionName").value(scanner).build();
    let metric = Metric::builder().namespace(NAMESPACE).metric_name(name).dimensions(dimension).build();
    query(cw, metric, 600, "Sum").await
}

/// Many failures make one summary line quoting the first few, and a heartbeat that counts them;
/// a run where nothing could be scanned still publishes its heartbeat, and fails.
#[tokio::test(flavor = "current_thread")]
async fn failures_are_summed_up_once_and_the_heartbeat_always_goes_out() {
    const APP: i64 = 704;
    const SCANNER: &str = "scanner-704";
    let logs = Logs::capture();
    // None of them is installed at GitHub any more: every mint is a 404.
    let stack = stack_with(APP, &(7400..7440).collect::<Vec<_>>(), false).await;
    let (scanner, cw) = scanner(&stack);
    let scanner = scanner.named(SCANNER);
    let err = scanner.scheduled().await.unwrap_err();
    assert!(err.to_string().contains("no installation could be scanned"), "{err}");
    let text = logs.text();
    assert_eq!(text.lines().filter(|l| l.contains("rate-limit scan failures")).count(), 1, "one line, not 40");
    let line = text.lines().find(|l| l.contains("rate-limit scan failures")).unwrap();
    assert_eq!(line.matches("App 704 installation").count(), 5, "the first five: {line}");
    assert_eq!(heartbeat(&cw, SCANNER, "ScannerInstallationsFailed").await, Some(40.0));
    assert_eq!(
        heartbeat(&cw, SCANNER, "ScannerInstallationsScanned").await,
        Some(0.0),
        "a heartbeat of zero, not silence"
    );
    assert_eq!(heartbeat(&cw, SCANNER, "ScannerInstallations").await, Some(40.0));
}

/// Against a slow GitHub and a deadline that cannot fit everyone: the run stops before the
/// deadline with what it read already published, and the next run starts with those it missed.
#[tokio::test]
async fn a_run_cut_short_publishes_what_it_read_and_the_next_resumes() {
    const APP: i64 = 705;
    const SCANNER: &str = "scanner-705";
    let ids: Vec<i64> = (7500..7530).collect();
    let stack = stack_with(APP, &ids, true).await;
    stack.github.set_latency(Duration::from_millis(100));
    let (scanner, cw) = scanner(&stack);
    let scanner = scanner.tuned(2, Duration::from_millis(300), Duration::from_millis(250)).named(SCANNER);
    // 30 installations, 2 at a time, ~200 ms each (mint + read): ~3 s of work in a 1.5 s budget.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    let first = deadline::within(deadline, scanner.run()).await.unwrap();
    assert!(tokio::time::Instant::now() < deadline, "finished before the deadline");
    assert!(first.scanned >= 4 && first.scanned < 30, "{first:?}");
    assert_eq!(first.scanned + first.deferred + first.failed.len(), 30, "{first:?}");
    assert!(first.failed.is_empty(), "cut off before starting, not failed: {first:?}");
    assert_eq!(first.metrics_sent, first.scanned * 3 * 5 + 4, "everything read was published");
    let scanned_first: Vec<i64> = stack.github.rate_limit_tokens().iter().map(|t| t.installation_id).collect();
    assert_eq!(heartbeat(&cw, SCANNER, "ScannerInstallationsDeferred").await, Some(first.deferred as f64));

    // The next run (no deadline) starts with the installations the first did not reach.
    stack.github.set_latency(Duration::ZERO);
    let second = scanner.run().await.unwrap();
    assert_eq!((second.scanned, second.deferred), (30, 0));
    let order: Vec<i64> =
        stack.github.rate_limit_tokens().iter().skip(scanned_first.len()).map(|t| t.installation_id).collect();
    let missed: Vec<i64> = ids.iter().copied().filter(|id| !scanned_first.contains(id)).collect();
    let mut first_of_second = order[..missed.len()].to_vec();
    first_of_second.sort_unstable();
    assert_eq!(first_of_second, missed, "the missed ones first");
}

/// When GitHub throttles an App's mints, its other installations wait for the next run instead
/// of each asking again.
#[tokio::test]
async fn a_throttled_app_is_left_alone_for_the_rest_of_the_run() {
    const APP: i64 = 706;
    let ids: Vec<i64> = (7600..7620).collect();
    let stack = stack_with(APP, &ids, true).await;
    stack.github.inject(Fault::new(
        "access_tokens",
        1000,
        FaultKind::RateLimit { status: 403, retry_after: Some(600) },
    ));
    let (scanner, _) = scanner(&stack);
    let report = scanner.tuned(4, Duration::ZERO, Duration::ZERO).run().await.unwrap();
    let mints: usize =
        ids.iter().map(|id| stack.github.calls(&format!("POST /app/installations/{id}/access_tokens"))).sum();
    // At most the ones already under way when the first refusal came back; the rest wait.
    assert!((1..=4).contains(&mints), "{mints} mints");
    assert_eq!((report.failed.len(), report.deferred, report.scanned), (mints, 20 - mints, 0), "{report:?}");
}

#[tokio::test]
async fn the_scanner_only_ever_uses_metadata_read_tokens() {
    let stack = stack(703).await;
    let (scanner, _) = scanner(&stack);
    scanner.run().await.unwrap();
    scanner.run().await.unwrap();
    let used = stack.github.rate_limit_tokens();
    assert_eq!(used.len(), 6);
    for token in &used {
        assert_eq!(token.permissions, BTreeMap::from([("metadata".to_string(), "read".to_string())]), "{token:?}");
    }
    assert!(stack.github.issued_tokens().iter().all(|t| t.permissions.len() == 1), "never an unscoped token");
}
