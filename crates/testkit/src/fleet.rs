//! The fleet burst: N cold processes of one function binary started at once, each on a Runtime
//! API endpoint of its own that hands it one event, as a matrix of jobs at the top of the hour
//! starts N cold Lambda environments; and the table that sets bursts side by side: how many
//! answered 200, the times to ready and to the first answer, the AWS calls a
//! [`FaultProxy`](crate::fault_proxy::FaultProxy) in front of moto counted, and the GitHub
//! double's calls.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::runtime_api::{Invocation, RuntimeApi};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A burst to run.
#[derive(Debug, Clone)]
pub struct Burst {
    /// The function binary.
    pub binary: PathBuf,
    /// How many processes start at once.
    pub processes: usize,
    /// The event each is handed.
    pub event: Value,
    /// Each invocation's deadline (the function's `Timeout`): generous, since the processes share
    /// the machine's cores.
    pub timeout: Duration,
    /// How long the whole burst may take; a process that has not answered by then is a failure.
    pub limit: Duration,
}

/// What a burst did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Spawn → ready (the first request for an invocation), in ms, of each process that answered.
    pub ready_ms: Vec<f64>,
    /// Spawn → its answer, in ms, of each process that answered.
    pub answer_ms: Vec<f64>,
    /// The first spawn → the last answer.
    pub wall: Duration,
    /// How many answered with HTTP 200.
    pub ok: usize,
    /// Everything else, each kind once with how many: other statuses, function errors, no answer.
    pub problems: BTreeMap<String, usize>,
}

impl Burst {
    /// Starts the processes, each with its environment from `configure`, and waits for their
    /// answers (at most [`Burst::limit`]); then kills them all.
    pub async fn run(&self, configure: &dyn Fn(&mut std::process::Command)) -> Result<Outcome, BoxError> {
        raise_open_files(16 * self.processes as u64 + 1024)?;
        // The binary read once beforehand, so that no burst pays for loading it from disk and
        // bursts side by side compare alike.
        std::fs::read(&self.binary).map_err(|e| format!("cannot read {}: {e}", self.binary.display()))?;
        let mut apis = Vec::with_capacity(self.processes);
        for _ in 0..self.processes {
            apis.push(RuntimeApi::start(self.event.clone(), self.timeout).await?);
        }
        let mut outcome = Outcome::default();
        let mut started = Vec::with_capacity(self.processes);
        let first = Instant::now();
        for api in &apis {
            let mut command = tokio::process::Command::new(&self.binary);
            configure(command.as_std_mut());
            command.env("AWS_LAMBDA_RUNTIME_API", api.endpoint());
            command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
            let spawned = Instant::now();
            match command.spawn() {
                Ok(child) => started.push((api, child, spawned)),
                Err(e) => *outcome.problems.entry(format!("not started: {e}")).or_default() += 1,
            }
        }
        let mut last = first;
        for (api, child, spawned) in &mut started {
            let left = self.limit.saturating_sub(first.elapsed());
            let answer = tokio::select! {
                biased;
                answer = api.wait(left) => answer,
                exit = child.wait() => match api.wait(Duration::ZERO).await {
                    Ok(answer) => Ok(answer),
                    Err(_) => Err(format!("exited ({}) without an answer", exit.map_or("?".into(), |s| s.to_string()))),
                },
            };
            match answer {
                Ok(invocation) => {
                    last = last.max(invocation.answered);
                    outcome.ready_ms.push(invocation.ready.duration_since(*spawned).as_secs_f64() * 1e3);
                    outcome.answer_ms.push(invocation.answered.duration_since(*spawned).as_secs_f64() * 1e3);
                    match problem(&invocation) {
                        None => outcome.ok += 1,
                        Some(p) => *outcome.problems.entry(p).or_default() += 1,
                    }
                }
                Err(e) => *outcome.problems.entry(e).or_default() += 1,
            }
        }
        outcome.wall = last.duration_since(first);
        for (_, child, _) in &mut started {
            let _ = child.start_kill();
        }
        for (_, child, _) in &mut started {
            let _ = child.wait().await;
        }
        Ok(outcome)
    }
}

/// What is wrong with an answer: `None` for a Function URL response with status 200.
fn problem(invocation: &Invocation) -> Option<String> {
    let body = &invocation.body;
    if invocation.failed {
        return Some(format!("function error {}", body.get("errorType").unwrap_or(body)));
    }
    match body.get("statusCode").and_then(Value::as_u64) {
        Some(200) => None,
        status => {
            let text: String = body.get("body").and_then(Value::as_str).unwrap_or_default().chars().take(160).collect();
            Some(format!("status {}: {text}", status.map_or("none".into(), |s| s.to_string())))
        }
    }
}

/// Runs `binary` once, cold, with `event` (e.g. the installation tracker, to fill a table as it
/// does) and returns its answer; an error if it reported one or did not answer within `limit`.
pub async fn run_once(
    binary: &std::path::Path,
    event: Value,
    limit: Duration,
    configure: &dyn Fn(&mut std::process::Command),
) -> Result<Value, BoxError> {
    let api = RuntimeApi::start(event, limit).await?;
    let mut command = tokio::process::Command::new(binary);
    configure(command.as_std_mut());
    command.env("AWS_LAMBDA_RUNTIME_API", api.endpoint());
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let answer = api.wait(limit).await;
    let _ = child.kill().await;
    let invocation = answer?;
    if invocation.failed {
        return Err(format!("{} answered {}", binary.display(), invocation.body).into());
    }
    Ok(invocation.body)
}

/// Copies every item of `table` from one DynamoDB to another (the same table, created in both);
/// returns how many.
pub async fn copy_table(
    from: &aws_sdk_dynamodb::Client,
    to: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<usize, BoxError> {
    let mut copied = 0;
    let mut start = None;
    loop {
        let page = from.scan().table_name(table).set_exclusive_start_key(start).send().await?;
        for item in page.items() {
            to.put_item().table_name(table).set_item(Some(item.clone())).send().await?;
            copied += 1;
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            return Ok(copied);
        }
    }
}

/// Raises this process's soft limit on open files to `needed` (within the hard limit) with
/// `prlimit`, so that a burst's sockets fit; the processes it starts inherit it.
pub fn raise_open_files(needed: u64) -> Result<(), BoxError> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default();
    let mut fields = line.split_whitespace().skip(3).map(|v| v.parse::<u64>().unwrap_or(u64::MAX));
    let (soft, hard) = (fields.next().unwrap_or(u64::MAX), fields.next().unwrap_or(u64::MAX));
    if soft >= needed {
        return Ok(());
    }
    if hard < needed {
        return Err(format!("{needed} open files needed, the hard limit is {hard} (ulimit -Hn)").into());
    }
    let pid = std::process::id().to_string();
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={needed}:{hard}")])
        .status()
        .map_err(|e| format!("cannot run prlimit to raise the open files limit ({soft}): {e}"))?;
    if !status.success() {
        return Err(format!("prlimit could not raise the open files limit from {soft} to {needed}").into());
    }
    Ok(())
}

/// One burst's figures, a column of [`table`].
#[derive(Debug, Clone)]
pub struct Column {
    /// What was measured (the binary directory).
    pub label: String,
    pub processes: usize,
    pub outcome: Outcome,
    /// AWS requests by operation, as [`FaultProxy::calls`](crate::fault_proxy::FaultProxy::calls)
    /// counts them.
    pub aws: BTreeMap<String, usize>,
    /// GitHub requests by route, as the double counts them.
    pub github: BTreeMap<String, usize>,
}

impl Column {
    /// The GitHub mints (`POST …/access_tokens`).
    pub fn mints(&self) -> usize {
        self.github.iter().filter(|(route, _)| github_kind(route) == "mints").map(|(_, n)| n).sum()
    }
}

/// The nearest-rank `p`-th percentile of `values` (sorted), or `None` if there are none.
fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values.get(rank.max(1) - 1).copied()
}

fn spread(values: &[f64]) -> String {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match (percentile(&v, 50.0), percentile(&v, 99.0), v.last()) {
        (Some(p50), Some(p99), Some(max)) => format!("{p50:.0} / {p99:.0} / {max:.0}"),
        _ => "–".into(),
    }
}

/// The kind of an AWS operation (`TrentService.Sign`, `DynamoDB_20120810.GetItem table`): its
/// table row.
fn aws_kind(operation: &str) -> &'static str {
    let operation = operation.split(' ').next().unwrap_or(operation);
    let name = operation.rsplit('.').next().unwrap_or(operation);
    match operation.split('.').next() {
        Some("TrentService") if matches!(name, "Sign" | "Decrypt" | "Encrypt") => match name {
            "Sign" => "KMS Sign",
            "Decrypt" => "KMS Decrypt",
            _ => "KMS Encrypt",
        },
        Some("TrentService") => "KMS, other",
        Some(s) if s.starts_with("DynamoDB") => match name {
            "GetItem" | "Query" | "Scan" | "BatchGetItem" | "TransactGetItems" => "DynamoDB reads",
            "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems" => "DynamoDB writes",
            _ => "DynamoDB, other",
        },
        _ => "AWS, other",
    }
}

/// The kind of a GitHub route (`GET /orgs/octo-org/installation`): its table row.
fn github_kind(route: &str) -> &'static str {
    let (method, path) = route.split_once(' ').unwrap_or(("", route));
    match method {
        "POST" if path.ends_with("/access_tokens") => "mints",
        "GET" if path == "/app/installations" => "installation listings",
        "GET" if path.ends_with("/installation") || path.starts_with("/app/installations/") => "installation lookups",
        _ => "other calls",
    }
}

/// `total (name n, …)` of the counts whose kind is `kind` (`total` alone without `detail`, or if
/// there are none). An AWS operation is named without its service (`GetItem apps`).
fn tally(counts: &BTreeMap<String, usize>, kind: &str, kind_of: fn(&str) -> &'static str, detail: bool) -> String {
    let hits: Vec<(&String, &usize)> = counts.iter().filter(|(k, _)| kind_of(k) == kind).collect();
    let total: usize = hits.iter().map(|(_, n)| **n).sum();
    if hits.is_empty() || !detail {
        return total.to_string();
    }
    let names: Vec<String> = hits
        .iter()
        .map(|(k, n)| {
            let short =
                k.split_once('.').filter(|(service, _)| !service.contains(' ')).map_or(k.as_str(), |(_, op)| op);
            format!("{short} {n}")
        })
        .collect();
    format!("{total} ({})", names.join(", "))
}

/// The bursts side by side, as a Markdown table.
pub fn table(columns: &[Column]) -> String {
    let mut out = String::from("| |");
    for c in columns {
        out += &format!(" {} |", c.label);
    }
    out += "\n|---|";
    out += &"---|".repeat(columns.len());
    out += "\n";
    let mut row = |name: &str, cell: &dyn Fn(&Column) -> String| {
        out += &format!("| {name} |");
        for c in columns {
            out += &format!(" {} |", cell(c).replace('|', "/"));
        }
        out += "\n";
    };
    row("answered 200", &|c| format!("{} of {}", c.outcome.ok, c.processes));
    row("spawn → ready (ms) p50 / p99 / max", &|c| spread(&c.outcome.ready_ms));
    row("spawn → first answer (ms) p50 / p99 / max", &|c| spread(&c.outcome.answer_ms));
    row("first spawn → last answer (s)", &|c| format!("{:.1}", c.outcome.wall.as_secs_f64()));
    for kind in ["KMS Sign", "KMS Decrypt", "KMS Encrypt"] {
        row(kind, &|c| tally(&c.aws, kind, aws_kind, false));
    }
    for kind in ["KMS, other", "DynamoDB reads", "DynamoDB writes"] {
        row(kind, &|c| tally(&c.aws, kind, aws_kind, true));
    }
    for kind in ["DynamoDB, other", "AWS, other"] {
        if columns.iter().any(|c| c.aws.keys().any(|k| aws_kind(k) == kind)) {
            row(kind, &|c| tally(&c.aws, kind, aws_kind, true));
        }
    }
    for kind in ["installation lookups", "installation listings", "mints", "other calls"] {
        row(&format!("GitHub {kind}"), &|c| tally(&c.github, kind, github_kind, kind != "mints"));
    }
    if columns.iter().any(|c| !c.outcome.problems.is_empty()) {
        row("failures", &|c| {
            let list: Vec<String> = c.outcome.problems.iter().map(|(p, n)| format!("{n} × {p}")).collect();
            list.join("; ")
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(100.0));
        assert_eq!(percentile(&v, 99.0), Some(198.0));
        assert_eq!(percentile(&v[..3], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn calls_are_sorted_into_rows() {
        assert_eq!(aws_kind("TrentService.Sign"), "KMS Sign");
        assert_eq!(aws_kind("TrentService.GetPublicKey"), "KMS, other");
        assert_eq!(aws_kind("DynamoDB_20120810.BatchGetItem"), "DynamoDB reads");
        assert_eq!(aws_kind("DynamoDB_20120810.UpdateItem"), "DynamoDB writes");
        assert_eq!(aws_kind("DynamoDB_20120810.GetItem apps"), "DynamoDB reads");
        assert_eq!(aws_kind("DynamoDB_20120810.DescribeTable apps"), "DynamoDB, other");
        assert_eq!(aws_kind("PutMetricData"), "AWS, other");
        assert_eq!(github_kind("POST /app/installations/4001/access_tokens"), "mints");
        assert_eq!(github_kind("GET /app/installations"), "installation listings");
        assert_eq!(github_kind("GET /orgs/octo-org/installation"), "installation lookups");
        assert_eq!(github_kind("GET /app/installations/4001"), "installation lookups");
        assert_eq!(github_kind("GET /app"), "other calls");
    }

    #[test]
    fn the_table_sets_bursts_side_by_side() {
        let column = |label: &str, signs: usize| Column {
            label: label.into(),
            processes: 2,
            outcome: Outcome { ready_ms: vec![3.0, 5.0], answer_ms: vec![10.0, 20.0], ok: 2, ..Outcome::default() },
            aws: BTreeMap::from([
                ("TrentService.Sign".into(), signs),
                ("DynamoDB_20120810.GetItem apps".into(), 3),
                ("DynamoDB_20120810.GetItem installations".into(), 1),
                ("DynamoDB_20120810.Scan".into(), 2),
            ]),
            github: BTreeMap::from([
                ("GET /orgs/octo-org/installation".into(), 2),
                ("POST /app/installations/4001/access_tokens".into(), 2),
            ]),
        };
        let table = table(&[column("before", 2), column("after", 1)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "| | before | after |");
        assert!(lines.contains(&"| answered 200 | 2 of 2 | 2 of 2 |"), "{table}");
        assert!(
            lines.contains(&"| spawn → first answer (ms) p50 / p99 / max | 10 / 20 / 20 | 10 / 20 / 20 |"),
            "{table}"
        );
        assert!(lines.contains(&"| KMS Sign | 2 | 1 |"), "{table}");
        let reads = "6 (GetItem apps 3, GetItem installations 1, Scan 2)";
        assert!(lines.contains(&format!("| DynamoDB reads | {reads} | {reads} |").as_str()), "{table}");
        assert!(lines.contains(&"| GitHub installation lookups | 2 (GET /orgs/octo-org/installation 2) | 2 (GET /orgs/octo-org/installation 2) |"), "{table}");
        assert!(lines.contains(&"| GitHub mints | 2 | 2 |"), "{table}");
        assert!(!table.contains("failures"), "{table}");
    }
}
