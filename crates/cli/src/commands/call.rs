//! `appcreds app-token | token | installations | refresh`: calls to appcreds' functions through
//! their Function URLs, signed with SigV4, with the job's GitHub Actions OIDC token where one can
//! be had.

use std::collections::BTreeMap;
use std::io::Write;

use appcreds_cli::CliError;
use appcreds_client::{
    Client, ClientError, InstallationTokenRequest, InstallationTokenResponse, ScopeDown, Target, Token, Urls,
};
use clap::{Args, Subcommand};

use super::Context;
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
    /// The installation's account login (user or organization). Repeat it for a token per owner,
    /// all in one call (all or none; each with the same scope).
    #[arg(long)]
    owner: Vec<String>,
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
        CallCommand::Token(args) if args.owner.len() > 1 => {
            // Checked before the call: a token nobody can be given is not minted.
            let outputs = step_outputs()?;
            let client = connect(ctx, urls, oidc, |u| u.installation_token.is_none()).await?;
            let tokens = owners_tokens(&client, args).await?;
            if let Some(path) = &outputs {
                owners_outputs(path, &tokens)?;
            }
            output::owners_tokens(json_out, &tokens);
        }
        CallCommand::Token(args) => {
            let outputs = step_outputs()?;
            let client = connect(ctx, urls, oidc, |u| u.installation_token.is_none()).await?;
            let t = installation_token(&client, args).await?;
            if let Some(path) = &outputs {
                github_actions_outputs(path, &t)?;
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
    let config = ctx.aws_config().await?;
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
    let target = match (&args.node_id, args.owner.as_slice(), &args.repository, &args.enterprise) {
        (Some(n), _, _, _) => Target::NodeId(n.clone()),
        (_, [o], _, _) => Target::Owner(o.clone()),
        (_, [_, _, ..], _, _) => return Err(CliError::Usage("give one --owner: this takes one token".into())),
        (_, _, Some(r), _) => Target::Repository(r.clone()),
        (_, _, _, Some(e)) => Target::Enterprise(e.clone()),
        _ => return Err(CliError::Usage("give --node-id, --owner, --repository or --enterprise".into())),
    };
    let scope = scope_of(args);
    Ok(spin("asking for an installation token", client.installation_token(args.app_id, &target, scope.as_ref()))
        .await?)
}

/// The scope the flags ask for, if any.
fn scope_of(args: &TokenArgs) -> Option<ScopeDown> {
    let scope = ScopeDown {
        repository_ids: args.repository_ids.clone(),
        repository_names: args.repositories.clone(),
        permissions: args.permissions.iter().cloned().collect::<BTreeMap<_, _>>(),
    };
    (scope != ScopeDown::default()).then_some(scope)
}

/// A token for each `--owner`, with the same scope, in one call (`POST /tokens/installations`):
/// each owner with its answer, in the order given.
async fn owners_tokens(
    client: &Client,
    args: &TokenArgs,
) -> Result<Vec<(String, InstallationTokenResponse)>, CliError> {
    let scope = scope_of(args);
    let requests: Vec<InstallationTokenRequest> = args
        .owner
        .iter()
        .map(|o| InstallationTokenRequest {
            app_id: args.app_id,
            target: Target::Owner(o.clone()),
            scope_down: scope.clone(),
        })
        .collect();
    let tokens = spin("asking for installation tokens", client.installation_tokens(&requests)).await?;
    // The client refuses an answer of another length: no owner is dropped by the zip.
    Ok(args.owner.iter().cloned().zip(tokens).collect())
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

/// Whether this is a GitHub Actions job that may have an OIDC token (`ACTIONS_ID_TOKEN_REQUEST_URL`
/// and `_TOKEN` are set when it has `id-token: write`).
fn github_oidc_available() -> bool {
    appcreds_client::github_actions::oidc_available()
}

/// The job's GitHub Actions OIDC token for `audience`.
async fn github_oidc_token(audience: &str) -> Result<Token, CliError> {
    Ok(appcreds_client::github_actions::oidc_token(audience).await?)
}

/// In GitHub Actions (`GITHUB_ACTIONS=true`), the step's `GITHUB_OUTPUT` file, which the token
/// outputs go to: an error when it is not set, before anything is asked of appcreds.
fn step_outputs() -> Result<Option<String>, CliError> {
    if std::env::var("GITHUB_ACTIONS").as_deref() != Ok("true") {
        return Ok(None);
    }
    match std::env::var("GITHUB_OUTPUT") {
        Ok(path) if !path.is_empty() => Ok(Some(path)),
        _ => Err(CliError::Usage(
            "GITHUB_ACTIONS is true but GITHUB_OUTPUT is not set: there is nowhere to write the token outputs, so none is asked for".into(),
        )),
    }
}

/// Masks each owner's token in the job's log and writes the step outputs (to `path`): `tokens`
/// (JSON, owner → token), `token-<owner>` for each, `app-slug`, and `expires-at` (the earliest).
fn owners_outputs(path: &str, tokens: &[(String, InstallationTokenResponse)]) -> Result<(), CliError> {
    for (_, t) in tokens {
        println!("::add-mask::{}", t.installation_token.expose());
    }
    let by_owner: serde_json::Map<String, serde_json::Value> =
        tokens.iter().map(|(o, t)| (o.clone(), t.installation_token.expose().into())).collect();
    let mut lines = format!("tokens={}\n", serde_json::Value::Object(by_owner));
    for (owner, t) in tokens {
        lines += &format!("token-{owner}={}\n", t.installation_token.expose());
    }
    let slug = tokens.iter().find_map(|(_, t)| t.app_slug.clone()).unwrap_or_default();
    let earliest = tokens.iter().map(|(_, t)| t.expiration_time.as_str()).min().unwrap_or_default();
    lines += &format!("app-slug={slug}\nexpires-at={earliest}\n");
    append_output(path, &lines)
}

/// Appends `lines` to the step's `GITHUB_OUTPUT` file, `path`.
fn append_output(path: &str, lines: &str) -> Result<(), CliError> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| CliError::Usage(format!("cannot write {path}: {e}")))?;
    file.write_all(lines.as_bytes()).map_err(|e| CliError::Usage(format!("cannot write {path}: {e}")))
}

/// Masks the token in the job's log and writes the step outputs (to `path`).
fn github_actions_outputs(path: &str, t: &InstallationTokenResponse) -> Result<(), CliError> {
    println!("::add-mask::{}", t.installation_token.expose());
    let lines = format!(
        "token={}\ninstallation-id={}\napp-slug={}\nexpires-at={}\n",
        t.installation_token.expose(),
        t.installation_id.map(|i| i.to_string()).unwrap_or_default(),
        t.app_slug.clone().unwrap_or_default(),
        t.expiration_time
    );
    append_output(path, &lines)
}
