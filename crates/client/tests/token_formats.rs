#![allow(clippy::unwrap_used)]
//! The client with installation tokens in both of GitHub's formats: classic (`ghs_` + 36 letters
//! and digits, 40 characters) and stateless (`ghs_<APPID>_<JWT>`, about 520 characters, two dots,
//! `-` and `_` in its base64url segments). The token is opaque: the client hands it over byte for
//! byte, never shows it in `Debug`, and serialises it back unchanged. One test per format.

use appcreds_client::{Client, InstallationTokenResponse, Target, Urls};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use serde_json::{Value, json};

/// GitHub's documentation example of a classic installation token.
const CLASSIC: &str = "ghs_16C7e42F292c6912E7710c838347Ae178B4a";

/// A stateless token as GitHub mints them since 2026 (532 characters).
const STATELESS: &str = concat!(
    "ghs_123456_eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImFwcGNyZWRzLWdpdGh1Yi1kb3VibGUifQ.",
    "eyJhdWQiOiJhcGkuZ2l0aHViLmNvbSIsInN1YiI6Imluc3RhbGxhdGlvbjo0MDAxIiwiYXBwX2lkIjoxMjM0NTYsIm",
    "luc3RhbGxhdGlvbl9pZCI6NDAwMSwicGVybWlzc2lvbnMiOnsiY29udGVudHMiOiJyZWFkIiwibWV0YWRhdGEiOiJy",
    "ZWFkIn0sInJlcG9zaXRvcnlfc2VsZWN0aW9uIjoic2VsZWN0ZWQiLCJyZXBvc2l0b3J5X2lkcyI6WzQwMDExLDQwMD",
    "EyXSwiaWF0IjoxNzk2MTQ0NDAwLCJuYmYiOjE3OTYxNDQ0MDAsImV4cCI6MTc5NjE0ODAwMCwianRpIjoiOWYxYzJl",
    "NGQ4YTdiNmM1ZDRlM2YyYTFiMGM5ZDhlN2YifQ.d56oQXOpwZXNo-hl70mK3TvoOPSy_ERfmUmI4xySDtM"
);

/// A Function URL that answers every request with `token` as installation-token would.
async fn serve(token: &'static str) -> String {
    let app = axum::Router::new().fallback(move || async move {
        axum::Json(json!({
            "installationToken": token, "nodeId": "O_kgDOocto-org", "appId": 123456, "installationId": 4001,
            "appSlug": "my-app", "expirationTime": "2026-11-24T17:00:00Z",
            "actualScopeDown": {"permissions": {"metadata": "read"}}
        }))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// The client returns `token` exactly, never shows it, and writes it back unchanged.
async fn the_client_hands_over(token: &'static str) -> InstallationTokenResponse {
    let url = serve(token).await;
    let urls = Urls { installation_token: Some(url), ..Urls::default() };
    let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
    let client = Client::new(SharedCredentialsProvider::new(credentials), Some("eu-central-1".into()), urls);
    let reply = client.installation_token(123456, &Target::Owner("octo-org".into()), None).await.unwrap();
    assert_eq!(reply.installation_token.expose(), token, "byte for byte");
    let shown = format!("{reply:?}");
    for piece in token.split(['.', '_']).filter(|p| p.len() > 8) {
        assert!(!shown.contains(piece), "Debug shows no part of the token: {shown}");
    }
    let written: Value = serde_json::to_value(&reply).unwrap();
    assert_eq!(written["installationToken"], token);
    assert_eq!(serde_json::from_value::<InstallationTokenResponse>(written).unwrap(), reply);
    reply
}

#[tokio::test]
async fn a_classic_token_comes_through_unchanged() {
    let reply = the_client_hands_over(CLASSIC).await;
    let token = reply.installation_token.expose();
    assert_eq!(token.len(), 40);
    assert!(token.strip_prefix("ghs_").unwrap().bytes().all(|b| b.is_ascii_alphanumeric()));
}

#[tokio::test]
async fn a_stateless_token_comes_through_unchanged() {
    let reply = the_client_hands_over(STATELESS).await;
    let token = reply.installation_token.expose();
    assert_eq!(token.len(), 532);
    let jwt = token.strip_prefix("ghs_123456_").unwrap();
    assert_eq!(jwt.split('.').count(), 3);
    assert!(token.contains('-') && jwt.contains('_'), "base64url: {token}");
}
