//! `appcreds-local`: the whole system on loopback.
//!
//! Starts a moto server (KMS, DynamoDB, CloudWatch), creates the tables, a tagged RSA-2048 KMS key
//! registered for a demo App, the GitHub double, and the functions behind local Function URLs
//! (`cargo lambda watch`); then asks app-token for a JWT through its Function URL, verifies it
//! with the KMS public key and has the GitHub double accept it, and prints how to call things.
//!
//! `--smoke` stops after that check (exit status 0 if it passed); otherwise it runs until Ctrl-C.
//!
//! `--cold-starts N` then measures every function's cold start N times: the binary (from
//! `--bin-dir`, e.g. `target/release`) is started afresh against a Runtime API endpoint that hands
//! it one event; printed are spawn → ready (its first request for an invocation), spawn → first
//! response, and the process's own peak RSS (VmHWM), as min / median / max; first the floor,
//! `empty-lambda` (the Lambda runtime and nothing else), if it is in the directory.
//!
//! `--fleet N` then starts N cold processes of installation-token (`--fleet-function`) at once,
//! each on a Runtime API endpoint of its own with one event, against a fresh moto and GitHub
//! double, and prints the AWS calls (counted at the wire), the GitHub calls and the times to ready
//! and to the first answer. Each invocation's deadline is 300 s (room for moto's queue on a small
//! machine), or `--fleet-timeout SECS` (15: the function's own). `--bin-dir` may be given more
//! than once: the measurements run for each directory in turn and are printed side by side.

use std::process::Stdio;
use std::time::{Duration, Instant};

use appcreds_core::aws::access_table::DynamoAccessStore;
use appcreds_core::domain::access::{Rule, RuleDocument};
use appcreds_testkit::aws::{self, REGION};
use appcreds_testkit::fleet;
use appcreds_testkit::github::jwt::{public_key, verify_rs256};
use appcreds_testkit::github::{GitHubDouble, Installation};
use appcreds_testkit::moto::{Moto, workspace_root};
use serde_json::{Value, json};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The function binaries served behind local Function URLs (their URL path segment is the name).
/// The local access table, its demo rule, the role it names, and the caller local requests come from.
const ACCESS_TABLE: &str = "appcreds-local-access";
/// The lease that keeps installation syncs apart.
const LEASE_TABLE: &str = "appcreds-local-leases";
const DEMO_RULE: &str = "local-demo";
const DEMO_ROLE: &str = "arn:aws:iam::123456789012:role/appcreds-local-demo";
const LOCAL_CALLER: &str = "arn:aws:sts::123456789012:assumed-role/appcreds-local-demo/local";

/// The demo rule: the local caller may do everything with the demo App, up to a ceiling that
/// leaves out `administration`, which the smoke run asks for to show a refusal.
async fn put_demo_rule(ddb: &aws_sdk_dynamodb::Client, app_id: i64) -> Result<(), BoxError> {
    let rule: RuleDocument = serde_json::from_value(json!({
        "id": DEMO_RULE,
        "description": "appcreds-local: the demo caller, everything up to a ceiling",
        "principals": [DEMO_ROLE],
        "operations": ["installation-token", "app-token", "read-installations", "refresh"],
        "apps": [app_id],
        "owners": ["*"],
        "repositories": ["*"],
        "permissions": {"contents": "write", "issues": "write", "metadata": "read"}
    }))?;
    Rule::from_document(rule.clone(), 0).map_err(|problems| problems.join("; "))?;
    DynamoAccessStore::new(ddb.clone(), ACCESS_TABLE).put_rule(&rule, 0, "2026-01-01T00:00:00Z").await?;
    Ok(())
}

const FUNCTIONS: &[&str] = &[
    "appcreds-app-token",
    "appcreds-installation-token",
    "appcreds-get-installation",
    "appcreds-refresh-cache",
    "appcreds-installation-tracker",
    "appcreds-rate-limit-scanner",
    "appcreds-access-key-rotator",
];

/// The access-key rotator's table, and the demo IAM user it rotates into two repositories.
const ROTATION_TABLE: &str = "appcreds-local-rotation";
const DEMO_USER: &str = "appcreds-demo-deployer";

struct Options {
    app_id: i64,
    /// Where the function binaries are (default: next to this binary); given more than once, the
    /// measurements run for each in turn and print them side by side, and the local stack itself
    /// runs the last.
    bin_dirs: Vec<std::path::PathBuf>,
    /// After the check, measure each function's cold start this many times.
    cold_starts: Option<usize>,
    /// After the check, measure what installation-token logs over this many warm requests.
    log_bytes: Option<usize>,
    /// After the check, start this many cold processes of `fleet_function` at once.
    fleet: Option<usize>,
    fleet_function: String,
    /// Each fleet process's invocation deadline (`None`: 300 s, room for a queue on a small machine).
    fleet_timeout: Option<Duration>,
    lambda_port: u16,
    github_port: u16,
    smoke: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        app_id: 123456,
        bin_dirs: Vec::new(),
        cold_starts: None,
        log_bytes: None,
        fleet: None,
        fleet_function: "appcreds-installation-token".into(),
        fleet_timeout: None,
        lambda_port: 9000,
        github_port: 9001,
        smoke: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--app-id" => o.app_id = value("--app-id")?.parse().map_err(|_| "--app-id takes a number")?,
            "--lambda-port" => {
                o.lambda_port = value("--lambda-port")?.parse().map_err(|_| "--lambda-port takes a port")?
            }
            "--github-port" => {
                o.github_port = value("--github-port")?.parse().map_err(|_| "--github-port takes a port")?
            }
            "--smoke" => o.smoke = true,
            "--bin-dir" => o.bin_dirs.push(value("--bin-dir")?.into()),
            "--log-bytes" => {
                let n: usize = value("--log-bytes")?.parse().map_err(|_| "--log-bytes takes a count")?;
                o.log_bytes = Some(n.max(1));
                o.smoke = true;
            }
            "--fleet" => {
                o.fleet = Some(value("--fleet")?.parse::<usize>().map_err(|_| "--fleet takes a count")?.max(1));
                o.smoke = true;
            }
            "--fleet-function" => o.fleet_function = value("--fleet-function")?,
            "--fleet-timeout" => {
                let secs: u64 = value("--fleet-timeout")?.parse().map_err(|_| "--fleet-timeout takes seconds")?;
                o.fleet_timeout = Some(Duration::from_secs(secs.max(1)));
            }
            "--cold-starts" => {
                let n: usize = value("--cold-starts")?.parse().map_err(|_| "--cold-starts takes a count")?;
                o.cold_starts = Some(n.max(1));
                o.smoke = true;
            }
            "-h" | "--help" => {
                println!(
                    "usage: appcreds-local [--app-id N] [--lambda-port 9000] [--github-port 9001] [--smoke] [--bin-dir DIR]... [--cold-starts N] [--log-bytes N] [--fleet N] [--fleet-function NAME] [--fleet-timeout SECS]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    // Port 0: any free port.
    if o.lambda_port == 0 {
        o.lambda_port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    }
    Ok(o)
}

#[tokio::main]
async fn main() {
    let opts = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("appcreds-local: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(opts).await {
        eprintln!("appcreds-local: {e}");
        std::process::exit(1);
    }
}

/// The local stack's state: a moto server with the tables, keys and the demo App, and the GitHub
/// double with its installations; `env` is what the functions are given to use them.
struct Stack {
    moto: Moto,
    github: GitHubDouble,
    key: aws::AppKey,
    iam: aws_sdk_iam::Client,
    /// The demo IAM user's first access key (the rotator replaces it).
    first_key: String,
    env: FunctionEnv,
}

/// Builds the local stack's state, telling each part to `say` (the fleet burst builds fresh ones
/// quietly); the GitHub double listens on `github_port` (0: any free port).
async fn stack(app_id: i64, github_port: u16, say: fn(&str)) -> Result<Stack, BoxError> {
    let moto = Moto::start()?;
    say(&format!("moto server (KMS, DynamoDB, CloudWatch) at {}", moto.endpoint()));
    let sdk = aws::sdk_config(moto.endpoint()).await;
    let (kms, ddb) = (aws_sdk_kms::Client::new(&sdk), aws_sdk_dynamodb::Client::new(&sdk));
    let (app_table, installation_table) = ("appcreds-local-apps", "appcreds-local-installations");
    aws::create_app_table(&ddb, app_table).await?;
    aws::create_installation_table(&ddb, installation_table).await?;
    aws::create_access_table(&ddb, ACCESS_TABLE).await?;
    aws::create_lease_table(&ddb, LEASE_TABLE).await?;
    aws::create_rotation_table(&ddb, ROTATION_TABLE).await?;
    put_demo_rule(&ddb, app_id).await?;
    say(&format!(
        "access table {ACCESS_TABLE}, enforced, with rule {DEMO_RULE:?} for {DEMO_ROLE}; local requests come from {LOCAL_CALLER}"
    ));
    let key = aws::create_app_key(&kms, app_id).await?;
    aws::put_app(&ddb, app_table, app_id, Some(&key.arn)).await?;
    let pagination_key = kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::Hmac256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::GenerateVerifyMac)
        .send()
        .await?
        .key_metadata
        .and_then(|m| m.arn)
        .ok_or("no HMAC key ARN")?;
    say(&format!("tables {app_table} and {installation_table}; App {app_id} → {}", key.arn));
    let rotation_key = aws::create_vault_key(&kms).await?;
    // The key the App JWT one function signs for the others is encrypted with (in the lease table).
    let shared_jwt_key = aws::create_vault_key(&kms).await?;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let (_, first_key) = aws::create_rotated_user(&iam, DEMO_USER, "/appcreds-rotated/").await?;
    say(&format!(
        "IAM user /appcreds-rotated/{DEMO_USER} with key {first_key}; rotation table {ROTATION_TABLE}, its KMS key {rotation_key}"
    ));

    let github = GitHubDouble::start_on(&format!("127.0.0.1:{github_port}")).await?;
    github.register_app(app_id, &key.public_key_der)?;
    let mut org = Installation::org(app_id, 4001, "octo-org", &[(40011, "hello-world"), (40012, "docs")]);
    // The rotator writes Actions secrets into these repositories.
    org.permissions.insert("secrets".into(), "write".into());
    github.install(org);
    github.install(Installation::user(app_id, 4002, "octocat", &[(40021, "dotfiles")]));
    say(&format!("GitHub double at {}", github.url()));
    let env = FunctionEnv {
        moto: moto.endpoint().to_string(),
        app_table: app_table.to_string(),
        installation_table: installation_table.to_string(),
        github: github.url(),
        pagination_key,
        oidc_issuer: github.oidc_issuer(),
        rotation_key,
        shared_jwt_key: Some(shared_jwt_key),
    };
    Ok(Stack { moto, github, key, iam, first_key, env })
}

async fn run(mut opts: Options) -> Result<(), BoxError> {
    let Stack { moto, github, key, iam, first_key, env } = stack(opts.app_id, opts.github_port, step).await?;
    let root = workspace_root();
    let venv_bin = root.join(".venv/bin");
    let path = format!("{}:{}", venv_bin.display(), std::env::var("PATH").unwrap_or_default());
    let port = opts.lambda_port.to_string();
    // The Lambda runtime API and Function URL emulation; the functions are started below from
    // the binaries built next to this one (`cargo build --workspace --bins`), so nothing is rebuilt.
    let mut children = vec![
        spawn_isolated(
            tokio::process::Command::new("cargo")
                .current_dir(&root)
                .args(["lambda", "watch", "--only-lambda-apis", "--quiet", "-A", "127.0.0.1", "-P", &port])
                .env("PATH", &path),
            Inherit::Environment,
        )
        .map_err(|e| format!("cannot run cargo lambda watch (run scripts/setup first): {e}"))?,
    ];
    wait_for_port(opts.lambda_port).await?;
    if opts.bin_dirs.is_empty() {
        opts.bin_dirs.push(std::env::current_exe()?.parent().ok_or("no binary directory")?.to_path_buf());
    }
    let bin_dir = opts.bin_dirs[opts.bin_dirs.len() - 1].clone();
    for function in FUNCTIONS {
        let binary = bin_dir.join(function);
        let mut command = tokio::process::Command::new(&binary);
        env.apply(command.as_std_mut(), function);
        command.env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt/{function}"));
        // cargo lambda watch does not check SigV4 and passes no IAM caller: the local stack
        // states one, so that access rules work here as they do in AWS.
        command.env("REQUIRE_IAM_CALLER", "false").env("LOCAL_CALLER_ARN", LOCAL_CALLER);
        let child = spawn_isolated(&mut command, Inherit::Nothing).map_err(|e| {
            format!("cannot start {} (build it with cargo build --workspace --bins): {e}", binary.display())
        })?;
        children.push(child);
    }
    let base = format!("http://127.0.0.1:{port}/lambda-url");
    step(&format!("functions {} behind local Function URLs at {base}/<function>/…", FUNCTIONS.join(", ")));

    let mut result = demo(&base, opts.app_id, &key.public_key_der, &github).await;
    if result.is_ok() {
        result = cli_key_list(moto.endpoint(), &env.app_table, opts.app_id, &key.arn).await;
    }
    if result.is_ok() {
        let lambda = format!("http://127.0.0.1:{port}");
        result = rotation(moto.endpoint(), &lambda, &env.app_table, opts.app_id, &iam, &first_key, &github).await;
    }
    if let (Ok(()), Some(runs)) = (&result, opts.cold_starts) {
        result = cold_starts(&env, &opts.bin_dirs, opts.app_id, runs).await;
    }
    if let (Ok(()), Some(requests)) = (&result, opts.log_bytes) {
        result = log_bytes(&env, &bin_dir, opts.app_id, requests).await;
    }
    if let (Ok(()), Some(n)) = (&result, opts.fleet) {
        result = fleet(opts.app_id, &opts.bin_dirs, n, &opts.fleet_function, opts.fleet_timeout).await;
    }
    match &result {
        Ok(()) if opts.smoke => {}
        Ok(()) => {
            print_usage(&base, opts.app_id, &github);
            let _ = tokio::signal::ctrl_c().await;
        }
        Err(_) => {}
    }
    // Functions first, then the runtime API they are connected to.
    for child in children.iter_mut().rev() {
        stop_group(child).await;
        let _ = child.kill().await;
    }
    result
}

/// Gets a JWT through the app-token Function URL, verifies it, and has the double accept it.
async fn demo(base: &str, app_id: i64, public_key_der: &[u8], github: &GitHubDouble) -> Result<(), BoxError> {
    let http = reqwest::Client::new();
    let url = format!("{base}/appcreds-app-token/tokens/app");
    let started = Instant::now();
    // Retry while the functions connect to the runtime API; fail on an answer from the function.
    let body = loop {
        let sent = http.post(&url).json(&json!({ "appId": app_id })).timeout(Duration::from_secs(30)).send().await;
        match sent {
            Ok(resp) if resp.status().is_success() => break resp.json::<Value>().await?,
            Ok(resp)
                if resp.headers().contains_key("x-amzn-errortype") || started.elapsed() > Duration::from_secs(60) =>
            {
                return Err(format!("app-token answered {}: {}", resp.status(), resp.text().await?).into());
            }
            Err(e) if started.elapsed() > Duration::from_secs(60) => return Err(e.into()),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let token = body["appToken"].as_str().ok_or("no appToken in the response")?;
    let verified = verify_rs256(&public_key(public_key_der)?, token)?;
    step(&format!(
        "POST {url} → appId {}, expirationTime {}, claims {} (signature verified with the KMS public key)",
        body["appId"], body["expirationTime"], verified.claims
    ));
    let resp = http.get(format!("{}/app", github.url())).bearer_auth(token).send().await?;
    let status = resp.status();
    let app: Value = resp.json().await?;
    if !status.is_success() {
        return Err(format!("the GitHub double refused the JWT: {status} {app}").into());
    }
    step(&format!("GET {}/app with the JWT → {status}, App {} ({})", github.url(), app["id"], app["slug"]));

    let post = |function: &str, path: &str, body: Value| {
        let req = http.post(format!("{base}/{function}{path}")).json(&body);
        let path = path.to_string();
        async move {
            let resp = req.send().await?;
            let status = resp.status();
            let body: Value = resp.json().await?;
            if !status.is_success() {
                return Err::<Value, BoxError>(format!("{path} answered {status}: {body}").into());
            }
            Ok(body)
        }
    };
    let refreshed = post("appcreds-refresh-cache", "/installations/refresh", json!({})).await?;
    step(&format!("POST /installations/refresh → {}", refreshed["message"]));
    let listed = post("appcreds-get-installation", "/installations", json!({"maxResults": 10})).await?;
    let names: Vec<&str> =
        listed["installations"].as_array().into_iter().flatten().filter_map(|i| i["name"].as_str()).collect();
    step(&format!("POST /installations → {names:?}"));
    let token = post(
        "appcreds-installation-token",
        "/tokens/installation",
        json!({"appId": app_id, "owner": "octo-org", "scopeDown": {"repositoryNames": ["hello-world"], "permissions": {"contents": "read"}}}),
    )
    .await?;
    let issued = token["installationToken"]
        .as_str()
        .and_then(|t| github.issued(t))
        .ok_or("the double did not issue that token")?;
    // Beyond the demo rule's ceiling: refused, and the refusal names what exceeded.
    let beyond = http
        .post(format!("{base}/appcreds-installation-token/tokens/installation"))
        .json(&json!({"appId": app_id, "owner": "octo-org", "scopeDown": {"permissions": {"administration": "write"}}}))
        .send()
        .await?;
    let (status, error_type) = (beyond.status(), beyond.headers().get("x-amzn-errortype").cloned());
    let refusal: Value = beyond.json().await?;
    if status != 403 || error_type.as_ref().and_then(|v| v.to_str().ok()) != Some("AccessDeniedException") {
        return Err(format!("a request beyond the rule was answered {status}: {refusal}").into());
    }
    step(&format!(
        "POST /tokens/installation asking administration=write → 403 AccessDeniedException: {}",
        refusal["message"]
    ));
    // The scheduled functions, invoked as EventBridge Scheduler would (through the Invoke API).
    let lambda_api = base.trim_end_matches("/lambda-url");
    let invoke = |function: &str| {
        let req = http.post(format!("{lambda_api}/2015-03-31/functions/{function}/invocations")).json(&json!({}));
        async move { Ok::<Value, BoxError>(req.send().await?.json::<Value>().await?) }
    };
    let tracked = invoke("appcreds-installation-tracker").await?;
    step(&format!("invoke installation-tracker → {tracked}"));
    let scanned = invoke("appcreds-rate-limit-scanner").await?;
    if scanned["metricsSent"].as_u64().unwrap_or(0) == 0 {
        return Err(format!("the rate-limit scanner published nothing: {scanned}").into());
    }
    step(&format!("invoke rate-limit-scanner → {scanned} (CloudWatch namespace AppFrameworkGitHubAPICallMetrics)"));
    cli_token(base, app_id, github).await?;
    curl_token(base, app_id, github).await?;
    step(&format!(
        "POST /tokens/installation (owner octo-org, scoped) → installation {}, actualScopeDown {}, double confirms repositories {:?}",
        token["installationId"],
        token["actualScopeDown"],
        issued.repositories.unwrap_or_default()
    ));
    Ok(())
}

/// What every function process gets in its environment: what Lambda sets, and the variables the
/// template sets. Nothing else of this shell's environment (its `SSL_CERT_FILE` or AWS profile)
/// reaches a function, which reads here what it reads in Lambda (`RUST_LOG` passes, for debugging,
/// and `ACCESS_MODE`, for `ACCESS_MODE=open`).
struct FunctionEnv {
    moto: String,
    app_table: String,
    installation_table: String,
    github: String,
    pagination_key: String,
    oidc_issuer: String,
    rotation_key: String,
    /// `SHARED_APP_JWT_KEY_ID` (`None`: each function signs its own App JWTs, as before).
    shared_jwt_key: Option<String>,
}

impl FunctionEnv {
    /// Clears `command`'s environment and sets the function's: anything else (the Runtime API's
    /// endpoint) is set after.
    fn apply(&self, command: &mut std::process::Command, function: &str) {
        command.env_clear();
        for passed in ["RUST_LOG", "ACCESS_MODE"] {
            if let Some(value) = std::env::var_os(passed) {
                command.env(passed, value);
            }
        }
        command
            // As Lambda sets them for a provided.al2023 function.
            .env("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin")
            .env("LANG", "en_US.UTF-8")
            .env("TZ", ":UTC")
            .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
            .env("AWS_LAMBDA_FUNCTION_NAME", function)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_ENDPOINT_URL", &self.moto)
            .env("AWS_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("APP_TABLE_NAME", &self.app_table)
            .env("INSTALLATION_TABLE_NAME", &self.installation_table)
            .env("GITHUB_API_URL", &self.github)
            .env("PAGINATION_KEY_ID", &self.pagination_key)
            .env("ACCESS_TABLE_NAME", ACCESS_TABLE)
            .env("LEASE_TABLE_NAME", LEASE_TABLE)
            .env("ROTATION_TABLE_NAME", ROTATION_TABLE)
            .env("ROTATION_KMS_KEY_ID", &self.rotation_key)
            // GitHub Actions OIDC tokens as the double issues them (audience "appcreds").
            .env("OIDC_ISSUER", &self.oidc_issuer)
            .env("OIDC_AUDIENCE", "appcreds")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_LAMBDA_LOG_LEVEL", "INFO");
        if let Some(key) = &self.shared_jwt_key {
            command.env("SHARED_APP_JWT_KEY_ID", key);
        }
    }
}

/// The event each function's measured invocation gets, and its `Timeout` in the template.
fn cold_start_event(function: &str, app_id: i64) -> (Value, Duration) {
    let url = |path: &str, body: Value| {
        let mut req = appcreds_testkit::lambda::UrlRequest::post_json(path, &body);
        req.caller_arn = Some(LOCAL_CALLER.to_string());
        (req.event_json(), Duration::from_secs(15))
    };
    let scheduled = |timeout: u64| {
        let event = json!({
            "version": "0", "id": "c0ld5tar-0000-4000-8000-000000000002", "detail-type": "Scheduled Event",
            "source": "aws.scheduler", "account": "123456789012", "time": "2026-11-26T00:00:00Z",
            "region": REGION, "resources": [], "detail": "{}"
        });
        (event, Duration::from_secs(timeout))
    };
    match function {
        "appcreds-app-token" => url("/tokens/app", json!({"appId": app_id})),
        "appcreds-installation-token" => url(
            "/tokens/installation",
            json!({"appId": app_id, "owner": "octo-org", "scopeDown": {"permissions": {"contents": "read"}}}),
        ),
        "appcreds-get-installation" => url("/installations", json!({"maxResults": 10})),
        "appcreds-refresh-cache" => {
            let (event, _) = url("/installations/refresh", json!({}));
            (event, Duration::from_secs(300))
        }
        "appcreds-installation-tracker" => scheduled(300),
        "appcreds-access-key-rotator" => scheduled(900),
        _ => scheduled(120),
    }
}

/// The binary `--cold-starts` measures first, as the floor of a function's cold start: only the
/// Lambda runtime (`lambda_http`) and a handler that answers 200 (`crates/testkit/src/bin/empty-lambda.rs`),
/// measured when it is in the binary directory.
const EMPTY: &str = "empty-lambda";

/// Starts each function's binary `runs` times against a Runtime API endpoint of its own and
/// prints spawn → ready, spawn → first response and the process's peak RSS. With several binary
/// directories, each run starts every directory's binary in turn (so that the machine's load
/// drifts alike for all) and the table has a row per function and directory.
async fn cold_starts(env: &FunctionEnv, dirs: &[std::path::PathBuf], app_id: i64, runs: usize) -> Result<(), BoxError> {
    let names: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    println!("cold starts: {runs} per function, binaries from {}", names.join(", "));
    println!(
        "| function | binaries | spawn → ready (ms) min / median / max | spawn → first response (ms) min / median / max | peak RSS (MiB) min / median / max | binary (MB) |"
    );
    println!("|---|---|---|---|---|---|");
    let spread = |mut v: Vec<f64>, digits: usize| {
        v.sort_by(f64::total_cmp);
        let (min, mid, max) = (v[0], v[v.len() / 2], v[v.len() - 1]);
        format!("{min:.digits$} / {mid:.digits$} / {max:.digits$}")
    };
    for function in std::iter::once(&EMPTY).chain(FUNCTIONS) {
        let binaries: Vec<std::path::PathBuf> = dirs.iter().map(|d| d.join(function)).collect();
        if *function == EMPTY && !binaries.iter().any(|b| b.exists()) {
            continue;
        }
        let mut samples = vec![(Vec::new(), Vec::new(), Vec::new()); dirs.len()];
        for _ in 0..runs {
            for (binary, (ready, first, rss)) in binaries.iter().zip(samples.iter_mut()) {
                if *function == EMPTY && !binary.exists() {
                    continue;
                }
                let (r, f, m) = cold_start(env, binary, function, app_id).await?;
                ready.push(r);
                first.push(f);
                rss.push(m);
            }
        }
        for ((binary, name), (ready, first, rss)) in binaries.iter().zip(&names).zip(samples) {
            if ready.is_empty() {
                continue;
            }
            let size = std::fs::metadata(binary).map(|m| m.len() as f64 / 1e6).unwrap_or(0.0);
            let (ready, first, rss) = (spread(ready, 1), spread(first, 1), spread(rss, 1));
            println!("| {function} | {name} | {ready} | {first} | {rss} | {size:.1} |");
        }
    }
    Ok(())
}

/// One cold start of `binary` (the function `function`): spawn → ready and → first response (ms),
/// and its peak RSS (MiB).
async fn cold_start(
    env: &FunctionEnv,
    binary: &std::path::Path,
    function: &str,
    app_id: i64,
) -> Result<(f64, f64, f64), BoxError> {
    // The empty binary answers app-token's event (any Function URL event will do).
    let event_of = if function == EMPTY { "appcreds-app-token" } else { function };
    let (event, timeout) = cold_start_event(event_of, app_id);
    let api = appcreds_testkit::runtime_api::RuntimeApi::start(event, timeout).await?;
    let mut command = tokio::process::Command::new(binary);
    env.apply(command.as_std_mut(), function);
    command
        .env("AWS_LAMBDA_RUNTIME_API", api.endpoint())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let before = children();
    let spawned = Instant::now();
    let mut child = command.spawn()?;
    let invocation = api.wait(Duration::from_secs(60)).await;
    let hwm = peak_rss_mib(binary, &before);
    let _ = child.kill().await;
    let invocation = invocation.map_err(|e| format!("{}: {e}", binary.display()))?;
    let ok = !invocation.failed && invocation.body.get("statusCode").is_none_or(|s| s == 200);
    if !ok {
        return Err(format!("{} answered {}", binary.display(), invocation.body).into());
    }
    let ms = |at: Instant| at.duration_since(spawned).as_secs_f64() * 1e3;
    Ok((ms(invocation.ready), ms(invocation.answered), hwm.ok_or("no VmHWM")?))
}

/// What installation-token writes to its log (stdout, as Lambda collects it) per warm request:
/// one process answers 1 request, another `requests + 1`; the difference over `requests`.
async fn log_bytes(env: &FunctionEnv, bin_dir: &std::path::Path, app_id: i64, requests: usize) -> Result<(), BoxError> {
    let function = "appcreds-installation-token";
    let logged = |n: usize| async move {
        let (event, timeout) = cold_start_event(function, app_id);
        let api = appcreds_testkit::runtime_api::RuntimeApi::start_many(vec![event; n], timeout).await?;
        let mut command = tokio::process::Command::new(bin_dir.join(function));
        env.apply(command.as_std_mut(), function);
        command.env("AWS_LAMBDA_RUNTIME_API", api.endpoint()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = command.kill_on_drop(true).spawn()?;
        let answered = api.wait_for(n, Duration::from_secs(120)).await;
        let _ = child.start_kill();
        let out = child.wait_with_output().await?;
        let answered = answered.map_err(|e| format!("{function}: {e}"))?;
        if let Some(bad) = answered.iter().find(|i| i.failed || i.body.get("statusCode").is_some_and(|s| s != 200)) {
            return Err::<(usize, usize), BoxError>(format!("{function} answered {}", bad.body).into());
        }
        Ok((out.stdout.len(), out.stdout.iter().filter(|b| **b == b'\n').count()))
    };
    let (one_bytes, one_lines) = logged(1).await?;
    let (many_bytes, many_lines) = logged(requests + 1).await?;
    let per_request = (many_bytes - one_bytes) as f64 / requests as f64;
    let lines = (many_lines - one_lines) as f64 / requests as f64;
    println!(
        "log bytes: installation-token, {requests} warm requests: {per_request:.0} bytes and {lines:.1} lines per request \
         (a cold start's init and first request: {one_bytes} bytes, {one_lines} lines)"
    );
    Ok(())
}

/// `--fleet N`: for each binary directory in turn, `n` cold processes of `function` started at
/// once against a fresh stack (moto, tables and GitHub double: each burst starts cold) whose
/// installation table holds the rows that directory's own tracker writes (in a stack of their
/// own, so nothing else it leaves behind warms the burst); the AWS calls counted at the wire by a
/// proxy in front of moto, the GitHub calls by the double. Prints the bursts side by side.
async fn fleet(
    app_id: i64,
    dirs: &[std::path::PathBuf],
    n: usize,
    function: &str,
    deadline: Option<Duration>,
) -> Result<(), BoxError> {
    let tracker = "appcreds-installation-tracker";
    let mut columns = Vec::new();
    for dir in dirs {
        let seeding = stack(app_id, 0, |_| {}).await?;
        let (event, timeout) = cold_start_event(tracker, app_id);
        let configure = |c: &mut std::process::Command| seeding.env.apply(c, tracker);
        fleet::run_once(&dir.join(tracker), event, timeout, &configure).await?;
        let Stack { moto, github, env, .. } = stack(app_id, 0, |_| {}).await?;
        let from = aws_sdk_dynamodb::Client::new(&aws::sdk_config(seeding.moto.endpoint()).await);
        let to = aws_sdk_dynamodb::Client::new(&aws::sdk_config(moto.endpoint()).await);
        let rows = fleet::copy_table(&from, &to, &env.installation_table).await?;
        drop(seeding);
        let proxy = appcreds_testkit::fault_proxy::FaultProxy::start(moto.endpoint()).await?;
        let env = FunctionEnv { moto: proxy.url(), ..env };
        let (event, _) = cold_start_event(function, app_id);
        let timeout = deadline.unwrap_or(Duration::from_secs(300));
        let limit = Duration::from_secs(120 + 3 * n as u64).max(timeout + Duration::from_secs(30));
        let burst = fleet::Burst { binary: dir.join(function), processes: n, event, timeout, limit };
        let outcome = burst.run(&|c| env.apply(c, function)).await?;
        let column = fleet::Column {
            label: dir.display().to_string(),
            processes: n,
            outcome,
            aws: proxy.calls(),
            github: github.all_calls(),
        };
        println!("fleet burst: {} ({rows} installation rows from its tracker) done", column.label);
        columns.push(column);
    }
    println!(
        "fleet burst: {n} cold {function} processes at once, each with one Function URL event; per binary directory:"
    );
    print!("{}", fleet::table(&columns));
    // Every answer is a token of its own: one mint each (installation-token's).
    let mints = |ok: usize| if function == "appcreds-installation-token" { ok } else { 0 };
    for c in &columns {
        if c.outcome.ok != c.processes || c.mints() != mints(c.outcome.ok) {
            return Err(format!("{}: {} of {n} answered 200, with {} mints", c.label, c.outcome.ok, c.mints()).into());
        }
    }
    Ok(())
}

/// This process's children, as `/proc` numbers them (in a PID namespace whose `/proc` is the
/// parent's, a child's own PID is not its number there).
fn children() -> std::collections::BTreeSet<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Default::default() };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

/// The peak resident set size (`VmHWM`), in MiB, of the child running `binary` that was not
/// among `before`.
fn peak_rss_mib(binary: &std::path::Path, before: &std::collections::BTreeSet<u32>) -> Option<f64> {
    let pid = children().into_iter().filter(|p| !before.contains(p)).find(|p| {
        let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        cmdline.split(|b| *b == 0).next() == Some(binary.as_os_str().as_encoded_bytes())
    })?;
    appcreds_testkit::peak_rss_mib(&format!("/proc/{pid}/status"))
}

/// docs/github-actions.md, whose zero-install `curl --aws-sigv4` block the local stack runs verbatim.
const README: &str = include_str!("../../../../docs/github-actions.md");

/// The `sh` block after the marker line for the local stack in docs/github-actions.md.
fn readme_curl() -> Result<&'static str, BoxError> {
    let marker = "<!-- The local stack runs the next block verbatim";
    let after = README.split_once(marker).ok_or("docs/github-actions.md lost its curl block's marker")?.1;
    let block = after.split_once("```sh\n").ok_or("no sh block after the marker")?.1;
    Ok(block.split_once("\n```").ok_or("the sh block does not end")?.0)
}

async fn curl_token(base: &str, app_id: i64, github: &GitHubDouble) -> Result<(), BoxError> {
    let run = tokio::process::Command::new("bash")
        .args(["-c", readme_curl()?])
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_SESSION_TOKEN", "local-session")
        .env("APP_ID", app_id.to_string())
        .env("INSTALLATION_TOKEN_URL", format!("{base}/appcreds-installation-token"))
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !run.status.success() {
        return Err(format!(
            "curl --aws-sigv4 failed: {}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        )
        .into());
    }
    let body: Value = serde_json::from_slice(&run.stdout)?;
    let token = body["installationToken"].as_str().ok_or("curl's answer has no installationToken")?;
    let issued = github.issued(token).ok_or("the double did not issue curl's token")?;
    step(&format!(
        "curl --aws-sigv4 \"aws:amz:{REGION}:lambda\" … /tokens/installation (docs/github-actions.md's zero-install path) → installation {}, scope {:?}",
        body["installationId"], issued.permissions
    ));
    Ok(())
}

/// `appcreds token` as a GitHub Actions step would run it: SigV4-signed through the local Function
/// URL, the token masked and the step outputs written to `$GITHUB_OUTPUT`.
async fn cli_token(base: &str, app_id: i64, github: &GitHubDouble) -> Result<(), BoxError> {
    let cli = std::env::current_exe()?.with_file_name("appcreds");
    let outputs = std::env::temp_dir().join(format!("appcreds-local-github-output-{}", std::process::id()));
    let _ = std::fs::remove_file(&outputs);
    let run = tokio::process::Command::new(&cli)
        .args(["token", "--app-id", &app_id.to_string(), "--owner", "octocat", "--permission", "metadata=read"])
        .env("APPCREDS_INSTALLATION_TOKEN_URL", format!("{base}/appcreds-installation-token"))
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &outputs)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {} (cargo build --workspace --bins): {e}", cli.display()))?;
    if !run.status.success() {
        return Err(format!("appcreds token failed: {}", String::from_utf8_lossy(&run.stderr)).into());
    }
    let written = std::fs::read_to_string(&outputs)?;
    let _ = std::fs::remove_file(&outputs);
    let out: std::collections::BTreeMap<&str, &str> = written.lines().filter_map(|l| l.split_once('=')).collect();
    let token = out.get("token").copied().unwrap_or_default();
    let stdout = String::from_utf8_lossy(&run.stdout);
    if !stdout.contains(&format!("::add-mask::{token}")) {
        return Err("appcreds token did not mask the token".into());
    }
    let issued = github.issued(token).ok_or("the double did not issue the CLI's token")?;
    let expected_slug = format!("appcreds-test-app-{app_id}");
    if out.get("installation-id") != Some(&"4002")
        || out.get("app-slug") != Some(&expected_slug.as_str())
        || !out.get("expires-at").is_some_and(|e| e.ends_with('Z'))
        || issued.permissions.len() != 1
    {
        return Err(format!(
            "unexpected GitHub Actions outputs {:?} / token scope {:?}",
            out.keys(),
            issued.permissions
        )
        .into());
    }
    step(&format!(
        "appcreds token --owner octocat --permission metadata=read (GITHUB_ACTIONS) → masked; $GITHUB_OUTPUT has installation-id={}, app-slug={}, expires-at={}; scope {:?}",
        out["installation-id"], out["app-slug"], out["expires-at"], issued.permissions
    ));

    // The job's last step: revoke the token at GitHub.
    let revoke = tokio::process::Command::new(&cli)
        .args(["revoke", "--token-env", "APPCREDS_JOB_TOKEN"])
        .env("APPCREDS_JOB_TOKEN", token)
        .env("GITHUB_API_URL", github.url())
        .stdin(Stdio::null())
        .output()
        .await?;
    if !revoke.status.success() || !github.issued(token).is_some_and(|t| t.revoked) {
        return Err(format!("appcreds revoke failed: {}", String::from_utf8_lossy(&revoke.stderr)).into());
    }
    step("appcreds revoke --token-env … → GitHub revoked the token");
    Ok(())
}

/// The CLI with the local AWS (moto, and the Lambda Invoke API of `cargo lambda watch`).
async fn cli(endpoint: &str, lambda: &str, args: &[&str]) -> Result<std::process::Output, BoxError> {
    let cli = std::env::current_exe()?.with_file_name("appcreds");
    Ok(tokio::process::Command::new(&cli)
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ENDPOINT_URL_LAMBDA", lambda)
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("APPCREDS_STACK")
        .stdin(Stdio::null())
        .output()
        .await?)
}

/// An operator puts a rotation target for the demo user (two repositories) and runs the rotator
/// for it: both repositories then hold the user's new key (opened by the double, the secret equal
/// to the one moto's IAM holds), IAM has the new key active and the old one inactive, and the
/// rotator's tokens are revoked.
async fn rotation(
    endpoint: &str,
    lambda: &str,
    app_table: &str,
    app_id: i64,
    iam: &aws_sdk_iam::Client,
    first_key: &str,
    github: &GitHubDouble,
) -> Result<(), BoxError> {
    let app = app_id.to_string();
    let tables = ["--rotation-table", ROTATION_TABLE, "--app-table", app_table];
    let mut put = vec!["rotation", "put", "--user", DEMO_USER, "--app-id", &app];
    put.extend(["--repository", "octo-org/hello-world", "--repository", "octo-org/docs"]);
    put.extend(tables);
    let out = cli(endpoint, lambda, &put).await?;
    if !out.status.success() {
        return Err(format!("appcreds rotation put: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    step(&format!(
        "appcreds rotation put --user {DEMO_USER} --repository octo-org/hello-world --repository octo-org/docs"
    ));
    let run = ["--output", "json", "rotation", "run", "--user", DEMO_USER, "--function", "appcreds-access-key-rotator"];
    let out = cli(endpoint, lambda, &run).await?;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if !out.status.success() || report["outcome"] != "rotated" {
        return Err(format!("appcreds rotation run: {report} {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let listed = iam.list_access_keys().user_name(DEMO_USER).send().await?;
    let keys: std::collections::BTreeMap<String, bool> = listed
        .access_key_metadata()
        .iter()
        .map(|k| {
            (k.access_key_id().unwrap_or_default().to_string(), k.status().is_some_and(|s| s.as_str() == "Active"))
        })
        .collect();
    let new_key = report["currentKeyId"].as_str().unwrap_or_default().to_string();
    let expected = std::collections::BTreeMap::from([(first_key.to_string(), false), (new_key.clone(), true)]);
    if keys != expected {
        return Err(format!("IAM keys after the rotation: {keys:?}, expected {expected:?}").into());
    }
    // The secret IAM holds for the new key, from moto's own state (IAM never tells it again).
    let moto: Value = reqwest::get(format!("{endpoint}/moto-api/data.json")).await?.json().await?;
    let iam_secret = moto["iam"]["AccessKey"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["access_key_id"] == new_key.as_str()))
        .and_then(|k| k["secret_access_key"].as_str())
        .ok_or("moto's state has no secret for the new key")?;
    for repo in ["octo-org/hello-world", "octo-org/docs"] {
        let id = github.repository_secret(repo, "AWS_ACCESS_KEY_ID");
        let secret = github.repository_secret(repo, "AWS_SECRET_ACCESS_KEY");
        if id.as_deref() != Some(new_key.as_bytes()) || secret.as_deref() != Some(iam_secret.as_bytes()) {
            let id = id.map(|v| String::from_utf8_lossy(&v).into_owned());
            let matches = secret.as_deref() == Some(iam_secret.as_bytes());
            return Err(format!("{repo} after the rotation: key ID {id:?}, secret equals IAM's: {matches}").into());
        }
    }
    let unrevoked =
        github.issued_tokens().iter().filter(|t| t.permissions.contains_key("secrets") && !t.revoked).count();
    if unrevoked > 0 {
        return Err(format!("{unrevoked} rotator token(s) not revoked").into());
    }
    step(&format!(
        "appcreds rotation run --user {DEMO_USER} → key {first_key} → {new_key}: both repositories hold the new pair \
         (opened by the double; the secret byte for byte the one IAM holds), the old key is inactive, the rotator's \
         token is revoked"
    ));
    Ok(())
}

/// `appcreds key list` as an operator runs it, against the local AWS.
async fn cli_key_list(endpoint: &str, app_table: &str, app_id: i64, key_arn: &str) -> Result<(), BoxError> {
    let cli = std::env::current_exe()?.with_file_name("appcreds");
    let run = tokio::process::Command::new(&cli)
        .args(["--output", "json", "key", "list", "--app-table", app_table])
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .output()
        .await?;
    let listed: Value = serde_json::from_slice(&run.stdout).unwrap_or(Value::Null);
    let app = &listed["apps"][0];
    if !run.status.success()
        || app["appId"] != app_id
        || app["kmsKeyArn"] != key_arn
        || app["tags"]["Status"] != "Active"
    {
        return Err(format!("appcreds key list: {listed} {}", String::from_utf8_lossy(&run.stderr)).into());
    }
    let state = app["keyState"].as_str().unwrap_or("?");
    step(&format!("appcreds key list (operator) → App {app_id}: {key_arn}, {state}, Status=Active"));
    Ok(())
}

fn print_usage(base: &str, app_id: i64, github: &GitHubDouble) {
    println!(
        "\nThe local stack is up. Try:\n  curl -s -X POST {base}/appcreds-app-token/tokens/app \\\n    -H 'content-type: application/json' -d '{{\"appId\": {app_id}}}'\n  curl -s -X POST {base}/appcreds-installation-token/tokens/installation \\\n    -H 'content-type: application/json' -d '{{\"appId\": {app_id}, \"owner\": \"octocat\"}}'\n  curl -s -X POST {base}/appcreds-get-installation/installations -H 'content-type: application/json' -d '{{}}'\n\
         \nRequests come from {LOCAL_CALLER}; the access table {ACCESS_TABLE} holds rule {DEMO_RULE:?}, enforced.\n\
         Change it with: appcreds access put --access-table {ACCESS_TABLE} --file rule.yaml (AWS_ENDPOINT_URL of the moto server),\n\
         or start the functions with ACCESS_MODE=open to turn the rules off.\n\
         \nThe GitHub double is at {}. Ctrl-C stops everything.",
        github.url()
    );
}

fn step(message: &str) {
    println!("✔ {message}");
}

/// What a process started by [`spawn_isolated`] gets of this one's environment, beside what its
/// command sets.
enum Inherit {
    /// All of it.
    Environment,
    /// Nothing (a function: [`FunctionEnv::apply`]).
    Nothing,
}

/// Starts `cmd` in a session of its own (cargo lambda signals its whole process group on exit).
fn spawn_isolated(cmd: &mut tokio::process::Command, inherit: Inherit) -> std::io::Result<tokio::process::Child> {
    let std_cmd = cmd.as_std();
    let mut wrapped = tokio::process::Command::new("setsid");
    if let Inherit::Nothing = inherit {
        wrapped.env_clear();
    }
    wrapped.arg(std_cmd.get_program()).args(std_cmd.get_args());
    if let Some(dir) = std_cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    for (k, v) in std_cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    wrapped.stdin(Stdio::null()).kill_on_drop(true).spawn()
}

async fn wait_for_port(port: u16) -> Result<(), BoxError> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("nothing listens on 127.0.0.1:{port} after 20 s").into())
}

/// Stops a child started by [`spawn_isolated`] and everything in its process group.
async fn stop_group(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SIGKILL: cargo lambda watch's SIGTERM handler was seen to signal processes outside its
        // own session; killed outright, it cannot.
        let _ = tokio::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdin(Stdio::null())
            .status()
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
