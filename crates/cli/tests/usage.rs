#![allow(clippy::unwrap_used)]
//! Bad command lines fail before any AWS call, with exit code 2 and a message naming the flag.

use std::process::Command;

fn appcreds(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_appcreds"))
        .args(args)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("APPCREDS_APP_ID")
        .env_remove("GITHUB_API_URL")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn every_bad_flag_is_a_usage_error_naming_the_flag() {
    let long_client_id = "x".repeat(65);
    let cases: &[(&[&str], &str)] = &[
        (&["app-token"], "--app-id"),
        (&["app-token", "--app-id", "0"], "--app-id"),
        (&["app-token", "--app-id", "-5"], "--app-id"),
        (&["app-token", "--app-id", "x"], "--app-id"),
        (&["token", "--app-id", "1"], "--node-id"),
        (&["token", "--app-id", "1", "--owner", "a", "--node-id", "b"], "--node-id"),
        (&["token", "--app-id", "1", "--owner", "a", "--enterprise", "b"], "--enterprise"),
        (&["token", "--app-id", "1", "--owner", "a", "--permission", "contents"], "--permission"),
        (&["token", "--app-id", "1", "--owner", "a", "--permission", "contents=owner"], "--permission"),
        (&["token", "--app-id", "1", "--owner", "a", "--repository-ids", "1,x"], "--repository-ids"),
        (&["key", "import", "--app-id", "1", "--pem", "k.pem", "--client-id", "Iv1 x"], "--client-id"),
        (&["key", "import", "--app-id", "1", "--pem", "k.pem", "--client-id", ""], "--client-id"),
        (&["key", "rotate", "--app-id", "1", "--pem", "k.pem", "--client-id", "123456"], "--client-id"),
        (&["key", "rotate", "--app-id", "1", "--pem", "k.pem", "--client-id", &long_client_id], "--client-id"),
        (&["installations", "--max-results", "101"], "--max-results"),
        (&["installations", "--max-results", "0"], "--max-results"),
        (&["--output", "yaml", "refresh"], "--output"),
        (&["refresh", "--bogus"], "--bogus"),
        (&["nonsense"], "nonsense"),
        (&["git-credential", "get"], "--app-id"),
        (&["git-credential", "--app-id", "1", "--permission", "contents", "get"], "--permission"),
        (&["git-credential", "--app-id", "1", "--github-api-url", "ghes", "get"], "--github-api-url"),
        (&["exec", "--app-id", "1", "--owner", "a"], "<CMD>"),
        (&["exec", "--app-id", "1", "--", "true"], "--node-id"),
    ];
    for (args, flag) in cases {
        let (code, stderr) = appcreds(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {flag} not named in {stderr}");
    }
}

#[test]
fn a_missing_function_url_is_a_usage_error_too() {
    let out = Command::new(env!("CARGO_BIN_EXE_appcreds"))
        .args(["app-token", "--app-id", "1"])
        .env_remove("APPCREDS_APP_TOKEN_URL")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Function URL for app-token"));
}

#[test]
fn help_teaches() {
    let out = Command::new(env!("CARGO_BIN_EXE_appcreds")).args(["token", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in
        ["--node-id", "--owner", "--repository", "--enterprise", "--repositories", "--permission", "contents=read"]
    {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
}

#[test]
fn key_help_teaches_the_import_and_the_rotation() {
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_appcreds")).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let import = help(&["key", "import", "--help"]);
    for word in
        ["--app-id", "--pem", "--delete-pem", "--function-role-arn", "--app-table", "PKCS#1", "RSA-2048", "--client-id"]
    {
        assert!(import.contains(word), "{word} missing from:\n{import}");
    }
    let rotate = help(&["key", "rotate", "--help"]);
    for word in [
        "--schedule-deletion-days",
        "--client-id",
        "--grace-minutes",
        "--wait",
        "generate a new private key",
        "grace period",
        "wait 10 minutes",
        "delete it on GitHub",
    ] {
        assert!(rotate.contains(word), "{word} missing from:\n{rotate}");
    }
    let retire = help(&["key", "retire", "--help"]);
    for word in ["--app-id", "--schedule-deletion-days", "--early", "Status=Inactive"] {
        assert!(retire.contains(word), "{word} missing from:\n{retire}");
    }
    let top = help(&["--help"]);
    for word in ["key", "revoke", "--stack", "Exit codes"] {
        assert!(top.contains(word), "{word} missing from:\n{top}");
    }
}
