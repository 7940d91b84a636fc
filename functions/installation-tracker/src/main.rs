//! installation-tracker: on an EventBridge schedule, sync the Installation table with GitHub.

use std::sync::Arc;

use appcreds_core::jobs::sync::InstallationSync;
use appcreds_core::runtime::{ColdStart, serve_scheduled};
use lambda_http::lambda_runtime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let init = ColdStart::init().await?;
    let sync = Arc::new(InstallationSync::new(&init.require_installation_table()?.services_with_github()?));
    let settling = sync.clone();
    serve_scheduled(
        move || {
            let sync = sync.clone();
            async move { sync.scheduled().await }
        },
        move |by| {
            let sync = settling.clone();
            async move { sync.settle(by).await }
        },
    )
    .await
}
