//! appcreds core: GitHub App credentials whose private key never leaves AWS KMS.
//!
//! The crate is layered; each layer uses only the ones below it.
//!
//! | layer | modules | what it holds |
//! |---|---|---|
//! | HTTP | [`http`] | request checks, the one error → HTTP mapping, the [`http::Operation`] trait and one generic serve |
//! | operations | [`ops`] | one module per wire operation: app-token, installation-token, get-installation, refresh-cache |
//! | jobs | [`jobs`] | the scheduled work: the installation sync and the rate-limit scanner |
//! | credentials | [`tokens`] | App JWTs and installation tokens, with their caches |
//! | ports | [`ports`] | the traits the world is reached through, and [`ports::Services`], the one bundle of them |
//! | adapters | [`aws`], [`github`] | KMS, DynamoDB and CloudWatch behind the ports; the GitHub REST client |
//! | domain | [`domain`] | JWT claims, scopes, secrets, time, page tokens: no I/O |
//!
//! [`error`] is the crate's one error enum, [`cache`] the single-flight cache (bounded by entries
//! and bytes), [`deadline`] the invocation's deadline every wait and retry keeps to, [`config`] the
//! environment. The contract's types live in the `appcreds-wire` crate.
//!
//! Features: `lambda` adds the Lambda Function URL adapter ([`http::serve`]) and the cold-start
//! wiring (`runtime`); `cloudwatch` adds the CloudWatch metric sink. The operator CLI uses
//! neither, so it links no Lambda runtime and no CloudWatch SDK.

pub mod access;
pub mod aws;
pub mod cache;
pub mod config;
pub mod deadline;
pub mod domain;
pub mod error;
pub mod github;
pub mod http;
pub mod jobs;
pub mod ops;
pub mod ports;
#[cfg(feature = "lambda")]
pub mod runtime;
pub mod tokens;

pub use domain::secret::Secret;
pub use error::{Error, Result};
pub use ports::Services;
