//! `appcreds exec [token options] -- CMD ARGS…`: mints an installation token just in time, runs a
//! command with it in `GH_TOKEN` and `GITHUB_TOKEN`, and revokes it once the command has ended.
//! The token is not printed.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use appcreds_cli::CliError;
use appcreds_client::ClientError;
use clap::Args;
use tokio::process::Command;

use super::Context;
use super::call::{self, OidcArgs, TokenArgs, UrlArgs};
use super::revoke::revoke_token;

/// How long GitHub has to answer the revocation once the command has ended: within the 7.5 s a
/// GitHub Actions runner leaves between its `SIGINT` and its `SIGTERM` when a job is cancelled.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(5);

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

/// How the command ended, or why it did not run.
enum Ended {
    /// It exited with this code.
    Exited(i32),
    /// A signal ended it (Unix), or ended appcreds before it started.
    Signalled(i32),
}

/// Takes over the signals that would end appcreds, then mints the token, runs the command with it
/// and waits for it, passing those signals on to it so that it ends first; then revokes the token
/// (unless `--keep-token`) and ends as the command did: with its exit code, or by the signal that
/// ended it. A signal before the token is minted ends appcreds at once; one after, before the
/// command starts, once the token is revoked. A command that cannot be started is a usage error,
/// its token revoked too.
pub async fn run(ctx: &Context<'_>, urls: &UrlArgs, oidc: &OidcArgs, args: &ExecArgs) -> Result<ExitCode, CliError> {
    let (program, rest) =
        args.command.split_first().ok_or_else(|| CliError::Usage("no command to run after --".into()))?;
    let mut signals =
        signals::Signals::take_over().map_err(|e| CliError::Usage(format!("cannot take signals: {e}")))?;
    let minted = async {
        let client = call::connect(ctx, urls, oidc, |u| u.installation_token.is_none()).await?;
        call::installation_token(&client, &args.token).await
    };
    let t = tokio::select! {
        t = minted => t?,
        signal = signals.next() => return Ok(signals::end_by(signal)),
    };
    let token = t.installation_token.expose();
    let ended = match signals.pending() {
        Some(signal) => Ok(Ended::Signalled(signal)),
        None => run_command(program, rest, token, &mut signals).await,
    };
    if !args.keep_token {
        match revoke_token(&args.github_api_url, token, REVOKE_TIMEOUT).await {
            Ok(()) => {}
            // Already revoked (by the command), or another GitHub's token: the URL says which.
            Err(ClientError::ClientSide(_)) => eprintln!(
                "appcreds: note: {} does not accept the token, so it was not revoked there: it was revoked \
                 already, or it is another GitHub's (see --github-api-url)",
                args.github_api_url
            ),
            Err(e) => {
                eprintln!("appcreds: warning: the token was not revoked ({e}); it expires at {}", t.expiration_time)
            }
        }
    }
    match ended {
        Ok(Ended::Exited(code)) => Ok(exit_code(code)),
        Ok(Ended::Signalled(signal)) => Ok(signals::end_by(Some(signal))),
        Err(e) => Err(CliError::Usage(format!("cannot run {}: {e}", program.to_string_lossy()))),
    }
}

/// Runs `program rest` with `token` and waits for it to end, passing `signals` on to it.
async fn run_command(
    program: &OsString,
    rest: &[OsString],
    token: &str,
    signals: &mut signals::Signals,
) -> std::io::Result<Ended> {
    if std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true") {
        // The runner reads this line and hides the token wherever the command prints it. On
        // standard error, which the runner reads for workflow commands too: standard output is
        // the command's, and may be captured ($(…), a pipe, GITHUB_OUTPUT) where no mask applies.
        eprintln!("::add-mask::{token}");
        std::io::Write::flush(&mut std::io::stderr())?;
    }
    let mut command = Command::new(program);
    command.args(rest).env("GH_TOKEN", token).env("GITHUB_TOKEN", token);
    let mut child = command.spawn()?;
    loop {
        tokio::select! {
            status = child.wait() => return Ok(signals::ended(status?)),
            signal = signals.next() => signals.pass_on(&child, signal),
        }
    }
}

/// The exit code `code` as this process's (Unix: its low 8 bits, as the system keeps them;
/// elsewhere, a code beyond 255 ends the process with it at once).
fn exit_code(code: i32) -> ExitCode {
    match u8::try_from(code) {
        Ok(code) => ExitCode::from(code),
        #[cfg(unix)]
        Err(_) => ExitCode::from(code as u8),
        #[cfg(not(unix))]
        Err(_) => std::process::exit(code),
    }
}

/// Unix: the signals that would end appcreds, taken over and passed on to the command.
#[cfg(unix)]
mod signals {
    use std::os::fd::AsFd;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{ExitCode, ExitStatus};

    use std::task::{Context, Poll, Waker};

    use rustix::process::{Pid, Signal, getpgrp, kill_process};
    use tokio::process::Child;
    use tokio::signal::unix::{SignalKind, signal};

    use super::Ended;

    /// The signals taken over: those whose default ends the process, that a user, a shell or a
    /// runner sends (not those a fault raises, nor `SIGKILL`, which cannot be).
    const TAKEN: [(i32, fn() -> SignalKind); 6] = [
        (libc_signal::INT, SignalKind::interrupt),
        (libc_signal::TERM, SignalKind::terminate),
        (libc_signal::HUP, SignalKind::hangup),
        (libc_signal::QUIT, SignalKind::quit),
        (libc_signal::USR1, SignalKind::user_defined1),
        (libc_signal::USR2, SignalKind::user_defined2),
    ];

    /// The signals' numbers, as rustix has them.
    mod libc_signal {
        use rustix::process::Signal;
        pub const INT: i32 = Signal::INT.as_raw();
        pub const TERM: i32 = Signal::TERM.as_raw();
        pub const HUP: i32 = Signal::HUP.as_raw();
        pub const QUIT: i32 = Signal::QUIT.as_raw();
        pub const USR1: i32 = Signal::USR1.as_raw();
        pub const USR2: i32 = Signal::USR2.as_raw();
    }

    /// The signals taken over, each with its number.
    pub(super) struct Signals(Vec<(i32, tokio::signal::unix::Signal)>);

    impl Signals {
        /// Takes over the signals of [`TAKEN`] that this process does not ignore: an ignored one
        /// (`nohup` ignores `SIGHUP`) stays ignored, by appcreds and by the command.
        pub(super) fn take_over() -> std::io::Result<Self> {
            let ignored = ignored_signals();
            let mut taken = Vec::new();
            for (number, kind) in TAKEN {
                if !ignored(number) {
                    taken.push((number, signal(kind())?));
                }
            }
            Ok(Signals(taken))
        }

        /// The next signal received (its number; always `Some`, as the other platforms' may not be).
        pub(super) async fn next(&mut self) -> Option<i32> {
            std::future::poll_fn(|cx| match self.received(cx) {
                Some(number) => Poll::Ready(Some(number)),
                None => Poll::Pending,
            })
            .await
        }

        /// A signal already received, if any.
        pub(super) fn pending(&mut self) -> Option<i32> {
            self.received(&mut Context::from_waker(Waker::noop()))
        }

        /// The first signal received, or none yet (each then wakes `cx` when it comes).
        fn received(&mut self, cx: &mut Context<'_>) -> Option<i32> {
            self.0
                .iter_mut()
                .find_map(|(number, s)| matches!(s.poll_recv(cx), Poll::Ready(Some(()))).then_some(*number))
        }

        /// Sends `signal` on to `child` (if it still runs: a child that has ended is not reaped
        /// until it is waited for, so its process ID is not anyone else's). `SIGINT` and `SIGQUIT`
        /// come from the terminal's keyboard to its whole foreground process group, the command
        /// included: while appcreds is in that group they are not sent again.
        pub(super) fn pass_on(&self, child: &Child, signal: Option<i32>) {
            let Some(signal) = signal else { return };
            let from_keyboard = signal == libc_signal::INT || signal == libc_signal::QUIT;
            if from_keyboard && in_terminal_foreground() {
                return;
            }
            let pid = child.id().and_then(|id| Pid::from_raw(id as i32));
            if let (Some(pid), Some(signal)) = (pid, Signal::from_named_raw(signal)) {
                let _ = kill_process(pid, signal);
            }
        }
    }

    /// Whether this process is in the foreground process group of its controlling terminal (none:
    /// no terminal's keyboard reaches the command).
    fn in_terminal_foreground() -> bool {
        std::fs::File::open("/dev/tty")
            .is_ok_and(|tty| rustix::termios::tcgetpgrp(tty.as_fd()).is_ok_and(|group| group == getpgrp()))
    }

    /// Which signals this process ignores (Linux: `SigIgn` of `/proc/self/status`; elsewhere none
    /// is known to be).
    fn ignored_signals() -> impl Fn(i32) -> bool {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let mask = status
            .lines()
            .find_map(|line| line.strip_prefix("SigIgn:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap_or(0);
        move |number| (1..=64).contains(&number) && mask & (1 << (number - 1)) != 0
    }

    /// How the command ended.
    pub(super) fn ended(status: ExitStatus) -> Ended {
        match (status.code(), status.signal()) {
            (Some(code), _) => Ended::Exited(code),
            (None, Some(signal)) => Ended::Signalled(signal),
            (None, None) => Ended::Exited(1),
        }
    }

    /// The signals whose default also dumps the process's core: appcreds does not end by them
    /// (its memory holds the token, and its AWS credentials).
    const DUMPING: [Signal; 10] = [
        Signal::QUIT,
        Signal::ILL,
        Signal::TRAP,
        Signal::ABORT,
        Signal::BUS,
        Signal::FPE,
        Signal::SEGV,
        Signal::SYS,
        Signal::XCPU,
        Signal::XFSZ,
    ];

    /// Ends appcreds by `signal`, as the command ended (the system's default for it: a shell sees
    /// a process ended by a signal, and a loop around it stops at Ctrl-C). For a signal whose
    /// default dumps core, or one the system's defaults do not name, the exit code 128 + the
    /// signal instead, as a shell reports it.
    pub(super) fn end_by(signal: Option<i32>) -> ExitCode {
        let Some(signal) = signal else { return ExitCode::FAILURE };
        if !DUMPING.iter().any(|d| d.as_raw() == signal) {
            let _ = signal_hook::low_level::emulate_default_handler(signal);
        }
        ExitCode::from(128u8.saturating_add(u8::try_from(signal).unwrap_or(127)))
    }
}

/// Elsewhere: Ctrl-C reaches the command from the console; appcreds waits for it to end. (Built on
/// every platform, so that it is checked on every platform.)
#[cfg(not(unix))]
use console as signals;

#[cfg_attr(unix, allow(dead_code))]
mod console {
    use std::future::Future;
    use std::pin::Pin;
    use std::process::{ExitCode, ExitStatus};
    use std::task::{Context, Waker};

    use tokio::process::Child;

    use super::Ended;

    type CtrlC = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

    /// Ctrl-C, listened to from [`Signals::take_over`] until appcreds ends: while nothing listens,
    /// the console's Ctrl-C ends the process.
    pub(super) struct Signals(CtrlC);

    /// A listener of the next Ctrl-C, listening already (polled once).
    fn listening() -> CtrlC {
        let mut ctrl_c: CtrlC = Box::pin(tokio::signal::ctrl_c());
        let _ = ctrl_c.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        ctrl_c
    }

    impl Signals {
        pub(super) fn take_over() -> std::io::Result<Self> {
            Ok(Signals(listening()))
        }

        /// The next Ctrl-C (none, if the console's cannot be listened to).
        pub(super) async fn next(&mut self) -> Option<i32> {
            match (&mut self.0).await {
                Ok(()) => {
                    self.0 = listening();
                    Some(2)
                }
                Err(_) => std::future::pending().await,
            }
        }

        /// None is kept.
        pub(super) fn pending(&mut self) -> Option<i32> {
            None
        }

        /// The console sent it to the command too.
        pub(super) fn pass_on(&self, _child: &Child, _signal: Option<i32>) {}
    }

    pub(super) fn ended(status: ExitStatus) -> Ended {
        Ended::Exited(status.code().unwrap_or(1))
    }

    /// Ctrl-C before the command started: the code of a process Ctrl-C ended.
    pub(super) fn end_by(_signal: Option<i32>) -> ExitCode {
        std::process::exit(0xC000_013A_u32 as i32)
    }
}
