#![allow(clippy::unwrap_used)]
//! GitHub Actions OIDC tokens, verified against the GitHub double's provider (discovery, JWKS,
//! key rotation), tried from the attacker's side, and bound to access rules through the handler.

use std::sync::Arc;

use appcreds_core::domain::clock::SystemClock;
use appcreds_core::github::oidc::GitHubOidc;
use appcreds_core::ops::installation_token::InstallationToken;
use appcreds_core::ports::OidcVerifier;
use appcreds_tests::github::Installation;
use appcreds_tests::github::oidc::{OidcKey, sign, unsigned};
use appcreds_tests::lambda::{Reply, UrlRequest};
use appcreds_tests::{Stack, endpoint, send};
use serde_json::{Value, json};

const AUDIENCE: &str = "appcreds";
const APP: i64 = 800;

fn verifier(stack: &Stack) -> Arc<GitHubOidc> {
    Arc::new(GitHubOidc::new(&stack.github.oidc_issuer(), AUDIENCE, Arc::new(SystemClock)).unwrap())
}

async fn refusal(verifier: &GitHubOidc, token: &str) -> String {
    match verifier.verify(token).await {
        Err(appcreds_core::Error::AccessDenied(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_token_of_the_provider_verifies_and_gives_its_claims() {
    let stack = Stack::start().await;
    let v = verifier(&stack);
    let claims = stack.github.oidc_claims("octo-org/hello-world", AUDIENCE, json!({"environment": "release"}));
    let verified = v.verify(&stack.github.oidc_token(&claims)).await.unwrap();
    assert_eq!(verified["repository"], "octo-org/hello-world");
    assert_eq!(verified["environment"], "release");
    assert_eq!(verified["ref"], "refs/heads/main");
    assert_eq!(v.fetches().await, 1);
    assert_eq!(stack.github.calls("GET /.well-known/openid-configuration"), 1);
    // Cached: a second token costs no fetch.
    v.verify(&stack.github.oidc_token(&claims)).await.unwrap();
    assert_eq!(stack.github.calls("GET /.well-known/jwks"), 1);
}

#[tokio::test]
async fn forged_and_misaddressed_tokens_are_refused() {
    let stack = Stack::start().await;
    let v = verifier(&stack);
    let good = stack.github.oidc_claims("octo-org/hello-world", AUDIENCE, json!({}));
    let with = |extra: Value| stack.github.oidc_claims("octo-org/hello-world", AUDIENCE, extra);
    let now = good["iat"].as_i64().unwrap();
    let current = stack.github.current_oidc_key();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "another issuer",
            stack.github.oidc_token(&with(json!({"iss": "https://token.actions.githubusercontent.com"}))),
            "its issuer is not",
        ),
        (
            "another audience",
            stack.github.oidc_token(&with(json!({"aud": "sts.amazonaws.com"}))),
            "its audience is not \"appcreds\"",
        ),
        (
            "expired",
            stack.github.oidc_token(&with(json!({"exp": now - 120, "iat": now - 600, "nbf": now - 600}))),
            "it has expired",
        ),
        (
            "not yet valid",
            stack.github.oidc_token(&with(json!({"nbf": now + 600, "exp": now + 900}))),
            "it is not valid yet",
        ),
        (
            "issued in the future",
            stack.github.oidc_token(&with(json!({"iat": now + 600, "exp": now + 900}))),
            "issued in the future",
        ),
        (
            "no expiry",
            stack.github.oidc_token(&{
                let mut c = good.clone();
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
            "no exp claim",
        ),
        // The provider's kid, signed by somebody else's key.
        (
            "forged signature",
            sign(&json!({"alg": "RS256", "kid": current.kid}), &good, &OidcKey::generate("x").key),
            "its signature does not verify",
        ),
        ("alg none", unsigned(&good), "not RS256"),
        (
            "HS256",
            sign(&json!({"alg": "HS256", "kid": current.kid}), &good, &current.key),
            "signed with HS256, not RS256",
        ),
        ("no kid", sign(&json!({"alg": "RS256"}), &good, &current.key), "it names no signing key"),
        ("garbage", "not.a.jwt".into(), "it is not a JWT"),
        ("oversized", format!("{}{}", stack.github.oidc_token(&good), "A".repeat(9000)), "it is too long"),
    ];
    for (what, token, expected) in cases {
        let why = refusal(&v, &token).await;
        assert!(why.starts_with("the GitHub OIDC token is refused: "), "{what}: {why}");
        assert!(why.contains(expected), "{what}: {why}");
    }
    assert!(v.verify(&stack.github.oidc_token(&good)).await.is_ok(), "and the good one still passes");
}

#[tokio::test]
async fn a_rotated_key_is_fetched_but_made_up_kids_cannot_make_the_function_hammer_github() {
    let stack = Stack::start().await;
    let v = verifier(&stack);
    let claims = stack.github.oidc_claims("octo-org/hello-world", AUDIENCE, json!({}));
    v.verify(&stack.github.oidc_token(&claims)).await.unwrap();
    assert_eq!(v.fetches().await, 1);

    // 1,000 tokens naming keys that do not exist: refused without another fetch.
    let stranger = OidcKey::generate("s");
    for i in 0..1000 {
        let token = sign(&json!({"alg": "RS256", "kid": format!("made-up-{i}")}), &claims, &stranger.key);
        assert!(refusal(&v, &token).await.contains("no signing key"));
    }
    assert_eq!(v.fetches().await, 1, "within the refetch interval, no fetch at all");
    assert_eq!(stack.github.calls("GET /.well-known/jwks"), 1);

    // GitHub rotates: a fresh verifier (past its interval) fetches once and accepts the new key.
    stack.github.rotate_oidc_key("double-key-2");
    let fresh = verifier(&stack);
    fresh.verify(&stack.github.oidc_token(&claims)).await.unwrap();
    assert_eq!(fresh.fetches().await, 1);
}

#[tokio::test]
async fn an_unreachable_provider_is_a_server_error_not_a_refusal() {
    let stack = Stack::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let v = GitHubOidc::new(&format!("http://{closed}"), AUDIENCE, Arc::new(SystemClock)).unwrap();
    let token = stack.github.oidc_token(&stack.github.oidc_claims("o/r", AUDIENCE, json!({})));
    assert!(matches!(v.verify(&token).await, Err(appcreds_core::Error::GitHubUnavailable(_))));
    assert!(
        matches!(v.verify(&token).await, Err(appcreds_core::Error::GitHubUnavailable(_))),
        "still, within the interval"
    );
}

async fn token_stack() -> Stack {
    let stack = Stack::start().await;
    stack.add_app(APP).await;
    stack.github.install(Installation::org(APP, 91, "octo-org", &[(9101, "hello-world"), (9102, "docs")]));
    stack
}

async fn post(handler: &appcreds_core::http::Endpoint<InstallationToken>, body: Value, oidc: Option<&str>) -> Reply {
    let mut req = UrlRequest::post_json("/tokens/installation", &body);
    if let Some(token) = oidc {
        req = req.header(appcreds_wire::OIDC_TOKEN_HEADER, token);
    }
    send(|r| handler.handle(r), req).await
}

#[tokio::test]
async fn rules_bind_a_shared_role_to_the_calling_repository() {
    let stack = token_stack().await;
    // One role for every workflow of the organization; the rule tells them apart by their claims.
    stack
        .put_rule(json!({
            "id": "own-repository", "principals": ["arn:aws:iam::123456789012:role/ci-deployer"],
            "github": {"repository_owner": "octo-org", "ref": "refs/heads/main"},
            "operations": ["installation-token"], "apps": [APP], "owners": ["octo-org"],
            "callerRepositoryOnly": true, "permissions": {"contents": "write", "metadata": "read"}
        }))
        .await;
    let mut services = stack.enforcing(SystemClock);
    services.oidc = verifier(&stack);
    let handler = endpoint(InstallationToken::new(&services));
    let body = json!({"appId": APP, "owner": "octo-org"});

    let hello = stack.github.oidc_token(&stack.github.oidc_claims("octo-org/hello-world", AUDIENCE, json!({})));
    let reply = post(&handler, body.clone(), Some(&hello)).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let issued = stack.github.issued(reply.body["installationToken"].as_str().unwrap()).unwrap();
    assert_eq!(issued.repositories, Some(vec!["hello-world".to_string()]), "only the calling repository");

    let docs = stack.github.oidc_token(&stack.github.oidc_claims("octo-org/docs", AUDIENCE, json!({})));
    let reply = post(
        &handler,
        json!({"appId": APP, "owner": "octo-org", "scopeDown": {"repositoryNames": ["hello-world"]}}),
        Some(&docs),
    )
    .await;
    assert_eq!(reply.status, 403, "docs' workflow cannot get hello-world: {:?}", reply.body);
    assert!(reply.body["message"].as_str().unwrap().contains("repository hello-world is not granted"));

    let branch = stack.github.oidc_token(&stack.github.oidc_claims(
        "octo-org/hello-world",
        AUDIENCE,
        json!({"ref": "refs/heads/feature"}),
    ));
    assert_eq!(post(&handler, body.clone(), Some(&branch)).await.status, 403, "another branch");
    assert_eq!(post(&handler, body.clone(), None).await.status, 403, "no token, no claims");
    let forged = sign(
        &json!({"alg": "RS256", "kid": stack.github.current_oidc_key().kid}),
        &stack.github.oidc_claims("octo-org/hello-world", AUDIENCE, json!({})),
        &OidcKey::generate("x").key,
    );
    let reply = post(&handler, body, Some(&forged)).await;
    assert_eq!(
        (reply.status, reply.body["message"].as_str().unwrap()),
        (403, "the GitHub OIDC token is refused: its signature does not verify")
    );
}

/// GitHub's issuer signs a token for any repository on GitHub, with the audience a workflow asks
/// for. A rule whose claims pin no owner (here, only an environment) would be met by a job in an
/// attacker's own account: such a row (written by hand, or by an older version) grants nothing, and
/// a rule anchored by the owner's immutable ID refuses the attacker's job and serves the owner's.
#[tokio::test]
async fn a_job_of_another_owner_with_a_matching_environment_is_refused() {
    let stack = token_stack().await;
    let logs = appcreds_tests::Logs::capture();
    let rule = |id: &str, github: Value| {
        json!({
            "id": id, "principals": ["arn:aws:iam::123456789012:role/ci-deployer"], "github": github,
            "operations": ["installation-token"], "apps": [APP], "owners": ["octo-org"],
            "repositories": ["*"], "permissions": {"contents": "read"}
        })
    };
    // Past `access put`, which refuses it: the row as an older version would have written it.
    stack.put_rule(rule("deploy-anywhere", json!({"environment": "production"}))).await;
    let mut services = stack.enforcing(SystemClock);
    services.oidc = verifier(&stack);
    let handler = endpoint(InstallationToken::new(&services));
    let body = json!({"appId": APP, "owner": "octo-org"});
    let production = json!({"environment": "production"});
    let attacker = stack.github.oidc_token(&stack.github.oidc_claims("evil-org/deploy", AUDIENCE, {
        let mut c = production.clone();
        c["repository_owner_id"] = json!("666");
        c
    }));
    let genuine = stack.github.oidc_token(&stack.github.oidc_claims("octo-org/hello-world", AUDIENCE, production));

    let reply = post(&handler, body.clone(), Some(&attacker)).await;
    assert_eq!(reply.status, 403, "the attacker's job: {:?}", reply.body);
    let reply = post(&handler, body.clone(), Some(&genuine)).await;
    assert_eq!(reply.status, 403, "the unanchored row is no rule, for anyone: {:?}", reply.body);
    assert!(logs.text().contains("no condition pins the owner"), "the row's problem is logged");

    // Anchored by the owner's immutable ID (the double's octo-org is 17): the owner's job passes.
    stack.put_rule(rule("deploy-octo-org", json!({"environment": "production", "repository_owner_id": "17"}))).await;
    let handler = endpoint(InstallationToken::new(&services));
    let reply = post(&handler, body.clone(), Some(&attacker)).await;
    assert_eq!(reply.status, 403, "another owner, the same environment: {:?}", reply.body);
    let reply = post(&handler, body.clone(), Some(&genuine)).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(stack.github.issued_tokens().len(), 1, "only the owner's job got a token");

    // GitHub's immutable subject (repo:OWNER@ID/NAME@ID:…) anchors a rule too.
    stack
        .put_rule(rule("by-subject", json!({"sub": "repo:octo-org@17/hello-world@4242:environment:production"})))
        .await;
    let immutable = |owner: &str, owner_id: &str| {
        stack.github.oidc_token(&stack.github.oidc_claims(
            &format!("{owner}/hello-world"),
            AUDIENCE,
            json!({"sub": format!("repo:{owner}@{owner_id}/hello-world@4242:environment:production"),
                   "repository_owner_id": owner_id, "environment": "staging"}),
        ))
    };
    let handler = endpoint(InstallationToken::new(&services));
    assert_eq!(post(&handler, body.clone(), Some(&immutable("octo-org", "17"))).await.status, 200);
    assert_eq!(
        post(&handler, body, Some(&immutable("octo-org", "666"))).await.status,
        403,
        "the login octo-org held by another account (its ID differs)"
    );
}

/// GitHub's immutable subject (`repo:OWNER@OWNER_ID/NAME@REPO_ID:…`), the default for repositories
/// created or renamed since 2026-07-15, as the double issues it: a rule naming it serves the
/// repository, and refuses a token whose owner ID differs (the login taken over by another
/// account) and the classic form (which does not match it).
#[tokio::test]
async fn a_rule_on_the_immutable_subject_serves_the_repository_and_nobody_else() {
    let stack = token_stack().await;
    stack
        .put_rule(json!({
            "id": "immutable", "principals": ["arn:aws:iam::123456789012:role/ci-deployer"],
            "github": {"sub": "repo:octo-org@17/hello-world@4242:ref:refs/heads/*"},
            "operations": ["installation-token"], "apps": [APP], "owners": ["octo-org"],
            "repositories": ["hello-world"], "permissions": {"contents": "read"}
        }))
        .await;
    let mut services = stack.enforcing(SystemClock);
    services.oidc = verifier(&stack);
    let handler = endpoint(InstallationToken::new(&services));
    let body = json!({"appId": APP, "owner": "octo-org"});

    let immutable = stack.github.oidc_claims_immutable("octo-org/hello-world", AUDIENCE, json!({}));
    assert_eq!(immutable["sub"], "repo:octo-org@17/hello-world@4242:ref:refs/heads/main");
    let reply = post(&handler, body.clone(), Some(&stack.github.oidc_token(&immutable))).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);

    let squatter = stack.github.oidc_claims_immutable(
        "octo-org/hello-world",
        AUDIENCE,
        json!({"repository_owner_id": "666", "environment": "production"}),
    );
    assert_eq!(squatter["sub"], "repo:octo-org@666/hello-world@4242:ref:refs/heads/main");
    let reply = post(&handler, body.clone(), Some(&stack.github.oidc_token(&squatter))).await;
    assert_eq!(reply.status, 403, "another account holding the login: {:?}", reply.body);

    let classic = stack.github.oidc_claims("octo-org/hello-world", AUDIENCE, json!({}));
    assert_eq!(classic["sub"], "repo:octo-org/hello-world:ref:refs/heads/main");
    let reply = post(&handler, body, Some(&stack.github.oidc_token(&classic))).await;
    assert_eq!(reply.status, 403, "the classic subject is another string: {:?}", reply.body);
}

/// Rules can require a repository's custom properties (`repo_property_*` claims, which GitHub adds
/// when the organization includes them) and a `check_run_id`; they pin no owner, so the rule also
/// names the owner's immutable ID.
#[tokio::test]
async fn rules_can_require_custom_property_and_check_run_claims() {
    let stack = token_stack().await;
    stack
        .put_rule(json!({
            "id": "production-repositories", "principals": ["arn:aws:iam::123456789012:role/ci-deployer"],
            "github": {"repository_owner_id": "17", "repo_property_deploy_tier": "production", "check_run_id": "*"},
            "operations": ["installation-token"], "apps": [APP], "owners": ["octo-org"],
            "repositories": ["*"], "permissions": {"contents": "read"}
        }))
        .await;
    let mut services = stack.enforcing(SystemClock);
    services.oidc = verifier(&stack);
    let handler = endpoint(InstallationToken::new(&services));
    let body = json!({"appId": APP, "owner": "octo-org"});
    let token = |extra: Value| {
        stack.github.oidc_token(&stack.github.oidc_claims_immutable("octo-org/hello-world", AUDIENCE, extra))
    };

    let reply = post(&handler, body.clone(), Some(&token(json!({"repo_property_deploy_tier": "production"})))).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    for (what, extra) in [
        ("another value", json!({"repo_property_deploy_tier": "staging"})),
        ("no such property", json!({})),
        ("no check run", json!({"repo_property_deploy_tier": "production", "check_run_id": null})),
        (
            "another owner with the property",
            json!({"repo_property_deploy_tier": "production", "repository_owner_id": "666"}),
        ),
    ] {
        let reply = post(&handler, body.clone(), Some(&token(extra))).await;
        assert_eq!(reply.status, 403, "{what}: {:?}", reply.body);
    }
    assert_eq!(stack.github.issued_tokens().len(), 1);
}
