#![allow(clippy::unwrap_used)]
//! **(ext)** `POST /tokens/installations`: several targets in one call, all or none, through the
//! real handler, the moto server and the GitHub double.

use std::time::{Duration, Instant};

use appcreds_core::domain::clock::SystemClock;
use appcreds_core::http::Endpoint;
use appcreds_core::ops::installation_token::InstallationToken;
use appcreds_tests::github::{Fault, FaultKind};
use appcreds_tests::lambda::{CALLER_ARN, Reply, UrlRequest};
use appcreds_tests::{Logs, Stack, endpoint, send};
use serde_json::{Value, json};

const BATCH: &str = "/tokens/installations";
const SINGLE: &str = "/tokens/installation";
const APP: i64 = 800;
/// The role of [`CALLER_ARN`].
const ROLE: &str = "arn:aws:iam::123456789012:role/ci-deployer";

async fn post(handler: &Endpoint<InstallationToken>, path: &str, body: Value) -> Reply {
    send(|r| handler.handle(r), UrlRequest::post_json(path, &body)).await
}

fn targets(targets: Value) -> Value {
    json!({"targets": targets})
}

/// Whether GitHub takes `token` (its `GET /rate_limit` answers it).
async fn live(stack: &Stack, token: &str) -> bool {
    let reply = reqwest::Client::new()
        .get(format!("{}/rate_limit", stack.github.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    reply.status().is_success()
}

fn mints(stack: &Stack) -> usize {
    stack.github.calls("POST /app/installations/71/access_tokens")
        + stack.github.calls("POST /app/installations/72/access_tokens")
}

#[tokio::test(flavor = "current_thread")]
async fn two_owners_get_two_tokens_each_scoped_as_asked_and_one_audit_line_each() {
    let stack = Stack::with_installations(APP).await;
    let handler = stack.installation_token_handler();
    let logs = Logs::capture();
    let org_scope = json!({"repositoryNames": ["hello-world"], "permissions": {"contents": "read"}});
    let user_scope = json!({"permissions": {"issues": "write"}});
    let reply = post(
        &handler,
        BATCH,
        targets(json!([
            {"appId": APP, "owner": "octo-org", "scopeDown": org_scope},
            {"appId": APP, "owner": "octocat", "scopeDown": user_scope},
        ])),
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let tokens = reply.body["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    let (org, user) = (&tokens[0], &tokens[1]);
    assert_eq!((org["installationId"].as_i64(), org["nodeId"].as_str()), (Some(71), Some("O_kgDOocto-org")));
    assert_eq!((user["installationId"].as_i64(), user["nodeId"].as_str()), (Some(72), Some("U_kgDOoctocat")));
    assert_eq!(org["requestedScopeDown"], org_scope, "each answer as the single call's");
    assert_eq!(org["appSlug"], format!("appcreds-test-app-{APP}"));
    let (org_token, user_token) =
        (org["installationToken"].as_str().unwrap(), user["installationToken"].as_str().unwrap());
    assert_ne!(org_token, user_token);
    let org_issued = stack.github.issued(org_token).unwrap();
    assert_eq!((org_issued.installation_id, org_issued.repositories.clone()), (71, Some(vec!["hello-world".into()])));
    assert_eq!(org_issued.permissions.into_iter().collect::<Vec<_>>(), [("contents".into(), "read".into())]);
    let user_issued = stack.github.issued(user_token).unwrap();
    assert_eq!((user_issued.installation_id, user_issued.repositories), (72, None));
    assert_eq!(user_issued.permissions.into_iter().collect::<Vec<_>>(), [("issues".into(), "write".into())]);
    assert_eq!(mints(&stack), 2, "one mint per target");

    let audit = logs.lines_for("appcreds::audit");
    let issued: Vec<_> = audit.iter().filter(|l| l["fields"]["message"] == "credential issued").collect();
    assert_eq!(issued.len(), 2, "one audit line per token: {audit:?}");
    assert_eq!(issued.iter().map(|l| l["fields"]["installation_id"].as_i64().unwrap()).collect::<Vec<_>>(), [71, 72]);
    for (line, token) in issued.iter().zip([org_token, user_token]) {
        let sha = hex_sha256(token);
        assert_eq!(line["fields"]["token_sha256"], sha, "each line names its own token");
    }
    assert!(!logs.text().contains(org_token) && !logs.text().contains(user_token), "never the tokens");
}

fn hex_sha256(token: &str) -> String {
    appcreds_core::Secret::new(token.to_string()).sha256_hex()
}

/// A stack with a rule that grants octo-org's hello-world only, and installation-token enforcing it.
async fn enforced() -> (Stack, Endpoint<InstallationToken>) {
    let stack = Stack::with_installations(APP).await;
    stack
        .put_rule(json!({
            "id": "release", "principals": [ROLE], "operations": ["installation-token"], "apps": [APP],
            "owners": ["octo-org"], "repositories": ["hello-world"], "permissions": {"contents": "write", "metadata": "read"}
        }))
        .await;
    let handler = endpoint(InstallationToken::new(&stack.enforcing(SystemClock)));
    (stack, handler)
}

/// All or nothing: a target the rules refuse refuses the whole request with its own refusal (as
/// its single call gets it) and its index, before anything is looked up or minted.
#[tokio::test(flavor = "current_thread")]
async fn a_refused_target_refuses_the_batch_and_nothing_is_minted() {
    let (stack, handler) = enforced().await;
    let logs = Logs::capture();
    let allowed = json!({"appId": APP, "owner": "octo-org"});
    let refused = json!({"appId": APP, "owner": "octocat"});
    let reply = post(&handler, BATCH, targets(json!([allowed, refused]))).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (403, Some("AccessDeniedException")), "{:?}", reply.body);
    assert_eq!(reply.body["targetIndex"], 1);
    let single = post(&handler, SINGLE, refused.clone()).await;
    let single_message = single.body["message"].as_str().unwrap();
    assert_eq!(
        single_message,
        format!("no access rule allows {CALLER_ARN} installation-token for App {APP} on owner octocat")
    );
    assert_eq!(reply.body["message"], format!("target 1: {single_message}"), "the single call's refusal");
    assert_eq!(mints(&stack), 0, "nothing minted");
    assert!(stack.github.issued_tokens().is_empty());
    assert!(stack.github.all_calls().is_empty(), "nothing asked of GitHub: {:?}", stack.github.all_calls());
    let refusals = logs.lines_for("appcreds::audit");
    assert_eq!(refusals.len(), 2, "one refusal line each (batch and single): {refusals:?}");
    assert!(refusals.iter().all(|l| l["fields"]["message"] == "access denied"));

    // A repository beyond the grant, at index 2: its own refusal, and still nothing minted.
    let beyond = json!({"appId": APP, "repository": "octo-org/docs"});
    let reply =
        post(&handler, BATCH, targets(json!([allowed, {"appId": APP, "repository": "octo-org/hello-world"}, beyond])))
            .await;
    assert_eq!((reply.status, reply.body["targetIndex"].as_i64()), (403, Some(2)), "{:?}", reply.body);
    let single = post(&handler, SINGLE, beyond).await;
    assert_eq!(single.status, 403);
    assert_eq!(reply.body["message"], format!("target 2: {}", single.body["message"].as_str().unwrap()));
    assert_eq!(mints(&stack), 0, "nothing minted");

    // The installation does not grant what a target asks (the pre-flight check): refused as its
    // single call is, nothing minted.
    let stack = Stack::with_installations(APP).await;
    let open = stack.installation_token_handler();
    let lacking = json!({"appId": APP, "owner": "octocat", "scopeDown": {"permissions": {"administration": "write"}}});
    let reply = send(|r| open.handle(r), UrlRequest::post_json(BATCH, &targets(json!([allowed, lacking])))).await;
    let single = send(|r| open.handle(r), UrlRequest::post_json(SINGLE, &lacking)).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (400, Some("ClientSideError")), "{:?}", reply.body);
    assert_eq!(reply.body["targetIndex"], 1);
    assert_eq!(reply.body["message"], format!("target 1: {}", single.body["message"].as_str().unwrap()));
    assert_eq!(mints(&stack), 0, "nothing minted");
}

/// Both owners in one request, GitHub failing the second's (octocat's) mint with a 502: the
/// answer, checked to be that target's error, with no token.
async fn second_mint_failing(stack: &Stack, handler: &Endpoint<InstallationToken>) -> Reply {
    stack.github.inject(Fault::new("POST /app/installations/72/access_tokens", 10, FaultKind::Status(502)));
    let both = targets(json!([{"appId": APP, "owner": "octo-org"}, {"appId": APP, "owner": "octocat"}]));
    let reply = post(handler, BATCH, both).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (500, Some("ServerSideError")), "{:?}", reply.body);
    assert_eq!(reply.body["targetIndex"], 1);
    assert_eq!(reply.body["message"], "target 1: GitHub is unavailable (HTTP 502)");
    assert!(reply.body.get("tokens").is_none());
    reply
}

/// All or nothing after the mints began: a mint GitHub fails (a 5xx) has the tokens minted for
/// the same request revoked, and the request answers the error its own call would get.
#[tokio::test(flavor = "current_thread")]
async fn a_failed_mint_revokes_the_tokens_already_minted() {
    let stack = Stack::with_installations(APP).await;
    let handler = stack.installation_token_handler();
    let logs = Logs::capture();
    second_mint_failing(&stack, &handler).await;
    let issued = stack.github.issued_tokens();
    assert_eq!(issued.len(), 1, "the first target's mint went through: {issued:?}");
    assert_eq!(issued[0].installation_id, 71);
    assert!(issued[0].revoked, "and its token was revoked");
    assert_eq!(stack.github.calls("DELETE /installation/token"), 1);
    assert!(!live(&stack, &issued[0].token).await, "GitHub no longer takes it");

    let audit = logs.lines_for("appcreds::audit");
    assert!(audit.iter().all(|l| l["fields"]["message"] != "credential issued"), "nothing handed out: {audit:?}");
    let revoked: Vec<_> =
        audit.iter().filter(|l| l["fields"]["message"] == "installation token of a failed batch: revoked").collect();
    assert_eq!(revoked.len(), 1, "{audit:?}");
    assert_eq!(revoked[0]["fields"]["token_sha256"], hex_sha256(&issued[0].token));
    assert_eq!(revoked[0]["fields"]["installation_id"], 71);
}

/// A mint that does not answer in time: the request answers before the invocation's deadline,
/// and the tokens minted beside it are revoked within it.
#[tokio::test]
async fn a_mint_out_of_time_still_revokes_the_others_before_the_deadline() {
    let stack = Stack::with_installations(APP).await;
    let handler = stack.installation_token_handler();
    // Warm (resolved, App JWT kept), so that the time goes to the mints.
    for owner in ["octo-org", "octocat"] {
        assert_eq!(post(&handler, SINGLE, json!({"appId": APP, "owner": owner})).await.status, 200);
    }
    let warm = stack.github.issued_tokens();
    stack.github.inject(Fault::new(
        "POST /app/installations/72/access_tokens",
        10,
        FaultKind::AnswerLate(Duration::from_secs(30)),
    ));
    let body = targets(json!([{"appId": APP, "owner": "octo-org"}, {"appId": APP, "owner": "octocat"}]));
    let left = Duration::from_secs(5);
    let logs = Logs::capture();
    let started = Instant::now();
    let reply = send(|r| handler.handle(r), UrlRequest::post_json(BATCH, &body).deadline_in(left)).await;
    assert!(started.elapsed() < left, "answered before the deadline: {:?}", started.elapsed());
    assert_eq!((reply.status, reply.error_type.as_deref()), (500, Some("ServerSideError")), "{:?}", reply.body);
    assert_eq!(reply.body["targetIndex"], 1, "{:?}", reply.body);
    let org: Vec<_> =
        stack.github.issued_tokens().into_iter().filter(|t| t.installation_id == 71 && !warm.contains(t)).collect();
    assert_eq!(org.len(), 1);
    assert!(org[0].revoked, "the first target's token was revoked in time");
    // GitHub minted the late one all the same: never seen, so neither handed out nor revoked, but
    // the audit trail says that it may exist.
    let late: Vec<_> =
        stack.github.issued_tokens().into_iter().filter(|t| t.installation_id == 72 && !warm.contains(t)).collect();
    assert_eq!(late.len(), 1, "the double's AnswerLate minted it");
    assert!(!late[0].revoked);
    let audit = logs.lines_for("appcreds::audit");
    let out_of_time: Vec<_> = audit
        .iter()
        .filter(|l| {
            l["fields"]["message"]
                == "installation token of a batch: the mint's outcome is unknown; GitHub may have minted one, never handed out nor revoked"
        })
        .collect();
    assert_eq!(out_of_time.len(), 1, "{audit:?}");
    assert_eq!(
        (out_of_time[0]["fields"]["app_id"].as_i64(), out_of_time[0]["fields"]["installation_id"].as_i64()),
        (Some(APP), Some(72))
    );
    assert!(!logs.text().contains(&late[0].token), "never the token");
}

/// The slugs are read while the tokens are minted, but never at the revokes' expense: a failed
/// mint has the others revoked at once, with their whole budget, however long `GET /app` takes.
#[tokio::test]
async fn a_slow_slug_does_not_eat_the_revokes_budget() {
    let stack = Stack::with_installations(APP).await;
    // Warm through another handler, so that this one finds both owners in the table, with no
    // lookup at GitHub, but has no slug yet.
    let warm = stack.installation_token_handler();
    for owner in ["octo-org", "octocat"] {
        assert_eq!(post(&warm, SINGLE, json!({"appId": APP, "owner": owner})).await.status, 200);
    }
    let warmed = stack.github.issued_tokens();
    let handler = stack.installation_token_handler();
    let slugs = stack.github.calls("GET /app");
    stack.github.inject(Fault::new("GET /app", 1, FaultKind::Delay(Duration::from_secs(30))));
    stack.github.inject(Fault::new("POST /app/installations/72/access_tokens", 10, FaultKind::Status(502)));
    stack.github.inject(Fault::new("DELETE /installation/token", 1, FaultKind::Delay(Duration::from_millis(2400))));
    let body = targets(json!([{"appId": APP, "owner": "octo-org"}, {"appId": APP, "owner": "octocat"}]));
    let left = Duration::from_millis(4500);
    let started = Instant::now();
    let reply = send(|r| handler.handle(r), UrlRequest::post_json(BATCH, &body).deadline_in(left)).await;
    assert!(started.elapsed() < left, "answered before the deadline: {:?}", started.elapsed());
    assert_eq!((reply.status, reply.body["targetIndex"].as_i64()), (500, Some(1)), "{:?}", reply.body);
    assert_eq!(stack.github.calls("GET /app"), slugs + 1, "the slug was asked for");
    let org: Vec<_> =
        stack.github.issued_tokens().into_iter().filter(|t| t.installation_id == 71 && !warmed.contains(t)).collect();
    assert_eq!(org.len(), 1);
    assert!(org[0].revoked, "revoked, with the revoke's whole budget ({:?})", started.elapsed());
}

/// At most two of a request's mints are at GitHub at once (GitHub asks for requests that create
/// something one at a time); the others wait their turn.
#[tokio::test]
async fn no_more_than_two_mints_are_at_github_at_once() {
    let stack = Stack::with_installations(APP).await;
    let handler = stack.installation_token_handler();
    // Warm: the time goes to the mints, and they are the only calls.
    for owner in ["octo-org", "octocat"] {
        assert_eq!(post(&handler, SINGLE, json!({"appId": APP, "owner": owner})).await.status, 200);
    }
    stack.github.set_latency(Duration::from_millis(200));
    stack.github.reset_in_flight();
    let before = stack.github.all_calls();
    let reply = post(
        &handler,
        BATCH,
        targets(json!([
            {"appId": APP, "owner": "octo-org"},
            {"appId": APP, "owner": "octocat"},
            {"appId": APP, "repository": "octo-org/hello-world"},
            {"appId": APP, "repository": "octo-org/docs"},
            {"appId": APP, "repository": "octocat/dotfiles"},
        ])),
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["tokens"].as_array().unwrap().len(), 5);
    let after = stack.github.all_calls();
    let asked: usize = after.iter().map(|(route, n)| n - before.get(route).copied().unwrap_or(0)).sum();
    assert_eq!(asked, 5, "only the mints: {after:?}");
    assert_eq!(stack.github.max_in_flight(), 2, "two at a time, never more");
}

/// The list's bound, an empty list, duplicates and invalid targets are refused before anything
/// is asked of AWS or GitHub, each naming its path.
#[tokio::test]
async fn the_list_is_bounded_and_checked_before_anything_is_asked() {
    let stack = Stack::with_installations(APP).await;
    let handler = stack.installation_token_handler();
    let paths = |reply: &Reply| -> Vec<String> {
        reply.body["fieldList"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_string()).collect()
    };
    let validation = |reply: &Reply| {
        assert_eq!((reply.status, reply.error_type.as_deref()), (400, Some("ValidationException")), "{:?}", reply.body);
    };
    let eleven: Vec<Value> = (0..11).map(|i| json!({"appId": APP, "owner": format!("owner-{i}")})).collect();
    let reply = post(&handler, BATCH, targets(json!(eleven))).await;
    validation(&reply);
    assert_eq!(
        reply.body["message"],
        "1 validation error detected. Value with length 11 at '/targets' failed to satisfy constraint: Member must have length between 1 and 10, inclusive"
    );

    let reply = post(&handler, BATCH, targets(json!([]))).await;
    validation(&reply);
    assert_eq!(paths(&reply), ["/targets"]);
    let reply = post(&handler, BATCH, json!({})).await;
    validation(&reply);
    assert!(
        reply.body["message"]
            .as_str()
            .unwrap()
            .ends_with("at '/targets' failed to satisfy constraint: Member must not be null")
    );

    let reply = post(
        &handler,
        BATCH,
        targets(json!([{"appId": APP, "owner": "octo-org"}, {"appId": APP, "owner": "Octo-Org", "scopeDown": {"permissions": {"contents": "read"}}}])),
    )
    .await;
    validation(&reply);
    assert_eq!(paths(&reply), ["/targets/1"]);
    assert_eq!(
        reply.body["fieldList"][0]["message"],
        "Value at '/targets/1' failed to satisfy constraint: Member must not name the App and installation target of /targets/0 again"
    );

    let reply = post(
        &handler,
        BATCH,
        targets(json!([{"appId": 0, "owner": "octo-org"}, {"appId": APP, "owner": "-bad", "scopeDown": {"permissions": {"contents": "admin"}}}, {"appId": APP}])),
    )
    .await;
    validation(&reply);
    assert_eq!(
        paths(&reply),
        ["/targets/0/appId", "/targets/1/owner", "/targets/1/scopeDown/permissions/contents", "/targets/2/nodeId"]
    );
    let reply = post(&handler, BATCH, targets(json!(["octo-org"]))).await;
    assert_eq!(reply.error_type.as_deref(), Some("SerializationException"));
    assert_eq!(reply.body["message"], "Value at '/targets/0' must be an object, not a string");

    // Nothing refused at validation asked anything of GitHub or AWS.
    assert!(stack.github.all_calls().is_empty(), "{:?}", stack.github.all_calls());
    assert!(stack.counter.snapshot().is_empty(), "no DynamoDB read, no KMS call: {:?}", stack.counter.snapshot());

    // Ten are within the bound (and looked up: the double has none of these owners).
    let ten: Vec<Value> = eleven[..10].to_vec();
    let reply = post(&handler, BATCH, targets(json!(ten))).await;
    assert_ne!(reply.error_type.as_deref(), Some("ValidationException"), "ten are within the bound: {:?}", reply.body);
    assert!(!stack.github.all_calls().is_empty());
    assert_eq!(mints(&stack), 0);
}

/// Tokens GitHub mints wider than asked are never handed out in a batch either: each is revoked
/// and has its audit line, and the request answers the first one's error.
#[tokio::test(flavor = "current_thread")]
async fn tokens_minted_too_wide_are_each_revoked_and_audited() {
    let stack = Stack::with_installations(APP).await;
    let handler = stack.installation_token_handler();
    let logs = Logs::capture();
    stack.github.answer_mints_too_wide(true);
    let scope = json!({"permissions": {"contents": "read"}});
    let reply = post(
        &handler,
        BATCH,
        targets(json!([{"appId": APP, "owner": "octo-org", "scopeDown": scope}, {"appId": APP, "owner": "octocat", "scopeDown": scope}])),
    )
    .await;
    assert_eq!((reply.status, reply.body["targetIndex"].as_i64()), (500, Some(0)), "{:?}", reply.body);
    let issued = stack.github.issued_tokens();
    assert_eq!(issued.len(), 2);
    assert!(issued.iter().all(|t| t.revoked), "{issued:?}");
    let audit = logs.lines_for("appcreds::audit");
    let wide: Vec<_> =
        audit.iter().filter(|l| l["fields"]["message"] == "installation token wider than asked: revoked").collect();
    assert_eq!(wide.len(), 2, "one line per token: {audit:?}");
    assert!(audit.iter().all(|l| l["fields"]["message"] != "credential issued"));
}

/// A revoke GitHub fails inside a failed batch: the token is still never handed out, its audit
/// line says it was not revoked, and the request answers the failed target's error.
#[tokio::test(flavor = "current_thread")]
async fn a_revoke_that_fails_leaves_a_not_revoked_line_and_hands_out_nothing() {
    let stack = Stack::with_installations(APP).await;
    let handler = stack.installation_token_handler();
    let logs = Logs::capture();
    stack.github.inject(Fault::new("DELETE /installation/token", 10, FaultKind::Status(500)));
    let reply = second_mint_failing(&stack, &handler).await;
    let issued = stack.github.issued_tokens();
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert!(!issued[0].revoked, "GitHub failed the revoke");
    assert!(stack.github.calls("DELETE /installation/token") >= 1);
    assert!(!reply.body.to_string().contains(&issued[0].token), "the token is nowhere in the answer");

    let audit = logs.lines_for("appcreds::audit");
    assert!(audit.iter().all(|l| l["fields"]["message"] != "credential issued"), "{audit:?}");
    let lines: Vec<_> = audit
        .iter()
        .filter(|l| {
            l["fields"]["message"] == "installation token of a failed batch: not revoked, expires within the hour"
        })
        .collect();
    assert_eq!(lines.len(), 1, "{audit:?}");
    assert_eq!(lines[0]["fields"]["token_sha256"], hex_sha256(&issued[0].token));
    assert_eq!(
        (lines[0]["fields"]["installation_id"].as_i64(), lines[0]["fields"]["revoked"].as_bool()),
        (Some(71), Some(false))
    );
    assert!(!logs.text().contains(&issued[0].token), "never the token");
}

/// An owner a rule names but the App is not installed on: the batch is refused as that target's
/// single call is (the same AccessDenied, not "no such installation", which would tell the caller
/// what exists), with its index, and nothing is minted.
#[tokio::test(flavor = "current_thread")]
async fn an_unknown_owner_a_rule_names_is_refused_as_its_single_call_is() {
    let (stack, handler) = enforced().await;
    stack
        .put_rule(json!({
            "id": "ghost", "principals": [ROLE], "operations": ["installation-token"], "apps": [APP],
            "owners": ["ghost-org"], "repositories": ["*"], "permissions": {"contents": "read"}
        }))
        .await;
    let ghost = json!({"appId": APP, "owner": "ghost-org"});
    let reply = post(&handler, BATCH, targets(json!([{"appId": APP, "owner": "octo-org"}, ghost]))).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (403, Some("AccessDeniedException")), "{:?}", reply.body);
    assert_eq!(reply.body["targetIndex"], 1);
    let single = post(&handler, SINGLE, ghost).await;
    assert_eq!(
        (single.status, single.error_type.as_deref()),
        (403, Some("AccessDeniedException")),
        "{:?}",
        single.body
    );
    assert_eq!(reply.body["message"], format!("target 1: {}", single.body["message"].as_str().unwrap()));
    assert_eq!(mints(&stack), 0, "nothing minted");
    assert!(stack.github.issued_tokens().is_empty());
}
