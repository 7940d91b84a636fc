#![allow(clippy::unwrap_used)]
//! Access rules enforced through every handler: rules in the access table on moto, tokens at the
//! GitHub double, callers as Lambda's request context names them.

use appcreds_core::domain::clock::{Clock, ManualClock, SystemClock};
use appcreds_core::http::Endpoint;
use appcreds_core::ops::app_token::AppToken;
use appcreds_core::ops::get_installation::GetInstallation;
use appcreds_core::ops::installation_token::InstallationToken;
use appcreds_core::ops::refresh::Refresh;
use appcreds_tests::github::Installation;
use appcreds_tests::lambda::{CALLER_ARN, Reply, UrlRequest};
use appcreds_tests::{Logs, Stack, endpoint, send};
use serde_json::{Value, json};

const APP: i64 = 700;
/// The role of [`CALLER_ARN`] (`assumed-role/ci-deployer/session-1`).
const ROLE: &str = "arn:aws:iam::123456789012:role/ci-deployer";

async fn stack() -> Stack {
    Stack::with_installations(APP).await
}

/// A stack with the release rule, and installation-token enforcing it.
async fn release_stack() -> (Stack, Endpoint<InstallationToken>) {
    let stack = stack().await;
    stack.put_rule(release_rule()).await;
    let handler = endpoint(InstallationToken::new(&stack.enforcing(SystemClock)));
    (stack, handler)
}

fn release_rule() -> Value {
    json!({
        "id": "release", "description": "the release workflow of octo-org/hello-world",
        "principals": [ROLE], "operations": ["installation-token"], "apps": [APP],
        "owners": ["octo-org"], "repositories": ["hello-world"],
        "permissions": {"contents": "write", "metadata": "read"}
    })
}

async fn post<O: appcreds_core::http::Operation>(handler: &Endpoint<O>, path: &str, body: Value) -> Reply {
    send(|r| handler.handle(r), UrlRequest::post_json(path, &body)).await
}

async fn post_as<O: appcreds_core::http::Operation>(
    handler: &Endpoint<O>,
    path: &str,
    arn: &str,
    body: Value,
) -> Reply {
    let mut req = UrlRequest::post_json(path, &body);
    req.caller_arn = Some(arn.into());
    send(|r| handler.handle(r), req).await
}

fn denied(reply: &Reply) -> String {
    assert_eq!((reply.status, reply.error_type.as_deref()), (403, Some("AccessDeniedException")), "{:?}", reply.body);
    reply.body["message"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "current_thread")]
async fn a_token_without_scope_gets_the_grant_and_never_the_whole_installation() {
    let (stack, handler) = release_stack().await;
    let logs = Logs::capture();

    let reply = post(&handler, "/tokens/installation", json!({"appId": APP, "owner": "octo-org"})).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let issued = stack.github.issued(reply.body["installationToken"].as_str().unwrap()).unwrap();
    assert_eq!(issued.repositories, Some(vec!["hello-world".to_string()]), "the grant's repositories");
    assert_eq!(
        issued.permissions.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>(),
        [("contents", "write"), ("metadata", "read")],
        "the grant's ceiling"
    );
    assert_eq!(reply.body["actualScopeDown"]["repositoryNames"], json!(["hello-world"]));
    let audit = logs.lines_for("appcreds::audit");
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["fields"]["rule"], "release", "the audit line names the rule");
    assert_eq!(audit[0]["fields"]["caller"], CALLER_ARN);
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_beyond_the_grant_is_refused_and_names_what_exceeded() {
    let (stack, handler) = release_stack().await;
    let logs = Logs::capture();
    let ask = |scope: Value| json!({"appId": APP, "owner": "octo-org", "scopeDown": scope});

    let too_high = post(&handler, "/tokens/installation", ask(json!({"permissions": {"metadata": "write"}}))).await;
    assert_eq!(denied(&too_high), "permission metadata: write exceeds the granted read");
    let not_granted = post(&handler, "/tokens/installation", ask(json!({"permissions": {"issues": "read"}}))).await;
    assert_eq!(denied(&not_granted), "permission issues: read is not granted");
    let other_repo = post(&handler, "/tokens/installation", ask(json!({"repositoryNames": ["docs"]}))).await;
    assert_eq!(denied(&other_repo), "repository docs is not granted");
    let by_id = post(&handler, "/tokens/installation", ask(json!({"repositoryIds": [7102]}))).await;
    assert_eq!(denied(&by_id), "repository ID 7102 is not granted");
    let other_owner = post(&handler, "/tokens/installation", json!({"appId": APP, "owner": "octocat"})).await;
    assert_eq!(
        denied(&other_owner),
        format!("no access rule allows {CALLER_ARN} installation-token for App {APP} on owner octocat")
    );
    assert!(stack.github.issued_tokens().is_empty(), "GitHub minted nothing");

    let within = post(
        &handler,
        "/tokens/installation",
        ask(json!({"repositoryNames": ["hello-world"], "permissions": {"contents": "read"}})),
    )
    .await;
    assert_eq!(within.status, 200, "{:?}", within.body);
    let refusals: Vec<Value> =
        logs.lines_for("appcreds::audit").into_iter().filter(|l| l["fields"]["message"] == "access denied").collect();
    assert_eq!(refusals.len(), 5, "one line per refusal");
    assert_eq!(stack.github.calls("GET /users/octocat/installation"), 0, "refused before the lookup");
    assert_eq!(refusals[0]["fields"]["caller"], CALLER_ARN);
    assert_eq!(refusals[0]["fields"]["action"], "installation-token");
    assert_eq!(refusals[0]["fields"]["installation"], "octo-org");
    assert_eq!(refusals[0]["fields"]["why"], "permission metadata: write exceeds the granted read");
    assert!(!logs.text().contains("\"request refused\""), "no second line for the same refusal");
}

#[tokio::test]
async fn a_caller_no_rule_names_learns_nothing_about_installations() {
    let (stack, handler) = release_stack().await;
    // The session name is the caller's choice: naming the rule's role there gains nothing.
    let forged = "arn:aws:sts::123456789012:assumed-role/other-role/ci-deployer";
    let reply = post_as(&handler, "/tokens/installation", forged, json!({"appId": APP, "owner": "nobody-here"})).await;
    assert_eq!(denied(&reply), format!("no access rule allows {forged} installation-token for App {APP}"));
    let other_app = post(&handler, "/tokens/installation", json!({"appId": APP + 1, "owner": "octo-org"})).await;
    denied(&other_app);
    assert!(stack.github.all_calls().is_empty(), "refused before any lookup: {:?}", stack.github.all_calls());
}

#[tokio::test]
async fn the_app_jwt_needs_a_rule_that_grants_it_by_name() {
    let stack = stack().await;
    stack.put_rule(release_rule()).await;
    let handler = endpoint(AppToken::new(&stack.enforcing(SystemClock)));
    let refused = post(&handler, "/tokens/app", json!({"appId": APP})).await;
    assert_eq!(denied(&refused), format!("no access rule allows {CALLER_ARN} app-token for App {APP}"));
    assert_eq!(stack.counter.count("Sign"), 0, "nothing signed for a refused caller");

    stack.put_rule(json!({"id": "operator", "principals": [ROLE], "operations": ["app-token"], "apps": [APP]})).await;
    let handler = endpoint(AppToken::new(&stack.enforcing(SystemClock)));
    let granted = post(&handler, "/tokens/app", json!({"appId": APP})).await;
    assert_eq!(granted.status, 200, "{:?}", granted.body);
    let other_app = post(&handler, "/tokens/app", json!({"appId": APP + 1})).await;
    denied(&other_app);
}

#[tokio::test]
async fn reading_and_refreshing_need_their_operations_and_reads_cover_granted_apps_only() {
    let stack = stack().await;
    stack.add_app(APP + 1).await;
    stack.github.install(Installation::org(APP + 1, 81, "octo-org", &[(8101, "x")]));
    let refresh = endpoint(Refresh::new(&stack.enforcing(SystemClock)));
    denied(&post(&refresh, "/installations/refresh", json!({})).await);

    stack.put_rule(json!({"id": "ops", "principals": [ROLE], "operations": ["refresh"], "apps": ["*"]})).await;
    stack
        .put_rule(json!({"id": "reader", "principals": [ROLE], "operations": ["read-installations"], "apps": [APP], "owners": ["octo-org"]}))
        .await;
    let refresh = endpoint(Refresh::new(&stack.enforcing(SystemClock)));
    assert_eq!(post(&refresh, "/installations/refresh", json!({})).await.status, 200);

    let mut services = stack.enforcing(SystemClock);
    services.mac =
        std::sync::Arc::new(appcreds_core::aws::kms::KmsMac::new(stack.counted_kms(), stack.pagination_key().await));
    let reader = endpoint(GetInstallation::new(&services));
    let info = post(&reader, "/installations/info", json!({"nodeId": "O_kgDOocto-org"})).await;
    assert_eq!(info.status, 200, "{:?}", info.body);
    let apps: Vec<i64> =
        info.body["installations"].as_array().unwrap().iter().map(|i| i["appId"].as_i64().unwrap()).collect();
    assert_eq!(apps, [APP], "App {} is installed there too, but not granted", APP + 1);
    let list = post(&reader, "/installations", json!({})).await;
    let listed: Vec<i64> =
        list.body["installations"].as_array().unwrap().iter().map(|i| i["appId"].as_i64().unwrap()).collect();
    assert_eq!(listed, [APP], "App {APP}'s octo-org installation: not octocat's, and none of the other App's");
    let stranger = "arn:aws:sts::123456789012:assumed-role/stranger/s";
    denied(&post_as(&reader, "/installations/info", stranger, json!({"nodeId": "O_kgDOocto-org"})).await);
}

/// 1,000 warm requests read the access table once; a rule change takes effect within a minute.
#[tokio::test]
async fn rules_are_read_once_per_minute_and_changes_take_effect_within_it() {
    let stack = stack().await;
    let clock = ManualClock::new(SystemClock.now());
    let handler = endpoint(AppToken::new(&stack.enforcing(clock.clone())));
    denied(&post(&handler, "/tokens/app", json!({"appId": APP})).await);
    stack.put_rule(json!({"id": "operator", "principals": [ROLE], "operations": ["app-token"], "apps": [APP]})).await;
    // Still the rules read a moment ago.
    denied(&post(&handler, "/tokens/app", json!({"appId": APP})).await);
    clock.advance(60);
    stack.counter.reset();
    for _ in 0..1000 {
        assert_eq!(post(&handler, "/tokens/app", json!({"appId": APP})).await.status, 200);
        clock.advance(0);
    }
    assert_eq!(stack.counter.count("Scan"), 1, "{:?}", stack.counter.snapshot());
    clock.advance(59);
    post(&handler, "/tokens/app", json!({"appId": APP})).await;
    assert_eq!(stack.counter.count("Scan"), 1, "still within the minute");
    clock.advance(1);
    post(&handler, "/tokens/app", json!({"appId": APP})).await;
    assert_eq!(stack.counter.count("Scan"), 2, "read again after a minute");
}

#[tokio::test]
async fn without_an_access_table_every_request_is_a_server_error_not_an_open_door() {
    let stack = stack().await;
    let mut services = stack.enforcing(SystemClock);
    services.access = appcreds_core::Services::unconfigured().access;
    let handler = endpoint(AppToken::new(&services));
    let reply = post(&handler, "/tokens/app", json!({"appId": APP})).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (500, Some("ServerSideError")));
    assert_eq!(reply.body["message"], "ACCESS_TABLE_NAME is not set");
}

/// A caller whose rules cover one owner cannot tell, by node ID or repository, whether another
/// installation exists: both answers are the same refusal, naming the installation as it was named.
#[tokio::test]
async fn unknown_and_uncovered_installations_are_refused_alike() {
    let (_stack, handler) = release_stack().await;
    let exists = post(&handler, "/tokens/installation", json!({"appId": APP, "nodeId": "U_kgDOoctocat"})).await;
    let missing = post(&handler, "/tokens/installation", json!({"appId": APP, "nodeId": "U_kgDOnobody"})).await;
    assert_eq!(
        denied(&exists),
        format!("no access rule allows {CALLER_ARN} installation-token for App {APP} on node ID U_kgDOoctocat")
    );
    assert_eq!(
        denied(&missing),
        format!("no access rule allows {CALLER_ARN} installation-token for App {APP} on node ID U_kgDOnobody")
    );
    assert!(
        !denied(&exists).replace("U_kgDOoctocat", "").contains("octocat"),
        "the login behind the node ID is not told"
    );
    let private = post(&handler, "/tokens/installation", json!({"appId": APP, "repository": "octocat/secret"})).await;
    assert!(denied(&private).ends_with("on repository octocat/secret"));
}

/// A caller granted one repository of an owner names others: a private one that exists and one
/// that does not. Both are refused before any lookup, in the same words (the oracle closed), and
/// none of it costs GitHub a call.
#[tokio::test(flavor = "current_thread")]
async fn repositories_not_granted_are_refused_alike_before_any_lookup() {
    let (stack, handler) = release_stack().await;
    let ask = |repository: &str| json!({"appId": APP, "repository": repository});
    let exists = post(&handler, "/tokens/installation", ask("octo-org/docs")).await;
    let missing = post(&handler, "/tokens/installation", ask("octo-org/no-such-repository")).await;
    assert_eq!(denied(&exists), "repository docs is not granted");
    assert_eq!(denied(&missing), "repository no-such-repository is not granted");
    assert_eq!((exists.status, &exists.error_type), (missing.status, &missing.error_type));
    assert_eq!(
        stack.github.all_calls().values().sum::<usize>(),
        0,
        "no lookup, no mint: {:?}",
        stack.github.all_calls()
    );

    let granted = post(&handler, "/tokens/installation", ask("octo-org/hello-world")).await;
    assert_eq!(granted.status, 200, "{:?}", granted.body);
    assert_eq!(
        stack.github.issued(granted.body["installationToken"].as_str().unwrap()).unwrap().repositories,
        Some(vec!["hello-world".to_string()])
    );
}

/// A caller granted every repository of an owner (by a pattern) tries many names: each costs the
/// mint it asked for and no lookup of its own (the owner's installation is looked up once), and a
/// repository target gets a token for that repository only, never the whole grant.
#[tokio::test(flavor = "current_thread")]
async fn repository_names_cost_github_no_lookups_and_narrow_the_token() {
    let stack = stack().await;
    let mut rule = release_rule();
    rule["repositories"] = json!(["*"]);
    stack.put_rule(rule).await;
    let handler = endpoint(InstallationToken::new(&stack.enforcing(SystemClock)));

    let docs = post(&handler, "/tokens/installation", json!({"appId": APP, "repository": "octo-org/docs"})).await;
    assert_eq!(docs.status, 200, "{:?}", docs.body);
    let issued = stack.github.issued(docs.body["installationToken"].as_str().unwrap()).unwrap();
    assert_eq!(issued.repositories, Some(vec!["docs".to_string()]), "the repository named, not every one");
    assert_eq!(docs.body["actualScopeDown"]["repositoryNames"], json!(["docs"]));

    for i in 0..20 {
        let reply =
            post(&handler, "/tokens/installation", json!({"appId": APP, "repository": format!("octo-org/guess-{i}")}))
                .await;
        assert_eq!(reply.status, 400, "{:?}", reply.body);
        assert!(reply.body["message"].as_str().unwrap().contains("at least one repository"), "{:?}", reply.body);
    }
    let calls = stack.github.all_calls();
    let lookups: usize = calls.iter().filter(|(route, _)| route.ends_with("/installation")).map(|(_, n)| n).sum();
    assert_eq!(
        (stack.github.calls("GET /users/octo-org/installation"), stack.github.calls("GET /orgs/octo-org/installation")),
        (1, 1),
        "the owner's installation, looked up once (users, then orgs)"
    );
    assert_eq!(lookups, 2, "and nothing else for 21 names: {calls:?}");
    assert!(calls.keys().all(|route| !route.starts_with("GET /repos/")), "{calls:?}");
    assert_eq!(stack.github.calls("POST /app/installations/71/access_tokens"), 21, "one mint per request");
}

/// An installation on an enterprise, asked for by the enterprise's slug: found through
/// `GET /enterprises/{slug}/installation`, kept in the Installation table as `Enterprise`, and
/// granted only by a rule that names the enterprise, never by one naming an organization of the
/// same name (logins and slugs are separate names on GitHub).
#[tokio::test]
async fn an_enterprise_is_asked_for_by_slug_and_granted_only_by_a_rule_naming_it() {
    let stack = stack().await;
    stack.github.install(Installation::enterprise(APP, 79, "octo-corp"));
    stack.github.install(Installation::org(APP, 78, "octo-corp", &[(7801, "site")]));
    let by_slug = json!({"appId": APP, "enterprise": "Octo-Corp"});
    let by_login = json!({"appId": APP, "owner": "octo-corp"});

    // No rules (open mode): the slug names the enterprise's installation, the login the organization's.
    let open = endpoint(InstallationToken::new(&stack.services()));
    let reply = post(&open, "/tokens/installation", by_slug.clone()).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!((&reply.body["installationId"], &reply.body["nodeId"]), (&json!(79), &json!("E_kgDOocto-corp")));
    let issued = stack.github.issued(reply.body["installationToken"].as_str().unwrap()).unwrap();
    assert_eq!(issued.installation_id, 79);
    assert_eq!(stack.github.calls("GET /enterprises/octo-corp/installation"), 1, "asked in lower case");
    let rows = stack.installation_rows().await;
    let row = rows.iter().find(|r| r.installation_id == 79).unwrap();
    assert_eq!((row.target_type.as_str(), row.name.as_str()), ("Enterprise", "octo-corp"));
    assert_eq!(post(&open, "/tokens/installation", by_login.clone()).await.body["installationId"], 78);
    let none = post(&open, "/tokens/installation", json!({"appId": APP, "enterprise": "no-such-corp"})).await;
    assert_eq!(
        (none.status, none.body["message"].as_str()),
        (400, Some("App 700 has no installation for enterprise no-such-corp"))
    );

    // Enforced: a rule naming the owner octo-corp grants the organization, not the enterprise.
    let rule = |id: &str, naming: Value, permissions: Value| {
        let mut rule = json!({
            "id": id, "principals": [ROLE], "operations": ["installation-token"], "apps": [APP],
            "repositories": ["*"], "permissions": permissions, "organizationPermissions": true
        });
        rule.as_object_mut().unwrap().extend(naming.as_object().unwrap().clone());
        rule
    };
    stack.put_rule(rule("org", json!({"owners": ["octo-corp"]}), json!({"contents": "read"}))).await;
    let enforced = endpoint(InstallationToken::new(&stack.enforcing(SystemClock)));
    assert_eq!(post(&enforced, "/tokens/installation", by_login.clone()).await.status, 200);
    let why = denied(&post(&enforced, "/tokens/installation", by_slug.clone()).await);
    assert!(why.ends_with("on enterprise Octo-Corp"), "{why}");
    let calls = stack.github.calls("GET /enterprises/octo-corp/installation");
    assert_eq!(calls, 1, "refused before any lookup");

    // A rule naming the enterprise grants it, with its own ceiling.
    stack
        .put_rule(rule(
            "corp",
            json!({"enterprises": ["octo-corp"]}),
            json!({"enterprise_custom_properties_for_organizations": "write"}),
        ))
        .await;
    let enforced = endpoint(InstallationToken::new(&stack.enforcing(SystemClock)));
    let reply = post(&enforced, "/tokens/installation", by_slug).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let issued = stack.github.issued(reply.body["installationToken"].as_str().unwrap()).unwrap();
    assert_eq!(issued.installation_id, 79);
    assert_eq!(
        issued.permissions.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>(),
        [("enterprise_custom_properties_for_organizations", "write")]
    );
}

/// Spellings of one login share one lookup (GitHub compares logins without case), and a caller
/// whose rules name installations only by node ID can make up logins without costing GitHub a
/// lookup each: they are looked for in the App's listing, as node IDs are.
#[tokio::test(flavor = "current_thread")]
async fn made_up_spellings_and_logins_cost_github_no_lookups_of_their_own() {
    let stack = stack().await;
    let mut rule = release_rule();
    rule["repositories"] = json!(["*"]);
    stack.put_rule(rule).await;
    let handler = endpoint(InstallationToken::new(&stack.enforcing(SystemClock)));
    for target in [
        json!({"owner": "OCTO-ORG"}),
        json!({"owner": "Octo-Org"}),
        json!({"owner": "octo-org"}),
        json!({"repository": "OcTo-OrG/docs"}),
    ] {
        let mut body = target.clone();
        body["appId"] = json!(APP);
        let reply = post(&handler, "/tokens/installation", body).await;
        assert_eq!(reply.status, 200, "{target}: {:?}", reply.body);
    }
    let lookups: Vec<(String, usize)> =
        stack.github.all_calls().into_iter().filter(|(route, _)| route.ends_with("/installation")).collect();
    assert_eq!(
        lookups,
        [("GET /orgs/octo-org/installation".to_string(), 1), ("GET /users/octo-org/installation".to_string(), 1)],
        "one lookup for every spelling"
    );

    // A rule by node ID only: logins the caller makes up are looked for in the listing.
    let stack = Stack::with_installations(APP).await;
    let mut by_node = release_rule();
    by_node["owners"] = json!([]);
    by_node["nodeIds"] = json!(["O_kgDOocto-org"]);
    by_node["repositories"] = json!(["*"]);
    stack.put_rule(by_node).await;
    let handler = endpoint(InstallationToken::new(&stack.enforcing(SystemClock)));
    for i in 0..20 {
        let reply =
            post(&handler, "/tokens/installation", json!({"appId": APP, "owner": format!("made-up-{i}")})).await;
        assert_eq!(reply.status, 403, "{:?}", reply.body);
    }
    let genuine = post(&handler, "/tokens/installation", json!({"appId": APP, "owner": "Octo-Org"})).await;
    assert_eq!(genuine.status, 200, "the login behind the rule's node ID: {:?}", genuine.body);
    let calls = stack.github.all_calls();
    assert!(
        calls.keys().all(|route| !route.starts_with("GET /users/") && !route.starts_with("GET /orgs/")),
        "{calls:?}"
    );
    assert_eq!(stack.github.calls("GET /app/installations"), 1, "one listing for 21 names: {calls:?}");
}

/// **(ext)** The pre-flight check runs only after the rules allowed the request: a caller no rule
/// allows is refused by the rules, in their words, whatever the installation grants; an allowed
/// request whose grant (here the rule's whole ceiling, for a request without `scopeDown`) goes
/// beyond the installation is refused naming the permission, before any mint.
#[tokio::test]
async fn the_installation_is_checked_only_after_the_rules_allowed() {
    let stack = stack().await;
    let mut rule = release_rule();
    rule["permissions"] = json!({"contents": "write", "pull_requests": "read"});
    stack.put_rule(rule).await;
    let handler = endpoint(InstallationToken::new(&stack.enforcing(SystemClock)));
    let stranger = "arn:aws:sts::123456789012:assumed-role/stranger/s";
    let reply = post_as(&handler, "/tokens/installation", stranger, json!({"appId": APP, "owner": "octo-org"})).await;
    assert!(denied(&reply).contains("no access rule allows"), "{:?}", reply.body);
    let reply = post(&handler, "/tokens/installation", json!({"appId": APP, "owner": "octo-org"})).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (400, Some("ClientSideError")), "{:?}", reply.body);
    assert_eq!(
        reply.body["message"],
        format!("the installation of App {APP} on octo-org does not grant permission pull_requests: read")
    );
    assert_eq!(stack.github.calls("POST /app/installations/71/access_tokens"), 0);
}
