#![allow(clippy::unwrap_used)]
//! The GitHub client against the GitHub double: pagination, retries, rate limits, timeouts, and
//! GitHub's refusals, with the number of requests that reached the double checked each time.

use std::time::{Duration, Instant};

use appcreds_core::Error;
use appcreds_core::Secret;
use appcreds_core::aws::kms::KmsSigner;
use appcreds_core::deadline;
use appcreds_core::domain::clock::{Clock, SystemClock};
use appcreds_core::domain::jwt::{Claims, assemble};
use appcreds_core::github::{Auth, GitHubClient, RetryPolicy, Timeouts};
use appcreds_core::ports::Signer;
use appcreds_tests::Stack;
use appcreds_tests::github::{Fault, FaultKind, Installation};
use serde_json::Value;

const APP: i64 = 300;

async fn jwt(stack: &Stack, key_arn: &str, app_id: i64) -> Secret {
    let input = Claims::for_app(app_id, SystemClock.now()).signing_input();
    let sig = KmsSigner::new(stack.kms.clone()).sign(key_arn, input.as_bytes()).await.unwrap();
    Secret::new(assemble(&input, &sig))
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        max_total_wait: Duration::from_secs(3),
    }
}

fn client(stack: &Stack, timeouts: Timeouts) -> GitHubClient {
    GitHubClient::new(&stack.github.url(), timeouts, fast_retries()).unwrap()
}

async fn setup(installations: i64) -> (Stack, Secret, GitHubClient) {
    let stack = Stack::start().await;
    let key = stack.add_app(APP).await;
    for i in 0..installations {
        stack.github.install(Installation::org(APP, 1000 + i, &format!("org{i}"), &[(5000 + i, "repo")]));
    }
    let jwt = jwt(&stack, &key.arn, APP).await;
    let client = client(&stack, Timeouts::default());
    (stack, jwt, client)
}

const LIST: &str = "/app/installations?per_page=100";

#[tokio::test]
async fn lists_every_page_by_following_link_headers() {
    let (stack, jwt, gh) = setup(250).await;
    let all: Vec<Value> = gh.get_all(LIST, Auth::App { app_id: APP, jwt: &jwt }, None).await.unwrap();
    assert_eq!(all.len(), 250);
    let ids: Vec<i64> = all.iter().map(|i| i["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (1000..1250).collect::<Vec<_>>(), "every installation once, in order");
    assert_eq!(stack.github.calls("GET /app/installations"), 3, "three pages");
}

#[tokio::test]
async fn retries_a_server_error_and_gives_up_after_the_attempts() {
    let (stack, jwt, gh) = setup(150).await;
    let auth = Auth::App { app_id: APP, jwt: &jwt };
    stack.github.inject(Fault::new("page=2", 1, FaultKind::Status(502)));
    let all: Vec<Value> = gh.get_all(LIST, auth, None).await.unwrap();
    assert_eq!(all.len(), 150, "the retried page is complete");
    assert_eq!(stack.github.calls("GET /app/installations"), 3, "page 1, page 2 failed, page 2 again");

    stack.github.inject(Fault::new("GET /app/installations", 10, FaultKind::Status(500)));
    let err = gh.get_all::<Value>(LIST, auth, None).await.unwrap_err();
    assert!(matches!(&err, Error::GitHubUnavailable(m) if m == "HTTP 500"), "{err:?}");
    assert_eq!(stack.github.calls("GET /app/installations"), 3 + 3, "max_attempts = 3");
}

#[tokio::test]
async fn honours_retry_after_within_the_budget() {
    let (stack, jwt, gh) = setup(1).await;
    let auth = Auth::App { app_id: APP, jwt: &jwt };
    stack.github.inject(Fault::new("GET /app", 1, FaultKind::RateLimit { status: 429, retry_after: Some(1) }));
    let started = Instant::now();
    let app: Value = gh.get("/app", auth).await.unwrap();
    assert_eq!(app["id"], APP);
    assert!(started.elapsed() >= Duration::from_secs(1), "waited as GitHub asked: {:?}", started.elapsed());
    assert_eq!(stack.github.calls("GET /app"), 2);
}

#[tokio::test]
async fn a_rate_limit_beyond_the_budget_is_a_throttling_error_at_once() {
    let (stack, jwt, gh) = setup(1).await;
    let auth = Auth::App { app_id: APP, jwt: &jwt };
    stack.github.inject(Fault::new("GET /app", 1, FaultKind::RateLimit { status: 403, retry_after: Some(30) }));
    let started = Instant::now();
    let err = gh.get::<Value>("/app", auth).await.unwrap_err();
    assert!(matches!(err, Error::Throttled { service: "GitHub", retry_after_seconds: 30 }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "did not sleep 30 s");
    assert_eq!(stack.github.calls("GET /app"), 1);

    // A secondary rate limit without retry-after: GitHub says wait a minute, over the budget.
    stack.github.inject(Fault::new("GET /app", 1, FaultKind::RateLimit { status: 403, retry_after: None }));
    let err = gh.get::<Value>("/app", auth).await.unwrap_err();
    assert!(matches!(err, Error::Throttled { retry_after_seconds: 60, .. }), "{err:?}");
    let (name, body) = appcreds_core::http::error_reply(&err);
    assert_eq!((name.as_str(), body.retry_after_seconds), ("ThrottlingException", Some(60)));
}

#[tokio::test]
async fn a_slow_github_times_out_and_is_retried() {
    let (stack, jwt, _) = setup(1).await;
    let gh = client(&stack, Timeouts { connect: Duration::from_secs(1), request: Duration::from_millis(300) });
    let auth = Auth::App { app_id: APP, jwt: &jwt };
    stack.github.inject(Fault::new("GET /app", 1, FaultKind::Delay(Duration::from_secs(2))));
    let app: Value = gh.get("/app", auth).await.unwrap();
    assert_eq!(app["id"], APP);
    assert_eq!(stack.github.calls("GET /app"), 2);

    stack.github.inject(Fault::new("GET /app", 5, FaultKind::Delay(Duration::from_secs(2))));
    let err = gh.get::<Value>("/app", auth).await.unwrap_err();
    assert!(matches!(&err, Error::GitHubUnavailable(m) if m == "timed out"), "{err:?}");
}

#[tokio::test]
async fn a_connection_refused_is_retried_then_reported() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gh = GitHubClient::new(&format!("http://{closed}"), Timeouts::default(), fast_retries()).unwrap();
    let jwt = Secret::new("x");
    let err = gh.get::<Value>("/app", Auth::App { app_id: APP, jwt: &jwt }).await.unwrap_err();
    assert!(matches!(&err, Error::GitHubUnavailable(m) if m == "connection failed"), "{err:?}");
}

#[tokio::test]
async fn a_401_names_the_app_and_is_not_retried() {
    let (stack, _, gh) = setup(1).await;
    // A JWT signed by a key GitHub does not know for this App.
    let other = stack.add_app(APP + 1).await;
    let wrong = jwt(&stack, &other.arn, APP).await;
    let err = gh.get::<Value>("/app", Auth::App { app_id: APP, jwt: &wrong }).await.unwrap_err();
    assert!(matches!(err, Error::GitHubUnauthorized { app_id: APP }), "{err:?}");
    assert!(err.to_string().contains(&format!("App {APP}")));
    assert_eq!(appcreds_core::http::error_reply(&err).0.as_str(), "ServerSideError");
    assert_eq!(stack.github.calls("GET /app"), 1, "no retry loop on 401");
}

#[tokio::test]
async fn a_404_is_githubs_refusal_with_its_message() {
    let (stack, jwt, gh) = setup(1).await;
    let err = gh.get::<Value>("/orgs/nobody/installation", Auth::App { app_id: APP, jwt: &jwt }).await.unwrap_err();
    assert!(matches!(&err, Error::GitHubRejected { status: 404, message, .. } if message == "Not Found"), "{err:?}");
    assert_eq!(appcreds_core::http::error_reply(&err).0.as_str(), "ClientSideError");
    assert_eq!(stack.github.calls("GET /orgs/nobody/installation"), 1);
}

/// A 403 that is no rate limit (an organization's SSO or IP allow-list refusing the App) and a
/// 404 on an App endpoint (a wrong GHES URL) are appcreds' deployment's problems, not the
/// caller's: `ServerSideError`, with GitHub's words in the log and not in the answer.
#[tokio::test]
async fn refusals_of_appcreds_itself_are_server_errors() {
    let (stack, jwt, gh) = setup(1).await;
    let auth = Auth::App { app_id: APP, jwt: &jwt };
    stack.github.inject(Fault::new("GET /app", 1, FaultKind::Status(403)));
    let err = gh.get::<Value>("/app", auth).await.unwrap_err();
    assert!(matches!(err, Error::GitHubRefusedAppcreds { status: 403, .. }), "{err:?}");
    let (name, body) = appcreds_core::http::error_reply(&err);
    assert_eq!(
        (name.as_str(), body.message.as_str()),
        ("ServerSideError", "GitHub refused appcreds' request (HTTP 403); see the function's log")
    );
    assert_eq!(stack.github.calls("GET /app"), 1, "not retried");

    stack.github.inject(Fault::new("GET /app/installations", 1, FaultKind::Status(404)));
    let err = gh.get_all::<Value>("/app/installations?per_page=100", auth, None).await.unwrap_err();
    assert!(matches!(err, Error::GitHubRefusedAppcreds { status: 404, .. }), "{err:?}");
    // A 404 on an installation is still the caller's: it names one that is not there.
    let err = gh.get::<Value>("/orgs/nobody/installation", auth).await.unwrap_err();
    assert_eq!(appcreds_core::http::error_reply(&err).0.as_str(), "ClientSideError");
}

/// Inside an invocation, no wait outlasts its deadline: a rate-limit wait that would is answered
/// with `ThrottlingException` at once, and an attempt is cut off at the deadline.
#[tokio::test]
async fn waits_and_attempts_fit_the_invocations_deadline() {
    let (stack, jwt, gh) = setup(1).await;
    let auth = Auth::App { app_id: APP, jwt: &jwt };
    let in_time = |secs: f64| tokio::time::Instant::now() + Duration::from_secs_f64(secs);

    // A 2 s retry-after fits the 3 s retry budget, so without a deadline it is waited out...
    stack.github.inject(Fault::new("GET /app", 1, FaultKind::RateLimit { status: 429, retry_after: Some(2) }));
    let app: Value = gh.get("/app", auth).await.unwrap();
    assert_eq!((app["id"].as_i64(), stack.github.calls("GET /app")), (Some(APP), 2));
    // ...but not with 1.5 s left: throttled at once, after one call.
    stack.github.inject(Fault::new("GET /app", 1, FaultKind::RateLimit { status: 429, retry_after: Some(2) }));
    let started = Instant::now();
    let err = deadline::within(in_time(1.5), gh.get::<Value>("/app", auth)).await.unwrap_err();
    assert!(matches!(err, Error::Throttled { retry_after_seconds: 2, .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "did not wait: {:?}", started.elapsed());
    assert_eq!(stack.github.calls("GET /app"), 3);

    // A hanging GitHub: the 10 s attempt timeout is cut to the second left, and no retry follows.
    stack.github.inject(Fault::new("GET /app", 5, FaultKind::Delay(Duration::from_secs(30))));
    let started = Instant::now();
    let err = deadline::within(in_time(1.0), gh.get::<Value>("/app", auth)).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(&err, Error::GitHubUnavailable(m) if m == "timed out"), "{err:?}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(stack.github.calls("GET /app"), 4, "one attempt");
    // With nothing left, nothing is sent.
    let err = deadline::within(in_time(0.0), gh.get::<Value>("/app", auth)).await.unwrap_err();
    assert!(matches!(&err, Error::OutOfTime), "{err:?}");
    assert_eq!(stack.github.calls("GET /app"), 4);
}

/// A `POST` is sent again only after an answer that proves GitHub did not act on it.
#[tokio::test]
async fn a_post_is_retried_only_when_github_provably_did_nothing() {
    let (stack, jwt, gh) = setup(1).await;
    let auth = Auth::App { app_id: APP, jwt: &jwt };
    let mint = "/app/installations/1000/access_tokens";
    let minted = || stack.github.issued_tokens().len();
    // A rate-limit refusal created nothing: waited out and sent again.
    stack.github.inject(Fault::new("access_tokens", 1, FaultKind::RateLimit { status: 429, retry_after: Some(0) }));
    gh.send(reqwest::Method::POST, mint, auth, None).await.unwrap();
    assert_eq!((stack.github.calls(&format!("POST {mint}")), minted()), (2, 1));
    // A 5xx or a lost answer may have: sent once, and the error says what happened.
    for kind in [FaultKind::Status(502), FaultKind::AnswerLate(Duration::from_secs(5))] {
        stack.github.inject(Fault::new("access_tokens", 3, kind));
        let before = stack.github.calls(&format!("POST {mint}"));
        let err = deadline::within(
            tokio::time::Instant::now() + Duration::from_secs(2),
            gh.send(reqwest::Method::POST, mint, auth, None),
        )
        .await
        .unwrap_err();
        assert!(matches!(&err, Error::GitHubUnavailable(m) if m == "HTTP 502" || m == "timed out"), "{err:?}");
        assert_eq!(stack.github.calls(&format!("POST {mint}")), before + 1, "sent once");
        stack.github.clear_faults();
    }
    assert_eq!(minted(), 2, "the lost answer's token, and no second one");
    // A GET on the same trouble is retried: reading twice is harmless.
    stack.github.inject(Fault::new("GET /app", 1, FaultKind::Status(502)));
    gh.get::<Value>("/app", auth).await.unwrap();
    assert_eq!(stack.github.calls("GET /app"), 2);
}
