//! GitHub's REST API: the client ([`client`]: retries, rate-limit waits, `Link` pagination on the
//! API's origin), the response shapes appcreds reads ([`types`], after GitHub's OpenAPI
//! description), and the installation endpoints ([`installations`]).

pub mod client;
pub mod installations;
pub mod types;

pub use client::{Auth, GitHubClient, Reply, RetryPolicy, Timeouts};
