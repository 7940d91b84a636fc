//! What every function does once per cold start: logging, the environment, the SDK clients, and
//! the [`Services`] built from them. Also serving a scheduled job.

use std::future::Future;
use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};
use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use serde_json::Value;
use tracing_subscriber::filter::{LevelFilter, Targets};

use crate::aws::access_table::DynamoAccessStore;
use crate::aws::app_table::DynamoAppStore;
use crate::aws::aws_timeouts;
use crate::aws::installation_table::DynamoInstallationStore;
use crate::aws::kms::{KmsMac, KmsSigner, KmsVault};
use crate::aws::lease_table::DynamoLeases;
use crate::aws::shared_jwt::DynamoSharedJwts;
use crate::config::Config;
use crate::deadline;
use crate::error::Error;
use crate::github::oidc::GitHubOidc;
use crate::github::{GitHubClient, RetryPolicy, Timeouts};
use crate::http::Transport;
use crate::ports::{AccessMode, JwtShare};
use crate::services::Services;

/// Configuration and SDK configuration, read once per cold start.
pub struct ColdStart {
    /// The function's environment.
    pub config: Config,
    /// The AWS SDK configuration every client is built from.
    pub aws: SdkConfig,
}

impl ColdStart {
    /// Initialises logging (JSON per `AWS_LAMBDA_LOG_FORMAT`), reads the environment and loads
    /// the AWS SDK configuration.
    pub async fn init() -> Result<Self, Error> {
        init_logging();
        let config = Config::from_env()?;
        let aws = lambda_sdk_config(|name| std::env::var(name).ok())?;
        Ok(ColdStart { config, aws })
    }

    /// The transport checks the environment asks for, for a function behind a Function URL.
    /// Fails the cold start if the access rules are to be enforced without an access table; in
    /// open mode, says so in the log.
    pub fn transport(&self) -> Result<Transport, Error> {
        match (self.config.access_mode, &self.config.access_table) {
            (AccessMode::Enforce, None) => {
                return Err(Error::Misconfigured("ACCESS_TABLE_NAME is not set (or set ACCESS_MODE=open)"));
            }
            (AccessMode::Open, _) => tracing::warn!(
                "ACCESS_MODE=open: every IAM-authenticated caller gets any credential it asks for; \
                 put access rules in the access table and set ACCESS_MODE=enforce"
            ),
            (AccessMode::Enforce, Some(_)) => {}
        }
        if let Some(caller) = &self.config.local_caller {
            tracing::warn!(%caller, "local stack: requests without an IAM caller are taken as this principal");
        }
        Ok(Transport {
            require_iam_caller: self.config.require_iam_caller,
            local_caller: self.config.local_caller.clone(),
        })
    }

    /// Fails the cold start if the function's environment lacks the Installation table.
    pub fn require_installation_table(&self) -> Result<&Self, Error> {
        match self.config.installation_table {
            Some(_) => Ok(self),
            None => Err(Error::Misconfigured("INSTALLATION_TABLE_NAME is not set")),
        }
    }

    /// The ports the environment configures: KMS signing, the App table, and, where set, the
    /// Installation, access and lease tables, the OIDC verifier and the page-token MAC key. No
    /// GitHub client: for the functions that never call GitHub (see [`Self::services_with_github`]).
    pub fn services(&self) -> Result<Services, Error> {
        let kms = aws_sdk_kms::Client::new(&self.aws);
        let dynamodb = aws_sdk_dynamodb::Client::new(&self.aws);
        let mut services = Services::unconfigured();
        services.signer = Arc::new(KmsSigner::new(kms.clone()));
        services.apps = Arc::new(DynamoAppStore::new(dynamodb.clone(), &self.config.app_table));
        if let Some(table) = &self.config.installation_table {
            services.installations = Arc::new(DynamoInstallationStore::new(dynamodb.clone(), table));
        }
        if let Some(table) = &self.config.lease_table {
            services.leases = Arc::new(DynamoLeases::new(dynamodb.clone(), table));
            if let Some(key) = &self.config.shared_jwt_key {
                services.jwt_share = Some(JwtShare {
                    store: Arc::new(
                        DynamoSharedJwts::new(dynamodb.clone(), table).with_app_table(&self.config.app_table),
                    ),
                    vault: Arc::new(KmsVault::new(kms.clone(), key)),
                });
            }
        }
        if let Some(table) = &self.config.access_table {
            services.access = Arc::new(DynamoAccessStore::new(dynamodb.clone(), table));
        }
        services.access_mode = self.config.access_mode;
        match (&self.config.oidc_audience, &self.config.oidc_issuer) {
            (Some(audience), Some(issuer)) => {
                services.oidc = Arc::new(GitHubOidc::new(issuer, audience, services.clock.clone())?);
            }
            // Fail closed: an issuer guessed wrongly would accept another GitHub's tokens.
            (Some(_), None) => {
                services.oidc = Arc::new(crate::ports::Unconfigured(
                    "GitHub OIDC tokens are not accepted here: no issuer is known for GITHUB_API_URL (set the \
                     stack's GitHubOidcIssuer)",
                ));
            }
            (None, _) => {}
        }
        if let Some(key) = &self.config.pagination_key {
            services.mac = Arc::new(KmsMac::new(kms, key));
        }
        Ok(services)
    }

    /// [`Self::services`] and the GitHub client (`GITHUB_API_URL`), for the functions that call GitHub.
    pub fn services_with_github(&self) -> Result<Services, Error> {
        let mut services = self.services()?;
        services.github =
            Some(GitHubClient::new(&self.config.github_api_url, Timeouts::default(), RetryPolicy::default())?);
        Ok(services)
    }
}

/// The SDK configuration every client of a function is built from: the region, the credentials
/// and the endpoint from the variables Lambda sets (`AWS_REGION`; `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`: the execution role's) and `AWS_ENDPOINT_URL` if
/// set (a local stack), the functions' timeouts, and an HTTP client that trusts the roots the
/// GitHub clients share, read for the first call. Not aws-config's default chains: in Lambda each
/// would end at those variables, after reading profile files, and linking their providers (IMDS,
/// ECS, SSO, web identity, profiles) made every bootstrap larger.
/// (`var`: the environment; the credentials are read from the process's own, for each call.)
fn lambda_sdk_config(var: impl Fn(&str) -> Option<String>) -> Result<SdkConfig, Error> {
    use aws_sdk_dynamodb::config::{IdentityCache, Region, SharedCredentialsProvider};
    let set = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let region = set("AWS_REGION").or_else(|| set("AWS_DEFAULT_REGION"));
    let region = region.ok_or(Error::Misconfigured("AWS_REGION is not set"))?;
    // Lambda gives the execution role's credentials in the environment; a runtime that gives them
    // otherwise (a container credentials endpoint) is not one this template deploys to: said at
    // the cold start, not by every request's first AWS call.
    if set("AWS_ACCESS_KEY_ID").is_none() || set("AWS_SECRET_ACCESS_KEY").is_none() {
        return Err(Error::Misconfigured(
            "AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY is not set: the execution role's credentials are read from them",
        ));
    }
    let credentials = aws_config::environment::EnvironmentVariableCredentialsProvider::new();
    let mut aws = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .identity_cache(IdentityCache::lazy().build())
        .retry_config(aws_config::retry::RetryConfig::standard())
        .timeout_config(aws_timeouts())
        .http_client(crate::aws::https::http_client());
    if let Some(url) = set("AWS_ENDPOINT_URL") {
        aws = aws.endpoint_url(url);
    }
    // FIPS and dual-stack endpoints, where a deployment asks for them in the function's environment.
    let on = |name: &str| set(name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    aws = aws.use_fips(on("AWS_USE_FIPS_ENDPOINT")).use_dual_stack(on("AWS_USE_DUALSTACK_ENDPOINT"));
    Ok(aws.build())
}

/// Logging as Lambda's log settings ask (`AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL`), in the
/// shape of the Lambda runtime's default subscriber, but compact: with JSON, one object per event,
/// its fields at the top level, and the invocation's span (request ID, X-Ray trace ID) once, not
/// twice (`span` and `spans`). Each line names its target, so the audit lines are found by
/// `target = "appcreds::audit"` (docs/benchmarks.md measures the bytes). Filtered by
/// [`log_filter`].
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").or_else(|_| std::env::var("RUST_LOG"));
    let level = level.ok().and_then(|l| l.parse::<LevelFilter>().ok()).unwrap_or(LevelFilter::INFO);
    let filter = log_filter(level, &std::env::var("RUST_LOG").unwrap_or_default());
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    if json {
        json_logs(std::io::stdout).finish().with(filter).init();
    } else {
        tracing_subscriber::fmt()
            .with_max_level(LevelFilter::TRACE)
            .with_target(false)
            .without_time()
            .finish()
            .with(filter)
            .init();
    }
}

/// The crates that log request and response bodies at TRACE (the AWS SDK's orchestrator logs
/// every request it sends, KMS `Encrypt`'s plaintext included): held at the function's level but
/// never beyond DEBUG, whatever `RUST_LOG` says, so no secret reaches a log even with
/// `LogLevel=TRACE`.
pub const CAPPED_AT_DEBUG: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_sigv4",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    // The Lambda runtime logs each raw event at TRACE: a caller's OIDC token header included.
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lambda_http",
];

/// The functions' log filter: `level` for every target; `RUST_LOG`'s directives (`rust_log`:
/// `LEVEL` and `target=LEVEL`, comma-separated, as `Targets` parses them: a span or field filter
/// is dropped from its directive, and a directive that does not parse is left out); and
/// [`CAPPED_AT_DEBUG`]'s crates at `level` but never beyond DEBUG. A target matches every target
/// it is a prefix of (as text: `hyper` matches `hyper_util` and `hyper:`), and the longest
/// directive that matches wins; so every directive whose target starts with a capped crate's name
/// is capped too, or `aws_smithy_runtime:=trace` would win over the crate's cap.
pub fn log_filter(level: LevelFilter, rust_log: &str) -> Targets {
    let cap = level.min(LevelFilter::DEBUG);
    let capped = |target: &str| CAPPED_AT_DEBUG.iter().any(|c| target.starts_with(c));
    let mut filter = Targets::new().with_default(level).with_targets(CAPPED_AT_DEBUG.iter().map(|c| (*c, cap)));
    for directive in rust_log.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let Ok(parsed) = directive.parse::<Targets>() else { continue };
        if let Some(default) = parsed.default_level() {
            filter = filter.with_default(default);
        }
        for (target, asked) in parsed.iter() {
            filter = filter.with_target(target, if capped(target) { asked.min(cap) } else { asked });
        }
    }
    filter
}

/// The JSON log format of the functions, writing to `writer` (the tests capture it). It lets
/// every event through: [`log_filter`] filters.
pub fn json_logs<W>(
    writer: W,
) -> tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::JsonFields,
    tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Json, ()>,
    LevelFilter,
    W,
>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .without_time()
        .with_target(true)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(writer)
}

/// Runs `job` on every scheduled (EventBridge) event until the runtime stops the process. The job
/// answers by the invocation's deadline ([`deadline::answer_by`]): it runs within the deadline less
/// [`deadline::ANSWER_MARGIN`] (so it can stop cleanly by itself) and is cut off there with
/// [`Error::OutOfTime`], logged, instead of being killed by Lambda without a word; then `settle`
/// sees through what must go out before the process is frozen (its claims on the signing of a
/// shared App JWT: [`AppJwts::settle`](crate::tokens::app_jwt::AppJwts::settle)).
pub async fn serve_scheduled<F, Fut, S, SFut>(job: F, settle: S) -> Result<(), lambda_runtime::Error>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, Error>> + Send,
    S: Fn(tokio::time::Instant) -> SFut + Send + Sync + 'static,
    SFut: Future<Output = ()> + Send,
{
    serve_events(move |_| job(), settle).await
}

/// [`serve_scheduled`] for a job that reads its event (the access-key rotator: the schedule's
/// event, or `{"userName": …}` from `appcreds rotation run`).
pub async fn serve_events<F, Fut, S, SFut>(job: F, settle: S) -> Result<(), lambda_runtime::Error>
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, Error>> + Send,
    S: Fn(tokio::time::Instant) -> SFut + Send + Sync + 'static,
    SFut: Future<Output = ()> + Send,
{
    let (job, settle) = (Arc::new(job), Arc::new(settle));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (job, settle) = (job.clone(), settle.clone());
        async move {
            let (payload, context) = (event.payload, event.context);
            let outcome = match deadline::from_epoch_millis(context.deadline) {
                None => job(payload).await,
                Some(deadline) => deadline::answer_by(deadline, job(payload), |by| settle(by)).await,
            };
            if let Err(e) = &outcome {
                tracing::error!(error = %e, "scheduled run failed");
            }
            outcome.map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}

#[cfg(test)]
mod log_cap_tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(level: LevelFilter, rust_log: &str) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = super::json_logs(move || writer.clone()).finish().with(super::log_filter(level, rust_log));
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", "sdk-trace Plaintext=c2VjcmV0");
            tracing::debug!(target: "aws_smithy_runtime::client::orchestrator", "sdk-debug");
            tracing::trace!(target: "appcreds_core::jobs::key_rotation", "own-trace");
            tracing::info!(target: "hyper::proto", "hyper-info");
            tracing::info!(target: "appcreds::audit", "audit-info");
            tracing::trace!(target: "lambda_runtime", "event-trace Authorization=x");
        });
        let bytes = buffer.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn the_sdk_and_http_crates_never_log_beyond_debug() {
        let trace = logged(LevelFilter::TRACE, "");
        assert!(!trace.contains("sdk-trace") && trace.contains("sdk-debug") && trace.contains("own-trace"), "{trace}");
        assert!(!trace.contains("event-trace"), "{trace}");
        // RUST_LOG asking for the SDK's TRACE gets DEBUG, for the crate or any module of it.
        for asked in [
            "aws_smithy_runtime=trace",
            "aws_smithy_runtime::client=trace",
            "aws_smithy_runtime:=trace",
            "aws_smithy_runtime::client::orchestrator=trace",
            "aws_smithy_runtime::client::orchestratorx=trace",
            "aws_smithy_runt=trace",
            "trace",
            "lambda_runtime=trace",
            "lambda_runtime:",
            "lambda_runtime[{x}]=trace",
            "aws=trace",
        ] {
            let got = logged(LevelFilter::TRACE, asked);
            assert!(
                !got.contains("sdk-trace") && !got.contains("event-trace") && got.contains("sdk-debug"),
                "{asked}: {got}"
            );
        }
        // At INFO they stay at INFO (the cap never raises a level).
        let info = logged(LevelFilter::INFO, "");
        assert!(!info.contains("sdk-debug") && info.contains("hyper-info") && !info.contains("own-trace"), "{info}");
    }

    #[test]
    fn rust_log_adds_to_the_level_and_can_quiet_a_crate() {
        // A target directive leaves every other target at the level: the audit lines stay.
        let own = logged(LevelFilter::INFO, "appcreds_core=trace");
        assert!(own.contains("own-trace") && own.contains("audit-info") && !own.contains("sdk-debug"), "{own}");
        // A capped crate may be quieted; what does not parse (a span filter) is left out.
        let quiet = logged(LevelFilter::INFO, "hyper=off,[request{id}]=trace,appcreds_core=trace");
        assert!(
            !quiet.contains("hyper-info") && quiet.contains("own-trace") && quiet.contains("audit-info"),
            "{quiet}"
        );
        // Whatever the directive's target, no capped crate's event gets past the cap.
        let filter = super::log_filter(LevelFilter::TRACE, "hyperx=trace,aws_smithy_runtime_apix=trace,h2:=trace");
        for target in ["hyper::proto", "aws_smithy_runtime_api::x", "h2::frame", "lambda_runtime"] {
            assert!(!filter.would_enable(target, &tracing::Level::TRACE), "{target}");
            assert!(filter.would_enable(target, &tracing::Level::DEBUG), "{target}");
        }
        assert!(filter.would_enable("appcreds_core::github", &tracing::Level::TRACE));
    }
}

#[cfg(test)]
mod oidc_issuer_tests {
    use super::*;

    fn cold_start(api_url: &str, issuer: Option<&str>) -> ColdStart {
        let (api_url, issuer) = (api_url.to_string(), issuer.map(str::to_string));
        let config = Config::from_lookup(move |name| match name {
            "APP_TABLE_NAME" => Some("Apps".into()),
            "GITHUB_API_URL" => Some(api_url.clone()),
            "OIDC_AUDIENCE" => Some("appcreds:123456789012:appcreds".into()),
            "OIDC_ISSUER" => issuer.clone(),
            _ => None,
        })
        .expect("a valid environment");
        let aws = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        ColdStart { config, aws }
    }

    /// A function whose GitHub API URL names no known issuer accepts no OIDC token (a server
    /// error that says what to set), rather than trusting github.com's issuer.
    #[tokio::test]
    async fn an_unknown_github_names_no_issuer_and_no_token_is_accepted() {
        let unknown = cold_start("https://git.example.com/api", None).services().unwrap();
        match unknown.oidc.verify("a.b.c").await {
            Err(Error::Misconfigured(why)) => assert!(why.contains("GitHubOidcIssuer"), "{why}"),
            other => panic!("expected a server error, got {other:?}"),
        }
        // Named by OIDC_ISSUER, or told by the URL (GHE.com), a verifier judges the token itself.
        let named = cold_start("https://git.example.com/api", Some("https://token.actions.githubusercontent.com/octo"));
        let ghe = cold_start("https://api.octocorp.ghe.com", None);
        for start in [named, ghe] {
            let services = start.services().unwrap();
            assert!(matches!(services.oidc.verify("a.b.c").await, Err(Error::AccessDenied(_))));
        }
    }
}

#[cfg(test)]
mod shared_jwt_tests {
    use super::*;

    fn services(vars: &[(&str, &str)]) -> Services {
        let config = Config::from_lookup(|name| {
            let mut set = [("APP_TABLE_NAME", "Apps")].into_iter().chain(vars.iter().copied());
            set.find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        })
        .expect("a valid environment");
        let aws = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        ColdStart { config, aws }.services().expect("services")
    }

    /// The App JWT is shared only where both its key and the lease table are set: elsewhere (the
    /// CLI, an older template) each function signs its own, as before.
    #[test]
    fn the_share_is_on_only_with_its_key_and_the_lease_table() {
        let key: (&str, &str) = ("SHARED_APP_JWT_KEY_ID", "arn:aws:kms:us-east-1:123456789012:key/shared");
        let leases = ("LEASE_TABLE_NAME", "Leases");
        assert!(services(&[key, leases]).jwt_share.is_some());
        assert!(services(&[leases]).jwt_share.is_none());
        assert!(services(&[key]).jwt_share.is_none());
    }
}

#[cfg(test)]
mod sdk_config_tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_sdk_configuration_is_lambdas_environment() {
        let lambda = env(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ]);
        let aws = lambda_sdk_config(lambda).unwrap();
        assert_eq!(aws.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(aws.endpoint_url(), None);
        assert!(aws.credentials_provider().is_some() && aws.http_client().is_some());
        assert_eq!(aws.timeout_config(), Some(&aws_timeouts()));
        assert_eq!(aws.retry_config(), Some(&aws_config::retry::RetryConfig::standard()));
        assert!(aws.identity_cache().is_some());
        assert_eq!((aws.use_fips(), aws.use_dual_stack()), (Some(false), Some(false)));
        // A local stack: the region's fallback, and its endpoint.
        let local = env(&[
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", " http://127.0.0.1:5000 "),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_USE_FIPS_ENDPOINT", "TRUE"),
            ("AWS_USE_DUALSTACK_ENDPOINT", "true"),
        ]);
        let aws = lambda_sdk_config(local).unwrap();
        let got = (aws.region().map(|r| r.as_ref()), aws.endpoint_url());
        assert_eq!(got, (Some("us-east-1"), Some("http://127.0.0.1:5000")));
        assert_eq!((aws.use_fips(), aws.use_dual_stack()), (Some(true), Some(true)));
        let none =
            lambda_sdk_config(env(&[("AWS_REGION", " "), ("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "s")]));
        assert!(matches!(none, Err(Error::Misconfigured("AWS_REGION is not set"))), "{:?}", none.err());
        // Credentials from elsewhere (a container endpoint): refused at the cold start, by name.
        let elsewhere =
            env(&[("AWS_REGION", "eu-west-1"), ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1/c")]);
        let refused = lambda_sdk_config(elsewhere).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused.contains("AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY is not set"), "{refused}");
        let half = env(&[("AWS_REGION", "eu-west-1"), ("AWS_ACCESS_KEY_ID", "AKIA")]);
        assert!(lambda_sdk_config(half).is_err(), "no secret key");
    }
}
