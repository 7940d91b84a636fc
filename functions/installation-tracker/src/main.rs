//! installation-tracker: on an EventBridge schedule, sync the Installation table with GitHub.

use std::sync::Arc;

use appcreds_core::refresh::Syncer;
use appcreds_core::runtime::ColdStart;
use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let init = ColdStart::init().await?;
    let syncer = Arc::new(Syncer {
        jwts: init.app_jwts(),
        apps: init.app_store(),
        github: init.github()?,
        store: init.installation_store()?,
    });
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<Value>| {
        let syncer = syncer.clone();
        async move { syncer.scheduled().await.map_err(lambda_runtime::Error::from) }
    }))
    .await
}
