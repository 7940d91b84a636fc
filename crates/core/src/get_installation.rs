//! The get-installation operations: `POST /installations/info` (by node ID, GSI `NodeID`) and
//! `POST /installations` (the whole table, paginated with a tamper-evident `nextToken`).

use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

use crate::api::{self, Fields, Transport};
use crate::error::Error;
use crate::installations::InstallationStore;
use crate::page_token::{self, Mac};

pub const INFO_PATH: &str = "/installations/info";
pub const LIST_PATH: &str = "/installations";
pub const DEFAULT_MAX_RESULTS: i64 = 50;

/// The get-installation function's request handler.
pub struct GetInstallationHandler<I, M> {
    store: I,
    mac: M,
    transport: Transport,
}

impl<I: InstallationStore, M: Mac> GetInstallationHandler<I, M> {
    pub fn new(store: I, mac: M, transport: Transport) -> Self {
        Self { store, mac, transport }
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        api::respond(self.call(req).await)
    }

    async fn call(&self, req: Request) -> Result<Value, Error> {
        let call = api::parse_call(&req, &[INFO_PATH, LIST_PATH], self.transport)?;
        let fields = Fields::new(&call.body);
        if call.path == INFO_PATH {
            let node_id = match fields.str("nodeId")? {
                None => return Err(Error::invalid("/nodeId", "must not be null")),
                Some(n) if n.is_empty() || n.chars().count() > 256 => {
                    return Err(Error::invalid("/nodeId", "must be 1 to 256 characters long"));
                }
                Some(n) => n,
            };
            let mut installations = self.store.by_node_id(node_id).await?;
            installations.sort_by_key(|r| r.app_id);
            return Ok(json!({ "installations": installations }));
        }
        let max = match fields.i64("maxResults")? {
            None => DEFAULT_MAX_RESULTS,
            Some(n) if (1..=100).contains(&n) => n,
            Some(_) => return Err(Error::invalid("/maxResults", "must be between 1 and 100")),
        };
        let after = match fields.str("nextToken")? {
            None => None,
            Some(token) => Some(page_token::decode(&self.mac, token).await?),
        };
        let (installations, next) = self.store.page(max as usize, after).await?;
        let mut out = json!({ "installations": installations });
        if let Some(next) = next {
            out["nextToken"] = json!(page_token::encode(&self.mac, &next).await?);
        }
        Ok(out)
    }
}
