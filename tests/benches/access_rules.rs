//! Access control on a warm function: judging one request among 1,000 rules (the policy alone,
//! and the whole app-token request with the rules enforced from the access table on moto), and
//! verifying a GitHub Actions OIDC token with the JWKS cached.

use std::cell::OnceCell;
use std::sync::Arc;

use appcreds_core::domain::access::{InstallationRef, Policy, Rule, RuleDocument, Subject, Target};
use appcreds_core::domain::clock::SystemClock;
use appcreds_core::github::oidc::GitHubOidc;
use appcreds_core::ops::app_token::AppToken;
use appcreds_core::ports::OidcVerifier;
use appcreds_tests::lambda::UrlRequest;
use appcreds_tests::{Stack, endpoint};
use criterion::Criterion;
use serde_json::json;

/// 1,000 rules: one per role `role-N`, the test caller's role (`ci-deployer`) among them.
fn documents() -> Vec<RuleDocument> {
    (0..1000)
        .map(|i| {
            let role = if i == 617 { "ci-deployer".to_string() } else { format!("role-{i}") };
            serde_json::from_value(json!({
                "id": format!("rule-{i:04}"), "principals": [format!("arn:aws:iam::123456789012:role/{role}")],
                "operations": ["installation-token", "app-token"], "apps": [1], "owners": ["octo-org"],
                "repositories": ["hello-world", "docs-*"], "permissions": {"contents": "write", "metadata": "read"}
            }))
            .unwrap()
        })
        .collect()
}

/// The access benchmarks; the stack (with its 1,000 rules on moto) is set up when the first
/// benchmark that needs it is chosen.
pub fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let policy = Policy::new(documents().into_iter().map(|d| Rule::from_document(d, 1).unwrap()).collect());
    let subject = Subject { arn: "arn:aws:sts::123456789012:assumed-role/ci-deployer/run-1", claims: None };
    let installation = InstallationRef { node_id: "O_kgDOocto-org", login: "octo-org", enterprise: false };
    let target = Target::Owner("octo-org".into());
    let scope =
        serde_json::from_value(json!({"repositoryNames": ["docs-site"], "permissions": {"contents": "read"}})).unwrap();
    let mut group = c.benchmark_group("access");
    group.bench_function("judge an installation-token request among 1,000 rules", |b| {
        b.iter(|| policy.installation_token(subject, 1, &target, installation, Some(&scope)).unwrap())
    });

    let setup = OnceCell::new();
    let ready = || {
        setup.get_or_init(|| {
            let (stack, handler, verifier, token) = rt.block_on(async {
                let stack = Stack::start().await;
                stack.add_app(1).await;
                for document in documents() {
                    stack.put_rule(serde_json::to_value(document).unwrap()).await;
                }
                let handler = endpoint(AppToken::new(&stack.enforcing(SystemClock)));
                let verifier = GitHubOidc::new(&stack.github.oidc_issuer(), "appcreds", Arc::new(SystemClock)).unwrap();
                let token =
                    stack.github.oidc_token(&stack.github.oidc_claims("octo-org/hello-world", "appcreds", json!({})));
                verifier.verify(&token).await.unwrap();
                (stack, handler, verifier, token)
            });
            let logs = appcreds_tests::logs_to_sink();
            let event = UrlRequest::post_json("/tokens/app", &json!({"appId": 1})).event_json().to_string();
            rt.block_on(appcreds_tests::expect_ok(&handler, &event));
            (stack, handler, verifier, token, event, logs)
        })
    };
    group.bench_function("app-token request, 1,000 rules enforced (cached), JWT cached", |b| {
        let (_, handler, _, _, event, _) = ready();
        b.to_async(&rt).iter(|| appcreds_tests::expect_ok(handler, event))
    });
    group.bench_function("verify a GitHub Actions OIDC token, JWKS cached", |b| {
        let (_, _, verifier, token, _, _) = ready();
        b.to_async(&rt).iter(|| async { verifier.verify(token).await.unwrap() })
    });
    group.finish();
}
