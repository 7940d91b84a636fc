//! The transport side of an operation: the request checks (method, path, caller, content type,
//! size, JSON) and [`Endpoint`], which runs them, then the operation, and answers as the contract
//! says. Independent of Lambda's types; [`super::lambda`] adapts it to Function URLs.

use serde_json::{Map, Value};

use tokio::time::Instant;

use crate::deadline;
use crate::error::Error;
use crate::http::{Call, Caller, Operation, error_reply};
use appcreds_wire::ErrorName;

/// Options of the transport checks.
#[derive(Debug, Clone)]
pub struct Transport {
    /// Refuse requests without an IAM caller in the request context. With `AuthType: AWS_IAM`
    /// Lambda always sets one, so a missing caller means the Function URL is not IAM-protected.
    pub require_iam_caller: bool,
    /// The local stack's stated caller, for requests that carry none. Never used while
    /// `require_iam_caller` holds: a deployed function takes its caller from Lambda's request
    /// context and from nowhere else.
    pub local_caller: Option<String>,
}

impl Transport {
    /// The checks of a deployed function: an IAM caller is required.
    pub fn iam() -> Transport {
        Transport { require_iam_caller: true, local_caller: None }
    }
}

/// Largest request body accepted, in bytes. Every valid request is far smaller.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// An HTTP request as the transport received it, before any check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawRequest<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The URL path.
    pub path: &'a str,
    /// The `Content-Type` header's bytes, if present.
    pub content_type: Option<&'a [u8]>,
    /// The body.
    pub body: &'a [u8],
    /// The IAM principal the platform authenticated, if any.
    pub caller_arn: Option<&'a str>,
    /// The `x-appcreds-github-oidc-token` header, if present.
    pub oidc_token: Option<&'a [u8]>,
}

/// Checks method, path, caller, content type and size, and parses the body as a JSON object.
/// `routes` are the paths this function serves (all `POST`).
fn parse_call(req: RawRequest<'_>, routes: &[&str], transport: &Transport) -> Result<Call, Error> {
    if req.method != "POST" || !routes.contains(&req.path) {
        return Err(Error::UnknownOperation { method: req.method.to_string(), path: req.path.to_string() });
    }
    let stated = if transport.require_iam_caller { None } else { transport.local_caller.clone() };
    let caller = Caller { arn: req.caller_arn.filter(|a| !a.is_empty()).map(str::to_string).or(stated) };
    if transport.require_iam_caller && caller.arn.is_none() {
        return Err(Error::Misconfigured(
            "the request carries no IAM caller; the Function URL must use AuthType AWS_IAM",
        ));
    }
    check_content_type(req.content_type, req.body.is_empty())?;
    if req.body.len() > MAX_BODY_BYTES {
        return Err(Error::invalid(
            "",
            format!(
                "Value with length {} at '' failed to satisfy constraint: Member must have length less than or equal to {MAX_BODY_BYTES}",
                req.body.len()
            ),
        ));
    }
    let body = parse_object(req.body)?;
    let oidc_token = match req.oidc_token {
        None => None,
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(token) if !token.trim().is_empty() => Some(token.trim().to_string()),
            _ => return Err(Error::AccessDenied("the GitHub OIDC token header is empty or not text".into())),
        },
    };
    Ok(Call { path: req.path.to_string(), caller, body, oidc_token })
}

fn check_content_type(value: Option<&[u8]>, body_is_empty: bool) -> Result<(), Error> {
    let Some(value) = value else {
        // restJson1: an operation with an empty body may omit the content type.
        return if body_is_empty { Ok(()) } else { Err(Error::UnsupportedMediaType(String::new())) };
    };
    let text = std::str::from_utf8(value).unwrap_or_default();
    let essence = text.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(Error::UnsupportedMediaType(text.chars().take(100).collect()))
    }
}

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::Serialization("the request body must be a JSON object".into())),
        Err(e) => Err(Error::Serialization(format!(
            "the request body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

/// An HTTP answer, independent of the transport.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HttpReply {
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
    ///
    /// With Lambda's `deadline`, the operation answers by it ([`deadline::answer_by`]): stopped at the
    /// deadline less [`deadline::ANSWER_MARGIN`], so that the caller gets the contract's
    /// `ServerSideError`, then [settled](Operation::settle).
    pub(crate) async fn respond(&self, req: RawRequest<'_>, deadline: Option<Instant>) -> HttpReply {
        let work = async {
            match parse_call(req, O::ROUTES, &self.transport) {
                Ok(call) => self.op.call(call).await,
                Err(err) => Err(err),
            }
        };
        let outcome = match deadline {
            None => work.await,
            Some(deadline) => deadline::answer_by(deadline, work, |by| self.op.settle(by)).await,
        };
        match outcome {
            Ok(value) => HttpReply { status: 200, error_type: None, body: value.to_string() },
            Err(err) => {
                let (name, body) = error_reply(&err);
                let status = name.status();
                if status >= 500 {
                    tracing::error!(error = %err, error_type = name.as_str(), status, "request failed");
                } else if name != ErrorName::AccessDenied {
                    // (An access refusal has its own audit line, with the caller and the request.)
                    tracing::info!(error = %err, error_type = name.as_str(), status, "request refused");
                }
                let body = serde_json::to_string(&body).unwrap_or_else(|_| r#"{"message":"error"}"#.into());
                HttpReply { status, error_type: Some(name), body }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers `{}` (or is cut at the deadline, with `slow`), and keeps when it was told to settle by.
    struct Settles {
        slow: bool,
        told: std::sync::Mutex<Vec<Instant>>,
    }

    #[async_trait::async_trait]
    impl Operation for Settles {
        const ROUTES: &'static [&'static str] = &["/tokens/app"];

        async fn call(&self, _call: Call) -> Result<Value, Error> {
            if self.slow {
                std::future::pending::<()>().await;
            }
            Ok(Value::Object(Map::new()))
        }

        async fn settle(&self, by: Instant) {
            self.told.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(by);
        }
    }

    /// With a deadline, the operation settles after its work, answered or cut, until half the
    /// answer's margin before the deadline; without one (no Lambda to freeze the process), it
    /// does not.
    #[tokio::test]
    async fn an_answer_waits_for_the_operation_to_settle() {
        let transport = Transport { require_iam_caller: false, local_caller: Some("arn:aws:iam::1:user/me".into()) };
        let req = || RawRequest {
            method: "POST",
            path: "/tokens/app",
            content_type: Some(b"application/json"),
            body: b"{}",
            caller_arn: None,
            oidc_token: None,
        };
        for slow in [false, true] {
            let endpoint = Endpoint::new(Settles { slow, told: Default::default() }, transport.clone());
            let deadline = Instant::now() + std::time::Duration::from_secs(1);
            let reply = endpoint.respond(req(), Some(deadline)).await;
            assert_eq!(reply.status, if slow { 500 } else { 200 }, "{reply:?}");
            let told = endpoint.op().told.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            assert_eq!(told, vec![deadline - deadline::ANSWER_MARGIN / 2]);
            let endpoint = Endpoint::new(Settles { slow: false, told: Default::default() }, transport.clone());
            assert_eq!(endpoint.respond(req(), None).await.status, 200);
            assert!(endpoint.op().told.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty());
        }
    }

    #[test]
    fn content_types() {
        let ok = |v: &str| check_content_type(Some(v.as_bytes()), false).is_ok();
        assert!(ok("application/json"));
        assert!(ok("Application/JSON; charset=utf-8"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/jsonx"));
        assert!(!ok("application/x-www-form-urlencoded"));
        assert!(check_content_type(None, true).is_ok());
        assert!(check_content_type(None, false).is_err());
    }
}
