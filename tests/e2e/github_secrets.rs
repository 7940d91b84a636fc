#![allow(clippy::unwrap_used)]
//! Repository Actions secrets against the GitHub double, which opens every sealed value with the
//! repository's own X25519 key: what a repository holds is compared with what was meant, byte for
//! byte; and GitHub's refusals (no `secrets: write`, a repository the token does not cover, a
//! stale key ID) come back as errors, not as silent successes.

use appcreds_core::Error;
use appcreds_core::Secret;
use appcreds_core::github::secrets::{Place, SecretsKey, Written, public_key, put_secret};

async fn repository_key(
    gh: &appcreds_core::github::GitHubClient,
    token: &Secret,
    repo: &str,
) -> Result<SecretsKey, Error> {
    public_key(gh, token, &Place::Repository(repo)).await
}

async fn put_repository_secret(
    gh: &appcreds_core::github::GitHubClient,
    token: &Secret,
    repo: &str,
    key: &SecretsKey,
    name: &str,
    value: &Secret,
) -> Result<Written, Error> {
    put_secret(gh, token, &Place::Repository(repo), key, name, value).await
}
use appcreds_tests::Stack;
use appcreds_tests::github::Installation;

const APP: i64 = 1300;
const REPO: &str = "octo-org/hello-world";

async fn stack() -> Stack {
    let stack = Stack::start().await;
    stack.add_app(APP).await;
    stack.github.install(Installation::org(APP, 1301, "octo-org", &[(13011, "hello-world"), (13012, "docs")]));
    stack
}

#[tokio::test]
async fn a_sealed_secret_arrives_byte_for_byte_and_is_updated_in_place() {
    let stack = stack().await;
    let gh = stack.github_client();
    let token =
        Secret::new(stack.github.issue_scoped_token_for_test(1301, &[("secrets", "write")], Some(&["hello-world"])));
    let key = repository_key(&gh, &token, REPO).await.unwrap();
    let value = Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY+/=");
    let written = put_repository_secret(&gh, &token, REPO, &key, "AWS_SECRET_ACCESS_KEY", &value).await.unwrap();
    assert_eq!(written, Written::Created);
    assert_eq!(stack.github.repository_secret(REPO, "AWS_SECRET_ACCESS_KEY").unwrap(), value.expose().as_bytes());
    let next = Secret::new("a second key, after a rotation");
    let written = put_repository_secret(&gh, &token, REPO, &key, "AWS_SECRET_ACCESS_KEY", &next).await.unwrap();
    assert_eq!(written, Written::Updated);
    assert_eq!(stack.github.repository_secret(REPO, "aws_secret_access_key").unwrap(), next.expose().as_bytes());
    // The listing names secrets and never shows a value.
    let listed: serde_json::Value = gh
        .get("/repos/octo-org/hello-world/actions/secrets", appcreds_core::github::Auth::Installation(&token))
        .await
        .unwrap();
    assert_eq!(listed["total_count"], 1);
    assert_eq!(listed["secrets"][0]["name"], "AWS_SECRET_ACCESS_KEY");
    assert!(!listed.to_string().contains("second key"));
}

#[tokio::test]
async fn githubs_refusals_are_errors() {
    let stack = stack().await;
    let gh = stack.github_client();
    let value = Secret::new("value");
    let writer =
        Secret::new(stack.github.issue_scoped_token_for_test(1301, &[("secrets", "write")], Some(&["hello-world"])));
    let key = repository_key(&gh, &writer, REPO).await.unwrap();

    // Only `secrets: read`: GitHub's 403 "Resource not accessible by integration".
    let reader = Secret::new(stack.github.issue_scoped_token_for_test(1301, &[("secrets", "read")], None));
    let err = put_repository_secret(&gh, &reader, REPO, &key, "X", &value).await.unwrap_err();
    assert!(matches!(err, Error::GitHubRefusedAppcreds { status: 403, .. }), "{err:?}");
    // A repository the token does not cover: 404.
    let err = put_repository_secret(&gh, &writer, "octo-org/docs", &key, "X", &value).await.unwrap_err();
    assert!(matches!(err, Error::GitHubRejected { status: 404, .. }), "{err:?}");
    // A key ID that is not the repository's (stale, or another repository's): 422, nothing written.
    let docs_writer =
        Secret::new(stack.github.issue_scoped_token_for_test(1301, &[("secrets", "write")], Some(&["docs"])));
    let docs_key: SecretsKey = repository_key(&gh, &docs_writer, "octo-org/docs").await.unwrap();
    assert_ne!(docs_key.key_id, key.key_id);
    let err = put_repository_secret(&gh, &docs_writer, "octo-org/docs", &key, "X", &value).await.unwrap_err();
    assert!(matches!(&err, Error::GitHubRejected { status: 422, .. }), "{err:?}");
    assert_eq!(stack.github.repository_secret("octo-org/docs", "X"), None);
}
