//! The integration tests, one module per subject, in one binary: core and the AWS SDKs are linked
//! once, not once per file.
//!
//! Every test shares this process, and runs on its own thread beside the others: one moto server
//! (each test on its own tables, keys, users and App IDs), one global subscriber for
//! [`appcreds_tests::Logs`], and no environment variable set by any test.

mod access_rules;
mod app_token;
mod batch;
mod budgets;
mod get_installation;
mod github_client;
mod github_double;
mod github_secrets;
mod installation_token;
mod key_rotation;
mod keys;
mod log_format;
mod oidc;
mod rate_limit;
mod shared_jwt;
mod sync;
mod tls_roots;
mod token_formats;
