//! `appcreds`: manage GitHub App keys in KMS, and call appcreds' functions (SigV4-signed) from a
//! shell or a GitHub Actions job.
//!
//! Exit codes: 0 success, 2 usage error, 3 not authorised (AWS credentials or IAM), 4 the request
//! was refused (invalid input, unknown App or installation, GitHub refused), 5 appcreds, AWS,
//! GitHub or the network failed, 6 throttled (retry later).

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use appcreds_cli::keys::{KeyManager, SigningRoles};
use appcreds_cli::keywrap::AppPrivateKey;
use appcreds_cli::{CliError, access, rotation};
use appcreds_client::{Client, ClientError, ScopeDown, Target, Urls, stack_outputs};
use appcreds_core::aws::app_table::DynamoAppStore;
use aws_config::SdkConfig;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use zeroize::Zeroizing;

#[derive(Parser, Debug)]
#[command(
    name = "appcreds",
    version,
    about = "GitHub App credentials from appcreds, whose App keys live only in AWS KMS",
    long_about = "Manages GitHub App keys in AWS KMS (`appcreds key ...`) and calls appcreds' Lambda \
                  Function URLs, signing each request with SigV4 (service `lambda`) using the standard \
                  AWS credential chain: environment, profile, SSO, web identity (GitHub OIDC), instance \
                  or container roles.\n\n\
                  Function URLs come from --*-url flags, else APPCREDS_*_URL variables, else the outputs \
                  of the stack named by --stack (AppTokenFunctionUrl, InstallationTokenFunctionUrl, \
                  GetInstallationFunctionUrl, RefreshCacheFunctionUrl).",
    after_help = "Examples:\n  appcreds --stack appcreds key import --app-id 123456 --pem app.private-key.pem --delete-pem\n  \
                  appcreds --stack appcreds app-token --app-id 123456\n  \
                  appcreds token --app-id 123456 --owner octo-org --repositories hello-world \
                  --permission contents=read\n  appcreds installations --node-id O_kgDOABCD\n\n\
                  In GitHub Actions (GITHUB_ACTIONS=true) `token` masks the token and writes token, \
                  installation-id, app-slug and expires-at to $GITHUB_OUTPUT.\n\n\
                  Exit codes: 0 ok, 2 usage, 3 not authorised, 4 refused, 5 failed, 6 throttled."
)]
struct Cli {
    /// How to print results.
    #[arg(long, value_enum, default_value_t = Output::Human, global = true)]
    output: Output,
    /// The appcreds CloudFormation stack: its outputs give the Function URLs, the App table and
    /// the functions' roles.
    #[arg(long, env = "APPCREDS_STACK", global = true, value_name = "NAME")]
    stack: Option<String>,
    #[command(flatten)]
    urls: UrlArgs,
    #[command(flatten)]
    oidc: OidcArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct OidcArgs {
    /// In GitHub Actions (with `permissions: id-token: write`), the audience of the OIDC token
    /// sent along for access rules that require its claims (default: the stack's
    /// GitHubOidcAudience output, with --stack).
    #[arg(long, global = true, env = "APPCREDS_OIDC_AUDIENCE", value_name = "AUD")]
    github_oidc_audience: Option<String>,
    /// Do not send a GitHub Actions OIDC token, even where one can be had.
    #[arg(long, global = true)]
    no_github_oidc: bool,
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
    /// The App keys in KMS: import, rotate, list (operators).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Access rules: who may get which credential (operators).
    #[command(subcommand)]
    Access(AccessCommand),
    /// IAM user access keys the access-key-rotator rotates into GitHub secrets (operators).
    #[command(subcommand)]
    Rotation(RotationCommand),
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
    /// Revoke an installation token at GitHub (DELETE /installation/token).
    ///
    /// The token is read from the variable named by --token-env, or from standard input; never
    /// from the command line, where the process list would show it.
    Revoke {
        /// Environment variable that holds the token (default: read it from standard input).
        #[arg(long, value_name = "VAR")]
        token_env: Option<String>,
        /// GitHub REST API base URL (GitHub Enterprise Server: https://HOST/api/v3).
        #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com", value_name = "URL")]
        github_api_url: String,
    },
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Import an App's private key into a new KMS key and register the App.
    ///
    /// The PEM (PKCS#1 as GitHub hands it out, or PKCS#8) must be an RSA-2048 key. It is checked
    /// before any AWS call, converted to PKCS#8 in memory, wrapped for KMS (RFC 5649 + RSA-OAEP-
    /// SHA-256) and imported; KMS then signs a challenge that must verify with the PEM's public
    /// key before the App table names the key. The key is never written anywhere.
    Import(ImportArgs),
    /// Replace an App's key: import a new PEM and switch the App to it atomically, keeping the
    /// old key usable for a grace period; then retire the old key (now with --wait, or later
    /// with `key retire`).
    ///
    /// First generate a new private key in the App's settings on GitHub (the old one stays valid
    /// there). During the grace period a function that IAM still refuses on the new key (a tag
    /// change can take up to five minutes to take effect) signs with the old one. Once the old
    /// key is retired, wait 10 minutes (JWTs signed with it expire), then delete it on GitHub.
    Rotate {
        #[command(flatten)]
        import: ImportArgs,
        /// How long the old key stays usable after the switch, in minutes.
        #[arg(long, value_name = "MINUTES", default_value_t = 15, value_parser = clap::value_parser!(u32).range(0..=1440))]
        grace_minutes: u32,
        /// Wait for the grace period to end, then retire the old key.
        #[arg(long)]
        wait: bool,
        /// With --wait: also schedule the old KMS key's deletion, after this many days (7..30).
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(i32).range(7..=30), requires = "wait")]
        schedule_deletion_days: Option<i32>,
    },
    /// End a rotation: tag the App's previous key Status=Inactive and drop it from the App table.
    Retire {
        /// The GitHub App's ID.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        app_id: i64,
        /// Also schedule the old KMS key's deletion, after this many days (7..30).
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(i32).range(7..=30))]
        schedule_deletion_days: Option<i32>,
        /// Retire it before its grace period ends (functions still refused on the new key fail).
        #[arg(long)]
        early: bool,
        #[command(flatten)]
        table: TableArgs,
    },
    /// Every App with its key ARN, key state and tags.
    List {
        #[command(flatten)]
        table: TableArgs,
        /// List every KMS key tagged as an appcreds App key instead, in use or not (Inactive,
        /// Failed or Importing keys to clean up).
        #[arg(long)]
        all_keys: bool,
    },
}

#[derive(Subcommand, Debug)]
enum AccessCommand {
    /// Write the rules of a YAML or JSON file (one rule, or a list). Every rule is checked first;
    /// any problem refuses the whole file and nothing is written. A rule that someone changed
    /// since it was read is refused.
    Put {
        /// The rules file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Write only over this version of the rule (0: the rule must be new).
        #[arg(long, value_name = "N")]
        expect_version: Option<u64>,
        #[command(flatten)]
        table: AccessTableArgs,
    },
    /// One rule, with its version.
    Get {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        table: AccessTableArgs,
    },
    /// Every rule.
    List {
        #[command(flatten)]
        table: AccessTableArgs,
    },
    /// Delete a rule.
    Delete {
        #[arg(long)]
        id: String,
        /// Delete only this version of the rule.
        #[arg(long, value_name = "N")]
        expect_version: Option<u64>,
        #[command(flatten)]
        table: AccessTableArgs,
    },
    /// Would the rules allow this request? Reads the access table and nothing else; exits 0 for
    /// allow and 4 for deny.
    Test {
        /// The caller's IAM ARN (e.g. arn:aws:sts::123456789012:assumed-role/ROLE/SESSION).
        #[arg(long, value_name = "ARN")]
        principal: String,
        /// The caller's GitHub Actions OIDC claims, as a JSON object.
        #[arg(long, value_name = "FILE")]
        claims: Option<PathBuf>,
        /// The request: {"operation": "installation-token", "appId": 1, "owner": "octo-org",
        /// "scopeDown": {…}}; operation app-token, read-installations or refresh with appId.
        #[arg(long, value_name = "JSON")]
        request: String,
        #[command(flatten)]
        table: AccessTableArgs,
    },
}

#[derive(Subcommand, Debug)]
enum RotationCommand {
    /// Add or change a target: an IAM user (under the rotator's IAM path), the App whose
    /// installations write its key, and where the key goes. Everything is checked first,
    /// the App included; nothing is written if anything is wrong. The target's state is kept.
    Put {
        /// The IAM user whose access key is rotated.
        #[arg(long, value_name = "NAME")]
        user: String,
        /// The GitHub App whose installation writes the secrets.
        #[arg(long)]
        app_id: i64,
        /// A repository's Actions secrets: owner/name (repeatable).
        #[arg(long, value_name = "OWNER/NAME")]
        repository: Vec<String>,
        /// An environment's secrets: owner/name:environment (repeatable).
        #[arg(long, value_name = "OWNER/NAME:ENV")]
        environment: Vec<String>,
        /// An organisation's Actions secrets: org:all, org:private or org:selected:repo,repo
        /// (repeatable).
        #[arg(long, value_name = "ORG:VISIBILITY[:REPOS]")]
        organization: Vec<String>,
        /// The secret that holds the access key ID.
        #[arg(long, value_name = "NAME")]
        key_id_secret: Option<String>,
        /// The secret that holds the secret access key.
        #[arg(long, value_name = "NAME")]
        secret_key_secret: Option<String>,
        /// Replace a key older than this.
        #[arg(long, default_value_t = 720)]
        max_age_hours: u32,
        /// Keep a replaced key (inactive) this long before deleting it.
        #[arg(long, default_value_t = 24)]
        grace_hours: u32,
        /// Also set the Actions variable AWS_REGION to this region in each destination (the App
        /// needs actions_variables / organization_actions_variables: write).
        #[arg(long, value_name = "REGION")]
        region: Option<String>,
        #[command(flatten)]
        tables: RotationTableArgs,
    },
    /// One target: what it asks for and what the rotator recorded.
    Get {
        #[arg(long, value_name = "NAME")]
        user: String,
        #[command(flatten)]
        tables: RotationTableArgs,
    },
    /// Every target.
    List {
        #[command(flatten)]
        tables: RotationTableArgs,
    },
    /// Delete a target (its user's keys and the secrets written stay as they are).
    Delete {
        #[arg(long, value_name = "NAME")]
        user: String,
        /// Delete it even in the middle of a rotation.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        tables: RotationTableArgs,
    },
    /// Each target's key age and destinations behind; with --user, each destination.
    Status {
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        #[command(flatten)]
        tables: RotationTableArgs,
    },
    /// Run the rotator for one target now (Lambda Invoke): write the destinations that are
    /// behind, or rotate a key that is due; --force rotates even a young key.
    Run {
        #[arg(long, value_name = "NAME")]
        user: String,
        #[arg(long)]
        force: bool,
        /// The access-key-rotator function (default: the stack's AccessKeyRotatorFunctionArn).
        #[arg(long, env = "APPCREDS_ROTATOR_FUNCTION", value_name = "NAME_OR_ARN")]
        function: Option<String>,
    },
}

#[derive(Args, Debug)]
struct RotationTableArgs {
    /// The rotation table (default: the stack's RotationTableName output).
    #[arg(long, env = "APPCREDS_ROTATION_TABLE", value_name = "TABLE")]
    rotation_table: Option<String>,
    /// The App table (default: the stack's AppTableName output).
    #[arg(long, env = "APPCREDS_APP_TABLE", value_name = "TABLE")]
    app_table: Option<String>,
}

#[derive(Args, Debug)]
struct AccessTableArgs {
    /// The access table (default: the stack's AccessTableName output).
    #[arg(long, env = "APPCREDS_ACCESS_TABLE", value_name = "TABLE")]
    access_table: Option<String>,
}

#[derive(Args, Debug)]
struct ImportArgs {
    /// The GitHub App's ID.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    app_id: i64,
    /// The App's private key, as downloaded from GitHub (PKCS#1 or PKCS#8 PEM).
    #[arg(long, value_name = "FILE")]
    pem: PathBuf,
    /// Delete the PEM file once the key is imported.
    #[arg(long)]
    delete_pem: bool,
    /// A role the functions run as, allowed to sign with the key (repeatable; default: the
    /// stack's FunctionRoleArns output).
    #[arg(long = "function-role-arn", value_name = "ARN", value_delimiter = ',', env = "APPCREDS_FUNCTION_ROLE_ARNS")]
    function_role_arns: Vec<String>,
    /// The stack's signing scope (its SigningKeyScope parameter): the key is tagged
    /// AppcredsScope=SCOPE, which that stack's functions require to sign (default: the stack's
    /// SigningKeyScope output; none without a stack).
    #[arg(long, env = "APPCREDS_KEY_SCOPE", value_name = "SCOPE")]
    key_scope: Option<String>,
    /// The App's client ID (Iv23li… or Iv1.…, on the App's settings page), written to the App
    /// table with the key: the App's JWTs then name it as their issuer, as GitHub recommends
    /// (without it, the App ID; a rotation without it keeps the one the table has).
    #[arg(long, value_name = "CLIENT_ID", value_parser = parse_client_id)]
    client_id: Option<String>,
    #[command(flatten)]
    table: TableArgs,
}

#[derive(Args, Debug)]
struct TableArgs {
    /// The App table (default: the stack's AppTableName output).
    #[arg(long, env = "APPCREDS_APP_TABLE", value_name = "TABLE")]
    app_table: Option<String>,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["node_id", "owner", "repository", "enterprise"])))]
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

fn parse_client_id(s: &str) -> Result<String, String> {
    match appcreds_core::domain::jwt::client_id_problem(s) {
        None => Ok(s.to_string()),
        Some(problem) => Err(problem),
    }
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
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("appcreds: {err}");
            if let CliError::Client(ClientError::Validation { fields, .. }) = &err {
                for f in fields {
                    eprintln!("  {}: {}", f.path, f.message);
                }
            }
            ExitCode::from(err.exit_code())
        }
    }
}

async fn run(cli: &Cli) -> Result<(), CliError> {
    let json_out = cli.output == Output::Json;
    match &cli.command {
        Command::Key(command) => key(cli, command, json_out).await,
        Command::Access(command) => access(cli, command, json_out).await,
        Command::Rotation(command) => rotation(cli, command, json_out).await,
        Command::Revoke { token_env, github_api_url } => {
            revoke(token_env.as_deref(), github_api_url, json_out).await.map_err(CliError::from)
        }
        _ => call(cli, json_out).await,
    }
}

/// The AWS configuration of the standard chain (read once per run).
async fn aws_config() -> SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The stack's outputs, when a stack is named.
async fn outputs(cli: &Cli, config: &SdkConfig) -> Result<BTreeMap<String, String>, CliError> {
    match &cli.stack {
        Some(stack) => {
            let cfn = aws_sdk_cloudformation::Client::new(config);
            Ok(spin("reading the stack's outputs", stack_outputs(&cfn, stack)).await?)
        }
        None => Ok(BTreeMap::new()),
    }
}

/// The value of a flag, else the stack's output `output`; a usage error naming both if neither.
fn flag_or_output(
    flag: &Option<String>,
    outputs: &BTreeMap<String, String>,
    output: &str,
    flag_usage: &str,
) -> Result<String, CliError> {
    flag.clone()
        .or_else(|| outputs.get(output).cloned())
        .ok_or_else(|| CliError::Usage(format!("the stack has no {output} output: give {flag_usage}")))
}

/// Calls a function through its Function URL.
async fn call(cli: &Cli, json_out: bool) -> Result<(), CliError> {
    let config = aws_config().await;
    let mut urls = Urls {
        app_token: cli.urls.app_token_url.clone(),
        installation_token: cli.urls.installation_token_url.clone(),
        get_installation: cli.urls.get_installation_url.clone(),
        refresh_cache: cli.urls.refresh_cache_url.clone(),
    }
    .or(Urls::from_env());
    let missing = match &cli.command {
        Command::AppToken { .. } => urls.app_token.is_none(),
        Command::Token(_) => urls.installation_token.is_none(),
        Command::Installations { .. } => urls.get_installation.is_none(),
        Command::Refresh => urls.refresh_cache.is_none(),
        Command::Key(_) | Command::Access(_) | Command::Rotation(_) | Command::Revoke { .. } => false,
    };
    let send_oidc = !cli.oidc.no_github_oidc && github_oidc_available();
    let need_audience = send_oidc && cli.oidc.github_oidc_audience.is_none();
    let stack = if missing || need_audience { outputs(cli, &config).await? } else { BTreeMap::new() };
    if missing {
        urls = urls.or(Urls::from_stack_outputs(&stack));
    }
    let mut client = Client::from_config(&config, urls)?;
    if send_oidc {
        match cli.oidc.github_oidc_audience.as_ref().or(stack.get("GitHubOidcAudience")) {
            // A token for STS is the one every job hands to AWS: it must not open appcreds too.
            Some(audience) if appcreds_core::config::is_sts_audience(audience) => {
                return Err(CliError::Usage(
                    "the GitHub OIDC audience must be the stack's own (its GitHubOidcAudience output), not sts.amazonaws.com"
                        .into(),
                ));
            }
            Some(audience) => {
                let token = spin("getting the job's OIDC token", github_oidc_token(audience)).await?;
                client = client.with_github_oidc_token(token);
            }
            None => eprintln!(
                "appcreds: sending no GitHub OIDC token: give its audience (APPCREDS_OIDC_AUDIENCE, or --stack for the stack's GitHubOidcAudience)"
            ),
        }
    }
    match &cli.command {
        Command::AppToken { app_id } => {
            let t = spin("asking for an App token", client.app_token(*app_id)).await?;
            if std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true") {
                // Before anything prints it: the job's log shows *** instead.
                println!("::add-mask::{}", t.app_token.expose());
            }
            print(
                json_out,
                json!({"appId": t.app_id, "appToken": t.app_token.expose(), "expirationTime": t.expiration_time}),
                || format!("{}\n", t.app_token.expose()),
            );
        }
        Command::Token(args) => {
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
            let t = spin(
                "asking for an installation token",
                client.installation_token(args.app_id, &target, scope.as_ref()),
            )
            .await?;
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
            let list = spin("reading installations", client.installation_info(node_id)).await?;
            print(json_out, json!({"installations": list}), || table(&list));
        }
        Command::Installations { node_id: None, max_results } => {
            let all = spin("reading installations", async {
                let mut all = Vec::new();
                let mut next: Option<String> = None;
                loop {
                    let page = client.list_installations(Some(*max_results), next.as_deref()).await?;
                    all.extend(page.installations);
                    match page.next_token {
                        Some(t) => next = Some(t),
                        None => break Ok::<_, ClientError>(all),
                    }
                }
            })
            .await?;
            print(json_out, json!({"installations": all}), || table(&all));
        }
        Command::Refresh => {
            let out = spin("syncing installations with GitHub", client.refresh()).await?;
            print(json_out, serde_json::to_value(&out).unwrap_or_default(), || format!("{}\n", out.message));
        }
        Command::Key(_) | Command::Access(_) | Command::Rotation(_) | Command::Revoke { .. } => {}
    }
    Ok(())
}

/// Prints a retirement.
fn print_retired(json_out: bool, retired: &appcreds_cli::keys::Retired) {
    print(
        json_out,
        json!({
            "appId": retired.app_id, "retiredKmsKeyArn": retired.key_arn, "replacedBy": retired.replaced_by,
            "deletionDate": retired.deletion,
        }),
        || {
            let deletion = retired.deletion.as_ref().map(|d| format!(", deleted by KMS on {d}")).unwrap_or_default();
            format!(
                "App {}'s previous key {} is tagged Status=Inactive{deletion}.\n\
                 Delete the old private key in the App's settings on GitHub once 10 minutes have passed.\n",
                retired.app_id, retired.key_arn
            )
        },
    );
}

/// `appcreds key ...`.
async fn key(cli: &Cli, command: &KeyCommand, json_out: bool) -> Result<(), CliError> {
    let args = match command {
        KeyCommand::List { table, all_keys: true } => {
            let (manager, _, _) = key_manager(cli, table, None).await?;
            let keys = spin("reading KMS keys", manager.managed_keys()).await?;
            print(json_out, json!({"keys": keys}), || {
                let mut out =
                    format!("{:<10} {:<10} {:<16} {:<7} {}\n", "APP", "STATUS", "KEY STATE", "IN USE", "KEY ARN");
                for key in &keys {
                    let tag = |name: &str| key.tags.get(name).map(String::as_str).unwrap_or("-").to_string();
                    out += &format!(
                        "{:<10} {:<10} {:<16} {:<7} {}\n",
                        tag("AppId"),
                        tag("Status"),
                        key.key_state,
                        if key.in_use { "yes" } else { "no" },
                        key.key_arn
                    );
                }
                out
            });
            return Ok(());
        }
        KeyCommand::List { table, all_keys: false } => {
            let (manager, _, _) = key_manager(cli, table, None).await?;
            let apps = spin("reading Apps and keys", manager.list()).await?;
            print(json_out, json!({"apps": apps}), || {
                let mut out = format!("{:<10} {:<16} {:<9} {}\n", "APP", "KEY STATE", "STATUS", "KEY ARN");
                for app in &apps {
                    out += &format!(
                        "{:<10} {:<16} {:<9} {}{}\n",
                        app.app_id,
                        app.key_state.as_deref().unwrap_or("-"),
                        app.tags.get("Status").map(String::as_str).unwrap_or("-"),
                        app.kms_key_arn.as_deref().unwrap_or("(no key)"),
                        app.error.as_ref().map(|e| format!("  ({e})")).unwrap_or_default(),
                    );
                }
                out
            });
            return Ok(());
        }
        KeyCommand::Retire { app_id, schedule_deletion_days, early, table } => {
            let (manager, _, _) = key_manager(cli, table, None).await?;
            let spinner = Spinner::start("starting");
            let progress = |step: &str| spinner.set(step);
            let retired = manager.retire(*app_id, *schedule_deletion_days, *early, &progress).await;
            drop(spinner);
            print_retired(json_out, &retired?);
            return Ok(());
        }
        KeyCommand::Import(args) | KeyCommand::Rotate { import: args, .. } => args,
    };
    // The PEM and the flags are checked before any AWS call.
    let pem = read_pem(&args.pem)?;
    let (manager, roles, outputs) = key_manager(cli, &args.table, Some(&args.function_role_arns)).await?;
    let manager = manager.with_client_id(args.client_id.clone());
    let roles = roles.ok_or_else(|| CliError::Usage("no roles for the key policy".into()))?;
    // The key's scope must be the stack's: a key its functions may not use fails only later, when
    // they sign (the import's own proof signs as the operator).
    let scope = match (&args.key_scope, &cli.stack) {
        (given, Some(_)) => {
            let stack_scope = outputs.get("SigningKeyScope").cloned();
            if let Some(given) = given
                && Some(given) != stack_scope.as_ref()
            {
                return Err(CliError::Usage(format!(
                    "--key-scope {given:?} is not the stack's SigningKeyScope ({}); its functions could not sign with the key",
                    stack_scope.as_deref().unwrap_or("none")
                )));
            }
            stack_scope
        }
        (given, None) => given.clone(),
    };
    let roles = roles.with_scope(scope)?;
    let spinner = Spinner::start("starting");
    let progress = |step: &str| spinner.set(step);
    if let KeyCommand::Rotate { grace_minutes, wait, schedule_deletion_days, .. } = command {
        let grace = std::time::Duration::from_secs(u64::from(*grace_minutes) * 60);
        let rotated = manager.rotate(args.app_id, &pem, &roles, grace, &progress).await;
        drop(spinner);
        let rotated = rotated?;
        print(
            json_out,
            json!({
                "appId": rotated.app_id, "kmsKeyArn": rotated.key_arn, "previousKmsKeyArn": rotated.previous_key_arn,
                "previousKeyUsableUntil": rotated.previous_usable_until, "verified": true,
            }),
            || {
                format!(
                    "App {} now signs with {}\nThe old key {} stays usable until {} (the grace period).\n{}",
                    rotated.app_id,
                    rotated.key_arn,
                    rotated.previous_key_arn,
                    rotated.previous_usable_until,
                    if *wait {
                        "Waiting for it to end, then retiring the old key.\n".to_string()
                    } else {
                        format!("Then retire it: appcreds key retire --app-id {}\n", rotated.app_id)
                    }
                )
            },
        );
        delete_pem(args)?;
        if *wait {
            let left = rotated.previous_usable_until_secs
                - appcreds_core::domain::clock::Clock::now(&appcreds_core::domain::clock::SystemClock);
            let spinner =
                Spinner::start(&format!("grace period: the old key is usable until {}", rotated.previous_usable_until));
            tokio::time::sleep(std::time::Duration::from_secs(left.max(0) as u64)).await;
            let progress = |step: &str| spinner.set(step);
            let retired = manager.retire(rotated.app_id, *schedule_deletion_days, false, &progress).await;
            drop(spinner);
            print_retired(json_out, &retired?);
        }
        return Ok(());
    } else {
        let imported = manager.import(args.app_id, &pem, &roles, &progress).await;
        drop(spinner);
        let imported = imported?;
        print(json_out, json!({"appId": imported.app_id, "kmsKeyArn": imported.key_arn, "verified": true}), || {
            format!(
                "App {} now signs with {}\n(KMS signed a challenge that verified with the PEM's public key.)\n",
                imported.app_id, imported.key_arn
            )
        });
    }
    delete_pem(args)
}

async fn access(cli: &Cli, command: &AccessCommand, json_out: bool) -> Result<(), CliError> {
    let table = match command {
        AccessCommand::Put { table, .. }
        | AccessCommand::Get { table, .. }
        | AccessCommand::List { table }
        | AccessCommand::Delete { table, .. }
        | AccessCommand::Test { table, .. } => table,
    };
    // Files and flags are checked before any AWS call.
    let documents = match command {
        AccessCommand::Put { file, .. } => access::read_rules(file)?,
        _ => Vec::new(),
    };
    let (claims, request) = match command {
        AccessCommand::Test { claims, request, .. } => (
            claims.as_deref().map(access::read_claims).transpose()?,
            Some(
                serde_json::from_str::<Value>(request)
                    .map_err(|e| CliError::Usage(format!("--request: not JSON: {e}")))?,
            ),
        ),
        _ => (None, None),
    };
    if cli.stack.is_none() && table.access_table.is_none() {
        return Err(CliError::Usage("no access table: give --stack NAME or --access-table TABLE".into()));
    }
    let config = aws_config().await;
    let stack = if table.access_table.is_none() { outputs(cli, &config).await? } else { BTreeMap::new() };
    let table_name = flag_or_output(&table.access_table, &stack, "AccessTableName", "--access-table TABLE")?;
    let rules = access::Rules::new(aws_sdk_dynamodb::Client::new(&config), &table_name);
    match command {
        AccessCommand::Put { expect_version, .. } => {
            let written = spin("writing rules", rules.put(&documents, *expect_version)).await?;
            print(json_out, json!({"written": written}), || {
                written.iter().map(|w| format!("rule {} is at version {}\n", w["id"], w["version"])).collect()
            });
        }
        AccessCommand::Get { id, .. } => {
            let rule = spin("reading the rule", rules.get(id)).await?;
            print(json_out, rule.clone(), || {
                format!(
                    "# version {}\n{}",
                    rule["version"],
                    serde_yaml_ng::to_string(&rule["rule"]).unwrap_or_default()
                )
            });
        }
        AccessCommand::List { .. } => {
            let all = spin("reading rules", rules.list()).await?;
            print(json_out, json!({"rules": all}), || {
                let mut out = format!("{:<32} {:<8} {:<40} {}\n", "RULE", "VERSION", "OPERATIONS", "DESCRIPTION");
                for r in &all {
                    let ops: Vec<&str> =
                        r["rule"]["operations"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                    out += &format!(
                        "{:<32} {:<8} {:<40} {}\n",
                        r["rule"]["id"].as_str().unwrap_or("-"),
                        r["version"],
                        ops.join(","),
                        r["rule"]["description"].as_str().unwrap_or("")
                    );
                }
                out
            });
        }
        AccessCommand::Delete { id, expect_version, .. } => {
            spin("deleting the rule", rules.delete(id, *expect_version)).await?;
            print(json_out, json!({"deleted": id}), || format!("rule {id:?} deleted\n"));
        }
        AccessCommand::Test { principal, .. } => {
            let request = request.unwrap_or_default();
            let (decision, ignored) = spin("reading rules", rules.test(principal, claims.as_ref(), &request)).await?;
            for problem in &ignored {
                eprintln!("appcreds: warning: grants nothing, as the functions read it: {problem}");
            }
            match decision {
                access::Decision::Allow { rule, scope } => {
                    print(json_out, json!({"decision": "allow", "rule": rule, "scope": scope}), || match &scope {
                        Some(scope) => format!("allow: rule {rule:?}, minting with scope {scope}\n"),
                        None => format!("allow: rule {rule:?}\n"),
                    })
                }
                access::Decision::Deny { why } => {
                    print(json_out, json!({"decision": "deny", "why": why}), || format!("deny: {why}\n"));
                    return Err(CliError::Denied);
                }
            }
        }
    }
    Ok(())
}

async fn rotation(cli: &Cli, command: &RotationCommand, json_out: bool) -> Result<(), CliError> {
    // Flags are checked before any AWS call.
    let spec = match command {
        RotationCommand::Put {
            user,
            app_id,
            repository,
            environment,
            organization,
            key_id_secret,
            secret_key_secret,
            max_age_hours,
            grace_hours,
            region,
            ..
        } => Some(rotation::spec_of(&rotation::PutInput {
            user_name: user.clone(),
            app_id: *app_id,
            repositories: repository.clone(),
            environments: environment.clone(),
            organizations: organization.clone(),
            access_key_id_name: key_id_secret.clone(),
            secret_access_key_name: secret_key_secret.clone(),
            max_age_hours: *max_age_hours,
            grace_hours: *grace_hours,
            region: region.clone(),
        })?),
        _ => None,
    };
    let config = aws_config().await;
    if let RotationCommand::Run { user, force, function } = command {
        if function.is_none() && cli.stack.is_none() {
            return Err(CliError::Usage("no rotator: give --stack NAME or --function NAME".into()));
        }
        let stack = if function.is_none() { outputs(cli, &config).await? } else { BTreeMap::new() };
        let function = flag_or_output(function, &stack, "AccessKeyRotatorFunctionArn", "--function")?;
        let client = Client::from_config(&config, Urls::default())?;
        let report = spin("rotating", client.invoke(&function, &json!({"userName": user, "force": force}))).await?;
        let failed = report["destinations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["status"] != "written" && d["status"] != "up-to-date")
            .count();
        print(json_out, report.clone(), || {
            let mut out = format!(
                "{}: {} (key {})\n",
                user,
                report["outcome"].as_str().unwrap_or("-"),
                report["currentKeyId"].as_str().unwrap_or("-")
            );
            for d in report["destinations"].as_array().into_iter().flatten() {
                out += &format!(
                    "  {:<48} {:<14} {}\n",
                    d["destination"].as_str().unwrap_or("-"),
                    d["status"].as_str().unwrap_or("-"),
                    d["error"].as_str().unwrap_or("")
                );
            }
            out
        });
        if failed > 0 {
            return Err(CliError::Partial(format!(
                "{failed} destination(s) still hold the old key, which stays active; the next run retries them"
            )));
        }
        return Ok(());
    }
    let tables = match command {
        RotationCommand::Put { tables, .. }
        | RotationCommand::Get { tables, .. }
        | RotationCommand::List { tables }
        | RotationCommand::Delete { tables, .. }
        | RotationCommand::Status { tables, .. } => tables,
        RotationCommand::Run { .. } => unreachable!("handled above"),
    };
    let need_stack = tables.rotation_table.is_none() || tables.app_table.is_none();
    if need_stack && cli.stack.is_none() {
        return Err(CliError::Usage(
            "no rotation table: give --stack NAME, or --rotation-table TABLE and --app-table TABLE".into(),
        ));
    }
    let stack = if need_stack { outputs(cli, &config).await? } else { BTreeMap::new() };
    let targets = rotation::Targets::new(
        aws_sdk_dynamodb::Client::new(&config),
        &flag_or_output(&tables.rotation_table, &stack, "RotationTableName", "--rotation-table TABLE")?,
        &flag_or_output(&tables.app_table, &stack, "AppTableName", "--app-table TABLE")?,
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    match command {
        RotationCommand::Put { .. } => {
            let spec = spec.ok_or_else(|| CliError::Usage("no target".into()))?;
            let written = spin("writing the target", targets.put(&spec)).await?;
            print(json_out, written, || {
                format!(
                    "target {} written: {} destination(s); the next rotator run (or `appcreds rotation run --user {}`) acts on it\n",
                    spec.user_name,
                    spec.destinations.len(),
                    spec.user_name
                )
            });
        }
        RotationCommand::Get { user, .. } => {
            let target = spin("reading the target", targets.get(user)).await?;
            print(json_out, target.clone(), || serde_yaml_ng::to_string(&target).unwrap_or_default());
        }
        RotationCommand::List { .. } | RotationCommand::Status { user: None, .. } => {
            let all = spin("reading targets", targets.list()).await?;
            print(json_out, json!({"targets": all}), || rotation::status_table(&all, now));
        }
        RotationCommand::Status { user: Some(user), .. } => {
            let target = spin("reading the target", targets.get(user)).await?;
            print(json_out, target.clone(), || {
                rotation::status_table(std::slice::from_ref(&target), now)
                    + "\n"
                    + &rotation::destinations_table(&target)
            });
        }
        RotationCommand::Delete { user, force, .. } => {
            spin("deleting the target", targets.delete(user, *force)).await?;
            print(json_out, json!({"deleted": user}), || {
                format!("target {user:?} deleted (its keys and secrets are untouched)\n")
            });
        }
        RotationCommand::Run { .. } => {}
    }
    Ok(())
}

/// The key manager on the App table, (for imports) the roles for the key policy, from the flags
/// or else the stack's outputs, and those outputs (read once, only when a stack is named and
/// something is needed from it). Flags are checked before any AWS call.
async fn key_manager(
    cli: &Cli,
    table: &TableArgs,
    role_flags: Option<&[String]>,
) -> Result<(KeyManager, Option<SigningRoles>, BTreeMap<String, String>), CliError> {
    let mut roles = match role_flags {
        Some(flags) if !flags.is_empty() => Some(SigningRoles::new(flags.to_vec())?),
        _ => None,
    };
    let need_roles = role_flags.is_some() && roles.is_none();
    if cli.stack.is_none() {
        if table.app_table.is_none() {
            return Err(CliError::Usage("no App table: give --stack NAME or --app-table TABLE".into()));
        }
        if need_roles {
            return Err(CliError::Usage(
                "the key policy needs the functions' roles: give --stack NAME or --function-role-arn ARN".into(),
            ));
        }
    }
    let config = aws_config().await;
    // Read once: an import or rotation also needs the stack's SigningKeyScope.
    let outputs = if table.app_table.is_none() || need_roles || role_flags.is_some() {
        outputs(cli, &config).await?
    } else {
        BTreeMap::new()
    };
    let app_table = flag_or_output(&table.app_table, &outputs, "AppTableName", "--app-table TABLE")?;
    if need_roles {
        let listed = outputs.get("FunctionRoleArns").map(|r| r.split(',').map(str::to_string).collect());
        roles = Some(SigningRoles::new(listed.unwrap_or_default())?);
    }
    let apps = DynamoAppStore::new(aws_sdk_dynamodb::Client::new(&config), app_table);
    Ok((KeyManager::new(aws_sdk_kms::Client::new(&config), apps), roles, outputs))
}

/// Reads and checks a PEM. The text is read into one buffer of its size (no reallocation leaves
/// copies behind) and zeroed once parsed.
fn read_pem(path: &Path) -> Result<AppPrivateKey, CliError> {
    /// A GitHub App key PEM is about 1.7 KB.
    const MAX_PEM_BYTES: u64 = 64 * 1024;
    let cannot = |e: std::io::Error| CliError::Usage(format!("--pem: cannot read {}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    let size = file.metadata().map_err(cannot)?.len();
    if size > MAX_PEM_BYTES {
        return Err(CliError::Usage(format!("--pem: {} is {size} bytes, too large for a key", path.display())));
    }
    let mut text = Zeroizing::new(String::with_capacity(size as usize + 1));
    file.read_to_string(&mut text).map_err(cannot)?;
    AppPrivateKey::from_pem(&text)
}

fn delete_pem(args: &ImportArgs) -> Result<(), CliError> {
    if !args.delete_pem {
        return Ok(());
    }
    std::fs::remove_file(&args.pem).map_err(|e| {
        CliError::Partial(format!("the key was imported, but deleting {} failed: {e}", args.pem.display()))
    })?;
    eprintln!("appcreds: deleted {}", args.pem.display());
    Ok(())
}

/// A spinner on standard error while something slow runs (only on a terminal).
struct Spinner(ProgressBar);

impl Spinner {
    fn start(message: &str) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if std::io::stderr().is_terminal() {
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}…").unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
        } else {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_message(message.to_string());
        Spinner(bar)
    }

    fn set(&self, message: &str) {
        self.0.set_message(message.to_string());
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Runs `work` with a spinner showing `message`.
async fn spin<T>(message: &str, work: impl Future<Output = T>) -> T {
    let _spinner = Spinner::start(message);
    work.await
}

/// Revokes the token at GitHub. A token GitHub no longer accepts (already revoked or expired) is
/// reported as refused (exit 4).
async fn revoke(token_env: Option<&str>, api: &str, json_out: bool) -> Result<(), ClientError> {
    let token = Zeroizing::new(match token_env {
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
    let url = format!("{}/installation/token", api.trim_end_matches('/'));
    let resp = spin(
        "revoking the token",
        reqwest::Client::new()
            .delete(&url)
            .bearer_auth(token)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .header("user-agent", concat!("appcreds/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .send(),
    )
    .await
    .map_err(|e| ClientError::Transport { url: url.clone(), message: e.to_string() })?;
    match resp.status().as_u16() {
        204 => {
            print(json_out, json!({"revoked": true}), || "revoked\n".to_string());
            Ok(())
        }
        401 => Err(ClientError::ClientSide("GitHub does not accept this token (already revoked or expired)".into())),
        code => Err(ClientError::ServerSide(format!("GitHub answered HTTP {code} to the revocation"))),
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
async fn github_oidc_token(audience: &str) -> Result<appcreds_client::Token, CliError> {
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
    Ok(appcreds_client::Token::new(token))
}

fn print(json_out: bool, value: Value, human: impl FnOnce() -> String) {
    let text = if json_out { format!("{value}\n") } else { human() };
    let _ = std::io::stdout().write_all(text.as_bytes());
}

fn table(list: &[appcreds_client::InstallationRecord]) -> String {
    let mut out = format!("{:<10} {:<14} {:<14} {:<30} {}\n", "APP", "INSTALLATION", "TYPE", "NAME", "NODE ID");
    for i in list {
        out +=
            &format!("{:<10} {:<14} {:<14} {:<30} {}\n", i.app_id, i.installation_id, i.target_type, i.name, i.node_id);
    }
    out
}

/// Masks the token in the job's log and writes the step outputs.
fn github_actions_outputs(t: &appcreds_client::InstallationTokenResponse) -> Result<(), CliError> {
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
