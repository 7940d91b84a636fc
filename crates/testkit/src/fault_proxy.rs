//! A loopback proxy in front of an AWS-protocol server (moto) that answers chosen actions with an
//! AWS error for a number of requests and forwards everything else untouched: throttling and
//! outages of a real protocol server, through the real SDK clients. It also counts every request
//! by its operation, as it arrives on the wire (so a retry counts again), whichever process sent it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

/// An error to answer `times` requests whose body (a Query-protocol form) has `Action=action`.
#[derive(Debug, Clone)]
struct Injected {
    action: String,
    times: usize,
    status: u16,
    code: String,
}

#[derive(Default)]
struct Shared {
    target: String,
    injected: Mutex<Vec<Injected>>,
    calls: Mutex<BTreeMap<String, usize>>,
    /// The body of every awsQuery request, as it arrived.
    forms: Mutex<Vec<String>>,
    http: reqwest::Client,
}

/// The running proxy; its URL is an endpoint for the SDK clients.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts a proxy to `target` (e.g. the moto endpoint) on a free loopback port.
    pub async fn start(target: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared { target: target.trim_end_matches('/').to_string(), ..Shared::default() });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().fallback(forward).with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FaultProxy { addr, shared })
    }

    /// The proxy's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next `times` requests for `action` (`CreateAccessKey`) with HTTP `status` and
    /// error `code` (`Throttling`), as an awsQuery service does.
    pub fn inject(&self, action: &str, times: usize, status: u16, code: &str) {
        let mut injected = self.shared.injected.lock().unwrap_or_else(PoisonError::into_inner);
        injected.push(Injected { action: action.to_string(), times, status, code: code.to_string() });
    }

    /// The requests so far by operation: a JSON-protocol request by its `X-Amz-Target`
    /// (`TrentService.Sign`, `DynamoDB_20120810.GetItem`), followed by the table it names if
    /// it names one (`DynamoDB_20120810.GetItem apps`), an awsQuery one by its `Action`
    /// (`CreateAccessKey`), anything else by method and path.
    pub fn calls(&self) -> BTreeMap<String, usize> {
        self.shared.calls.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The bodies (forms, still URL-encoded) of the awsQuery requests for `action` so far, in order.
    pub fn forms(&self, action: &str) -> Vec<String> {
        let forms = self.shared.forms.lock().unwrap_or_else(PoisonError::into_inner);
        forms.iter().filter(|f| f.split('&').any(|kv| kv == format!("Action={action}"))).cloned().collect()
    }
}

/// The operation a request is counted under (see [`FaultProxy::calls`]).
fn operation(parts: &axum::http::request::Parts, form: &str) -> String {
    if let Some(target) = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let body: serde_json::Value = serde_json::from_str(form).unwrap_or_default();
        return match body.get("TableName").and_then(|t| t.as_str()) {
            Some(table) => format!("{target} {table}"),
            None => target.to_string(),
        };
    }
    match form.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        Some(action) => action.to_string(),
        None => format!("{} {}", parts.method, parts.uri.path()),
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body): Result<Bytes, _> = axum::body::to_bytes(body, 16 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let text = String::from_utf8_lossy(&body);
    *shared.calls.lock().unwrap_or_else(PoisonError::into_inner).entry(operation(&parts, &text)).or_default() += 1;
    if text.split('&').any(|kv| kv.starts_with("Action=")) {
        shared.forms.lock().unwrap_or_else(PoisonError::into_inner).push(text.to_string());
    }
    let hit = {
        let mut injected = shared.injected.lock().unwrap_or_else(PoisonError::into_inner);
        injected.iter_mut().find(|i| i.times > 0 && text.split('&').any(|kv| kv == format!("Action={}", i.action))).map(
            |i| {
                i.times -= 1;
                i.clone()
            },
        )
    };
    if let Some(i) = hit {
        let xml = format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{}</Code><Message>Rate exceeded</Message></Error>\
             <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>",
            i.code
        );
        let status = StatusCode::from_u16(i.status).unwrap_or(StatusCode::BAD_REQUEST);
        return (status, [("content-type", "text/xml")], xml).into_response();
    }
    let uri = format!("{}{}", shared.target, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut upstream = shared.http.request(parts.method, uri).body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    match upstream.send().await {
        Ok(answer) => {
            let status = answer.status();
            let headers = answer.headers().clone();
            let bytes = answer.bytes().await.unwrap_or_default();
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            for (name, value) in &headers {
                if name != "content-length" && name != "transfer-encoding" {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            response
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
