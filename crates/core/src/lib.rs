//! appcreds core: GitHub App credentials whose private key never leaves AWS KMS.
//!
//! - [`jwt`] and [`app_jwt`]: App JWTs signed by a [`signer::Signer`] (KMS `Sign` in production),
//!   cached per App with single flight.
//! - [`store`]: the App table.
//! - [`api`]: request checks and the single error → HTTP mapping of the wire contract.
//! - [`app_token`]: the `POST /tokens/app` operation.

pub mod api;
pub mod app_jwt;
pub mod app_token;
pub mod audit;
pub mod cache;
pub mod clock;
pub mod config;
pub mod error;
pub mod get_installation;
pub mod github;
pub mod installation_token;
pub mod installations;
pub mod jwt;
pub mod page_token;
pub mod rate_limit;
pub mod refresh;
pub mod runtime;
pub mod scope;
pub mod secret;
pub mod signer;
pub mod store;
pub mod sync;

pub use error::{Error, Result};
pub use secret::Secret;
