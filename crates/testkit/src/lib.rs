//! Real parts for appcreds' tests and local stack:
//! - [`moto`]: a moto server (KMS, DynamoDB, CloudWatch) on loopback, owned by the test process.
//! - [`aws`]: SDK clients pointed at it, with an interceptor that counts operations, and fixtures
//!   (tables exactly as in the spec, tagged RSA keys, App rows).
//! - [`github`]: an HTTP double of the GitHub REST API that checks App JWTs like GitHub does.
//! - [`kms_import`]: KMS key import (which moto lacks) through `aws-smithy-mocks` on a moto client.
//! - [`lambda`]: Function URL events as Lambda delivers them.
//! - [`runtime_api`]: a Lambda Runtime API endpoint for one function process (cold starts).
//! - [`fleet`]: a burst of cold function processes at once, and its figures side by side.

pub mod aws;
pub mod fault_proxy;
pub mod fleet;
pub mod github;
pub mod kms_import;
pub mod lambda;
pub mod moto;
pub mod runtime_api;

/// A short unique suffix for resource names, so parallel tests never share a table.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Runs `cmd` with `input` on its stdin and returns its exit status and what it printed, off the
/// async runtime. Its stdin, stdout and stderr are piped here. A command that answers without
/// reading may close its end first: that is no failure.
pub async fn output_with_input(mut cmd: std::process::Command, input: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let input = input.to_string();
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("the command starts");
        let _ = child.stdin.take().expect("piped stdin").write_all(input.as_bytes());
        child.wait_with_output().expect("the command's output")
    })
    .await
    .expect("the command's thread")
}

/// The peak resident set size (`VmHWM`) of the process whose `/proc` status file is `status`
/// (`/proc/self/status`, `/proc/<pid>/status`), in MiB; `None` if it cannot be read.
pub fn peak_rss_mib(status: &str) -> Option<f64> {
    let text = std::fs::read_to_string(status).ok()?;
    let kib: f64 =
        text.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}
