//! GitHub's REST API: the client ([`client`]: retries, rate-limit waits, `Link` pagination on the
//! API's origin), the response shapes appcreds reads ([`types`], after GitHub's OpenAPI
//! description), the installation endpoints ([`installations`]), Actions secrets ([`secrets`]),
//! and the verifier of GitHub Actions OIDC tokens ([`oidc`]).

pub mod client;
pub mod installations;
pub mod oidc;
pub mod secrets;
pub mod types;

pub use client::{Auth, GitHubClient, Reply, RetryPolicy, Timeouts};
