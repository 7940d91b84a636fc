#![allow(clippy::unwrap_used)]
//! The GitHub double must refuse what GitHub refuses, or the app-token tests prove nothing.
//! JWTs here are signed by the App's KMS key (through the production signer) with chosen claims.

use appcreds_core::aws::kms::KmsSigner;
use appcreds_core::domain::clock::{Clock, SystemClock};
use appcreds_core::domain::jwt::{Claims, assemble};
use appcreds_core::ports::Signer;
use appcreds_tests::Stack;
use serde_json::Value;

async fn sign(stack: &Stack, key_arn: &str, claims: &Claims) -> String {
    let input = claims.signing_input();
    let signature = KmsSigner::new(stack.kms.clone()).sign(key_arn, input.as_bytes()).await.unwrap();
    assemble(&input, &signature)
}

async fn get_app(stack: &Stack, auth: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(format!("{}/app", stack.github.url()));
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_double_enforces_githubs_jwt_rules() {
    let stack = Stack::start().await;
    let key = stack.add_app(77).await;
    let now = SystemClock.now();
    let good = Claims::for_app(77, now);
    let cases = [
        ("valid", good.clone(), 200),
        ("lifetime 601 s", Claims { iat: now - 60, exp: now + 541, iss: 77.into() }, 401),
        ("iat 2 minutes ahead", Claims { iat: now + 120, exp: now + 400, iss: 77.into() }, 401),
        ("expired", Claims { iat: now - 700, exp: now - 100, iss: 77.into() }, 401),
        ("exp 20 minutes ahead", Claims { iat: now + 600, exp: now + 1200, iss: 77.into() }, 401),
        ("unknown issuer", Claims { iss: 78.into(), ..good }, 401),
        ("iat 50 s ahead (skew tolerated)", Claims { iat: now + 50, exp: now + 500, iss: 77.into() }, 200),
    ];
    for (name, claims, status) in cases {
        let token = sign(&stack, &key.arn, &claims).await;
        let (got, body) = get_app(&stack, Some(&format!("Bearer {token}"))).await;
        assert_eq!(got, status, "{name}: {body}");
        if status == 401 {
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: GitHub-style body {body}");
            assert_eq!(body["documentation_url"], "https://docs.github.com/rest");
        } else {
            assert_eq!(body["id"], 77, "{name}");
        }
    }
}

#[tokio::test]
async fn the_double_refuses_tampered_and_malformed_tokens() {
    let stack = Stack::start().await;
    let key = stack.add_app(79).await;
    let token = sign(&stack, &key.arn, &Claims::for_app(79, SystemClock.now())).await;
    let (header, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    // Same signature, claims changed to another iss/exp.
    let forged_claims = Claims { iss: 79.into(), ..Claims::for_app(79, SystemClock.now() + 30) }.signing_input();
    let forged = format!("{}.{signature}", forged_claims);
    let none_alg = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", rest.split_once('.').unwrap().0);
    for (name, auth) in [
        ("no header", None),
        ("not bearer", Some(format!("token {token}"))),
        ("forged claims", Some(format!("Bearer {forged}"))),
        ("alg none", Some(format!("Bearer {none_alg}"))),
        ("two parts", Some(format!("Bearer {header}.{}", rest.split_once('.').unwrap().0))),
        ("garbage", Some("Bearer !!!".to_string())),
    ] {
        let (status, body) = get_app(&stack, auth.as_deref()).await;
        assert_eq!(status, 401, "{name}: {body}");
    }
    assert_eq!(stack.github.calls("GET /app"), 6);
    let (status, _) = get_app(&stack, Some(&format!("Bearer {token}"))).await;
    assert_eq!(status, 200, "the untampered token still works");
}

/// GitHub takes the App's client ID as a JWT's issuer as well as its App ID (and recommends the
/// client ID); a client ID that is not the App's is refused, even with the App's signature.
#[tokio::test]
async fn the_double_takes_the_app_id_or_its_client_id_as_the_issuer() {
    let stack = Stack::start().await;
    let key = stack.add_app(83).await;
    stack.add_app(84).await;
    let client_id = stack.github.app_client_id(83).unwrap();
    let other = stack.github.app_client_id(84).unwrap();
    assert_ne!(client_id, other);
    let now = SystemClock.now();
    for (name, issuer, status) in [
        ("the App ID", None, 200),
        ("the client ID", Some(client_id.as_str()), 200),
        ("another App's client ID", Some(other.as_str()), 401),
        ("a client ID GitHub does not know", Some("Iv23liNoSuchApp000000"), 401),
    ] {
        let claims = Claims::for_app(83, now).with_client_id(issuer);
        let token = sign(&stack, &key.arn, &claims).await;
        let (got, body) = get_app(&stack, Some(&format!("Bearer {token}"))).await;
        assert_eq!(got, status, "{name}: {body}");
        if status == 200 {
            assert_eq!(
                (body["id"].as_i64(), body["client_id"].as_str()),
                (Some(83), Some(client_id.as_str())),
                "{name}"
            );
        }
    }
}

/// The double's responses have every property GitHub's OpenAPI description requires, each of an
/// allowed JSON type (`crates/testkit/data/github-shapes.json`, from `scripts/update-permissions`).
#[tokio::test]
async fn the_doubles_responses_follow_githubs_openapi_shapes() {
    use appcreds_tests::github::Installation;
    let shapes: Value = serde_json::from_str(include_str!("../../crates/testkit/data/github-shapes.json")).unwrap();
    let check = |name: &str, value: &Value| {
        let shape = &shapes["responses"][name];
        assert!(shape.is_object(), "no shape {name}");
        let obj = value.as_object().unwrap_or_else(|| panic!("{name}: not an object: {value}"));
        for required in shape["required"].as_array().unwrap() {
            assert!(obj.contains_key(required.as_str().unwrap()), "{name}: missing required {required}");
        }
        for (key, v) in obj {
            let Some(allowed) = shape["types"][key].as_array() else { continue };
            let kind = match v {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            let ok = allowed.iter().any(|t| t == kind || (t == "number" && kind == "integer"));
            assert!(ok, "{name}.{key}: {kind} is not one of {allowed:?}");
        }
    };
    let stack = Stack::start().await;
    let key = stack.add_app(81).await;
    stack.github.install(Installation::org(81, 8101, "octo-org", &[(1, "hello-world")]));
    let token = sign(&stack, &key.arn, &Claims::for_app(81, SystemClock.now())).await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", stack.github.url())).bearer_auth(&token).send();

    let app: Value = get("/app").await.unwrap().json().await.unwrap();
    check("GET /app", &app);
    check("account (simple-user)", &app["owner"]);
    let list: Value = get("/app/installations").await.unwrap().json().await.unwrap();
    check("GET /app/installations (item)", &list[0]);
    check("account (simple-user)", &list[0]["account"]);
    let one: Value = get("/orgs/octo-org/installation").await.unwrap().json().await.unwrap();
    check("GET /orgs/{org}/installation", &one);
    let minted: Value = http
        .post(format!("{}/app/installations/8101/access_tokens", stack.github.url()))
        .bearer_auth(&token)
        .json(&serde_json::json!({"repositories": ["hello-world"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    check("POST /app/installations/{installation_id}/access_tokens", &minted);
}
