//! A loopback proxy in front of an AWS-protocol server (moto) that answers chosen actions with an
//! AWS error for a number of requests and forwards everything else untouched: throttling and
//! outages of a real protocol server, through the real SDK clients. It also counts every request
//! by its operation, as it arrives on the wire (so a retry counts again), whichever process sent it,
//! and can hold a request until another arrives (which proves a client sent both at once).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

/// An error to answer `times` requests for `action`: an awsQuery request whose form has
/// `Action=action`, or a JSON-protocol one whose operation ([`FaultProxy::calls`]) is `action`.
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
    /// The operation and body of every JSON-protocol request, as it arrived.
    bodies: Mutex<Vec<(String, String)>>,
    /// Operations held until another arrives: (held, until).
    holds: Mutex<Vec<(String, String)>>,
    /// The requests being held, by operation: how many now, and how many ever.
    waiting: Mutex<BTreeMap<String, (usize, usize)>>,
    /// How each held request was let go: `true` when the other arrived, `false` after [`HOLD_LIMIT`].
    released: Mutex<Vec<bool>>,
    /// Woken at each arrival.
    arrivals: tokio::sync::Notify,
    http: reqwest::Client,
}

/// How long a held request waits for the other at most (then it goes on, and says so).
const HOLD_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

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

    /// Answers the next `times` requests for `action` with HTTP `status` and error `code`, as the
    /// service does: an awsQuery action (`CreateAccessKey`, `Throttling`) in XML, a JSON-protocol
    /// operation as [`Self::calls`] names it (`DynamoDB_20120810.BatchGetItem`,
    /// `AccessDeniedException`) in JSON.
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

    /// Holds every request for `a` (as [`Self::calls`] names it) until a request for `b` is held
    /// or arrives, and every request for `b` until one for `a` is held or arrives, for 10 s at
    /// most: a client that sends both at once gets both answered at once, in whichever order they
    /// come; one that waits for one answer before sending the other request waits 10 s for each.
    pub fn meet(&self, a: &str, b: &str) {
        let mut holds = self.shared.holds.lock().unwrap_or_else(PoisonError::into_inner);
        holds.push((a.into(), b.into()));
        holds.push((b.into(), a.into()));
    }

    /// How each held request was let go, in order: `true` when the other request had arrived,
    /// `false` when it had not within 10 s.
    pub fn released(&self) -> Vec<bool> {
        self.shared.released.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The bodies of the JSON-protocol requests for `operation` (as [`Self::calls`] names it) so
    /// far, in order, parsed.
    pub fn bodies(&self, operation: &str) -> Vec<serde_json::Value> {
        let bodies = self.shared.bodies.lock().unwrap_or_else(PoisonError::into_inner);
        bodies
            .iter()
            .filter(|(op, _)| op == operation)
            .map(|(_, b)| serde_json::from_str(b).unwrap_or_default())
            .collect()
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

/// Holds a request for `op` while [`FaultProxy::meet`] says so.
async fn hold(shared: &Shared, op: &str) {
    let until = {
        let holds = shared.holds.lock().unwrap_or_else(PoisonError::into_inner);
        holds.iter().find(|(held, _)| held == op).map(|(_, until)| until.clone())
    };
    let Some(until) = until else { return };
    let arrived = |op: &str| shared.calls.lock().unwrap_or_else(PoisonError::into_inner).get(op).copied().unwrap_or(0);
    let held =
        |op: &str| shared.waiting.lock().unwrap_or_else(PoisonError::into_inner).get(op).copied().unwrap_or_default();
    // The other side as this request starts its hold: it meets a request for `until` that is held
    // now, or that is held or arrives from now on (one may have come, met a request held before
    // and gone, between this request's arrival and this line).
    let (before_arrived, (_, before_held)) = (arrived(&until), held(&until));
    {
        let mut waiting = shared.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let (now, ever) = waiting.entry(op.to_string()).or_default();
        (*now, *ever) = (*now + 1, *ever + 1);
    }
    shared.arrivals.notify_waiters();
    let give_up = tokio::time::Instant::now() + HOLD_LIMIT;
    let released = loop {
        let arrival = shared.arrivals.notified();
        tokio::pin!(arrival);
        arrival.as_mut().enable();
        let (held_now, held_ever) = held(&until);
        if held_now > 0 || held_ever > before_held || arrived(&until) > before_arrived {
            break true;
        }
        if tokio::time::timeout_at(give_up, arrival).await.is_err() {
            break false;
        }
    };
    if let Some((now, _)) = shared.waiting.lock().unwrap_or_else(PoisonError::into_inner).get_mut(op) {
        *now -= 1;
    }
    shared.released.lock().unwrap_or_else(PoisonError::into_inner).push(released);
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body): Result<Bytes, _> = axum::body::to_bytes(body, 16 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let text = String::from_utf8_lossy(&body);
    let op = operation(&parts, &text);
    *shared.calls.lock().unwrap_or_else(PoisonError::into_inner).entry(op.clone()).or_default() += 1;
    shared.arrivals.notify_waiters();
    hold(&shared, &op).await;
    if text.split('&').any(|kv| kv.starts_with("Action=")) {
        shared.forms.lock().unwrap_or_else(PoisonError::into_inner).push(text.to_string());
    }
    let json = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).filter(|t| t.contains("amz-json"));
    if json.is_some() {
        shared.bodies.lock().unwrap_or_else(PoisonError::into_inner).push((op.clone(), text.to_string()));
    }
    let hit = {
        let mut injected = shared.injected.lock().unwrap_or_else(PoisonError::into_inner);
        let named = |i: &Injected| op == i.action || text.split('&').any(|kv| kv == format!("Action={}", i.action));
        injected.iter_mut().find(|i| i.times > 0 && named(i)).map(|i| {
            i.times -= 1;
            i.clone()
        })
    };
    if let Some(i) = hit {
        if let Some(content_type) = json {
            let body = serde_json::json!({"__type": i.code, "message": "injected by the fault proxy"}).to_string();
            let status = StatusCode::from_u16(i.status).unwrap_or(StatusCode::BAD_REQUEST);
            return (status, [("content-type", content_type.to_string())], body).into_response();
        }
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
