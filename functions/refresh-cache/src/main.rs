//! refresh-cache: `POST /installations/refresh` → sync the Installation table with GitHub now.

use appcreds_core::refresh::{RefreshHandler, Syncer};
use appcreds_core::runtime::{ColdStart, serve};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let init = ColdStart::init().await?;
    let syncer = Syncer {
        jwts: init.app_jwts(),
        apps: init.app_store(),
        github: init.github()?,
        store: init.installation_store()?,
    };
    let handler = RefreshHandler::new(syncer, init.transport());
    serve(handler, |h, req| async move { h.handle(req).await }).await
}
