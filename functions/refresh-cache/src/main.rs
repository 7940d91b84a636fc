//! refresh-cache: `POST /installations/refresh` → sync the Installation table with GitHub now.

use appcreds_core::http::{Endpoint, serve};
use appcreds_core::ops::refresh::Refresh;
use appcreds_core::runtime::ColdStart;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let init = ColdStart::init().await?;
    let services = init.require_installation_table()?.services_with_github()?;
    serve(Endpoint::new(Refresh::new(&services), init.transport()?)).await
}
