//! The wire operations, one module each, every one an [`crate::http::Operation`]:
//! [`app_token`] (`POST /tokens/app`), [`installation_token`] (`POST /tokens/installation`, and
//! **(ext)** `POST /tokens/installations` for several targets at once),
//! [`get_installation`] (`POST /installations/info` and `POST /installations`) and [`refresh`]
//! (`POST /installations/refresh`). [`audit`] writes the line each issued credential leaves;
//! [`page_token`] seals the listing's `nextToken`s (a KMS MAC through the `Mac` port).

pub mod app_token;
pub mod audit;
pub mod get_installation;
pub mod installation_token;
pub mod page_token;
pub mod refresh;
