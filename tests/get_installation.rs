#![allow(clippy::unwrap_used)]
//! get-installation through the real handler and moto (DynamoDB, and KMS HMAC for nextTokens).

use appcreds_core::ports::{InstallationRecord, InstallationStore};
use appcreds_tests::lambda::{Reply, UrlRequest};
use appcreds_tests::{Stack, send};
use serde_json::{Value, json};

fn row(app: i64, i: i64) -> InstallationRecord {
    InstallationRecord {
        app_id: app,
        installation_id: app * 1000 + i,
        node_id: format!("N{i:04}"),
        target_type: "Organization".into(),
        name: format!("org{i}"),
    }
}

async fn stack_with_rows() -> Stack {
    let stack = Stack::start().await;
    let mut rows: Vec<_> = (0..120).map(|i| row(1, i)).collect();
    rows.extend((0..3).map(|i| row(2, i)));
    stack.installation_store().write(rows, Vec::new(), "2026-11-24T00:00:00Z").await.unwrap();
    stack
}

#[tokio::test]
async fn info_finds_every_app_of_a_node() {
    let stack = stack_with_rows().await;
    let handler = stack.get_installation_handler().await;
    let reply =
        send(|r| handler.handle(r), UrlRequest::post_json("/installations/info", &json!({"nodeId": "N0001"}))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        json!({"installations": [
            {"appId": 1, "installationId": 1001, "nodeId": "N0001", "targetType": "Organization", "name": "org1"},
            {"appId": 2, "installationId": 2001, "nodeId": "N0001", "targetType": "Organization", "name": "org1"}
        ]})
    );
    let none =
        send(|r| handler.handle(r), UrlRequest::post_json("/installations/info", &json!({"nodeId": "nope"}))).await;
    assert_eq!(none.body, json!({"installations": []}));
    for (body, error) in [
        (json!({}), "ValidationException"),
        (json!({"nodeId": ""}), "ValidationException"),
        (json!({"nodeId": 3}), "SerializationException"),
    ] {
        let r = send(|r| handler.handle(r), UrlRequest::post_json("/installations/info", &body)).await;
        assert_eq!(r.error_type.as_deref(), Some(error), "{body}");
    }
}

async fn list(
    handler: &appcreds_core::http::Endpoint<appcreds_core::ops::get_installation::GetInstallation>,
    body: Value,
) -> Reply {
    send(|r| handler.handle(r), UrlRequest::post_json("/installations", &body)).await
}

#[tokio::test]
async fn the_list_pages_through_everything_once() {
    let stack = stack_with_rows().await;
    let handler = stack.get_installation_handler().await;
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut body = json!({"maxResults": 50});
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let reply = list(&handler, body).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        pages += 1;
        let items = reply.body["installations"].as_array().unwrap();
        assert!(items.len() <= 50);
        seen.extend(items.iter().map(|i| (i["appId"].as_i64().unwrap(), i["nodeId"].as_str().unwrap().to_string())));
        match reply.body.get("nextToken") {
            Some(Value::String(t)) => token = Some(t.clone()),
            _ => break,
        }
    }
    assert_eq!(seen.len(), 123, "every row");
    let unique: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 123, "no row twice");
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn forged_and_malformed_next_tokens_are_validation_errors() {
    let stack = stack_with_rows().await;
    let handler = stack.get_installation_handler().await;
    let first = list(&handler, json!({"maxResults": 10})).await;
    let token = first.body["nextToken"].as_str().unwrap().to_string();
    let (payload, mac) = token.strip_prefix("v1.").unwrap().split_once('.').unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let forged_payload = b64.encode(br#"{"a":2,"n":"N0000"}"#);
    let other_key = stack.get_installation_handler().await; // a different HMAC key
    let from_other = list(&other_key, json!({"maxResults": 10})).await.body["nextToken"].as_str().unwrap().to_string();
    let cases = [
        format!("v1.{forged_payload}.{mac}"),
        format!("v1.{payload}.{}", b64.encode([0u8; 32])),
        format!("v1.{payload}"),
        format!("v2.{payload}.{mac}"),
        "v1.%%%.%%%".to_string(),
        String::new(),
        "x".repeat(5000),
        from_other,
    ];
    for bad in cases {
        let reply = list(&handler, json!({"nextToken": bad})).await;
        assert_eq!(
            (reply.status, reply.error_type.as_deref()),
            (400, Some("ValidationException")),
            "{bad:.60}: {:?}",
            reply.body
        );
        assert_eq!(reply.body["fieldList"][0]["path"], "/nextToken");
    }
    let ok = list(&handler, json!({"nextToken": token})).await;
    assert_eq!(ok.status, 200);
    for (body, error) in [
        (json!({"maxResults": 0}), "ValidationException"),
        (json!({"maxResults": 101}), "ValidationException"),
        (json!({"maxResults": "5"}), "SerializationException"),
        (json!({"nextToken": 5}), "SerializationException"),
    ] {
        assert_eq!(list(&handler, body.clone()).await.error_type.as_deref(), Some(error), "{body}");
    }
}

/// KMS throttling the page-token MAC is `ThrottlingException`, which a caller may retry, not a
/// `ServerSideError`.
#[tokio::test]
async fn a_throttled_page_token_mac_is_a_throttling_error() {
    use aws_sdk_kms::error::ErrorMetadata;
    use aws_sdk_kms::operation::generate_mac::GenerateMacError;
    use aws_sdk_kms::operation::verify_mac::VerifyMacError;
    use aws_smithy_mocks::{MockResponseInterceptor, RuleMode, create_mock_http_client, mock};
    let stack = stack_with_rows().await;
    let throttled = || ErrorMetadata::builder().code("ThrottlingException").message("Rate exceeded").build();
    let generate = mock!(aws_sdk_kms::Client::generate_mac).then_error(move || GenerateMacError::generic(throttled()));
    let verify = mock!(aws_sdk_kms::Client::verify_mac).then_error(move || VerifyMacError::generic(throttled()));
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&stack.sdk)
            .http_client(create_mock_http_client())
            .interceptor(
                MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny).with_rule(&generate).with_rule(&verify),
            )
            .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
            .build(),
    );
    let mut services = stack.services();
    services.mac =
        std::sync::Arc::new(appcreds_core::aws::kms::KmsMac::new(kms, "arn:aws:kms:us-east-1:123456789012:key/mac"));
    let handler = appcreds_tests::endpoint(appcreds_core::ops::get_installation::GetInstallation::new(&services));
    use base64::Engine;
    let position = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"a":1,"n":"N0001"}"#);
    for body in [json!({"maxResults": 10}), json!({"nextToken": format!("v1.{position}.{}", "A".repeat(43))})] {
        let reply = list(&handler, body).await;
        assert_eq!((reply.status, reply.error_type.as_deref()), (429, Some("ThrottlingException")), "{:?}", reply.body);
        assert_eq!(reply.body["retryAfterSeconds"], 1);
    }
}
