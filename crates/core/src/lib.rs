//! appcreds core: GitHub App credentials whose private key never leaves AWS KMS.
//!
//! The crate is layered. A module uses only the modules of the rows below its own (modules of one
//! row do not use each other), and a row marked *wiring* is named only by the cold start (the top
//! row): the adapters implement the ports, and everything but the cold start reaches them through
//! the ports. The test in `layers.rs` reads this table and holds every `crate::` path of `src/` to
//! it, and fails for a module that is missing from it.
//!
//! | layer | modules | what it holds |
//! |---|---|---|
//! | cold start | [`runtime`] | (feature `lambda`) logging, the environment, the SDK clients and the [`Services`] built from them; serving a job |
//! | operations | [`ops`] | one module per wire operation (app-token, installation-token, get-installation, refresh-cache), the audit line, the page tokens |
//! | access control | [`access_control`] | the access rules, cached per warm function, judging each request; one audit line per refusal |
//! | HTTP | [`http`] | the [`http::Operation`] trait operations implement, the request readers, and the transport that serves any operation (it knows them only by that trait) |
//! | jobs | [`jobs`] | the scheduled work: the installation sync, the rate-limit scanner, the access-key rotator |
//! | credentials | [`tokens`] | App JWTs and installation tokens, with their caches |
//! | services | [`services`] | [`Services`], the one bundle of the ports and the GitHub client that everything above takes |
//! | configuration (*wiring*) | [`config`] | the environment `template.yaml` sets, read once per cold start |
//! | GitHub | [`github`] | GitHub's REST client: a concrete client, not a port (credentials and jobs call it directly, through [`Services::github`]); and the adapter of the OIDC verifier port |
//! | AWS adapters (*wiring*) | [`aws`] | KMS, DynamoDB, CloudWatch, IAM and STS behind the ports: only the cold start (and the operator CLI) names them; everything else reaches AWS through the ports |
//! | ports | [`ports`] | the traits the world is reached through, the records that cross them, and the stand-in for a port a function lacks |
//! | support | [`cache`], [`deadline`], [`tls`] | the single-flight cache (bounded by entries and bytes); the invocation's deadline every wait and retry keeps to, and the budget of an AWS call; the TLS configuration every HTTPS client shares (the system's roots, read once) |
//! | domain | [`domain`] | access rules, JWT claims, scopes, secrets, time, rotation targets: no I/O |
//! | errors | [`error`] | the crate's one error enum, and its one mapping to the contract's errors |
//!
//! The contract's types live in the `appcreds-wire` crate.
//!
//! Features: `lambda` adds the Lambda Function URL adapter ([`http::serve`]) and the cold-start
//! wiring (`runtime`); `cloudwatch` adds the CloudWatch metric sink; `rotator` the IAM and STS
//! adapters. The operator CLI uses none of them, so it links no Lambda runtime and no
//! CloudWatch, IAM or STS SDK.

pub mod access_control;
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
pub mod services;
pub mod tls;
pub mod tokens;

#[cfg(test)]
mod layers;

pub use domain::secret::Secret;
pub use error::{Error, Result};
pub use services::Services;
