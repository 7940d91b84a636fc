//! `appcreds rotation …`: the access-key rotator's targets, their status, and a run of the rotator
//! for one target now.

use std::collections::BTreeMap;

use appcreds_cli::CliError;
use appcreds_cli::rotation_targets::{self, PutInput, Targets};
use appcreds_client::{Client, Urls};
use clap::{Args, Subcommand};
use serde_json::json;

use super::{Context, flag_or_output};
use crate::output::{self, spin};

#[derive(Subcommand, Debug)]
pub enum RotationCommand {
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
pub struct RotationTableArgs {
    /// The rotation table (default: the stack's RotationTableName output).
    #[arg(long, env = "APPCREDS_ROTATION_TABLE", value_name = "TABLE")]
    rotation_table: Option<String>,
    /// The App table (default: the stack's AppTableName output).
    #[arg(long, env = "APPCREDS_APP_TABLE", value_name = "TABLE")]
    app_table: Option<String>,
}

/// Runs `appcreds rotation …`. Flags are checked before any AWS call.
pub async fn run(ctx: &Context<'_>, command: &RotationCommand) -> Result<(), CliError> {
    match command {
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
            tables,
        } => {
            let spec = rotation_targets::spec_of(&PutInput {
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
            })?;
            let targets = targets(ctx, tables).await?;
            let written = spin("writing the target", targets.put(&spec)).await?;
            output::target_written(ctx.json_out, written, &spec.user_name, spec.destinations.len());
        }
        RotationCommand::Get { user, tables } => {
            let targets = targets(ctx, tables).await?;
            let target = spin("reading the target", targets.get(user)).await?;
            output::target(ctx.json_out, &target);
        }
        RotationCommand::List { tables } | RotationCommand::Status { user: None, tables } => {
            let targets = targets(ctx, tables).await?;
            let now = unix_now();
            let all = spin("reading targets", targets.list()).await?;
            output::targets(ctx.json_out, &all, now);
        }
        RotationCommand::Status { user: Some(user), tables } => {
            let targets = targets(ctx, tables).await?;
            let now = unix_now();
            let target = spin("reading the target", targets.get(user)).await?;
            output::target_status(ctx.json_out, &target, now);
        }
        RotationCommand::Delete { user, force, tables } => {
            let targets = targets(ctx, tables).await?;
            spin("deleting the target", targets.delete(user, *force)).await?;
            output::target_deleted(ctx.json_out, user);
        }
        RotationCommand::Run { user, force, function } => return run_now(ctx, user, *force, function).await,
    }
    Ok(())
}

/// Invokes the rotator for `user`'s target; destinations still behind afterwards are a partial
/// failure.
async fn run_now(ctx: &Context<'_>, user: &str, force: bool, function: &Option<String>) -> Result<(), CliError> {
    let config = ctx.aws_config().await?;
    if function.is_none() && ctx.stack.is_none() {
        return Err(CliError::Usage("no rotator: give --stack NAME or --function NAME".into()));
    }
    let stack = if function.is_none() { ctx.outputs(&config).await? } else { BTreeMap::new() };
    let function = flag_or_output(function, &stack, "AccessKeyRotatorFunctionArn", "--function")?;
    let client = Client::from_config(&config, Urls::default())?;
    let report = spin("rotating", client.invoke(&function, &json!({"userName": user, "force": force}))).await?;
    let failed = report["destinations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["status"] != "written" && d["status"] != "up-to-date")
        .count();
    output::rotator_report(ctx.json_out, user, &report);
    if failed > 0 {
        return Err(CliError::Partial(format!(
            "{failed} destination(s) still hold the old key, which stays active; the next run retries them"
        )));
    }
    Ok(())
}

/// The rotation table and the App table, named by the flags, else by the stack's outputs.
async fn targets(ctx: &Context<'_>, tables: &RotationTableArgs) -> Result<Targets, CliError> {
    let config = ctx.aws_config().await?;
    let need_stack = tables.rotation_table.is_none() || tables.app_table.is_none();
    if need_stack && ctx.stack.is_none() {
        return Err(CliError::Usage(
            "no rotation table: give --stack NAME, or --rotation-table TABLE and --app-table TABLE".into(),
        ));
    }
    let stack = if need_stack { ctx.outputs(&config).await? } else { BTreeMap::new() };
    Ok(Targets::new(
        aws_sdk_dynamodb::Client::new(&config),
        &flag_or_output(&tables.rotation_table, &stack, "RotationTableName", "--rotation-table TABLE")?,
        &flag_or_output(&tables.app_table, &stack, "AppTableName", "--app-table TABLE")?,
    ))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
