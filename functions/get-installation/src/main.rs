//! get-installation: `POST /installations/info` (by node ID) and `POST /installations` (paginated).

use appcreds_core::Error;
use appcreds_core::http::{Endpoint, serve};
use appcreds_core::ops::get_installation::GetInstallation;
use appcreds_core::runtime::ColdStart;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let init = ColdStart::init().await?;
    init.config.pagination_key.as_ref().ok_or(Error::Misconfigured("PAGINATION_KEY_ID is not set"))?;
    let services = init.require_installation_table()?.services()?;
    serve(Endpoint::new(GetInstallation::new(&services), init.transport()?)).await
}
