//! Access control in a function: the rules of the access table, cached for at most
//! [`RULES_TTL_SECS`] (one table read per minute per warm function, shared by concurrent
//! requests), judged by [`Policy`], with one audit line per refusal. In [`AccessMode::Open`]
//! every caller gets what it asks for, as in the TypeScript framework.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::cache::FlightCache;
use crate::domain::access::{Action, Claims, Denial, InstallationRef, Policy, Subject};
use crate::domain::scope::ScopeDown;
use crate::error::Error;
use crate::http::Caller;
use crate::ports::{AccessMode, AccessStore, Clock, Services};

/// The longest a warm function judges by rules it read earlier.
pub const RULES_TTL_SECS: i64 = 60;

/// The rules, as read at `at`.
#[derive(Clone)]
struct Snapshot {
    policy: Arc<Policy>,
    at: i64,
}

/// Who is asking: the caller the platform authenticated and, if it sent one, its verified GitHub
/// Actions OIDC token's claims.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asker<'a> {
    pub(crate) caller: &'a Caller,
    pub(crate) claims: Option<&'a Claims>,
}

/// Access control, built once per cold start.
pub struct AccessControl {
    mode: AccessMode,
    store: Arc<dyn AccessStore>,
    clock: Arc<dyn Clock>,
    rules: FlightCache<(), Snapshot>,
}

impl AccessControl {
    /// Access control on `services`' access table, mode and clock.
    pub fn new(services: &Services) -> Self {
        Self {
            mode: services.access_mode,
            store: services.access.clone(),
            clock: services.clock.clone(),
            rules: FlightCache::new(1),
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

    /// The rules as they stand (read at most [`RULES_TTL_SECS`] ago), to judge one request by.
    pub(crate) async fn judge(&self) -> Result<Judge, Error> {
        match self.mode {
            AccessMode::Open => Ok(Judge { policy: None }),
            AccessMode::Enforce => Ok(Judge { policy: Some(self.policy().await?) }),
        }
    }
}

/// The rules one request is judged by; `None` in open mode.
pub(crate) struct Judge {
    policy: Option<Arc<Policy>>,
}

impl Judge {
    /// The subject rules judge, or a refusal for a caller the platform did not name.
    fn subject<'a>(asker: Asker<'a>) -> Result<Subject<'a>, Error> {
        match asker.caller.arn.as_deref() {
            Some(arn) => Ok(Subject { arn, claims: asker.claims }),
            None => Err(Error::AccessDenied("the request names no IAM caller".into())),
        }
    }

    fn refuse(asker: Asker<'_>, action: Action, app_id: Option<i64>, installation: Option<&str>, why: Denial) -> Error {
        tracing::warn!(
            target: "appcreds::audit",
            caller = asker.caller.audit_name(),
            action = action.as_str(),
            app_id,
            installation,
            why = %why.0,
            "access denied"
        );
        Error::AccessDenied(why.0)
    }

    /// The rule that lets `asker` do `action` on `app_id` (`None` in open mode).
    pub(crate) fn allow(&self, asker: Asker<'_>, action: Action, app_id: Option<i64>) -> Result<Option<String>, Error> {
        let Some(policy) = &self.policy else { return Ok(None) };
        match policy.allow(Self::subject(asker)?, action, app_id) {
            Ok(rule) => Ok(Some(rule.id.clone())),
            Err(why) => Err(Self::refuse(asker, action, app_id, None, why)),
        }
    }

    /// The Apps whose installations `asker` may read (`None`: all).
    pub(crate) fn readable_apps(&self, asker: Asker<'_>) -> Result<Option<BTreeSet<i64>>, Error> {
        let Some(policy) = &self.policy else { return Ok(None) };
        policy
            .apps_granted(Self::subject(asker)?, Action::ReadInstallations)
            .map_err(|why| Self::refuse(asker, Action::ReadInstallations, None, None, why))
    }

    /// Refuses `asker` early if no rule could grant it an installation token of `app_id`, before
    /// the installation is looked up.
    pub(crate) fn may_mint(&self, asker: Asker<'_>, app_id: i64) -> Result<(), Error> {
        let Some(policy) = &self.policy else { return Ok(()) };
        policy
            .may_mint(Self::subject(asker)?, app_id)
            .map_err(|why| Self::refuse(asker, Action::InstallationToken, Some(app_id), None, why))
    }

    /// The rule that grants `asker` an installation token of `app_id` on `installation`, and the
    /// scope to mint (in open mode: the requested scope, under no rule).
    pub(crate) fn installation_token(
        &self,
        asker: Asker<'_>,
        app_id: i64,
        installation: InstallationRef<'_>,
        requested: Option<&ScopeDown>,
    ) -> Result<(Option<String>, ScopeDown), Error> {
        let Some(policy) = &self.policy else { return Ok((None, requested.cloned().unwrap_or_default())) };
        match policy.installation_token(Self::subject(asker)?, app_id, installation, requested) {
            Ok((rule, scope)) => Ok((Some(rule.id.clone()), scope)),
            Err(why) => {
                Err(Self::refuse(asker, Action::InstallationToken, Some(app_id), Some(installation.login), why))
            }
        }
    }
}
