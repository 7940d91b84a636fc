#![allow(clippy::unwrap_used)]
//! The `appcreds` binary with installation tokens in both of GitHub's formats: classic
//! (`ghs_` + 36 letters and digits) and stateless (`ghs_<APPID>_<JWT>`, about 520 characters, two
//! dots). A loopback Function URL hands out a token the GitHub double minted in the format it was
//! told to; `appcreds token` prints it, masks it and writes it to `$GITHUB_OUTPUT` exactly, and
//! `appcreds revoke` revokes it at the double. One test per format, each asserting the exact shape.

use std::process::Output;

use appcreds_testkit::github::{GitHubDouble, Installation, TokenFormat};
use appcreds_testkit::unique;
use serde_json::{Value, json};

/// Runs `appcreds` with test AWS credentials and `env`, on a blocking thread so that the test's
/// runtime keeps serving its servers meanwhile.
async fn appcreds(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_appcreds"));
    cmd.args(args)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        .env_remove("APPCREDS_STACK")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts GitHub's exact shape of `format` for App `app`.
fn assert_shape(token: &str, format: TokenFormat, app: i64) {
    match format {
        TokenFormat::Classic => {
            assert_eq!(token.len(), 40, "{token}");
            assert!(token.strip_prefix("ghs_").unwrap().bytes().all(|b| b.is_ascii_alphanumeric()), "{token}");
        }
        TokenFormat::Stateless => {
            let jwt = token.strip_prefix(&format!("ghs_{app}_")).unwrap_or_else(|| panic!("{token}"));
            assert_eq!(jwt.split('.').count(), 3, "{token}");
            assert!(token.len() > 255, "about 520 characters: {token}");
        }
    }
    assert_eq!(TokenFormat::of(token), Some(format), "{token}");
}

/// A Function URL that answers `POST /tokens/installation` with `reply`.
async fn function_url(reply: Value) -> String {
    let app = axum::Router::new().fallback(move || {
        let reply = reply.clone();
        async move { axum::Json(reply) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn token_printed_masked_written_and_revoked(format: TokenFormat, app: i64) {
    let github = GitHubDouble::start().await.unwrap();
    github.set_token_format(format);
    let installation = app * 100 + 1;
    github.install(Installation::org(app, installation, "octo-org", &[(installation * 10, "repo")]));
    let token = github.issue_token_for_test(installation);
    assert_shape(&token, format, app);
    let expires = appcreds_core::domain::clock::rfc3339(github.issued(&token).unwrap().expires_at);
    let url = function_url(json!({
        "installationToken": token, "nodeId": "O_kgDOocto-org", "appId": app, "installationId": installation,
        "appSlug": format!("appcreds-test-app-{app}"), "expirationTime": expires,
        "actualScopeDown": {"permissions": {"metadata": "read"}}
    }))
    .await;
    let app_id = app.to_string();
    let args = ["--installation-token-url", url.as_str(), "token", "--app-id", app_id.as_str(), "--owner", "octo-org"];

    // In GitHub Actions: masked before anything shows it, and the step outputs, exactly.
    let outputs = std::env::temp_dir().join(unique("appcreds-github-output"));
    std::fs::write(&outputs, "").unwrap();
    let outputs_path = outputs.to_string_lossy().into_owned();
    let out = appcreds(&args, &[("GITHUB_ACTIONS", "true"), ("GITHUB_OUTPUT", &outputs_path)]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("::add-mask::{token}\n{token}\n"));
    assert!(!text(&out.stderr).contains(&token));
    assert_eq!(
        std::fs::read_to_string(&outputs).unwrap(),
        format!(
            "token={token}\ninstallation-id={installation}\napp-slug=appcreds-test-app-{app}\nexpires-at={expires}\n"
        )
    );
    std::fs::remove_file(&outputs).unwrap();

    // Outside Actions: the token alone, or in the JSON answer, exactly.
    let human = appcreds(&args, &[]).await;
    assert_eq!((human.status.code(), text(&human.stdout)), (Some(0), format!("{token}\n")));
    let json_args: Vec<&str> = ["--output", "json"].iter().copied().chain(args).collect();
    let out = appcreds(&json_args, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["installationToken"], token.as_str());

    // Revoked at GitHub with the token itself; a second revocation is refused, without the token.
    let env = [("GITHUB_API_URL", github.url()), ("APPCREDS_TEST_TOKEN", token.clone())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = appcreds(&["revoke", "--token-env", "APPCREDS_TEST_TOKEN"], &env).await;
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "revoked\n".to_string()), "{}", text(&out.stderr));
    assert!(github.issued(&token).unwrap().revoked);
    let again = appcreds(&["revoke", "--token-env", "APPCREDS_TEST_TOKEN"], &env).await;
    assert_eq!(again.status.code(), Some(4), "{}", text(&again.stderr));
    assert!(!text(&again.stderr).contains(&token) && !text(&again.stdout).contains(&token));
}

#[tokio::test]
async fn a_classic_token_is_printed_masked_written_and_revoked() {
    token_printed_masked_written_and_revoked(TokenFormat::Classic, 81).await;
}

#[tokio::test]
async fn a_stateless_token_is_printed_masked_written_and_revoked() {
    token_printed_masked_written_and_revoked(TokenFormat::Stateless, 82).await;
}
