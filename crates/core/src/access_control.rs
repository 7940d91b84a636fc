//! Access control in a function: the rules of the access table, cached for at most
//! [`RULES_TTL_SECS`] (one table read per minute per warm function, shared by concurrent
//! requests), judged by [`Policy`], with one audit line per refusal. In [`AccessMode::Open`]
//! every caller gets what it asks for, as in the TypeScript framework.

use std::sync::Arc;

use crate::cache::{FlightCache, Limits};
use crate::domain::access::{Action, Claims, Denial, InstallationRef, Policy, Readable, Subject, Target};
use crate::domain::scope::ScopeDown;
use crate::error::Error;
use crate::http::{Call, Caller};
use crate::ports::{AccessMode, AccessStore, Clock, OidcVerifier};
use crate::services::Services;
use crate::tokens::installation::Lookup;

/// The longest a warm function judges by rules it read earlier.
pub const RULES_TTL_SECS: i64 = 60;

/// The rules, as read at `at`.
#[derive(Clone)]
struct Snapshot {
    policy: Arc<Policy>,
    at: i64,
}

/// Access control, built once per cold start.
pub struct AccessControl {
    mode: AccessMode,
    store: Arc<dyn AccessStore>,
    oidc: Arc<dyn OidcVerifier>,
    clock: Arc<dyn Clock>,
    rules: FlightCache<(), Snapshot>,
}

impl AccessControl {
    /// Access control on `services`' access table, mode and clock.
    pub fn new(services: &Services) -> Self {
        Self {
            mode: services.access_mode,
            store: services.access.clone(),
            oidc: services.oidc.clone(),
            clock: services.clock.clone(),
            // One snapshot; its size is bounded by the access table's limits on rules.
            rules: FlightCache::new(Limits { entries: 1, bytes: usize::MAX }, |_, _| size_of::<Snapshot>()),
        }
    }

    async fn policy(&self) -> Result<Arc<Policy>, Error> {
        let fresh = |s: &Snapshot| self.clock.now() - s.at < RULES_TTL_SECS;
        let (snapshot, _) = self
            .rules
            .get_or_fill((), fresh, || async {
                let at = self.clock.now();
                Ok(Snapshot { policy: Arc::new(Policy::new(self.store.list_rules().await?)), at })
            })
            .await?;
        Ok(snapshot.policy)
    }

    /// The judge of `call`: the rules as they stand (read at most [`RULES_TTL_SECS`] ago), the
    /// caller, and the claims of its GitHub Actions OIDC token, verified, if it sent one. A token
    /// that does not verify refuses the request.
    pub(crate) async fn judge<'c>(&self, call: &'c Call) -> Result<Judge<'c>, Error> {
        if self.mode == AccessMode::Open {
            return Ok(Judge { policy: None, caller: &call.caller, claims: None });
        }
        let policy = self.policy().await?;
        let claims = match &call.oidc_token {
            None => None,
            Some(token) => match self.oidc.verify(token).await {
                Ok(claims) => Some(claims),
                Err(Error::AccessDenied(why)) => {
                    let judge = Judge { policy: None, caller: &call.caller, claims: None };
                    return Err(judge.refuse(None, None, None, Denial(why)));
                }
                Err(e) => return Err(e),
            },
        };
        Ok(Judge { policy: Some(policy), caller: &call.caller, claims })
    }
}

/// What one request is judged by: the rules (`None` in open mode), the caller, its claims.
pub(crate) struct Judge<'c> {
    policy: Option<Arc<Policy>>,
    caller: &'c Caller,
    claims: Option<Claims>,
}

impl Judge<'_> {
    /// The subject rules judge, or a refusal for a caller the platform did not name.
    fn subject(&self) -> Result<Subject<'_>, Error> {
        match self.caller.arn.as_deref() {
            Some(arn) => Ok(Subject { arn, claims: self.claims.as_ref() }),
            None => Err(Error::AccessDenied("the request names no IAM caller".into())),
        }
    }

    /// The one audit line of a refusal, and the error it answers with.
    fn refuse(&self, action: Option<Action>, app_id: Option<i64>, installation: Option<&str>, why: Denial) -> Error {
        tracing::warn!(
            target: "appcreds::audit",
            caller = self.caller.audit_name(),
            action = action.map(Action::as_str),
            app_id,
            installation,
            why = %why.0,
            "access denied"
        );
        Error::AccessDenied(why.0)
    }

    /// The rule that lets the caller do `action` on `app_id` (`None` in open mode).
    pub(crate) fn allow(&self, action: Action, app_id: Option<i64>) -> Result<Option<String>, Error> {
        let Some(policy) = &self.policy else { return Ok(None) };
        match policy.allow(self.subject()?, action, app_id) {
            Ok(rule) => Ok(Some(rule.id.clone())),
            Err(why) => Err(self.refuse(Some(action), app_id, None, why)),
        }
    }

    /// Which installation records the caller may read (`None`: all).
    pub(crate) fn readable(&self) -> Result<Option<Readable<'_>>, Error> {
        let Some(policy) = &self.policy else { return Ok(None) };
        policy
            .readable(self.subject()?)
            .map(Some)
            .map_err(|why| self.refuse(Some(Action::ReadInstallations), None, None, why))
    }

    /// Refuses the caller early if no rule could grant it an installation token of `app_id` on
    /// the installation it names with the scope it asks for, before the installation is looked up.
    pub(crate) fn may_mint(&self, app_id: i64, target: &Target, requested: Option<&ScopeDown>) -> Result<(), Error> {
        let Some(policy) = &self.policy else { return Ok(()) };
        // The audit line names the installation as the caller named it (nothing was looked up).
        let named = match (target, target.account()) {
            (_, Some((name, _))) => name,
            (Target::NodeId(node_id), None) => node_id.as_str(),
            (_, None) => "",
        };
        policy
            .may_mint(self.subject()?, app_id, target, requested)
            .map_err(|why| self.refuse(Some(Action::InstallationToken), Some(app_id), Some(named), why))
    }

    /// How the account `target` names is looked up: by its name, unless no rule of the caller
    /// names it (only a rule by node ID could cover it), when it is looked for in the App's
    /// listing, as node IDs are (bounded: one listing per 30 s, whatever names the caller makes up).
    pub(crate) fn lookup(&self, app_id: i64, target: &Target) -> Lookup {
        let Some(policy) = &self.policy else { return Lookup::ByName };
        match self.subject() {
            Ok(subject) if !policy.names_the_account(subject, app_id, target) => Lookup::ByListing,
            _ => Lookup::ByName,
        }
    }

    /// The answer to a lookup that found no installation: for a caller whose rules do not cover
    /// every installation of the App, the same refusal as for an installation they do not cover,
    /// so that neither tells whether it exists.
    pub(crate) fn unknown_installation(&self, app_id: i64, target: &Target, unknown: Error) -> Error {
        let Some(policy) = &self.policy else { return unknown };
        match self.subject() {
            Ok(subject) if !policy.covers_every_installation(subject, app_id) => {
                let why = policy.not_covered(subject, app_id, target);
                self.refuse(Some(Action::InstallationToken), Some(app_id), None, why)
            }
            _ => unknown,
        }
    }

    /// The rule that grants the caller an installation token of `app_id` on `installation` (named
    /// `target` by the caller), and the scope to mint (in open mode: the requested scope, under no
    /// rule).
    pub(crate) fn installation_token(
        &self,
        app_id: i64,
        target: &Target,
        installation: InstallationRef<'_>,
        requested: Option<&ScopeDown>,
    ) -> Result<(Option<String>, ScopeDown), Error> {
        let Some(policy) = &self.policy else { return Ok((None, requested.cloned().unwrap_or_default())) };
        match policy.installation_token(self.subject()?, app_id, target, installation, requested) {
            Ok((rule, scope)) => Ok((Some(rule.id.clone()), scope)),
            Err(why) => Err(self.refuse(Some(Action::InstallationToken), Some(app_id), Some(installation.login), why)),
        }
    }
}
