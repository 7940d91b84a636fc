//! The HTTP edge of every function: the contract's request readers ([`request`]), the one
//! error → HTTP mapping ([`error_reply`]) and the [`Operation`] trait every operation implements.
//! With the `lambda` feature, also the transport: `Endpoint` (the request checks, then any
//! operation) and `serve`, which runs an endpoint behind a Lambda Function URL.

use appcreds_wire::{ErrorBody, ErrorName};
use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::error::Error;

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
}

/// A contract response as the JSON an [`Operation`] answers with.
pub fn reply(response: impl serde::Serialize) -> Result<Value, Error> {
    serde_json::to_value(response).map_err(|e| Error::internal("writing the reply", e))
}

/// The contract's name and body for an error. The only place errors become HTTP.
pub fn error_reply(err: &Error) -> (ErrorName, ErrorBody) {
    let message = || ErrorBody::message(err.to_string());
    match err {
        Error::Validation { message, fields } => (
            ErrorName::Validation,
            ErrorBody { field_list: Some(fields.clone()), ..ErrorBody::message(message.clone()) },
        ),
        Error::Serialization(text) => (ErrorName::Serialization, ErrorBody::message(text.clone())),
        Error::UnsupportedMediaType(_) => (ErrorName::UnsupportedMediaType, message()),
        Error::UnknownOperation { .. } => (ErrorName::UnknownOperation, message()),
        Error::AccessDenied(_) => (ErrorName::AccessDenied, message()),
        Error::GitHubRejected { documentation_url, .. } => {
            (ErrorName::ClientSide, ErrorBody { documentation_url: documentation_url.clone(), ..message() })
        }
        Error::UnknownApp(_) | Error::UnknownInstallation { .. } | Error::RotationRefused(_) => {
            (ErrorName::ClientSide, message())
        }
        Error::AppKeyMissing(_)
        | Error::SigningKey(_)
        | Error::Misconfigured(_)
        | Error::GitHubUnauthorized { .. }
        | Error::GitHubRefusedAppcreds { .. }
        | Error::GitHubUnavailable(_)
        | Error::OutOfTime => (ErrorName::ServerSide, message()),
        Error::Throttled { retry_after_seconds, .. }
        | Error::SyncRunning { retry_after_seconds }
        | Error::RotationRunning { retry_after_seconds } => {
            (ErrorName::Throttling, ErrorBody { retry_after_seconds: Some(*retry_after_seconds), ..message() })
        }
        Error::Internal { .. } => (ErrorName::ServerSide, ErrorBody::message("Internal server error")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_do_not_leak_detail() {
        let err = Error::internal("reading the App table", "arn:aws:dynamodb:eu-west-1:123:table/secret-name");
        let (name, body) = error_reply(&err);
        assert_eq!((name.status(), name.as_str()), (500, "ServerSideError"));
        assert_eq!(serde_json::to_value(body).unwrap(), serde_json::json!({"message": "Internal server error"}));
    }

    #[test]
    fn throttling_says_when_to_retry() {
        let (name, body) = error_reply(&Error::Throttled { service: "GitHub", retry_after_seconds: 30 });
        assert_eq!((name.status(), body.retry_after_seconds), (429, Some(30)));
    }
}
