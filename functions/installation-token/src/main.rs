//! installation-token: `POST /tokens/installation` → an installation access token, optionally scoped down.

use appcreds_core::http::{Endpoint, serve};
use appcreds_core::ops::installation_token::InstallationToken;
use appcreds_core::runtime::ColdStart;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let init = ColdStart::init().await?;
    let services = init.require_installation_table()?.services_with_github()?;
    serve(Endpoint::new(InstallationToken::new(&services), init.transport()?)).await
}
