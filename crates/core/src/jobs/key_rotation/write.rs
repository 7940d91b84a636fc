//! Writing the destinations: one token per owner, the two secrets of each destination back to
//! back, and a pair left incomplete put back to what the destination held.

use std::collections::VecDeque;
use std::time::Duration;

use appcreds_wire::Target;
use reqwest::Method;

use super::act::Ledger;
use super::plan::{Held, PutBack, put_back};
use super::report::{DestinationReport, DestinationStatus, TargetReport};
use super::{CALL, END_RESERVE, FIRST_DESTINATION, MAX_PAIR_WAIT, PROBE, REVOKE_BUDGET, Rotator, SAVE_EVERY};
use crate::deadline;
use crate::domain::rotation::{Destination, REGION_VARIABLE, SecretNames, TargetSpec, Visibility, token_scope};
use crate::domain::secret::Secret;
use crate::error::Error;
use crate::github::Auth;
use crate::github::secrets::{self, Place};
use crate::ports::Pending;
use crate::tokens::installation::Lookup;

/// The caller the rotator's audit lines name for a token too wide (as its `credential issued`
/// lines name its purpose).
const ROTATOR: &str = "access-key-rotation";

/// One owner's token for a run.
struct OwnerToken {
    token: Secret,
    /// Repository name (lower case) → ID, as GitHub granted them.
    repository_ids: Vec<(String, i64)>,
    /// Whether it carries the variables' permissions (asked for with a region, and granted).
    variables: bool,
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
pub(super) struct Run<'a> {
    pub user: &'a str,
    pub spec: &'a TargetSpec,
    pub key_id: &'a str,
    pub secret: &'a Secret,
    /// Whether this run made the key: then no destination can hold it before this run writes it.
    pub made_key: bool,
    /// The key being replaced, still active.
    pub retiring: Option<&'a str>,
    /// Whether the state can vouch for what the destinations hold (no run before this one
    /// stopped while writing them).
    pub trusted: bool,
}

impl Rotator {
    /// Writes `destinations`, owner by owner, saving the state every [`SAVE_EVERY`] destinations
    /// so that a run cut short keeps what it did. The state says "writing" (saved) while it does:
    /// a run that finds it so does not trust what the state says its destinations hold.
    pub(super) async fn write_destinations(
        &self,
        run: &Run<'_>,
        destinations: &[Destination],
        ledger: &mut Ledger<'_>,
    ) -> Result<(), Error> {
        let now = self.services.now();
        if !run.trusted {
            tracing::warn!(user_name = %run.user, "a run before this one stopped while writing destinations; no key ID is put back on them until each is written");
        }
        ledger.state.writing = Some(now);
        ledger.save(Pending::Keep).await?;
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
                        Err(Error::GitHubRejected { status: 422, .. } | Error::BeyondInstallation { .. })
                            if batch.len() > 1 =>
                        {
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
                                ledger.record(run, d, outcome, now);
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
                        ledger.record(run, d, Outcome::NotAttempted(why), now);
                        continue;
                    };
                    let outcome = self.write_one(run, d, token, &ledger.state, &mut ledger.report).await;
                    if !matches!(outcome, Outcome::Written | Outcome::WrittenWithWarning(_))
                        && let Some(why) = &ledger.report.stop_reason
                    {
                        stop = Some(why.clone());
                    }
                    ledger.record(run, d, outcome, now);
                    since_save += 1;
                    if since_save >= SAVE_EVERY {
                        since_save = 0;
                        if let Err(e) = ledger.save(Pending::Keep).await {
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
        ledger.state.writing = None;
        Ok(())
    }

    /// A token for `owner`'s destinations: exactly their repositories, least permissions. With
    /// `variables` (a region to write) it also asks for the variables' permissions; if that is
    /// refused (not granted to the installation: the pre-flight check, or GitHub's 422), it asks
    /// again without them, and the
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
                    .inspect_err(|e| crate::tokens::audit_too_wide(ROTATOR, app_id, e))
            }
        };
        // Environment variables need no permission beyond the secrets': nothing to ask without.
        let variables_asked = variables && token_scope(group, true) != token_scope(group, false);
        let (issued, variables) = match mint(variables).await {
            Err(e @ (Error::GitHubRejected { status: 422, .. } | Error::BeyondInstallation { .. }))
                if variables_asked =>
            {
                tracing::warn!(owner, error = %e, "a token with the variables' permission was refused; asking without it");
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
            purpose = ROTATOR,
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
        state: &crate::domain::rotation::RotationState,
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
    async fn landed(&self, put: &Put<'_>, names: &SecretNames) -> Option<bool> {
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
        let old = match put_back(held, run.made_key, run.retiring, run.key_id) {
            PutBack::To(id) => Secret::new(id),
            PutBack::Nothing => return self.failed(report, e),
            PutBack::Unknown => {
                tracing::error!(
                    user_name = %run.user,
                    destination = %destination.id(),
                    error = %e,
                    "a pair was not completed where what the destination held is not known; it is written again at the next run"
                );
                return Outcome::Unknown(self.failure(report, e));
            }
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

impl Ledger<'_> {
    /// Records what a write did to `destination`, in the state and the report.
    fn record(&mut self, run: &Run<'_>, destination: &Destination, outcome: Outcome, now: i64) {
        let entry = self.state.destinations.entry(destination.id()).or_default();
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
                (DestinationStatus::Written, entry.error.clone())
            }
            Outcome::Failed(message) => {
                entry.error = Some(message.clone());
                (DestinationStatus::Failed, Some(message))
            }
            Outcome::PutBack { error, key_id } => {
                entry.key_id = Some(key_id);
                entry.fingerprint = Some(destination.fingerprint(run.spec));
                entry.error = Some(error.clone());
                (DestinationStatus::Failed, Some(error))
            }
            Outcome::Unknown(message) => {
                entry.key_id = None;
                entry.unknown = true;
                entry.error = Some(format!("{message} (what it holds is not known; written again at the next run)"));
                (DestinationStatus::Failed, entry.error.clone())
            }
            Outcome::NotAttempted(why) => {
                let message = format!("not attempted: {why}");
                entry.error = Some(message.clone());
                (DestinationStatus::NotAttempted, Some(message))
            }
        };
        // A run after one that stopped while writing cannot vouch for what it did not write itself:
        // until written, such a destination gets no key ID put back (the distrust outlives this run).
        if !run.trusted && status != DestinationStatus::Written {
            entry.unknown = true;
        }
        self.report.destinations.push(DestinationReport {
            destination: destination.id(),
            status,
            key_id: entry.key_id.clone(),
            error,
        });
    }
}
