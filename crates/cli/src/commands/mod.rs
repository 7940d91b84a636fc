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
use appcreds_client::stack_outputs;
use aws_config::SdkConfig;

use crate::output::spin;

/// What every command is given besides its own flags.
pub struct Context<'a> {
    /// The stack named by --stack, whose outputs stand in for flags not given.
    pub stack: Option<&'a str>,
    /// `--output json`.
    pub json_out: bool,
}

impl Context<'_> {
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

/// The AWS configuration of the standard chain (read once per run).
pub async fn aws_config() -> SdkConfig {
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
