//! The HTTP side of every function: request checks (method, path, content type, size, JSON),
//! typed field readers with the contract's error names, and the single error → HTTP mapping.

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Map, Value, json};

use crate::error::{Error, FieldError};

/// Largest request body accepted, in bytes. Every valid request is far smaller.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The header that names the error, as Smithy's restJson1 protocol does.
pub const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";

/// Who called: the IAM principal from the Function URL's request context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
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
    pub path: String,
    pub caller: Caller,
    pub body: Map<String, Value>,
}

/// Options of the transport checks.
#[derive(Debug, Clone, Copy)]
pub struct Transport {
    /// Refuse requests without an IAM caller in the request context. With `AuthType: AWS_IAM`
    /// Lambda always sets one, so a missing caller means the Function URL is not IAM-protected.
    pub require_iam_caller: bool,
}

/// Checks method, path, caller, content type and size, and parses the body as a JSON object.
/// `routes` are the paths this function serves (all `POST`).
pub fn parse_call(req: &Request, routes: &[&str], transport: Transport) -> Result<Call, Error> {
    let path = req.uri().path().to_string();
    if req.method() != Method::POST || !routes.contains(&path.as_str()) {
        return Err(Error::UnknownOperation { method: req.method().to_string(), path });
    }
    let caller = caller_of(req);
    if transport.require_iam_caller && caller.arn.is_none() {
        return Err(Error::Misconfigured(
            "the request carries no IAM caller; the Function URL must use AuthType AWS_IAM",
        ));
    }
    let bytes: &[u8] = req.body().as_ref();
    check_content_type(req.headers().get(header::CONTENT_TYPE), bytes.is_empty())?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(Error::invalid("", format!("the request body must be at most {MAX_BODY_BYTES} bytes")));
    }
    let body = parse_object(bytes)?;
    Ok(Call { path, caller, body })
}

fn caller_of(req: &Request) -> Caller {
    let arn = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            ctx.authorizer.as_ref().and_then(|a| a.iam.as_ref()).and_then(|iam| iam.user_arn.clone())
        }
        _ => None,
    };
    Caller { arn: arn.filter(|a| !a.is_empty()) }
}

fn check_content_type(value: Option<&HeaderValue>, body_is_empty: bool) -> Result<(), Error> {
    let Some(value) = value else {
        // restJson1: an operation with an empty body may omit the content type.
        return if body_is_empty { Ok(()) } else { Err(Error::UnsupportedMediaType(String::new())) };
    };
    let text = value.to_str().unwrap_or_default();
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

/// Typed, path-aware reads of a JSON object's members. Type mismatches are
/// `SerializationException`s; constraint violations are collected as `ValidationException` fields.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Self { map, prefix: String::new() }
    }

    pub fn nested(map: &'a Map<String, Value>, prefix: impl Into<String>) -> Self {
        Self { map, prefix: prefix.into() }
    }

    pub fn path(&self, name: &str) -> String {
        format!("{}/{}", self.prefix, name)
    }

    /// A member's value; JSON `null` counts as absent, as in Smithy's JSON protocols.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// An integer member within `i64`; `None` if absent.
    pub fn i64(&self, name: &str) -> Result<Option<i64>, Error> {
        self.get(name).map(|v| as_i64(v, &self.path(name))).transpose()
    }

    /// A string member; `None` if absent.
    pub fn str(&self, name: &str) -> Result<Option<&'a str>, Error> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(&self.path(name), "a string", other)),
        }
    }

    /// An object member; `None` if absent.
    pub fn object(&self, name: &str) -> Result<Option<&'a Map<String, Value>>, Error> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => Err(wrong_type(&self.path(name), "an object", other)),
        }
    }

    /// An array member; `None` if absent.
    pub fn array(&self, name: &str) -> Result<Option<&'a Vec<Value>>, Error> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(other) => Err(wrong_type(&self.path(name), "an array", other)),
        }
    }
}

/// Reads a JSON number as an `i64`, refusing floats and values outside the 64-bit range.
pub fn as_i64(value: &Value, path: &str) -> Result<i64, Error> {
    match value {
        Value::Number(n) => n.as_i64().ok_or_else(|| {
            Error::Serialization(if n.is_f64() && n.as_f64().is_some_and(|f| f.abs() < 9.2e18) {
                format!("Value at '{path}' must be an integer, not {n}")
            } else {
                format!("Value at '{path}' is outside the 64-bit integer range")
            })
        }),
        other => Err(wrong_type(path, "an integer", other)),
    }
}

fn wrong_type(path: &str, expected: &str, got: &Value) -> Error {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    Error::Serialization(format!("Value at '{path}' must be {expected}, not {kind}"))
}

/// Collects constraint violations so a response can name all of them at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok` if nothing was added, else one `ValidationException` naming every field.
    pub fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() { Ok(()) } else { Err(Error::invalid_fields(self.0)) }
    }
}

/// Reads a required ID (`appId`, …): an integer from 1 to 2^63 − 1.
pub fn required_id(fields: &Fields<'_>, name: &str) -> Result<i64, Error> {
    match fields.i64(name)? {
        None => Err(Error::invalid(fields.path(name), "must not be null")),
        Some(v) if v < 1 => Err(Error::invalid(fields.path(name), "must be greater than or equal to 1")),
        Some(v) => Ok(v),
    }
}

/// The contract's name, HTTP status and body for an error. The only place errors become HTTP.
pub fn error_parts(err: &Error) -> (StatusCode, &'static str, Value) {
    match err {
        Error::Validation { message, fields } => {
            (StatusCode::BAD_REQUEST, "ValidationException", json!({ "message": message, "fieldList": fields }))
        }
        Error::Serialization(message) => {
            (StatusCode::BAD_REQUEST, "SerializationException", json!({ "message": message }))
        }
        Error::UnsupportedMediaType(_) => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaTypeException", json!({ "message": err.to_string() }))
        }
        Error::UnknownOperation { .. } => {
            (StatusCode::NOT_FOUND, "UnknownOperationException", json!({ "message": err.to_string() }))
        }
        Error::UnknownApp(_) | Error::UnknownInstallation { .. } | Error::GitHubRejected { .. } => {
            (StatusCode::BAD_REQUEST, "ClientSideError", json!({ "message": err.to_string() }))
        }
        Error::AppKeyMissing(_)
        | Error::SigningKey(_)
        | Error::Misconfigured(_)
        | Error::GitHubUnauthorized { .. }
        | Error::GitHubUnavailable(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "ServerSideError", json!({ "message": err.to_string() }))
        }
        Error::Throttled { retry_after_seconds, .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlingException",
            json!({ "message": err.to_string(), "retryAfterSeconds": retry_after_seconds }),
        ),
        Error::Internal { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, "ServerSideError", json!({ "message": "Internal server error" }))
        }
    }
}

/// Turns an operation's outcome into the HTTP response. Errors are logged here, once: client
/// mistakes at `info`, server faults at `error` with their (secret-free) detail.
pub fn respond(result: Result<Value, Error>) -> Response<Body> {
    match result {
        Ok(value) => json_response(StatusCode::OK, &value, None),
        Err(err) => {
            let (status, name, body) = error_parts(&err);
            if status.is_server_error() {
                tracing::error!(error = %err, error_type = name, status = status.as_u16(), "request failed");
            } else {
                tracing::info!(error = %err, error_type = name, status = status.as_u16(), "request refused");
            }
            json_response(status, &body, Some(name))
        }
    }
}

fn json_response(status: StatusCode, body: &Value, error_type: Option<&'static str>) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(name) = error_type {
        headers.insert(ERROR_TYPE_HEADER, HeaderValue::from_static(name));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(text: &str) -> Map<String, Value> {
        match serde_json::from_str(text) {
            Ok(Value::Object(m)) => m,
            _ => panic!("not an object: {text}"),
        }
    }

    #[test]
    fn ids_are_read_strictly() {
        let cases = [
            (r#"{"appId": 7}"#, Ok(7)),
            (r#"{"appId": 9223372036854775807}"#, Ok(i64::MAX)),
            (r#"{}"#, Err("ValidationException")),
            (r#"{"appId": null}"#, Err("ValidationException")),
            (r#"{"appId": 0}"#, Err("ValidationException")),
            (r#"{"appId": -3}"#, Err("ValidationException")),
            (r#"{"appId": "7"}"#, Err("SerializationException")),
            (r#"{"appId": 7.5}"#, Err("SerializationException")),
            (r#"{"appId": 7.0}"#, Err("SerializationException")),
            (r#"{"appId": 9223372036854775808}"#, Err("SerializationException")),
            (r#"{"appId": 1e30}"#, Err("SerializationException")),
            (r#"{"appId": true}"#, Err("SerializationException")),
            (r#"{"appId": [1]}"#, Err("SerializationException")),
        ];
        for (body, expected) in cases {
            let map = obj(body);
            let got = required_id(&Fields::new(&map), "appId").map_err(|e| error_parts(&e).1);
            assert_eq!(got, expected, "{body}");
        }
    }

    #[test]
    fn validation_errors_name_the_field() {
        let map = obj(r#"{"appId": 0}"#);
        let err = required_id(&Fields::new(&map), "appId").unwrap_err();
        let (status, name, body) = error_parts(&err);
        assert_eq!((status.as_u16(), name), (400, "ValidationException"));
        assert_eq!(body["fieldList"][0]["path"], "/appId");
        assert_eq!(body["fieldList"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn internal_errors_do_not_leak_detail() {
        let err = Error::internal("reading the App table", "arn:aws:dynamodb:eu-west-1:123:table/secret-name");
        let (status, name, body) = error_parts(&err);
        assert_eq!((status.as_u16(), name), (500, "ServerSideError"));
        assert_eq!(body, json!({"message": "Internal server error"}));
    }

    #[test]
    fn content_types() {
        let ok = |v: &str| check_content_type(Some(&HeaderValue::from_str(v).unwrap()), false).is_ok();
        assert!(ok("application/json"));
        assert!(ok("Application/JSON; charset=utf-8"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/jsonx"));
        assert!(!ok("application/x-www-form-urlencoded"));
        assert!(check_content_type(None, true).is_ok());
        assert!(check_content_type(None, false).is_err());
    }
}
