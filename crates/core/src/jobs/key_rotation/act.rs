//! The actor: carries a target's [`Plan`] out against IAM, KMS and the rotation table (the
//! destinations' writes are in [`super::write`]), and records what it did.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::plan::{self, Deletion, Plan, Settle, Step};
use super::report::{DestinationReport, DestinationStatus, TargetOutcome, TargetReport};
use super::write::Run;
use super::{END_RESERVE, FIRST_DESTINATION, Rotator};
use crate::deadline;
use crate::domain::rotation::{Creating, Destination, KeyRef, RotationState, TargetSpec};
use crate::domain::secret::Secret;
use crate::error::Error;
use crate::ports::{IamUser, Pending, RotationStore, TargetRecord};

/// One target's run as it goes: the state as recorded so far (and the version it was saved at),
/// and the report.
pub(super) struct Ledger<'a> {
    pub user: &'a str,
    store: &'a dyn RotationStore,
    pub state: RotationState,
    version: i64,
    pub report: TargetReport,
}

impl Ledger<'_> {
    /// Saves the state (and `pending`, the current key's encrypted secret).
    pub async fn save(&mut self, pending: Pending) -> Result<(), Error> {
        self.version = self.store.save_state(self.user, &self.state, pending, self.version).await?;
        Ok(())
    }

    /// Records why the run stops, and saves it.
    async fn stop(&mut self, why: String) -> Result<(), Error> {
        self.state.last_error = Some(why);
        self.save(Pending::Keep).await
    }
}

impl Rotator {
    /// One target's run, holding its lease: it is planned from the table and IAM, then carried out.
    /// The plan's state records each deletion only once IAM has done it, so whatever is saved on the
    /// way says no more than IAM has done.
    pub(super) async fn locked(&self, user: &str, force: bool) -> Result<TargetReport, Error> {
        let record = self.ports.targets.get(user).await?.ok_or_else(|| {
            Error::RotationRefused(format!(
                "no rotation target for IAM user {user:?}; add one with `appcreds rotation put`"
            ))
        })?;
        let TargetRecord { spec, state, pending, version } = record;
        let now = self.services.now();
        let iam_user = self.managed_user(user).await?;
        let keys = self.ports.keys.list(user).await?;
        let Plan { state, deactivated_outside, steps } = plan::plan(&spec, state, &keys, pending.is_some(), force, now);
        if let Some(key_id) = deactivated_outside {
            tracing::warn!(user_name = %user, %key_id, "the current key was deactivated outside the rotator; replacing it");
        }
        let store = self.ports.targets.as_ref();
        let mut ledger = Ledger { user, store, state, version, report: TargetReport::new(user) };
        let mut secret = None;
        let mut created = false;
        for step in steps {
            match step {
                Step::Delete { key_id, why } => {
                    if why == Deletion::Orphan {
                        tracing::warn!(user_name = %user, %key_id, "deleting a key an interrupted run created and never recorded");
                    }
                    self.ports.keys.delete(user, &key_id).await?;
                    why.forget(&mut ledger.state, &key_id);
                    ledger.report.deleted_key_ids.push(key_id);
                }
                Step::Refuse(why) => return Err(Error::RotationRefused(why)),
                Step::CheckTime => {
                    if !deadline::allows(Duration::ZERO, self.settings.key_wait + END_RESERVE + FIRST_DESTINATION) {
                        return Err(Error::OutOfTime);
                    }
                }
                Step::Blocked { why, waiting } => {
                    ledger.stop(why.clone()).await?;
                    if !waiting {
                        return Err(Error::RotationRefused(why));
                    }
                    ledger.report.outcome = TargetOutcome::Waiting;
                    ledger.report.current(ledger.state.current.as_ref());
                    ledger.report.error = Some(why);
                    return Ok(ledger.report);
                }
                Step::Create { existing, retiring } => {
                    secret = Some(self.create(&mut ledger, existing, retiring, now).await?);
                    created = true;
                    ledger.report.outcome = TargetOutcome::Rotated;
                }
                Step::Open => {
                    let current = ledger.state.current.as_ref().map_or("", |c| c.key_id.as_str());
                    let sealed = pending.as_deref().unwrap_or_default();
                    ledger.report.outcome = TargetOutcome::CaughtUp;
                    secret = Some(self.ports.vault.open(&context(user, current), sealed).await?);
                }
                Step::Write { destinations, made_key } => {
                    let secret =
                        secret.take().ok_or_else(|| Error::internal("rotating a key", "no secret to write"))?;
                    let write = self.prove_and_write(&spec, &secret, made_key, &iam_user, &destinations, &mut ledger);
                    Box::pin(write).await?;
                }
            }
        }
        let current = current(&ledger.state)?;
        ledger.report.current(Some(&current));
        self.settle(&spec, ledger, pending.is_some(), created, now).await
    }

    /// The IAM user `user`, if the rotator may manage it.
    async fn managed_user(&self, user: &str) -> Result<IamUser, Error> {
        let iam_user = self
            .ports
            .keys
            .user(user)
            .await?
            .ok_or_else(|| Error::RotationRefused(format!("IAM has no user {user:?}")))?;
        match plan::user_refusal(user, &iam_user, &self.settings.allowed_path) {
            Some(why) => Err(Error::RotationRefused(why)),
            None => Ok(iam_user),
        }
    }

    /// Proves the current key works (its `secret`, for `spec`, which this run made or not), then
    /// writes `destinations` with it.
    async fn prove_and_write(
        &self,
        spec: &TargetSpec,
        secret: &Secret,
        made_key: bool,
        iam_user: &IamUser,
        destinations: &[Destination],
        ledger: &mut Ledger<'_>,
    ) -> Result<(), Error> {
        let current = current(&ledger.state)?;
        ledger.report.current(Some(&current));
        // The key works before any destination gets it.
        if let Err(e) = self.wait_until_works(&current.key_id, secret, &iam_user.arn).await {
            ledger.stop(e.to_string()).await?;
            return Err(e);
        }
        let retiring = ledger.state.retiring.as_ref().map(|k| k.key_id.clone());
        let run = Run {
            user: ledger.user,
            spec,
            key_id: &current.key_id,
            secret,
            made_key,
            retiring: retiring.as_deref(),
            trusted: ledger.state.writing.is_none(),
        };
        self.write_destinations(&run, destinations, ledger).await
    }

    /// Makes the new key and records it, encrypted, before anything else happens: first a marker
    /// (so that a run that dies before recording the key deletes it), then the key. The new
    /// key's secret, for the writes.
    async fn create(
        &self,
        ledger: &mut Ledger<'_>,
        existing: Vec<String>,
        retiring: Option<KeyRef>,
        now: i64,
    ) -> Result<Secret, Error> {
        let user = ledger.user;
        ledger.state.creating = Some(Creating { at: now, existing });
        ledger.save(Pending::Keep).await?;
        let new = self.ports.keys.create(user).await?;
        let sealed = match self.ports.vault.seal(&context(user, &new.key_id), &new.secret).await {
            Ok(sealed) => sealed,
            Err(e) => {
                // Nothing holds the key yet: it goes, and the old one stays as it was.
                self.undo_create(user, &new.key_id).await;
                return Err(e);
            }
        };
        let created = if new.created > 0 { new.created } else { now };
        let state = &mut ledger.state;
        state.current = Some(KeyRef { key_id: new.key_id.clone(), at: created });
        state.retiring = retiring;
        state.creating = None;
        state.last_error = None;
        if let Err(e) = ledger.save(Pending::Set(sealed)).await {
            self.undo_create(user, &new.key_id).await;
            return Err(e);
        }
        tracing::info!(
            target: "appcreds::audit",
            user_name = %user,
            key_id = %new.key_id,
            secret_sha256 = %new.secret.sha256_hex(),
            replaces = ledger.state.retiring.as_ref().map_or("", |k| k.key_id.as_str()),
            "access key created for rotation"
        );
        Ok(new.secret)
    }

    /// Ends the run: every destination of `spec` reported, the destinations no longer in it
    /// forgotten, and, when all hold the current key, the old key deactivated and the encrypted
    /// secret dropped. What was written is saved first, so a failure to deactivate loses nothing.
    async fn settle(
        &self,
        spec: &TargetSpec,
        mut ledger: Ledger<'_>,
        pending: bool,
        made_key: bool,
        now: i64,
    ) -> Result<TargetReport, Error> {
        for d in &spec.destinations {
            let id = d.id();
            if !ledger.report.destinations.iter().any(|r| r.destination == id) {
                let key_id = ledger.state.destinations.get(&id).and_then(|s| s.key_id.clone());
                let status = DestinationStatus::UpToDate;
                ledger.report.destinations.push(DestinationReport { destination: id, status, key_id, error: None });
            }
        }
        ledger.state.destinations.retain(|id, _| spec.destinations.iter().any(|d| &d.id() == id));
        match plan::settle(&ledger.state, spec, pending, made_key) {
            Settle::Partial => {
                ledger.report.outcome = TargetOutcome::Partial;
                ledger.save(Pending::Keep).await?;
            }
            Settle::Done { deactivate, clear_pending } => {
                if let Some(old) = deactivate {
                    ledger.save(Pending::Keep).await?;
                    self.ports.keys.set_active(ledger.user, &old.key_id, false).await?;
                    ledger.report.deactivated_key_id = Some(old.key_id.clone());
                    ledger.state.retiring = None;
                    ledger.state.previous = Some(KeyRef { key_id: old.key_id, at: now });
                }
                ledger.state.last_error = None;
                ledger.save(if clear_pending { Pending::Clear } else { Pending::Keep }).await?;
            }
        }
        Ok(ledger.report)
    }

    async fn undo_create(&self, user: &str, key_id: &str) {
        if let Err(e) = self.ports.keys.delete(user, key_id).await {
            tracing::error!(user_name = %user, key_id, error = %e, "could not delete a new key that was never handed out; delete it by hand");
        }
    }

    /// Until STS answers the user's ARN for the key, within [`RotatorSettings::key_wait`] and the
    /// deadline.
    ///
    /// [`RotatorSettings::key_wait`]: super::RotatorSettings::key_wait
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
}

/// The KMS encryption context of the user's key `key_id`.
fn context<'a>(user: &'a str, key_id: &'a str) -> [(&'static str, &'a str); 2] {
    [("appcreds:UserName", user), ("appcreds:AccessKeyId", key_id)]
}

/// The current key, which a run that gets past its plan always has.
fn current(state: &RotationState) -> Result<KeyRef, Error> {
    state.current.clone().ok_or_else(|| Error::internal("rotating a key", "no current key"))
}
