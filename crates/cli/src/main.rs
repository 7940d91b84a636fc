//! `appcreds`: manage GitHub App keys in KMS, and call appcreds' functions (SigV4-signed) from a
//! shell or a GitHub Actions job.
//!
//! Exit codes: 0 success, 2 usage error, 3 not authorised (AWS credentials or IAM), 4 the request
//! was refused (invalid input, unknown App or installation, GitHub refused), 5 appcreds, AWS,
//! GitHub or the network failed, 6 throttled (retry later).

use std::process::ExitCode;

use appcreds_cli::CliError;
use appcreds_client::ClientError;
use clap::{Parser, Subcommand, ValueEnum};
use commands::Context;
use commands::access::AccessCommand;
use commands::call::{CallCommand, OidcArgs, UrlArgs};
use commands::exec::ExecArgs;
use commands::git_credential::GitCredentialArgs;
use commands::key::KeyCommand;
use commands::revoke::RevokeArgs;
use commands::rotation::RotationCommand;

mod commands;
mod output;

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
    /// In GitHub Actions (with `permissions: id-token: write`): take AWS credentials from this role,
    /// assumed with the job's own OIDC token (AssumeRoleWithWebIdentity, audience
    /// sts.amazonaws.com), and assume it again whenever the session nears its expiry. Empty: no role.
    #[arg(long, env = "APPCREDS_ROLE_ARN", global = true, value_name = "ARN")]
    role_arn: Option<String>,
    #[command(flatten)]
    urls: UrlArgs,
    #[command(flatten)]
    oidc: OidcArgs,
    #[command(subcommand)]
    command: Command,
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
    // app-token, token, installations, refresh: calls to the functions.
    #[command(flatten)]
    Call(CallCommand),
    /// Revoke an installation token at GitHub (DELETE /installation/token).
    ///
    /// The token is read from the variable named by --token-env, or from standard input; never
    /// from the command line, where the process list would show it.
    Revoke(RevokeArgs),
    /// A git credential helper: for `get` on the GitHub host, a token for the repository git asks
    /// about, with its expiry; `store` and `erase` are ignored (no token is written anywhere).
    ///
    /// Configure it with credential.useHttpPath, so that git names the repository (docs/cli.md):
    ///
    /// git config --global credential.https://github.com.helper '!appcreds git-credential --app-id 123456'
    ///
    /// git config --global credential.https://github.com.useHttpPath true
    // The lines above are the help text (clap), where a URL is a shell word, not a link.
    #[allow(rustdoc::bare_urls)]
    GitCredential(GitCredentialArgs),
    /// Run a command with an installation token, minted just now, in GH_TOKEN and GITHUB_TOKEN.
    ///
    /// The token is not printed, and is revoked once the command has ended (unless --keep-token).
    /// appcreds passes on to the command the signals that would end it, and exits with the
    /// command's exit status (128 + the signal that ended it). Example: appcreds exec --app-id
    /// 123456 --owner octo-org -- gh pr list
    Exec(ExecArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(code) => code,
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

/// Runs the command; the exit code of a success (`exec`: the command's).
async fn run(cli: &Cli) -> Result<ExitCode, CliError> {
    let ctx = Context {
        stack: cli.stack.as_deref(),
        role_arn: cli.role_arn.as_deref(),
        json_out: cli.output == Output::Json,
    };
    let done = match &cli.command {
        Command::Key(command) => commands::key::run(&ctx, command).await,
        Command::Access(command) => commands::access::run(&ctx, command).await,
        Command::Rotation(command) => commands::rotation::run(&ctx, command).await,
        Command::Call(command) => commands::call::run(&ctx, &cli.urls, &cli.oidc, command).await,
        Command::GitCredential(args) => commands::git_credential::run(&ctx, &cli.urls, &cli.oidc, args).await,
        Command::Exec(args) => return commands::exec::run(&ctx, &cli.urls, &cli.oidc, args).await,
        Command::Revoke(args) => commands::revoke::run(args, ctx.json_out).await.map_err(CliError::from),
    };
    done.map(|()| ExitCode::SUCCESS)
}
