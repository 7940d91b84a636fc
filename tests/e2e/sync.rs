#![allow(clippy::unwrap_used)]
//! The installation sync (refresh-cache and the tracker) against moto and the GitHub double.

use appcreds_core::ports::InstallationRecord;
use appcreds_tests::github::{Fault, FaultKind, Installation};
use appcreds_tests::lambda::UrlRequest;
use appcreds_tests::{Stack, send};
use serde_json::json;

const A: i64 = 601;
const B: i64 = 602;

fn install(stack: &Stack, app: i64, range: std::ops::Range<i64>) {
    for i in range {
        stack.github.install(Installation::org(app, app * 100_000 + i, &format!("org{app}x{i}"), &[(i, "repo")]));
    }
}

fn ids(rows: &[InstallationRecord], app: i64) -> Vec<i64> {
    let mut ids: Vec<i64> = rows.iter().filter(|r| r.app_id == app).map(|r| r.installation_id).collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn three_pages_then_an_unchanged_run_writes_nothing() {
    let stack = Stack::start().await;
    stack.add_app(A).await;
    install(&stack, A, 0..250);
    let syncer = stack.syncer();

    let report = syncer.run().await.unwrap();
    assert_eq!(report.failed_apps(), Vec::<i64>::new());
    let c = report.apps[0].result.as_ref().unwrap();
    assert_eq!((c.listed, c.written, c.deleted), (250, 250, 0));
    assert_eq!(stack.github.calls("GET /app/installations"), 3, "100 + 100 + 50");
    let rows = stack.installation_rows().await;
    assert_eq!(ids(&rows, A), (0..250).map(|i| A * 100_000 + i).collect::<Vec<_>>());
    let r = rows.iter().find(|r| r.installation_id == A * 100_000 + 7).unwrap();
    assert_eq!(
        (r.node_id.as_str(), r.name.as_str(), r.target_type.as_str()),
        (&*format!("O_kgDOorg{A}x7"), &*format!("org{A}x7"), "Organization")
    );
    assert_eq!(stack.counter.count("BatchWriteItem"), 10, "250 puts in batches of 25");

    stack.counter.reset();
    let report = syncer.run().await.unwrap();
    let c = report.apps[0].result.as_ref().unwrap();
    assert_eq!((c.listed, c.written, c.deleted), (250, 0, 0));
    assert_eq!(stack.counter.count("BatchWriteItem"), 0, "nothing changed, nothing written");
    assert_eq!(
        stack.counter.count("PutItem") + stack.counter.count("UpdateItem") + stack.counter.count("DeleteItem"),
        0
    );
}

#[tokio::test]
async fn uninstall_and_reinstall_are_followed() {
    let stack = Stack::start().await;
    stack.add_app(A).await;
    install(&stack, A, 0..5);
    let syncer = stack.syncer();
    syncer.run().await.unwrap();

    stack.github.uninstall(A * 100_000 + 1);
    // Reinstall on org 2's account: same account node, new installation ID.
    stack.github.uninstall(A * 100_000 + 2);
    stack.github.install(Installation::org(A, 777, &format!("org{A}x2"), &[]));
    stack.counter.reset();
    let report = syncer.run().await.unwrap();
    let c = report.apps[0].result.as_ref().unwrap();
    assert_eq!((c.listed, c.written, c.deleted), (4, 1, 1));
    let rows = stack.installation_rows().await;
    assert_eq!(ids(&rows, A), vec![777, A * 100_000, A * 100_000 + 3, A * 100_000 + 4]);
    let reinstalled = rows.iter().find(|r| r.node_id == format!("O_kgDOorg{A}x2")).unwrap();
    assert_eq!(reinstalled.installation_id, 777, "the new ID");
    assert_eq!(stack.counter.count("BatchWriteItem"), 1, "one batch for both changes");
}

#[tokio::test]
async fn a_failure_on_page_two_deletes_nothing() {
    let stack = Stack::start().await;
    stack.add_app(A).await;
    install(&stack, A, 0..150);
    let syncer = stack.syncer();
    syncer.run().await.unwrap();
    stack.github.uninstall(A * 100_000 + 149);
    stack.github.inject(Fault::new("page=2", 10, FaultKind::Status(500)));
    let report = syncer.run().await.unwrap();
    assert_eq!(report.failed_apps(), vec![A]);
    assert_eq!(stack.installation_rows().await.len(), 150, "no row deleted on an incomplete listing");
    stack.github.clear_faults();
    syncer.run().await.unwrap();
    assert_eq!(stack.installation_rows().await.len(), 149);
}

#[tokio::test]
async fn one_failing_app_does_not_stop_the_other() {
    let stack = Stack::start().await;
    stack.add_app(A).await;
    stack.add_app(B).await;
    install(&stack, A, 0..3);
    install(&stack, B, 0..4);
    // App A's row now names App B's key: GitHub refuses A's JWTs (401).
    let b_key = appcreds_testkit::aws::create_app_key(&stack.kms, B).await.unwrap();
    appcreds_testkit::aws::put_app(&stack.ddb, &stack.app_table, A, Some(&b_key.arn)).await.unwrap();
    let report = stack.syncer().run().await.unwrap();
    assert_eq!(report.failed_apps(), vec![A]);
    let err = report.apps[0].result.as_ref().unwrap_err();
    assert!(matches!(err, appcreds_core::Error::GitHubUnauthorized { app_id: A }), "{err:?}");
    let rows = stack.installation_rows().await;
    assert_eq!((ids(&rows, A).len(), ids(&rows, B).len()), (0, 4));
}

#[tokio::test]
async fn rows_of_apps_no_longer_registered_are_removed() {
    let stack = Stack::start().await;
    stack.add_app(A).await;
    stack.add_app(B).await;
    install(&stack, A, 0..3);
    install(&stack, B, 0..2);
    let syncer = stack.syncer();
    syncer.run().await.unwrap();
    assert_eq!(stack.installation_rows().await.len(), 5);
    stack
        .ddb
        .delete_item()
        .table_name(&stack.app_table)
        .key("AppId", aws_sdk_dynamodb::types::AttributeValue::N(B.to_string()))
        .send()
        .await
        .unwrap();
    let report = syncer.run().await.unwrap();
    assert_eq!(report.orphans_removed, 2);
    let rows = stack.installation_rows().await;
    assert!(rows.iter().all(|r| r.app_id == A) && rows.len() == 3, "{rows:?}");
}

#[tokio::test]
async fn refresh_cache_reports_through_its_function_url() {
    let stack = Stack::start().await;
    stack.add_app(A).await;
    stack.add_app(B).await;
    install(&stack, A, 0..3);
    stack.github.inject(Fault::new("GET /app/installations", 100, FaultKind::Status(502)));
    let handler = appcreds_tests::endpoint(appcreds_core::ops::refresh::Refresh::new(&stack.services()));
    let reply = send(|r| handler.handle(r), UrlRequest::post_json("/installations/refresh", &json!({}))).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["failedApps"], json!([A, B]));
    assert!(reply.body["refreshedDate"].as_str().unwrap().ends_with('Z'));
    stack.github.clear_faults();
    let reply = send(|r| handler.handle(r), UrlRequest::post_json("/installations/refresh", &json!({}))).await;
    assert_eq!(reply.body["failedApps"], json!([]));
    assert_eq!(
        reply.body["message"],
        "Refreshed the installations of 2 Apps: 3 installations, 3 rows written, 0 removed"
    );
    // The tracker's scheduled run fails only when every App fails.
    stack.github.inject(Fault::new("GET /app/installations", 100, FaultKind::Status(502)));
    assert!(stack.syncer().scheduled().await.is_err());
}

/// Someone uninstalls the App while the sync reads GitHub's offset-paginated listing: the pages
/// shift and a live installation goes unlisted. Its row is kept, since GitHub still answers for
/// it; the uninstalled one's row goes once GitHub answers 404.
#[tokio::test]
async fn a_live_installation_skipped_by_shifted_pages_is_never_deleted() {
    let stack = Stack::start().await;
    stack.add_app(A).await;
    install(&stack, A, 0..250);
    let syncer = stack.syncer();
    syncer.run().await.unwrap();
    let (first, skipped) = (A * 100_000, A * 100_000 + 100);

    // Installation 0 goes just after page 1 is served: page 2 then starts at what was index 101.
    stack.github.uninstall_after_page(1, first);
    let report = syncer.run().await.unwrap();
    let c = report.apps[0].result.as_ref().unwrap();
    assert_eq!(c.listed, 249, "one live installation was not listed");
    assert_eq!(c.deleted, 0);
    assert!(ids(&stack.installation_rows().await, A).contains(&skipped), "the live one's row is kept");
    assert_eq!(stack.github.calls(&format!("GET /app/installations/{skipped}")), 1, "asked before deleting");

    // The next run lists it again; the uninstalled one is confirmed gone and its row deleted.
    let report = syncer.run().await.unwrap();
    let c = report.apps[0].result.as_ref().unwrap();
    assert_eq!((c.listed, c.deleted), (249, 1));
    let rows = ids(&stack.installation_rows().await, A);
    assert!(!rows.contains(&first) && rows.contains(&skipped) && rows.len() == 249);
    assert_eq!(stack.github.calls(&format!("GET /app/installations/{first}")), 1);
}

/// One sync at a time, whoever starts it, across processes (a DynamoDB lease): while one runs,
/// another caller of refresh-cache is told when to retry (`ThrottlingException`), and the
/// tracker skips its run; afterwards the next one runs; a lease left behind by a run that died
/// is taken over once it expired.
#[tokio::test]
async fn one_sync_at_a_time() {
    use appcreds_core::aws::lease_table::DynamoLeases;
    use appcreds_core::jobs::sync::InstallationSync;
    use std::sync::Arc;
    use std::time::Duration;

    let stack = Stack::start().await;
    stack.add_app(A).await;
    install(&stack, A, 0..30);
    let table = appcreds_testkit::unique("leases");
    appcreds_testkit::aws::create_lease_table(&stack.ddb, &table).await.unwrap();
    let mut services = stack.services();
    services.leases = Arc::new(DynamoLeases::new(stack.ddb.clone(), &table));
    // Two functions' syncs (refresh-cache's, the tracker's): separate processes, one table.
    let (first, second) = (InstallationSync::new(&services), InstallationSync::new(&services));
    stack.github.set_latency(Duration::from_millis(300));

    let later = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = second.run_exclusive().await;
        let skipped = second.scheduled().await.unwrap();
        (refused, skipped)
    };
    let (ran, (refused, skipped)) = tokio::join!(first.run_exclusive(), later);
    assert_eq!(ran.unwrap().failed_apps(), Vec::<i64>::new());
    let err = refused.unwrap_err();
    assert!(
        matches!(err, appcreds_core::Error::SyncRunning { retry_after_seconds } if retry_after_seconds == 30),
        "{err:?}"
    );
    let (name, body) = appcreds_core::http::error_reply(&err);
    assert_eq!((name.as_str(), name.status()), ("ThrottlingException", 429));
    assert!(body.message.starts_with("an installation sync is already running; retry after"), "{}", body.message);
    assert_eq!(skipped, json!({"skipped": "an installation sync is already running"}));
    assert_eq!(stack.github.calls("GET /app/installations"), 1, "only the first listed");

    // Released: the next sync runs.
    stack.github.set_latency(Duration::ZERO);
    second.run_exclusive().await.unwrap();
    // A lease whose holder died (no release) blocks only until it expires.
    let dead = |expires_at: i64| {
        stack
            .ddb
            .put_item()
            .table_name(&table)
            .item("LeaseId", aws_sdk_dynamodb::types::AttributeValue::S("installation-sync".into()))
            .item("Holder", aws_sdk_dynamodb::types::AttributeValue::S("a-run-lambda-stopped".into()))
            .item("ExpiresAt", aws_sdk_dynamodb::types::AttributeValue::N(expires_at.to_string()))
            .send()
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    dead(now + 60).await.unwrap();
    assert!(matches!(first.run_exclusive().await, Err(appcreds_core::Error::SyncRunning { .. })));
    dead(now - 1).await.unwrap();
    first.run_exclusive().await.unwrap();
}

/// An installation on an enterprise (`target_type` `Enterprise`; its account is an enterprise,
/// with a slug and no login) is synced under its slug, and the rate-limit scanner reads its limits
/// like any other's: nothing assumes a user or an organization.
#[tokio::test]
async fn enterprise_installations_are_synced_and_scanned() {
    use appcreds_core::aws::cloudwatch::CloudWatchSink;
    use appcreds_core::jobs::rate_limit::RateLimitScanner;
    const E: i64 = 607;
    let stack = Stack::start().await;
    stack.add_app(E).await;
    stack.github.install(Installation::org(E, 60701, "octo-org", &[(1, "repo")]));
    stack.github.install(Installation::enterprise(E, 60702, "octo-corp"));

    let report = stack.syncer().run().await.unwrap();
    assert_eq!(report.failed_apps(), Vec::<i64>::new());
    let rows = stack.installation_rows().await;
    let corp = rows.iter().find(|r| r.installation_id == 60702).unwrap();
    assert_eq!(
        (corp.target_type.as_str(), corp.name.as_str(), corp.node_id.as_str()),
        ("Enterprise", "octo-corp", "E_kgDOocto-corp")
    );
    let org = rows.iter().find(|r| r.installation_id == 60701).unwrap();
    assert_eq!((org.target_type.as_str(), org.name.as_str()), ("Organization", "octo-org"));

    let cloudwatch = aws_sdk_cloudwatch::Client::new(&stack.sdk);
    let mut services = stack.services();
    services.metrics = std::sync::Arc::new(CloudWatchSink::new(cloudwatch));
    let scan = RateLimitScanner::new(&services).run().await.unwrap();
    assert_eq!((scan.installations, scan.scanned, scan.failed.clone()), (2, 2, Vec::new()), "{scan:?}");
    let read: Vec<i64> = stack.github.rate_limit_tokens().iter().map(|t| t.installation_id).collect();
    assert!(read.contains(&60702), "the enterprise's limits were read: {read:?}");
}

/// **(ext)** Each row holds what its installation grants (`Permissions`, `RepositorySelection`),
/// for the pre-flight check of token requests: written with the row, written again when it
/// changes at GitHub, and added to a row an earlier version wrote without it.
#[tokio::test]
async fn rows_hold_what_each_installation_grants() {
    use appcreds_core::ports::InstallationStore;
    const C: i64 = 603;
    let stack = Stack::start().await;
    stack.add_app(C).await;
    install(&stack, C, 0..2);
    let syncer = stack.syncer();
    let store = stack.installation_store();
    let grants = |node_id: String| {
        let store = &store;
        async move { store.get(C, &node_id).await.unwrap().unwrap().grants }
    };
    let c = syncer.run().await.unwrap().apps[0].result.clone().unwrap();
    assert_eq!((c.listed, c.written), (2, 2));
    let first = grants(format!("O_kgDOorg{C}x0")).await.expect("written with the row");
    assert_eq!(first.permissions["contents"], "write");
    assert_eq!(first.repository_selection, "selected");

    // A permission changed at GitHub: that row is written again, the other is not.
    let mut changed = Installation::org(C, C * 100_000, &format!("org{C}x0"), &[(0, "repo")]);
    changed.permissions.insert("pull_requests".into(), "read".into());
    stack.github.install(changed);
    let c = syncer.run().await.unwrap().apps[0].result.clone().unwrap();
    assert_eq!((c.listed, c.written), (2, 1));
    assert_eq!(grants(format!("O_kgDOorg{C}x0")).await.unwrap().permissions["pull_requests"], "read");

    // A row without it (an earlier version's) gets it on the next run.
    let bare: Vec<InstallationRecord> = stack.installation_rows().await.into_iter().filter(|r| r.app_id == C).collect();
    store.write(bare.into_iter().map(Into::into).collect(), Vec::new(), "2026-11-24T00:00:00Z").await.unwrap();
    assert_eq!(grants(format!("O_kgDOorg{C}x1")).await, None);
    let c = syncer.run().await.unwrap().apps[0].result.clone().unwrap();
    assert_eq!((c.listed, c.written), (2, 2));
    assert!(grants(format!("O_kgDOorg{C}x1")).await.is_some());
}
