//! get-installation: `POST /installations/info` (by node ID) and `POST /installations` (paginated).

use appcreds_core::Error;
use appcreds_core::get_installation::GetInstallationHandler;
use appcreds_core::page_token::KmsMac;
use appcreds_core::runtime::{ColdStart, serve};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let init = ColdStart::init().await?;
    let key = init.config.pagination_key.clone().ok_or(Error::Misconfigured("PAGINATION_KEY_ID is not set"))?;
    let handler =
        GetInstallationHandler::new(init.installation_store()?, KmsMac::new(init.kms.clone(), key), init.transport());
    serve(handler, |h, req| async move { h.handle(req).await }).await
}
