#![allow(clippy::unwrap_used)]
//! The `appcreds` binary against real parts: the moto server (KMS, DynamoDB, CloudFormation),
//! the GitHub double, and a loopback Function URL.

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use appcreds_testkit::aws::{self, REGION};
use appcreds_testkit::github::{GitHubDouble, Installation};
use appcreds_testkit::moto::Moto;
use appcreds_testkit::unique;
use axum::http::HeaderMap;
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::LineEnding;
use serde_json::{Value, json};

const ROLE: &str = "arn:aws:iam::123456789012:role/appcreds-AppTokenFunctionRole-1A2B3C";

/// Runs `appcreds` with AWS pointed at `endpoint` and test credentials, on a blocking thread so
/// that the test's runtime keeps serving the test's own servers meanwhile.
async fn appcreds(endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_appcreds"));
    cmd.args(args)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        .env_remove("APPCREDS_STACK")
        .env_remove("APPCREDS_APP_TABLE")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write_pem(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("appcreds-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A loopback listener that counts connections: AWS calls that were not supposed to happen.
async fn tripwire() -> (String, Arc<Mutex<usize>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(Mutex::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            *counted.lock().unwrap() += 1;
            drop(socket);
        }
    });
    (url, hits)
}

#[tokio::test]
async fn bad_pems_are_refused_with_a_clear_message_before_any_aws_call() {
    let (endpoint, hits) = tripwire().await;
    let dir = temp_dir();
    let small = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap().to_pkcs1_pem(LineEnding::LF).unwrap();
    let good = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap().to_pkcs1_pem(LineEnding::LF).unwrap();
    let cases = [
        (
            write_pem(&dir, "small.pem", &small),
            4,
            "bad key: the key is smaller than RSA-2048; GitHub App keys are RSA-2048",
        ),
        (
            write_pem(&dir, "ec.pem", include_str!("data/ec-p256.pem")),
            4,
            "bad key: not an RSA private key (PKCS#8 of another algorithm, or corrupt)",
        ),
        (
            write_pem(&dir, "corrupt.pem", &good.replacen("MII", "MIX", 1)),
            4,
            "bad key: the PKCS#1 RSA key cannot be read",
        ),
        (write_pem(&dir, "text.pem", "not a key"), 4, "bad key: not a PEM file"),
        (dir.join("missing.pem").to_string_lossy().into_owned(), 2, "--pem: cannot read"),
    ];
    for (path, code, message) in cases {
        for command in ["import", "rotate"] {
            let args =
                ["key", command, "--app-id", "7", "--pem", &path, "--app-table", "apps", "--function-role-arn", ROLE];
            let out = appcreds(&endpoint, &args, &[]).await;
            assert_eq!(out.status.code(), Some(code), "{command} {path}: {}", stderr(&out));
            assert!(stderr(&out).starts_with(&format!("appcreds: {message}")), "{command} {path}: {}", stderr(&out));
        }
    }
    let big = write_pem(&dir, "big.pem", &"A".repeat(100_000));
    let args = ["key", "import", "--app-id", "7", "--pem", &big, "--app-table", "apps", "--function-role-arn", ROLE];
    let out = appcreds(&endpoint, &args, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).ends_with("is 100000 bytes, too large for a key\n"), "{}", stderr(&out));
    assert!(Path::new(&dir.join("small.pem")).exists(), "a refused PEM is not deleted");
    assert_eq!(*hits.lock().unwrap(), 0, "no AWS call was made");
}

#[tokio::test]
async fn key_flags_are_checked_before_any_aws_call() {
    let (endpoint, hits) = tripwire().await;
    let dir = temp_dir();
    let good = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap().to_pkcs1_pem(LineEnding::LF).unwrap();
    let pem = write_pem(&dir, "app.pem", &good);
    let cases: &[(&[&str], &str)] = &[
        (&["key", "import", "--pem", &pem], "--app-id"),
        (&["key", "import", "--app-id", "0", "--pem", &pem], "--app-id"),
        (&["key", "import", "--app-id", "7"], "--pem"),
        (&["key", "import", "--app-id", "7", "--pem", &pem, "--function-role-arn", ROLE], "--app-table"),
        (&["key", "import", "--app-id", "7", "--pem", &pem, "--app-table", "t"], "--function-role-arn"),
        (
            &["key", "import", "--app-id", "7", "--pem", &pem, "--app-table", "t", "--function-role-arn", "alice"],
            "--function-role-arn",
        ),
        (
            &["key", "rotate", "--app-id", "7", "--pem", &pem, "--schedule-deletion-days", "6"],
            "--schedule-deletion-days",
        ),
        (
            &["key", "rotate", "--app-id", "7", "--pem", &pem, "--schedule-deletion-days", "31"],
            "--schedule-deletion-days",
        ),
        (&["key", "list"], "--app-table"),
        (&["key", "frobnicate"], "frobnicate"),
        (&["revoke", "--token-env", "APPCREDS_TEST_UNSET_VARIABLE"], "--token-env"),
    ];
    for (args, flag) in cases {
        let out = appcreds(&endpoint, args, &[]).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(flag), "{args:?}: {flag} not named in {}", stderr(&out));
    }
    assert_eq!(*hits.lock().unwrap(), 0, "no AWS call was made");
    assert!(Path::new(&pem).exists());
}

/// moto cannot import key material: the binary's import fails after the key exists, so it
/// tags the key `Status=Failed`, names the cleanup command, leaves the App table alone and keeps
/// the PEM even with --delete-pem.
#[tokio::test]
async fn an_import_that_fails_at_kms_tags_the_key_failed_and_prints_the_cleanup() {
    let moto = Moto::shared();
    let sdk = aws::sdk_config(moto.endpoint()).await;
    let (kms, ddb) = (aws_sdk_kms::Client::new(&sdk), aws_sdk_dynamodb::Client::new(&sdk));
    let table = unique("apps");
    aws::create_app_table(&ddb, &table).await.unwrap();
    let dir = temp_dir();
    let pem = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap().to_pkcs1_pem(LineEnding::LF).unwrap();
    let pem = write_pem(&dir, "app.pem", &pem);
    let args = [
        "key",
        "import",
        "--app-id",
        "9001",
        "--pem",
        &pem,
        "--app-table",
        &table,
        "--function-role-arn",
        ROLE,
        "--delete-pem",
    ];
    let out = appcreds(moto.endpoint(), &args, &[]).await;
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(text.starts_with("appcreds: KMS GetParametersForImport failed"), "{text}");
    let arn = text
        .lines()
        .last()
        .and_then(|l| l.trim().strip_prefix("aws kms schedule-key-deletion --key-id "))
        .and_then(|l| l.strip_suffix(" --pending-window-in-days 7"))
        .unwrap_or_else(|| panic!("no cleanup command in {text}"));
    assert!(text.contains("The new KMS key was tagged Status=Failed"), "{text}");
    let tags = kms.list_resource_tags().key_id(arn).send().await.unwrap();
    let status = tags.tags().iter().find(|t| t.tag_key() == "Status").map(|t| t.tag_value());
    assert_eq!(status, Some("Failed"));
    let row = ddb
        .get_item()
        .table_name(&table)
        .key("AppId", aws_sdk_dynamodb::types::AttributeValue::N("9001".into()))
        .send()
        .await
        .unwrap();
    assert!(row.item.is_none(), "the App table was not touched");
    assert!(Path::new(&pem).exists(), "the PEM is kept when the import failed");
}

/// A deployed stack's outputs, as `sam deploy` leaves them; its App table is a real table the
/// stack created.
async fn stack_with_outputs(sdk: &aws_config::SdkConfig, name: &str, function_url: &str) {
    let cfn = aws_sdk_cloudformation::Client::new(sdk);
    let template = json!({
        "Resources": {"AppTable": {"Type": "AWS::DynamoDB::Table", "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "AppId", "AttributeType": "N"}],
            "KeySchema": [{"AttributeName": "AppId", "KeyType": "HASH"}]
        }}},
        "Outputs": {
            "AppTableName": {"Value": {"Ref": "AppTable"}},
            "FunctionRoleArns": {"Value": ROLE},
            "AppTokenFunctionUrl": {"Value": function_url},
            "InstallationTokenFunctionUrl": {"Value": function_url},
            "GetInstallationFunctionUrl": {"Value": function_url},
            "RefreshCacheFunctionUrl": {"Value": function_url}
        }
    });
    cfn.create_stack().stack_name(name).template_body(template.to_string()).send().await.unwrap();
}

#[tokio::test]
async fn key_list_finds_the_app_table_through_the_stack() {
    let moto = Moto::shared();
    let sdk = aws::sdk_config(moto.endpoint()).await;
    let stack = unique("appcreds-list");
    stack_with_outputs(&sdk, &stack, "https://abc.lambda-url.us-east-1.on.aws/").await;
    let key = aws::create_app_key(&aws_sdk_kms::Client::new(&sdk), 31).await.unwrap();
    let table = appcreds_client::stack_outputs(&aws_sdk_cloudformation::Client::new(&sdk), &stack).await.unwrap()
        ["AppTableName"]
        .clone();
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    aws::put_app(&ddb, &table, 31, Some(&key.arn)).await.unwrap();
    aws::put_app(&ddb, &table, 32, None).await.unwrap();

    let out = appcreds(moto.endpoint(), &["--stack", &stack, "--output", "json", "key", "list"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["apps"][0]["appId"], 31);
    assert_eq!(listed["apps"][0]["kmsKeyArn"], key.arn);
    assert_eq!(listed["apps"][0]["keyState"], "Enabled");
    assert_eq!(listed["apps"][0]["tags"]["Status"], "Active");
    assert_eq!(listed["apps"][1], json!({"appId": 32, "kmsKeyArn": null, "keyState": null, "tags": {}}));

    let human = appcreds(moto.endpoint(), &["--stack", &stack, "key", "list"], &[]).await;
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.starts_with("APP        KEY STATE        STATUS    KEY ARN\n"), "{text}");
    assert!(text.contains(&format!("31         Enabled          Active    {}", key.arn)), "{text}");
    assert!(text.contains("32         -                -         (no key)"), "{text}");

    let all =
        appcreds(moto.endpoint(), &["--stack", &stack, "--output", "json", "key", "list", "--all-keys"], &[]).await;
    assert_eq!(all.status.code(), Some(0), "{}", stderr(&all));
    let all: Value = serde_json::from_slice(&all.stdout).unwrap();
    let ours = all["keys"].as_array().unwrap().iter().find(|k| k["keyArn"] == key.arn).unwrap();
    assert_eq!((ours["inUse"].as_bool(), ours["keyState"].as_str()), (Some(true), Some("Enabled")));
    assert_eq!(ours["tags"]["AppId"], "31");

    let missing = appcreds(moto.endpoint(), &["--stack", "no-such-stack", "key", "list"], &[]).await;
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("stack \"no-such-stack\" does not exist"), "{}", stderr(&missing));
}

/// The Function URL comes from the stack's outputs, and the request is SigV4-signed for
/// service `lambda` in the URL's region.
#[tokio::test]
async fn function_urls_come_from_the_stack_outputs() {
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let recorded = seen.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap| {
        let recorded = recorded.clone();
        async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            recorded.lock().unwrap().push((uri.path().to_string(), auth));
            axum::Json(json!({"appId": 5, "appToken": "eyJ.test.jwt", "expirationTime": "2026-11-25T10:00:00Z"}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let moto = Moto::shared();
    let sdk = aws::sdk_config(moto.endpoint()).await;
    let stack = unique("appcreds-urls");
    stack_with_outputs(&sdk, &stack, &url).await;
    let out = appcreds(moto.endpoint(), &["--stack", &stack, "app-token", "--app-id", "5"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "eyJ.test.jwt\n");
    let (path, authorization) = seen.lock().unwrap().pop().unwrap();
    assert_eq!(path, "/tokens/app");
    assert!(authorization.starts_with("AWS4-HMAC-SHA256 Credential=testing/"), "{authorization}");
    assert!(authorization.contains(&format!("/{REGION}/lambda/aws4_request")), "{authorization}");

    // A flag beats the stack: the stack is not even read.
    let out = appcreds(
        "http://127.0.0.1:9",
        &["--stack", &stack, "--app-token-url", &url, "app-token", "--app-id", "5"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(seen.lock().unwrap().len(), 1, "one more call, to the flag's URL");
}

#[tokio::test]
async fn revoke_revokes_at_github_and_a_dead_token_is_refused() {
    let github = GitHubDouble::start().await.unwrap();
    github.install(Installation::org(77, 7701, "octo-org", &[(770101, "repo")]));
    let token = github.issue_token_for_test(7701);
    let env = [("GITHUB_API_URL", github.url()), ("APPCREDS_TEST_TOKEN", token.clone())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let out =
        appcreds("http://127.0.0.1:9", &["--output", "json", "revoke", "--token-env", "APPCREDS_TEST_TOKEN"], &env)
            .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), json!({"revoked": true}));
    assert!(github.issued(&token).unwrap().revoked);
    assert_eq!(github.calls("DELETE /installation/token"), 1);

    let again = appcreds("http://127.0.0.1:9", &["revoke", "--token-env", "APPCREDS_TEST_TOKEN"], &env).await;
    assert_eq!(again.status.code(), Some(4), "{}", stderr(&again));
    assert!(stderr(&again).contains("GitHub does not accept this token (already revoked or expired)"));
    assert!(!String::from_utf8_lossy(&again.stderr).contains(&token), "the token is never printed");
}

#[tokio::test]
async fn revoke_reads_the_token_from_standard_input() {
    use std::io::Write;
    let github = GitHubDouble::start().await.unwrap();
    github.install(Installation::org(78, 7801, "octo-org", &[(780101, "repo")]));
    let token = github.issue_token_for_test(7801);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_appcreds"))
        .args(["revoke"])
        .env("GITHUB_API_URL", github.url())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{token}\n").as_bytes()).unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "revoked\n");
    assert!(github.issued(&token).unwrap().revoked);
}

/// Exit codes tell a script what went wrong: the Function URL answers as Lambda and appcreds do.
#[tokio::test]
async fn exit_codes_distinguish_auth_refusal_failure_and_throttling() {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let app = axum::Router::new().fallback(|body: axum::body::Bytes| async move {
        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
        let (status, error, answer) = match body["appId"].as_i64() {
            Some(1) => (StatusCode::FORBIDDEN, None, json!({"Message": "Forbidden"})),
            Some(2) => {
                (StatusCode::BAD_REQUEST, Some("ClientSideError"), json!({"message": "App 2 is not registered"}))
            }
            Some(3) => (StatusCode::INTERNAL_SERVER_ERROR, Some("ServerSideError"), json!({"message": "Internal"})),
            _ => (
                StatusCode::TOO_MANY_REQUESTS,
                Some("ThrottlingException"),
                json!({"message": "slow down", "retryAfterSeconds": 7}),
            ),
        };
        let mut resp = (status, axum::Json(answer)).into_response();
        if let Some(error) = error {
            resp.headers_mut().insert("x-amzn-errortype", error.parse().unwrap());
        }
        resp
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    for (app_id, code, message) in [
        ("1", 3, "not authorised to call"),
        ("2", 4, "App 2 is not registered"),
        ("3", 5, "appcreds failed: Internal"),
        ("4", 6, "throttled; retry after 7 s"),
    ] {
        let out =
            appcreds("http://127.0.0.1:9", &["--app-token-url", &url, "app-token", "--app-id", app_id], &[]).await;
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
}

/// In GitHub Actions with `id-token: write`, `appcreds token` fetches the job's OIDC token for
/// the stack's audience and sends it in its header, under the SigV4 signature.
#[tokio::test]
async fn in_github_actions_the_jobs_oidc_token_goes_along() {
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let recorded = seen.clone();
    // GitHub's token endpoint: the request token as bearer, the audience as a query parameter.
    let actions = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap| {
        let recorded = recorded.clone();
        async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            recorded.lock().unwrap().push((uri.to_string(), auth));
            axum::Json(json!({"count": 1, "value": "eyJ.job.oidc"}))
        }
    });
    let actions_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let actions_url = format!("http://{}/token?api-version=2.0", actions_listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(actions_listener, actions).await.unwrap() });

    let headers_seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let recorded = headers_seen.clone();
    let function = axum::Router::new().fallback(move |headers: HeaderMap| {
        let recorded = recorded.clone();
        async move {
            let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            recorded.lock().unwrap().push((h("x-appcreds-github-oidc-token"), h("authorization")));
            axum::Json(json!({"appId": 5, "appToken": "eyJ.test.jwt", "expirationTime": "2026-11-25T00:00:00Z"}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, function).await.unwrap() });

    let env = [
        ("GITHUB_ACTIONS", "true"),
        ("ACTIONS_ID_TOKEN_REQUEST_URL", actions_url.as_str()),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token"),
        ("APPCREDS_OIDC_AUDIENCE", "appcreds-prod"),
    ];
    let out = appcreds("http://127.0.0.1:9", &["--app-token-url", &url, "app-token", "--app-id", "5"], &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The App JWT is masked in the job's log before it is printed.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, "::add-mask::eyJ.test.jwt\neyJ.test.jwt\n");
    let (asked, bearer) = seen.lock().unwrap().pop().unwrap();
    assert_eq!(asked, "/token?api-version=2.0&audience=appcreds-prod");
    assert_eq!(bearer, "Bearer request-token");
    let (oidc, authorization) = headers_seen.lock().unwrap().pop().unwrap();
    assert_eq!(oidc, "eyJ.job.oidc");
    assert!(authorization.contains("x-appcreds-github-oidc-token"), "the header is signed: {authorization}");

    let out = appcreds(
        "http://127.0.0.1:9",
        &["--app-token-url", &url, "app-token", "--app-id", "5", "--no-github-oidc"],
        &env,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(headers_seen.lock().unwrap().pop().unwrap().0, "", "--no-github-oidc sends none");
}

/// `rotation put`'s bad inputs are refused before any AWS call (a tripwire endpoint counts
/// connections); an unknown App is refused after reading the App table only; a good target is
/// written and read back by get, list and status; delete removes it.
#[tokio::test]
async fn rotation_targets_are_checked_before_anything_is_written() {
    let (tripwire, hits) = tripwire().await;
    let base =
        ["rotation", "put", "--rotation-table", "t", "--app-table", "a", "--user", "ci-deployer", "--app-id", "7"];
    let cases: &[(&[&str], &str)] = &[
        (&["--repository", "octo-org/api"][..0], "/destinations: names no destination"),
        (&["--repository", "no-slash"], "must be owner/name"),
        (&["--repository", "octo-org/bad name"], "the name may contain only"),
        (
            &["--repository", "octo-org/api", "--key-id-secret", "GITHUB_KEY"],
            "\"GITHUB_KEY\" is not a name GitHub takes",
        ),
        (&["--repository", "octo-org/api", "--secret-key-secret", "1ABC"], "\"1ABC\" is not a name GitHub takes"),
        (&["--environment", "octo-org/api"], "give owner/name:environment"),
        (&["--organization", "octo-org:selected"], "visibility selected needs selectedRepositories"),
        (&["--repository", "octo-org/api", "--grace-hours", "800"], "/graceHours"),
        (&["--repository", "octo-org/api", "--region", "Mars"], "\"Mars\" is not an AWS region"),
    ];
    for (extra, expected) in cases {
        let args: Vec<&str> = base.iter().chain(extra.iter()).copied().collect();
        let out = appcreds(&tripwire, &args, &[]).await;
        assert_eq!(out.status.code(), Some(4), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("nothing was written"), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(*hits.lock().unwrap(), 0, "no AWS call for a bad target");

    let moto = Moto::shared();
    let sdk = aws::sdk_config(moto.endpoint()).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let (apps, rotation) = (unique("apps"), unique("rotation"));
    aws::create_app_table(&ddb, &apps).await.unwrap();
    aws::create_rotation_table(&ddb, &rotation).await.unwrap();
    aws::put_app(&ddb, &apps, 77, None).await.unwrap();
    let tables = ["--rotation-table", rotation.as_str(), "--app-table", apps.as_str()];
    let put = |app: &'static str| {
        let mut args = vec!["rotation", "put", "--user", "ci-deployer", "--app-id", app];
        args.extend(["--repository", "octo-org/api", "--environment", "octo-org/api:production"]);
        args.extend(["--organization", "octo-org:selected:web,tools", "--max-age-hours", "48", "--grace-hours", "2"]);
        args.extend(tables);
        args
    };
    let out = appcreds(moto.endpoint(), &put("78"), &[]).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("App 78 is not registered"), "{}", stderr(&out));
    let scanned = ddb.scan().table_name(&rotation).send().await.unwrap();
    assert_eq!(scanned.count(), 0, "nothing was written");

    let out = appcreds(moto.endpoint(), &put("77"), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut get = vec!["--output", "json", "rotation", "get", "--user", "ci-deployer"];
    get.extend(tables);
    let out = appcreds(moto.endpoint(), &get, &[]).await;
    let target: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(target["spec"]["destinations"].as_array().unwrap().len(), 3);
    assert_eq!(target["spec"]["secretNames"]["accessKeyId"], "AWS_ACCESS_KEY_ID");
    assert_eq!(target["spec"]["maxAgeHours"], 48);
    assert_eq!(target["pendingSecret"], false);
    assert_eq!(target["behind"].as_array().unwrap().len(), 3, "no key written yet");
    let mut status = vec!["rotation", "status", "--user", "ci-deployer"];
    status.extend(tables);
    let out = appcreds(moto.endpoint(), &status, &[]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("env:octo-org/api:production") && text.contains("org:octo-org"), "{text}");
    let mut delete = vec!["rotation", "delete", "--user", "ci-deployer"];
    delete.extend(tables);
    assert_eq!(appcreds(moto.endpoint(), &delete, &[]).await.status.code(), Some(0));
    let out = appcreds(moto.endpoint(), &delete, &[]).await;
    assert_eq!(out.status.code(), Some(4), "a second delete finds nothing: {}", stderr(&out));
}

/// `token --owner a --owner b`: one call to `POST /tokens/installations` with a target per owner
/// (each with the flags' scope), and a token per owner: a line each, one JSON line, or in GitHub
/// Actions masked and written to the step outputs. A refusal prints no token at all.
#[tokio::test]
async fn several_owners_get_a_token_each_in_one_call() {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let asked: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let recorded = asked.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
        let recorded = recorded.clone();
        async move {
            let body: Value = serde_json::from_slice(&body).unwrap_or_default();
            recorded.lock().unwrap().push((uri.path().to_string(), body.clone()));
            let targets = body["targets"].as_array().cloned().unwrap_or_default();
            if targets.iter().any(|t| t["owner"] == "refused") {
                let answer = json!({"message": "target 1: no access rule allows it", "targetIndex": 1});
                return (StatusCode::FORBIDDEN, [("x-amzn-errortype", "AccessDeniedException")], axum::Json(answer))
                    .into_response();
            }
            let token = |i: usize, t: &Value| {
                json!({"installationToken": format!("ghs_{}", t["owner"].as_str().unwrap()), "nodeId": format!("N{i}"),
                       "appId": 5, "installationId": 70 + i, "appSlug": "my-app",
                       "expirationTime": format!("2026-11-25T0{}:00:00Z", 2 - i), "actualScopeDown": {}})
            };
            // A broken server: no token for an owner "short".
            let tokens: Vec<Value> =
                targets.iter().enumerate().filter(|(_, t)| t["owner"] != "short").map(|(i, t)| token(i, t)).collect();
            axum::Json(json!({"tokens": tokens})).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut args = vec!["--installation-token-url", &url, "token", "--app-id", "5", "--owner", "octo-org"];
        args.extend_from_slice(&["--owner", "octocat", "--permission", "contents=read"]);
        args.iter().map(|a| a.to_string()).chain(extra.iter().map(|a| a.to_string())).collect()
    };
    let run = |args: Vec<String>, env: Vec<(&'static str, String)>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        appcreds("http://127.0.0.1:9", &args, &env).await
    };

    let out = run(args(&[]), vec![]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "octo-org ghs_octo-org\noctocat ghs_octocat\n");
    let (path, body) = asked.lock().unwrap().pop().unwrap();
    assert_eq!(path, "/tokens/installations");
    let scope = json!({"permissions": {"contents": "read"}});
    assert_eq!(
        body,
        json!({"targets": [{"appId": 5, "owner": "octo-org", "scopeDown": scope}, {"appId": 5, "owner": "octocat", "scopeDown": scope}]})
    );

    let mut json_args = vec!["--output".to_string(), "json".to_string()];
    json_args.extend(args(&[]));
    let out = run(json_args, vec![]).await;
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["tokens"][1]["owner"], "octocat");
    assert_eq!(printed["tokens"][1]["installationToken"], "ghs_octocat");
    assert_eq!(printed["tokens"][0]["installationId"], 70);

    let dir = temp_dir();
    let outputs = dir.join("github-output");
    let out =
        run(args(&[]), vec![("GITHUB_ACTIONS", "true".into()), ("GITHUB_OUTPUT", outputs.display().to_string())]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("::add-mask::ghs_octo-org\n::add-mask::ghs_octocat\n"),
        "masked before anything prints them: {stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(&outputs).unwrap(),
        "tokens={\"octo-org\":\"ghs_octo-org\",\"octocat\":\"ghs_octocat\"}\ntoken-octo-org=ghs_octo-org\n\
         token-octocat=ghs_octocat\napp-slug=my-app\nexpires-at=2026-11-25T01:00:00Z\n"
    );

    let refused: Vec<String> = args(&["--owner", "refused"]);
    let out = run(refused, vec![]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("target 1: no access rule allows it"), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "no token printed");

    // An answer without a token for every owner: an error, and no owner's token is printed or
    // written (not the others' either: which is whose would be a guess).
    let outputs = dir.join("github-output-short");
    let short = vec![("GITHUB_ACTIONS", "true".into()), ("GITHUB_OUTPUT", outputs.display().to_string())];
    let out = run(args(&["--owner", "short"]), short).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 tokens in the answer for 3 targets"), "{}", stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ghs_"), "no token printed");
    assert!(!outputs.exists(), "no output written");

    // One owner is the single call, as before.
    let one = ["--installation-token-url", url.as_str(), "token", "--app-id", "5", "--owner", "octo-org"];
    let _ = appcreds("http://127.0.0.1:9", &one, &[]).await;
    assert_eq!(asked.lock().unwrap().last().unwrap().0, "/tokens/installation");

    // In GitHub Actions without GITHUB_OUTPUT the outputs could not be written: refused before
    // anything is asked, so no token is minted for nothing (one owner or several).
    let calls = asked.lock().unwrap().len();
    for args in [args(&[]), one.iter().map(|a| a.to_string()).collect()] {
        let out = run(args, vec![("GITHUB_ACTIONS", "true".into())]).await;
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("GITHUB_OUTPUT is not set"), "{}", stderr(&out));
    }
    assert_eq!(asked.lock().unwrap().len(), calls, "nothing asked");
}
