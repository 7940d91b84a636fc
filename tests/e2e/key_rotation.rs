#![allow(clippy::unwrap_used)]
//! The access-key rotator with real parts: IAM, STS, KMS and DynamoDB on moto (through the real
//! SDK clients, and a fault proxy for throttling), and the GitHub double, which opens every
//! sealed secret with the place's own X25519 key. What a destination holds is compared with the
//! key IAM created, byte for byte.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use appcreds_core::Error;
use appcreds_core::Secret;
use appcreds_core::aws::iam::IamAccessKeys;
use appcreds_core::aws::kms::KmsVault;
use appcreds_core::aws::lease_table::DynamoLeases;
use appcreds_core::aws::rotation_table::DynamoRotationStore;
use appcreds_core::domain::rotation::{Destination, KeyRef, SecretNames, TargetSpec, Visibility};
use appcreds_core::jobs::key_rotation::{
    DestinationStatus, Rotator, RotatorPorts, RotatorSettings, TargetOutcome, TargetReport,
};
use appcreds_core::ports::{AccessKeyInfo, AccessKeys, IamUser, NewAccessKey, Pending, RotationStore};
use appcreds_testkit::aws;
use appcreds_testkit::fault_proxy::FaultProxy;
use appcreds_testkit::unique;
use appcreds_tests::Stack;
use appcreds_tests::github::{Fault, FaultKind, Installation};
use async_trait::async_trait;

const APP: i64 = 1400;
const PATH: &str = "/appcreds-rotated/";

/// The real IAM adapter, with every created secret kept for the test to compare against.
struct Recording {
    inner: IamAccessKeys,
    created: Mutex<Vec<(String, Secret)>>,
    user_reads: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl AccessKeys for Recording {
    async fn user(&self, user: &str) -> Result<Option<IamUser>, Error> {
        self.user_reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.user(user).await
    }
    async fn list(&self, user: &str) -> Result<Vec<AccessKeyInfo>, Error> {
        self.inner.list(user).await
    }
    async fn create(&self, user: &str) -> Result<NewAccessKey, Error> {
        let key = self.inner.create(user).await?;
        self.created.lock().unwrap().push((key.key_id.clone(), key.secret.clone()));
        Ok(key)
    }
    async fn set_active(&self, user: &str, key_id: &str, active: bool) -> Result<(), Error> {
        self.inner.set_active(user, key_id, active).await
    }
    async fn delete(&self, user: &str, key_id: &str) -> Result<(), Error> {
        self.inner.delete(user, key_id).await
    }
    async fn identity(&self, key_id: &str, secret: &Secret) -> Result<Option<String>, Error> {
        self.inner.identity(key_id, secret).await
    }
}

struct Fixture {
    stack: Stack,
    iam: aws_sdk_iam::Client,
    user: String,
    old_key: String,
    store: DynamoRotationStore,
    table: String,
    keys: Arc<Recording>,
    vault_key: String,
    lease_table: String,
}

impl Fixture {
    /// App 1400 installed on `octo-org` (repos api 1401, web 1402, tools 1403; environment
    /// `production` of api) and on the user `octocat` (dotfiles 1411), both granting the three
    /// secret permissions; a user under the allowed path with one active key; the tables.
    async fn start() -> Fixture {
        Self::start_with(PATH, None).await
    }

    async fn start_with(path: &str, iam_endpoint: Option<&str>) -> Fixture {
        let stack = Stack::start().await;
        stack.add_app(APP).await;
        let grants = [
            ("secrets", "write"),
            ("environments", "write"),
            ("organization_secrets", "write"),
            ("actions_variables", "write"),
            ("organization_actions_variables", "write"),
        ];
        let mut org = Installation::org(APP, 1410, "octo-org", &[(1401, "api"), (1402, "web"), (1403, "tools")]);
        let mut user = Installation::user(APP, 1420, "octocat", &[(1411, "dotfiles")]);
        for (p, l) in grants {
            org.permissions.insert(p.into(), l.into());
            user.permissions.insert(p.into(), l.into());
        }
        stack.github.install(org);
        stack.github.install(user);
        stack.github.add_environment("octo-org/api", "production");
        let iam_sdk = match iam_endpoint {
            Some(url) => aws::sdk_config(url).await,
            None => stack.sdk.clone(),
        };
        let iam = aws_sdk_iam::Client::new(&stack.sdk);
        let name = unique("deployer");
        let (_, old_key) = aws::create_rotated_user(&iam, &name, path).await.unwrap();
        let table = unique("rotation");
        aws::create_rotation_table(&stack.ddb, &table).await.unwrap();
        let lease_table = unique("leases");
        aws::create_lease_table(&stack.ddb, &lease_table).await.unwrap();
        let vault_key = aws::create_vault_key(&stack.kms).await.unwrap();
        let keys = Arc::new(Recording {
            inner: IamAccessKeys::new(&iam_sdk),
            created: Mutex::new(Vec::new()),
            user_reads: Default::default(),
        });
        let store = DynamoRotationStore::new(stack.ddb.clone(), &table);
        Fixture { stack, iam, user: name, old_key, store, table, keys, vault_key, lease_table }
    }

    fn spec(&self, destinations: Vec<Destination>) -> TargetSpec {
        TargetSpec {
            user_name: self.user.clone(),
            app_id: APP,
            destinations,
            secret_names: SecretNames::default(),
            max_age_hours: 24,
            grace_hours: 1,
            region: None,
        }
    }

    fn rotator_with(&self, settings: RotatorSettings, vault_key: &str) -> Rotator {
        let mut services = self.stack.services();
        services.leases = Arc::new(DynamoLeases::new(self.stack.ddb.clone(), &self.lease_table));
        services.metrics = Arc::new(appcreds_core::aws::cloudwatch::CloudWatchSink::in_namespace(
            aws_sdk_cloudwatch::Client::new(&self.stack.sdk),
            appcreds_core::jobs::key_rotation::NAMESPACE,
        ));
        let ports = RotatorPorts {
            keys: self.keys.clone(),
            targets: Arc::new(self.store.clone()),
            vault: Arc::new(KmsVault::new(self.stack.kms.clone(), vault_key)),
        };
        Rotator::new(&services, ports, settings)
    }

    fn rotator(&self) -> Rotator {
        self.rotator_with(fast(), &self.vault_key)
    }

    /// The user's keys as IAM lists them: ID → active.
    async fn keys(&self) -> BTreeMap<String, bool> {
        let out = self.iam.list_access_keys().user_name(&self.user).send().await.unwrap();
        out.access_key_metadata()
            .iter()
            .map(|k| (k.access_key_id().unwrap().to_string(), k.status().unwrap().as_str() == "Active"))
            .collect()
    }

    /// Changes the stored state as time or a crash would have (the grace period over, say).
    async fn edit_state(&self, edit: impl FnOnce(&mut appcreds_core::ports::RotationState)) {
        let mut record = self.store.get(&self.user).await.unwrap().unwrap();
        edit(&mut record.state);
        self.store.save_state(&self.user, &record.state, Pending::Keep, record.version).await.unwrap();
    }

    /// The last key the rotator created, with its secret.
    fn created(&self) -> (String, Secret) {
        self.keys.created.lock().unwrap().last().cloned().expect("a key was created")
    }

    /// The replaced key's grace period over, as if two hours had passed.
    async fn end_grace_period(&self) {
        self.edit_state(|state| state.previous = state.previous.take().map(|p| KeyRef { at: p.at - 2 * 3600, ..p }))
            .await;
    }

    /// The user's key, put into web by hand (the old key's ID, and a stand-in for its secret, which
    /// IAM never tells again); returns that secret. A second later, so that GitHub's `updated_at`,
    /// in whole seconds, has the pair older than anything a rotation writes.
    async fn old_pair_by_hand_in_web(&self) -> Vec<u8> {
        let by_hand = b"the old key's secret, put there by hand".to_vec();
        self.stack.github.set_repository_secret("octo-org/web", "AWS_ACCESS_KEY_ID", self.old_key.as_bytes());
        self.stack.github.set_repository_secret("octo-org/web", "AWS_SECRET_ACCESS_KEY", &by_hand);
        next_second().await;
        by_hand
    }

    fn secret_pair(&self, repository: &str) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        (
            self.stack.github.repository_secret(repository, "AWS_ACCESS_KEY_ID"),
            self.stack.github.repository_secret(repository, "AWS_SECRET_ACCESS_KEY"),
        )
    }
}

/// No pacing to speak of, and a short wait for new keys: the tests are about correctness.
fn fast() -> RotatorSettings {
    RotatorSettings {
        writes_per_minute: 60_000,
        key_wait: std::time::Duration::from_secs(5),
        ..RotatorSettings::default()
    }
}

/// A key ID and secret as [`Fixture::secret_pair`] reads them from a destination.
fn pair(key_id: &str, secret: &Secret) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (Some(key_id.as_bytes().to_vec()), Some(secret.expose().as_bytes().to_vec()))
}

/// Into the next second: GitHub's `updated_at`, which tells whether a write landed, has whole
/// seconds, and two rotations in one second would look alike.
async fn next_second() {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
}

fn repo(r: &str) -> Destination {
    Destination::Repository { repository: r.into() }
}

fn statuses(report: &TargetReport) -> BTreeMap<String, DestinationStatus> {
    report.destinations.iter().map(|d| (d.destination.clone(), d.status)).collect()
}

#[tokio::test]
async fn a_key_is_rotated_into_every_kind_of_destination_byte_for_byte() {
    let f = Fixture::start().await;
    let spec = f.spec(vec![
        repo("octo-org/api"),
        Destination::Environment { repository: "octo-org/api".into(), environment: "production".into() },
        Destination::Organization {
            org: "octo-org".into(),
            visibility: Visibility::Selected,
            selected_repositories: vec!["web".into(), "tools".into()],
        },
        repo("octocat/dotfiles"),
    ]);
    let spec = TargetSpec { region: Some("eu-west-1".into()), ..spec };
    spec.validate().unwrap();
    f.store.put_spec(&spec).await.unwrap();

    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Rotated, "{report:?}");
    // The region, as an Actions variable, wherever the key went; the organisation's is visible to
    // the same repositories as its secrets.
    for r in ["octo-org/api", "octocat/dotfiles"] {
        assert_eq!(f.stack.github.repository_variable(r, "AWS_REGION").as_deref(), Some("eu-west-1"), "{r}");
    }
    let env_region = f.stack.github.environment_variable("octo-org/api", "production", "AWS_REGION");
    assert_eq!(env_region.as_deref(), Some("eu-west-1"));
    let org_region = f.stack.github.organization_variable("octo-org", "AWS_REGION").unwrap();
    assert_eq!(org_region.value, "eu-west-1");
    assert_eq!(org_region.visibility.as_deref(), Some("selected"));
    assert_eq!(org_region.selected_repository_ids, [1402, 1403]);
    let (new_id, secret) = f.created();
    assert_eq!(report.current_key_id.as_deref(), Some(new_id.as_str()));
    assert_eq!(report.deactivated_key_id.as_deref(), Some(f.old_key.as_str()));
    assert!(report.destinations.iter().all(|d| d.status == DestinationStatus::Written), "{report:?}");

    // Every destination holds exactly the new key.
    for r in ["octo-org/api", "octocat/dotfiles"] {
        assert_eq!(f.secret_pair(r), pair(new_id.as_str(), &secret));
    }
    let env = f.stack.github.environment_secret("octo-org/api", "production", "AWS_SECRET_ACCESS_KEY").unwrap();
    assert_eq!(env, secret.expose().as_bytes());
    // The listings name the secrets (never their values), as GitHub's do.
    let reader = Secret::new(f.stack.github.issue_scoped_token_for_test(
        1410,
        &[("environments", "read"), ("secrets", "read"), ("organization_secrets", "read")],
        None,
    ));
    let gh = f.stack.github_client();
    let auth = appcreds_core::github::Auth::Installation(&reader);
    let env_list: serde_json::Value =
        gh.get("/repos/octo-org/api/environments/production/secrets", auth).await.unwrap();
    let org_list: serde_json::Value = gh.get("/orgs/octo-org/actions/secrets", auth).await.unwrap();
    assert_eq!(env_list["total_count"], 2);
    assert_eq!(org_list["secrets"][0]["name"], "AWS_ACCESS_KEY_ID");
    assert_eq!(org_list["secrets"][0]["visibility"], "selected");
    assert!(!format!("{env_list}{org_list}").contains(secret.expose()));
    let org = f.stack.github.organization_secret("octo-org", "AWS_SECRET_ACCESS_KEY").unwrap();
    assert_eq!(org.value, secret.expose().as_bytes());
    assert_eq!(org.visibility.as_deref(), Some("selected"));
    assert_eq!(org.selected_repository_ids, [1402, 1403]);
    let org_id = f.stack.github.organization_secret("octo-org", "AWS_ACCESS_KEY_ID").unwrap();
    assert_eq!(org_id.value, new_id.as_bytes());

    // The new key works (STS answers the user), the old one is inactive, not deleted (grace).
    let arn = f.keys.identity(&new_id, &secret).await.unwrap().unwrap();
    assert!(arn.ends_with(&format!("user{PATH}{}", f.user)), "{arn}");
    assert_eq!(f.keys().await, BTreeMap::from([(f.old_key.clone(), false), (new_id.clone(), true)]));

    // One token per owner: exactly the destinations' repositories, least permissions, revoked.
    let tokens: Vec<_> = f.stack.github.issued_tokens().into_iter().filter(|t| t.token != reader.expose()).collect();
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    for t in &tokens {
        assert!(t.revoked, "{t:?}");
        let (repos, perms): (Vec<&str>, Vec<(&str, &str)>) = if t.installation_id == 1410 {
            (
                vec!["api", "tools", "web"],
                vec![
                    ("actions_variables", "write"),
                    ("environments", "write"),
                    ("organization_actions_variables", "write"),
                    ("organization_secrets", "write"),
                    ("secrets", "write"),
                ],
            )
        } else {
            (vec!["dotfiles"], vec![("actions_variables", "write"), ("secrets", "write")])
        };
        let mut got = t.repositories.clone().unwrap();
        got.sort();
        assert_eq!(got, repos);
        let want: BTreeMap<String, String> = perms.iter().map(|(p, l)| (p.to_string(), l.to_string())).collect();
        let granted: BTreeMap<String, String> =
            t.permissions.iter().filter(|(p, _)| *p != "metadata").map(|(p, l)| (p.clone(), l.clone())).collect();
        assert_eq!(granted, want);
    }

    // The table holds the state and no secret: not in clear, and no pending ciphertext left.
    let record = f.store.get(&f.user).await.unwrap().unwrap();
    assert_eq!(record.pending, None);
    assert_eq!(record.state.previous.as_ref().map(|k| k.key_id.as_str()), Some(f.old_key.as_str()));
    let item = f.stack.ddb.scan().table_name(&f.table).send().await.unwrap();
    assert!(!format!("{:?}", item.items()).contains(secret.expose()));

    // A second run does nothing: the key is young and every destination holds it.
    // (As `appcreds rotation run` invokes it, which also publishes the metrics.)
    let again = f.rotator().handle(serde_json::json!({"userName": f.user})).await.unwrap();
    assert_eq!(again["outcome"], "up-to-date");
    assert_eq!(f.keys.created.lock().unwrap().len(), 1);

    // A scheduled run skips it after one ListAccessKeys: no GetUser, no GitHub call.
    let (reads, calls) = (f.keys.user_reads.load(std::sync::atomic::Ordering::SeqCst), f.stack.github.all_calls());
    let summary = f.rotator().handle(serde_json::json!({"source": "aws.scheduler"})).await.unwrap();
    assert!(summary["targets"].as_u64().unwrap() >= 1 && summary["failures"] == 0, "{summary}");
    assert_eq!(f.keys.user_reads.load(std::sync::atomic::Ordering::SeqCst), reads);
    assert_eq!(f.stack.github.all_calls(), calls);

    // KeyAgeHours is published for the user.
    let metrics = aws_sdk_cloudwatch::Client::new(&f.stack.sdk)
        .list_metrics()
        .namespace(appcreds_core::jobs::key_rotation::NAMESPACE)
        .metric_name("KeyAgeHours")
        .dimensions(aws_sdk_cloudwatch::types::DimensionFilter::builder().name("UserName").value(&f.user).build())
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.metrics().len(), 1);
}

#[tokio::test]
async fn a_partial_failure_keeps_the_old_key_and_the_rerun_writes_only_what_is_behind() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api"), repo("octo-org/web"), repo("octo-org/tools")])).await.unwrap();
    // web answers 502 every time; tools answers 404 (as for a repository the App lost).
    f.stack.github.inject(Fault::new("/repos/octo-org/web/actions/secrets/public-key", 100, FaultKind::Status(502)));
    f.stack.github.inject(Fault::new("/repos/octo-org/tools/actions/secrets/public-key", 1, FaultKind::Status(404)));

    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Partial);
    let s = statuses(&report);
    assert_eq!(s["repo:octo-org/api"], DestinationStatus::Written);
    assert_eq!(s["repo:octo-org/web"], DestinationStatus::Failed);
    assert_eq!(s["repo:octo-org/tools"], DestinationStatus::Failed);
    let tools = report.destinations.iter().find(|d| d.destination == "repo:octo-org/tools").unwrap();
    assert_eq!(tools.error.as_deref(), Some("GitHub 404: Injected failure"), "GitHub's message is recorded");
    let (new_id, secret) = f.created();
    // Both keys stay active: web and tools still hold (nothing, here, or) the old key.
    assert_eq!(f.keys().await, BTreeMap::from([(f.old_key.clone(), true), (new_id.clone(), true)]));
    let record = f.store.get(&f.user).await.unwrap().unwrap();
    assert!(record.pending.is_some(), "the secret is kept, encrypted, for the next run");
    assert!(!String::from_utf8_lossy(record.pending.as_ref().unwrap()).contains(secret.expose()));
    assert_eq!(
        record.state.destinations["repo:octo-org/web"].error.as_deref(),
        Some("GitHub is unavailable (HTTP 502)")
    );

    // The next run writes only web and tools, with the same key, then retires the old key.
    f.stack.github.clear_faults();
    let puts_api = f.stack.github.calls("PUT /repos/octo-org/api/actions/secrets/AWS_SECRET_ACCESS_KEY");
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::CaughtUp, "{report:?}");
    assert_eq!(f.stack.github.calls("PUT /repos/octo-org/api/actions/secrets/AWS_SECRET_ACCESS_KEY"), puts_api);
    assert_eq!(statuses(&report)["repo:octo-org/api"], DestinationStatus::UpToDate);
    assert_eq!(f.keys.created.lock().unwrap().len(), 1, "no second key");
    for r in ["octo-org/api", "octo-org/web", "octo-org/tools"] {
        assert_eq!(f.secret_pair(r), pair(new_id.as_str(), &secret));
    }
    assert_eq!(report.deactivated_key_id.as_deref(), Some(f.old_key.as_str()));
    assert_eq!(f.keys().await, BTreeMap::from([(f.old_key.clone(), false), (new_id, true)]));
    assert_eq!(f.store.get(&f.user).await.unwrap().unwrap().pending, None);
}

#[tokio::test]
async fn a_refused_owner_does_not_stop_the_others() {
    let f = Fixture::start().await;
    // octocat's installation does not grant `secrets`: GitHub refuses the token's scope.
    let mut user = Installation::user(APP, 1420, "octocat", &[(1411, "dotfiles")]);
    user.permissions.remove("secrets");
    f.stack.github.install(user);
    f.store.put_spec(&f.spec(vec![repo("octocat/dotfiles"), repo("octo-org/api")])).await.unwrap();
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Partial);
    let s = statuses(&report);
    assert_eq!(
        (s["repo:octo-org/api"], s["repo:octocat/dotfiles"]),
        (DestinationStatus::Written, DestinationStatus::Failed)
    );
    let dotfiles = report.destinations.iter().find(|d| d.destination == "repo:octocat/dotfiles").unwrap();
    assert!(
        dotfiles.error.as_deref().unwrap().starts_with(
            "no token for octocat: the installation of App 1400 on octocat does not grant permission secrets: write"
        ),
        "refused before the mint, naming the permission: {dotfiles:?}"
    );
    assert!(f.keys().await[&f.old_key], "the old key stays active");

    // A 403 on the write itself (the token lacks the permission GitHub wants): recorded too.
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api"), repo("octo-org/web")])).await.unwrap();
    f.stack.github.inject(Fault::new(
        "PUT /repos/octo-org/web/actions/secrets/AWS_ACCESS_KEY_ID",
        1,
        FaultKind::Status(403),
    ));
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    let web = report.destinations.iter().find(|d| d.destination == "repo:octo-org/web").unwrap();
    assert_eq!((web.status, web.error.as_deref()), (DestinationStatus::Failed, Some("GitHub 403: Injected failure")));
    assert_eq!(statuses(&report)["repo:octo-org/api"], DestinationStatus::Written);
}

/// **(ext)** A token GitHub mints wider than the rotator asked is revoked and never used, and
/// the audit trail has the same line as for a request's, naming the rotator as the caller.
#[tokio::test]
async fn a_token_wider_than_asked_leaves_the_rotators_audit_line() {
    let logs = appcreds_tests::Logs::capture();
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api")])).await.unwrap();
    f.stack.github.answer_mints_too_wide(true);
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(statuses(&report)["repo:octo-org/api"], DestinationStatus::Failed, "{report:?}");
    assert!(f.keys().await[&f.old_key], "the old key stays active");
    let issued = f.stack.github.issued_tokens();
    assert_eq!((issued.len(), issued[0].revoked), (1, true), "one mint, revoked");
    let wide: Vec<_> = logs
        .lines_for("appcreds::audit")
        .into_iter()
        .filter(|l| l["fields"]["message"] == "installation token wider than asked: revoked")
        .collect();
    assert_eq!(wide.len(), 1, "{wide:?}");
    let line = &wide[0]["fields"];
    assert_eq!(line["caller"], "access-key-rotation");
    assert_eq!((line["app_id"].as_i64(), line["installation_id"].as_i64()), (Some(APP), Some(1410)));
    assert_eq!(line["token_sha256"], Secret::new(issued[0].token.clone()).sha256_hex());
    assert!(!logs.text().contains(&issued[0].token), "no token in the logs");
}

#[tokio::test]
async fn two_live_keys_stop_the_run_and_nothing_is_deleted() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api")])).await.unwrap();
    let second = f.iam.create_access_key().user_name(&f.user).send().await.unwrap();
    let second = second.access_key().unwrap().access_key_id().to_string();
    let err = f.rotator().run_target(&f.user, false).await.unwrap_err();
    let Error::RotationRefused(message) = &err else { panic!("{err:?}") };
    assert!(message.contains("two live access keys") && message.contains(&second), "{message}");
    assert_eq!(f.keys().await, BTreeMap::from([(f.old_key.clone(), true), (second.clone(), true)]));
    assert_eq!(f.stack.github.calls("PUT /repos/octo-org/api/actions/secrets/AWS_ACCESS_KEY_ID"), 0);
    assert!(f.store.get(&f.user).await.unwrap().unwrap().state.last_error.unwrap().contains("two live"));

    // An inactive key nobody uses is not live: it makes room.
    f.iam.update_access_key().user_name(&f.user).access_key_id(&second).status("Inactive".into()).send().await.unwrap();
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(report.deleted_key_ids, [second]);
    assert_eq!(report.outcome, TargetOutcome::Rotated);
}

#[tokio::test]
async fn the_replaced_key_is_deleted_only_after_its_grace_period_and_an_aged_key_is_rotated_again() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api")])).await.unwrap();
    f.rotator().run_target(&f.user, false).await.unwrap();
    let (first, _) = f.created();
    // Within the grace period (1 h): the old key stays, inactive.
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert!(report.deleted_key_ids.is_empty());
    assert_eq!(f.keys().await.len(), 2);

    // Two hours on (the state says so), and the key is 25 hours old: the old key goes, a new one comes.
    let now = unix_now();
    f.edit_state(|state| {
        state.previous = state.previous.take().map(|p| KeyRef { at: p.at - 2 * 3600, ..p });
        state.current = state.current.take().map(|c| KeyRef { at: now - 25 * 3600, ..c });
    })
    .await;
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(report.deleted_key_ids, std::slice::from_ref(&f.old_key));
    assert_eq!(report.outcome, TargetOutcome::Rotated);
    let (second, secret) = f.created();
    assert_eq!(report.deactivated_key_id.as_deref(), Some(first.as_str()));
    assert_eq!(f.keys().await, BTreeMap::from([(first, false), (second.clone(), true)]));
    assert_eq!(f.secret_pair("octo-org/api").1.unwrap(), secret.expose().as_bytes());
}

#[tokio::test]
async fn a_user_outside_the_allowed_path_is_refused() {
    let f = Fixture::start_with("/humans/", None).await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api")])).await.unwrap();
    let err = f.rotator().run_target(&f.user, false).await.unwrap_err();
    let Error::RotationRefused(message) = &err else { panic!("{err:?}") };
    assert!(message.contains("\"/humans/\"") && message.contains("outside \"/appcreds-rotated/\""), "{message}");
    assert_eq!(f.keys().await.len(), 1, "no key was created");
    // And an unknown target.
    let err = f.rotator().run_target("nobody", false).await.unwrap_err();
    assert!(matches!(&err, Error::RotationRefused(m) if m.contains("no rotation target")), "{err:?}");
}

/// An invocation is trusted to come from the schedule or an operator, but what it asks is still
/// checked: a malformed request touches nothing (no lease, no table, no IAM) and is answered with
/// what was wrong, without quoting back a name too long to be one.
#[tokio::test]
async fn a_malformed_run_request_is_refused_before_anything_is_touched() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api")])).await.unwrap();
    let huge = "a".repeat(100_000);
    let cases = [
        (serde_json::json!({"userName": 7}), vec!["/userName"]),
        (serde_json::json!({"userName": null}), vec!["/userName"]),
        (serde_json::json!({"userName": "has space"}), vec!["/userName"]),
        (serde_json::json!({"userName": "../../etc"}), vec!["/userName"]),
        (serde_json::json!({"userName": huge}), vec!["/userName"]),
        (serde_json::json!({"userName": f.user, "force": "yes"}), vec!["/force"]),
        (serde_json::json!({"userName": [f.user.clone()], "force": 1}), vec!["/userName", "/force"]),
    ];
    for (event, paths) in cases {
        let answer = f.rotator().handle(event.clone()).await.unwrap();
        let text = answer.to_string();
        assert!(text.len() < 2_000, "the answer quotes what it was sent: {} bytes", text.len());
        assert_eq!(answer["error"]["type"], "ValidationException", "{event:.200}: {answer}");
        let fields: Vec<&str> =
            answer["error"]["fieldList"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
        assert_eq!(fields, paths, "{answer}");
        assert!(answer.get("userName").is_none(), "{answer}");
    }
    // A well-formed name that is no target is refused as such, before IAM is asked about it.
    let answer = f.rotator().handle(serde_json::json!({"userName": "nobody-here"})).await.unwrap();
    assert_eq!(answer["error"]["type"], "ClientSideError", "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("no rotation target"), "{answer}");
    assert_eq!(f.keys.user_reads.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(f.keys.created.lock().unwrap().is_empty());
    assert_eq!(f.keys().await, BTreeMap::from([(f.old_key.clone(), true)]));
    let record = f.store.get(&f.user).await.unwrap().unwrap();
    assert_eq!(record.state.last_run, None, "the target was not run");
    // The same target, asked properly, rotates.
    let answer = f.rotator().handle(serde_json::json!({"userName": f.user, "force": false})).await.unwrap();
    assert_eq!(answer["outcome"], "rotated", "{answer}");
}

#[tokio::test]
async fn a_concurrent_run_for_the_same_target_is_turned_away() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api"), repo("octo-org/web")])).await.unwrap();
    // Slow GitHub: the first run holds the lease while the second arrives.
    f.stack.github.set_latency(std::time::Duration::from_millis(400));
    let (a, b) = (f.rotator(), f.rotator());
    let (ra, rb) = tokio::join!(a.run_target(&f.user, false), async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        b.run_target(&f.user, false).await
    });
    let outcomes = [ra, rb];
    let busy = outcomes.iter().filter(|r| matches!(r, Err(Error::RotationRunning { .. }))).count();
    let rotated = outcomes.iter().filter(|r| matches!(r, Ok(rep) if rep.outcome == TargetOutcome::Rotated)).count();
    assert_eq!((busy, rotated), (1, 1), "{outcomes:?}");
    assert_eq!(f.keys.created.lock().unwrap().len(), 1);
    assert_eq!(f.keys().await.len(), 2);
}

#[tokio::test]
async fn throttled_iam_fails_the_run_cleanly_and_the_next_one_rotates() {
    let moto = appcreds_testkit::moto::Moto::shared();
    let proxy = FaultProxy::start(moto.endpoint()).await.unwrap();
    let f = Fixture::start_with(PATH, Some(&proxy.url())).await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api")])).await.unwrap();
    // CreateAccessKey is sent once, never retried (a retry after a lost answer would make a
    // second key nobody records): one refusal fails the run.
    proxy.inject("CreateAccessKey", 1, 400, "Throttling");
    let err = f.rotator().run_target(&f.user, false).await.unwrap_err();
    assert!(matches!(err, Error::Throttled { service: "IAM", .. }), "{err:?}");
    assert_eq!(f.keys().await, BTreeMap::from([(f.old_key.clone(), true)]));
    assert_eq!(f.stack.github.repository_secret("octo-org/api", "AWS_ACCESS_KEY_ID"), None);
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Rotated);
}

#[tokio::test]
async fn a_kms_failure_takes_the_new_key_back_and_leaves_the_old_one() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api")])).await.unwrap();
    let missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000";
    let err = f.rotator_with(fast(), missing).run_target(&f.user, false).await.unwrap_err();
    assert!(matches!(err, Error::Internal { context: "KMS Encrypt", .. }), "{err:?}");
    assert_eq!(f.keys().await, BTreeMap::from([(f.old_key.clone(), true)]), "the new key was deleted");
    // The next run, with KMS back, rotates; the old key (which existed before) is not taken for
    // an orphan of the failed run.
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!((report.outcome, report.deleted_key_ids.len()), (TargetOutcome::Rotated, 0), "{report:?}");
    assert_eq!(report.deactivated_key_id.as_deref(), Some(f.old_key.as_str()));
}

#[tokio::test]
async fn a_key_created_by_a_run_that_died_before_recording_it_is_deleted_by_the_next() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api")])).await.unwrap();
    // What a run that died right after CreateAccessKey leaves: the marker, and a key nobody holds.
    let existing = vec![f.old_key.clone()];
    let at = unix_now();
    f.edit_state(|state| state.creating = Some(appcreds_core::domain::rotation::Creating { at, existing })).await;
    let orphan = f.iam.create_access_key().user_name(&f.user).send().await.unwrap();
    let orphan = orphan.access_key().unwrap().access_key_id().to_string();
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(report.deleted_key_ids, [orphan]);
    assert_eq!(report.outcome, TargetOutcome::Rotated);
    let (new_id, _) = f.created();
    assert_eq!(f.keys().await, BTreeMap::from([(f.old_key.clone(), false), (new_id, true)]));
}

#[tokio::test]
async fn a_key_made_by_hand_long_after_an_interrupted_creation_is_not_deleted() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api")])).await.unwrap();
    // The marker of a creation that failed ten minutes ago (CreateAccessKey refused, say), and a
    // key an operator made since and uses: not the rotator's to delete.
    let existing = vec![f.old_key.clone()];
    let at = unix_now() - 600;
    f.edit_state(|state| state.creating = Some(appcreds_core::domain::rotation::Creating { at, existing })).await;
    let by_hand = f.iam.create_access_key().user_name(&f.user).send().await.unwrap();
    let by_hand = by_hand.access_key().unwrap().access_key_id().to_string();
    let refused = f.rotator().run_target(&f.user, false).await.unwrap_err();
    assert!(matches!(refused, Error::RotationRefused(ref why) if why.contains(&by_hand)), "{refused:?}");
    assert_eq!(f.keys().await, BTreeMap::from([(f.old_key.clone(), true), (by_hand, true)]));
}

fn unix_now() -> i64 {
    appcreds_core::domain::clock::Clock::now(&appcreds_core::domain::clock::SystemClock)
}

#[tokio::test]
async fn writes_are_paced_and_a_spent_hourly_budget_leaves_the_rest_for_the_next_run() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api"), repo("octo-org/web"), repo("octo-org/tools")])).await.unwrap();
    // Two destinations' worth of writes this hour, 120 a minute (500 ms apart, pairs 1 s apart).
    let settings = RotatorSettings { writes_per_minute: 120, writes_per_hour: 4, ..fast() };
    let report = f.rotator_with(settings, &f.vault_key).run_target(&f.user, false).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Partial);
    assert_eq!(report.github_writes, 4);
    assert!(report.paced_ms >= 900, "the second pair waited about a second: {report:?}");
    let s = statuses(&report);
    assert_eq!(s.values().filter(|v| **v == DestinationStatus::Written).count(), 2, "{s:?}");
    let held = report.destinations.iter().find(|d| d.status == DestinationStatus::NotAttempted).unwrap();
    assert!(held.error.as_deref().unwrap().contains("writes this hour"), "{held:?}");
    assert!(f.keys().await[&f.old_key], "the old key stays active");

    // GitHub's own retry-after stops the run's writes too.
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api"), repo("octo-org/web"), repo("octo-org/tools")])).await.unwrap();
    let limit = FaultKind::RateLimit { status: 403, retry_after: Some(120) };
    f.stack.github.inject(Fault::new("/repos/octo-org/api/actions/secrets/public-key", 5, limit));
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    let s = statuses(&report);
    assert_eq!(
        (s["repo:octo-org/api"], s["repo:octo-org/tools"], s["repo:octo-org/web"]),
        (DestinationStatus::Failed, DestinationStatus::NotAttempted, DestinationStatus::NotAttempted)
    );
    assert_eq!(f.stack.github.calls("PUT /repos/octo-org/web/actions/secrets/AWS_ACCESS_KEY_ID"), 0);
}

#[tokio::test]
async fn a_throttled_token_stops_the_runs_writes_for_the_owners_after_it() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api"), repo("octocat/dotfiles")])).await.unwrap();
    let limit = FaultKind::RateLimit { status: 403, retry_after: Some(120) };
    f.stack.github.inject(Fault::new("POST /app/installations/1410/access_tokens", 10, limit));
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    let s = statuses(&report);
    assert_eq!(
        (s["repo:octo-org/api"], s["repo:octocat/dotfiles"]),
        (DestinationStatus::Failed, DestinationStatus::NotAttempted),
        "{report:?}"
    );
    assert_eq!(f.stack.github.calls("POST /app/installations/1420/access_tokens"), 0, "no token for octocat");
    assert!(f.keys().await[&f.old_key], "the old key stays active");
}

#[test]
fn no_secret_reaches_a_log() {
    let logs = appcreds_tests::Logs::capture();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (secrets, text) = rt.block_on(async {
        let f = Fixture::start().await;
        f.store.put_spec(&f.spec(vec![repo("octo-org/api"), repo("octo-org/web")])).await.unwrap();
        f.stack.github.inject(Fault::new("/repos/octo-org/web/actions/secrets/public-key", 1, FaultKind::Status(500)));
        let report = f.rotator().run_target(&f.user, false).await.unwrap();
        let report_json = serde_json::to_string(&report).unwrap();
        f.stack.github.clear_faults();
        f.rotator().run_target(&f.user, false).await.unwrap();
        let tokens: Vec<String> = f.stack.github.issued_tokens().into_iter().map(|t| t.token).collect();
        let (_, secret) = f.created();
        use base64::Engine;
        let mut secrets =
            vec![secret.expose().to_string(), base64::engine::general_purpose::STANDARD.encode(secret.expose())];
        secrets.extend(tokens);
        (secrets, format!("{}\n{report_json}\n{:?}", logs.text(), f.store.get(&f.user).await.unwrap()))
    });
    assert!(text.contains("rotation target done"), "the logs were captured");
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "a secret reached the logs, the report or a Debug print");
    }
}

#[tokio::test]
async fn a_failed_second_secret_puts_the_key_id_back_so_the_pair_still_matches() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api"), repo("octo-org/web")])).await.unwrap();
    f.rotator().run_target(&f.user, false).await.unwrap();
    let (first, first_secret) = f.created();
    // A forced rotation whose second write to web fails, every time (a second later).
    next_second().await;
    f.stack.github.inject(Fault::new(
        "PUT /repos/octo-org/web/actions/secrets/AWS_SECRET_ACCESS_KEY",
        100,
        FaultKind::Status(500),
    ));
    f.end_grace_period().await;
    let report = f.rotator().run_target(&f.user, true).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Partial, "{report:?}");
    let (second, second_secret) = f.created();
    assert_ne!(first, second);
    // api holds the new pair; web still holds the first pair, whole: its key ID was put back.
    assert_eq!(f.secret_pair("octo-org/api"), pair(second.as_str(), &second_secret));
    assert_eq!(f.secret_pair("octo-org/web"), pair(first.as_str(), &first_secret));
    assert_eq!(f.keys().await, BTreeMap::from([(first.clone(), true), (second, true)]), "the first key still works");
}

/// A destination the rotator never wrote may hold the user's key, put there by hand or by the
/// tool the rotator replaces: when its first rotation cannot complete the pair, the key ID goes
/// back to the key being replaced (still active), the one the secret beside it goes with.
#[tokio::test]
async fn a_pair_put_there_by_hand_stays_whole_when_its_first_rotation_fails() {
    let f = Fixture::start().await;
    let by_hand = f.old_pair_by_hand_in_web().await;
    let put = "PUT /repos/octo-org/web/actions/secrets/AWS_SECRET_ACCESS_KEY";
    f.stack.github.inject(Fault::new(put, 100, FaultKind::Status(500)));
    f.store.put_spec(&f.spec(vec![repo("octo-org/api"), repo("octo-org/web")])).await.unwrap();
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Partial, "{report:?}");
    let (new, new_secret) = f.created();
    assert_eq!(f.secret_pair("octo-org/api"), pair(&new, &new_secret));
    assert_eq!(f.secret_pair("octo-org/web"), (Some(f.old_key.as_bytes().to_vec()), Some(by_hand)));
    assert_eq!(f.keys().await, BTreeMap::from([(f.old_key.clone(), true), (new.clone(), true)]));
    // The next run writes web with the same key, and only then retires the old one.
    f.stack.github.clear_faults();
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::CaughtUp, "{report:?}");
    assert_eq!(f.secret_pair("octo-org/web"), pair(&new, &new_secret));
    assert_eq!(f.keys().await, BTreeMap::from([(f.old_key.clone(), false), (new, true)]));
}

#[tokio::test]
async fn a_throttled_second_secret_is_waited_out_and_the_pair_completes() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api"), repo("octo-org/web")])).await.unwrap();
    f.rotator().run_target(&f.user, false).await.unwrap();
    f.end_grace_period().await;
    // GitHub's secondary limit on web's second secret, for longer than the client's own retry
    // budget (3 s): the rotator waits it out rather than leave the key ID without its secret.
    let put = "PUT /repos/octo-org/web/actions/secrets/AWS_SECRET_ACCESS_KEY";
    f.stack.github.inject(Fault::new(put, 1, FaultKind::RateLimit { status: 429, retry_after: Some(4) }));
    let report = f.rotator().run_target(&f.user, true).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Rotated, "{report:?}");
    let (id, secret) = f.created();
    for r in ["octo-org/api", "octo-org/web"] {
        assert_eq!(f.secret_pair(r), pair(id.as_str(), &secret), "{r}");
    }
    assert_eq!(f.stack.github.calls(put), 1 + 2, "the first rotation, the throttled PUT, the one after the wait");
    assert!(report.paced_ms >= 4000, "{report:?}");
}

#[tokio::test]
async fn a_second_secret_that_landed_behind_a_gateway_error_counts_as_written() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api"), repo("octo-org/web")])).await.unwrap();
    f.rotator().run_target(&f.user, false).await.unwrap();
    f.end_grace_period().await;
    next_second().await;
    // Every PUT of web's second secret lands, and GitHub's gateway answers 502: its `updated_at`
    // tells that it landed, so the new key ID stays (putting it back would break the pair).
    let put = "PUT /repos/octo-org/web/actions/secrets/AWS_SECRET_ACCESS_KEY";
    f.stack.github.inject(Fault::new(put, 100, FaultKind::LandThenFail(502)));
    let report = f.rotator().run_target(&f.user, true).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Rotated, "{report:?}");
    assert!(report.destinations.iter().all(|d| d.status == DestinationStatus::Written), "{report:?}");
    let (id, secret) = f.created();
    assert_eq!(f.secret_pair("octo-org/web"), pair(id.as_str(), &secret));
    assert_eq!(f.stack.github.calls("PUT /repos/octo-org/web/actions/secrets/AWS_ACCESS_KEY_ID"), 2, "no put-back");
    let first = f.keys.created.lock().unwrap()[0].0.clone();
    assert_eq!(report.deactivated_key_id, Some(first), "every destination holds the new key");
}

#[tokio::test]
async fn a_second_secret_that_landed_before_a_throttle_is_not_undone() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/web")])).await.unwrap();
    f.rotator().run_target(&f.user, false).await.unwrap();
    f.end_grace_period().await;
    next_second().await;
    // The second secret lands behind a 502; the client's retry of it, and every PUT after, is
    // throttled for longer than the client waits: the last answer is a throttle, not the truth.
    let put = "PUT /repos/octo-org/web/actions/secrets/AWS_SECRET_ACCESS_KEY";
    f.stack.github.inject(Fault::new(put, 1, FaultKind::LandThenFail(502)));
    f.stack.github.inject(Fault::new(put, 100, FaultKind::RateLimit { status: 429, retry_after: Some(4) }));
    let report = f.rotator().run_target(&f.user, true).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Rotated, "{report:?}");
    let (id, secret) = f.created();
    assert_eq!(f.secret_pair("octo-org/web"), pair(id.as_str(), &secret));
}

#[tokio::test]
async fn a_second_secret_whose_landing_github_cannot_tell_puts_the_known_key_id_back() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/web")])).await.unwrap();
    f.rotator().run_target(&f.user, false).await.unwrap();
    let (first, first_secret) = f.created();
    f.end_grace_period().await;
    // The second secret fails with 500 and so does reading its metadata: the key ID goes back to
    // the first key, whose secret the destination still holds.
    let put = "PUT /repos/octo-org/web/actions/secrets/AWS_SECRET_ACCESS_KEY";
    f.stack.github.inject(Fault::new(put, 100, FaultKind::Status(500)));
    f.stack.github.inject(Fault::new("GET /repos/octo-org/web/actions/secrets/AWS_", 100, FaultKind::Status(500)));
    let report = f.rotator().run_target(&f.user, true).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Partial, "{report:?}");
    assert_eq!(f.secret_pair("octo-org/web"), pair(first.as_str(), &first_secret));
    assert!(f.stack.github.calls("GET /repos/octo-org/web/actions/secrets/AWS_ACCESS_KEY_ID") >= 1, "it asked");
    let state = f.store.get(&f.user).await.unwrap().unwrap().state;
    assert_eq!(state.destinations["repo:octo-org/web"].key_id.as_deref(), Some(first.as_str()));
}

/// A run after one that stopped while writing, and that does not reach web itself (no token),
/// leaves web unknown: the run after it, trusted again, still puts no key ID back on web.
#[tokio::test]
async fn the_distrust_after_a_stopped_run_lasts_until_the_destination_is_written() {
    let f = Fixture::start().await;
    let (_, second, second_secret) = web_written_by_a_run_that_stopped(&f).await;
    let limit = FaultKind::RateLimit { status: 403, retry_after: Some(120) };
    f.stack.github.inject(Fault::new("POST /app/installations/1410/access_tokens", 10, limit));
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(statuses(&report)["repo:octo-org/web"], DestinationStatus::Failed, "{report:?}");
    let state = f.store.get(&f.user).await.unwrap().unwrap().state;
    assert!(state.destinations["repo:octo-org/web"].unknown && state.writing.is_none(), "{state:?}");
    f.stack.github.clear_faults();
    next_second().await;
    f.stack.github.inject(fail_web());
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(statuses(&report)["repo:octo-org/web"], DestinationStatus::Failed, "{report:?}");
    assert_eq!(f.secret_pair("octo-org/web"), pair(&second, &second_secret), "no key ID put back");
}

/// A destination the state knows nothing of, in a run that did not make the key (one removed from
/// the target and added back while a rotation was partial, say), may hold the new pair already:
/// no key ID is put back on it, and it is recorded as unknown.
#[tokio::test]
async fn a_destination_unknown_to_the_state_gets_no_key_id_put_back_in_a_catch_up_run() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api"), repo("octo-org/web")])).await.unwrap();
    let put = "PUT /repos/octo-org/api/actions/secrets/AWS_SECRET_ACCESS_KEY";
    f.stack.github.inject(Fault::new(put, 100, FaultKind::Status(500)));
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Partial, "{report:?}");
    let (new, new_secret) = f.created();
    assert_eq!(f.secret_pair("octo-org/web"), pair(&new, &new_secret));
    // api, never written before, got the replaced key's ID back, and the state says so.
    let state = f.store.get(&f.user).await.unwrap().unwrap().state;
    assert_eq!(state.destinations["repo:octo-org/api"].key_id.as_deref(), Some(f.old_key.as_str()));
    f.stack.github.clear_faults();
    // web's record is lost, as when it is removed from the target and added back.
    f.edit_state(|state| {
        state.destinations.remove("repo:octo-org/web");
    })
    .await;
    next_second().await;
    f.stack.github.inject(fail_web());
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    let s = statuses(&report);
    assert_eq!(
        (s["repo:octo-org/api"], s["repo:octo-org/web"]),
        (DestinationStatus::Written, DestinationStatus::Failed),
        "{report:?}"
    );
    assert_eq!(f.secret_pair("octo-org/web"), pair(&new, &new_secret), "web's pair is whole");
    let state = f.store.get(&f.user).await.unwrap().unwrap().state;
    assert!(state.destinations["repo:octo-org/web"].unknown, "{state:?}");
}

/// GitHub's secondary limit on a first write's key ID (which may have landed): the ID of the key
/// being replaced goes back after the wait, so a pair put there by hand stays whole, and the run
/// writes nothing more.
#[tokio::test]
async fn a_throttled_first_key_id_over_a_pair_put_there_by_hand_is_put_back_after_the_wait() {
    let f = Fixture::start().await;
    let by_hand = f.old_pair_by_hand_in_web().await;
    let put = "PUT /repos/octo-org/web/actions/secrets/AWS_ACCESS_KEY_ID";
    f.stack.github.inject(Fault::new(put, 2, FaultKind::RateLimit { status: 429, retry_after: Some(4) }));
    f.store.put_spec(&f.spec(vec![repo("octo-org/web"), repo("octo-org/tools")])).await.unwrap();
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    let s = statuses(&report);
    assert_eq!(
        (s["repo:octo-org/web"], s["repo:octo-org/tools"]),
        (DestinationStatus::Failed, DestinationStatus::NotAttempted),
        "{report:?}"
    );
    assert_eq!(f.secret_pair("octo-org/web"), (Some(f.old_key.as_bytes().to_vec()), Some(by_hand)));
    assert!(report.paced_ms >= 4000, "the put-back waited out GitHub's retry-after: {report:?}");
    assert_eq!(
        f.stack.github.calls(put),
        3,
        "the throttled write, the throttled put-back, the put-back after the wait"
    );
    let state = f.store.get(&f.user).await.unwrap().unwrap().state;
    assert_eq!(state.destinations["repo:octo-org/web"].key_id.as_deref(), Some(f.old_key.as_str()));
    assert!(f.keys().await[&f.old_key], "the old key stays active");
}

/// Web left behind on the first key by a partial rotation, then written whole with the second
/// key by a run that stopped before recording it: the state still says web holds the first key,
/// and "writing". Returns the first key's ID and the second key.
async fn web_written_by_a_run_that_stopped(f: &Fixture) -> (String, String, Secret) {
    f.store.put_spec(&f.spec(vec![repo("octo-org/api"), repo("octo-org/web")])).await.unwrap();
    f.rotator().run_target(&f.user, false).await.unwrap();
    let (first, _) = f.created();
    f.end_grace_period().await;
    next_second().await;
    f.stack.github.inject(fail_web());
    let report = f.rotator().run_target(&f.user, true).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Partial, "{report:?}");
    f.stack.github.clear_faults();
    let (second, second_secret) = f.created();
    let writer = Secret::new(f.stack.github.issue_scoped_token_for_test(1410, &[("secrets", "write")], None));
    let gh = f.stack.github_client();
    let place = appcreds_core::github::secrets::Place::Repository("octo-org/web");
    let key = appcreds_core::github::secrets::public_key(&gh, &writer, &place).await.unwrap();
    for (name, value) in
        [("AWS_ACCESS_KEY_ID", Secret::new(second.as_str())), ("AWS_SECRET_ACCESS_KEY", second_secret.clone())]
    {
        appcreds_core::github::secrets::put_secret(&gh, &writer, &place, &key, name, &value).await.unwrap();
    }
    f.edit_state(|state| state.writing = Some(0)).await;
    let state = f.store.get(&f.user).await.unwrap().unwrap().state;
    assert_eq!(state.destinations["repo:octo-org/web"].key_id.as_deref(), Some(first.as_str()));
    (first, second, second_secret)
}

/// Every write of web's second secret fails.
fn fail_web() -> Fault {
    Fault::new("PUT /repos/octo-org/web/actions/secrets/AWS_SECRET_ACCESS_KEY", 100, FaultKind::Status(500))
}

#[tokio::test]
async fn after_a_run_that_stopped_while_writing_no_key_id_is_put_back_on_what_it_may_have_written() {
    let f = Fixture::start().await;
    let (_, second, second_secret) = web_written_by_a_run_that_stopped(&f).await;
    // The next run's second write fails again: the first key's ID is not put back on web, which
    // holds the second pair, whole.
    next_second().await;
    f.stack.github.inject(fail_web());
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    let web = report.destinations.iter().find(|d| d.destination == "repo:octo-org/web").unwrap();
    assert_eq!(web.status, DestinationStatus::Failed);
    assert!(web.error.as_deref().unwrap().contains("not known"), "{web:?}");
    assert_eq!(f.secret_pair("octo-org/web"), pair(second.as_str(), &second_secret));
    let state = f.store.get(&f.user).await.unwrap().unwrap().state;
    assert_eq!((state.destinations["repo:octo-org/web"].key_id.as_ref(), state.writing), (None, None));
    // And the run after it writes web and retires the first key.
    f.stack.github.clear_faults();
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::CaughtUp, "{report:?}");
    assert!(report.deactivated_key_id.is_some(), "{report:?}");
}

#[tokio::test]
async fn a_repository_gone_from_the_installation_does_not_stop_the_owners_other_destinations() {
    let f = Fixture::start().await;
    // `archive` is not (or no longer) in the App's installation: GitHub refuses a token naming it.
    let spec = f.spec(vec![repo("octo-org/api"), repo("octo-org/archive"), repo("octo-org/web")]);
    f.store.put_spec(&spec).await.unwrap();
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Partial, "{report:?}");
    let s = statuses(&report);
    assert_eq!(
        (s["repo:octo-org/api"], s["repo:octo-org/archive"], s["repo:octo-org/web"]),
        (DestinationStatus::Written, DestinationStatus::Failed, DestinationStatus::Written)
    );
    let archive = report.destinations.iter().find(|d| d.destination == "repo:octo-org/archive").unwrap();
    assert!(archive.error.as_deref().unwrap().contains("not accessible to the parent installation"), "{archive:?}");
    // Each token after the refused one named one repository, and all were revoked.
    let tokens = f.stack.github.issued_tokens();
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert!(tokens.iter().all(|t| t.revoked && t.repositories.as_ref().is_some_and(|r| r.len() == 1)), "{tokens:?}");
    assert!(f.keys().await[&f.old_key], "the old key stays active while archive is behind");
}

#[tokio::test]
async fn a_region_without_the_variables_permission_still_rotates_the_key() {
    let f = Fixture::start().await;
    // octo-org's installation does not grant `actions_variables`.
    let mut org = Installation::org(APP, 1410, "octo-org", &[(1401, "api"), (1402, "web")]);
    org.permissions.insert("secrets".into(), "write".into());
    f.stack.github.install(org);
    let mut spec = f.spec(vec![repo("octo-org/api"), repo("octo-org/web")]);
    spec.region = Some("eu-west-1".into());
    f.store.put_spec(&spec).await.unwrap();
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Rotated, "{report:?}");
    for d in &report.destinations {
        assert_eq!(d.status, DestinationStatus::Written);
        assert!(d.error.as_deref().unwrap().contains("did not grant the variables' permission"), "{d:?}");
    }
    assert_eq!(report.failures(), 2, "the variables are reported (and alarmed)");
    let (id, _) = f.created();
    assert_eq!(f.stack.github.repository_secret("octo-org/web", "AWS_ACCESS_KEY_ID").unwrap(), id.as_bytes());
    assert_eq!(f.stack.github.repository_variable("octo-org/web", "AWS_REGION"), None);
    assert_eq!(report.deactivated_key_id.as_deref(), Some(f.old_key.as_str()));
}

#[tokio::test]
async fn an_edited_target_is_written_again_and_a_replaced_keys_grace_period_is_waited_out_not_alarmed() {
    let f = Fixture::start().await;
    let spec = f.spec(vec![repo("octo-org/api")]);
    f.store.put_spec(&spec).await.unwrap();
    f.rotator().run_target(&f.user, false).await.unwrap();
    // New secret names: the destination is behind, the secret is no longer held, so a new key is
    // due; the replaced key is in its grace period, so the run waits, without counting a failure.
    let renamed = TargetSpec {
        secret_names: SecretNames { access_key_id: "DEPLOY_KEY_ID".into(), secret_access_key: "DEPLOY_SECRET".into() },
        ..spec
    };
    f.store.put_spec(&renamed).await.unwrap();
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!((report.outcome, report.failures()), (TargetOutcome::Waiting, 0), "{report:?}");
    assert!(report.error.as_deref().unwrap().contains("grace period"), "{report:?}");
    // The grace period over: rotated, under the new names.
    f.end_grace_period().await;
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Rotated, "{report:?}");
    let (id, secret) = f.created();
    assert_eq!(f.stack.github.repository_secret("octo-org/api", "DEPLOY_KEY_ID").unwrap(), id.as_bytes());
    assert_eq!(f.stack.github.repository_secret("octo-org/api", "DEPLOY_SECRET").unwrap(), secret.expose().as_bytes());
}

#[tokio::test]
async fn an_organisations_region_variable_follows_the_visibility_of_its_secrets() {
    let f = Fixture::start().await;
    let org = |visibility, selected: &[&str]| Destination::Organization {
        org: "octo-org".into(),
        visibility,
        selected_repositories: selected.iter().map(|r| r.to_string()).collect(),
    };
    let mut spec = f.spec(vec![org(Visibility::Selected, &["web"])]);
    spec.region = Some("eu-west-1".into());
    f.store.put_spec(&spec).await.unwrap();
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Rotated, "{report:?}");
    let variable = f.stack.github.organization_variable("octo-org", "AWS_REGION").unwrap();
    assert_eq!((variable.value.as_str(), variable.visibility.as_deref()), ("eu-west-1", Some("selected")));
    assert_eq!(variable.selected_repository_ids, [1402]);

    // The organisation's secrets opened to its private repositories: written again (a new key,
    // once the replaced one's grace period is over), and the variable (updated, not created) too.
    let spec =
        TargetSpec { destinations: vec![org(Visibility::Private, &[])], region: Some("us-east-2".into()), ..spec };
    f.store.put_spec(&spec).await.unwrap();
    f.end_grace_period().await;
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Rotated, "{report:?}");
    assert!(
        report.destinations.iter().all(|d| d.status == DestinationStatus::Written && d.error.is_none()),
        "{report:?}"
    );
    let variable = f.stack.github.organization_variable("octo-org", "AWS_REGION").unwrap();
    assert_eq!((variable.value.as_str(), variable.visibility.as_deref()), ("us-east-2", Some("private")));
    assert!(variable.selected_repository_ids.is_empty());
    let secret = f.stack.github.organization_secret("octo-org", "AWS_SECRET_ACCESS_KEY").unwrap();
    assert_eq!(secret.visibility.as_deref(), Some("private"));
    assert_eq!(secret.value, f.created().1.expose().as_bytes());
    // Each token asked for the organisation's two permissions, no more.
    for t in f.stack.github.issued_tokens() {
        let perms: Vec<&str> = t.permissions.keys().map(String::as_str).filter(|p| *p != "metadata").collect();
        assert_eq!(perms, ["organization_actions_variables", "organization_secrets"], "{t:?}");
    }
}

#[tokio::test]
async fn a_current_key_deactivated_outside_the_rotator_is_replaced_at_the_next_scheduled_run() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api")])).await.unwrap();
    f.rotator().run_target(&f.user, false).await.unwrap();
    let (exposed, _) = f.created();
    // A responder deactivates the current key (exposed); the old key is inactive in its grace.
    f.iam
        .update_access_key()
        .user_name(&f.user)
        .access_key_id(&exposed)
        .status("Inactive".into())
        .send()
        .await
        .unwrap();
    let summary = f.rotator().handle(serde_json::json!({"source": "aws.scheduler"})).await.unwrap();
    assert_eq!(summary["failures"], 0, "{summary}");
    let (replacement, secret) = f.created();
    assert_ne!(replacement, exposed);
    assert_eq!(f.secret_pair("octo-org/api"), pair(replacement.as_str(), &secret));
    let keys = f.keys().await;
    assert_eq!(keys.get(&replacement), Some(&true));
    assert!(!keys.contains_key(&exposed), "the deactivated key made room: {keys:?}");
}

#[tokio::test]
async fn an_environment_only_owner_gets_environments_and_secrets_and_a_failed_region_variable_does_not_block_retirement()
 {
    let f = Fixture::start().await;
    let mut spec = f.spec(vec![
        Destination::Environment { repository: "octo-org/api".into(), environment: "production".into() },
        repo("octocat/dotfiles"),
    ]);
    spec.region = Some("eu-west-1".into());
    f.store.put_spec(&spec).await.unwrap();
    f.stack.github.inject(Fault::new("/repos/octocat/dotfiles/actions/variables", 100, FaultKind::Status(500)));
    let report = f.rotator().run_target(&f.user, false).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Rotated, "{report:?}");
    let dotfiles = report.destinations.iter().find(|d| d.destination == "repo:octocat/dotfiles").unwrap();
    assert_eq!(dotfiles.status, DestinationStatus::Written);
    assert!(dotfiles.error.as_deref().unwrap().starts_with("AWS_REGION variable:"), "{dotfiles:?}");
    assert_eq!(report.failures(), 1, "the variable's failure is counted (and alarmed)");
    assert_eq!(report.deactivated_key_id.as_deref(), Some(f.old_key.as_str()), "the key itself is everywhere");
    let org_token = f.stack.github.issued_tokens().into_iter().find(|t| t.installation_id == 1410).unwrap();
    let perms: Vec<&str> = org_token.permissions.keys().map(String::as_str).filter(|p| *p != "metadata").collect();
    assert_eq!(perms, ["environments", "secrets"]);
    assert_eq!(
        f.stack.github.environment_variable("octo-org/api", "production", "AWS_REGION").as_deref(),
        Some("eu-west-1")
    );
}

#[tokio::test]
async fn a_first_secret_whose_outcome_is_unknown_leaves_the_pair_as_it_was() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/web")])).await.unwrap();
    f.rotator().run_target(&f.user, false).await.unwrap();
    let (first, first_secret) = f.created();
    f.end_grace_period().await;
    // GitHub fails the key ID's PUT with 5xx (did it land?): the ID is put back, the secret untouched.
    f.stack.github.inject(Fault::new(
        "PUT /repos/octo-org/web/actions/secrets/AWS_ACCESS_KEY_ID",
        4,
        FaultKind::Status(502),
    ));
    let report = f.rotator().run_target(&f.user, true).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Partial, "{report:?}");
    assert_eq!(f.secret_pair("octo-org/web"), pair(first.as_str(), &first_secret));
    assert_eq!(
        f.stack.github.calls("PUT /repos/octo-org/web/actions/secrets/AWS_ACCESS_KEY_ID"),
        1 + 4 + 1,
        "the first rotation, 4 failed attempts, the put-back"
    );
    assert!(f.keys().await[&first], "the first key still works");
}

#[tokio::test]
async fn a_retiring_key_deactivated_by_a_run_that_could_not_record_it_counts_as_replaced() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api")])).await.unwrap();
    f.rotator().run_target(&f.user, false).await.unwrap();
    // As if the last save had failed after the old key was deactivated: still "retiring".
    f.edit_state(|state| state.retiring = state.previous.take()).await;
    // A forced run: the inactive old key is taken as replaced (in its grace period), so the run
    // waits instead of refusing for a key that "still serves destinations".
    let report = f.rotator().run_target(&f.user, true).await.unwrap();
    assert_eq!((report.outcome, report.failures()), (TargetOutcome::Waiting, 0), "{report:?}");
    let state = f.store.get(&f.user).await.unwrap().unwrap().state;
    assert_eq!((state.retiring, state.previous.map(|p| p.key_id)), (None, Some(f.old_key.clone())));
}

#[tokio::test]
async fn a_row_written_past_the_cli_is_not_rotated_and_is_counted_as_a_failure() {
    let f = Fixture::start().await;
    f.store.put_spec(&f.spec(vec![repo("octo-org/api")])).await.unwrap();
    // A row the CLI would refuse: a repository path that would leave the API's URL space.
    let mut bad = f.spec(vec![repo("octo-org/../../orgs/x")]);
    bad.user_name = "someone-else".into();
    let item = aws_sdk_dynamodb::types::AttributeValue::S(serde_json::to_string(&bad).unwrap());
    f.stack
        .ddb
        .put_item()
        .table_name(&f.table)
        .item("UserName", aws_sdk_dynamodb::types::AttributeValue::S("someone-else".into()))
        .item("Spec", item)
        .send()
        .await
        .unwrap();
    let summary = f.rotator().handle(serde_json::json!({"source": "aws.scheduler"})).await.unwrap();
    assert_eq!((summary["targets"].as_u64(), summary["failures"].as_u64()), (Some(1), Some(1)), "{summary}");
    assert_eq!(f.keys.created.lock().unwrap().len(), 1, "the valid target was rotated");
    assert_eq!(f.stack.github.all_calls().keys().filter(|r| r.contains("..")).count(), 0, "the bad row reached no URL");
}
