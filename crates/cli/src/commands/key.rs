//! `appcreds key …`: import, rotate, retire and list the App keys in KMS.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use appcreds_cli::CliError;
use appcreds_cli::keys::{KeyManager, SigningRoles};
use appcreds_cli::keywrap::AppPrivateKey;
use appcreds_core::aws::app_table::DynamoAppStore;
use appcreds_core::domain::clock::{Clock, SystemClock};
use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use super::{Context, flag_or_output};
use crate::output::{self, Spinner, spin};

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
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

#[derive(Args, Debug)]
pub struct ImportArgs {
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
pub struct TableArgs {
    /// The App table (default: the stack's AppTableName output).
    #[arg(long, env = "APPCREDS_APP_TABLE", value_name = "TABLE")]
    app_table: Option<String>,
}

fn parse_client_id(s: &str) -> Result<String, String> {
    match appcreds_core::domain::jwt::client_id_problem(s) {
        None => Ok(s.to_string()),
        Some(problem) => Err(problem),
    }
}

/// Runs `appcreds key …`.
pub async fn run(ctx: &Context<'_>, command: &KeyCommand) -> Result<(), CliError> {
    match command {
        KeyCommand::Import(args) => import(ctx, args).await,
        KeyCommand::Rotate { import, grace_minutes, wait, schedule_deletion_days } => {
            rotate(ctx, import, *grace_minutes, *wait, *schedule_deletion_days).await
        }
        KeyCommand::Retire { app_id, schedule_deletion_days, early, table } => {
            let (manager, _, _) = key_manager(ctx, table, None).await?;
            let spinner = Spinner::start("starting");
            let progress = |step: &str| spinner.set(step);
            let retired = manager.retire(*app_id, *schedule_deletion_days, *early, &progress).await;
            drop(spinner);
            output::retired(ctx.json_out, &retired?);
            Ok(())
        }
        KeyCommand::List { table, all_keys: true } => {
            let (manager, _, _) = key_manager(ctx, table, None).await?;
            let keys = spin("reading KMS keys", manager.managed_keys()).await?;
            output::managed_keys(ctx.json_out, &keys);
            Ok(())
        }
        KeyCommand::List { table, all_keys: false } => {
            let (manager, _, _) = key_manager(ctx, table, None).await?;
            let apps = spin("reading Apps and keys", manager.list()).await?;
            output::apps(ctx.json_out, &apps);
            Ok(())
        }
    }
}

async fn import(ctx: &Context<'_>, args: &ImportArgs) -> Result<(), CliError> {
    let (pem, manager, roles) = prepare_import(ctx, args).await?;
    let spinner = Spinner::start("starting");
    let progress = |step: &str| spinner.set(step);
    let imported = manager.import(args.app_id, &pem, &roles, &progress).await;
    drop(spinner);
    output::imported(ctx.json_out, &imported?);
    delete_pem(args)
}

/// Imports the new key, switches the App to it and, with `wait`, retires the old key once the
/// grace period is over.
async fn rotate(
    ctx: &Context<'_>,
    args: &ImportArgs,
    grace_minutes: u32,
    wait: bool,
    schedule_deletion_days: Option<i32>,
) -> Result<(), CliError> {
    let (pem, manager, roles) = prepare_import(ctx, args).await?;
    let spinner = Spinner::start("starting");
    let progress = |step: &str| spinner.set(step);
    let grace = Duration::from_secs(u64::from(grace_minutes) * 60);
    let rotated = manager.rotate(args.app_id, &pem, &roles, grace, &progress).await;
    drop(spinner);
    let rotated = rotated?;
    output::rotated(ctx.json_out, &rotated, wait);
    delete_pem(args)?;
    if wait {
        let left = rotated.previous_usable_until_secs - SystemClock.now();
        let spinner =
            Spinner::start(&format!("grace period: the old key is usable until {}", rotated.previous_usable_until));
        tokio::time::sleep(Duration::from_secs(left.max(0) as u64)).await;
        let progress = |step: &str| spinner.set(step);
        let retired = manager.retire(rotated.app_id, schedule_deletion_days, false, &progress).await;
        drop(spinner);
        output::retired(ctx.json_out, &retired?);
    }
    Ok(())
}

/// For an import or a rotation: the PEM, read and checked, the key manager and the key policy's
/// roles with the stack's signing scope. The PEM and the flags are checked before any AWS call.
async fn prepare_import(
    ctx: &Context<'_>,
    args: &ImportArgs,
) -> Result<(AppPrivateKey, KeyManager, SigningRoles), CliError> {
    let pem = read_pem(&args.pem)?;
    let (manager, roles, outputs) = key_manager(ctx, &args.table, Some(&args.function_role_arns)).await?;
    let manager = manager.with_client_id(args.client_id.clone());
    let roles = roles.ok_or_else(|| CliError::Usage("no roles for the key policy".into()))?;
    // The key's scope must be the stack's: a key its functions may not use fails only later, when
    // they sign (the import's own proof signs as the operator).
    let scope = match (&args.key_scope, ctx.stack) {
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
    Ok((pem, manager, roles.with_scope(scope)?))
}

/// The key manager on the App table, (for imports) the roles for the key policy, from the flags
/// or else the stack's outputs, and those outputs (read once, only when a stack is named and
/// something is needed from it). Flags are checked before any AWS call.
async fn key_manager(
    ctx: &Context<'_>,
    table: &TableArgs,
    role_flags: Option<&[String]>,
) -> Result<(KeyManager, Option<SigningRoles>, BTreeMap<String, String>), CliError> {
    let mut roles = match role_flags {
        Some(flags) if !flags.is_empty() => Some(SigningRoles::new(flags.to_vec())?),
        _ => None,
    };
    let need_roles = role_flags.is_some() && roles.is_none();
    if ctx.stack.is_none() {
        if table.app_table.is_none() {
            return Err(CliError::Usage("no App table: give --stack NAME or --app-table TABLE".into()));
        }
        if need_roles {
            return Err(CliError::Usage(
                "the key policy needs the functions' roles: give --stack NAME or --function-role-arn ARN".into(),
            ));
        }
    }
    let config = ctx.aws_config().await?;
    // Read once: an import or rotation also needs the stack's SigningKeyScope.
    let outputs = if table.app_table.is_none() || need_roles || role_flags.is_some() {
        ctx.outputs(&config).await?
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
