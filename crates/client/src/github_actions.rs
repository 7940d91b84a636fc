//! AWS credentials of a GitHub Actions job that renew themselves: [`ActionsRole`] assumes a role
//! with the job's own OIDC token (`AssumeRoleWithWebIdentity`, audience `sts.amazonaws.com`), a
//! fresh token for each session. It caches nothing itself: the [`crate::Client`], or an SDK
//! client's identity cache, asks it again when the session is near its expiry, so a job that runs
//! for hours never signs with an expired session. No token is written anywhere.

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::Value;

use crate::{ClientError, Token};

/// The audience of the OIDC token that AWS STS takes.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// The STS region when the configuration names none. The SDK resolves it to that region's own
/// endpoint (`sts.us-east-1.amazonaws.com`), not to the legacy global `sts.amazonaws.com`.
const DEFAULT_STS_REGION: &str = "us-east-1";

/// How long the job's OIDC token endpoint may take to answer.
const OIDC_TIMEOUT: Duration = Duration::from_secs(10);

const REQUEST_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
const REQUEST_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The job's OIDC token endpoint: the runner sets `ACTIONS_ID_TOKEN_REQUEST_URL` and `_TOKEN` only
/// for a job with `permissions: id-token: write`.
#[derive(Debug, Clone)]
pub struct OidcEndpoint {
    url: String,
    /// The request token, a bearer secret (redacted in Debug).
    bearer: Token,
}

impl OidcEndpoint {
    pub fn new(url: impl Into<String>, bearer: Token) -> Self {
        OidcEndpoint { url: url.into(), bearer }
    }

    /// The job's endpoint, from `ACTIONS_ID_TOKEN_REQUEST_URL` and `_TOKEN`; an error saying that
    /// the job needs `id-token: write` without them.
    pub fn from_env() -> Result<Self, ClientError> {
        match (env_var(REQUEST_URL), env_var(REQUEST_TOKEN)) {
            (Some(url), Some(bearer)) => Ok(OidcEndpoint::new(url, Token::new(bearer))),
            _ => Err(ClientError::Credentials(format!(
                "no GitHub Actions OIDC token: the job needs `permissions: id-token: write` ({REQUEST_URL} and {REQUEST_TOKEN} are not set)"
            ))),
        }
    }

    /// A fresh OIDC token of the job for `audience`. No answer, a 5xx or a 429 is a
    /// [`ClientError::Transport`] (worth a retry); a refusal (another 4xx) is
    /// [`ClientError::Credentials`].
    /// The errors never hold a token.
    pub async fn token(&self, audience: &str) -> Result<Token, ClientError> {
        let failed = |m: String| ClientError::Transport { url: REQUEST_URL.into(), message: m };
        let mut url = reqwest::Url::parse(&self.url).map_err(|e| failed(e.to_string()))?;
        url.query_pairs_mut().append_pair("audience", audience);
        let resp = reqwest::Client::new()
            .get(url)
            .bearer_auth(self.bearer.expose())
            .timeout(OIDC_TIMEOUT)
            .send()
            .await
            .map_err(|e| failed(e.without_url().to_string()))?;
        if resp.status().is_client_error() && resp.status() != reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(ClientError::Credentials(format!(
                "GitHub's OIDC token endpoint refused the job a token: {}",
                resp.status()
            )));
        }
        if !resp.status().is_success() {
            return Err(failed(format!("GitHub answered {}", resp.status())));
        }
        let body: Value = resp.json().await.map_err(|e| failed(e.without_url().to_string()))?;
        let token =
            body["value"].as_str().filter(|t| !t.is_empty()).ok_or_else(|| failed("no token in the answer".into()))?;
        Ok(Token::new(token))
    }
}

/// Whether this job can have an OIDC token ([`OidcEndpoint::from_env`]).
pub fn oidc_available() -> bool {
    env_var(REQUEST_URL).is_some() && env_var(REQUEST_TOKEN).is_some()
}

/// The job's OIDC token for `audience` ([`OidcEndpoint::from_env`], [`OidcEndpoint::token`]).
pub async fn oidc_token(audience: &str) -> Result<Token, ClientError> {
    OidcEndpoint::from_env()?.token(audience).await
}

/// A role assumed with the job's OIDC token: each [`ProvideCredentials::provide_credentials`] asks
/// for a fresh token and a fresh session (of the role's default length, an hour unless the role
/// says otherwise). Wrap it in a cache: [`crate::Client`] does, and so does an SDK client given
/// it as its credentials provider.
#[derive(Debug, Clone)]
pub struct ActionsRole {
    sts: aws_sdk_sts::Client,
    oidc: OidcEndpoint,
    role_arn: String,
    session_name: String,
}

impl ActionsRole {
    /// The role `role_arn`, assumed with the tokens of this job's OIDC endpoint
    /// ([`OidcEndpoint::from_env`]: an error without `id-token: write`), in a session named after
    /// the job ([`session_name`]).
    pub fn from_env(config: &aws_config::SdkConfig, role_arn: impl Into<String>) -> Result<Self, ClientError> {
        Ok(Self::new(config, role_arn, OidcEndpoint::from_env()?, session_name(env_var)))
    }

    /// The role `role_arn`, assumed with the tokens of `oidc` through the STS endpoint of `config`
    /// (its region's, else us-east-1's; `AWS_ENDPOINT_URL_STS` and
    /// `AWS_ENDPOINT_URL` apply), in sessions named `session_name`.
    pub fn new(
        config: &aws_config::SdkConfig,
        role_arn: impl Into<String>,
        oidc: OidcEndpoint,
        session_name: impl Into<String>,
    ) -> Self {
        let mut sts = aws_sdk_sts::config::Builder::from(config);
        // AssumeRoleWithWebIdentity is not signed: the web identity token is the credential.
        sts.set_credentials_provider(None);
        if config.region().is_none() {
            sts.set_region(Some(aws_config::Region::from_static(DEFAULT_STS_REGION)));
        }
        ActionsRole {
            sts: aws_sdk_sts::Client::from_conf(sts.build()),
            oidc,
            role_arn: role_arn.into(),
            session_name: session_name.into(),
        }
    }

    /// The session name this provider gives STS.
    pub fn session_name(&self) -> &str {
        &self.session_name
    }

    /// A session of the role. A failure's source is a [`ClientError`]: `Transport` when GitHub's
    /// token endpoint or STS did not answer, answered a 5xx or throttled, `Credentials` when either
    /// refused.
    async fn assume(&self) -> Result<Credentials, CredentialsError> {
        let token = self.oidc.token(STS_AUDIENCE).await.map_err(CredentialsError::provider_error)?;
        let out = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .web_identity_token(token.expose())
            .send()
            .await
            .map_err(|e| {
                let message =
                    format!("AssumeRoleWithWebIdentity of {} failed: {}", self.role_arn, DisplayErrorContext(&e));
                let throttled = e.as_service_error().and_then(|s| s.code()) == Some("Throttling");
                let refused = !throttled && e.raw_response().is_some_and(|r| r.status().is_client_error());
                CredentialsError::provider_error(if refused || matches!(e, SdkError::ConstructionFailure(_)) {
                    ClientError::Credentials(message)
                } else {
                    ClientError::Transport { url: "AWS STS".into(), message }
                })
            })?;
        let c = out
            .credentials()
            .ok_or_else(|| CredentialsError::unhandled("AssumeRoleWithWebIdentity answered no credentials"))?;
        let expiry = std::time::SystemTime::try_from(c.expiration().to_owned())
            .map_err(|e| CredentialsError::unhandled(format!("the session's expiry: {e}")))?;
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            Some(expiry),
            "appcreds-github-actions-role",
        ))
    }
}

impl ProvideCredentials for ActionsRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.assume())
    }
}

/// STS's limit on a role session name.
const SESSION_NAME_MAX: usize = 64;

/// A session name that traces back to the job: `appcreds-RUN_ID-RUN_ATTEMPT@OWNER.REPO` from
/// `GITHUB_RUN_ID`, `GITHUB_RUN_ATTEMPT` and `GITHUB_REPOSITORY` (those present), in STS's
/// characters (`[\w+=,.@-]`, others become `_`) and at most 64 of them. CloudTrail records it with
/// every call the session makes.
pub fn session_name(var: impl Fn(&str) -> Option<String>) -> String {
    let mut name = String::from("appcreds");
    for part in [var("GITHUB_RUN_ID"), var("GITHUB_RUN_ATTEMPT")].into_iter().flatten() {
        name.push('-');
        name.push_str(&part);
    }
    if let Some(repository) = var("GITHUB_REPOSITORY") {
        name.push('@');
        name.push_str(&repository.replace('/', "."));
    }
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) { c } else { '_' })
        .take(SESSION_NAME_MAX)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_trace_the_job_within_stss_limits() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |n: &str| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())
        };
        let job = env(&[
            ("GITHUB_RUN_ID", "16273849501"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("GITHUB_REPOSITORY", "octo-org/hello-world"),
        ]);
        assert_eq!(session_name(job), "appcreds-16273849501-2@octo-org.hello-world");
        assert_eq!(session_name(env(&[])), "appcreds");
        let long = env(&[
            ("GITHUB_RUN_ID", "1"),
            ("GITHUB_REPOSITORY", "an-organization-with-a-long-name/ünïcode repo and then some"),
        ]);
        let name = session_name(long);
        assert_eq!(name.len(), 64);
        assert!(name.starts_with("appcreds-1@an-organization-with-a-long-name._n_code_repo"), "{name}");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)), "{name}");
    }

    #[test]
    fn the_request_token_is_not_in_a_debug_print() {
        let endpoint = OidcEndpoint::new("http://127.0.0.1:1/token", Token::new("s3cret-request-token"));
        assert!(!format!("{endpoint:?}").contains("s3cret"), "{endpoint:?}");
    }
}
