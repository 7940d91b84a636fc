//! The installation sync over 10,000 installations across 3 Apps, against the GitHub double with
//! added latency per response and moto for DynamoDB: a first run (every row written), a run with
//! no change (reads only), and a run after 1% churn. Prints wall time and call counts.

use std::time::{Duration, Instant};

use appcreds_tests::Stack;
use appcreds_tests::github::Installation;

const APPS: [i64; 3] = [901, 902, 903];
const PER_APP: i64 = 3334;
const LATENCY: Duration = Duration::from_millis(50);

/// Runs the three syncs and prints their figures.
pub fn run() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let stack = Stack::start().await;
        for app in APPS {
            stack.add_app(app).await;
            for i in 0..PER_APP {
                stack.github.install(Installation::org(app, app * 100_000 + i, &format!("o{app}x{i}"), &[]));
            }
        }
        stack.github.set_latency(LATENCY);
        let syncer = stack.syncer();
        println!("sync: {} installations across {} Apps, GitHub latency {:?} per response", PER_APP * 3, APPS.len(), LATENCY);
        let run = |label: &'static str| {
            let (stack, syncer) = (&stack, &syncer);
            async move {
                stack.counter.reset();
                let before = stack.github.calls("GET /app/installations");
                let started = Instant::now();
                let report = syncer.run().await.unwrap();
                let elapsed = started.elapsed();
                assert!(report.failed_apps().is_empty());
                let written: usize = report.apps.iter().map(|a| a.result.as_ref().unwrap().written).sum();
                let deleted: usize = report.apps.iter().map(|a| a.result.as_ref().unwrap().deleted).sum();
                println!(
                    "sync: {label:<22} {:>7.2} s  GitHub pages {:>3}  rows written {:>5} deleted {:>3}  BatchWriteItem {:>3}  Query {:>3}  Scan {:>3}",
                    elapsed.as_secs_f64(),
                    stack.github.calls("GET /app/installations") - before,
                    written,
                    deleted,
                    stack.counter.count("BatchWriteItem"),
                    stack.counter.count("Query"),
                    stack.counter.count("Scan"),
                );
            }
        };
        run("first run (all new)").await;
        run("no change").await;
        for app in APPS {
            for i in 0..33 {
                stack.github.uninstall(app * 100_000 + i);
            }
        }
        run("1% uninstalled").await;
    });
}
