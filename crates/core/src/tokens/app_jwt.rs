//! App JWTs with a per-App, single-flight, in-process cache.
//!
//! A warm function signs once per App every few minutes instead of once per request: the JWT (and
//! the App row it was signed under) is reused while it still has more than
//! [`MIN_REMAINING_SECS`] of life. Concurrent requests for one App wait for the same signing.
//! The App row is cached no longer than the JWT, so a rotated key is picked up within minutes.

use std::sync::Arc;

use crate::cache::{FlightCache, Limits};
use crate::domain::jwt::{self, Claims};
use crate::domain::secret::Secret;
use crate::error::{Error, KeyProblem};
use crate::github::GitHubClient;
use crate::github::installations;
use crate::github::types::GitHubInstallation;
use crate::ports::{AppStore, Clock, Signer};
use crate::services::Services;

/// A JWT handed to a caller has at least this much life left.
pub const MIN_REMAINING_SECS: i64 = 5 * 60;

/// An App JWT.
#[derive(Debug, Clone)]
pub struct AppJwt {
    /// The JWT.
    pub token: Secret,
    /// The JWT's `exp` claim (Unix seconds).
    pub expires_at: i64,
    /// Whether it came from the cache.
    pub cached: bool,
}

/// Issues App JWTs: reads the App's key ARN from the [`AppStore`] and signs with the [`Signer`].
pub struct AppJwts {
    signer: Arc<dyn Signer>,
    store: Arc<dyn AppStore>,
    clock: Arc<dyn Clock>,
    cache: FlightCache<i64, AppJwt>,
}

impl AppJwts {
    /// A cache that signs through `services`' signer, App table and clock.
    pub fn new(services: &Services) -> Self {
        Self {
            signer: services.signer.clone(),
            store: services.apps.clone(),
            clock: services.clock.clone(),
            cache: FlightCache::new(Limits { entries: 10_000, bytes: 8 << 20 }, |_, jwt| {
                size_of::<(i64, AppJwt)>() + jwt.token.expose().len()
            }),
        }
    }

    /// A JWT for `app_id` with at least [`MIN_REMAINING_SECS`] of life left.
    pub async fn get(&self, app_id: i64) -> Result<AppJwt, Error> {
        let fresh = |jwt: &AppJwt| jwt.expires_at - self.clock.now() > MIN_REMAINING_SECS;
        let (jwt, cached) = self.cache.get_or_fill(app_id, fresh, || self.mint(app_id)).await?;
        Ok(AppJwt { cached, ..jwt })
    }

    /// Drops the cached JWT of `app_id`, e.g. after GitHub refused it.
    pub async fn invalidate(&self, app_id: i64) {
        self.cache.invalidate(&app_id).await;
    }

    /// The App's key ARN and client ID, as the App table has them now.
    async fn key_of(&self, app_id: i64) -> Result<(String, Option<String>), Error> {
        let app = self.store.get_app(app_id).await?.ok_or(Error::UnknownApp(app_id))?;
        Ok((app.kms_key_arn.ok_or(Error::AppKeyMissing(app_id))?, app.client_id))
    }

    /// Every installation of `app_id` as GitHub lists it (all pages). A JWT GitHub refuses is
    /// dropped, so that the next call signs afresh (the key may have been rotated).
    pub(crate) async fn list_installations(
        &self,
        github: &GitHubClient,
        app_id: i64,
    ) -> Result<Vec<GitHubInstallation>, Error> {
        let jwt = self.get(app_id).await?;
        let listed = installations::list(github, app_id, &jwt.token).await;
        if let Err(Error::GitHubUnauthorized { .. }) = &listed {
            self.invalidate(app_id).await;
        }
        listed
    }

    async fn mint(&self, app_id: i64) -> Result<AppJwt, Error> {
        let (key_arn, client_id) = self.key_of(app_id).await?;
        // The client ID is the issuer when the App table names one (GitHub accepts either).
        let claims = Claims::for_app(app_id, self.clock.now()).with_client_id(client_id.as_deref());
        let input = claims.signing_input();
        let signature = match self.signer.sign(&key_arn, input.as_bytes()).await {
            Ok(signature) => signature,
            Err(Error::SigningKey(problem)) => {
                self.sign_with_another_key(app_id, &key_arn, input.as_bytes(), problem).await?
            }
            Err(err) => return Err(err),
        };
        tracing::debug!(app_id, expires_at = claims.exp, "signed a new App JWT");
        Ok(AppJwt { token: Secret::new(jwt::assemble(&input, &signature)), expires_at: claims.exp, cached: false })
    }

    /// After `refused` would not sign: the other keys the App may sign with, as its row says now,
    /// the first that signs winning.
    /// - The row's current key, if a rotation switched it meanwhile: a row read just before the
    ///   switch names the old key, which stops signing once it is retired.
    /// - The previous key while the rotation's grace period lasts: IAM can take minutes to see a
    ///   new key's `Status=Active` tag, and a cold function must not fail meanwhile.
    async fn sign_with_another_key(
        &self,
        app_id: i64,
        refused: &str,
        message: &[u8],
        problem: KeyProblem,
    ) -> Result<Vec<u8>, Error> {
        let app = self.store.get_app(app_id).await?.ok_or(Error::UnknownApp(app_id))?;
        let now = self.clock.now();
        let current = app.kms_key_arn.filter(|k| k != refused);
        let previous = app.previous_key.filter(|p| p.usable_until > now && p.arn != refused).map(|p| p.arn);
        for (key, why) in [
            (current, "the App's key was rotated"),
            (previous, "the new key is refused; the previous one is in its grace period"),
        ] {
            let Some(key) = key else { continue };
            match self.signer.sign(&key, message).await {
                Ok(signature) => {
                    tracing::info!(app_id, %problem, reason = why, "signed with another of the App's keys");
                    return Ok(signature);
                }
                Err(Error::SigningKey(other)) => {
                    tracing::warn!(app_id, %other, "another of the App's keys refused too")
                }
                Err(err) => return Err(err),
            }
        }
        Err(Error::SigningKey(problem))
    }
}
