#![allow(clippy::unwrap_used)]
//! The client against a loopback server that checks each request's SigV4 signature by signing
//! the received request again with the same credentials and time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use appcreds_client::{Client, ClientError, InstallationTokenRequest, ScopeDown, Target, Urls, sign_request};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{Value, json};

#[derive(Default)]
struct Seen {
    bodies: Vec<Value>,
    verified: usize,
    oidc: Vec<String>,
}

fn creds() -> Credentials {
    Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("session-token".into()),
        None,
        "test",
    )
}

/// Parses `x-amz-date` (`YYYYMMDDTHHMMSSZ`) into a time.
fn amz_date(v: &str) -> SystemTime {
    let n = |r: std::ops::Range<usize>| v[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(4..6), n(6..8));
    // Days from civil (Howard Hinnant's algorithm).
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + n(9..11) * 3600 + n(11..13) * 60 + n(13..15);
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
}

async fn serve(region: &'static str) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = seen.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let seen = state.clone();
        async move {
            let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let url = format!("http://{}{}", h("host"), uri.path());
            // The OIDC header, when sent, must be covered by the signature.
            let oidc = h(appcreds_client::OIDC_TOKEN_HEADER);
            let extra: Vec<(&str, &str)> =
                if oidc.is_empty() { vec![] } else { vec![(appcreds_client::OIDC_TOKEN_HEADER, oidc.as_str())] };
            let expected = sign_request(&url, &body, &extra, creds().into(), region, amz_date(&h("x-amz-date"))).unwrap();
            if !oidc.is_empty() {
                seen.lock().unwrap().oidc.push(oidc.clone());
            }
            let auth = expected.iter().find(|(n, _)| n == "authorization").map(|(_, v)| v.clone()).unwrap();
            if h("authorization") != auth || h("x-amz-security-token") != "session-token" {
                return (StatusCode::FORBIDDEN, axum::Json(json!({"Message": "Forbidden"}))).into_response();
            }
            let mut seen = seen.lock().unwrap();
            seen.verified += 1;
            let body: Value = serde_json::from_slice(&body).unwrap();
            seen.bodies.push(body.clone());
            match uri.path() {
                "/tokens/app" => axum::Json(json!({"appId": body["appId"], "appToken": "eyJ.x.y", "expirationTime": "2026-11-24T16:00:00Z"})).into_response(),
                "/tokens/installation" if body["appId"] == 2 => (
                    StatusCode::BAD_REQUEST,
                    [("x-amzn-errortype", "ValidationException")],
                    axum::Json(json!({"message": "1 validation error", "fieldList": [{"path": "/scopeDown/permissions/contents", "message": "must be one of read, write"}]})),
                )
                    .into_response(),
                "/tokens/installations" if body["targets"][1]["owner"] == "refused" => (
                    StatusCode::FORBIDDEN,
                    [("x-amzn-errortype", "AccessDeniedException")],
                    axum::Json(json!({"message": "target 1: no access rule allows it", "targetIndex": 1})),
                )
                    .into_response(),
                "/tokens/installations" => {
                    // A broken server: one token fewer than targets.
                    let short = usize::from(body["targets"][0]["owner"] == "short");
                    let targets = body["targets"].as_array().unwrap();
                    let tokens: Vec<Value> = targets[short..].iter().enumerate().map(|(i, t)| json!({
                        "installationToken": format!("ghs_{i}"), "nodeId": format!("N{i}"), "appId": t["appId"],
                        "expirationTime": "2026-11-24T17:00:00Z", "requestedScopeDown": t["scopeDown"],
                        "actualScopeDown": t.get("scopeDown").cloned().unwrap_or(json!({}))
                    })).collect();
                    axum::Json(json!({"tokens": tokens})).into_response()
                }
                "/tokens/installation" => axum::Json(json!({
                    "installationToken": "ghs_abc", "nodeId": "N1", "appId": 1, "installationId": 9,
                    "expirationTime": "2026-11-24T17:00:00Z", "requestedScopeDown": body["scopeDown"],
                    "actualScopeDown": {"permissions": {"contents": "read"}}
                }))
                .into_response(),
                _ => (StatusCode::NOT_FOUND, [("x-amzn-errortype", "UnknownOperationException")], axum::Json(json!({"message": "no"}))).into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn client(base: &str, credentials: Credentials) -> Client {
    let urls = Urls {
        app_token: Some(base.into()),
        installation_token: Some(base.into()),
        get_installation: Some(base.into()),
        refresh_cache: None,
    };
    Client::new(SharedCredentialsProvider::new(credentials), Some("eu-central-1".into()), urls)
}

#[tokio::test]
async fn requests_are_sigv4_signed_for_lambda_in_the_region() {
    let (base, seen) = serve("eu-central-1").await;
    let c = client(&base, creds());
    let app = c.app_token(42).await.unwrap();
    assert_eq!((app.app_id, app.app_token.expose()), (42, "eyJ.x.y"));
    let scope =
        ScopeDown { permissions: [("contents".to_string(), "read".to_string())].into(), ..ScopeDown::default() };
    let token = c.installation_token(1, &Target::Repository("octo/hello".into()), Some(&scope)).await.unwrap();
    assert_eq!(token.installation_token.expose(), "ghs_abc");
    assert_eq!(token.actual_scope_down, scope);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.verified, 2, "both signatures verified");
    assert_eq!(
        seen.bodies[1],
        json!({"appId": 1, "repository": "octo/hello", "scopeDown": {"permissions": {"contents": "read"}}})
    );
}

#[tokio::test]
async fn a_wrong_secret_or_region_does_not_verify() {
    let (base, seen) = serve("eu-central-1").await;
    let wrong = Credentials::new("AKIDEXAMPLE", "not-the-secret", Some("session-token".into()), None, "test");
    let err = client(&base, wrong).app_token(1).await.unwrap_err();
    assert!(matches!(err, ClientError::Forbidden { .. }), "{err:?}");
    let (other, _) = serve("us-west-2").await;
    let err = client(&other, creds()).app_token(1).await.unwrap_err();
    assert!(matches!(err, ClientError::Forbidden { .. }), "signed for eu-central-1, checked for us-west-2: {err:?}");
    assert_eq!(seen.lock().unwrap().verified, 0);
}

#[tokio::test]
async fn contract_errors_come_back_typed() {
    let (base, _) = serve("eu-central-1").await;
    let c = client(&base, creds());
    let err = c.installation_token(2, &Target::NodeId("N".into()), None).await.unwrap_err();
    match err {
        ClientError::Validation { fields, .. } => assert_eq!(fields[0].path, "/scopeDown/permissions/contents"),
        other => panic!("{other:?}"),
    }
    let err = c.installation_info("N").await.unwrap_err();
    assert!(matches!(err, ClientError::Protocol { ref name, .. } if name == "UnknownOperationException"), "{err:?}");
    let err = c.refresh().await.unwrap_err();
    assert!(matches!(err, ClientError::Config(ref m) if m.contains("refresh-cache")), "{err:?}");
}

#[tokio::test]
async fn the_github_oidc_token_travels_in_its_header_under_the_signature() {
    let (base, seen) = serve("eu-central-1").await;
    let c = client(&base, creds()).with_github_oidc_token(appcreds_client::Token::new("eyJ.oidc.token"));
    c.app_token(42).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.verified, 1, "the signature covers the header (the server signed it too)");
    assert_eq!(seen.oidc, ["eyJ.oidc.token"]);
}

#[tokio::test]
async fn an_enterprise_is_named_by_its_slug_on_the_wire() {
    let (base, seen) = serve("eu-central-1").await;
    let c = client(&base, creds());
    let token = c.installation_token(1, &Target::Enterprise("octo-corp".into()), None).await.unwrap();
    assert_eq!(token.installation_token.expose(), "ghs_abc");
    assert_eq!(seen.lock().unwrap().bodies, [json!({"appId": 1, "enterprise": "octo-corp"})]);
}

#[tokio::test]
async fn several_targets_go_in_one_call_and_come_back_in_order() {
    let (base, seen) = serve("eu-central-1").await;
    let c = client(&base, creds());
    let scope =
        ScopeDown { permissions: [("contents".to_string(), "read".to_string())].into(), ..ScopeDown::default() };
    let ask = |owner: &str, scope: Option<&ScopeDown>| InstallationTokenRequest {
        app_id: 1,
        target: Target::Owner(owner.into()),
        scope_down: scope.cloned(),
    };
    let tokens = c.installation_tokens(&[ask("octo-org", Some(&scope)), ask("octocat", None)]).await.unwrap();
    let got: Vec<(&str, &str)> = tokens.iter().map(|t| (t.installation_token.expose(), t.node_id.as_str())).collect();
    assert_eq!(got, [("ghs_0", "N0"), ("ghs_1", "N1")]);
    assert_eq!(tokens[0].actual_scope_down, scope);
    assert_eq!(
        seen.lock().unwrap().bodies,
        [json!({"targets": [
            {"appId": 1, "owner": "octo-org", "scopeDown": {"permissions": {"contents": "read"}}},
            {"appId": 1, "owner": "octocat"},
        ]})],
        "one signed request"
    );
    let err = c.installation_tokens(&[ask("octo-org", None), ask("refused", None)]).await.unwrap_err();
    assert_eq!(err.target_index(), Some(1), "{err:?}");
    assert!(
        matches!(err.cause(), ClientError::AccessDenied(m) if m == "target 1: no access rule allows it"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "access denied: target 1: no access rule allows it");
    // One token for two targets: whose is it? An error, not a guess.
    let err = c.installation_tokens(&[ask("short", None), ask("octocat", None)]).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Protocol { name, message } if name == "UnexpectedResponse" && message == "1 tokens in the answer for 2 targets"),
        "{err:?}"
    );
}
