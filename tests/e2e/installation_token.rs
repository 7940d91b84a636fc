#![allow(clippy::unwrap_used)]
//! installation-token through the real handler, the moto server and the GitHub double.

use std::sync::Arc;
use std::time::{Duration, Instant};

use appcreds_core::ports::{InstallationRecord, InstallationRow, InstallationStore};
use appcreds_core::tokens::installation::TABLE_ROWS_MAX;
use appcreds_tests::github::{Fault, FaultKind, Installation};
use appcreds_tests::lambda::{Reply, UrlRequest};
use appcreds_tests::{Logs, Stack, send};
use serde_json::{Value, json};

const PATH: &str = "/tokens/installation";
const APP: i64 = 500;

async fn stack() -> Stack {
    Stack::with_installations(APP).await
}

async fn post<H>(handler: &H, body: Value) -> Reply
where
    H: Handler,
{
    handler.call(UrlRequest::post_json(PATH, &body)).await
}

trait Handler {
    async fn call(&self, req: UrlRequest) -> Reply;
}

impl Handler for appcreds_core::http::Endpoint<appcreds_core::ops::installation_token::InstallationToken> {
    async fn call(&self, req: UrlRequest) -> Reply {
        send(|r| self.handle(r), req).await
    }
}

fn ok(reply: &Reply) -> &Value {
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    &reply.body
}

#[tokio::test]
async fn a_token_by_node_id_is_resolved_at_github_and_remembered_in_the_table() {
    let stack = stack().await;
    let handler = stack.installation_token_handler();
    assert!(stack.installation_rows().await.is_empty());

    let body = ok(&post(&handler, json!({"appId": APP, "nodeId": "O_kgDOocto-org"})).await).clone();
    let token = body["installationToken"].as_str().unwrap();
    let issued = stack.github.issued(token).expect("the double issued it");
    assert_eq!(issued.installation_id, 71);
    assert_eq!(issued.repositories, None, "unscoped: all repositories");
    assert_eq!(body["nodeId"], "O_kgDOocto-org");
    assert_eq!(body["appId"], APP);
    assert_eq!(body["installationId"], 71);
    assert_eq!(body["appSlug"], format!("appcreds-test-app-{APP}"), "(ext) the App's slug");
    assert_eq!(body["expirationTime"], appcreds_core::domain::clock::rfc3339(issued.expires_at));
    assert!(body.get("requestedScopeDown").is_none(), "absent when the request had no scopeDown");
    assert_eq!(
        body["actualScopeDown"],
        json!({"permissions": {"contents": "write", "issues": "write", "metadata": "read"}})
    );
    assert_eq!(stack.github.calls("GET /app/installations"), 1, "listed once to resolve");

    // Written back to the table, as the TypeScript Credential Manager's schema has it.
    assert_eq!(
        stack.installation_rows().await,
        [InstallationRecord {
            app_id: APP,
            installation_id: 71,
            node_id: "O_kgDOocto-org".into(),
            target_type: "Organization".into(),
            name: "octo-org".into()
        }]
    );
    let item = stack
        .ddb
        .get_item()
        .table_name(&stack.installation_table)
        .key("AppId", aws_sdk_dynamodb::types::AttributeValue::N(APP.to_string()))
        .key("NodeId", aws_sdk_dynamodb::types::AttributeValue::S("O_kgDOocto-org".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(item["LastRefreshed"].as_s().unwrap().ends_with('Z'));

    // A fresh process finds it in the table without listing again.
    let fresh = stack.installation_token_handler();
    ok(&post(&fresh, json!({"appId": APP, "nodeId": "O_kgDOocto-org"})).await);
    assert_eq!(stack.github.calls("GET /app/installations"), 1);
}

#[tokio::test]
async fn a_token_by_owner_and_by_repository() {
    let stack = stack().await;
    let handler = stack.installation_token_handler();
    let by_org = ok(&post(&handler, json!({"appId": APP, "owner": "octo-org"})).await).clone();
    assert_eq!((by_org["installationId"].as_i64(), by_org["nodeId"].as_str()), (Some(71), Some("O_kgDOocto-org")));
    let by_user = ok(&post(&handler, json!({"appId": APP, "owner": "octocat"})).await).clone();
    assert_eq!((by_user["installationId"].as_i64(), by_user["nodeId"].as_str()), (Some(72), Some("U_kgDOoctocat")));
    let by_repo = ok(&post(&handler, json!({"appId": APP, "repository": "octocat/dotfiles"})).await).clone();
    assert_eq!(by_repo["installationId"], 72);
    assert_eq!(by_repo["actualScopeDown"]["repositoryNames"], json!(["dotfiles"]), "narrowed to the repository");
    assert_eq!(stack.github.calls("GET /users/octo-org/installation"), 1, "users first");
    assert_eq!(stack.github.calls("GET /orgs/octo-org/installation"), 1, "then orgs");
    assert_eq!(stack.github.calls("GET /users/octocat/installation"), 1, "a repository by its owner's, kept");
    assert_eq!(stack.github.calls("GET /repos/octocat/dotfiles/installation"), 0, "names are never looked up");
    assert_eq!(stack.installation_rows().await.len(), 2, "both accounts written back");

    // A repository the installation lacks (or that does not exist): GitHub's refusal of the mint.
    let reply = post(&handler, json!({"appId": APP, "repository": "octocat/missing"})).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (400, Some("ClientSideError")));
    assert!(reply.body["message"].as_str().unwrap().contains("at least one repository"), "{:?}", reply.body);
    let reply = post(&handler, json!({"appId": APP, "repository": "nobody/missing"})).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (400, Some("ClientSideError")));
    assert_eq!(reply.body["message"], format!("App {APP} has no installation for owner nobody"));
}

#[tokio::test]
async fn scope_down_is_granted_and_echoed() {
    let stack = stack().await;
    let handler = stack.installation_token_handler();
    let scope = json!({"repositoryNames": ["hello-world"], "repositoryIds": [7102], "permissions": {"contents": "read", "metadata": "read"}});
    let body = ok(&post(&handler, json!({"appId": APP, "nodeId": "O_kgDOocto-org", "scopeDown": scope})).await).clone();
    assert_eq!(body["requestedScopeDown"], scope);
    assert_eq!(
        body["actualScopeDown"],
        json!({"repositoryIds": [7101, 7102], "repositoryNames": ["hello-world", "docs"], "permissions": {"contents": "read", "metadata": "read"}})
    );
    let issued = stack.github.issued(body["installationToken"].as_str().unwrap()).unwrap();
    assert_eq!(issued.repositories, Some(vec!["hello-world".to_string(), "docs".to_string()]));
    assert_eq!(issued.permissions.get("contents").map(String::as_str), Some("read"));
    assert_eq!(issued.permissions.len(), 2, "nothing more than asked: {:?}", issued.permissions);
}

#[tokio::test]
async fn invalid_scopes_are_refused_before_github_with_their_field_paths() {
    let stack = stack().await;
    let handler = stack.installation_token_handler();
    let names: Vec<String> = (0..501).map(|i| format!("r{i}")).collect();
    let cases = [
        (json!({"permissions": {"contents": "admin"}}), vec!["/scopeDown/permissions/contents"]),
        // A map key that fails is reported at the map's path, as Smithy does.
        (json!({"permissions": {"teleport": "write"}}), vec!["/scopeDown/permissions"]),
        (json!({"permissions": {"issues": "owner"}}), vec!["/scopeDown/permissions/issues"]),
        (json!({"repositoryNames": ["octo-org/hello-world"]}), vec!["/scopeDown/repositoryNames/0"]),
        // Length and pattern: two violations of one member.
        (json!({"repositoryNames": ["ok", ""]}), vec!["/scopeDown/repositoryNames/1", "/scopeDown/repositoryNames/1"]),
        (json!({"repositoryIds": [1, 0]}), vec!["/scopeDown/repositoryIds/1"]),
        (json!({"repositoryNames": names}), vec!["/scopeDown/repositoryNames"]),
        (
            json!({"repositoryIds": [-1], "permissions": {"contents": "admin"}}),
            vec!["/scopeDown/repositoryIds/0", "/scopeDown/permissions/contents"],
        ),
    ];
    for (scope, paths) in cases {
        let reply = post(&handler, json!({"appId": APP, "nodeId": "O_kgDOocto-org", "scopeDown": scope})).await;
        assert_eq!((reply.status, reply.error_type.as_deref()), (400, Some("ValidationException")), "{scope}");
        let got: Vec<&str> =
            reply.body["fieldList"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
        assert_eq!(got, paths, "{scope}");
    }
    for (bad, error) in [
        (json!({"appId": APP, "nodeId": "O_kgDOocto-org", "scopeDown": "all"}), "SerializationException"),
        (
            json!({"appId": APP, "nodeId": "O_kgDOocto-org", "scopeDown": {"repositoryIds": ["1"]}}),
            "SerializationException",
        ),
        (json!({"appId": APP}), "ValidationException"),
        (json!({"appId": APP, "nodeId": "a", "owner": "b"}), "ValidationException"),
        (json!({"nodeId": "a"}), "ValidationException"),
    ] {
        let reply = post(&handler, bad.clone()).await;
        assert_eq!(reply.error_type.as_deref(), Some(error), "{bad}");
    }
    assert!(stack.github.all_calls().is_empty(), "GitHub was not called: {:?}", stack.github.all_calls());
    assert_eq!(stack.counter.snapshot().values().sum::<usize>(), 0, "nor AWS");
}

#[tokio::test]
async fn githubs_refusals_are_client_errors_with_its_message() {
    let stack = stack().await;
    let handler = stack.installation_token_handler();
    // A repository the installation lacks: GitHub's 422 (permissions it lacks are refused before
    // the mint: `permissions_the_installation_lacks_are_refused_before_the_mint`).
    let reply = post(
        &handler,
        json!({"appId": APP, "nodeId": "O_kgDOocto-org", "scopeDown": {"repositoryNames": ["not-installed"]}}),
    )
    .await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (400, Some("ClientSideError")), "{:?}", reply.body);
    assert!(reply.body["message"].as_str().unwrap().starts_with("GitHub: There is at least one repository"));
    assert_eq!(reply.body["documentationUrl"], "https://docs.github.com/rest", "(ext) GitHub's documentation_url too");
    let reply = post(&handler, json!({"appId": APP, "nodeId": "O_kgDOnobody"})).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (400, Some("ClientSideError")));
    assert_eq!(reply.body["message"], format!("App {APP} has no installation for node ID O_kgDOnobody"));
    assert!(reply.body.get("documentationUrl").is_none(), "appcreds' own refusals have none");
    let reply = post(&handler, json!({"appId": 999, "nodeId": "O_kgDOocto-org"})).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (400, Some("ClientSideError")));
}

#[tokio::test]
async fn github_trouble_is_a_server_error_or_throttling_never_a_hang() {
    let stack = stack().await;
    let handler = stack.installation_token_handler();
    // A 503 on a lookup is retried (reading twice is harmless), boundedly.
    stack.github.inject(Fault::new("/installation", 10, FaultKind::Status(503)));
    let reply = post(&handler, json!({"appId": APP, "owner": "octo-org"})).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (500, Some("ServerSideError")));
    assert_eq!(reply.body["message"], "GitHub is unavailable (HTTP 503)");
    assert_eq!(stack.github.calls("GET /users/octo-org/installation"), 3, "retried, bounded");
    stack.github.clear_faults();
    // A 503 on a mint is not: GitHub may have minted a token that nobody would hold.
    stack.github.inject(Fault::new("access_tokens", 10, FaultKind::Status(503)));
    let reply = post(&handler, json!({"appId": APP, "owner": "octo-org"})).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (500, Some("ServerSideError")));
    assert_eq!(stack.github.calls("POST /app/installations/71/access_tokens"), 1, "sent once");
    stack.github.clear_faults();
    stack.github.inject(Fault::new("access_tokens", 1, FaultKind::RateLimit { status: 429, retry_after: Some(120) }));
    let reply = post(&handler, json!({"appId": APP, "owner": "octo-org"})).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (429, Some("ThrottlingException")));
    assert_eq!(reply.body["retryAfterSeconds"], 120);
    let reply = post(&handler, json!({"appId": APP, "owner": "octo-org"})).await;
    ok(&reply);
}

/// A warm request mints a token of its own at GitHub and calls nothing else: no KMS, no
/// DynamoDB, no lookup (counted at the AWS SDK clients and at the double).
#[tokio::test]
async fn a_warm_request_costs_one_mint_and_no_aws_call() {
    let logs = Logs::capture();
    let stack = stack().await;
    let handler = stack.installation_token_handler();
    let scope = json!({"permissions": {"metadata": "read"}, "repositoryNames": ["docs", "hello-world"]});
    let first =
        ok(&post(&handler, json!({"appId": APP, "nodeId": "O_kgDOocto-org", "scopeDown": scope})).await).clone();
    let (aws, mints) = (stack.counter.snapshot(), stack.github.calls("POST /app/installations/71/access_tokens"));
    let other_calls = |stack: &Stack| {
        let mut calls = stack.github.all_calls();
        calls.remove("POST /app/installations/71/access_tokens");
        calls
    };
    let before = other_calls(&stack);
    let mut tokens = std::collections::BTreeSet::from([first["installationToken"].as_str().unwrap().to_string()]);
    let scope2 = json!({"repositoryNames": ["hello-world", "docs"], "permissions": {"metadata": "read"}});
    for _ in 0..50 {
        let again =
            ok(&post(&handler, json!({"appId": APP, "nodeId": "O_kgDOocto-org", "scopeDown": scope2})).await).clone();
        tokens.insert(again["installationToken"].as_str().unwrap().to_string());
    }
    assert_eq!(tokens.len(), 51, "every request its own token");
    assert_eq!(stack.counter.snapshot(), aws, "no AWS call on a warm request");
    assert_eq!(stack.github.calls("POST /app/installations/71/access_tokens"), mints + 50, "one mint each");
    assert_eq!(other_calls(&stack), before, "no lookup, no other GitHub call");

    let audit = logs.lines_for("appcreds::audit");
    assert_eq!(audit.len(), 51);
    assert!(audit.iter().all(|l| l["fields"]["installation_id"] == 71 && l["fields"]["kind"] == "installation-token"));
    assert!(audit.iter().all(|l| l["fields"]["cached"] == false));
    assert!(!logs.text().contains(first["installationToken"].as_str().unwrap()), "no token in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_get_tokens_of_their_own_and_share_the_lookups() {
    let stack = stack().await;
    let handler = Arc::new(stack.installation_token_handler());
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let handler = handler.clone();
            tokio::spawn(async move {
                let reply = post(&*handler, json!({"appId": APP, "nodeId": "O_kgDOocto-org"})).await;
                ok(&reply)["installationToken"].as_str().unwrap().to_string()
            })
        })
        .collect();
    let mut tokens = std::collections::BTreeSet::new();
    for t in tasks {
        tokens.insert(t.await.unwrap());
    }
    assert_eq!(tokens.len(), 40, "no token is handed to two callers");
    assert_eq!(stack.github.calls("POST /app/installations/71/access_tokens"), 40);
    assert_eq!(stack.github.calls("GET /app/installations"), 1, "one resolution, shared");
    assert_eq!(stack.counter.count("Sign"), 1, "one JWT, shared");
}

/// Revoking one caller's token (as a job's last step does) leaves every other caller's working,
/// and the function never hands out the dead one.
#[tokio::test]
async fn revoking_one_callers_token_never_breaks_another() {
    let stack = stack().await;
    let handler = stack.installation_token_handler();
    let ask = json!({"appId": APP, "owner": "octo-org", "scopeDown": {"permissions": {"contents": "read"}}});
    let a = ok(&post(&handler, ask.clone()).await)["installationToken"].as_str().unwrap().to_string();
    let b = ok(&post(&handler, ask.clone()).await)["installationToken"].as_str().unwrap().to_string();
    assert_ne!(a, b);
    let revoked = reqwest::Client::new()
        .delete(format!("{}/installation/token", stack.github.url()))
        .bearer_auth(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert!(stack.github.issued(&a).unwrap().revoked);
    assert!(!stack.github.issued(&b).unwrap().revoked, "the other caller's token still works");
    let c = ok(&post(&handler, ask).await).clone();
    let c_token = c["installationToken"].as_str().unwrap();
    assert!(c_token != a && !stack.github.issued(c_token).unwrap().revoked, "a fresh one, never the dead one");
    // GitHub's full lifetime, not what is left of someone else's.
    let expires = stack.github.issued(c_token).unwrap().expires_at;
    assert!(expires - appcreds_core::domain::clock::Clock::now(&appcreds_core::domain::clock::SystemClock) > 3500);
}

/// The table says installation 71; GitHub has since seen a reinstall (new ID 99, same account).
#[tokio::test]
async fn a_stale_table_row_is_corrected_from_github() {
    let stack = stack().await;
    let handler = stack.installation_token_handler();
    ok(&post(&handler, json!({"appId": APP, "nodeId": "O_kgDOocto-org"})).await);
    stack.github.uninstall(71);
    stack.github.install(Installation::org(APP, 99, "octo-org", &[(7101, "hello-world")]));
    let fresh = stack.installation_token_handler();
    let body = ok(&post(
        &fresh,
        json!({"appId": APP, "nodeId": "O_kgDOocto-org", "scopeDown": {"permissions": {"metadata": "read"}}}),
    )
    .await)
    .clone();
    assert_eq!(body["installationId"], 99);
    assert_eq!(stack.installation_rows().await[0].installation_id, 99, "the table follows");
}

/// GitHub's installation lookups (and listings) the double has answered.
fn lookups(stack: &Stack) -> usize {
    stack
        .github
        .all_calls()
        .iter()
        .filter(|(route, _)| route.ends_with("/installation") || route.starts_with("GET /app/installations"))
        .filter(|(route, _)| !route.contains("access_tokens"))
        .map(|(_, n)| n)
        .sum()
}

/// **(ext)** A cold function resolves owners, repositories and enterprises from the rows the
/// tracker keeps, logins compared regardless of case: no lookup at GitHub, only the mints.
#[tokio::test]
async fn a_cold_function_resolves_owners_from_the_table_without_asking_github() {
    let stack = stack().await;
    stack.github.install(Installation::enterprise(APP, 73, "Octo-Ent"));
    stack.syncer().run().await.unwrap();
    assert_eq!(stack.installation_rows().await.len(), 3);
    let before = lookups(&stack);
    let cold = stack.installation_token_handler();
    for (body, id) in [
        (json!({"appId": APP, "owner": "OCTO-ORG"}), 71),
        (json!({"appId": APP, "repository": "OctoCat/dotfiles"}), 72),
        (json!({"appId": APP, "enterprise": "octo-ent"}), 73),
    ] {
        let reply = ok(&post(&cold, body.clone()).await).clone();
        assert_eq!(reply["installationId"], id, "{body}");
    }
    assert_eq!(lookups(&stack) - before, 0, "{:?}", stack.github.all_calls());
    // A second cold function reads the table once for all its owners.
    stack.counter.reset();
    let cold = stack.installation_token_handler();
    ok(&post(&cold, json!({"appId": APP, "owner": "octo-org"})).await);
    ok(&post(&cold, json!({"appId": APP, "owner": "octocat"})).await);
    assert_eq!(stack.counter.count("Query"), 1, "{:?}", stack.counter.snapshot());
    assert_eq!(lookups(&stack) - before, 0);
    // An owner the table lacks still goes to GitHub.
    stack.github.install(Installation::org(APP, 74, "new-org", &[]));
    assert_eq!(ok(&post(&cold, json!({"appId": APP, "owner": "new-org"})).await)["installationId"], 74);
    assert_eq!(lookups(&stack) - before, 2, "users, then orgs: {:?}", stack.github.all_calls());
}

/// A row of the Installation table, as the sync writes it (without grants).
fn table_row(installation_id: i64, node_id: &str, target_type: &str, name: &str) -> InstallationRow {
    let record = InstallationRecord {
        app_id: APP,
        installation_id,
        node_id: node_id.into(),
        target_type: target_type.into(),
        name: name.into(),
    };
    InstallationRow { record, grants: None }
}

/// **(ext)** An App with more rows than a function reads ([`TABLE_ROWS_MAX`]) is resolved at
/// GitHub, rightly, whatever its rows say: here octo-org's names another installation (72).
#[tokio::test]
async fn an_app_with_more_rows_than_the_bound_is_resolved_at_github() {
    let stack = stack().await;
    let mut rows = vec![table_row(72, "O_kgDOocto-org", "Organization", "octo-org")];
    rows.extend(
        (0..TABLE_ROWS_MAX as i64).map(|i| table_row(100_000 + i, &format!("U_{i}"), "User", &format!("u{i}"))),
    );
    stack.installation_store().write(rows, Vec::new(), "2026-01-01T00:00:00Z").await.unwrap();
    let before = lookups(&stack);
    stack.counter.reset();
    let cold = stack.installation_token_handler();
    assert_eq!(ok(&post(&cold, json!({"appId": APP, "owner": "octo-org"})).await)["installationId"], 71);
    assert!(lookups(&stack) > before, "asked GitHub: {:?}", stack.github.all_calls());
    // Not the whole App: one row more than the bound, in pages of at most 1,000.
    assert!(stack.counter.count("Query") <= 2, "{:?}", stack.counter.snapshot());
}

/// **(ext)** Two rows name one login (a stale one, from before a rename or a reinstall, beside
/// the current one): neither is picked; GitHub is asked, and answers.
#[tokio::test]
async fn two_rows_for_one_login_are_resolved_at_github() {
    let stack = stack().await;
    stack.syncer().run().await.unwrap();
    // Sorted before the current row (O_kgDOocto-org): the first a lookup would find.
    let stale = table_row(72, "O_aaaaaocto-org", "Organization", "Octo-Org");
    stack.installation_store().write(vec![stale], Vec::new(), "2026-01-01T00:00:00Z").await.unwrap();
    let before = lookups(&stack);
    let cold = stack.installation_token_handler();
    assert_eq!(ok(&post(&cold, json!({"appId": APP, "owner": "octo-org"})).await)["installationId"], 71);
    assert!(lookups(&stack) > before, "asked GitHub: {:?}", stack.github.all_calls());
    // An owner named by one row only is still answered from the table.
    let before = lookups(&stack);
    assert_eq!(ok(&post(&cold, json!({"appId": APP, "owner": "octocat"})).await)["installationId"], 72);
    assert_eq!(lookups(&stack), before);
}

/// **(ext)** A row for the owner that is stale (the App was reinstalled): the mint's 404 asks
/// GitHub once, the token is minted for the new installation, and the table follows.
#[tokio::test]
async fn a_stale_row_for_an_owner_costs_one_lookup_and_the_mint_succeeds() {
    let stack = stack().await;
    stack.syncer().run().await.unwrap();
    stack.github.uninstall(71);
    stack.github.install(Installation::org(APP, 99, "octo-org", &[(7101, "hello-world")]));
    let before = lookups(&stack);
    let cold = stack.installation_token_handler();
    let body = ok(&post(&cold, json!({"appId": APP, "owner": "octo-org"})).await).clone();
    assert_eq!(body["installationId"], 99);
    let orgs = stack.github.calls("GET /orgs/octo-org/installation");
    assert_eq!((lookups(&stack) - before, orgs), (2, 1), "users then orgs, once: {:?}", stack.github.all_calls());
    let row = stack.installation_rows().await.into_iter().find(|r| r.name == "octo-org").unwrap();
    assert_eq!(row.installation_id, 99, "the table follows");
    // The next cold function finds the corrected row.
    let cold = stack.installation_token_handler();
    assert_eq!(ok(&post(&cold, json!({"appId": APP, "owner": "octo-org"})).await)["installationId"], 99);
    assert_eq!(lookups(&stack) - before, 2);
}

/// Unknown node IDs, random ones included, are answered from one listing of the App's
/// installations (kept 30 s): they cannot drain the App's rate limit.
#[tokio::test]
async fn a_thousand_unknown_node_ids_cost_one_listing() {
    let stack = stack().await;
    let handler = stack.installation_token_handler();
    for i in 0..1000 {
        let reply = post(&handler, json!({"appId": APP, "nodeId": format!("O_kgDOrandom{i}")})).await;
        assert_eq!((reply.status, reply.error_type.as_deref()), (400, Some("ClientSideError")));
    }
    assert_eq!(stack.github.calls("GET /app/installations"), 1, "{:?}", stack.github.all_calls());
    // A known one is found in the same listing.
    ok(&post(&handler, json!({"appId": APP, "nodeId": "O_kgDOocto-org"})).await);
    assert_eq!(stack.github.calls("GET /app/installations"), 1);
}

/// An installation uninstalled at GitHub whose row is still in the table: the first request
/// finds out (its mint is a 404, the listing has it no more), deletes the row and keeps "none";
/// the next ones cost GitHub nothing.
#[tokio::test]
async fn an_uninstalled_installation_still_in_the_table_is_found_out_once() {
    let stack = stack().await;
    let handler = stack.installation_token_handler();
    ok(&post(&handler, json!({"appId": APP, "nodeId": "O_kgDOocto-org"})).await);
    assert!(stack.installation_rows().await.iter().any(|r| r.node_id == "O_kgDOocto-org"));
    stack.github.uninstall(71);
    // A fresh function (its own caches) that knows the installation only from the table.
    let handler = stack.installation_token_handler();
    let before = stack.github.all_calls().values().sum::<usize>();
    for _ in 0..20 {
        let reply = post(&handler, json!({"appId": APP, "nodeId": "O_kgDOocto-org"})).await;
        assert_eq!((reply.status, reply.error_type.as_deref()), (400, Some("ClientSideError")), "{:?}", reply.body);
    }
    let calls = stack.github.all_calls().values().sum::<usize>() - before;
    assert!(calls <= 4, "found out once (JWT-free mint 404, one listing page): {:?}", stack.github.all_calls());
    assert!(!stack.installation_rows().await.iter().any(|r| r.node_id == "O_kgDOocto-org"), "the row is gone");
}

/// An owner with no installation, asked about again and again: GitHub is asked once (its two
/// lookups), and the answer is kept for 30 s.
#[tokio::test]
async fn an_unknown_owner_asked_about_repeatedly_costs_two_lookups() {
    let stack = stack().await;
    let handler = stack.installation_token_handler();
    for _ in 0..100 {
        let reply = post(&handler, json!({"appId": APP, "owner": "nobody-here"})).await;
        assert_eq!((reply.status, reply.error_type.as_deref()), (400, Some("ClientSideError")));
        assert_eq!(reply.body["message"], format!("App {APP} has no installation for owner nobody-here"));
    }
    let lookups = stack.github.calls("GET /users/nobody-here/installation")
        + stack.github.calls("GET /orgs/nobody-here/installation");
    assert_eq!(lookups, 2, "{:?}", stack.github.all_calls());
}

/// A mint whose answer does not come back in time has an unknown outcome: it is not sent again
/// (a second one would leave a token valid for an hour that nobody holds), and the caller gets
/// the contract's error before the invocation's deadline.
#[tokio::test]
async fn a_mint_whose_answer_is_lost_is_not_sent_again() {
    let stack = stack().await;
    let handler = stack.installation_token_handler();
    ok(&post(&handler, json!({"appId": APP, "owner": "octo-org"})).await); // warm: resolved, JWT cached
    let minted_before = stack.github.issued_tokens().len();
    stack.github.inject(Fault::new("access_tokens", 10, FaultKind::AnswerLate(Duration::from_secs(30))));
    let started = Instant::now();
    let req =
        UrlRequest::post_json(PATH, &json!({"appId": APP, "owner": "octo-org"})).deadline_in(Duration::from_secs(3));
    let reply = handler.call(req).await;
    assert!(started.elapsed() < Duration::from_secs(3), "answered before the deadline: {:?}", started.elapsed());
    assert_eq!((reply.status, reply.error_type.as_deref()), (500, Some("ServerSideError")), "{:?}", reply.body);
    assert_eq!(stack.github.calls("POST /app/installations/71/access_tokens"), 2, "the warm-up's and one more");
    assert_eq!(stack.github.issued_tokens().len(), minted_before + 1, "at most one token nobody holds");
}

/// A GitHub that hangs on every call: the caller gets `ServerSideError` with the contract's body
/// before Lambda's deadline, never the 502 of a function stopped mid-request.
#[tokio::test]
async fn a_hanging_github_gets_the_contract_error_before_the_deadline() {
    let stack = stack().await;
    let handler = stack.installation_token_handler();
    stack.github.inject(Fault::new("/", 1000, FaultKind::Delay(Duration::from_secs(60))));
    for left in [Duration::from_millis(1500), Duration::from_secs(4)] {
        let started = Instant::now();
        let req = UrlRequest::post_json(PATH, &json!({"appId": APP, "owner": "octo-org"})).deadline_in(left);
        let reply = handler.call(req).await;
        let took = started.elapsed();
        assert!(took < left, "answered after the deadline: {took:?} of {left:?}");
        assert!(took + Duration::from_secs(1) > left, "used the time it had: {took:?} of {left:?}");
        assert_eq!((reply.status, reply.error_type.as_deref()), (500, Some("ServerSideError")), "{:?}", reply.body);
        let message = reply.body["message"].as_str().unwrap();
        assert!(
            message == "GitHub is unavailable (timed out)" || message.contains("time limit"),
            "the contract's message: {message}"
        );
    }
}

/// The slug is best effort: a GitHub that fails `GET /app` costs the answer its `appSlug`, not
/// the token, and the failure is remembered, so later requests do not ask again.
#[tokio::test]
async fn the_slug_is_best_effort_and_its_failure_is_cached() {
    let stack = stack().await;
    let handler = stack.installation_token_handler();
    stack.github.inject(Fault::new("GET /app", 100, FaultKind::Status(500)));
    let body = ok(&post(&handler, json!({"appId": APP, "owner": "octo-org"})).await).clone();
    assert!(body.get("appSlug").is_none(), "{body}");
    assert!(body["installationToken"].as_str().unwrap().starts_with("ghs_"));
    let asked = stack.github.calls("GET /app");
    assert!((1..=3).contains(&asked), "bounded retries: {asked}");
    for _ in 0..5 {
        let body = ok(&post(&handler, json!({"appId": APP, "owner": "octo-org"})).await).clone();
        assert!(body.get("appSlug").is_none());
    }
    assert_eq!(stack.github.calls("GET /app"), asked, "the failure is kept; GitHub is not asked again");
}

/// **(ext)** The proof after the mint: a GitHub that answers wider than asked (here every
/// permission and repository of the installation for one repository's `contents: read`) has its
/// token revoked at once; the caller gets `ServerSideError`, and one audit line says so, with the
/// token's SHA-256 and never the token.
#[tokio::test]
async fn a_token_wider_than_asked_is_revoked_and_never_handed_out() {
    let logs = Logs::capture();
    let stack = stack().await;
    let handler = stack.installation_token_handler();
    stack.github.answer_mints_too_wide(true);
    let scope = json!({"repositoryNames": ["hello-world"], "permissions": {"contents": "read"}});
    let asked = json!({"appId": APP, "nodeId": "O_kgDOocto-org", "scopeDown": scope});
    let reply = post(&handler, asked.clone()).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (500, Some("ServerSideError")), "{:?}", reply.body);
    assert!(reply.body.get("installationToken").is_none());

    let issued = stack.github.issued_tokens();
    assert_eq!(issued.len(), 1, "one mint");
    let wide = &issued[0];
    assert_eq!(wide.repositories, None, "the double granted every repository");
    assert!(wide.revoked, "exactly the token minted was revoked");
    assert_eq!(stack.github.calls("DELETE /installation/token"), 1);

    let audit = logs.lines_for("appcreds::audit");
    assert_eq!(audit.len(), 1, "one audit line, no `credential issued`: {audit:?}");
    let line = &audit[0]["fields"];
    assert_eq!(line["message"], "installation token wider than asked: revoked");
    assert_eq!(line["token_sha256"], appcreds_core::Secret::new(wide.token.clone()).sha256_hex());
    assert_eq!(line["installation_id"], 71);
    assert_eq!(line["revoked"], true);
    assert!(line["wider"].as_str().unwrap().contains("issues"), "names what was wider: {line}");
    assert!(!logs.text().contains(&wide.token), "no token in the logs");

    // A GitHub that answers as asked: the token is handed out.
    stack.github.answer_mints_too_wide(false);
    let body = ok(&post(&handler, asked).await).clone();
    assert_eq!(body["actualScopeDown"]["repositoryNames"], json!(["hello-world"]));
}

/// **(ext)** A token minted wider than asked whose revoke GitHub fails: still never handed out,
/// and its audit line, at ERROR, says it was not revoked and lives out its hour.
#[tokio::test]
async fn a_token_wider_than_asked_that_cannot_be_revoked_is_audited_at_error() {
    let logs = Logs::capture();
    let stack = stack().await;
    let handler = stack.installation_token_handler();
    stack.github.answer_mints_too_wide(true);
    stack.github.inject(Fault::new("DELETE /installation/token", 10, FaultKind::Status(500)));
    let scope = json!({"repositoryNames": ["hello-world"], "permissions": {"contents": "read"}});
    let reply = post(&handler, json!({"appId": APP, "nodeId": "O_kgDOocto-org", "scopeDown": scope})).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (500, Some("ServerSideError")), "{:?}", reply.body);
    assert!(reply.body.get("installationToken").is_none());
    let issued = stack.github.issued_tokens();
    assert_eq!((issued.len(), issued[0].revoked), (1, false), "{issued:?}");

    let audit = logs.lines_for("appcreds::audit");
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["level"], "ERROR");
    let line = &audit[0]["fields"];
    assert_eq!(line["message"], "installation token wider than asked: not revoked, expires within the hour");
    assert_eq!(line["token_sha256"], appcreds_core::Secret::new(issued[0].token.clone()).sha256_hex());
    assert_eq!((line["installation_id"].as_i64(), line["revoked"].as_bool()), (Some(71), Some(false)));
    assert!(!logs.text().contains(&issued[0].token), "no token in the logs");
}

/// **(ext)** The pre-flight check: a request for a permission the installation does not grant, or
/// at a higher level, is refused before the mint with a `ClientSideError` that names it (GitHub's
/// own 422 named nothing). The installation's permissions come with its lookup at no extra cost.
#[tokio::test]
async fn permissions_the_installation_lacks_are_refused_before_the_mint() {
    let stack = stack().await;
    let handler = stack.installation_token_handler();
    let ask =
        |permissions: Value| json!({"appId": APP, "owner": "octo-org", "scopeDown": {"permissions": permissions}});
    let reply = post(&handler, ask(json!({"contents": "read", "administration": "read"}))).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (400, Some("ClientSideError")), "{:?}", reply.body);
    assert_eq!(
        reply.body["message"],
        "the installation of App 500 on octo-org does not grant permission administration: read"
    );
    assert!(reply.body.get("documentationUrl").is_none(), "appcreds' own refusal");
    // An installation that grants contents at a lower level than asked.
    let mut readers = Installation::org(APP, 73, "readers", &[(7301, "site")]);
    readers.permissions.insert("contents".into(), "read".into());
    stack.github.install(readers);
    let asked = json!({"appId": APP, "owner": "readers", "scopeDown": {"permissions": {"contents": "write"}}});
    let reply = post(&handler, asked).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (400, Some("ClientSideError")), "{:?}", reply.body);
    assert_eq!(
        reply.body["message"],
        "the installation of App 500 on readers does not grant permission contents: write (it grants read)"
    );
    assert_eq!(stack.github.calls("POST /app/installations/73/access_tokens"), 0, "never minted");
    assert_eq!(stack.github.calls("POST /app/installations/71/access_tokens"), 0, "never minted");
    assert_eq!(stack.github.calls("GET /app/installations/71"), 0, "the lookup gave the permissions");
    ok(&post(&handler, ask(json!({"issues": "write", "contents": "write"}))).await);
}

/// **(ext)** The pre-flight check of an installation known from the table: its row holds what
/// the installation grants (written with it), but a row may be stale, so a refusal is confirmed
/// once by `GET /app/installations/{id}` and GitHub's answer kept for 30 s: refusals in a row cost
/// GitHub one call. A row without it (as an earlier version wrote it) is completed by the same
/// call and written back.
#[tokio::test]
async fn the_pre_flight_check_of_a_table_row_is_confirmed_once_before_refusing() {
    let stack = stack().await;
    ok(&post(&stack.installation_token_handler(), json!({"appId": APP, "nodeId": "O_kgDOocto-org"})).await);
    let asked =
        json!({"appId": APP, "nodeId": "O_kgDOocto-org", "scopeDown": {"permissions": {"pull_requests": "read"}}});
    let refused = |reply: Reply| {
        assert_eq!((reply.status, reply.error_type.as_deref()), (400, Some("ClientSideError")), "{:?}", reply.body);
        assert!(reply.body["message"].as_str().unwrap().ends_with("does not grant permission pull_requests: read"));
    };
    // A fresh function: the table knows the installation, and what it grants.
    let handler = stack.installation_token_handler();
    for _ in 0..3 {
        refused(post(&handler, asked.clone()).await);
    }
    assert_eq!(stack.github.calls("GET /app/installations/71"), 1, "the row's refusal confirmed once");
    assert_eq!(stack.github.calls("GET /app/installations"), 1, "listed once, by the first request");
    assert_eq!(stack.github.calls("POST /app/installations/71/access_tokens"), 1, "only the first request minted");

    // A row without it: asked once, kept, and written back for the next function.
    let bare = stack.installation_rows().await;
    stack
        .installation_store()
        .write(bare.into_iter().map(Into::into).collect(), Vec::new(), "2026-11-24T00:00:00Z")
        .await
        .unwrap();
    let handler = stack.installation_token_handler();
    for _ in 0..3 {
        refused(post(&handler, asked.clone()).await);
    }
    assert_eq!(stack.github.calls("GET /app/installations/71"), 2, "asked once, then kept");
    let row = stack.installation_store().get(APP, "O_kgDOocto-org").await.unwrap().unwrap();
    assert_eq!(row.grants.unwrap().permissions["contents"], "write", "written back");
    assert_eq!(stack.github.calls("POST /app/installations/71/access_tokens"), 1);
}

/// **(ext)** A stale row never refuses a valid request: the row says `contents: read`, but the
/// owner has since accepted `contents: write`. The refusal the row would give is asked of GitHub
/// (one `GET /app/installations/{id}`), whose answer allows it: the token is minted, the row
/// written again, and the next request costs no more calls.
#[tokio::test]
async fn a_stale_row_is_asked_again_before_it_refuses() {
    use appcreds_core::domain::scope::InstallationGrants;
    let stack = stack().await;
    ok(&post(&stack.installation_token_handler(), json!({"appId": APP, "nodeId": "O_kgDOocto-org"})).await);
    let store = stack.installation_store();
    let mut row = store.get(APP, "O_kgDOocto-org").await.unwrap().unwrap();
    assert_eq!(row.grants.as_ref().unwrap().permissions["contents"], "write", "the double's installation");
    let stale = InstallationGrants {
        permissions: [("contents".to_string(), "read".to_string())].into(),
        repository_selection: "selected".into(),
    };
    row.grants = Some(stale);
    store.write(vec![row], Vec::new(), "2026-11-24T00:00:00Z").await.unwrap();

    let handler = stack.installation_token_handler();
    let asked = json!({"appId": APP, "nodeId": "O_kgDOocto-org", "scopeDown": {"permissions": {"contents": "write"}}});
    let body = ok(&post(&handler, asked.clone()).await).clone();
    assert_eq!(body["actualScopeDown"]["permissions"]["contents"], "write");
    assert_eq!(stack.github.calls("GET /app/installations/71"), 1, "GitHub asked once");
    let row = store.get(APP, "O_kgDOocto-org").await.unwrap().unwrap();
    assert_eq!(row.grants.unwrap().permissions["contents"], "write", "the row written again");
    ok(&post(&handler, asked).await);
    assert_eq!(stack.github.calls("GET /app/installations/71"), 1, "the fresh answer is kept");
    assert_eq!(stack.github.calls("POST /app/installations/71/access_tokens"), 3);
}

/// **(ext)** What GitHub says an installation grants goes back onto its row as it was read, and
/// nothing more: a row the sync deleted meanwhile (a confirmed uninstall, here between the
/// request that read the row and the one that asks GitHub) is not brought back, and a row that
/// holds another installation (reinstalled) is left as it is; onto the row read, only the grants
/// change (a newer name the sync wrote stays).
#[tokio::test]
async fn grants_written_back_never_bring_a_deleted_row_back() {
    use appcreds_core::domain::scope::InstallationGrants;
    use appcreds_core::ports::TablePosition;
    let stack = stack().await;
    ok(&post(&stack.installation_token_handler(), json!({"appId": APP, "nodeId": "O_kgDOocto-org"})).await);
    let store = stack.installation_store();
    let mut row = store.get(APP, "O_kgDOocto-org").await.unwrap().unwrap();
    let fresh = row.grants.clone().unwrap();
    let stale = InstallationGrants {
        permissions: [("contents".to_string(), "read".to_string())].into(),
        repository_selection: "selected".into(),
    };
    row.grants = Some(stale.clone());
    store.write(vec![row.clone()], Vec::new(), "2026-11-24T00:00:00Z").await.unwrap();

    let handler = stack.installation_token_handler();
    let read = json!({"appId": APP, "nodeId": "O_kgDOocto-org", "scopeDown": {"permissions": {"contents": "read"}}});
    ok(&post(&handler, read).await);
    let at = TablePosition { app_id: APP, node_id: "O_kgDOocto-org".into() };
    store.write(Vec::new(), vec![at.clone()], "2026-11-24T00:00:00Z").await.unwrap();
    let write = json!({"appId": APP, "nodeId": "O_kgDOocto-org", "scopeDown": {"permissions": {"contents": "write"}}});
    ok(&post(&handler, write).await);
    assert_eq!(stack.github.calls("GET /app/installations/71"), 1, "GitHub asked");
    assert_eq!(store.get(APP, "O_kgDOocto-org").await.unwrap(), None, "the deleted row stays deleted");

    // Reinstalled: the row holds installation 72 now, and the grants of 71 do not land on it.
    let mut reinstalled = row.clone();
    reinstalled.record.installation_id = 72;
    reinstalled.record.name = "octo-org-renamed".into();
    store.write(vec![reinstalled.clone()], Vec::new(), "2026-11-24T00:00:00Z").await.unwrap();
    assert!(!store.write_grants(&at, 71, &fresh, "2026-11-25T00:00:00Z").await.unwrap());
    assert_eq!(store.get(APP, "O_kgDOocto-org").await.unwrap(), Some(reinstalled.clone()));
    assert!(store.write_grants(&at, 72, &fresh, "2026-11-25T00:00:00Z").await.unwrap());
    let written = store.get(APP, "O_kgDOocto-org").await.unwrap().unwrap();
    assert_eq!(written, InstallationRow { grants: Some(fresh), ..reinstalled }, "only the grants changed");
}
