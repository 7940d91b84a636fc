//! The integration tests' stack: the shared moto server, fresh tables and keys per test, the
//! GitHub double, and the real handlers wired to real SDK clients (with call counters).

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use appcreds_core::Services;
use appcreds_core::aws::access_table::{DynamoAccessStore, RuleWrite};
use appcreds_core::aws::app_table::DynamoAppStore;
use appcreds_core::aws::installation_table::DynamoInstallationStore;
use appcreds_core::aws::kms::{KmsMac, KmsSigner};
use appcreds_core::domain::access::RuleDocument;
use appcreds_core::domain::clock::{Clock, SystemClock};
use appcreds_core::github::{GitHubClient, RetryPolicy, Timeouts};
use appcreds_core::http::{Endpoint, Transport};
use appcreds_core::jobs::sync::InstallationSync;
use appcreds_core::ops::app_token::AppToken;
use appcreds_core::ops::get_installation::GetInstallation;
use appcreds_core::ops::installation_token::InstallationToken;
use appcreds_core::ports::{AccessMode, InstallationRecord, InstallationStore};
use appcreds_core::tokens::app_jwt::AppJwts;
use appcreds_testkit::aws::{self, AppKey, CallCounter};
use appcreds_testkit::github::GitHubDouble;
use appcreds_testkit::lambda::{Reply, UrlRequest};
use appcreds_testkit::moto::Moto;
use aws_config::SdkConfig;
use std::time::Duration;

pub use appcreds_testkit::{github, lambda, unique};

/// One test's slice of the system. Each test gets its own tables and keys on the shared server.
pub struct Stack {
    pub sdk: SdkConfig,
    /// Counts the AWS operations made by handlers (not by fixtures).
    pub counter: CallCounter,
    /// Uncounted clients for fixtures and assertions.
    pub kms: aws_sdk_kms::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    pub app_table: String,
    pub installation_table: String,
    pub access_table: String,
    pub github: GitHubDouble,
}

impl Stack {
    pub async fn start() -> Stack {
        let moto = Moto::shared();
        let sdk = aws::sdk_config(moto.endpoint()).await;
        let kms = aws_sdk_kms::Client::new(&sdk);
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let app_table = unique("apps");
        aws::create_app_table(&ddb, &app_table).await.expect("create the App table");
        let installation_table = unique("installations");
        aws::create_installation_table(&ddb, &installation_table).await.expect("create the Installation table");
        let access_table = unique("access");
        aws::create_access_table(&ddb, &access_table).await.expect("create the access table");
        let github = GitHubDouble::start().await.expect("start the GitHub double");
        Stack { sdk, counter: CallCounter::default(), kms, ddb, app_table, installation_table, access_table, github }
    }

    /// A stack with App `app` and its two installations at the double: the organization
    /// `octo-org` (71: `hello-world` 7101, `docs` 7102) and the user `octocat` (72: `dotfiles` 7201).
    pub async fn with_installations(app: i64) -> Stack {
        let stack = Stack::start().await;
        stack.add_app(app).await;
        stack.github.install(github::Installation::org(app, 71, "octo-org", &[(7101, "hello-world"), (7102, "docs")]));
        stack.github.install(github::Installation::user(app, 72, "octocat", &[(7201, "dotfiles")]));
        stack
    }

    /// Creates a tagged KMS key, writes the App row, and registers the App with the double.
    pub async fn add_app(&self, app_id: i64) -> AppKey {
        let key = aws::create_app_key(&self.kms, app_id).await.expect("create the App key");
        aws::put_app(&self.ddb, &self.app_table, app_id, Some(&key.arn)).await.expect("write the App row");
        self.github.register_app(app_id, &key.public_key_der).expect("register the App");
        key
    }

    /// A KMS client counted by [`Stack::counter`].
    pub fn counted_kms(&self) -> aws_sdk_kms::Client {
        aws::kms_client(&self.sdk, &self.counter)
    }

    /// A DynamoDB client counted by [`Stack::counter`].
    pub fn counted_ddb(&self) -> aws_sdk_dynamodb::Client {
        aws::dynamodb_client(&self.sdk, &self.counter)
    }

    /// The ports as the functions build them, on counted clients: KMS signing through `kms`, the
    /// App and Installation tables, the GitHub double, and `clock`.
    pub fn services_on(&self, kms: aws_sdk_kms::Client, clock: impl Clock + 'static) -> Services {
        let mut services = Services::unconfigured();
        services.clock = Arc::new(clock);
        services.signer = Arc::new(KmsSigner::new(kms));
        services.apps = Arc::new(DynamoAppStore::new(self.counted_ddb(), &self.app_table));
        services.installations = Arc::new(self.installation_store());
        services.github = Some(self.github_client());
        // Today's behaviour, as before access rules; the access tests switch to Enforce.
        services.access_mode = AccessMode::Open;
        services
    }

    /// [`Stack::services_on`] with the access rules of [`Stack::put_rule`] enforced.
    pub fn enforcing(&self, clock: impl Clock + 'static) -> Services {
        let mut services = self.services_on(self.counted_kms(), clock);
        services.access = Arc::new(DynamoAccessStore::new(self.counted_ddb(), &self.access_table));
        services.access_mode = AccessMode::Enforce;
        services
    }

    /// Writes an access rule (a new one, or over the version it has), through the store the CLI uses.
    pub async fn put_rule(&self, document: serde_json::Value) {
        let document: RuleDocument = serde_json::from_value(document).expect("a rule document");
        let store = DynamoAccessStore::new(self.ddb.clone(), &self.access_table);
        let current = store.get_rule(&document.id).await.expect("read the rule").map_or(0, |r| r.version);
        let written = store.put_rule(&document, current, "2026-11-25T00:00:00Z").await.expect("write the rule");
        assert!(matches!(written, RuleWrite::Written { .. }), "{written:?}");
    }

    /// [`Stack::services_on`] with the counted KMS client and the system clock.
    pub fn services(&self) -> Services {
        self.services_on(self.counted_kms(), SystemClock)
    }

    /// The app-token handler as the function builds it, on counted clients and `clock`.
    pub fn app_token_handler_with(&self, clock: impl Clock + 'static) -> Endpoint<AppToken> {
        endpoint(AppToken::new(&self.services_on(self.counted_kms(), clock)))
    }

    /// App JWTs on counted clients.
    pub fn app_jwts(&self, clock: impl Clock + 'static) -> AppJwts {
        self.app_jwts_on(self.counted_kms(), clock)
    }

    /// App JWTs signed through `kms` (e.g. a client with [`appcreds_testkit::kms_import`]).
    pub fn app_jwts_on(&self, kms: aws_sdk_kms::Client, clock: impl Clock + 'static) -> AppJwts {
        AppJwts::new(&self.services_on(kms, clock))
    }

    /// A GitHub client for the double with short retry waits.
    pub fn github_client(&self) -> GitHubClient {
        let retry = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            max_total_wait: Duration::from_secs(3),
        };
        GitHubClient::new(&self.github.url(), Timeouts::default(), retry).expect("a GitHub client")
    }

    /// The Installation table on counted clients.
    pub fn installation_store(&self) -> DynamoInstallationStore {
        DynamoInstallationStore::new(self.counted_ddb(), &self.installation_table)
    }

    /// The installation-token handler as the function builds it, on counted clients.
    pub fn installation_token_handler(&self) -> Endpoint<InstallationToken> {
        self.installation_token_handler_on(self.counted_kms())
    }

    /// The installation-token handler signing through `kms`.
    pub fn installation_token_handler_on(&self, kms: aws_sdk_kms::Client) -> Endpoint<InstallationToken> {
        endpoint(InstallationToken::new(&self.services_on(kms, SystemClock)))
    }

    /// Rows of the Installation table, read without counting.
    pub async fn installation_rows(&self) -> Vec<InstallationRecord> {
        let store = DynamoInstallationStore::new(self.ddb.clone(), &self.installation_table);
        let mut rows = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = store.page(100, after, &|_| true).await.expect("scan");
            rows.extend(page);
            if next.is_none() {
                rows.sort_by(|a, b| (a.app_id, &a.node_id).cmp(&(b.app_id, &b.node_id)));
                return rows;
            }
            after = next;
        }
    }

    /// The sync as refresh-cache and the tracker build it, on counted clients.
    pub fn syncer(&self) -> InstallationSync {
        InstallationSync::new(&self.services())
    }

    /// A KMS HMAC key for nextTokens.
    pub async fn pagination_key(&self) -> String {
        let key = self
            .kms
            .create_key()
            .key_spec(aws_sdk_kms::types::KeySpec::Hmac256)
            .key_usage(aws_sdk_kms::types::KeyUsageType::GenerateVerifyMac)
            .send()
            .await
            .expect("create the HMAC key");
        key.key_metadata.and_then(|m| m.arn).expect("an ARN")
    }

    /// The get-installation handler on counted clients and a fresh HMAC key.
    pub async fn get_installation_handler(&self) -> Endpoint<GetInstallation> {
        let mut services = self.services();
        services.mac = Arc::new(KmsMac::new(self.counted_kms(), self.pagination_key().await));
        endpoint(GetInstallation::new(&services))
    }

    /// The app-token handler on counted clients and the system clock.
    pub fn app_token_handler(&self) -> Endpoint<AppToken> {
        self.app_token_handler_with(SystemClock)
    }
}

/// `op` behind the transport checks the template configures (an IAM caller is required).
pub fn endpoint<O: appcreds_core::http::Operation>(op: O) -> Endpoint<O> {
    Endpoint::new(op, Transport::iam())
}

/// Formats log lines as JSON into a sink, as Lambda would into its log stream (benchmarks).
pub fn logs_to_sink() -> tracing::subscriber::DefaultGuard {
    tracing::subscriber::set_default(tracing_subscriber::fmt().json().with_writer(std::io::sink).finish())
}

/// Hands a Function URL event (JSON text) to `handler` as the runtime would; it must answer 200.
pub async fn expect_ok<O: appcreds_core::http::Operation>(handler: &Endpoint<O>, event: &str) {
    let resp = handler.handle(lambda_http::request::from_str(event).expect("a Function URL event")).await;
    assert_eq!(resp.status(), 200);
}

/// Sends `req` through `handle` as Lambda would and reads the reply.
pub async fn send<F, Fut>(handle: F, req: UrlRequest) -> Reply
where
    F: FnOnce(lambda_http::Request) -> Fut,
    Fut: std::future::Future<Output = lambda_http::Response<lambda_http::Body>>,
{
    Reply::from_response(handle(req.into_request()).await)
}

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Arc<Mutex<Vec<u8>>>>> = const { std::cell::RefCell::new(None) };
}

/// Writes a log line into this thread's capture buffer, if one is installed.
struct ThreadSink;

impl Write for ThreadSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(buffer) = c.borrow().as_ref() {
                buffer.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures the log lines (JSON) written on this thread while it lives (use with a
/// current-thread runtime). One global subscriber serves every test of the process: a
/// thread-scoped one can miss events, because tracing caches each call site's interest globally.
pub struct Logs {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl Drop for Logs {
    fn drop(&mut self) {
        CAPTURE.with(|c| c.borrow_mut().take());
    }
}

impl Logs {
    pub fn capture() -> Logs {
        Logs::install_global_subscriber();
        let buffer = Arc::new(Mutex::new(Vec::new()));
        CAPTURE.with(|c| *c.borrow_mut() = Some(buffer.clone()));
        Logs { buffer }
    }

    /// Installs the global subscriber behind [`Logs`], once per process. It takes every event at
    /// DEBUG and above, so no call site's interest is cached as "never" while it is installed. A
    /// test that sets a thread-scoped subscriber of its own calls this first: alone, that
    /// subscriber misses the events of any call site another thread reaches first while it lives.
    pub fn install_global_subscriber() {
        static INIT: std::sync::Once = std::sync::Once::new();
        INIT.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_max_level(tracing::Level::DEBUG)
                .with_writer(|| ThreadSink)
                .finish();
            let _ = tracing::subscriber::set_global_default(subscriber);
        });
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// The parsed log lines whose target is `target`.
    pub fn lines_for(&self, target: &str) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == target)
            .collect()
    }
}
