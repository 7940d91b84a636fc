//! app-token: `POST /tokens/app` → a GitHub App JWT signed by KMS.

use appcreds_core::app_token::AppTokenHandler;
use appcreds_core::runtime::{ColdStart, serve};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let init = ColdStart::init().await?;
    let handler = AppTokenHandler::new(init.app_jwts(), init.transport());
    serve(handler, |h, req| async move { h.handle(req).await }).await
}
