//! installation-token: `POST /tokens/installation` → an installation access token for the
//! installation the request names, scoped down as it asks.

use appcreds_wire::{InstallationTokenResponse, Token, paths};
use async_trait::async_trait;
use serde_json::Value;

use crate::error::Error;
use crate::http::{Call, Operation, reply, request};
use crate::ops::audit;
use crate::ports::Services;
use crate::tokens::installation::InstallationTokens;

/// The installation-token operation.
pub struct InstallationToken {
    tokens: InstallationTokens,
}

impl InstallationToken {
    /// The operation on `services`.
    pub fn new(services: &Services) -> Self {
        Self { tokens: InstallationTokens::new(services) }
    }
}

#[async_trait]
impl Operation for InstallationToken {
    const ROUTES: &'static [&'static str] = &[paths::INSTALLATION_TOKEN];

    async fn call(&self, call: Call) -> Result<Value, Error> {
        let req = request::installation_token(&call.body)?;
        let scope = req.scope_down.unwrap_or_default();
        let (token, record, cached) = self.tokens.issue(req.app_id, &req.target, &scope).await?;
        let slug = self.tokens.app_slug(req.app_id).await;
        audit::credential_issued(
            &call.caller,
            "installation-token",
            req.app_id,
            Some(record.installation_id),
            &token.token,
            &token.expires_at_text,
            cached,
        );
        let response = InstallationTokenResponse {
            installation_token: Token::new(token.token.expose()),
            node_id: record.node_id,
            app_id: req.app_id,
            installation_id: Some(record.installation_id),
            app_slug: slug,
            expiration_time: token.expires_at_text,
            requested_scope_down: scope,
            actual_scope_down: token.granted,
        };
        reply(response)
    }
}
