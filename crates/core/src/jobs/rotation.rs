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

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use appcreds_wire::Target;
use reqwest::Method;

use crate::deadline;
use crate::domain::rotation::{
    Creating, Destination, DestinationState, KeyRef, REGION_VARIABLE, RotationState, TargetSpec, Visibility,
    hours_since, key_to_make_room, token_scope,
};
use crate::domain::secret::Secret;
use crate::error::{Error, FieldError};
use crate::github::Auth;
use crate::github::secrets::{self, Place};
use crate::ports::{AccessKeys, Lease, Metric, Pending, RotationStore, Services, TargetRecord, Unit, Vault};
use crate::tokens::installation::{InstallationTokens, Lookup};

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
const AWS_CALL: Duration = Duration::from_secs(8);
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

/// What happened to one destination in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationReport {
    /// [`Destination::id`].
    pub destination: String,
    /// `written`, `failed`, `not-attempted` or `up-to-date`.
    pub status: &'static str,
    /// The key it holds, as far as appcreds knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What one run did to one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetReport {
    /// The IAM user.
    pub user_name: String,
    /// `rotated`, `caught-up`, `partial`, `up-to-date` or `failed`.
    pub outcome: &'static str,
    /// The current key, and when it was created (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_key_created: Option<i64>,
    /// The key deactivated by this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deactivated_key_id: Option<String>,
    /// Keys deleted by this run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deleted_key_ids: Vec<String>,
    /// Each destination's outcome.
    pub destinations: Vec<DestinationReport>,
    /// Why the run failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// GitHub writes in this run, and how long pacing held them back (ms).
    pub github_writes: usize,
    pub paced_ms: u64,
    /// Why the run's writes stopped (throttled, out of time), if they did.
    #[serde(skip)]
    stop_reason: Option<String>,
}

impl TargetReport {
    fn new(user: &str) -> Self {
        TargetReport {
            user_name: user.to_string(),
            outcome: "up-to-date",
            current_key_id: None,
            current_key_created: None,
            deactivated_key_id: None,
            deleted_key_ids: Vec::new(),
            destinations: Vec::new(),
            error: None,
            github_writes: 0,
            paced_ms: 0,
            stop_reason: None,
        }
    }

    /// A target that failed as a whole (refused, or an invalid row), and why.
    fn failed(user: &str, why: String) -> Self {
        TargetReport { outcome: "failed", error: Some(why), ..TargetReport::new(user) }
    }

    /// Notes the current key.
    fn current(&mut self, key: Option<&KeyRef>) {
        self.current_key_id = key.map(|k| k.key_id.clone());
        self.current_key_created = key.map(|k| k.at);
    }

    /// Destinations that failed in this run.
    pub fn failures(&self) -> usize {
        self.destinations.iter().filter(|d| d.error.is_some()).count()
            + usize::from(self.error.is_some() && self.outcome != "waiting")
    }
}

/// Spaces content-creating GitHub requests (GitHub's secondary rate limits): at most
/// `per_minute` a minute, evenly, and `per_hour` in any hour; shared by every run of the process.
struct Pacer {
    interval: Duration,
    per_hour: usize,
    state: Mutex<PacerState>,
}

struct PacerState {
    next: Instant,
    sent: VecDeque<Instant>,
}

impl Pacer {
    fn new(per_minute: u32, per_hour: usize) -> Self {
        Pacer {
            interval: Duration::from_secs(60) / per_minute.max(1),
            per_hour,
            state: Mutex::new(PacerState { next: Instant::now(), sent: VecDeque::new() }),
        }
    }

    /// Waits for room for `n` writes; the wait, or why there is none in this run.
    async fn permit(&self, n: usize) -> Result<Duration, Error> {
        let wait = {
            let mut s = self.state.lock().await;
            let now = Instant::now();
            while s.sent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(3600)) {
                s.sent.pop_front();
            }
            if s.sent.len() + n > self.per_hour {
                let free_at =
                    s.sent.front().map_or(Duration::ZERO, |t| Duration::from_secs(3600) - now.duration_since(*t));
                return Err(Error::Throttled {
                    service: "GitHub (writes this hour)",
                    retry_after_seconds: free_at.as_secs().max(1),
                });
            }
            let start = s.next.max(now);
            let wait = start - now;
            if !deadline::allows(wait, END_RESERVE + PAIR_RESERVE) {
                return Err(Error::OutOfTime);
            }
            s.next = start + self.interval * n as u32;
            s.sent.extend(std::iter::repeat_n(start, n));
            wait
        };
        tokio::time::sleep(wait).await;
        Ok(wait)
    }

    /// Counts `n` writes that go now whatever the budget (a key ID put back, a second secret sent
    /// again: the pair must match), so that the writes after them are spaced and counted as GitHub
    /// counts them.
    async fn record(&self, n: usize) {
        let mut s = self.state.lock().await;
        let now = Instant::now();
        s.next = s.next.max(now) + self.interval * n as u32;
        s.sent.extend(std::iter::repeat_n(now, n));
    }

    /// GitHub asked to wait: nothing more is written before then.
    fn hold_off_now(&self, secs: u64) {
        if let Ok(mut s) = self.state.try_lock() {
            s.next = s.next.max(Instant::now() + Duration::from_secs(secs));
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

/// One owner's token for a run.
struct OwnerToken {
    token: Secret,
    /// Repository name (lower case) → ID, as GitHub granted them.
    repository_ids: Vec<(String, i64)>,
    /// Whether it carries the variables' permissions (asked for with a region, and granted).
    variables: bool,
}

/// What a destination's secret goes with before this run writes it.
#[derive(Debug, PartialEq, Eq)]
enum Held {
    /// The state recorded this key ID for it.
    Key(String),
    /// The rotator never wrote it, or only failed to. In the run that made the new key, a working
    /// pair of the user there can only be the key being replaced (a user has two keys at most);
    /// in a later run it may be the new pair.
    NeverWritten,
    /// The state cannot vouch for it (written under other names, or by a run that stopped
    /// before recording what it wrote).
    Unknown,
}

impl Held {
    /// The key ID the destination's secret goes with now, if the state can vouch for it: the one
    /// recorded, written under the names and place the spec has now (`fingerprint`), not left
    /// unknown by a failed put-back, and no run since may have written it without recording that
    /// (`trusted`).
    fn of(recorded: Option<&DestinationState>, fingerprint: &str, trusted: bool) -> Held {
        let same_place = recorded.and_then(|s| s.fingerprint.as_deref()).is_none_or(|f| f == fingerprint);
        match recorded {
            _ if !trusted || !same_place => Held::Unknown,
            Some(s) if s.unknown => Held::Unknown,
            Some(DestinationState { key_id: Some(id), .. }) => Held::Key(id.clone()),
            _ => Held::NeverWritten,
        }
    }
}

/// One destination's secrets, with the token and public key that write them.
struct Put<'a> {
    github: &'a crate::github::GitHubClient,
    token: &'a Secret,
    place: &'a Place<'a>,
    key: &'a secrets::SecretsKey,
}

impl Put<'_> {
    async fn secret(&self, name: &str, value: &Secret) -> Result<secrets::Written, Error> {
        secrets::put_secret(self.github, self.token, self.place, self.key, name, value).await
    }
}

impl Rotator {
    /// The rotator on `services` (signer, App and Installation tables, GitHub, leases, metrics)
    /// and `ports`.
    pub fn new(services: &Services, ports: RotatorPorts, settings: RotatorSettings) -> Self {
        let pacer = Pacer::new(settings.writes_per_minute, settings.writes_per_hour);
        Rotator { tokens: InstallationTokens::new(services), services: services.clone(), ports, settings, pacer }
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
                let (name, body) = crate::http::error_reply(&e);
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
        if let Some(leases) = &self.services.leases
            && let Lease::HeldUntil(t) = leases.acquire(&lease, &holder, now, until).await?
        {
            return Err(Error::RotationRunning { retry_after_seconds: (t - now).clamp(1, 900) as u64 });
        }
        // Boxed: the state machine is deep, and the functions' futures stay small.
        let outcome = Box::pin(self.locked(user, force)).await;
        if let Some(leases) = &self.services.leases
            && let Err(e) = leases.release(&lease, &holder).await
        {
            tracing::warn!(user_name = %user, error = %e, "could not release the rotation lease; it expires by itself");
        }
        match &outcome {
            Ok(report) => tracing::info!(
                user_name = %user,
                outcome = report.outcome,
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

    async fn locked(&self, user: &str, force: bool) -> Result<TargetReport, Error> {
        let record = self.ports.targets.get(user).await?.ok_or_else(|| {
            Error::RotationRefused(format!(
                "no rotation target for IAM user {user:?}; add one with `appcreds rotation put`"
            ))
        })?;
        let TargetRecord { spec, mut state, pending, mut version } = record;
        let mut report = TargetReport::new(user);
        let now = self.services.now();
        let grace = i64::from(spec.grace_hours) * 3600;
        state.last_run = Some(now);

        let iam_user = self
            .ports
            .keys
            .user(user)
            .await?
            .ok_or_else(|| Error::RotationRefused(format!("IAM has no user {user:?}")))?;
        if iam_user.name != user {
            // IAM names ignore case: two spellings would be two targets fighting over one user's keys.
            return Err(Error::RotationRefused(format!(
                "the target names IAM user {user:?}, which IAM spells {:?}: put the target under that exact name",
                iam_user.name
            )));
        }
        if !iam_user.path.starts_with(&self.settings.allowed_path) {
            return Err(Error::RotationRefused(format!(
                "IAM user {user:?} has path {:?}, outside {:?}, the only path this rotator may manage",
                iam_user.path, self.settings.allowed_path
            )));
        }
        let mut keys = self.ports.keys.list(user).await?;

        // What IAM no longer has is forgotten.
        let exists = |id: &str, keys: &[crate::ports::AccessKeyInfo]| keys.iter().any(|k| k.key_id == id);
        if state.current.as_ref().is_some_and(|k| !exists(&k.key_id, &keys)) {
            state.current = None;
        }
        if state.retiring.as_ref().is_some_and(|k| !exists(&k.key_id, &keys)) {
            state.retiring = None;
        }
        // A run that died between creating a key and recording it: that key was never handed
        // out (destinations are written only after it is recorded), so it goes.
        if let Some(creating) = state.creating.take() {
            let known = |id: &str| {
                creating.existing.iter().any(|e| e == id)
                    || state.current.as_ref().is_some_and(|k| k.key_id == id)
                    || state.retiring.as_ref().is_some_and(|k| k.key_id == id)
            };
            // Created around the marker (a minute's clock skew allowed, and the call's own time),
            // and only one: a key made by hand since is not the rotator's to delete.
            let orphans: Vec<String> = keys
                .iter()
                .filter(|k| !known(&k.key_id) && (creating.at - 60..=creating.at + 120).contains(&k.created))
                .map(|k| k.key_id.clone())
                .collect();
            if orphans.len() > 1 {
                return Err(Error::RotationRefused(format!(
                    "keys {orphans:?} were created since an interrupted run and none is recorded; delete the one \
                     nobody uses by hand"
                )));
            }
            for id in orphans {
                tracing::warn!(user_name = %user, key_id = %id, "deleting a key an interrupted run created and never recorded");
                self.delete_key(user, id, &mut keys, &mut report).await?;
            }
        }
        // A retiring key already inactive with nothing behind: a run deactivated it and could not
        // record that. It is the replaced key, in its grace period from now.
        if let Some(retiring) = state.retiring.clone()
            && state.behind(&spec).is_empty()
            && keys.iter().any(|k| k.key_id == retiring.key_id && !k.active)
        {
            state.retiring = None;
            state.previous = Some(KeyRef { key_id: retiring.key_id, at: now });
        }
        // A current key deactivated outside the rotator (an exposed key, say) is no longer the
        // current one: it is replaced now, and as an inactive key it may make room.
        if let Some(current) = state.current.clone()
            && keys.iter().any(|k| k.key_id == current.key_id && !k.active)
        {
            tracing::warn!(user_name = %user, key_id = %current.key_id, "the current key was deactivated outside the rotator; replacing it");
            state.current = None;
        }
        // 1. A replaced key whose grace period is over goes.
        if let Some(previous) = state.previous.clone() {
            let listed = keys.iter().find(|k| k.key_id == previous.key_id);
            match listed {
                None => state.previous = None,
                Some(k) if !k.active && now >= previous.at + grace => {
                    self.delete_key(user, previous.key_id, &mut keys, &mut report).await?;
                    state.previous = None;
                }
                Some(_) => {}
            }
        }

        let current_active =
            state.current.as_ref().is_some_and(|c| keys.iter().any(|k| k.key_id == c.key_id && k.active));
        let behind: Vec<Destination> = state.behind(&spec).into_iter().cloned().collect();
        // A run stopped while writing, but everything it wrote was recorded: the state can vouch
        // for every destination again.
        if behind.is_empty() {
            state.writing = None;
        }
        let aged = state.aged(&spec, now);
        let can_catch_up = current_active && pending.is_some();
        let rotate = !current_active
            || (force && behind.is_empty())
            || (behind.is_empty() && aged)
            || (!behind.is_empty() && !can_catch_up);

        let context = |key_id| [("appcreds:UserName", user), ("appcreds:AccessKeyId", key_id)];
        let secret = if rotate {
            // A key is made only with time to prove it and write at least one destination.
            if !deadline::allows(Duration::ZERO, self.settings.key_wait + END_RESERVE + FIRST_DESTINATION) {
                return Err(Error::OutOfTime);
            }
            // 2. Room, then the new key, recorded (encrypted) before anything else.
            match key_to_make_room(&keys, &state, grace, now) {
                Err(why) => {
                    state.last_error = Some(why.clone());
                    self.save(user, &state, Pending::Keep, &mut version).await?;
                    // Only a replaced key's grace period in the way: this clears by itself.
                    let waiting =
                        current_active && state.retiring.is_none() && keys.iter().filter(|k| k.active).count() < 2;
                    if waiting {
                        report.outcome = "waiting";
                        report.current(state.current.as_ref());
                        report.error = Some(why);
                        return Ok(report);
                    }
                    return Err(Error::RotationRefused(why));
                }
                Ok(Some(id)) => {
                    if state.previous.as_ref().is_some_and(|p| p.key_id == id) {
                        state.previous = None;
                    }
                    self.delete_key(user, id, &mut keys, &mut report).await?;
                }
                Ok(None) => {}
            }
            let old = keys.iter().find(|k| k.active).map(|k| KeyRef { key_id: k.key_id.clone(), at: k.created });
            state.creating = Some(Creating { at: now, existing: keys.iter().map(|k| k.key_id.clone()).collect() });
            self.save(user, &state, Pending::Keep, &mut version).await?;
            let new = self.ports.keys.create(user).await?;
            let sealed = match self.ports.vault.seal(&context(&new.key_id), &new.secret).await {
                Ok(sealed) => sealed,
                Err(e) => {
                    // Nothing holds the key yet: it goes, and the old one stays as it was.
                    self.undo_create(user, &new.key_id).await;
                    return Err(e);
                }
            };
            let created = if new.created > 0 { new.created } else { now };
            state.current = Some(KeyRef { key_id: new.key_id.clone(), at: created });
            // The key being replaced: still active until every destination holds the new one.
            if state.retiring.is_none() {
                state.retiring = old;
            }
            state.creating = None;
            state.last_error = None;
            if let Err(e) = self.save(user, &state, Pending::Set(sealed), &mut version).await {
                self.undo_create(user, &new.key_id).await;
                return Err(e);
            }
            tracing::info!(
                target: "appcreds::audit",
                user_name = %user,
                key_id = %new.key_id,
                secret_sha256 = %new.secret.sha256_hex(),
                replaces = state.retiring.as_ref().map_or("", |k| k.key_id.as_str()),
                "access key created for rotation"
            );
            report.outcome = "rotated";
            Some(new.secret)
        } else if !behind.is_empty() {
            let current = state.current.as_ref().map_or("", |c| c.key_id.as_str());
            let sealed = pending.as_deref().unwrap_or_default();
            report.outcome = "caught-up";
            Some(self.ports.vault.open(&context(current), sealed).await?)
        } else {
            None
        };
        let current = state.current.clone().ok_or_else(|| Error::internal("rotating a key", "no current key"))?;
        report.current(Some(&current));

        if let Some(secret) = secret {
            // 3. The key works before any destination gets it.
            if let Err(e) = self.wait_until_works(&current.key_id, &secret, &iam_user.arn).await {
                state.last_error = Some(e.to_string());
                self.save(user, &state, Pending::Keep, &mut version).await?;
                return Err(e);
            }
            // 4. Every destination that is behind (all of them for a new key).
            let targets: Vec<Destination> = if rotate { spec.destinations.clone() } else { behind };
            let retiring = state.retiring.as_ref().map(|k| k.key_id.clone());
            let run = Run {
                user,
                spec: &spec,
                key_id: &current.key_id,
                secret: &secret,
                made_key: rotate,
                retiring: retiring.as_deref(),
                trusted: state.writing.is_none(),
            };
            Box::pin(self.write_destinations(&run, &targets, &mut state, &mut report, &mut version)).await?;
            drop(secret);
        }
        for d in &spec.destinations {
            let id = d.id();
            if !report.destinations.iter().any(|r| r.destination == id) {
                let key_id = state.destinations.get(&id).and_then(|s| s.key_id.clone());
                report.destinations.push(DestinationReport {
                    destination: id,
                    status: "up-to-date",
                    key_id,
                    error: None,
                });
            }
        }
        // Forget destinations no longer in the spec.
        state.destinations.retain(|id, _| spec.destinations.iter().any(|d| &d.id() == id));

        // 5. All caught up: the old key is deactivated, the encrypted secret dropped. What was
        // written is saved first, so a failure to deactivate loses nothing.
        if state.behind(&spec).is_empty() {
            if let Some(old) = state.retiring.clone() {
                self.save(user, &state, Pending::Keep, &mut version).await?;
                self.ports.keys.set_active(user, &old.key_id, false).await?;
                report.deactivated_key_id = Some(old.key_id.clone());
                state.retiring = None;
                state.previous = Some(KeyRef { key_id: old.key_id, at: now });
            }
            state.last_error = None;
            let pending_after = if pending.is_some() || rotate { Pending::Clear } else { Pending::Keep };
            self.save(user, &state, pending_after, &mut version).await?;
        } else {
            report.outcome = "partial";
            self.save(user, &state, Pending::Keep, &mut version).await?;
        }
        Ok(report)
    }

    async fn save(&self, user: &str, state: &RotationState, pending: Pending, version: &mut i64) -> Result<(), Error> {
        *version = self.ports.targets.save_state(user, state, pending, *version).await?;
        Ok(())
    }

    /// Deletes key `id` of `user`, and takes it off `keys` and into the report.
    async fn delete_key(
        &self,
        user: &str,
        id: String,
        keys: &mut Vec<crate::ports::AccessKeyInfo>,
        report: &mut TargetReport,
    ) -> Result<(), Error> {
        self.ports.keys.delete(user, &id).await?;
        keys.retain(|k| k.key_id != id);
        report.deleted_key_ids.push(id);
        Ok(())
    }

    async fn undo_create(&self, user: &str, key_id: &str) {
        if let Err(e) = self.ports.keys.delete(user, key_id).await {
            tracing::error!(user_name = %user, key_id, error = %e, "could not delete a new key that was never handed out; delete it by hand");
        }
    }

    /// Until STS answers the user's ARN for the key, within [`RotatorSettings::key_wait`] and the
    /// deadline.
    async fn wait_until_works(&self, key_id: &str, secret: &Secret, user_arn: &str) -> Result<(), Error> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(500);
        loop {
            match self.ports.keys.identity(key_id, secret).await {
                Ok(Some(arn)) if arn == user_arn => return Ok(()),
                Ok(_) => {}
                Err(Error::Throttled { .. }) => {}
                Err(e) => return Err(e),
            }
            let waited = started.elapsed();
            if waited + delay > self.settings.key_wait || !deadline::allows(delay, END_RESERVE + FIRST_DESTINATION) {
                return Err(Error::Internal {
                    context: "waiting for the new access key",
                    source: Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(format!(
                        "AWS did not accept key {key_id} within {} s; it is kept and retried on the next run",
                        waited.as_secs()
                    ))),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Writes `destinations`, owner by owner, saving the state every [`SAVE_EVERY`] destinations
    /// so that a run cut short keeps what it did. The state says "writing" (saved) while it does:
    /// a run that finds it so does not trust what the state says its destinations hold.
    async fn write_destinations(
        &self,
        run: &Run<'_>,
        destinations: &[Destination],
        state: &mut RotationState,
        report: &mut TargetReport,
        version: &mut i64,
    ) -> Result<(), Error> {
        let now = self.services.now();
        if !run.trusted {
            tracing::warn!(user_name = %run.user, "a run before this one stopped while writing destinations; no key ID is put back on them until each is written");
        }
        state.writing = Some(now);
        self.save(run.user, state, Pending::Keep, version).await?;
        let mut stop: Option<String> = None;
        let mut since_save = 0;
        for (owner, group) in TargetSpec::by_owner(destinations) {
            // With a region, the variables' permissions are asked for, until GitHub refuses them.
            let mut variables = run.spec.region.is_some();
            // One token for the owner's destinations; if GitHub refuses it (a repository gone from
            // the installation, a permission not granted), one per destination, so that the others
            // still get the key.
            let mut batches = VecDeque::from([group]);
            while let Some(batch) = batches.pop_front() {
                let token = match &stop {
                    Some(_) => None,
                    None if !deadline::allows(Duration::ZERO, END_RESERVE + FIRST_DESTINATION) => {
                        stop = Some(Error::OutOfTime.to_string());
                        None
                    }
                    None => match self.owner_token(run.spec.app_id, &owner, &batch, variables).await {
                        Ok(token) => {
                            variables = token.variables;
                            Some(token)
                        }
                        Err(Error::GitHubRejected { status: 422, .. }) if batch.len() > 1 => {
                            tracing::warn!(user_name = %run.user, owner, "GitHub refused a token for all of the owner's destinations; asking for one per destination");
                            for d in batch.into_iter().rev() {
                                batches.push_front(vec![d]);
                            }
                            continue;
                        }
                        Err(e) => {
                            let message = github_message(&e);
                            for d in &batch {
                                let outcome = Outcome::Failed(format!("no token for {owner}: {message}"));
                                record(state, report, run, d, outcome, now);
                            }
                            if matches!(e, Error::OutOfTime | Error::Throttled { .. }) {
                                stop = Some(message);
                            }
                            continue;
                        }
                    },
                };
                for d in &batch {
                    let (Some(token), None) = (&token, &stop) else {
                        let why = stop.clone().unwrap_or_default();
                        record(state, report, run, d, Outcome::NotAttempted(why), now);
                        continue;
                    };
                    let outcome = self.write_one(run, d, token, state, report).await;
                    if !matches!(outcome, Outcome::Written | Outcome::WrittenWithWarning(_))
                        && let Some(why) = &report.stop_reason
                    {
                        stop = Some(why.clone());
                    }
                    record(state, report, run, d, outcome, now);
                    since_save += 1;
                    if since_save >= SAVE_EVERY {
                        since_save = 0;
                        if let Err(e) = self.save(run.user, state, Pending::Keep, version).await {
                            // The token goes even so.
                            self.revoke(&token.token).await;
                            return Err(e);
                        }
                    }
                }
                if let Some(token) = token {
                    self.revoke(&token.token).await;
                }
            }
        }
        // Recorded by the caller's next save, with what was written.
        state.writing = None;
        Ok(())
    }

    /// A token for `owner`'s destinations: exactly their repositories, least permissions. With
    /// `variables` (a region to write) it also asks for the variables' permissions; if GitHub
    /// refuses that (422: not granted to the installation), it asks again without them, and the
    /// variables are reported as not written.
    async fn owner_token(
        &self,
        app_id: i64,
        owner: &str,
        group: &[&Destination],
        variables: bool,
    ) -> Result<OwnerToken, Error> {
        let mint = |variables: bool| {
            let scope = token_scope(group, variables);
            async move {
                self.tokens
                    .issue(app_id, &Target::Owner(owner.to_string()), Lookup::ByName, |_| Ok((None, scope.clone())))
                    .await
            }
        };
        // Environment variables need no permission beyond the secrets': nothing to ask without.
        let variables_asked = variables && token_scope(group, true) != token_scope(group, false);
        let (issued, variables) = match mint(variables).await {
            Err(Error::GitHubRejected { status: 422, message, .. }) if variables_asked => {
                tracing::warn!(owner, %message, "GitHub refused a token with the variables' permission; asking without it");
                (mint(false).await?, false)
            }
            other => (other?, variables),
        };
        let granted = &issued.token.granted;
        let repository_ids = granted
            .repository_names
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .zip(granted.repository_ids.iter().copied())
            .collect();
        tracing::info!(
            target: "appcreds::audit",
            app_id,
            installation_id = issued.record.installation_id,
            owner,
            hashed_token = %issued.token.token.sha256_base64(),
            token_sha256 = %issued.token.token.sha256_hex(),
            purpose = "access-key-rotation",
            "installation token minted for the rotator"
        );
        Ok(OwnerToken { token: issued.token.token, repository_ids, variables })
    }

    /// Writes one destination. The two secrets go back to back. If the second does not land
    /// after the first was written, the first is put back to the key the destination's secret
    /// goes with (still active), so that the destination never holds a mismatched pair; whether
    /// it landed, when GitHub's answer does not say, is read from the secrets' `updated_at`. A
    /// failed `AWS_REGION` variable does not undo the key: it is reported, and the destination
    /// counts as written.
    async fn write_one(
        &self,
        run: &Run<'_>,
        destination: &Destination,
        token: &OwnerToken,
        state: &RotationState,
        report: &mut TargetReport,
    ) -> Outcome {
        let held = Held::of(state.destinations.get(&destination.id()), &destination.fingerprint(run.spec), run.trusted);
        let github = match self.services.github() {
            Ok(github) => github,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let place = match place_of(destination, token) {
            Ok(place) => place,
            Err(e) => return Outcome::Failed(github_message(&e)),
        };
        // Room for the public key's read and the writes, within the pace and the deadline.
        match self.pacer.permit(2).await {
            Ok(waited) => report.paced_ms += waited.as_millis() as u64,
            Err(e) => {
                report.stop_reason = Some(github_message(&e));
                return Outcome::NotAttempted(github_message(&e));
            }
        }
        let key = match secrets::public_key(github, &token.token, &place).await {
            Ok(key) => key,
            Err(e) => return self.failed(report, e),
        };
        let names = &run.spec.secret_names;
        let put = Put { github, token: &token.token, place: &place, key: &key };
        report.github_writes += 1;
        let new_id = Secret::new(run.key_id);
        if let Err(e) = put.secret(&names.access_key_id, &new_id).await {
            // A refusal wrote nothing; anything else (a timeout, a 5xx, or a throttle after the
            // client's retry of one of those) may have: the ID goes back, which is safe, as the
            // secret beside it was not touched.
            if refused_outright(&e) {
                return self.failed(report, e);
            }
            return self.put_back(run, destination, &put, &held, e, report).await;
        }
        // After the second secret's wait: its PUT, once more, the probe and a put-back.
        let then = END_RESERVE + CALL * 3 + PROBE;
        let mut maybe_landed = false;
        let mut second = self.put_waiting(&put, &names.secret_access_key, run.secret, then, report).await;
        if let Err(e) = &second
            && !refused_outright(e)
            && !matches!(e, Error::OutOfTime)
        {
            // It may or may not have landed: a PUT is safe to repeat, and landing it keeps the pair.
            maybe_landed = true;
            self.pacer.record(1).await;
            let then = END_RESERVE + CALL * 2 + PROBE;
            second = self.put_waiting(&put, &names.secret_access_key, run.secret, then, report).await;
        }
        if let Err(e) = second {
            // Only an outright refusal of the first attempt says for sure that nothing landed.
            let landed = match maybe_landed || !refused_outright(&e) {
                false => Some(false),
                true => self.landed(&put, names).await,
            };
            if landed != Some(true) {
                return self.put_back(run, destination, &put, &held, e, report).await;
            }
            tracing::info!(user_name = %run.user, destination = %destination.id(), "the second secret landed though GitHub's answer did not say so");
        }
        if let Some(region) = &run.spec.region {
            if !token.variables {
                let why = "the App's installation did not grant the variables' permission";
                return Outcome::WrittenWithWarning(format!("{REGION_VARIABLE} variable: {why}"));
            }
            let variable = async {
                report.paced_ms += self.pacer.permit(2).await?.as_millis() as u64;
                report.github_writes += 1;
                secrets::put_variable(github, &token.token, &place, REGION_VARIABLE, region).await
            };
            if let Err(e) = variable.await {
                return Outcome::WrittenWithWarning(format!("{REGION_VARIABLE} variable: {}", github_message(&e)));
            }
        }
        Outcome::Written
    }

    /// A `PUT` of one secret that waits out GitHub's `retry-after` once (up to
    /// [`MAX_PAIR_WAIT`]), where the wait leaves `then` before the deadline: for the writes that
    /// keep a pair matching. (The caller has paced the first attempt.)
    async fn put_waiting(
        &self,
        put: &Put<'_>,
        name: &str,
        value: &Secret,
        then: Duration,
        report: &mut TargetReport,
    ) -> Result<secrets::Written, Error> {
        report.github_writes += 1;
        match put.secret(name, value).await {
            Err(Error::Throttled { retry_after_seconds, .. })
                if Duration::from_secs(retry_after_seconds) <= MAX_PAIR_WAIT
                    && deadline::allows(Duration::from_secs(retry_after_seconds), then) =>
            {
                self.pacer.hold_off_now(retry_after_seconds);
                tokio::time::sleep(Duration::from_secs(retry_after_seconds)).await;
                report.paced_ms += retry_after_seconds * 1000;
                self.pacer.record(1).await;
                report.github_writes += 1;
                put.secret(name, value).await
            }
            other => other,
        }
    }

    /// Whether the second secret landed after the first (GitHub's `updated_at` of both, in its
    /// own clock); `None` if GitHub does not say within [`PROBE`].
    async fn landed(&self, put: &Put<'_>, names: &crate::domain::rotation::SecretNames) -> Option<bool> {
        let read = async {
            let first = updated_secs(put, &names.access_key_id).await?;
            let second = updated_secs(put, &names.secret_access_key).await?;
            Some(second >= first)
        };
        tokio::time::timeout(deadline::clamp(PROBE), read).await.ok().flatten()
    }

    /// After a write that did not complete the pair: the key ID goes back to the key the
    /// destination's secret goes with, if the state knows it. If it does not, what the
    /// destination holds is not known, and it is written again at the next run.
    async fn put_back(
        &self,
        run: &Run<'_>,
        destination: &Destination,
        put: &Put<'_>,
        held: &Held,
        e: Error,
        report: &mut TargetReport,
    ) -> Outcome {
        let old = match held {
            // In the run that made the key, a pair put there by hand (or by the tool the rotator
            // replaces) can work only with the key being replaced: the user's other key is the
            // new one, which nothing held before. Anything else was broken before, and stays no
            // worse. (In a later run, the destination may hold the new pair already: unknown.)
            Held::NeverWritten if run.made_key => match run.retiring.filter(|id| *id != run.key_id) {
                Some(id) => Secret::new(id),
                None => return self.failed(report, e),
            },
            Held::NeverWritten | Held::Unknown => {
                tracing::error!(
                    user_name = %run.user,
                    destination = %destination.id(),
                    error = %e,
                    "a pair was not completed where what the destination held is not known; it is written again at the next run"
                );
                return Outcome::Unknown(self.failure(report, e));
            }
            Held::Key(old) => Secret::new(old.as_str()),
        };
        self.pacer.record(1).await;
        let then = END_RESERVE + CALL;
        if let Err(put_back) = self.put_waiting(put, &run.spec.secret_names.access_key_id, &old, then, report).await {
            tracing::error!(
                user_name = %run.user,
                destination = %destination.id(),
                error = %put_back,
                "the access key ID could not be put back; the destination may hold a mismatched pair until the next run"
            );
            return Outcome::Unknown(self.failure(report, e));
        }
        // What the key ID now says is recorded: the next run can put it back again.
        Outcome::PutBack { error: self.failure(report, e), key_id: old.expose().to_string() }
    }

    /// A failed write: throttling holds the pacer back and stops the run's writes.
    fn failed(&self, report: &mut TargetReport, e: Error) -> Outcome {
        Outcome::Failed(self.failure(report, e))
    }

    /// [`Self::failed`]'s message.
    fn failure(&self, report: &mut TargetReport, e: Error) -> String {
        if let Error::Throttled { retry_after_seconds, .. } = &e {
            self.pacer.hold_off_now(*retry_after_seconds);
        }
        if matches!(e, Error::OutOfTime | Error::Throttled { .. }) {
            report.stop_reason = Some(github_message(&e));
        }
        github_message(&e)
    }

    /// Revokes a token, within [`REVOKE_BUDGET`] (part of [`END_RESERVE`]): one that is not
    /// revoked expires within the hour.
    async fn revoke(&self, token: &Secret) {
        let Ok(github) = self.services.github() else { return };
        let revoke = github.send(Method::DELETE, "/installation/token", Auth::Installation(token), None);
        match tokio::time::timeout(deadline::clamp(REVOKE_BUDGET), revoke).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not revoke the rotator's installation token; it expires within the hour")
            }
            Err(_) => {
                tracing::warn!("revoking the rotator's installation token took too long; it expires within the hour")
            }
        }
    }

    /// Publishes `KeyAgeHours` per target, `RotationFailures` and `KeysOverMaxAge`, and (for a
    /// scheduled run) the heartbeat `RotationRuns`; returns the keys over their maximum age.
    async fn publish(&self, reports: &[TargetReport], all: Option<&[TargetRecord]>) -> usize {
        let now = self.services.now();
        let mut data = Vec::new();
        let metric = |name: &'static str, dimensions: Vec<(&'static str, String)>, value: f64, unit: Unit| Metric {
            name,
            dimensions,
            value,
            unit,
            timestamp: now,
        };
        let mut over_max = 0;
        let reported: std::collections::HashMap<&str, &TargetReport> =
            reports.iter().map(|r| (r.user_name.as_str(), r)).collect();
        let users: Vec<(&str, Option<&TargetRecord>)> = match all {
            Some(records) => records.iter().map(|r| (r.spec.user_name.as_str(), Some(r))).collect(),
            None => reports.iter().map(|r| (r.user_name.as_str(), None)).collect(),
        };
        for (user, listed) in users {
            // The run's own view of the key, or the table's as the run's scan read it for a
            // target it did not start. Read again only for a target whose run failed (it may have
            // made a key before failing) or a single run's target, and only while time allows.
            let report = reported.get(user);
            let seen = report.and_then(|r| r.current_key_created);
            let (created, max_age_hours) = match (seen, listed) {
                (Some(created), Some(record)) => (Some(created), record.spec.max_age_hours),
                (None, Some(record)) if report.is_none() || !deadline::allows(Duration::ZERO, END_RESERVE) => {
                    (record.state.current.as_ref().map(|k| k.at), record.spec.max_age_hours)
                }
                _ => match self.ports.targets.get(user).await {
                    Ok(Some(record)) => (record.state.current.map(|k| k.at), record.spec.max_age_hours),
                    _ => continue,
                },
            };
            let age = created.map_or(0.0, |at| hours_since(at, now));
            if created.is_some() {
                data.push(metric(metrics::KEY_AGE_HOURS, vec![("UserName", user.to_string())], age, Unit::None));
            }
            if created.is_none() || age > f64::from(max_age_hours) {
                over_max += 1;
            }
        }
        let failures: usize = reports.iter().map(TargetReport::failures).sum();
        data.push(metric(metrics::ROTATION_FAILURES, Vec::new(), failures as f64, Unit::Count));
        data.push(metric(metrics::KEYS_OVER_MAX_AGE, Vec::new(), over_max as f64, Unit::Count));
        if all.is_some() {
            data.push(metric(metrics::ROTATION_RUNS, Vec::new(), 1.0, Unit::Count));
        }
        for chunk in data.chunks(crate::ports::METRICS_PER_PUT) {
            if let Err(e) = self.services.metrics.put(chunk.to_vec()).await {
                tracing::warn!(error = %e, "could not publish the rotation metrics");
            }
        }
        over_max
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

/// GitHub answered, and refused: nothing was written. (Not a throttle: the client retries a
/// `PUT` whose outcome was unknown, and a throttle may answer the retry of one that landed.)
fn refused_outright(e: &Error) -> bool {
    matches!(e, Error::GitHubRejected { .. } | Error::GitHubRefusedAppcreds { .. })
}

/// GitHub's own message for a failure, or the error's (neither ever holds a secret).
fn github_message(e: &Error) -> String {
    match e {
        Error::GitHubRejected { status, message, .. } | Error::GitHubRefusedAppcreds { status, message } => {
            format!("GitHub {status}: {message}")
        }
        Error::Internal { context, .. } => format!("{context} failed"),
        other => other.to_string(),
    }
}

/// What happened to one destination.
enum Outcome {
    Written,
    /// The key was written; something beside it (the region variable) was not.
    WrittenWithWarning(String),
    Failed(String),
    /// Held back before anything was sent (pacing, the deadline, an earlier throttle).
    NotAttempted(String),
    /// Failed where what the destination holds now is not known: it is written again (both
    /// secrets) at the next run.
    Unknown(String),
    /// Failed, and the key ID was put back to `key_id`, which the secret beside it goes with.
    PutBack {
        error: String,
        key_id: String,
    },
}

/// What a run writes.
struct Run<'a> {
    user: &'a str,
    spec: &'a TargetSpec,
    key_id: &'a str,
    secret: &'a Secret,
    /// Whether this run made the key: then no destination can hold it before this run writes it.
    made_key: bool,
    /// The key being replaced, still active.
    retiring: Option<&'a str>,
    /// Whether the state can vouch for what the destinations hold (no run before this one
    /// stopped while writing them).
    trusted: bool,
}

fn place_of<'a>(destination: &'a Destination, token: &OwnerToken) -> Result<Place<'a>, Error> {
    Ok(match destination {
        Destination::Repository { repository } => Place::Repository(repository),
        Destination::Environment { repository, environment } => Place::Environment { repository, environment },
        Destination::Organization { org, visibility, selected_repositories } => {
            let mut ids = Vec::new();
            if *visibility == Visibility::Selected {
                for name in selected_repositories {
                    let id = token.repository_ids.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, id)| *id);
                    ids.push(id.ok_or_else(|| Error::GitHubRejected {
                        status: 404,
                        message: format!("repository {name} is not in the App's installation on {org}"),
                        documentation_url: None,
                    })?);
                }
            }
            Place::Organization { org, visibility: *visibility, selected_repository_ids: ids }
        }
    })
}

/// A secret's `updated_at` in Unix seconds (GitHub's clock), if GitHub says.
async fn updated_secs(put: &Put<'_>, name: &str) -> Option<i64> {
    let at = secrets::updated_at(put.github, put.token, put.place, name).await.ok()?;
    let at = aws_smithy_types::DateTime::from_str(&at, aws_smithy_types::date_time::Format::DateTime).ok()?;
    Some(at.secs())
}

fn record(
    state: &mut RotationState,
    report: &mut TargetReport,
    run: &Run<'_>,
    destination: &Destination,
    outcome: Outcome,
    now: i64,
) {
    let entry = state.destinations.entry(destination.id()).or_default();
    let (status, error) = match outcome {
        Outcome::Written | Outcome::WrittenWithWarning(_) => {
            entry.key_id = Some(run.key_id.to_string());
            entry.fingerprint = Some(destination.fingerprint(run.spec));
            entry.written_at = Some(now);
            entry.unknown = false;
            entry.error = match outcome {
                Outcome::WrittenWithWarning(w) => Some(w),
                _ => None,
            };
            ("written", entry.error.clone())
        }
        Outcome::Failed(message) => {
            entry.error = Some(message.clone());
            ("failed", Some(message))
        }
        Outcome::PutBack { error, key_id } => {
            entry.key_id = Some(key_id);
            entry.fingerprint = Some(destination.fingerprint(run.spec));
            entry.error = Some(error.clone());
            ("failed", Some(error))
        }
        Outcome::Unknown(message) => {
            entry.key_id = None;
            entry.unknown = true;
            entry.error = Some(format!("{message} (what it holds is not known; written again at the next run)"));
            ("failed", entry.error.clone())
        }
        Outcome::NotAttempted(why) => {
            let message = format!("not attempted: {why}");
            entry.error = Some(message.clone());
            ("not-attempted", Some(message))
        }
    };
    // A run after one that stopped while writing cannot vouch for what it did not write itself:
    // until written, such a destination gets no key ID put back (the distrust outlives this run).
    if !run.trusted && status != "written" {
        entry.unknown = true;
    }
    report.destinations.push(DestinationReport {
        destination: destination.id(),
        status,
        key_id: entry.key_id.clone(),
        error,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_reserve_counts_aws_calls_as_long_as_the_sdk_lets_them_take() {
        assert_eq!(crate::aws::aws_timeouts().operation_timeout(), Some(AWS_CALL));
        assert_eq!(END_RESERVE, Duration::from_secs(45));
    }

    #[test]
    fn what_a_destination_holds_is_vouched_for_only_by_a_trusted_record_of_the_same_place() {
        let written = |unknown: bool| DestinationState {
            key_id: (!unknown).then(|| "AKIAOLD".to_string()),
            fingerprint: Some("f1".into()),
            unknown,
            ..DestinationState::default()
        };
        assert_eq!(Held::of(Some(&written(false)), "f1", true), Held::Key("AKIAOLD".into()));
        // Never written (no record, or only failures recorded): the key being replaced, if any.
        assert_eq!(Held::of(None, "f1", true), Held::NeverWritten);
        assert_eq!(Held::of(Some(&DestinationState::default()), "f1", true), Held::NeverWritten);
        // A put-back that failed: it may hold the new pair already, or half of it.
        assert_eq!(Held::of(Some(&written(true)), "f1", true), Held::Unknown);
        // Written under other names, or a run before stopped while writing.
        assert_eq!(Held::of(Some(&written(false)), "f2", true), Held::Unknown);
        assert_eq!(Held::of(Some(&written(false)), "f1", false), Held::Unknown);
        assert_eq!(Held::of(None, "f1", false), Held::Unknown);
    }

    #[tokio::test]
    async fn writes_that_must_go_are_counted_and_spaced_like_the_others() {
        // 60 a minute: one a second.
        let pacer = Pacer::new(60, 4);
        assert_eq!(pacer.permit(2).await.unwrap(), Duration::ZERO);
        // A key ID put back goes at once, and the next write waits for the three before it
        // (3 s from the first, less the moments these lines took).
        pacer.record(1).await;
        let waited = pacer.permit(1).await.unwrap();
        assert!(waited > Duration::from_secs(2) && waited <= Duration::from_secs(3), "{waited:?}");
        // Four writes this hour, one of them recorded: no room for a fifth.
        match pacer.permit(1).await {
            Err(Error::Throttled { retry_after_seconds, .. }) => assert!(retry_after_seconds > 3500),
            other => panic!("{other:?}"),
        }
        // A write that must go still goes, and is counted.
        pacer.record(1).await;
        assert_eq!(pacer.state.lock().await.sent.len(), 5);
    }
}
