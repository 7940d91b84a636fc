//! App JWTs with a per-App, single-flight, in-process cache.
//!
//! A warm function signs once per App every few minutes instead of once per request: the JWT (and
//! the App row it was signed under) is reused while it still has more than
//! [`MIN_REMAINING_SECS`] of life. Concurrent requests for one App wait for the same signing.
//! The App row is cached no longer than the JWT, so a rotated key is picked up within minutes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Mutex as AsyncMutex;

use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::jwt::{self, Claims};
use crate::secret::Secret;
use crate::signer::Signer;
use crate::store::AppStore;

/// A JWT handed to a caller has at least this much life left.
pub const MIN_REMAINING_SECS: i64 = 5 * 60;

/// An App JWT.
#[derive(Debug, Clone)]
pub struct AppJwt {
    pub app_id: i64,
    pub token: Secret,
    /// The JWT's `exp` claim (Unix seconds).
    pub expires_at: i64,
    /// Whether it came from the cache.
    pub cached: bool,
}

type Slot = Arc<AsyncMutex<Option<AppJwt>>>;

/// Issues App JWTs: reads the App's key ARN from the [`AppStore`] and signs with the [`Signer`].
pub struct AppJwts<S, A, C = SystemClock> {
    signer: S,
    store: A,
    clock: C,
    slots: Mutex<HashMap<i64, Slot>>,
}

impl<S: Signer, A: AppStore, C: Clock> AppJwts<S, A, C> {
    pub fn new(signer: S, store: A, clock: C) -> Self {
        Self { signer, store, clock, slots: Mutex::new(HashMap::new()) }
    }

    /// A JWT for `app_id` with at least [`MIN_REMAINING_SECS`] of life left.
    pub async fn get(&self, app_id: i64) -> Result<AppJwt, Error> {
        let slot = self.slot(app_id);
        let mut cached = slot.lock().await;
        if let Some(jwt) = cached.as_ref()
            && jwt.expires_at - self.clock.now() > MIN_REMAINING_SECS
        {
            return Ok(AppJwt { cached: true, ..jwt.clone() });
        }
        match self.mint(app_id).await {
            Ok(jwt) => {
                *cached = Some(jwt.clone());
                Ok(jwt)
            }
            Err(err) => {
                // Keep an expiring JWT out of use, and don't let unknown App IDs grow the map.
                *cached = None;
                drop(cached);
                self.forget(app_id, &slot);
                Err(err)
            }
        }
    }

    /// Drops the cached JWT of `app_id`, e.g. after GitHub refused it.
    pub async fn invalidate(&self, app_id: i64) {
        let slot = self.slot(app_id);
        *slot.lock().await = None;
    }

    fn slot(&self, app_id: i64) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.entry(app_id).or_default().clone()
    }

    fn forget(&self, app_id: i64, slot: &Slot) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.get(&app_id).is_some_and(|s| Arc::ptr_eq(s, slot)) && slot.try_lock().is_ok_and(|jwt| jwt.is_none()) {
            slots.remove(&app_id);
        }
    }

    async fn mint(&self, app_id: i64) -> Result<AppJwt, Error> {
        let app = self.store.get_app(app_id).await?.ok_or(Error::UnknownApp(app_id))?;
        let key_arn = app.kms_key_arn.ok_or(Error::AppKeyMissing(app_id))?;
        let claims = Claims::for_app(app_id, self.clock.now());
        let input = claims.signing_input();
        let signature = self.signer.sign(&key_arn, input.as_bytes()).await?;
        tracing::debug!(app_id, expires_at = claims.exp, "signed a new App JWT");
        Ok(AppJwt {
            app_id,
            token: Secret::new(jwt::assemble(&input, &signature)),
            expires_at: claims.exp,
            cached: false,
        })
    }
}
