//! `appcreds access …`: write, read, list and delete access rules, and test a request against them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use appcreds_cli::CliError;
use appcreds_cli::access_rules::{self, Decision, Rules};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::{Context, flag_or_output};
use crate::output::{self, spin};

#[derive(Subcommand, Debug)]
pub enum AccessCommand {
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

#[derive(Args, Debug)]
pub struct AccessTableArgs {
    /// The access table (default: the stack's AccessTableName output).
    #[arg(long, env = "APPCREDS_ACCESS_TABLE", value_name = "TABLE")]
    access_table: Option<String>,
}

/// Runs `appcreds access …`. Files and flags are checked before any AWS call.
pub async fn run(ctx: &Context<'_>, command: &AccessCommand) -> Result<(), CliError> {
    match command {
        AccessCommand::Put { file, expect_version, table } => {
            let documents = access_rules::read_rules(file)?;
            let rules = rules(ctx, table).await?;
            let written = spin("writing rules", rules.put(&documents, *expect_version)).await?;
            output::rules_written(ctx.json_out, &written);
        }
        AccessCommand::Get { id, table } => {
            let rules = rules(ctx, table).await?;
            let rule = spin("reading the rule", rules.get(id)).await?;
            output::rule(ctx.json_out, &rule);
        }
        AccessCommand::List { table } => {
            let rules = rules(ctx, table).await?;
            let all = spin("reading rules", rules.list()).await?;
            output::rules(ctx.json_out, &all);
        }
        AccessCommand::Delete { id, expect_version, table } => {
            let rules = rules(ctx, table).await?;
            spin("deleting the rule", rules.delete(id, *expect_version)).await?;
            output::rule_deleted(ctx.json_out, id);
        }
        AccessCommand::Test { principal, claims, request, table } => {
            let claims = claims.as_deref().map(access_rules::read_claims).transpose()?;
            let request = serde_json::from_str::<Value>(request)
                .map_err(|e| CliError::Usage(format!("--request: not JSON: {e}")))?;
            let rules = rules(ctx, table).await?;
            let (decision, ignored) = spin("reading rules", rules.test(principal, claims.as_ref(), &request)).await?;
            for problem in &ignored {
                eprintln!("appcreds: warning: grants nothing, as the functions read it: {problem}");
            }
            match decision {
                Decision::Allow { rule, scope } => output::allowed(ctx.json_out, &rule, &scope),
                Decision::Deny { why } => {
                    output::denied(ctx.json_out, &why);
                    return Err(CliError::Denied);
                }
            }
        }
    }
    Ok(())
}

/// The access table named by the flag, else by the stack's outputs.
async fn rules(ctx: &Context<'_>, table: &AccessTableArgs) -> Result<Rules, CliError> {
    if ctx.stack.is_none() && table.access_table.is_none() {
        return Err(CliError::Usage("no access table: give --stack NAME or --access-table TABLE".into()));
    }
    let config = ctx.aws_config().await?;
    let stack = if table.access_table.is_none() { ctx.outputs(&config).await? } else { BTreeMap::new() };
    let table_name = flag_or_output(&table.access_table, &stack, "AccessTableName", "--access-table TABLE")?;
    Ok(Rules::new(aws_sdk_dynamodb::Client::new(&config), &table_name))
}
