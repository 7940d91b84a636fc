//! `appcreds exec [token options] -- CMD ARGS…`: mints an installation token just in time and
//! runs a command with it in `GH_TOKEN` and `GITHUB_TOKEN`. The token is not printed.

use std::ffi::OsString;
use std::process::Command;

use appcreds_cli::CliError;
use clap::Args;

use super::Context;
use super::call::{self, OidcArgs, TokenArgs, UrlArgs};

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    token: TokenArgs,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// Mints the token, then becomes the command (Unix: `exec`, so its exit status and the signals
/// sent to it are its own); elsewhere, runs it and exits with its exit code. Returns only on a
/// failure before the command runs.
pub async fn run(ctx: &Context<'_>, urls: &UrlArgs, oidc: &OidcArgs, args: &ExecArgs) -> Result<(), CliError> {
    let (program, rest) =
        args.command.split_first().ok_or_else(|| CliError::Usage("no command to run after --".into()))?;
    let client = call::connect(ctx, urls, oidc, |u| u.installation_token.is_none()).await?;
    let t = call::installation_token(&client, &args.token).await?;
    let token = t.installation_token.expose();
    if std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true") {
        // The runner reads this line and hides the token wherever the command prints it. On
        // standard error, which the runner reads for workflow commands too: standard output is
        // the command's, and may be captured ($(…), a pipe, GITHUB_OUTPUT) where no mask applies.
        eprintln!("::add-mask::{token}");
        std::io::Write::flush(&mut std::io::stderr()).map_err(|e| CliError::Usage(format!("cannot write: {e}")))?;
    }
    let mut command = Command::new(program);
    command.args(rest).env("GH_TOKEN", token).env("GITHUB_TOKEN", token);
    let cannot = |e: std::io::Error| CliError::Usage(format!("cannot run {}: {e}", program.to_string_lossy()));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        Err(cannot(command.exec()))
    }
    #[cfg(not(unix))]
    {
        let status = command.status().map_err(cannot)?;
        std::process::exit(status.code().unwrap_or(1));
    }
}
