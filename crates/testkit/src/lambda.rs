//! Function URL events, shaped as Lambda delivers them (payload format 2.0).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

/// A caller ARN as an IAM role session would have it.
pub const CALLER_ARN: &str = "arn:aws:sts::123456789012:assumed-role/ci-deployer/session-1";

/// An HTTP request to a Function URL, to be turned into the Lambda event.
#[derive(Debug, Clone)]
pub struct UrlRequest {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub caller_arn: Option<String>,
    /// More request headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// The invocation's deadline (ms since the Unix epoch) the runtime API gives; none if unset.
    pub deadline_ms: Option<u64>,
}

impl UrlRequest {
    /// `POST path` with a JSON body, from the standard test caller.
    pub fn post_json(path: &str, body: &serde_json::Value) -> Self {
        Self::post_raw(path, Some("application/json"), body.to_string().into_bytes())
    }

    pub fn post_raw(path: &str, content_type: Option<&str>, body: Vec<u8>) -> Self {
        UrlRequest {
            method: "POST".into(),
            path: path.into(),
            content_type: content_type.map(str::to_string),
            body,
            caller_arn: Some(CALLER_ARN.into()),
            headers: Vec::new(),
            deadline_ms: None,
        }
    }

    /// The same request, invoked with `left` until its Lambda deadline.
    pub fn deadline_in(mut self, left: std::time::Duration) -> Self {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.deadline_ms = Some((now + left).as_millis() as u64);
        self
    }

    /// The same request with one more header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// The Function URL event JSON (with `AuthType: AWS_IAM`, as Lambda sends it).
    pub fn event_json(&self) -> serde_json::Value {
        let mut headers = serde_json::Map::new();
        headers.insert("host".into(), json!("abcdefg.lambda-url.us-east-1.on.aws"));
        headers.insert("x-amzn-trace-id".into(), json!("Root=1-5e7b1d2a-1234567890abcdef12345678"));
        if let Some(ct) = &self.content_type {
            headers.insert("content-type".into(), json!(ct));
        }
        for (name, value) in &self.headers {
            headers.insert(name.clone(), json!(value));
        }
        let (body, encoded) = match std::str::from_utf8(&self.body) {
            Ok(text) => (text.to_string(), false),
            Err(_) => (STANDARD.encode(&self.body), true),
        };
        let authorizer = self.caller_arn.as_ref().map(|arn| {
            json!({"iam": {
                "accessKey": "ASIAEXAMPLE", "accountId": "123456789012", "callerId": "AROAEXAMPLE:session-1",
                "cognitoIdentity": null, "principalOrgId": "o-example", "userArn": arn, "userId": "AROAEXAMPLE:session-1"
            }})
        });
        json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": self.path,
            "rawQueryString": "",
            "headers": headers,
            "requestContext": {
                "accountId": "anonymous",
                "apiId": "abcdefg",
                "authorizer": authorizer,
                "domainName": "abcdefg.lambda-url.us-east-1.on.aws",
                "domainPrefix": "abcdefg",
                "http": {"method": self.method, "path": self.path, "protocol": "HTTP/1.1",
                         "sourceIp": "203.0.113.7", "userAgent": "appcreds-test"},
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "routeKey": "$default",
                "stage": "$default",
                "time": "24/Nov/2026:14:00:00 +0000",
                "timeEpoch": 1_795_615_200_000_i64
            },
            "body": body,
            "isBase64Encoded": encoded
        })
    }

    /// The event parsed by `lambda_http`, exactly as the runtime hands it to a handler.
    pub fn into_request(self) -> lambda_http::Request {
        use lambda_http::RequestExt;
        let req = lambda_http::request::from_str(&self.event_json().to_string()).expect("a valid Function URL event");
        match self.deadline_ms {
            None => req,
            Some(ms) => {
                let mut context = lambda_http::Context::default();
                context.deadline = ms;
                req.with_lambda_context(context)
            }
        }
    }
}

/// A handler's response, read back.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub error_type: Option<String>,
    pub content_type: Option<String>,
    pub body: serde_json::Value,
}

impl Reply {
    pub fn from_response(resp: lambda_http::Response<lambda_http::Body>) -> Self {
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes: &[u8] = resp.body().as_ref();
        Reply {
            status: resp.status().as_u16(),
            error_type: header("x-amzn-errortype"),
            content_type: header("content-type"),
            body: serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null),
        }
    }
}
