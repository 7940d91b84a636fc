//! installation-token: `POST /tokens/installation` → an installation access token, optionally scoped down.

use std::sync::Arc;

use appcreds_core::installation_token::{InstallationTokenHandler, InstallationTokens};
use appcreds_core::runtime::{ColdStart, serve};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let init = ColdStart::init().await?;
    let tokens = InstallationTokens::new(Arc::new(init.app_jwts()), init.github()?, init.installation_store()?);
    let handler = InstallationTokenHandler::new(tokens, init.transport());
    serve(handler, |h, req| async move { h.handle(req).await }).await
}
