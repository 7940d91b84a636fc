//! `appcreds exec [token options] -- CMD ARGS…`: mints an installation token just in time, runs a
//! command with it in `GH_TOKEN` and `GITHUB_TOKEN`, and revokes it once the command has ended.
//! The token is not printed.

use std::ffi::OsString;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use appcreds_cli::CliError;
use appcreds_client::ClientError;
use clap::Args;
use tokio::process::{Child, Command};

use super::Context;
use super::call::{self, OidcArgs, TokenArgs, UrlArgs};
use super::revoke::revoke_token;

/// How long GitHub has to answer the revocation once the command has ended.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    token: TokenArgs,
    /// Leave the token valid once the command has ended (until it expires, within the hour). By
    /// default appcreds revokes it then.
    #[arg(long)]
    keep_token: bool,
    /// GitHub REST API base URL, where the token is revoked (GitHub Enterprise Server:
    /// https://HOST/api/v3).
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com", value_name = "URL")]
    github_api_url: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// Mints the token, runs the command with it and waits for it, passing on the signals that would
/// end appcreds (Unix: `SIGINT`, `SIGTERM`, `SIGHUP`, `SIGQUIT`) so that the command ends first;
/// then revokes the token (unless `--keep-token`). The exit code is the command's: its exit
/// status, or 128 + the signal that ended it, as a shell reports it. A command that cannot be
/// started is a usage error, and its token is revoked too.
pub async fn run(ctx: &Context<'_>, urls: &UrlArgs, oidc: &OidcArgs, args: &ExecArgs) -> Result<ExitCode, CliError> {
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
    let ended = run_to_end(command).await;
    if !args.keep_token {
        match revoke_token(&args.github_api_url, token, REVOKE_TIMEOUT).await {
            // No longer accepted (the command revoked it itself): as good as revoked.
            Ok(()) | Err(ClientError::ClientSide(_)) => {}
            Err(e) => {
                eprintln!("appcreds: warning: the token was not revoked ({e}); it expires at {}", t.expiration_time)
            }
        }
    }
    match ended {
        Ok(status) => Ok(exit_code(status)),
        Err(e) => Err(CliError::Usage(format!("cannot run {}: {e}", program.to_string_lossy()))),
    }
}

/// Starts `command` and waits for it to end, passing on to it the signals that would end appcreds
/// meanwhile. They are taken over before the command starts: none ends appcreds in between.
#[cfg(unix)]
async fn run_to_end(mut command: Command) -> std::io::Result<ExitStatus> {
    use rustix::process::{Pid, Signal, kill_process};
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut child: Child = command.spawn()?;
    let pid = child.id().and_then(|id| Pid::from_raw(id as i32));
    loop {
        let passed = tokio::select! {
            status = child.wait() => return status,
            _ = int.recv() => Signal::INT,
            _ = term.recv() => Signal::TERM,
            _ = hup.recv() => Signal::HUP,
            _ = quit.recv() => Signal::QUIT,
        };
        if let Some(pid) = pid {
            // It may have ended meanwhile: its status is the next thing waited for.
            let _ = kill_process(pid, passed);
        }
    }
}

/// Starts `command` and waits for it to end.
#[cfg(not(unix))]
async fn run_to_end(mut command: Command) -> std::io::Result<ExitStatus> {
    let mut child: Child = command.spawn()?;
    child.wait().await
}

/// The command's exit code, or 128 + the signal that ended it (Unix).
fn exit_code(status: ExitStatus) -> ExitCode {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return ExitCode::from(128u8.saturating_add(u8::try_from(signal).unwrap_or(127)));
        }
    }
    match status.code().map(u8::try_from) {
        Some(Ok(code)) => ExitCode::from(code),
        _ => ExitCode::FAILURE,
    }
}
