//! get-installation: `POST /installations/info` (by node ID, GSI `NodeID`) and
//! `POST /installations` (the rows the caller may read, paginated with an opaque `nextToken`
//! bound to the caller, [`page_token`]).

use std::time::Duration;

use appcreds_wire::{InstallationInfoResponse, ListInstallationsResponse, paths};
use async_trait::async_trait;
use serde_json::Value;

use crate::access_control::AccessControl;
use crate::deadline;
use crate::domain::access::{InstallationRef, Readable};
use crate::error::Error;
use crate::http::{Call, Operation, reply, request};
use crate::ops::page_token;
use crate::ports::InstallationRecord;
use crate::services::Services;

/// Page size when the request names none.
pub(crate) const DEFAULT_MAX_RESULTS: i64 = 50;

/// Kept back from the listing's scans for the nextToken's key (one KMS call, one attempt of the
/// SDK's timeouts).
const TOKEN_RESERVE: Duration = Duration::from_secs(3);

/// The get-installation operations.
pub struct GetInstallation {
    access: AccessControl,
    services: Services,
}

impl GetInstallation {
    /// The operation on `services`.
    pub fn new(services: &Services) -> Self {
        Self { access: AccessControl::new(services), services: services.clone() }
    }
}

#[async_trait]
impl Operation for GetInstallation {
    const ROUTES: &'static [&'static str] = &[paths::INSTALLATION_INFO, paths::LIST_INSTALLATIONS];

    async fn call(&self, call: Call) -> Result<Value, Error> {
        let store = &self.services.installations;
        let judge = self.access.judge(&call).await?;
        // Records of Apps and installations the caller's rules do not cover are left out.
        let readable = |can: &Option<Readable<'_>>, r: &InstallationRecord| {
            can.as_ref().is_none_or(|c| c.covers(r.app_id, InstallationRef::from(r)))
        };
        if call.path == paths::INSTALLATION_INFO {
            let req = request::installation_info(&call.body)?;
            let can = judge.readable()?;
            let mut installations = store.by_node_id(&req.node_id).await?;
            installations.retain(|r| readable(&can, r));
            installations.sort_by_key(|r| r.app_id);
            reply(InstallationInfoResponse { installations })
        } else {
            let req = request::list_installations(&call.body)?;
            let can = judge.readable()?;
            let mac = self.services.mac.as_ref();
            // A token serves only the caller it was given to.
            let caller = call.caller.arn.as_deref().unwrap_or_default();
            let after = match req.next_token {
                None => None,
                Some(token) => Some(page_token::decode(mac, caller, &token).await?),
            };
            let max = req.max_results.unwrap_or(DEFAULT_MAX_RESULTS) as usize;
            // Only readable rows fill a page, so a page is short (or empty) only where the scan
            // stopped at its bound: the caller learns nothing of the rows it may not read. The
            // position to go on from may be such a row's; the token hides it.
            let keep = |r: &InstallationRecord| readable(&can, r);
            let listing = store.page(max, after, &keep);
            let (installations, next) = match deadline::current() {
                Some(d) => deadline::within(d.checked_sub(TOKEN_RESERVE).unwrap_or(d), listing).await?,
                None => listing.await?,
            };
            let next_token = match next {
                None => None,
                Some(next) => Some(page_token::encode(mac, caller, &next).await?),
            };
            reply(ListInstallationsResponse { installations, next_token })
        }
    }
}
