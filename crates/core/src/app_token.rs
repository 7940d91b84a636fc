//! The app-token operation: `POST /tokens/app`.

use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

use crate::api::{self, Fields, Transport};
use crate::app_jwt::AppJwts;
use crate::audit;
use crate::clock::{Clock, rfc3339};
use crate::error::Error;
use crate::signer::Signer;
use crate::store::AppStore;

pub const PATH: &str = "/tokens/app";

/// `expirationTime` is this much before the JWT's `exp`, so callers renew before GitHub refuses it.
pub const EXPIRY_MARGIN_SECS: i64 = 10;

/// The app-token function's request handler.
pub struct AppTokenHandler<S, A, C> {
    jwts: AppJwts<S, A, C>,
    transport: Transport,
}

impl<S: Signer, A: AppStore, C: Clock> AppTokenHandler<S, A, C> {
    pub fn new(jwts: AppJwts<S, A, C>, transport: Transport) -> Self {
        Self { jwts, transport }
    }

    /// The JWT cache (benchmarks and tests drop entries to force a signing).
    pub fn jwts(&self) -> &AppJwts<S, A, C> {
        &self.jwts
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        api::respond(self.call(req).await)
    }

    async fn call(&self, req: Request) -> Result<Value, Error> {
        let call = api::parse_call(&req, &[PATH], self.transport)?;
        let app_id = api::required_id(&Fields::new(&call.body), "appId")?;
        let jwt = self.jwts.get(app_id).await?;
        let expiration = rfc3339(jwt.expires_at - EXPIRY_MARGIN_SECS);
        audit::credential_issued(&call.caller, "app-jwt", app_id, None, &jwt.token, &expiration, jwt.cached);
        Ok(json!({ "appId": app_id, "appToken": jwt.token.expose(), "expirationTime": expiration }))
    }
}
