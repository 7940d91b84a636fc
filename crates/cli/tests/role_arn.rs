#![allow(clippy::unwrap_used)]
//! `--role-arn` (or `APPCREDS_ROLE_ARN`): the CLI's AWS credentials are a session of the role,
//! assumed at moto's STS with the job's OIDC token (audience sts.amazonaws.com) from a loopback
//! double of the runner's token endpoint; the process has no AWS credentials of its own. A
//! loopback Function URL records how each request was signed.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use appcreds_testkit::fault_proxy::FaultProxy;
use appcreds_testkit::moto::Moto;
use appcreds_testkit::unique;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::json;

const ROLE: &str = "arn:aws:iam::123456789012:role/appcreds-GitHubActionsCallerRole-X1";

/// What a loopback server was asked: the path and query, and the headers.
type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

/// The runner's OIDC token endpoint, and a Function URL of both app-token and installation-token.
struct Setup {
    oidc_url: String,
    oidc_seen: Seen,
    /// What the OIDC endpoint answers: 200 (a token) unless set otherwise.
    oidc_status: Arc<AtomicU16>,
    function_url: String,
    function_seen: Seen,
    home: PathBuf,
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

impl Setup {
    async fn start() -> Setup {
        let (oidc_seen, function_seen): (Seen, Seen) = Default::default();
        let recorded = oidc_seen.clone();
        let oidc_status = Arc::new(AtomicU16::new(200));
        let status = oidc_status.clone();
        let oidc = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let (recorded, status) = (recorded.clone(), status.clone());
            async move {
                recorded.lock().unwrap().push((uri.to_string(), headers));
                let status = StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap();
                (status, axum::Json(json!({"count": 1, "value": "eyJ.job-oidc.sig"})))
            }
        });
        let recorded = function_seen.clone();
        let function = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let recorded = recorded.clone();
            async move {
                recorded.lock().unwrap().push((uri.to_string(), headers));
                axum::Json(match uri.path() {
                    "/tokens/app" => {
                        json!({"appId": 5, "appToken": "eyJ.app.jwt", "expirationTime": "2026-12-05T12:00:00Z"})
                    }
                    _ => json!({
                        "installationToken": "ghs_fromTheRoleSession", "nodeId": "O_kgDOAA", "appId": 5,
                        "expirationTime": "2099-01-01T00:00:00Z", "actualScopeDown": {},
                    }),
                })
            }
        });
        let home = std::env::temp_dir().join(unique("appcreds-role"));
        std::fs::create_dir_all(&home).unwrap();
        Setup {
            oidc_url: format!("{}/token?api-version=2.0", serve(oidc).await),
            oidc_seen,
            oidc_status,
            function_url: serve(function).await,
            function_seen,
            home,
        }
    }

    /// `appcreds args` with AWS at moto but no AWS credentials of its own (no keys, no profile, no
    /// instance role); in a GitHub Actions job with `id-token: write` unless `oidc` is false.
    async fn appcreds(&self, args: &[&str], oidc: bool, env: &[(&str, &str)], input: &str) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_appcreds"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("AWS_CONFIG_FILE", self.home.join("no-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.home.join("no-credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", Moto::shared().endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("APPCREDS_APP_TOKEN_URL", &self.function_url)
            .env("APPCREDS_INSTALLATION_TOKEN_URL", &self.function_url)
            .env("GITHUB_RUN_ID", "16273849501")
            .env("GITHUB_REPOSITORY", "octo-org/hello-world");
        if oidc {
            cmd.env("ACTIONS_ID_TOKEN_REQUEST_URL", &self.oidc_url)
                .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        appcreds_testkit::output_with_input(cmd, input).await
    }

    /// The access key ID and session token each Function URL request was signed with.
    fn signed_with(&self) -> Vec<(String, String)> {
        let seen = self.function_seen.lock().unwrap();
        seen.iter()
            .map(|(_, h)| {
                let header = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
                let authorization = header("authorization");
                let key = authorization.split("Credential=").nth(1).unwrap().split('/').next().unwrap().to_string();
                (key, header("x-amz-security-token"))
            })
            .collect()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `token` and `git-credential` sign with a session of the role, which the CLI got from moto's
/// STS with the job's OIDC token for sts.amazonaws.com (asked with the runner's request token).
/// Without the role the same process has no AWS credentials at all.
#[tokio::test]
async fn the_role_signs_for_a_process_without_credentials_of_its_own() {
    let s = Setup::start().await;
    let out = s.appcreds(&["--no-github-oidc", "app-token", "--app-id", "5"], true, &[], "").await;
    assert_eq!(out.status.code(), Some(3), "no credentials without the role: {}", stderr(&out));
    assert!(s.function_seen.lock().unwrap().is_empty());

    let out = s.appcreds(&["--role-arn", ROLE, "--no-github-oidc", "app-token", "--app-id", "5"], true, &[], "").await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "eyJ.app.jwt\n");
    let asked = s.oidc_seen.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].0, "/token?api-version=2.0&audience=sts.amazonaws.com");
    assert_eq!(asked[0].1["authorization"], "Bearer request-token");

    let request = "protocol=https\nhost=github.com\npath=octo-org/hello-world.git\n\n";
    let out = s
        .appcreds(
            &["--no-github-oidc", "git-credential", "get", "--app-id", "5"],
            true,
            &[("APPCREDS_ROLE_ARN", ROLE)],
            request,
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("password=ghs_fromTheRoleSession\n"));
    assert_eq!(s.oidc_seen.lock().unwrap().len(), 2, "a session for each process");

    let signed = s.signed_with();
    assert_eq!(signed.len(), 2);
    for (key, session_token) in &signed {
        assert!(key.starts_with("ASIA"), "a session's key, not a user's: {key}");
        assert!(!session_token.is_empty(), "signed with the session token");
    }
    assert_ne!(signed[0].0, signed[1].0, "two processes, two sessions");
}

/// Without `id-token: write` (no ACTIONS_ID_TOKEN_REQUEST_*), `--role-arn` fails at once with
/// exit code 3, saying what the job lacks; nothing is sent. A malformed ARN is a usage error.
#[tokio::test]
async fn without_id_token_write_the_role_is_a_clear_error() {
    let s = Setup::start().await;
    for args in [
        &["--role-arn", ROLE, "app-token", "--app-id", "5"][..],
        &["--role-arn", ROLE, "exec", "--app-id", "5", "--owner", "octo-org", "--", "true"],
    ] {
        let out = s.appcreds(args, false, &[], "").await;
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("the job needs `permissions: id-token: write`"), "{}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
    assert!(s.function_seen.lock().unwrap().is_empty() && s.oidc_seen.lock().unwrap().is_empty());

    let out = s.appcreds(&["--role-arn", "appcreds-role", "app-token", "--app-id", "5"], true, &[], "").await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not a role ARN"), "{}", stderr(&out));
}

/// A failure to get a session is transient (exit 5, as any network failure) when GitHub's token
/// endpoint or STS does not answer or answers a 5xx, and a refusal (exit 3) when either answers a
/// 4xx, whether the appcreds client or an SDK client asked for the session. No token, the runner's request token or the job's OIDC token, reaches standard error.
#[tokio::test]
async fn no_answer_or_a_5xx_is_transient_and_a_refusal_is_not() {
    let s = Setup::start().await;
    let args = ["--role-arn", ROLE, "--no-github-oidc", "app-token", "--app-id", "5"];
    let check = |out: &Output, code: i32, says: &str| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(err.contains(says), "{err}");
        assert!(!err.contains("request-token") && !err.contains("eyJ"), "no token: {err}");
        assert!(out.stdout.is_empty());
    };
    // The same through the appcreds client (app-token) and through an SDK client (DynamoDB).
    let sdk = ["--role-arn", ROLE, "access", "list", "--access-table", "appcreds-access"];
    for (status, code, says) in
        [(500, 5, "500"), (503, 5, "503"), (429, 5, "429"), (403, 3, "refused the job a token: 403")]
    {
        s.oidc_status.store(status, Ordering::SeqCst);
        check(&s.appcreds(&args, true, &[], "").await, code, says);
        check(&s.appcreds(&sdk, true, &[], "").await, code, says);
    }
    let unreachable = [("ACTIONS_ID_TOKEN_REQUEST_URL", "http://127.0.0.1:1/token")];
    check(&s.appcreds(&args, true, &unreachable, "").await, 5, "cannot reach ACTIONS_ID_TOKEN_REQUEST_URL");
    assert!(s.function_seen.lock().unwrap().is_empty(), "nothing was signed");

    // STS, through a proxy in front of moto: a 5xx (after the SDK's retries), then a refusal.
    s.oidc_status.store(200, Ordering::SeqCst);
    let proxy = FaultProxy::start(Moto::shared().endpoint()).await.unwrap();
    let sts = [("AWS_ENDPOINT_URL_STS", proxy.url())];
    let sts: Vec<(&str, &str)> = sts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    proxy.inject("AssumeRoleWithWebIdentity", 10, 500, "InternalFailure");
    check(&s.appcreds(&args, true, &sts, "").await, 5, "cannot reach AWS STS");
    check(&s.appcreds(&sdk, true, &sts, "").await, 5, "cannot reach AWS STS");
    let proxy = FaultProxy::start(Moto::shared().endpoint()).await.unwrap();
    let sts = [("AWS_ENDPOINT_URL_STS", proxy.url())];
    let sts: Vec<(&str, &str)> = sts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    proxy.inject("AssumeRoleWithWebIdentity", 2, 403, "AccessDenied"); // one for each command
    check(&s.appcreds(&args, true, &sts, "").await, 3, "AccessDenied");
    assert_eq!(proxy.calls().get("AssumeRoleWithWebIdentity"), Some(&1), "a refusal is not retried");
    check(&s.appcreds(&sdk, true, &sts, "").await, 3, "AccessDenied");
    proxy.inject("AssumeRoleWithWebIdentity", 10, 400, "Throttling");
    check(&s.appcreds(&args, true, &sts, "").await, 5, "Throttling");
    let sts = [("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:1")];
    check(&s.appcreds(&args, true, &sts, "").await, 5, "cannot reach AWS STS");
    assert!(s.function_seen.lock().unwrap().is_empty(), "nothing was signed");
}

/// An empty `--role-arn` or `APPCREDS_ROLE_ARN` is no role (a workflow's unset `vars.X`): the
/// standard chain applies, here with no credentials at all (exit 3), and no token is asked for.
#[tokio::test]
async fn an_empty_role_arn_is_no_role() {
    let s = Setup::start().await;
    for (args, env) in [
        (&["--role-arn", "", "app-token", "--app-id", "5"][..], &[][..]),
        (&["app-token", "--app-id", "5"], &[("APPCREDS_ROLE_ARN", "")]),
    ] {
        let out = s.appcreds(args, true, env, "").await;
        assert_eq!(out.status.code(), Some(3), "{args:?} {env:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("no AWS credentials"), "{}", stderr(&out));
        assert!(!stderr(&out).contains("role"), "{}", stderr(&out));
    }
    assert!(s.oidc_seen.lock().unwrap().is_empty(), "no role, no OIDC token for STS");
}
