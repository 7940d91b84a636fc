//! [`Services`]: the one bundle of the ports and the GitHub client that a function builds at cold
//! start. Everything above this layer takes a [`Services`] and nothing else, so adding a port is
//! one field here (its trait in [`crate::ports`], its adapter in [`crate::aws`]); no type grows a
//! generic parameter for it.

use std::sync::Arc;

use crate::domain::clock::SystemClock;
use crate::error::Error;
use crate::github::GitHubClient;
use crate::ports::{
    AccessMode, AccessStore, AppStore, Clock, InstallationStore, JwtShare, Leases, Mac, MetricSink, OidcVerifier,
    Signer, Unconfigured,
};

/// What every operation and job reaches the world through, built once per cold start.
///
/// A function sets the ports it uses; the others stay `Unconfigured` and fail with a
/// `ServerSideError` that names what is missing, so a miswired deployment is visible, not silent
/// (the convention is in [`crate::ports`]).
#[derive(Clone)]
pub struct Services {
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// KMS `Sign` with the Apps' keys.
    pub signer: Arc<dyn Signer>,
    /// The App table.
    pub apps: Arc<dyn AppStore>,
    /// The Installation table.
    pub installations: Arc<dyn InstallationStore>,
    /// The KMS HMAC key page tokens' encryption keys are derived with.
    pub mac: Arc<dyn Mac>,
    /// Where rate-limit metrics go.
    pub metrics: Arc<dyn MetricSink>,
    /// The access rules.
    pub access: Arc<dyn AccessStore>,
    /// Whether the rules are enforced.
    pub access_mode: AccessMode,
    /// Verifies callers' GitHub Actions OIDC tokens.
    pub oidc: Arc<dyn OidcVerifier>,
    /// GitHub's REST API, for the functions that call it: a concrete client, not a port. Reach it
    /// through [`Services::github`], which answers as an unconfigured port does without one.
    pub github: Option<GitHubClient>,
    /// The leases that keep syncs and rotations apart (`LEASE_TABLE_NAME`); without the table,
    /// every lease is granted and runs are not kept apart.
    pub leases: Arc<dyn Leases>,
    /// **(ext)** The App JWT one function signs for the others (`SHARED_APP_JWT_KEY_ID` and the
    /// lease table); without it (`None`), each function signs its own.
    pub jwt_share: Option<JwtShare>,
}

impl Services {
    /// Every port unconfigured, the rules enforced, and the system clock. Set the ones a
    /// function uses.
    pub fn unconfigured() -> Self {
        Services {
            clock: Arc::new(SystemClock),
            signer: Arc::new(Unconfigured("no KMS signer is configured")),
            apps: Arc::new(Unconfigured("APP_TABLE_NAME is not set")),
            installations: Arc::new(Unconfigured("INSTALLATION_TABLE_NAME is not set")),
            mac: Arc::new(Unconfigured("PAGINATION_KEY_ID is not set")),
            metrics: Arc::new(Unconfigured("no metric sink is configured")),
            access: Arc::new(Unconfigured("ACCESS_TABLE_NAME is not set")),
            access_mode: AccessMode::Enforce,
            oidc: Arc::new(Unconfigured("GitHub OIDC tokens are not accepted here (no OIDC_AUDIENCE)")),
            github: None,
            leases: Arc::new(Unconfigured("LEASE_TABLE_NAME is not set")),
            jwt_share: None,
        }
    }

    /// The GitHub client, or a `ServerSideError` for a function built without one.
    pub fn github(&self) -> Result<&GitHubClient, Error> {
        self.github.as_ref().ok_or(Error::Misconfigured("GITHUB_API_URL is not configured for this function"))
    }

    /// The current time (Unix seconds).
    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unconfigured_port_names_what_is_missing() {
        let services = Services::unconfigured();
        let err = services.installations.all().await.unwrap_err();
        assert_eq!(err.to_string(), "INSTALLATION_TABLE_NAME is not set");
        assert!(matches!(services.apps.get_app(1).await, Err(Error::Misconfigured("APP_TABLE_NAME is not set"))));
        assert!(matches!(services.github(), Err(Error::Misconfigured(_))));
        let lease = services.leases.acquire("sync", "me", 0, 60).await.unwrap();
        assert_eq!(lease, crate::ports::Lease::Acquired, "without a lease table, runs are not kept apart");
    }
}
