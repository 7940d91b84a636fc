//! The HTTP edge of every function: the [`Operation`] trait every operation implements, the
//! contract's request readers ([`request`], on the Smithy constraints of `constraint`), and
//! [`error_reply`] (the one error → HTTP mapping, which lives with the error in [`crate::error`]).
//! With the `lambda` feature, also the transport: `Endpoint` (`endpoint`: the request checks,
//! then any operation) and `serve` (`lambda`), which runs an endpoint behind a Lambda Function URL.
//! It knows the operations only by the trait: they sit above it.

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::error::Error;
pub use crate::error::error_reply;

pub(crate) mod constraint;
#[cfg(feature = "lambda")]
mod endpoint;
#[cfg(feature = "lambda")]
mod lambda;
pub mod request;

#[cfg(feature = "lambda")]
pub use endpoint::{Endpoint, Transport};
#[cfg(feature = "lambda")]
pub use lambda::serve;

/// Who called: the IAM principal from the Function URL's request context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The principal's ARN; `None` only where no platform authenticated the caller.
    pub(crate) arn: Option<String>,
}

impl Caller {
    /// The ARN for audit lines, or `-` where the platform gave none (only in local emulation).
    pub(crate) fn audit_name(&self) -> &str {
        self.arn.as_deref().unwrap_or("-")
    }
}

/// A request that passed the transport checks: its route, caller and JSON object body.
#[derive(Debug)]
pub struct Call {
    /// The path (one of the operation's routes).
    pub(crate) path: String,
    /// Who called.
    pub(crate) caller: Caller,
    /// The body, a JSON object.
    pub(crate) body: Map<String, Value>,
    /// **(ext)** The caller's GitHub Actions OIDC token (header `x-appcreds-github-oidc-token`),
    /// not yet verified.
    pub(crate) oidc_token: Option<String>,
}

/// One function's operations: the routes it serves and what it answers.
#[async_trait]
pub trait Operation: Send + Sync + 'static {
    /// The paths served (every operation is a `POST`).
    const ROUTES: &'static [&'static str];
    /// The answer to a checked request, as the contract's JSON (see [`reply`]).
    async fn call(&self, call: Call) -> Result<Value, Error>;
    /// Waits, until `by` at the latest, for what this operation's requests started and must see
    /// through before the process is frozen (Lambda freezes it once it has answered): the transport
    /// calls it after a request's work and before its answer, in an invocation with a deadline.
    /// Default: nothing to wait for.
    async fn settle(&self, _by: tokio::time::Instant) {}
}

/// A contract response as the JSON an [`Operation`] answers with.
pub fn reply(response: impl serde::Serialize) -> Result<Value, Error> {
    serde_json::to_value(response).map_err(|e| Error::internal("writing the reply", e))
}
