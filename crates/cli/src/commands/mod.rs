//! The commands of `appcreds`, a module per group: each holds its clap arguments and runs them.
//! What they print is in [`crate::output`]; the work itself in the library (`appcreds_cli`) and
//! the client (`appcreds_client`).

pub mod access;
pub mod call;
pub mod exec;
pub mod git_credential;
pub mod key;
pub mod revoke;
pub mod rotation;

use std::collections::BTreeMap;

use appcreds_cli::CliError;
use appcreds_client::github_actions::ActionsRole;
use appcreds_client::stack_outputs;
use aws_config::SdkConfig;
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::output::spin;

/// What every command is given besides its own flags.
pub struct Context<'a> {
    /// The stack named by --stack, whose outputs stand in for flags not given.
    pub stack: Option<&'a str>,
    /// `--role-arn`: the role whose sessions, assumed with the job's OIDC token, sign every AWS call.
    pub role_arn: Option<&'a str>,
    /// `--output json`.
    pub json_out: bool,
}

impl Context<'_> {
    /// The AWS configuration of the standard chain (read once per run); with `--role-arn`, its
    /// credentials are the role's sessions instead, which the SDK clients' identity cache (and the
    /// appcreds client's) renew before they expire.
    pub async fn aws_config(&self) -> Result<SdkConfig, CliError> {
        let config = aws_config().await;
        // An empty ARN is no role: `${{ vars.ROLE }}` is empty where the variable is not set.
        let Some(role_arn) = self.role_arn.filter(|arn| !arn.is_empty()) else { return Ok(config) };
        if !role_arn.starts_with("arn:") || role_arn.split(':').count() < 6 {
            return Err(CliError::Usage(format!(
                "--role-arn: {role_arn:?} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
            )));
        }
        // Without `id-token: write`, this fails now, before anything is sent anywhere.
        let role = ActionsRole::from_env(&config, role_arn)?;
        Ok(config.into_builder().credentials_provider(SharedCredentialsProvider::new(role)).build())
    }

    /// The stack's outputs, when a stack is named.
    pub async fn outputs(&self, config: &SdkConfig) -> Result<BTreeMap<String, String>, CliError> {
        match self.stack {
            Some(stack) => {
                let cfn = aws_sdk_cloudformation::Client::new(config);
                Ok(spin("reading the stack's outputs", stack_outputs(&cfn, stack)).await?)
            }
            None => Ok(BTreeMap::new()),
        }
    }
}

/// The AWS configuration of the standard chain, `--role-arn` aside: [`Context::aws_config`].
async fn aws_config() -> SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The value of a flag, else the stack's output `output`; a usage error naming both if neither.
pub fn flag_or_output(
    flag: &Option<String>,
    outputs: &BTreeMap<String, String>,
    output: &str,
    flag_usage: &str,
) -> Result<String, CliError> {
    flag.clone()
        .or_else(|| outputs.get(output).cloned())
        .ok_or_else(|| CliError::Usage(format!("the stack has no {output} output: give {flag_usage}")))
}
