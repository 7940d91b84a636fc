#![allow(clippy::unwrap_used)]
//! `appcreds access …` against the access table on the moto server: rules written only when the
//! whole file is valid, versions that refuse a lost race, and `access test`'s decisions.

use std::path::PathBuf;
use std::process::Output;

use appcreds_testkit::aws::{self, REGION};
use appcreds_testkit::moto::Moto;
use appcreds_testkit::unique;
use serde_json::{Value, json};

async fn appcreds(table: &str, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_appcreds"));
    cmd.args(args)
        .env_remove("APPCREDS_STACK")
        .env("APPCREDS_ACCESS_TABLE", table)
        .env("AWS_ENDPOINT_URL", Moto::shared().endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(std::process::Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&out.stdout)))
}

fn file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique("appcreds-access"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn table() -> (String, aws_sdk_dynamodb::Client) {
    let sdk = aws::sdk_config(Moto::shared().endpoint()).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("access");
    aws::create_access_table(&ddb, &table).await.unwrap();
    (table, ddb)
}

async fn rows(ddb: &aws_sdk_dynamodb::Client, table: &str) -> usize {
    ddb.scan().table_name(table).send().await.unwrap().items.unwrap_or_default().len()
}

const RULE: &str = include_str!("data/release-rule.yaml");

#[tokio::test]
async fn rules_are_written_read_listed_and_deleted_with_versions() {
    let (table, ddb) = table().await;
    let path = file("release.yaml", RULE);
    let path = path.to_str().unwrap();
    let put = appcreds(&table, &["access", "put", "--file", path, "--output", "json"]).await;
    assert!(put.status.success(), "{}", stderr(&put));
    assert_eq!(stdout_json(&put), json!({"written": [{"id": "release", "version": 1}]}));
    let again = appcreds(&table, &["access", "put", "--file", path, "--output", "json"]).await;
    assert_eq!(stdout_json(&again), json!({"written": [{"id": "release", "version": 2}]}), "over the version it had");

    // An operator who read version 1 loses the race to whoever wrote version 2.
    let stale = appcreds(&table, &["access", "put", "--file", path, "--expect-version", "1"]).await;
    assert_eq!(stale.status.code(), Some(4));
    assert!(
        stderr(&stale).contains("rule \"release\" is at version 2, not 1: someone changed it"),
        "{}",
        stderr(&stale)
    );
    let new_only = appcreds(&table, &["access", "put", "--file", path, "--expect-version", "0"]).await;
    assert_eq!(new_only.status.code(), Some(4), "version 0 means: must be new");

    let got = appcreds(&table, &["access", "get", "--id", "release", "--output", "json"]).await;
    let got = stdout_json(&got);
    assert_eq!(got["version"], 2);
    assert_eq!(got["rule"]["permissions"], json!({"contents": "write", "metadata": "read"}));
    let listed = stdout_json(&appcreds(&table, &["access", "list", "--output", "json"]).await);
    assert_eq!(listed["rules"].as_array().unwrap().len(), 1);
    let human = appcreds(&table, &["access", "list"]).await;
    assert!(String::from_utf8_lossy(&human.stdout).contains("release"));

    let wrong = appcreds(&table, &["access", "delete", "--id", "release", "--expect-version", "1"]).await;
    assert_eq!(wrong.status.code(), Some(4));
    assert_eq!(rows(&ddb, &table).await, 1, "a stale delete deletes nothing");
    let deleted = appcreds(&table, &["access", "delete", "--id", "release"]).await;
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert_eq!(rows(&ddb, &table).await, 0);
    let gone = appcreds(&table, &["access", "get", "--id", "release"]).await;
    assert_eq!((gone.status.code(), stderr(&gone).trim()), (Some(4), "appcreds: no rule \"release\""));
}

#[tokio::test]
async fn bad_rule_files_are_refused_with_a_clear_message_and_nothing_is_written() {
    let (table, ddb) = table().await;
    let two = format!(
        "- {}\n- {}\n",
        RULE.trim().replace('\n', "\n  "),
        RULE.replace("release", "second").trim().replace('\n', "\n  ")
    );
    let cases: Vec<(&str, String, i32, &str)> = vec![
        (
            "unknown permission",
            two.replace("metadata: read}", "metadata: read, secret_sauce: read}"),
            4,
            "permissions: \"secret_sauce\" is not a GitHub App permission",
        ),
        (
            "bad ARN",
            RULE.replace("arn:aws:iam::123456789012:role/release", "arn:aws:iam::123:role/release"),
            4,
            "the account must be 12 digits",
        ),
        (
            "not IAM",
            RULE.replace("arn:aws:iam::123456789012:role/release", "arn:aws:s3:::bucket"),
            4,
            "is not an IAM role or user ARN",
        ),
        (
            "empty rule",
            "id: empty\nprincipals: []\noperations: []\n".into(),
            4,
            "principals: name at least one IAM role or user ARN",
        ),
        ("empty file", String::new(), 4, "no rule in the file"),
        ("unknown field", format!("{RULE}admin: true\n"), 4, "unknown field `admin`"),
        ("not YAML", "{{{".into(), 4, "not YAML or JSON"),
        (
            "duplicate id",
            format!("- {}\n- {}\n", RULE.trim().replace('\n', "\n  "), RULE.trim().replace('\n', "\n  ")),
            4,
            "rule \"release\" appears twice",
        ),
        ("oversized", format!("{RULE}description: {}\n", "x".repeat(300 * 1024)), 2, "at most 262144 are read"),
        (
            "claims that pin no owner (a job in anyone's account meets them)",
            format!("{RULE}github: {{environment: production, ref: refs/heads/main}}\n"),
            4,
            "no condition pins the owner",
        ),
        (
            "an owner pattern is no anchor",
            format!("{RULE}github: {{repository: \"*/deploy\"}}\n"),
            4,
            "add repository_owner_id (immutable, preferred)",
        ),
        (
            "organization permissions without the opt-in",
            RULE.replace("metadata: read", "metadata: read, organization_secrets: read"),
            4,
            "organization_secrets act on the whole account",
        ),
    ];
    for (what, text, code, expected) in cases {
        let path = file("rules.yaml", &text);
        let out = appcreds(&table, &["access", "put", "--file", path.to_str().unwrap()]).await;
        assert_eq!(out.status.code(), Some(code), "{what}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{what}: {}", stderr(&out));
        assert_eq!(rows(&ddb, &table).await, 0, "{what}: nothing written");
    }
    let missing = appcreds(&table, &["access", "put", "--file", "/nonexistent/rules.yaml"]).await;
    assert_eq!(missing.status.code(), Some(2));
}

#[tokio::test]
async fn access_test_says_allow_or_deny_and_why() {
    let (table, _) = table().await;
    let path = file("release.yaml", RULE);
    assert!(appcreds(&table, &["access", "put", "--file", path.to_str().unwrap()]).await.status.success());
    let caller = "arn:aws:sts::123456789012:assumed-role/release/run-1";
    let test = |request: Value, principal: &'static str| {
        let table = table.clone();
        async move {
            appcreds(
                &table,
                &["access", "test", "--principal", principal, "--request", &request.to_string(), "--output", "json"],
            )
            .await
        }
    };
    let allow = test(json!({"operation": "installation-token", "appId": 7, "owner": "octo-org"}), caller).await;
    assert!(allow.status.success(), "{}", stderr(&allow));
    assert_eq!(
        stdout_json(&allow),
        json!({"decision": "allow", "rule": "release", "scope": {"repositoryNames": ["hello-world"], "permissions": {"contents": "write", "metadata": "read"}}})
    );
    let deny = test(json!({"operation": "installation-token", "appId": 7, "owner": "octo-org", "scopeDown": {"permissions": {"administration": "read"}}}), caller).await;
    assert_eq!(deny.status.code(), Some(4));
    assert_eq!(
        stdout_json(&deny),
        json!({"decision": "deny", "why": "permission administration: read is not granted"})
    );
    let stranger =
        test(json!({"operation": "app-token", "appId": 7}), "arn:aws:sts::123456789012:assumed-role/other/release")
            .await;
    assert_eq!(stranger.status.code(), Some(4));
    let bad = test(json!({"operation": "everything"}), caller).await;
    assert_eq!(bad.status.code(), Some(2));
}

/// A row that today's checks refuse (written by hand, or by an older version): `access test`
/// judges without it, as the functions do, and says why it grants nothing.
#[tokio::test]
async fn access_test_judges_without_a_row_that_pins_no_owner_and_says_so() {
    let (table, ddb) = table().await;
    let loose = json!({
        "id": "loose", "principals": ["arn:aws:iam::123456789012:role/release"],
        "github": {"environment": "production"}, "operations": ["installation-token"], "apps": [7],
        "owners": ["octo-org"], "repositories": ["*"], "permissions": {"contents": "read"}
    });
    let s = |v: &str| aws_sdk_dynamodb::types::AttributeValue::S(v.into());
    ddb.put_item()
        .table_name(&table)
        .item("RuleId", s("loose"))
        .item("Version", aws_sdk_dynamodb::types::AttributeValue::N("1".into()))
        .item("Document", s(&loose.to_string()))
        .send()
        .await
        .unwrap();
    let claims = file(
        "claims.json",
        r#"{"repository": "evil-org/deploy", "repository_owner": "evil-org", "environment": "production"}"#,
    );
    let request = json!({"operation": "installation-token", "appId": 7, "owner": "octo-org"}).to_string();
    let out = appcreds(
        &table,
        &[
            "access",
            "test",
            "--principal",
            "arn:aws:sts::123456789012:assumed-role/release/run-1",
            "--claims",
            claims.to_str().unwrap(),
            "--request",
            &request,
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["decision"], "deny");
    assert!(
        stderr(&out).contains("grants nothing")
            && stderr(&out).contains("rule loose: github: no condition pins the owner"),
        "{}",
        stderr(&out)
    );
}

/// The three worked examples of docs/access-rules.md, with their files, give its answers.
#[tokio::test]
async fn the_readmes_worked_examples_answer_as_documented() {
    let (table, _) = table().await;
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/access-examples");
    for file in ["release.yaml", "readers.yaml", "operators.yaml"] {
        let put = appcreds(&table, &["access", "put", "--file", examples.join(file).to_str().unwrap()]).await;
        assert!(put.status.success(), "{file}: {}", stderr(&put));
    }
    let claims = examples.join("release-claims.json");
    let release_role = "arn:aws:sts::123456789012:assumed-role/appcreds-GitHubActionsCallerRole-EXAMPLE/GitHubActions";
    let test = |principal: &str, claims: Option<&std::path::Path>, request: &str| {
        let mut args = vec![
            "access".to_string(),
            "test".into(),
            "--principal".into(),
            principal.into(),
            "--request".into(),
            request.into(),
        ];
        if let Some(c) = claims {
            args.extend(["--claims".to_string(), c.to_str().unwrap().to_string()]);
        }
        let table = table.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = appcreds(&table, &args).await;
            (out.status.code(), String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
    };
    let release = r#"{"operation": "installation-token", "appId": 123456, "repository": "octo-org/hello-world"}"#;
    assert_eq!(
        test(release_role, Some(&claims), release).await,
        (
            Some(0),
            r#"allow: rule "hello-world-release", minting with scope {"repositoryNames":["hello-world"],"permissions":{"contents":"write","metadata":"read"}}"#.to_string()
        )
    );
    let (code, said) = test(release_role, None, release).await;
    assert_eq!(code, Some(4));
    assert!(
        said.starts_with("deny: no access rule allows ") && said.ends_with("installation-token for App 123456"),
        "{said}"
    );
    let other_repo =
        file("docs-claims.json", r#"{"repository": "octo-org/docs", "ref": "refs/tags/v1", "environment": "release"}"#);
    assert_eq!(test(release_role, Some(&other_repo), release).await.0, Some(4));

    let reader = "arn:aws:sts::123456789012:assumed-role/appcreds-readers/docs-job";
    let write = r#"{"operation": "installation-token", "appId": 123456, "owner": "octo-org", "scopeDown": {"permissions": {"contents": "write"}}}"#;
    assert_eq!(
        test(reader, None, write).await,
        (Some(4), "deny: permission contents: write exceeds the granted read".to_string())
    );

    let operator = "arn:aws:sts::123456789012:assumed-role/platform-operator/alice";
    assert_eq!(
        test(operator, None, r#"{"operation": "app-token", "appId": 123456}"#).await,
        (Some(0), r#"allow: rule "platform-operators""#.to_string())
    );
    assert_eq!(test(operator, None, release).await.0, Some(4), "no installation tokens for operators");
}
