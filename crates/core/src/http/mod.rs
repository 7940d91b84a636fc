//! The HTTP edge of every function: request checks and the contract's request readers
//! ([`request`]), the one error → HTTP mapping ([`error_reply`]), the [`Operation`] trait every
//! operation implements, and [`Endpoint`], which serves any operation; with the `lambda` feature,
//! behind a Lambda Function URL ([`serve`]).

use appcreds_wire::{ErrorBody, ErrorName};
use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::error::Error;

#[cfg(feature = "lambda")]
mod lambda;
pub mod request;

#[cfg(feature = "lambda")]
pub use lambda::serve;
pub use request::RawRequest;

/// Who called: the IAM principal from the Function URL's request context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The principal's ARN; `None` only where no platform authenticated the caller.
    pub arn: Option<String>,
}

impl Caller {
    /// The ARN for audit lines, or `-` where the platform gave none (only in local emulation).
    pub fn audit_name(&self) -> &str {
        self.arn.as_deref().unwrap_or("-")
    }
}

/// A request that passed the transport checks: its route, caller and JSON object body.
#[derive(Debug)]
pub struct Call {
    /// The path (one of the operation's routes).
    pub path: String,
    /// Who called.
    pub caller: Caller,
    /// The body, a JSON object.
    pub body: Map<String, Value>,
}

/// Options of the transport checks.
#[derive(Debug, Clone, Copy)]
pub struct Transport {
    /// Refuse requests without an IAM caller in the request context. With `AuthType: AWS_IAM`
    /// Lambda always sets one, so a missing caller means the Function URL is not IAM-protected.
    pub require_iam_caller: bool,
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

/// An HTTP answer, independent of the transport.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// The error's name for the `x-amzn-errortype` header; `None` on success.
    pub error_type: Option<ErrorName>,
    /// The JSON body.
    pub body: String,
}

/// An operation behind the transport checks: what every function serves.
pub struct Endpoint<O> {
    op: O,
    transport: Transport,
}

impl<O: Operation> Endpoint<O> {
    /// Serves `op` behind `transport`'s checks.
    pub fn new(op: O, transport: Transport) -> Self {
        Endpoint { op, transport }
    }

    /// The operation (tests and benchmarks reach its caches through it).
    pub fn op(&self) -> &O {
        &self.op
    }

    /// Checks `req`, runs the operation and turns the outcome into the reply. Errors are logged
    /// here, once: client mistakes at `info`, server faults at `error` with their (secret-free)
    /// detail.
    pub async fn respond(&self, req: RawRequest<'_>) -> HttpReply {
        let outcome = match request::parse_call(req, O::ROUTES, self.transport) {
            Ok(call) => self.op.call(call).await,
            Err(err) => Err(err),
        };
        match outcome {
            Ok(value) => HttpReply { status: 200, error_type: None, body: value.to_string() },
            Err(err) => {
                let (name, body) = error_reply(&err);
                let status = name.status();
                if status >= 500 {
                    tracing::error!(error = %err, error_type = name.as_str(), status, "request failed");
                } else {
                    tracing::info!(error = %err, error_type = name.as_str(), status, "request refused");
                }
                let body = serde_json::to_string(&body).unwrap_or_else(|_| r#"{"message":"error"}"#.into());
                HttpReply { status, error_type: Some(name), body }
            }
        }
    }
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
        Error::UnknownApp(_) | Error::UnknownInstallation { .. } | Error::GitHubRejected { .. } => {
            (ErrorName::ClientSide, message())
        }
        Error::AppKeyMissing(_)
        | Error::SigningKey(_)
        | Error::Misconfigured(_)
        | Error::GitHubUnauthorized { .. }
        | Error::GitHubUnavailable(_) => (ErrorName::ServerSide, message()),
        Error::Throttled { retry_after_seconds, .. } => {
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
