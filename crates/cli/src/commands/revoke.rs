//! `appcreds revoke`: revoke an installation token at GitHub.

use std::time::Duration;

use appcreds_client::ClientError;
use clap::Args;
use zeroize::Zeroizing;

use crate::output::{self, spin};

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// Environment variable that holds the token (default: read it from standard input).
    #[arg(long, value_name = "VAR")]
    token_env: Option<String>,
    /// GitHub REST API base URL (GitHub Enterprise Server: https://HOST/api/v3).
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com", value_name = "URL")]
    github_api_url: String,
}

/// Revokes the token at GitHub (DELETE /installation/token). A token GitHub no longer accepts
/// (already revoked or expired) is reported as refused (exit 4).
pub async fn run(args: &RevokeArgs, json_out: bool) -> Result<(), ClientError> {
    let token = Zeroizing::new(match &args.token_env {
        Some(var) => std::env::var(var).map_err(|_| ClientError::Config(format!("--token-env: {var} is not set")))?,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| ClientError::Config(format!("cannot read the token: {e}")))?;
            line
        }
    });
    let token = token.trim();
    if token.is_empty() {
        return Err(ClientError::Config("no token to revoke".into()));
    }
    let revoked = spin("revoking the token", revoke_token(&args.github_api_url, token, Duration::from_secs(30))).await;
    revoked.map(|()| output::revoked(json_out))
}

/// Revokes `token` at the GitHub API of `github_api_url` (`DELETE /installation/token`,
/// authenticated by the token itself). A token GitHub no longer accepts (already revoked or
/// expired) is a client-side refusal. GitHub has `timeout` to answer.
pub(super) async fn revoke_token(github_api_url: &str, token: &str, timeout: Duration) -> Result<(), ClientError> {
    let url = format!("{}/installation/token", github_api_url.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .delete(&url)
        .bearer_auth(token)
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .header("user-agent", concat!("appcreds/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| ClientError::Transport { url: url.clone(), message: e.to_string() })?;
    match resp.status().as_u16() {
        204 => Ok(()),
        401 => Err(ClientError::ClientSide("GitHub does not accept this token (already revoked or expired)".into())),
        code => Err(ClientError::ServerSide(format!("GitHub answered HTTP {code} to the revocation"))),
    }
}
