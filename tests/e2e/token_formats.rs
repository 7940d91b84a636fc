#![allow(clippy::unwrap_used)]
//! Installation tokens in both of GitHub's formats through every path appcreds hands one along:
//! the GitHub double itself, the mint (installation-token) and its audit line, revocation, the
//! rate-limit scanner's internal tokens, and the access-key rotator's tokens and audit line.
//!
//! GitHub mints stateless tokens (`ghs_<APPID>_<JWT>`, about 520 characters, two dots) since its
//! 2026 rollout, and classic ones (`ghs_` + 36 letters and digits) when told to. Each path has a
//! test per format, with the double told which to mint and the exact shape asserted: a classic
//! test fails if classic handling breaks, a stateless one if stateless handling breaks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use appcreds_core::Error;
use appcreds_core::Secret;
use appcreds_core::aws::iam::IamAccessKeys;
use appcreds_core::aws::kms::KmsVault;
use appcreds_core::aws::lease_table::DynamoLeases;
use appcreds_core::aws::rotation_table::DynamoRotationStore;
use appcreds_core::domain::clock::SystemClock;
use appcreds_core::domain::rotation::{Destination, SecretNames, TargetSpec};
use appcreds_core::github::Auth;
use appcreds_core::jobs::key_rotation::{Rotator, RotatorPorts, RotatorSettings, TargetOutcome};
use appcreds_core::jobs::rate_limit::RateLimitScanner;
use appcreds_core::ports::{InstallationRecord, InstallationStore, Metric, MetricSink, RotationStore};
use appcreds_testkit::aws;
use appcreds_testkit::unique;
use appcreds_tests::github::tokens::{STATELESS_HEADER, stateless_claims};
use appcreds_tests::github::{Installation, TokenFormat};
use appcreds_tests::lambda::UrlRequest;
use appcreds_tests::{Logs, Stack, send};
use async_trait::async_trait;
use base64::Engine;
use reqwest::Method;
use rsa::sha2::{Digest, Sha256};
use serde_json::{Value, json};

use TokenFormat::{Classic, Stateless};

/// Asserts that `token` has exactly the shape GitHub gives `format` for App `app`: a classic
/// token is `ghs_` and 36 letters and digits; a stateless one is `ghs_<app>_` and a JWT of three
/// base64url segments, hundreds of characters long, that names `installation`.
fn assert_shape(token: &str, format: TokenFormat, app: i64, installation: i64) {
    assert!(token.starts_with("ghs_"), "{token}");
    match format {
        Classic => {
            assert_eq!(token.len(), 40, "{token}");
            assert!(token[4..].bytes().all(|b| b.is_ascii_alphanumeric()), "{token}");
        }
        Stateless => {
            let jwt = token.strip_prefix(&format!("ghs_{app}_")).unwrap_or_else(|| panic!("ghs_{app}_…: {token}"));
            let segments: Vec<&str> = jwt.split('.').collect();
            assert_eq!(segments.len(), 3, "two dots: {token}");
            let base64url =
                |s: &&str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            assert!(segments.iter().all(base64url), "{token}");
            assert!((300..=1000).contains(&token.len()), "about 520 characters, not {}: {token}", token.len());
            assert_eq!(stateless_claims(token).unwrap()["installation_id"], installation, "{token}");
        }
    }
    assert_eq!(TokenFormat::of(token), Some(format), "{token}");
}

/// GitHub's audit-log `hashed_token`: base64 (standard, padded) of the token's SHA-256.
fn github_hashed_token(token: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(token.as_bytes()))
}

/// The hex SHA-256 of `token`, as `token_sha256` has it.
fn hex_sha256(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The pieces of a token that must never reach a log (a stateless token's JWT segments on their own).
fn pieces(token: &str) -> Vec<&str> {
    let mut pieces = vec![token];
    if let Some((_, jwt)) = token.split_once("_").and_then(|(_, rest)| rest.split_once('_')) {
        pieces.extend(jwt.split('.').skip(1));
    }
    pieces
}

// ---------------------------------------------------------------------------------------------
// The double

/// Mints a token at the double as appcreds does (an App JWT), with `X-GitHub-Stateless-S2S-Token`
/// set to `header` if given.
async fn mint_at_the_double(stack: &Stack, app: i64, installation: i64, header: Option<&str>) -> String {
    let jwt = stack.app_jwts(SystemClock).get(app).await.unwrap();
    let url = format!("{}/app/installations/{installation}/access_tokens", stack.github.url());
    let mut req = reqwest::Client::new().post(url).bearer_auth(jwt.token.expose());
    if let Some(value) = header {
        req = req.header(STATELESS_HEADER, value);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 201);
    resp.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string()
}

/// `GET /rate_limit` with `authorization`: the status.
async fn rate_limit_status(stack: &Stack, authorization: &str) -> u16 {
    let url = format!("{}/rate_limit", stack.github.url());
    reqwest::Client::new().get(url).header("authorization", authorization).send().await.unwrap().status().as_u16()
}

/// `DELETE /installation/token` with `token`: the status.
async fn revoke_status(stack: &Stack, token: &str) -> u16 {
    let url = format!("{}/installation/token", stack.github.url());
    reqwest::Client::new().delete(url).bearer_auth(token).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn the_double_mints_stateless_tokens_unless_told_otherwise_as_github_does() {
    const APP: i64 = 1501;
    let stack = Stack::with_installations(APP).await;
    // The rollout's default, and the override header; other values are ignored, as GitHub ignores them.
    for (header, format) in [
        (None, Stateless),
        (Some("enabled"), Stateless),
        (Some("disabled"), Classic),
        (Some("true"), Stateless),
        (Some("0"), Stateless),
    ] {
        let token = mint_at_the_double(&stack, APP, 71, header).await;
        assert_shape(&token, format, APP, 71);
        assert_eq!(stack.github.issued(&token).unwrap().format, format, "{header:?}");
    }
    // A double told to mint classic tokens, as an App outside the rollout gets them.
    stack.github.set_token_format(Classic);
    for (header, format) in
        [(None, Classic), (Some("enabled"), Stateless), (Some("disabled"), Classic), (Some("1"), Classic)]
    {
        let token = mint_at_the_double(&stack, APP, 72, header).await;
        assert_shape(&token, format, APP, 72);
    }
    // Stateless tokens differ each time, and carry what they grant.
    let (a, b) = (
        mint_at_the_double(&stack, APP, 71, Some("enabled")).await,
        mint_at_the_double(&stack, APP, 71, Some("enabled")).await,
    );
    assert_ne!(a, b);
    let claims = stateless_claims(&a).unwrap();
    assert_eq!((claims["app_id"].as_i64(), claims["repository_selection"].as_str()), (Some(APP), Some("all")));
}

/// The double accepts a token of `format` (either scheme), refuses it tampered with or cut to 40
/// characters, and revokes it: after `DELETE /installation/token` it is refused, and so is a second
/// revocation.
async fn the_double_accepts_and_revokes(format: TokenFormat, app: i64) {
    let stack = Stack::with_installations(app).await;
    stack.github.set_token_format(format);
    let token = mint_at_the_double(&stack, app, 71, None).await;
    assert_shape(&token, format, app, 71);
    let other = mint_at_the_double(&stack, app, 71, None).await;

    assert_eq!(rate_limit_status(&stack, &format!("Bearer {token}")).await, 200);
    assert_eq!(rate_limit_status(&stack, &format!("token {token}")).await, 200);
    let last = token.chars().last().unwrap();
    let tampered = format!("{}{}", &token[..token.len() - 1], if last == 'A' { 'B' } else { 'A' });
    let swapped_app = token.replacen(&format!("ghs_{app}_"), &format!("ghs_{}_", app + 1), 1);
    for bad in [tampered.as_str(), &token[..40], &token[..token.len() - 1], swapped_app.as_str()] {
        if bad != token {
            assert_eq!(rate_limit_status(&stack, &format!("Bearer {bad}")).await, 401, "{bad}");
        }
    }

    assert_eq!(revoke_status(&stack, &token).await, 204);
    assert!(stack.github.issued(&token).unwrap().revoked);
    assert_eq!(rate_limit_status(&stack, &format!("Bearer {token}")).await, 401, "revoked");
    assert_eq!(revoke_status(&stack, &token).await, 401, "already revoked");
    assert_eq!(rate_limit_status(&stack, &format!("Bearer {other}")).await, 200, "only that token");
}

#[tokio::test]
async fn the_double_accepts_verifies_and_revokes_classic_tokens() {
    the_double_accepts_and_revokes(Classic, 1502).await;
}

#[tokio::test]
async fn the_double_accepts_verifies_and_revokes_stateless_tokens() {
    the_double_accepts_and_revokes(Stateless, 1503).await;
}

// ---------------------------------------------------------------------------------------------
// installation-token: the mint, the audit line, the token at GitHub, its revocation

/// installation-token hands out a token of `format`, exactly as GitHub minted it; its audit line
/// carries GitHub's `hashed_token` (and the hex digest) and never the token; the token works at
/// GitHub through appcreds' own client, which revokes it as the rotator does.
async fn mint_audit_use_and_revoke(format: TokenFormat, app: i64) {
    let logs = Logs::capture();
    let stack = Stack::with_installations(app).await;
    stack.github.set_token_format(format);
    let handler = stack.installation_token_handler();
    let scoped =
        json!({"appId": app, "repository": "octo-org/docs", "scopeDown": {"permissions": {"contents": "read"}}});
    let mut tokens = Vec::new();
    for body in [json!({"appId": app, "owner": "octocat"}), scoped] {
        let reply = send(|r| handler.handle(r), UrlRequest::post_json("/tokens/installation", &body)).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        let token = reply.body["installationToken"].as_str().unwrap().to_string();
        let installation = reply.body["installationId"].as_i64().unwrap();
        assert_shape(&token, format, app, installation);
        let issued = stack.github.issued(&token).expect("exactly the token GitHub minted");
        assert_eq!((issued.format, issued.installation_id), (format, installation));
        tokens.push(token);
    }

    let audit = logs.lines_for("appcreds::audit");
    assert_eq!(audit.len(), 2, "{audit:?}");
    for (line, token) in audit.iter().zip(&tokens) {
        let f = &line["fields"];
        assert_eq!(f["kind"], "installation-token");
        assert_eq!(f["hashed_token"], github_hashed_token(token), "GitHub's hashed_token");
        assert_eq!(f["hashed_token"].as_str().unwrap().len(), 44, "standard base64, padded");
        assert_eq!(f["token_sha256"], hex_sha256(token));
    }

    let github = stack.github_client();
    for token in &tokens {
        let secret = Secret::new(token.clone());
        let limits: Value = github.get("/rate_limit", Auth::Installation(&secret)).await.unwrap();
        assert!(limits["resources"]["core"]["limit"].is_i64(), "{limits}");
        let reply =
            github.send(Method::DELETE, "/installation/token", Auth::Installation(&secret), None).await.unwrap();
        assert_eq!(reply.status, 204);
        assert!(stack.github.issued(token).unwrap().revoked);
        let refused = github.get::<Value>("/rate_limit", Auth::Installation(&secret)).await.unwrap_err();
        assert!(matches!(refused, Error::GitHubRejected { status: 401, .. }), "{refused:?}");
    }
    let text = logs.text();
    for token in &tokens {
        for piece in pieces(token) {
            assert!(!text.contains(piece), "no token, nor a part of one, reaches a log");
        }
    }
}

#[tokio::test]
async fn installation_token_mints_audits_and_revokes_a_classic_token() {
    mint_audit_use_and_revoke(Classic, 1504).await;
}

#[tokio::test]
async fn installation_token_mints_audits_and_revokes_a_stateless_token() {
    mint_audit_use_and_revoke(Stateless, 1505).await;
}

// ---------------------------------------------------------------------------------------------
// The rate-limit scanner's internal tokens

/// Metrics kept in memory.
#[derive(Default)]
struct Recorded(Mutex<Vec<Metric>>);

#[async_trait]
impl MetricSink for Recorded {
    async fn put(&self, data: Vec<Metric>) -> Result<(), Error> {
        self.0.lock().unwrap().extend(data);
        Ok(())
    }
}

/// Two scans of two installations: each reads `/rate_limit` with a `metadata: read` token of
/// `format`, minted once per installation and reused from the scanner's cache the second time.
async fn the_scanner_uses_and_reuses(format: TokenFormat, app: i64) {
    let stack = Stack::start().await;
    stack.add_app(app).await;
    stack.github.set_token_format(format);
    let mut rows = Vec::new();
    for (id, login) in [(7101, "alpha"), (7102, "beta")] {
        stack.github.install(Installation::org(app, id, login, &[(id * 10, "repo")]));
        let node_id = format!("O_kgDO{login}");
        rows.push(InstallationRecord {
            app_id: app,
            installation_id: id,
            node_id,
            target_type: "Organization".into(),
            name: login.into(),
        });
    }
    stack
        .installation_store()
        .write(rows.into_iter().map(Into::into).collect(), Vec::new(), "2026-11-24T00:00:00Z")
        .await
        .unwrap();
    let mut services = stack.services();
    let sink = Arc::new(Recorded::default());
    services.metrics = sink.clone();
    let scanner = RateLimitScanner::new(&services);
    for run in 0..2 {
        let report = scanner.run().await.unwrap();
        assert_eq!((report.scanned, report.failed.len()), (2, 0), "run {run}: {report:?}");
    }
    let used = stack.github.rate_limit_tokens();
    assert_eq!(used.len(), 4);
    for token in &used {
        assert_shape(&token.token, format, app, token.installation_id);
        assert_eq!(token.format, format);
        assert_eq!(token.permissions, BTreeMap::from([("metadata".to_string(), "read".to_string())]));
    }
    assert_eq!(stack.github.issued_tokens().len(), 2, "one token per installation, reused by the second run");
    let first: BTreeSet<&str> = used[..2].iter().map(|t| t.token.as_str()).collect();
    let second: BTreeSet<&str> = used[2..].iter().map(|t| t.token.as_str()).collect();
    assert_eq!((first.len(), &first), (2, &second), "the second run used the first run's tokens");
    let sent = sink.0.lock().unwrap();
    assert!(
        sent.iter().any(|m| m.dimensions.iter().any(|(n, v)| *n == "InstallationID" && v == "7102")),
        "metrics sent"
    );
}

#[tokio::test]
async fn the_scanner_uses_and_reuses_classic_tokens() {
    the_scanner_uses_and_reuses(Classic, 1506).await;
}

#[tokio::test]
async fn the_scanner_uses_and_reuses_stateless_tokens() {
    the_scanner_uses_and_reuses(Stateless, 1507).await;
}

// ---------------------------------------------------------------------------------------------
// The access-key rotator: its tokens, their audit line, their revocation

/// One rotation of an IAM user's key into a repository of `octo-org`: the rotator's token is of
/// `format`, its audit line carries GitHub's `hashed_token`, and it is revoked when the run ends.
async fn the_rotator_audits_and_revokes(format: TokenFormat, app: i64) {
    let logs = Logs::capture();
    let stack = Stack::start().await;
    stack.add_app(app).await;
    stack.github.set_token_format(format);
    let mut org = Installation::org(app, 1610, "octo-org", &[(1601, "api")]);
    org.permissions.insert("secrets".into(), "write".into());
    stack.github.install(org);
    let iam = aws_sdk_iam::Client::new(&stack.sdk);
    let user = unique("deployer");
    aws::create_rotated_user(&iam, &user, "/appcreds-rotated/").await.unwrap();
    let (table, leases) = (unique("rotation"), unique("leases"));
    aws::create_rotation_table(&stack.ddb, &table).await.unwrap();
    aws::create_lease_table(&stack.ddb, &leases).await.unwrap();
    let vault_key = aws::create_vault_key(&stack.kms).await.unwrap();
    let store = DynamoRotationStore::new(stack.ddb.clone(), &table);
    let spec = TargetSpec {
        user_name: user.clone(),
        app_id: app,
        destinations: vec![Destination::Repository { repository: "octo-org/api".into() }],
        secret_names: SecretNames::default(),
        max_age_hours: 24,
        grace_hours: 1,
        region: None,
    };
    store.put_spec(&spec).await.unwrap();
    let mut services = stack.services();
    services.leases = Arc::new(DynamoLeases::new(stack.ddb.clone(), &leases));
    services.metrics = Arc::new(Recorded::default());
    let ports = RotatorPorts {
        keys: Arc::new(IamAccessKeys::new(&stack.sdk)),
        targets: Arc::new(store),
        vault: Arc::new(KmsVault::new(stack.kms.clone(), &vault_key)),
    };
    let settings = RotatorSettings {
        writes_per_minute: 60_000,
        key_wait: std::time::Duration::from_secs(5),
        ..RotatorSettings::default()
    };
    let report = Rotator::new(&services, ports, settings).run_target(&user, false).await.unwrap();
    assert_eq!(report.outcome, TargetOutcome::Rotated, "{report:?}");
    assert!(stack.github.repository_secret("octo-org/api", "AWS_SECRET_ACCESS_KEY").is_some());

    let tokens = stack.github.issued_tokens();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    let token = &tokens[0];
    assert_shape(&token.token, format, app, 1610);
    assert!(token.revoked, "revoked when the run ended");
    let audit: Vec<Value> = logs
        .lines_for("appcreds::audit")
        .into_iter()
        .filter(|l| l["fields"]["message"] == "installation token minted for the rotator")
        .collect();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["fields"]["hashed_token"], github_hashed_token(&token.token));
    assert_eq!(audit[0]["fields"]["token_sha256"], hex_sha256(&token.token));
    let text = logs.text();
    for piece in pieces(&token.token) {
        assert!(!text.contains(piece), "no token, nor a part of one, reaches a log");
    }
}

#[tokio::test]
async fn the_rotator_audits_and_revokes_a_classic_token() {
    the_rotator_audits_and_revokes(Classic, 1508).await;
}

#[tokio::test]
async fn the_rotator_audits_and_revokes_a_stateless_token() {
    the_rotator_audits_and_revokes(Stateless, 1509).await;
}
