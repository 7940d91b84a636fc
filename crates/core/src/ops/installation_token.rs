//! installation-token: `POST /tokens/installation` → an installation access token for the
//! installation the request names, scoped down as it asks.

use appcreds_wire::{InstallationTokenResponse, Token, paths};
use async_trait::async_trait;
use serde_json::Value;

use crate::access_control::AccessControl;
use crate::domain::access::InstallationRef;
use crate::domain::scope;
use crate::error::Error;
use crate::http::{Call, Operation, reply, request};
use crate::ops::audit;
use crate::services::Services;
use crate::tokens::installation::InstallationTokens;

/// The installation-token operation.
pub struct InstallationToken {
    access: AccessControl,
    tokens: InstallationTokens,
}

impl InstallationToken {
    /// The operation on `services`.
    pub fn new(services: &Services) -> Self {
        Self { access: AccessControl::new(services), tokens: InstallationTokens::new(services) }
    }
}

#[async_trait]
impl Operation for InstallationToken {
    const ROUTES: &'static [&'static str] = &[paths::INSTALLATION_TOKEN];

    async fn call(&self, call: Call) -> Result<Value, Error> {
        let req = request::installation_token(&call.body)?;
        let judge = self.access.judge(&call).await?;
        // Naming one repository asks for a token of that repository only.
        let requested = scope::requested_scope(&req.target, req.scope_down.as_ref());
        let requested = requested.as_ref();
        // A caller no rule could serve (installation, repositories, permissions) learns nothing
        // about what it names, and costs GitHub nothing.
        judge.may_mint(req.app_id, &req.target, requested)?;
        let lookup = judge.lookup(req.app_id, &req.target);
        let grant = |record: &crate::ports::InstallationRecord| {
            let installation = InstallationRef::from(record);
            judge.installation_token(req.app_id, &req.target, installation, requested)
        };
        // The slug (best effort, bounded) is read while the token is minted; a failed mint does
        // not wait for it.
        let slug = async { Ok::<_, Error>(self.tokens.app_slug(req.app_id).await) };
        let (issued, slug) =
            match futures_util::future::try_join(self.tokens.issue(req.app_id, &req.target, lookup, grant), slug).await
            {
                Err(unknown @ Error::UnknownInstallation { .. }) => {
                    return Err(judge.unknown_installation(req.app_id, &req.target, unknown));
                }
                Err(wide @ Error::TokenTooWide { .. }) => {
                    audit::token_too_wide(&call.caller, req.app_id, &wide);
                    return Err(wide);
                }
                other => other?,
            };
        let (token, record) = (issued.token, issued.record);
        audit::credential_issued(
            &call.caller,
            &audit::Issued {
                kind: "installation-token",
                app_id: req.app_id,
                installation_id: Some(record.installation_id),
                token: &token.token,
                expires_at: &token.expires_at_text,
                cached: false, // every caller's token is minted for it
                rule: issued.rule.as_deref(),
            },
        );
        let response = InstallationTokenResponse {
            installation_token: Token::new(token.token.expose()),
            node_id: record.node_id,
            app_id: req.app_id,
            installation_id: Some(record.installation_id),
            app_slug: slug,
            expiration_time: token.expires_at_text,
            requested_scope_down: req.scope_down,
            actual_scope_down: token.granted,
        };
        reply(response)
    }
}
