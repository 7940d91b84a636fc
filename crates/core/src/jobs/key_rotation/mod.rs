//! The access-key rotator: rotates IAM users' access keys into GitHub Actions secrets with the
//! App's own installation tokens, **never leaving a working destination without a working key**.
//!
//! Per target, one run at a time (a lease):
//! 1. A replaced key whose grace period is over is deleted.
//! 2. If the key is due (older than its maximum age, none yet, forced, or a destination needs a
//!    key whose secret is no longer held), room is made (an inactive key that is neither current
//!    nor in its grace period is deleted; two live keys stop the run with a clear error) and a new
//!    key is created. Its secret is encrypted with KMS ([`Vault`]) and recorded before anything
//!    else happens, so a run that dies later loses nothing.
//! 3. The key is proven to work (STS `GetCallerIdentity` with it answers the user's ARN), within
//!    a bound: IAM is eventually consistent.
//! 4. Each destination that does not hold the current key is written: the place's public key,
//!    both secrets sealed for it, written back to back. One destination failing does not stop
//!    the others; its error (GitHub's message) is recorded. Writes are paced under GitHub's
//!    secondary rate limits for content-creating requests (80 a minute, 500 an hour), and a
//!    `retry-after` stops the run's writes (the rest wait for the next run).
//! 5. Only when every destination holds the new key is the old one deactivated (it is deleted
//!    after the grace period, on a later run) and the encrypted secret dropped. Until then the
//!    old key stays active, and the next run writes only the destinations that are behind.
//!
//! The GitHub tokens are minted in process, one per owner, scoped to exactly the destinations'
//! repositories and the least permission each kind needs, and revoked when the run ends.
//!
//! A run of one target is planned without I/O (`plan`: from the user's keys, the stored state,
//! the spec and the clock, the steps to take), then carried out (`act`, and `write` for the
//! destinations). `pacer` spaces the GitHub writes; `report` holds what a run reports.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::deadline;
use crate::error::{Error, FieldError};
use crate::ports::{AccessKeys, Lease, RotationStore, TargetRecord, Vault};
use crate::services::Services;
use crate::tokens::installation::InstallationTokens;

mod act;
mod pacer;
mod plan;
mod report;
mod write;

use pacer::Pacer;
pub use report::{DestinationReport, DestinationStatus, TargetOutcome, TargetReport};

/// The CloudWatch namespace of the rotator's metrics.
pub const NAMESPACE: &str = "appcreds/AccessKeyRotator";

/// The metrics the rotator publishes (in [`NAMESPACE`]); the template's alarms watch them.
pub mod metrics {
    /// The current key's age, per target (dimension `UserName`).
    pub const KEY_AGE_HOURS: &str = "KeyAgeHours";
    /// Destinations and targets that failed in a run.
    pub const ROTATION_FAILURES: &str = "RotationFailures";
    /// Targets whose key is older than its maximum age, or that have none.
    pub const KEYS_OVER_MAX_AGE: &str = "KeysOverMaxAge";
    /// One per scheduled run: the heartbeat.
    pub const ROTATION_RUNS: &str = "RotationRuns";
}

/// GitHub's documented secondary limits for content-creating requests.
pub const WRITES_PER_MINUTE: u32 = 80;
/// …and per hour.
pub const WRITES_PER_HOUR: usize = 500;
/// How long a new key is given to start working.
pub const KEY_WAIT: Duration = Duration::from_secs(60);
/// The longest one AWS call may take (the SDK clients' operation timeout).
const AWS_CALL: Duration = deadline::AWS_CALL;
/// Kept at the end of a run, for the worst case of each step: two state saves around deactivating
/// the old key, revoking the last token, publishing the metrics and releasing the lease.
const END_RESERVE: Duration = Duration::from_secs(5 * AWS_CALL.as_secs() + REVOKE_BUDGET.as_secs());
/// One GitHub call with all its retries (4 attempts of at most 10 s, 5 s of waits).
const CALL: Duration = Duration::from_secs(45);
/// The most reading whether a second secret landed may take (two reads of its metadata).
const PROBE: Duration = Duration::from_secs(10);
/// A destination is started only with time for six whole GitHub calls (its public key, the two
/// secrets, the second twice more if its outcome is unknown, and putting the key ID back) and the
/// probe between them, beside [`END_RESERVE`]. A `retry-after` is waited out only where it leaves
/// time for what may still follow it.
const PAIR_RESERVE: Duration = Duration::from_secs(6 * CALL.as_secs() + PROBE.as_secs());
/// What the first destination of a run needs: its owner's token, then its writes.
const FIRST_DESTINATION: Duration = Duration::from_secs(CALL.as_secs() + PAIR_RESERVE.as_secs());
/// A run starts a target only with this much time left: a new key's wait and one destination.
const PER_TARGET: Duration =
    Duration::from_secs(KEY_WAIT.as_secs() + END_RESERVE.as_secs() + FIRST_DESTINATION.as_secs());
/// The longest `retry-after` waited out to complete a pair (GitHub's secondary limits ask for
/// about a minute).
const MAX_PAIR_WAIT: Duration = Duration::from_secs(120);
/// How long revoking a token may take (it expires within the hour anyway).
const REVOKE_BUDGET: Duration = Duration::from_secs(5);
/// The state is saved every this many destinations written.
const SAVE_EVERY: usize = 25;
/// How long a target's lease lasts without a deadline to bound it (the function's timeout).
const LEASE_SECS: i64 = 900;

/// What the rotator reaches beyond [`Services`].
#[derive(Clone)]
pub struct RotatorPorts {
    /// IAM access keys and STS.
    pub keys: Arc<dyn AccessKeys>,
    /// The rotation table.
    pub targets: Arc<dyn RotationStore>,
    /// KMS, for the pending secret.
    pub vault: Arc<dyn Vault>,
}

/// The rotator's settings.
#[derive(Debug, Clone)]
pub struct RotatorSettings {
    /// Only users under this IAM path are rotated (`/appcreds-rotated/`); the template's policy
    /// says the same.
    pub allowed_path: String,
    /// Content-creating GitHub requests per minute and per hour, at most.
    pub writes_per_minute: u32,
    pub writes_per_hour: usize,
    /// How long a new key is given to start working.
    pub key_wait: Duration,
}

impl Default for RotatorSettings {
    fn default() -> Self {
        RotatorSettings {
            allowed_path: "/appcreds-rotated/".into(),
            writes_per_minute: WRITES_PER_MINUTE,
            writes_per_hour: WRITES_PER_HOUR,
            key_wait: KEY_WAIT,
        }
    }
}

/// The rotator, built once per cold start.
pub struct Rotator {
    services: Services,
    ports: RotatorPorts,
    settings: RotatorSettings,
    tokens: InstallationTokens,
    pacer: Pacer,
}

impl Rotator {
    /// The rotator on `services` (signer, App and Installation tables, GitHub, leases, metrics)
    /// and `ports`.
    pub fn new(services: &Services, ports: RotatorPorts, settings: RotatorSettings) -> Self {
        let pacer = Pacer::new(settings.writes_per_minute, settings.writes_per_hour);
        Rotator { tokens: InstallationTokens::new(services), services: services.clone(), ports, settings, pacer }
    }

    /// [`AppJwts::settle`](crate::tokens::app_jwt::AppJwts::settle) on the JWTs the rotator's
    /// tokens are minted with (not the settling of a rotation target).
    pub async fn settle_claims(&self, by: tokio::time::Instant) {
        self.tokens.settle(by).await;
    }

    /// Handles an invocation: `{"userName": "…", "force": bool}` runs one target now (`force`
    /// rotates even a young key); an event without `userName` (the schedule's) runs every target
    /// that is due. A run request is checked before anything is touched (no lease, no table read):
    /// an IAM user name, and `force` a boolean if given. The answer to a run request is its report,
    /// or `{"error": …}` named as the contract names errors.
    pub async fn handle(&self, event: Value) -> Result<Value, Error> {
        if event.get("userName").is_none() {
            return Box::pin(self.scheduled()).await;
        }
        let (user, outcome) = match run_request(&event) {
            Ok((user, force)) => (Some(user), Box::pin(self.run_target(user, force)).await),
            Err(e) => (None, Err(e)),
        };
        match outcome {
            Ok(report) => {
                self.publish(std::slice::from_ref(&report), None).await;
                serde_json::to_value(report).map_err(|e| Error::internal("writing the report", e))
            }
            // An operator's run: the refusal is the answer.
            Err(e) => {
                let (name, body) = crate::error::error_reply(&e);
                let mut error = serde_json::to_value(body).map_err(|e| Error::internal("writing the report", e))?;
                error["type"] = json!(name.as_str());
                let mut answer = json!({"error": error});
                if let Some(user) = user {
                    answer["userName"] = json!(user);
                }
                Ok(answer)
            }
        }
    }

    /// Every target, one after another; a target that fails does not stop the others.
    pub async fn scheduled(&self) -> Result<Value, Error> {
        let listed = self.ports.targets.list().await?;
        let records = listed.records;
        let mut reports = Vec::new();
        // A row that is not a valid target is not rotated, and counts as a failure (alarmed).
        for (user, why) in listed.invalid {
            tracing::error!(user_name = %user, error = %why, "a rotation target that does not validate is not rotated");
            reports.push(TargetReport::failed(&user, why));
        }
        let mut not_started = 0;
        for record in &records {
            if !deadline::allows(Duration::ZERO, PER_TARGET) {
                not_started += 1;
                continue;
            }
            let user = &record.spec.user_name;
            if record.state.nothing_due(&record.spec, self.services.now()) && self.current_key_is_active(record).await {
                let mut report = TargetReport::new(user);
                report.current(record.state.current.as_ref());
                reports.push(report);
                continue;
            }
            let report = match self.run_target(user, false).await {
                Ok(report) => report,
                Err(e) => {
                    tracing::error!(user_name = %user, error = %e, "rotation failed");
                    TargetReport::failed(user, e.to_string())
                }
            };
            reports.push(report);
        }
        let over_max = self.publish(&reports, Some(&records)).await;
        let failures: usize = reports.iter().map(TargetReport::failures).sum();
        tracing::info!(
            targets = records.len(),
            failures,
            not_started,
            keys_over_max_age = over_max,
            "rotation run done"
        );
        Ok(
            json!({"targets": records.len(), "failures": failures, "notStarted": not_started, "keysOverMaxAge": over_max}),
        )
    }

    /// Whether IAM still has the target's current key, active: one `ListAccessKeys`, so that a key
    /// deactivated or deleted behind the rotator's back (an exposed key, say) is replaced at the
    /// next run, not when it would have been due. An IAM failure counts as "look closer".
    async fn current_key_is_active(&self, record: &TargetRecord) -> bool {
        let Some(current) = &record.state.current else { return false };
        match self.ports.keys.list(&record.spec.user_name).await {
            Ok(keys) => keys.iter().any(|k| k.key_id == current.key_id && k.active),
            Err(_) => false,
        }
    }

    /// Rotates (or catches up) one target, holding its lease.
    pub async fn run_target(&self, user: &str, force: bool) -> Result<TargetReport, Error> {
        let holder = format!("{:016x}", fastrand::u64(..));
        let now = self.services.now();
        let until = now + deadline::remaining().map_or(LEASE_SECS, |d| d.as_secs() as i64 + 1);
        let lease = format!("access-key-rotation/{user}");
        if let Lease::HeldUntil(t) = self.services.leases.acquire(&lease, &holder, now, until).await? {
            return Err(Error::RotationRunning { retry_after_seconds: (t - now).clamp(1, 900) as u64 });
        }
        // Boxed: the state machine is deep, and the functions' futures stay small.
        let outcome = Box::pin(self.locked(user, force)).await;
        if let Err(e) = self.services.leases.release(&lease, &holder).await {
            tracing::warn!(user_name = %user, error = %e, "could not release the rotation lease; it expires by itself");
        }
        match &outcome {
            Ok(report) => tracing::info!(
                user_name = %user,
                outcome = report.outcome.as_str(),
                current_key_id = report.current_key_id.as_deref().unwrap_or(""),
                failures = report.failures(),
                github_writes = report.github_writes,
                paced_ms = report.paced_ms,
                "rotation target done"
            ),
            Err(e) => tracing::warn!(user_name = %user, error = %e, "rotation target refused or failed"),
        }
        outcome
    }
}

/// The user and `force` of a run request, or every way it is malformed.
fn run_request(event: &Value) -> Result<(&str, bool), Error> {
    let mut problems = Vec::new();
    let user = match event.get("userName") {
        Some(Value::String(user)) => match crate::domain::rotation::user_name_problem(user) {
            None => Some(user.as_str()),
            Some(problem) => {
                problems.push(FieldError::new("/userName", problem));
                None
            }
        },
        _ => {
            problems.push(FieldError::new("/userName", "must be a string"));
            None
        }
    };
    let force = match event.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(force)) => *force,
        Some(_) => {
            problems.push(FieldError::new("/force", "must be true or false"));
            false
        }
    };
    match user {
        Some(user) if problems.is_empty() => Ok((user, force)),
        _ => Err(Error::invalid_fields(problems)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_reserve_counts_aws_calls_as_long_as_the_sdk_lets_them_take() {
        assert_eq!(END_RESERVE, Duration::from_secs(45));
    }
}
