//! A typed client for appcreds' Lambda Function URLs (`AuthType: AWS_IAM`).
//!
//! Every request is a JSON `POST` signed with SigV4 for service `lambda` in the Function URL's
//! region, with credentials from the standard AWS chain (environment, profile, SSO, web identity,
//! IMDS/ECS), or from [`github_actions::ActionsRole`]: a role a GitHub Actions job assumes with its
//! own OIDC token. The credentials are cached until shortly before they expire, and then asked for
//! again. Error responses are read by their `x-amzn-errortype` into [`ClientError`].

pub mod github_actions;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime::expiring_cache::ExpiringCache;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::error::display::DisplayErrorContext;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use appcreds_wire::{
    AppTokenRequest, AppTokenResponse, ErrorBody, ErrorName, FieldError, InstallationInfoRequest,
    InstallationInfoResponse, InstallationRecord, InstallationTokenRequest, InstallationTokenResponse,
    InstallationTokensRequest, InstallationTokensResponse, ListInstallationsRequest, ListInstallationsResponse,
    OIDC_TOKEN_HEADER, RefreshRequest, RefreshResponse, ScopeDown, Target, Token, paths,
};

/// The SigV4 service name of Lambda Function URLs.
pub const SERVICE: &str = "lambda";

/// What went wrong, by the contract's error names and the transport.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid request: {message}")]
    Validation { message: String, fields: Vec<FieldError> },
    #[error("{0}")]
    ClientSide(String),
    #[error("appcreds failed: {0}")]
    ServerSide(String),
    #[error("throttled; retry after {retry_after_seconds} s ({message})")]
    Throttled { message: String, retry_after_seconds: u64 },
    /// The request did not fit the API (`SerializationException`, `UnsupportedMediaTypeException`,
    /// `UnknownOperationException`): a client bug or a wrong URL.
    #[error("{name}: {message}")]
    Protocol { name: String, message: String },
    /// No appcreds access rule allows this caller this request (`AccessDeniedException`); the
    /// message names what exceeded the grant.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// The Function URL refused the caller (IAM): HTTP 403.
    #[error("not authorised to call {url}: {message}")]
    Forbidden { url: String, message: String },
    #[error("no AWS credentials: {0}")]
    Credentials(String),
    #[error("cannot reach {url}: {message}")]
    Transport { url: String, message: String },
    #[error("{0}")]
    Config(String),
    /// **(ext)** The error of one target of `POST /tokens/installations` (its `targetIndex`): the
    /// error its own request would get. Its message already names the index (`target N: …`).
    #[error("{error}")]
    InTarget { index: usize, error: Box<ClientError> },
}

impl ClientError {
    /// Whether the caller's request or identity was at fault (not appcreds or the network).
    pub fn is_caller_error(&self) -> bool {
        match self {
            ClientError::InTarget { error, .. } => error.is_caller_error(),
            other => {
                matches!(
                    other,
                    ClientError::Validation { .. } | ClientError::ClientSide(_) | ClientError::Protocol { .. }
                )
            }
        }
    }

    /// **(ext)** The index of the target of `POST /tokens/installations` the error is about.
    pub fn target_index(&self) -> Option<usize> {
        match self {
            ClientError::InTarget { index, .. } => Some(*index),
            _ => None,
        }
    }

    /// The error itself, without the target it is about.
    pub fn cause(&self) -> &ClientError {
        match self {
            ClientError::InTarget { error, .. } => error.cause(),
            other => other,
        }
    }
}

/// The Function URLs of a deployment (from arguments, `APPCREDS_*_URL` variables, or the stack's
/// outputs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Urls {
    pub app_token: Option<String>,
    pub installation_token: Option<String>,
    pub get_installation: Option<String>,
    pub refresh_cache: Option<String>,
}

impl Urls {
    /// `APPCREDS_APP_TOKEN_URL`, `APPCREDS_INSTALLATION_TOKEN_URL`, `APPCREDS_GET_INSTALLATION_URL`,
    /// `APPCREDS_REFRESH_CACHE_URL`.
    pub fn from_env() -> Self {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        Urls {
            app_token: var("APPCREDS_APP_TOKEN_URL"),
            installation_token: var("APPCREDS_INSTALLATION_TOKEN_URL"),
            get_installation: var("APPCREDS_GET_INSTALLATION_URL"),
            refresh_cache: var("APPCREDS_REFRESH_CACHE_URL"),
        }
    }

    /// The URLs among a stack's outputs (`AppTokenFunctionUrl`, `InstallationTokenFunctionUrl`,
    /// `GetInstallationFunctionUrl`, `RefreshCacheFunctionUrl`).
    pub fn from_stack_outputs(outputs: &BTreeMap<String, String>) -> Self {
        let output = |n: &str| outputs.get(n).filter(|v| !v.is_empty()).cloned();
        Urls {
            app_token: output("AppTokenFunctionUrl"),
            installation_token: output("InstallationTokenFunctionUrl"),
            get_installation: output("GetInstallationFunctionUrl"),
            refresh_cache: output("RefreshCacheFunctionUrl"),
        }
    }

    /// Fills what `self` lacks from `other`.
    pub fn or(self, other: Urls) -> Urls {
        Urls {
            app_token: self.app_token.or(other.app_token),
            installation_token: self.installation_token.or(other.installation_token),
            get_installation: self.get_installation.or(other.get_installation),
            refresh_cache: self.refresh_cache.or(other.refresh_cache),
        }
    }
}

/// A deployed stack's outputs by `OutputKey` (CloudFormation `DescribeStacks`).
pub async fn stack_outputs(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> Result<BTreeMap<String, String>, ClientError> {
    use aws_sdk_cloudformation::error::ProvideErrorMetadata;
    let out = cfn.describe_stacks().stack_name(stack).send().await.map_err(|e| {
        let message = e.as_service_error().and_then(|s| s.message()).map(str::to_string);
        match (e.as_service_error().and_then(|s| s.code()), message) {
            (Some("ValidationError"), Some(m)) if m.contains("does not exist") => {
                ClientError::Config(format!("stack {stack:?} does not exist (check the name and AWS_REGION)"))
            }
            (Some(code @ ("AccessDenied" | "AccessDeniedException")), m) => ClientError::Forbidden {
                url: "CloudFormation DescribeStacks".into(),
                message: m.unwrap_or_else(|| code.to_string()),
            },
            _ => ClientError::Transport {
                url: "CloudFormation DescribeStacks".into(),
                message: aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
            },
        }
    })?;
    let stack = out.stacks().first().ok_or_else(|| ClientError::Config(format!("stack {stack:?} does not exist")))?;
    Ok(stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect())
}

/// How long a call waits for its function: longer than any function's `Timeout` (refresh-cache's
/// 300 s is the longest), so a caller always gets the function's own answer, the contract's error
/// included, rather than giving up first.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(330);

/// How long `invoke` waits: longer than the access-key rotator's 900 s `Timeout`.
pub const INVOKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(910);

/// How long before its expiry a session is renewed: a signature made with it must still be good
/// when the request arrives.
pub const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

/// How long credentials without an expiry (access keys) are used before they are read again.
const UNEXPIRING_FOR: Duration = Duration::from_secs(15 * 60);

/// A provider's failure as the client's: a [`ClientError`] the provider gave as the source (the
/// [`github_actions::ActionsRole`] does: `Transport` for no answer or a 5xx), else `Credentials`.
fn credentials_error(err: &CredentialsError) -> ClientError {
    match std::error::Error::source(err).and_then(|s| s.downcast_ref::<ClientError>()) {
        Some(ClientError::Transport { url, message }) => {
            ClientError::Transport { url: url.clone(), message: message.clone() }
        }
        Some(ClientError::Credentials(message)) => ClientError::Credentials(message.clone()),
        Some(other) => ClientError::Credentials(other.to_string()),
        None => ClientError::Credentials(DisplayErrorContext(err).to_string()),
    }
}

/// The client. Its clones share one credentials cache.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    credentials: SharedCredentialsProvider,
    /// The SDK's expiry-aware cache (one load at a time), in front of `credentials`.
    cached: ExpiringCache<Credentials, CredentialsError>,
    default_region: Option<String>,
    urls: Urls,
    /// **(ext)** The caller's GitHub Actions OIDC token, sent (and signed) with every request.
    github_oidc_token: Option<Token>,
}

impl Client {
    /// A client with the standard AWS credential chain and region.
    pub async fn from_env(urls: Urls) -> Result<Self, ClientError> {
        Self::from_config(&aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await, urls)
    }

    /// A client with the credentials and region of `config`.
    pub fn from_config(config: &aws_config::SdkConfig, urls: Urls) -> Result<Self, ClientError> {
        let credentials = config
            .credentials_provider()
            .ok_or_else(|| ClientError::Credentials("no credential provider in the AWS configuration".into()))?;
        Ok(Self::new(credentials, config.region().map(|r| r.to_string()), urls))
    }

    pub fn new(credentials: SharedCredentialsProvider, default_region: Option<String>, urls: Urls) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("appcreds-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let cached = ExpiringCache::new(RENEW_BEFORE);
        Client { http, credentials, cached, default_region, urls, github_oidc_token: None }
    }

    /// Renews the credentials `before` their expiry instead of [`RENEW_BEFORE`].
    pub fn renew_credentials_before(mut self, before: Duration) -> Self {
        self.cached = ExpiringCache::new(before);
        self
    }

    /// The credentials to sign with now: the cached ones, unless they are within the renewal
    /// time of their expiry; then new ones from the provider (one load for concurrent callers).
    async fn current_credentials(&self) -> Result<Credentials, ClientError> {
        let now = SystemTime::now();
        if let Some(credentials) = self.cached.yield_or_clear_if_expired(now).await {
            return Ok(credentials);
        }
        let provider = self.credentials.clone();
        self.cached
            .get_or_load(|| async move {
                let credentials = provider.provide_credentials().await?;
                let expiry = credentials.expiry().unwrap_or(now + UNEXPIRING_FOR);
                Ok((credentials, expiry))
            })
            .await
            .map_err(|e| credentials_error(&e))
    }

    /// Sends `token`, the caller's GitHub Actions OIDC token, with every request (header
    /// `x-appcreds-github-oidc-token`, covered by the SigV4 signature), for access rules that
    /// require its claims.
    pub fn with_github_oidc_token(mut self, token: Token) -> Self {
        self.github_oidc_token = Some(token);
        self
    }

    /// An App JWT (`POST /tokens/app`).
    pub async fn app_token(&self, app_id: i64) -> Result<AppTokenResponse, ClientError> {
        let url = need(&self.urls.app_token, "app-token")?;
        self.call(url, paths::APP_TOKEN, &AppTokenRequest { app_id }).await
    }

    /// An installation token (`POST /tokens/installation`).
    pub async fn installation_token(
        &self,
        app_id: i64,
        target: &Target,
        scope: Option<&ScopeDown>,
    ) -> Result<InstallationTokenResponse, ClientError> {
        let url = need(&self.urls.installation_token, "installation-token")?;
        let request = InstallationTokenRequest { app_id, target: target.clone(), scope_down: scope.cloned() };
        self.call(url, paths::INSTALLATION_TOKEN, &request).await
    }

    /// **(ext)** Installation tokens for several targets in one call (`POST /tokens/installations`):
    /// one answer per request, in their order, or, if any target is refused or any mint fails, an
    /// error (its message names the target's index) and no token at all. At most
    /// [`InstallationTokensRequest::MAX_TARGETS`] requests. An answer with another number of
    /// tokens than requests is an error too (`UnexpectedResponse`): which token is whose would be
    /// a guess.
    pub async fn installation_tokens(
        &self,
        requests: &[InstallationTokenRequest],
    ) -> Result<Vec<InstallationTokenResponse>, ClientError> {
        let url = need(&self.urls.installation_token, "installation-token")?;
        let request = InstallationTokensRequest { targets: requests.to_vec() };
        let out: InstallationTokensResponse = self.call(url, paths::INSTALLATION_TOKENS, &request).await?;
        if out.tokens.len() != requests.len() {
            return Err(ClientError::Protocol {
                name: "UnexpectedResponse".into(),
                message: format!("{} tokens in the answer for {} targets", out.tokens.len(), requests.len()),
            });
        }
        Ok(out.tokens)
    }

    /// The installation records of an account (`POST /installations/info`).
    pub async fn installation_info(&self, node_id: &str) -> Result<Vec<InstallationRecord>, ClientError> {
        let url = need(&self.urls.get_installation, "get-installation")?;
        let request = InstallationInfoRequest { node_id: node_id.to_string() };
        let out: InstallationInfoResponse = self.call(url, paths::INSTALLATION_INFO, &request).await?;
        Ok(out.installations)
    }

    /// One page of every installation record (`POST /installations`).
    pub async fn list_installations(
        &self,
        max_results: Option<u32>,
        next_token: Option<&str>,
    ) -> Result<ListInstallationsResponse, ClientError> {
        let url = need(&self.urls.get_installation, "get-installation")?;
        let request = ListInstallationsRequest {
            max_results: max_results.map(i64::from),
            next_token: next_token.map(str::to_string),
        };
        self.call(url, paths::LIST_INSTALLATIONS, &request).await
    }

    /// Syncs the Installation table with GitHub now (`POST /installations/refresh`).
    pub async fn refresh(&self) -> Result<RefreshResponse, ClientError> {
        let url = need(&self.urls.refresh_cache, "refresh-cache")?;
        self.call(url, paths::REFRESH, &RefreshRequest {}).await
    }

    /// **(ext)** Invokes a function directly (Lambda `Invoke`, which needs `lambda:InvokeFunction`),
    /// for functions without a Function URL: `appcreds rotation run`. `function` is a name or ARN;
    /// the endpoint is `AWS_ENDPOINT_URL_LAMBDA`, else `AWS_ENDPOINT_URL`, else Lambda's regional
    /// one. A function that answers `{"error": {"type": …, "message": …}}` (the contract's error
    /// names) fails with the matching error; an unhandled failure is a `ServerSide` error.
    pub async fn invoke(&self, function: &str, payload: &Value) -> Result<Value, ClientError> {
        let region = function
            .strip_prefix("arn:")
            .and_then(|arn| arn.split(':').nth(2).map(str::to_string))
            .filter(|r| !r.is_empty())
            .or_else(|| self.default_region.clone())
            .ok_or_else(|| ClientError::Config("no AWS region for Lambda: set AWS_REGION".into()))?;
        let endpoint = std::env::var("AWS_ENDPOINT_URL_LAMBDA")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|_| format!("https://lambda.{region}.amazonaws.com"));
        let name: String = function
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let url = format!("{}/2015-03-31/functions/{name}/invocations", endpoint.trim_end_matches('/'));
        let body = serde_json::to_vec(payload).map_err(|e| ClientError::Config(e.to_string()))?;
        let credentials = self.current_credentials().await?;
        let headers = sign_request(&url, &body, &[], credentials.into(), &region, SystemTime::now())?;
        let mut req = self.http.post(&url).body(body).timeout(INVOKE_TIMEOUT);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let resp = req.send().await.map_err(|e| ClientError::Transport { url: url.clone(), message: e.to_string() })?;
        let status = resp.status().as_u16();
        let unhandled = resp.headers().contains_key("x-amz-function-error");
        let error_type = resp.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes =
            resp.bytes().await.map_err(|e| ClientError::Transport { url: url.clone(), message: e.to_string() })?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            return Err(error_of(status, error_type.as_deref(), &value, &url));
        }
        if unhandled {
            let message = value.get("errorMessage").and_then(Value::as_str).unwrap_or("the function failed");
            return Err(ClientError::ServerSide(message.to_string()));
        }
        if let Some(error) = value.get("error").filter(|e| e.is_object()) {
            let name = error.get("type").and_then(Value::as_str);
            return Err(error_of(status, name, error, &url));
        }
        Ok(value)
    }

    /// Signs and sends `body` to `base` + `path`, and reads the answer.
    async fn call<T: DeserializeOwned>(&self, base: &str, path: &str, body: &impl Serialize) -> Result<T, ClientError> {
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let region = region_of(&url)
            .or_else(|| self.default_region.clone())
            .ok_or_else(|| ClientError::Config(format!("no AWS region for {url}: set AWS_REGION")))?;
        let payload = serde_json::to_vec(body).map_err(|e| ClientError::Config(e.to_string()))?;
        let credentials = self.current_credentials().await?;
        let extra: Vec<(&str, &str)> =
            self.github_oidc_token.iter().map(|t| (appcreds_wire::OIDC_TOKEN_HEADER, t.expose())).collect();
        let headers = sign_request(&url, &payload, &extra, credentials.into(), &region, SystemTime::now())?;
        let mut req = self.http.post(&url).body(payload);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let resp = req.send().await.map_err(|e| ClientError::Transport { url: url.clone(), message: e.to_string() })?;
        let status = resp.status().as_u16();
        let error_type =
            resp.headers().get(appcreds_wire::ERROR_TYPE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes =
            resp.bytes().await.map_err(|e| ClientError::Transport { url: url.clone(), message: e.to_string() })?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return serde_json::from_value(value)
                .map_err(|e| ClientError::Protocol { name: "UnexpectedResponse".into(), message: e.to_string() });
        }
        Err(error_of(status, error_type.as_deref(), &value, &url))
    }
}

fn need<'a>(url: &'a Option<String>, function: &str) -> Result<&'a str, ClientError> {
    url.as_deref().ok_or_else(|| ClientError::Config(format!("no Function URL for {function}")))
}

/// The region of a Function URL (`https://ID.lambda-url.REGION.on.aws/`).
pub fn region_of(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split(['/', ':']).next()?;
    let mut parts = host.split('.');
    let _id = parts.next()?;
    (parts.next()? == "lambda-url").then(|| parts.next().map(str::to_string)).flatten()
}

/// The SigV4 headers for a JSON `POST` of `payload` to `url`, with `extra` headers (sent and
/// signed too; they are among the returned headers).
pub fn sign_request(
    url: &str,
    payload: &[u8],
    extra: &[(&str, &str)],
    identity: Identity,
    region: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, ClientError> {
    let host = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .ok_or_else(|| ClientError::Config(format!("not a URL: {url}")))?;
    let mut base_headers = vec![("host", host), ("content-type", "application/json")];
    base_headers.extend_from_slice(extra);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| ClientError::Config(e.to_string()))?
        .into();
    let signable = SignableRequest::new("POST", url, base_headers.iter().copied(), SignableBody::Bytes(payload))
        .map_err(|e| ClientError::Config(format!("cannot sign {url}: {e}")))?;
    let (instructions, _) =
        sign(signable, &params).map_err(|e| ClientError::Config(format!("cannot sign {url}: {e}")))?.into_parts();
    let mut headers: Vec<(String, String)> =
        base_headers.iter().filter(|(n, _)| *n != "host").map(|(n, v)| (n.to_string(), v.to_string())).collect();
    headers.extend(instructions.headers().map(|(n, v)| (n.to_string(), v.to_string())));
    Ok(headers)
}

fn error_of(status: u16, error_type: Option<&str>, body: &Value, url: &str) -> ClientError {
    // Lambda's own refusals (IAM) carry `Message`; appcreds' errors are the contract's ErrorBody.
    let parsed: Option<ErrorBody> = serde_json::from_value(body.clone()).ok();
    let error = error_named(status, error_type, body, parsed.clone(), url);
    match parsed.and_then(|b| b.target_index) {
        Some(index) => ClientError::InTarget { index, error: Box::new(error) },
        None => error,
    }
}

fn error_named(
    status: u16,
    error_type: Option<&str>,
    body: &Value,
    parsed: Option<ErrorBody>,
    url: &str,
) -> ClientError {
    let message = parsed
        .as_ref()
        .map(|b| b.message.clone())
        .or_else(|| body.get("Message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "no message".to_string());
    match error_type.and_then(ErrorName::parse) {
        Some(ErrorName::Validation) => {
            ClientError::Validation { fields: parsed.and_then(|b| b.field_list).unwrap_or_default(), message }
        }
        Some(ErrorName::ClientSide) => ClientError::ClientSide(message),
        Some(ErrorName::ServerSide) => ClientError::ServerSide(message),
        Some(ErrorName::Throttling) => ClientError::Throttled {
            retry_after_seconds: parsed.and_then(|b| b.retry_after_seconds).unwrap_or(1),
            message,
        },
        Some(name @ (ErrorName::Serialization | ErrorName::UnsupportedMediaType | ErrorName::UnknownOperation)) => {
            ClientError::Protocol { name: name.to_string(), message }
        }
        // Lambda's own IAM refusal is also an `AccessDeniedException`, but its body says `Message`.
        Some(ErrorName::AccessDenied) if parsed.is_some() => ClientError::AccessDenied(message),
        Some(ErrorName::AccessDenied) | None if status == 403 || status == 401 => {
            ClientError::Forbidden { url: url.to_string(), message }
        }
        Some(ErrorName::AccessDenied) | None if status == 429 => {
            ClientError::Throttled { message, retry_after_seconds: 1 }
        }
        Some(ErrorName::AccessDenied) | None => ClientError::ServerSide(format!("HTTP {status}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn regions_come_from_function_urls() {
        assert_eq!(region_of("https://abc123.lambda-url.eu-west-1.on.aws/").as_deref(), Some("eu-west-1"));
        assert_eq!(
            region_of("https://abc123.lambda-url.us-gov-west-1.on.aws/tokens/app").as_deref(),
            Some("us-gov-west-1")
        );
        assert_eq!(region_of("http://127.0.0.1:9000/lambda-url/x"), None);
    }

    #[test]
    fn error_names_map_to_variants() {
        let e = error_of(
            400,
            Some("ValidationException"),
            &json!({"message": "bad", "fieldList": [{"path": "/appId", "message": "x"}]}),
            "u",
        );
        assert!(matches!(&e, ClientError::Validation { fields, .. } if fields[0].path == "/appId"));
        assert!(e.is_caller_error());
        let e = error_of(429, Some("ThrottlingException"), &json!({"message": "slow", "retryAfterSeconds": 30}), "u");
        assert!(matches!(e, ClientError::Throttled { retry_after_seconds: 30, .. }));
        assert!(matches!(error_of(403, None, &json!({"Message": "Forbidden"}), "u"), ClientError::Forbidden { .. }));
        let iam =
            error_of(403, Some("AccessDeniedException"), &json!({"Message": "Forbidden. For troubleshooting…"}), "u");
        assert!(matches!(iam, ClientError::Forbidden { .. }), "Lambda's IAM refusal: {iam:?}");
        let rule = error_of(
            403,
            Some("AccessDeniedException"),
            &json!({"message": "permission contents: admin exceeds the granted write"}),
            "u",
        );
        assert!(matches!(&rule, ClientError::AccessDenied(m) if m.contains("exceeds")), "appcreds' refusal: {rule:?}");
        assert!(matches!(
            error_of(500, Some("ServerSideError"), &json!({"message": "x"}), "u"),
            ClientError::ServerSide(_)
        ));
        assert!(matches!(
            error_of(404, Some("UnknownOperationException"), &json!({}), "u"),
            ClientError::Protocol { .. }
        ));
        let batch = error_of(500, Some("ServerSideError"), &json!({"message": "target 2: x", "targetIndex": 2}), "u");
        assert_eq!(batch.target_index(), Some(2));
        assert!(matches!(batch.cause(), ClientError::ServerSide(m) if m == "target 2: x"), "{batch:?}");
        assert!(!batch.is_caller_error());
        assert_eq!(error_of(500, Some("ServerSideError"), &json!({"message": "x"}), "u").target_index(), None);
        assert_eq!(format!("{:?}", Token::new("ghs_secret")), "Token(redacted)");
    }
}
