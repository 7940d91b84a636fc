//! app-token: `POST /tokens/app` → a GitHub App JWT signed by KMS.

use appcreds_core::http::{Endpoint, serve};
use appcreds_core::ops::app_token::AppToken;
use appcreds_core::runtime::ColdStart;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let init = ColdStart::init().await?;
    let services = init.services()?;
    serve(Endpoint::new(AppToken::new(&services), init.transport()?)).await
}
