//! app-token: `POST /tokens/app` → an App JWT signed by KMS, from the per-App cache.

use appcreds_wire::{AppTokenResponse, Token, paths};
use async_trait::async_trait;
use serde_json::Value;

use crate::access_control::AccessControl;
use crate::domain::access::Action;
use crate::domain::clock::rfc3339;
use crate::error::Error;
use crate::http::{Call, Operation, reply, request};
use crate::ops::audit;
use crate::services::Services;
use crate::tokens::app_jwt::AppJwts;

/// `expirationTime` is this much before the JWT's `exp`, so callers renew before GitHub refuses it.
pub(crate) const EXPIRY_MARGIN_SECS: i64 = 10;

/// The app-token operation.
pub struct AppToken {
    access: AccessControl,
    jwts: AppJwts,
}

impl AppToken {
    /// The operation on `services`.
    pub fn new(services: &Services) -> Self {
        Self { access: AccessControl::new(services), jwts: AppJwts::new(services) }
    }

    /// The JWT cache (benchmarks and tests drop entries to force a signing).
    pub fn jwts(&self) -> &AppJwts {
        &self.jwts
    }
}

#[async_trait]
impl Operation for AppToken {
    const ROUTES: &'static [&'static str] = &[paths::APP_TOKEN];

    async fn settle(&self, by: tokio::time::Instant) {
        self.jwts.settle(by).await;
    }

    async fn call(&self, call: Call) -> Result<Value, Error> {
        let app_id = request::app_token(&call.body)?.app_id;
        // The App JWT mints any token at GitHub directly: only a rule that names app-token grants it.
        // The App row is read while that is decided.
        let decided = async { self.access.judge(&call).await?.allow(Action::AppToken, Some(app_id)) };
        let (rule, jwt) = self.jwts.get_decided(app_id, decided).await?;
        let expiration = rfc3339(jwt.expires_at - EXPIRY_MARGIN_SECS);
        audit::credential_issued(
            &call.caller,
            &audit::Issued {
                kind: "app-jwt",
                app_id,
                installation_id: None,
                token: &jwt.token,
                expires_at: &expiration,
                cached: jwt.cached,
                rule: rule.as_deref(),
            },
        );
        let response =
            AppTokenResponse { app_id, app_token: Token::new(jwt.token.expose()), expiration_time: expiration };
        reply(response)
    }
}
