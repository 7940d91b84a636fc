//! `appcreds app-token | token | installations | refresh`: calls to appcreds' functions through
//! their Function URLs, signed with SigV4, with the job's GitHub Actions OIDC token where one can
//! be had.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use appcreds_cli::CliError;
use appcreds_client::{Client, ClientError, InstallationTokenResponse, ScopeDown, Target, Token, Urls};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::{Context, aws_config};
use crate::output::{self, spin};

#[derive(Args, Debug)]
pub struct UrlArgs {
    /// Function URL of app-token [env: APPCREDS_APP_TOKEN_URL]
    #[arg(long, global = true, value_name = "URL")]
    app_token_url: Option<String>,
    /// Function URL of installation-token [env: APPCREDS_INSTALLATION_TOKEN_URL]
    #[arg(long, global = true, value_name = "URL")]
    installation_token_url: Option<String>,
    /// Function URL of get-installation [env: APPCREDS_GET_INSTALLATION_URL]
    #[arg(long, global = true, value_name = "URL")]
    get_installation_url: Option<String>,
    /// Function URL of refresh-cache [env: APPCREDS_REFRESH_CACHE_URL]
    #[arg(long, global = true, value_name = "URL")]
    refresh_cache_url: Option<String>,
}

#[derive(Args, Debug)]
pub struct OidcArgs {
    /// In GitHub Actions (with `permissions: id-token: write`), the audience of the OIDC token
    /// sent along for access rules that require its claims (default: the stack's
    /// GitHubOidcAudience output, with --stack).
    #[arg(long, global = true, env = "APPCREDS_OIDC_AUDIENCE", value_name = "AUD")]
    github_oidc_audience: Option<String>,
    /// Do not send a GitHub Actions OIDC token, even where one can be had.
    #[arg(long, global = true)]
    no_github_oidc: bool,
}

#[derive(Subcommand, Debug)]
pub enum CallCommand {
    /// A GitHub App JWT (valid at least 5 minutes), for calls made as the App.
    AppToken {
        /// The GitHub App's ID.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        app_id: i64,
    },
    /// An installation access token, optionally scoped down.
    Token(TokenArgs),
    /// Installation records: by node ID, or all of them.
    Installations {
        /// Only the installations on this account node ID.
        #[arg(long)]
        node_id: Option<String>,
        /// Page size when listing all (1..100).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100), default_value_t = 100)]
        max_results: u32,
    },
    /// Sync the installation records with GitHub now.
    Refresh,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["node_id", "owner", "repository", "enterprise"])))]
pub struct TokenArgs {
    /// The GitHub App's ID.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    app_id: i64,
    /// The installation's account node ID.
    #[arg(long)]
    node_id: Option<String>,
    /// The installation's account login (user or organization).
    #[arg(long)]
    owner: Option<String>,
    /// A repository of the installation, as owner/name.
    #[arg(long, value_name = "OWNER/NAME")]
    repository: Option<String>,
    /// The installation on an enterprise, by the enterprise's slug.
    #[arg(long, value_name = "SLUG")]
    enterprise: Option<String>,
    /// Scope the token down to these repositories (names, comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    repositories: Vec<String>,
    /// Scope the token down to these repository IDs (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "ID,...")]
    repository_ids: Vec<i64>,
    /// Scope the token down to this permission (repeatable), e.g. contents=read.
    #[arg(long = "permission", value_name = "NAME=LEVEL", value_parser = parse_permission)]
    permissions: Vec<(String, String)>,
}

pub(super) fn parse_permission(s: &str) -> Result<(String, String), String> {
    let (name, level) = s.split_once('=').ok_or_else(|| format!("expected NAME=LEVEL, got {s:?}"))?;
    if !["read", "write", "admin"].contains(&level) {
        return Err(format!("level must be read, write or admin, not {level:?}"));
    }
    if name.is_empty() {
        return Err("the permission name is empty".into());
    }
    Ok((name.to_string(), level.to_string()))
}

/// Calls the function `command` names. Each arm first connects with the URL of its function (from
/// the flags, the environment, else the stack's outputs).
pub async fn run(ctx: &Context<'_>, urls: &UrlArgs, oidc: &OidcArgs, command: &CallCommand) -> Result<(), CliError> {
    let json_out = ctx.json_out;
    match command {
        CallCommand::AppToken { app_id } => {
            let client = connect(ctx, urls, oidc, |u| u.app_token.is_none()).await?;
            let t = spin("asking for an App token", client.app_token(*app_id)).await?;
            if std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true") {
                // Before anything prints it: the job's log shows *** instead.
                println!("::add-mask::{}", t.app_token.expose());
            }
            output::app_token(json_out, &t);
        }
        CallCommand::Token(args) => {
            let client = connect(ctx, urls, oidc, |u| u.installation_token.is_none()).await?;
            let t = installation_token(&client, args).await?;
            if std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true") {
                github_actions_outputs(&t)?;
            }
            output::installation_token(json_out, &t);
        }
        CallCommand::Installations { node_id: Some(node_id), .. } => {
            let client = connect(ctx, urls, oidc, |u| u.get_installation.is_none()).await?;
            let list = spin("reading installations", client.installation_info(node_id)).await?;
            output::installations(json_out, &list);
        }
        CallCommand::Installations { node_id: None, max_results } => {
            let client = connect(ctx, urls, oidc, |u| u.get_installation.is_none()).await?;
            let all = spin("reading installations", all_installations(&client, *max_results)).await?;
            output::installations(json_out, &all);
        }
        CallCommand::Refresh => {
            let client = connect(ctx, urls, oidc, |u| u.refresh_cache.is_none()).await?;
            let out = spin("syncing installations with GitHub", client.refresh()).await?;
            output::refreshed(json_out, &out);
        }
    }
    Ok(())
}

/// The client on the Function URLs of the flags, else the environment, else (when `missing` says
/// the one needed is not there) the stack's outputs; with the job's OIDC token unless told not to.
pub(super) async fn connect(
    ctx: &Context<'_>,
    flags: &UrlArgs,
    oidc: &OidcArgs,
    missing: impl FnOnce(&Urls) -> bool,
) -> Result<Client, CliError> {
    let config = aws_config().await;
    let mut urls = Urls {
        app_token: flags.app_token_url.clone(),
        installation_token: flags.installation_token_url.clone(),
        get_installation: flags.get_installation_url.clone(),
        refresh_cache: flags.refresh_cache_url.clone(),
    }
    .or(Urls::from_env());
    let missing = missing(&urls);
    let send_oidc = !oidc.no_github_oidc && github_oidc_available();
    let need_audience = send_oidc && oidc.github_oidc_audience.is_none();
    let stack = if missing || need_audience { ctx.outputs(&config).await? } else { BTreeMap::new() };
    if missing {
        urls = urls.or(Urls::from_stack_outputs(&stack));
    }
    let client = Client::from_config(&config, urls)?;
    if !send_oidc {
        return Ok(client);
    }
    match oidc.github_oidc_audience.as_ref().or(stack.get("GitHubOidcAudience")) {
        // A token for STS is the one every job hands to AWS: it must not open appcreds too.
        Some(audience) if appcreds_core::config::is_sts_audience(audience) => Err(CliError::Usage(
            "the GitHub OIDC audience must be the stack's own (its GitHubOidcAudience output), not sts.amazonaws.com"
                .into(),
        )),
        Some(audience) => {
            let token = spin("getting the job's OIDC token", github_oidc_token(audience)).await?;
            Ok(client.with_github_oidc_token(token))
        }
        None => {
            eprintln!(
                "appcreds: sending no GitHub OIDC token: give its audience (APPCREDS_OIDC_AUDIENCE, or --stack for the stack's GitHubOidcAudience)"
            );
            Ok(client)
        }
    }
}

pub(super) async fn installation_token(
    client: &Client,
    args: &TokenArgs,
) -> Result<InstallationTokenResponse, CliError> {
    let target = match (&args.node_id, &args.owner, &args.repository, &args.enterprise) {
        (Some(n), _, _, _) => Target::NodeId(n.clone()),
        (_, Some(o), _, _) => Target::Owner(o.clone()),
        (_, _, Some(r), _) => Target::Repository(r.clone()),
        (_, _, _, Some(e)) => Target::Enterprise(e.clone()),
        _ => return Err(CliError::Usage("give --node-id, --owner, --repository or --enterprise".into())),
    };
    let scope = ScopeDown {
        repository_ids: args.repository_ids.clone(),
        repository_names: args.repositories.clone(),
        permissions: args.permissions.iter().cloned().collect::<BTreeMap<_, _>>(),
    };
    let scope = (scope != ScopeDown::default()).then_some(scope);
    Ok(spin("asking for an installation token", client.installation_token(args.app_id, &target, scope.as_ref()))
        .await?)
}

/// Every installation record, page after page.
async fn all_installations(
    client: &Client,
    max_results: u32,
) -> Result<Vec<appcreds_client::InstallationRecord>, ClientError> {
    let mut all = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = client.list_installations(Some(max_results), next.as_deref()).await?;
        all.extend(page.installations);
        match page.next_token {
            Some(t) => next = Some(t),
            None => break Ok(all),
        }
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Whether this is a GitHub Actions job that may have an OIDC token (`ACTIONS_ID_TOKEN_REQUEST_URL`
/// and `_TOKEN` are set when it has `id-token: write`).
fn github_oidc_available() -> bool {
    env_var("ACTIONS_ID_TOKEN_REQUEST_URL").is_some() && env_var("ACTIONS_ID_TOKEN_REQUEST_TOKEN").is_some()
}

/// The job's GitHub Actions OIDC token for `audience`.
async fn github_oidc_token(audience: &str) -> Result<Token, CliError> {
    let (Some(url), Some(bearer)) =
        (env_var("ACTIONS_ID_TOKEN_REQUEST_URL"), env_var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"))
    else {
        return Err(CliError::Usage("ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN are not set".into()));
    };
    let failed =
        |m: String| CliError::Client(ClientError::Transport { url: "ACTIONS_ID_TOKEN_REQUEST_URL".into(), message: m });
    let mut url = reqwest::Url::parse(&url).map_err(|e| failed(e.to_string()))?;
    url.query_pairs_mut().append_pair("audience", audience);
    let resp = reqwest::Client::new()
        .get(url)
        .bearer_auth(bearer)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(failed(format!("GitHub answered {}", resp.status())));
    }
    let body: Value = resp.json().await.map_err(|e| failed(e.to_string()))?;
    let token = body["value"].as_str().ok_or_else(|| failed("no token in the answer".into()))?;
    Ok(Token::new(token))
}

/// Masks the token in the job's log and writes the step outputs.
fn github_actions_outputs(t: &InstallationTokenResponse) -> Result<(), CliError> {
    println!("::add-mask::{}", t.installation_token.expose());
    let path = std::env::var("GITHUB_OUTPUT").map_err(|_| CliError::Usage("GITHUB_OUTPUT is not set".into()))?;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| CliError::Usage(format!("cannot write {path}: {e}")))?;
    let lines = format!(
        "token={}\ninstallation-id={}\napp-slug={}\nexpires-at={}\n",
        t.installation_token.expose(),
        t.installation_id.map(|i| i.to_string()).unwrap_or_default(),
        t.app_slug.clone().unwrap_or_default(),
        t.expiration_time
    );
    file.write_all(lines.as_bytes()).map_err(|e| CliError::Usage(format!("cannot write {path}: {e}")))
}
