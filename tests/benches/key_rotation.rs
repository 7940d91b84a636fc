//! The access-key rotator: one IAM user's new key into the Actions secrets of 100 repositories,
//! against the GitHub double with 100 ms of latency on every response, and moto for IAM, STS,
//! KMS and DynamoDB, inside the template's 900 s deadline, with GitHub's pacing for
//! content-creating requests (80 a minute; the two secrets of a repository back to back).
//! Prints the wall time, the GitHub calls by route, and how long pacing held writes back.
//!
//! Run: `cargo bench -p appcreds-tests --bench benches -- key-rotation`

use std::sync::Arc;
use std::time::{Duration, Instant};

use appcreds_core::aws::iam::IamAccessKeys;
use appcreds_core::aws::kms::KmsVault;
use appcreds_core::aws::lease_table::DynamoLeases;
use appcreds_core::aws::rotation_table::DynamoRotationStore;
use appcreds_core::deadline;
use appcreds_core::domain::rotation::{Destination, SecretNames, TargetSpec};
use appcreds_core::jobs::key_rotation::{DestinationStatus, Rotator, RotatorPorts, RotatorSettings, TargetOutcome};
use appcreds_core::ports::RotationStore;
use appcreds_testkit::{aws, unique};
use appcreds_tests::Stack;
use appcreds_tests::github::Installation;

const APP: i64 = 1500;
const REPOSITORIES: i64 = 100;
const LATENCY: Duration = Duration::from_millis(100);
/// The rotator function's `Timeout` in template.yaml.
const FUNCTION_TIMEOUT: Duration = Duration::from_secs(900);

/// Rotates one user's key into 100 repositories and prints the figures.
pub fn run() {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let stack = Stack::start().await;
        stack.add_app(APP).await;
        let repos: Vec<(i64, String)> = (1..=REPOSITORIES).map(|i| (150_000 + i, format!("service-{i:03}"))).collect();
        let named: Vec<(i64, &str)> = repos.iter().map(|(id, n)| (*id, n.as_str())).collect();
        let mut org = Installation::org(APP, 1501, "octo-org", &named);
        org.permissions.insert("secrets".into(), "write".into());
        stack.github.install(org);

        let iam = aws_sdk_iam::Client::new(&stack.sdk);
        let user = unique("bench-deployer");
        aws::create_rotated_user(&iam, &user, "/appcreds-rotated/").await.unwrap();
        let (table, leases) = (unique("rotation"), unique("leases"));
        aws::create_rotation_table(&stack.ddb, &table).await.unwrap();
        aws::create_lease_table(&stack.ddb, &leases).await.unwrap();
        let vault = aws::create_vault_key(&stack.kms).await.unwrap();
        let store = DynamoRotationStore::new(stack.ddb.clone(), &table);
        let destinations =
            repos.iter().map(|(_, n)| Destination::Repository { repository: format!("octo-org/{n}") }).collect();
        store
            .put_spec(&TargetSpec {
                user_name: user.clone(),
                app_id: APP,
                destinations,
                secret_names: SecretNames::default(),
                max_age_hours: 720,
                grace_hours: 24,
                region: None,
            })
            .await
            .unwrap();

        let mut services = stack.services();
        services.leases = Arc::new(DynamoLeases::new(stack.ddb.clone(), &leases));
        let ports = RotatorPorts {
            keys: Arc::new(IamAccessKeys::new(&stack.sdk)),
            targets: Arc::new(store.clone()),
            vault: Arc::new(KmsVault::new(stack.kms.clone(), vault)),
        };
        let rotator = Rotator::new(&services, ports, RotatorSettings::default());
        stack.github.set_latency(LATENCY);

        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + FUNCTION_TIMEOUT - deadline::ANSWER_MARGIN;
        let report = deadline::within(deadline, rotator.run_target(&user, false)).await.unwrap();
        let wall = started.elapsed();
        let written = report.destinations.iter().filter(|d| d.status == DestinationStatus::Written).count();
        assert_eq!((report.outcome, written), (TargetOutcome::Rotated, REPOSITORIES as usize), "{report:?}");

        let calls = stack.github.all_calls();
        let by_kind = |suffix: &str, method: &str| {
            calls.iter().filter(|(r, _)| r.starts_with(method) && r.ends_with(suffix)).map(|(_, n)| n).sum::<usize>()
        };
        let total: usize = calls.values().sum();
        println!(
            "| repositories | wall time | GitHub calls | public-key GETs | secret PUTs | other | writes paced for | deadline |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        println!(
            "| {REPOSITORIES} | {:.1} s | {total} | {} | {} | {} | {:.1} s | {} s |",
            wall.as_secs_f64(),
            by_kind("/public-key", "GET"),
            by_kind("", "PUT"),
            total - by_kind("/public-key", "GET") - by_kind("", "PUT"),
            report.paced_ms as f64 / 1000.0,
            FUNCTION_TIMEOUT.as_secs()
        );
        let mut routes: Vec<(String, usize)> =
            calls.into_iter().filter(|(r, _)| !r.starts_with("PUT") && !r.contains("/public-key")).collect();
        routes.sort();
        println!("other calls: {routes:?}");
    });
}
