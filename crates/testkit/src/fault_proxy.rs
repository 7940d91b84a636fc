//! A loopback proxy in front of an AWS-protocol server (moto) that answers chosen actions with an
//! AWS error for a number of requests and forwards everything else untouched: throttling and
//! outages of a real protocol server, through the real SDK clients.

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
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body): Result<Bytes, _> = axum::body::to_bytes(body, 16 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let text = String::from_utf8_lossy(&body);
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
