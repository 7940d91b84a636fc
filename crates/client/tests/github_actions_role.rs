#![allow(clippy::unwrap_used)]
//! The GitHub Actions role against moto's STS: each session comes from `AssumeRoleWithWebIdentity`
//! with a fresh OIDC token of the job (a loopback double of the runner's token endpoint), and the
//! client signs every request with the session current at the time, renewing it when it is within
//! the renewal time of its expiry. A loopback Function URL checks each request's SigV4 signature
//! against the session the provider handed out last.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use appcreds_client::github_actions::{ActionsRole, OidcEndpoint, STS_AUDIENCE};
use appcreds_client::{Client, Token, Urls, sign_request};
use appcreds_testkit::aws::{REGION, sdk_config};
use appcreds_testkit::moto::Moto;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use axum::http::{HeaderMap, Uri};
use serde_json::json;

const ROLE: &str = "arn:aws:iam::123456789012:role/appcreds-GitHubActionsCallerRole-X1";

/// What the runner's token endpoint was asked: the query and the bearer.
type Asked = Arc<Mutex<Vec<(String, String)>>>;

/// A double of the runner's OIDC token endpoint; each answer is a new token.
async fn oidc_endpoint() -> (OidcEndpoint, Asked) {
    let asked: Asked = Arc::default();
    let recorded = asked.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let recorded = recorded.clone();
        async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let mut asked = recorded.lock().unwrap();
            asked.push((uri.query().unwrap_or_default().to_string(), auth));
            axum::Json(json!({"count": 1, "value": format!("eyJ.job-oidc-{}.sig", asked.len())}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token?api-version=2.0", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (OidcEndpoint::new(url, Token::new("request-token")), asked)
}

/// The provider under test, recording each session it hands out.
#[derive(Debug)]
struct Recorded {
    role: ActionsRole,
    handed_out: Arc<Mutex<Vec<Credentials>>>,
}

impl Recorded {
    async fn load(&self) -> aws_credential_types::provider::Result {
        let credentials = self.role.provide_credentials().await?;
        self.handed_out.lock().unwrap().push(credentials.clone());
        Ok(credentials)
    }
}

impl ProvideCredentials for Recorded {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.load())
    }
}

/// Each request the Function URL got: URL, body and headers.
type Requests = Arc<Mutex<Vec<(String, Vec<u8>, HeaderMap)>>>;

/// A Function URL that records each request and answers an App token.
async fn function_url() -> (String, Requests) {
    let requests: Requests = Arc::default();
    let recorded = requests.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: axum::body::Bytes| {
        let recorded = recorded.clone();
        async move {
            recorded.lock().unwrap().push((uri.to_string(), body.to_vec(), headers));
            axum::Json(json!({"appId": 5, "appToken": "eyJ.app.jwt", "expirationTime": "2026-12-05T12:00:00Z"}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, requests)
}

/// `x-amz-date` (`20261205T093000Z`) as a time.
fn amz_date(text: &str) -> SystemTime {
    let t = text.as_bytes();
    let iso = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &text[0..4],
        &text[4..6],
        &text[6..8],
        &text[9..11],
        &text[11..13],
        &text[13..15]
    );
    assert_eq!((t.len(), t[8], t[15]), (16, b'T', b'Z'), "{text}");
    let dt = aws_smithy_types::DateTime::from_str(&iso, aws_smithy_types::date_time::Format::DateTime).unwrap();
    SystemTime::try_from(dt).unwrap()
}

/// Calls the Function URL `calls` times with a client renewing `renew_before` the expiry, and
/// checks each request's signature against the session handed out last before it. Returns the
/// sessions handed out and what the token endpoint was asked.
async fn sign_with_the_role(renew_before: Option<Duration>, calls: usize) -> (Vec<Credentials>, Vec<(String, String)>) {
    let moto = Moto::shared();
    let config = sdk_config(moto.endpoint()).await;
    let (oidc, asked) = oidc_endpoint().await;
    let handed_out: Arc<Mutex<Vec<Credentials>>> = Arc::default();
    let role = ActionsRole::new(&config, ROLE, oidc, "appcreds-1234-1@octo-org.hello-world");
    let provider = SharedCredentialsProvider::new(Recorded { role, handed_out: handed_out.clone() });
    let (url, requests) = function_url().await;
    let urls = Urls { app_token: Some(url.clone()), ..Urls::default() };
    let mut client = Client::new(provider, Some(REGION.to_string()), urls);
    if let Some(before) = renew_before {
        client = client.renew_credentials_before(before);
    }
    for n in 0..calls {
        client.app_token(5).await.unwrap();
        let sessions = handed_out.lock().unwrap().clone();
        let current = sessions.last().unwrap();
        let (uri, body, headers) = requests.lock().unwrap()[n].clone();
        let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_string();
        assert_eq!(header("x-amz-security-token"), current.session_token().unwrap(), "request {n}");
        // The signature is the one the current session's secret makes for this request.
        let expected = sign_request(
            &format!("{url}{uri}"),
            &body,
            &[],
            current.clone().into(),
            REGION,
            amz_date(&header("x-amz-date")),
        )
        .unwrap();
        let authorization = expected.iter().find(|(n, _)| n == "authorization").unwrap();
        assert_eq!(header("authorization"), authorization.1, "request {n} is signed with the current session");
    }
    let sessions = handed_out.lock().unwrap().clone();
    let asked = asked.lock().unwrap().clone();
    (sessions, asked)
}

/// Within its life, one session signs every request: one OIDC token, one AssumeRoleWithWebIdentity.
#[tokio::test]
async fn one_session_signs_while_it_is_valid() {
    let (sessions, asked) = sign_with_the_role(None, 3).await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(asked.len(), 1);
    let expiry = sessions[0].expiry().unwrap().duration_since(SystemTime::now()).unwrap();
    assert!(expiry > Duration::from_secs(3500) && expiry <= Duration::from_secs(3600), "moto's hour: {expiry:?}");
    assert!(sessions[0].access_key_id().starts_with("ASIA"), "a session of the role: {}", sessions[0].access_key_id());
}

/// A session within the renewal time of its expiry is renewed before it signs: with a renewal
/// time longer than the session's hour, every request gets a fresh OIDC token (audience
/// sts.amazonaws.com, the runner's request token as bearer) and a fresh session, and is signed
/// with it.
#[tokio::test]
async fn a_session_near_its_expiry_is_renewed_before_it_signs() {
    let (sessions, asked) = sign_with_the_role(Some(Duration::from_secs(3600 + 60)), 3).await;
    assert_eq!(sessions.len(), 3, "one AssumeRoleWithWebIdentity per request");
    let keys: std::collections::BTreeSet<&str> = sessions.iter().map(|c| c.access_key_id()).collect();
    assert_eq!(keys.len(), 3, "three sessions: {keys:?}");
    assert_eq!(asked.len(), 3, "a fresh OIDC token for each");
    for (query, bearer) in &asked {
        assert_eq!(query, &format!("api-version=2.0&audience={STS_AUDIENCE}"));
        assert_eq!(bearer, "Bearer request-token");
    }
}

/// Without the runner's token endpoint (no `id-token: write`) there is no role: a clear error.
#[test]
fn without_id_token_write_there_is_no_role() {
    if std::env::var_os("ACTIONS_ID_TOKEN_REQUEST_URL").is_some() {
        return; // run inside a job that has the permission
    }
    let err = OidcEndpoint::from_env().unwrap_err().to_string();
    assert!(err.contains("needs `permissions: id-token: write`"), "{err}");
}

/// What STS was given, seen from both ends: the request went through a proxy in front of moto
/// (its form holds the web identity token, which is the value the runner's endpoint answered),
/// and moto's `GetCallerIdentity`, signed with the session, names the role and the session name.
#[tokio::test]
async fn sts_gets_the_role_the_session_name_and_the_jobs_oidc_token() {
    let moto = Moto::shared();
    let proxy = appcreds_testkit::fault_proxy::FaultProxy::start(moto.endpoint()).await.unwrap();
    let config = sdk_config(&proxy.url()).await;
    let (oidc, asked) = oidc_endpoint().await;
    let session = "appcreds-16273849501-2@octo-org.hello-world";
    let role = ActionsRole::new(&config, ROLE, oidc, session);
    let credentials = role.provide_credentials().await.unwrap();

    let forms = proxy.forms("AssumeRoleWithWebIdentity");
    assert_eq!(forms.len(), 1, "{forms:?}");
    let fields: Vec<&str> = forms[0].split('&').collect();
    assert_eq!(asked.lock().unwrap().len(), 1);
    assert!(fields.contains(&"WebIdentityToken=eyJ.job-oidc-1.sig"), "the endpoint's token: {fields:?}");
    assert!(fields.contains(&"RoleSessionName=appcreds-16273849501-2%40octo-org.hello-world"), "{fields:?}");
    assert!(
        fields.contains(&"RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fappcreds-GitHubActionsCallerRole-X1"),
        "{fields:?}"
    );
    assert!(!forms[0].contains("request-token"), "the runner's request token goes to the runner only");

    let as_session = aws_sdk_sts::config::Builder::from(&sdk_config(moto.endpoint()).await)
        .credentials_provider(credentials)
        .build();
    let identity = aws_sdk_sts::Client::from_conf(as_session).get_caller_identity().send().await.unwrap();
    assert_eq!(
        identity.arn(),
        Some(format!("arn:aws:sts::123456789012:assumed-role/appcreds-GitHubActionsCallerRole-X1/{session}").as_str())
    );
}

/// A provider that counts its loads and hands out credentials expiring `expires_in` from the call,
/// after `delay` (so that concurrent callers overlap).
#[derive(Debug)]
struct Counting {
    loads: Arc<Mutex<usize>>,
    expires_in: Duration,
    delay: Duration,
}

impl Counting {
    async fn load(&self) -> aws_credential_types::provider::Result {
        let n = {
            let mut loads = self.loads.lock().unwrap();
            *loads += 1;
            *loads
        };
        tokio::time::sleep(self.delay).await;
        let expiry = SystemTime::now() + self.expires_in;
        Ok(Credentials::new(format!("ASIACOUNTING{n}"), "secret", Some("session".into()), Some(expiry), "counting"))
    }
}

impl ProvideCredentials for Counting {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.load())
    }
}

/// A client (default renewal time) on a counting provider, and its load counter.
async fn counting_client(expires_in: Duration, delay: Duration) -> (Client, Arc<Mutex<usize>>) {
    let loads: Arc<Mutex<usize>> = Arc::default();
    let provider = SharedCredentialsProvider::new(Counting { loads: loads.clone(), expires_in, delay });
    let (url, _) = function_url().await;
    (Client::new(provider, Some(REGION.to_string()), Urls { app_token: Some(url), ..Urls::default() }), loads)
}

/// The client's renewal boundary is RENEW_BEFORE (5 minutes): credentials that expire in 4 minutes
/// are asked for again at the next call; credentials that expire in 6 minutes are not.
#[tokio::test]
async fn credentials_within_five_minutes_of_expiry_are_renewed_and_others_are_not() {
    assert_eq!(appcreds_client::RENEW_BEFORE, Duration::from_secs(300));
    let (client, loads) = counting_client(Duration::from_secs(4 * 60), Duration::ZERO).await;
    client.app_token(5).await.unwrap();
    client.app_token(5).await.unwrap();
    assert_eq!(*loads.lock().unwrap(), 2, "4 minutes left: asked again");

    let (client, loads) = counting_client(Duration::from_secs(6 * 60), Duration::ZERO).await;
    for _ in 0..3 {
        client.app_token(5).await.unwrap();
    }
    assert_eq!(*loads.lock().unwrap(), 1, "6 minutes left: kept");
}

/// Concurrent calls (on clones of one client) wait for one load instead of each making its own.
#[tokio::test]
async fn concurrent_calls_share_one_load() {
    let (client, loads) = counting_client(Duration::from_secs(3600), Duration::from_millis(300)).await;
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.app_token(5).await.map(|t| t.app_token.expose().to_string()) })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), "eyJ.app.jwt");
    }
    assert_eq!(*loads.lock().unwrap(), 1);
}
