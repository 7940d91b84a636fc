#![allow(clippy::unwrap_used)]
//! app-token through the real handler, the moto server (KMS, DynamoDB) and the GitHub double.

use std::sync::Arc;

use appcreds_core::domain::clock::{Clock, ManualClock, SystemClock, rfc3339};
use appcreds_core::http::Endpoint;
use appcreds_core::ops::app_token::AppToken;
use appcreds_tests::github::jwt::{public_key, verify_rs256};
use appcreds_tests::lambda::{CALLER_ARN, Reply, UrlRequest};
use appcreds_tests::{Logs, Stack, endpoint, send};
use serde_json::{Value, json};

const PATH: &str = "/tokens/app";

async fn post(handler: &Endpoint<AppToken>, body: Value) -> Reply {
    send(|r| handler.handle(r), UrlRequest::post_json(PATH, &body)).await
}

fn jwt_of(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body["appToken"].as_str().expect("appToken").to_string()
}

#[tokio::test]
async fn issues_a_jwt_that_verifies_with_the_kms_key_and_that_github_accepts() {
    let stack = Stack::start().await;
    let key = stack.add_app(4242).await;
    let handler = stack.app_token_handler();
    let before = SystemClock.now();

    let reply = post(&handler, json!({"appId": 4242})).await;
    let token = jwt_of(&reply);

    // Signed by the KMS key: verify with the key GetPublicKey returns.
    let verified = verify_rs256(&public_key(&key.public_key_der).unwrap(), &token).expect("signature verifies");
    assert_eq!(verified.header, json!({"alg": "RS256", "typ": "JWT"}));
    let (iat, exp) = (verified.claims["iat"].as_i64().unwrap(), verified.claims["exp"].as_i64().unwrap());
    assert_eq!(verified.claims["iss"], 4242);
    assert!((before - 61..=before - 59).contains(&iat), "iat {iat} is now - 60 s (now {before})");
    assert_eq!(exp - iat, 600, "exp is 9 minutes after now");
    assert_eq!(reply.body["appId"], 4242);
    assert_eq!(reply.body["expirationTime"], rfc3339(exp - 10));
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    assert_eq!(reply.error_type, None);

    // GitHub accepts it.
    let resp = reqwest::Client::new()
        .get(format!("{}/app", stack.github.url()))
        .bearer_auth(&token)
        .header("accept", "application/vnd.github+json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let app: Value = resp.json().await.unwrap();
    assert_eq!(app["id"], 4242);
    assert_eq!(app["slug"], "appcreds-test-app-4242");
}

#[tokio::test]
async fn the_github_double_refuses_a_jwt_signed_by_another_key() {
    let stack = Stack::start().await;
    stack.add_app(51).await;
    let other = stack.add_app(52).await;
    // App 51's row now names App 52's key: the JWT says iss=51 but is signed by 52's key.
    appcreds_testkit::aws::put_app(&stack.ddb, &stack.app_table, 51, Some(&other.arn)).await.unwrap();
    let token = jwt_of(&post(&stack.app_token_handler(), json!({"appId": 51})).await);
    let resp =
        reqwest::Client::new().get(format!("{}/app", stack.github.url())).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "A JSON web token could not be decoded");
    assert!(body["documentation_url"].is_string());
}

/// Every transport and input mistake gets its contract status, error name and a body naming it.
#[tokio::test]
async fn bad_requests_get_the_contract_errors() {
    let stack = Stack::start().await;
    stack.add_app(7).await;
    let handler = stack.app_token_handler();
    let big = format!(r#"{{"appId": 7, "pad": "{}"}}"#, "x".repeat(70 * 1024));
    let json = Some("application/json");
    let cases: Vec<(&str, UrlRequest, u16, &str, Option<&str>)> = vec![
        ("not JSON", UrlRequest::post_raw(PATH, json, b"{appId: 7".to_vec()), 400, "SerializationException", None),
        ("JSON array", UrlRequest::post_raw(PATH, json, b"[7]".to_vec()), 400, "SerializationException", None),
        ("binary body", UrlRequest::post_raw(PATH, json, vec![0xff, 0xfe, 0x00]), 400, "SerializationException", None),
        (
            "text/plain",
            UrlRequest::post_raw(PATH, Some("text/plain"), br#"{"appId":7}"#.to_vec()),
            415,
            "UnsupportedMediaTypeException",
            None,
        ),
        (
            "form",
            UrlRequest::post_raw(PATH, Some("application/x-www-form-urlencoded"), b"appId=7".to_vec()),
            415,
            "UnsupportedMediaTypeException",
            None,
        ),
        (
            "no content type",
            UrlRequest::post_raw(PATH, None, br#"{"appId":7}"#.to_vec()),
            415,
            "UnsupportedMediaTypeException",
            None,
        ),
        (
            "wrong path",
            UrlRequest::post_json("/tokens/installation", &json!({"appId": 7})),
            404,
            "UnknownOperationException",
            None,
        ),
        (
            "trailing slash",
            UrlRequest::post_json("/tokens/app/", &json!({"appId": 7})),
            404,
            "UnknownOperationException",
            None,
        ),
        (
            "GET",
            UrlRequest { method: "GET".into(), ..UrlRequest::post_json(PATH, &json!({"appId": 7})) },
            404,
            "UnknownOperationException",
            None,
        ),
        ("appId missing", UrlRequest::post_json(PATH, &json!({})), 400, "ValidationException", Some("/appId")),
        ("empty body", UrlRequest::post_raw(PATH, json, Vec::new()), 400, "ValidationException", Some("/appId")),
        (
            "appId null",
            UrlRequest::post_json(PATH, &json!({"appId": null})),
            400,
            "ValidationException",
            Some("/appId"),
        ),
        ("appId 0", UrlRequest::post_json(PATH, &json!({"appId": 0})), 400, "ValidationException", Some("/appId")),
        (
            "appId negative",
            UrlRequest::post_json(PATH, &json!({"appId": -7})),
            400,
            "ValidationException",
            Some("/appId"),
        ),
        ("appId string", UrlRequest::post_json(PATH, &json!({"appId": "7"})), 400, "SerializationException", None),
        ("appId float", UrlRequest::post_json(PATH, &json!({"appId": 7.5})), 400, "SerializationException", None),
        (
            "appId > 2^63",
            UrlRequest::post_raw(PATH, json, br#"{"appId": 9223372036854775808}"#.to_vec()),
            400,
            "SerializationException",
            None,
        ),
        (
            "appId 1e300",
            UrlRequest::post_raw(PATH, json, br#"{"appId": 1e300}"#.to_vec()),
            400,
            "SerializationException",
            None,
        ),
        ("body over 64 KiB", UrlRequest::post_raw(PATH, json, big.into_bytes()), 400, "ValidationException", Some("")),
        ("unknown App", UrlRequest::post_json(PATH, &json!({"appId": 999_999})), 400, "ClientSideError", None),
    ];
    for (name, req, status, error, field) in cases {
        let reply = send(|r| handler.handle(r), req).await;
        assert_eq!(reply.status, status, "{name}: {:?}", reply.body);
        assert_eq!(reply.error_type.as_deref(), Some(error), "{name}");
        assert_eq!(reply.content_type.as_deref(), Some("application/json"), "{name}");
        let message = reply.body["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{name}: a message says what was wrong");
        if let Some(path) = field {
            assert_eq!(reply.body["fieldList"][0]["path"], path, "{name}: {:?}", reply.body);
        }
        if error == "SerializationException" && name.starts_with("appId") {
            assert!(message.contains("/appId"), "{name}: {message}");
        }
    }
    // Unknown fields are ignored.
    let reply = post(&handler, json!({"appId": 7, "installationId": 1, "extra": {"a": [1]}})).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    // 64-bit App IDs above 2^53 are handled exactly (an unknown App, not a parse error).
    let reply = post(&handler, json!({"appId": 9_223_372_036_854_775_807_i64})).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (400, Some("ClientSideError")));
    assert_eq!(reply.body["message"], "App 9223372036854775807 is not registered with appcreds");
}

#[tokio::test]
async fn a_request_without_an_iam_caller_is_refused() {
    let stack = Stack::start().await;
    stack.add_app(8).await;
    let handler = stack.app_token_handler();
    let req = UrlRequest { caller_arn: None, ..UrlRequest::post_json(PATH, &json!({"appId": 8})) };
    let reply = send(|r| handler.handle(r), req).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (500, Some("ServerSideError")));
    assert!(reply.body["message"].as_str().unwrap().contains("AWS_IAM"));
    assert_eq!(stack.counter.count("Sign"), 0, "nothing signed for an unauthenticated request");
}

#[tokio::test]
async fn an_app_row_without_a_key_and_a_missing_key_are_server_errors() {
    let stack = Stack::start().await;
    appcreds_testkit::aws::put_app(&stack.ddb, &stack.app_table, 11, None).await.unwrap();
    let missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000";
    appcreds_testkit::aws::put_app(&stack.ddb, &stack.app_table, 12, Some(missing)).await.unwrap();
    let handler = stack.app_token_handler();

    let reply = post(&handler, json!({"appId": 11})).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (500, Some("ServerSideError")));
    assert_eq!(reply.body, json!({"message": "App 11 has no signing key configured"}));

    let reply = post(&handler, json!({"appId": 12})).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (500, Some("ServerSideError")));
    assert_eq!(reply.body, json!({"message": "the App's signing key is not found"}));
    assert!(!reply.body.to_string().contains("arn:"), "no key ARN in a response");
}

#[tokio::test]
async fn an_unreachable_kms_is_a_server_error_without_detail() {
    let stack = Stack::start().await;
    stack.add_app(13).await;
    // A KMS endpoint where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dead = appcreds_testkit::aws::sdk_config(&format!("http://{closed}")).await;
    let handler = endpoint(AppToken::new(&stack.services_on(aws_sdk_kms::Client::new(&dead), SystemClock)));
    let reply = post(&handler, json!({"appId": 13})).await;
    assert_eq!((reply.status, reply.error_type.as_deref()), (500, Some("ServerSideError")));
    assert_eq!(reply.body, json!({"message": "Internal server error"}));
}

/// KMS faults moto cannot produce (it signs with disabled keys), through the real SDK client
/// with `aws-smithy-mocks` answering `Sign`.
#[tokio::test]
async fn kms_refusals_map_to_defined_errors() {
    use aws_sdk_kms::error::ErrorMetadata;
    use aws_sdk_kms::operation::sign::SignError;
    use aws_sdk_kms::types::error::{DisabledException, InvalidKeyUsageException, KmsInvalidStateException};
    use aws_smithy_mocks::{MockResponseInterceptor, RuleMode, create_mock_http_client, mock};

    let stack = Stack::start().await;
    stack.add_app(14).await;
    let generic =
        |code: &'static str| move || SignError::generic(ErrorMetadata::builder().code(code).message("refused").build());
    type MakeError = Box<dyn Fn() -> SignError + Send + Sync>;
    let cases: Vec<(&str, MakeError, u16, &str, &str)> = vec![
        (
            "disabled",
            Box::new(|| SignError::DisabledException(DisabledException::builder().message("Key is disabled").build())),
            500,
            "ServerSideError",
            "the App's signing key is disabled",
        ),
        (
            "pending deletion",
            Box::new(|| {
                SignError::KmsInvalidStateException(
                    KmsInvalidStateException::builder().message("pending deletion").build(),
                )
            }),
            500,
            "ServerSideError",
            "the App's signing key is in a state that cannot sign",
        ),
        (
            "wrong key usage",
            Box::new(|| SignError::InvalidKeyUsageException(InvalidKeyUsageException::builder().build())),
            500,
            "ServerSideError",
            "the App's signing key is not an RSA signing key",
        ),
        (
            "access denied",
            Box::new(generic("AccessDeniedException")),
            500,
            "ServerSideError",
            "the App's signing key is not usable by this function (access denied)",
        ),
        (
            "throttled",
            Box::new(generic("ThrottlingException")),
            429,
            "ThrottlingException",
            "KMS is throttling requests; retry after 1 s",
        ),
    ];
    for (name, make_error, status, error, message) in cases {
        let make_error: Arc<MakeError> = Arc::new(make_error);
        let rule = mock!(aws_sdk_kms::Client::sign)
            .match_requests(|r| r.message_type() == Some(&aws_sdk_kms::types::MessageType::Raw))
            .then_error(move || make_error());
        let kms = aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::config::Builder::from(&stack.sdk)
                .http_client(create_mock_http_client())
                .interceptor(MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny).with_rule(&rule))
                .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
                .build(),
        );
        let handler = endpoint(AppToken::new(&stack.services_on(kms, SystemClock)));
        let reply = post(&handler, json!({"appId": 14})).await;
        assert_eq!(reply.status, status, "{name}: {:?}", reply.body);
        assert_eq!(reply.error_type.as_deref(), Some(error), "{name}");
        assert_eq!(reply.body["message"], message, "{name}");
        if status == 429 {
            assert_eq!(reply.body["retryAfterSeconds"], 1, "{name}");
        }
        assert_eq!(rule.num_calls(), 1, "{name}: the handler reached KMS Sign");
    }
}

/// Point 3 of the issue: a warm process signs and reads the App table once per JWT lifetime.
#[tokio::test]
async fn a_thousand_requests_cost_one_sign_and_one_read() {
    let stack = Stack::start().await;
    stack.add_app(21).await;
    let handler = stack.app_token_handler();
    let first = jwt_of(&post(&handler, json!({"appId": 21})).await);
    for _ in 1..1000 {
        let reply = post(&handler, json!({"appId": 21})).await;
        assert_eq!(jwt_of(&reply), first);
    }
    assert_eq!(stack.counter.count("Sign"), 1, "{:?}", stack.counter.snapshot());
    assert_eq!(stack.counter.count("GetItem"), 1, "{:?}", stack.counter.snapshot());
    assert_eq!(stack.counter.snapshot().values().sum::<usize>(), 2, "no other AWS calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_for_one_app_share_one_signing() {
    let stack = Stack::start().await;
    stack.add_app(22).await;
    stack.add_app(23).await;
    let handler = Arc::new(stack.app_token_handler());
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let handler = handler.clone();
            let app = if i % 2 == 0 { 22 } else { 23 };
            tokio::spawn(async move { (app, jwt_of(&post(&handler, json!({"appId": app})).await)) })
        })
        .collect();
    let mut tokens = std::collections::BTreeMap::<i64, std::collections::BTreeSet<String>>::new();
    for t in tasks {
        let (app, token) = t.await.unwrap();
        tokens.entry(app).or_default().insert(token);
    }
    assert_eq!(tokens[&22].len(), 1, "one JWT for App 22");
    assert_eq!(tokens[&23].len(), 1, "one JWT for App 23");
    assert_eq!(stack.counter.count("Sign"), 2, "one signing per App: {:?}", stack.counter.snapshot());
    assert_eq!(stack.counter.count("GetItem"), 2);
}

/// The JWT is renewed before it has less than 5 minutes left, and the App row is re-read then,
/// so a rotated key is picked up without a restart.
#[tokio::test]
async fn jwts_are_renewed_in_time_and_pick_up_a_rotated_key() {
    let stack = Stack::start().await;
    let old = stack.add_app(31).await;
    let clock = ManualClock::new(SystemClock.now());
    let handler = stack.app_token_handler_with(clock.clone());

    let check = |reply: &Reply, key: &appcreds_testkit::aws::AppKey| {
        let token = jwt_of(reply);
        let verified = verify_rs256(&public_key(&key.public_key_der).unwrap(), &token).expect("verifies with the key");
        let exp = verified.claims["exp"].as_i64().unwrap();
        assert!(exp - clock.now() >= 300, "at least 5 minutes of life left ({} s)", exp - clock.now());
        token
    };
    let first = check(&post(&handler, json!({"appId": 31})).await, &old);

    // Rotate: a new key, the App row switched to it.
    let new = appcreds_testkit::aws::create_app_key(&stack.kms, 31).await.unwrap();
    appcreds_testkit::aws::put_app(&stack.ddb, &stack.app_table, 31, Some(&new.arn)).await.unwrap();

    clock.advance(239); // 5 min + 1 s of life left: still cached, still the old key
    assert_eq!(check(&post(&handler, json!({"appId": 31})).await, &old), first);
    assert_eq!((stack.counter.count("Sign"), stack.counter.count("GetItem")), (1, 1));

    clock.advance(1); // exactly 5 min left: renewed, under the new key
    let second = check(&post(&handler, json!({"appId": 31})).await, &new);
    assert_ne!(second, first);
    assert_eq!((stack.counter.count("Sign"), stack.counter.count("GetItem")), (2, 2));
}

#[tokio::test]
async fn each_token_gets_one_audit_line_without_the_token() {
    let logs = Logs::capture();
    let stack = Stack::start().await;
    stack.add_app(41).await;
    let handler = stack.app_token_handler();
    let token = jwt_of(&post(&handler, json!({"appId": 41})).await);
    let again = jwt_of(&post(&handler, json!({"appId": 41})).await);
    assert_eq!(token, again);

    let audit = logs.lines_for("appcreds::audit");
    assert_eq!(audit.len(), 2, "one line per token handed out: {audit:?}");
    let sha = appcreds_core::Secret::new(token.clone()).sha256_hex();
    for (line, cached) in audit.iter().zip([false, true]) {
        let f = &line["fields"];
        assert_eq!(f["caller"], CALLER_ARN);
        assert_eq!(f["app_id"], 41);
        assert_eq!(f["token_sha256"], sha.as_str());
        assert_eq!(f["cached"], cached);
    }
    let all = logs.text();
    let signature = token.rsplit('.').next().unwrap();
    assert!(!all.contains(signature), "the JWT never reaches a log");
}

/// A cold start's first answer: with no JWT cached, the App row is read while the access is
/// decided, not after; nothing is signed unless the decision allows, and a refusal is the answer
/// whether the App exists or not. Warm, the decision is still asked, and no row is read.
#[tokio::test]
async fn a_cold_jwt_reads_the_app_row_while_access_is_decided_and_signs_only_if_allowed() {
    use appcreds_core::Error;
    let stack = Stack::start().await;
    stack.add_app(4290).await;
    stack.add_app(4291).await;
    let jwts = stack.app_jwts(SystemClock);
    // This decision ends only once the App row is being read: in turn, they would wait forever.
    let decided = async {
        while stack.counter.count("GetItem") == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        Ok::<_, Error>("allowed")
    };
    let both = tokio::time::timeout(std::time::Duration::from_secs(10), jwts.get_decided(4290, decided));
    let (decision, jwt) = both.await.expect("the row read while deciding").unwrap();
    assert_eq!((decision, jwt.cached), ("allowed", false));
    assert_eq!(stack.counter.count("Sign"), 1, "{:?}", stack.counter.snapshot());
    let refuse = || async { Err::<(), _>(Error::AccessDenied("no rule".into())) };
    for app in [4291, 4299] {
        let refused = jwts.get_decided(app, refuse()).await;
        assert!(matches!(refused, Err(Error::AccessDenied(ref why)) if why == "no rule"), "{refused:?}");
    }
    assert_eq!(stack.counter.count("Sign"), 1, "nothing signed for a refusal: {:?}", stack.counter.snapshot());
    let reads = stack.counter.count("GetItem");
    let (_, warm) = jwts.get_decided(4290, async { Ok::<_, Error>(()) }).await.unwrap();
    assert!(warm.cached);
    assert!(matches!(jwts.get_decided(4290, refuse()).await, Err(Error::AccessDenied(_))));
    assert_eq!(stack.counter.count("GetItem"), reads, "no row read for a cached JWT");
}
