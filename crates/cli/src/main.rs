//! `appcreds`: call appcreds' functions (SigV4-signed), from a shell or a GitHub Actions job.
//!
//! Exit codes: 0 success, 2 usage error, 3 not authorised (AWS credentials or IAM), 4 the request
//! was refused (invalid input, unknown App or installation, GitHub refused), 5 appcreds, GitHub or
//! the network failed, 6 throttled (retry later).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use appcreds_client::{Client, ClientError, ScopeDown, Target, Urls};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(
    name = "appcreds",
    version,
    about = "GitHub App credentials from appcreds, whose App keys live only in AWS KMS",
    long_about = "Calls appcreds' Lambda Function URLs, signing each request with SigV4 (service \
                  `lambda`) using the standard AWS credential chain: environment, profile, SSO, web \
                  identity (GitHub OIDC), instance or container roles.\n\n\
                  Function URLs come from --*-url flags or APPCREDS_*_URL variables (the stack's \
                  outputs AppTokenFunctionUrl, InstallationTokenFunctionUrl, GetInstallationFunctionUrl, \
                  RefreshCacheFunctionUrl).",
    after_help = "Examples:\n  appcreds app-token --app-id 123456\n  \
                  appcreds token --app-id 123456 --owner octo-org --repositories hello-world \
                  --permission contents=read\n  appcreds installations --node-id O_kgDOABCD\n\n\
                  In GitHub Actions (GITHUB_ACTIONS=true) `token` masks the token and writes token, \
                  installation-id, app-slug and expires-at to $GITHUB_OUTPUT."
)]
struct Cli {
    /// How to print results.
    #[arg(long, value_enum, default_value_t = Output::Human, global = true)]
    output: Output,
    #[command(flatten)]
    urls: UrlArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct UrlArgs {
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

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
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
#[command(group(clap::ArgGroup::new("target").required(true).args(["node_id", "owner", "repository"])))]
struct TokenArgs {
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

fn parse_permission(s: &str) -> Result<(String, String), String> {
    let (name, level) = s.split_once('=').ok_or_else(|| format!("expected NAME=LEVEL, got {s:?}"))?;
    if !["read", "write", "admin"].contains(&level) {
        return Err(format!("level must be read, write or admin, not {level:?}"));
    }
    if name.is_empty() {
        return Err("the permission name is empty".into());
    }
    Ok((name.to_string(), level.to_string()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let urls = Urls {
        app_token: cli.urls.app_token_url.clone(),
        installation_token: cli.urls.installation_token_url.clone(),
        get_installation: cli.urls.get_installation_url.clone(),
        refresh_cache: cli.urls.refresh_cache_url.clone(),
    }
    .or(Urls::from_env());
    match run(&cli, urls).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("appcreds: {err}");
            if let ClientError::Validation { fields, .. } = &err {
                for f in fields {
                    eprintln!("  {}: {}", f.path, f.message);
                }
            }
            ExitCode::from(exit_code(&err))
        }
    }
}

fn exit_code(err: &ClientError) -> u8 {
    match err {
        ClientError::Config(_) => 2,
        ClientError::Forbidden { .. } | ClientError::Credentials(_) => 3,
        ClientError::Validation { .. } | ClientError::ClientSide(_) | ClientError::Protocol { .. } => 4,
        ClientError::ServerSide(_) | ClientError::Transport { .. } => 5,
        ClientError::Throttled { .. } => 6,
    }
}

async fn run(cli: &Cli, urls: Urls) -> Result<(), ClientError> {
    let client = Client::from_env(urls).await?;
    let json_out = cli.output == Output::Json;
    match &cli.command {
        Command::AppToken { app_id } => {
            let t = client.app_token(*app_id).await?;
            print(
                json_out,
                json!({"appId": t.app_id, "appToken": t.app_token.expose(), "expirationTime": t.expiration_time}),
                || format!("{}\n", t.app_token.expose()),
            );
        }
        Command::Token(args) => {
            let target = match (&args.node_id, &args.owner, &args.repository) {
                (Some(n), _, _) => Target::NodeId(n.clone()),
                (_, Some(o), _) => Target::Owner(o.clone()),
                (_, _, Some(r)) => Target::Repository(r.clone()),
                _ => return Err(ClientError::Config("give --node-id, --owner or --repository".into())),
            };
            let scope = ScopeDown {
                repository_ids: args.repository_ids.clone(),
                repository_names: args.repositories.clone(),
                permissions: args.permissions.iter().cloned().collect::<BTreeMap<_, _>>(),
            };
            let scope = (scope != ScopeDown::default()).then_some(scope);
            let t = client.installation_token(args.app_id, &target, scope.as_ref()).await?;
            if std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true") {
                github_actions_outputs(&t)?;
            }
            print(
                json_out,
                json!({
                    "installationToken": t.installation_token.expose(), "nodeId": t.node_id, "appId": t.app_id,
                    "installationId": t.installation_id, "appSlug": t.app_slug, "expirationTime": t.expiration_time,
                    "actualScopeDown": t.actual_scope_down,
                }),
                || format!("{}\n", t.installation_token.expose()),
            );
        }
        Command::Installations { node_id: Some(node_id), .. } => {
            let list = client.installation_info(node_id).await?;
            print(json_out, json!({"installations": list}), || table(&list));
        }
        Command::Installations { node_id: None, max_results } => {
            let mut all = Vec::new();
            let mut next: Option<String> = None;
            loop {
                let page = client.list_installations(Some(*max_results), next.as_deref()).await?;
                all.extend(page.installations);
                match page.next_token {
                    Some(t) => next = Some(t),
                    None => break,
                }
            }
            print(json_out, json!({"installations": all}), || table(&all));
        }
        Command::Refresh => {
            let out = client.refresh().await?;
            print(json_out, out.clone(), || format!("{}\n", out["message"].as_str().unwrap_or("refreshed")));
        }
    }
    Ok(())
}

fn print(json_out: bool, value: Value, human: impl FnOnce() -> String) {
    let text = if json_out { format!("{value}\n") } else { human() };
    let _ = std::io::stdout().write_all(text.as_bytes());
}

fn table(list: &[appcreds_client::Installation]) -> String {
    let mut out = format!("{:<10} {:<14} {:<14} {:<30} {}\n", "APP", "INSTALLATION", "TYPE", "NAME", "NODE ID");
    for i in list {
        out +=
            &format!("{:<10} {:<14} {:<14} {:<30} {}\n", i.app_id, i.installation_id, i.target_type, i.name, i.node_id);
    }
    out
}

/// Masks the token in the job's log and writes the step outputs.
fn github_actions_outputs(t: &appcreds_client::InstallationToken) -> Result<(), ClientError> {
    println!("::add-mask::{}", t.installation_token.expose());
    let path = std::env::var("GITHUB_OUTPUT").map_err(|_| ClientError::Config("GITHUB_OUTPUT is not set".into()))?;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| ClientError::Config(format!("cannot write {path}: {e}")))?;
    let lines = format!(
        "token={}\ninstallation-id={}\napp-slug={}\nexpires-at={}\n",
        t.installation_token.expose(),
        t.installation_id.map(|i| i.to_string()).unwrap_or_default(),
        t.app_slug.clone().unwrap_or_default(),
        t.expiration_time
    );
    file.write_all(lines.as_bytes()).map_err(|e| ClientError::Config(format!("cannot write {path}: {e}")))
}
