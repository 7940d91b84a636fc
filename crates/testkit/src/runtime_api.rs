//! A Lambda Runtime API endpoint that hands events to one function process, for measuring cold
//! starts and what a process logs per request: when the process first asks for an invocation
//! (`GET …/invocation/next`: it is ready) and when it answers each (`POST
//! …/invocation/{id}/response` or `…/error`). Once the events are handed out, requests for the
//! next invocation wait, as Lambda's do while it freezes the environment.
//!
//! The paths and headers are those of the Runtime API (version 2018-06-01) that the
//! `lambda_runtime` crate speaks.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::watch;

/// What the function did with its one invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// When it first asked for an invocation.
    pub ready: Instant,
    /// When it answered.
    pub answered: Instant,
    /// Its answer (the response, or the error it reported).
    pub body: Value,
    /// Whether it reported an error (invocation or init error) instead of a response.
    pub failed: bool,
}

struct Inner {
    /// The events still to hand out, with their deadlines' distance.
    events: Mutex<std::collections::VecDeque<(Value, Duration)>>,
    handed_out: Mutex<usize>,
    ready: Mutex<Option<Instant>>,
    done: watch::Sender<Vec<Invocation>>,
}

/// The endpoint; dropping it stops the server.
pub struct RuntimeApi {
    endpoint: String,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    /// Serves `event` once, with a deadline `timeout` after it is handed out (the function's
    /// `Timeout`), on a free loopback port.
    pub async fn start(event: Value, timeout: Duration) -> std::io::Result<RuntimeApi> {
        Self::start_many(vec![event], timeout).await
    }

    /// Serves `events` in turn, each with a deadline `timeout` after it is handed out.
    pub async fn start_many(events: Vec<Value>, timeout: Duration) -> std::io::Result<RuntimeApi> {
        let (done, _) = watch::channel(Vec::new());
        let inner = Arc::new(Inner {
            events: Mutex::new(events.into_iter().map(|e| (e, timeout)).collect()),
            handed_out: Mutex::new(0),
            ready: Mutex::new(None),
            done,
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RuntimeApi { endpoint, inner, server })
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The first invocation's outcome, once the function answered (or `limit` passed).
    pub async fn wait(&self, limit: Duration) -> Result<Invocation, String> {
        Ok(self.wait_for(1, limit).await?.remove(0))
    }

    /// The first `n` invocations' outcomes, once the function answered them (or `limit` passed).
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Result<Vec<Invocation>, String> {
        let mut done = self.inner.done.subscribe();
        match tokio::time::timeout(limit, done.wait_for(|answered| answered.len() >= n)).await {
            Ok(Ok(answered)) => Ok(answered.iter().take(n).cloned().collect()),
            Ok(Err(_)) => Err("the runtime API stopped".into()),
            Err(_) => {
                let ready = self.inner.ready.lock().unwrap_or_else(PoisonError::into_inner).is_some();
                Err(format!(
                    "no answer within {limit:?} (the function {} its invocation)",
                    if ready { "took" } else { "never asked for" }
                ))
            }
        }
    }

    fn finish(inner: &Inner, body: &Bytes, failed: bool) {
        let at = Instant::now();
        let ready = inner.ready.lock().unwrap_or_else(PoisonError::into_inner).unwrap_or(at);
        let body = serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into()));
        inner.done.send_modify(|answered| answered.push(Invocation { ready, answered: at, body, failed }));
    }
}

async fn next(State(inner): State<Arc<Inner>>) -> Response {
    let now = Instant::now();
    inner.ready.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(now);
    let event = inner.events.lock().unwrap_or_else(PoisonError::into_inner).pop_front();
    let Some((event, timeout)) = event else {
        // The environment is frozen after its one invocation.
        std::future::pending::<()>().await;
        return StatusCode::GONE.into_response();
    };
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + timeout;
    let mut headers = HeaderMap::new();
    let n = {
        let mut handed_out = inner.handed_out.lock().unwrap_or_else(PoisonError::into_inner);
        *handed_out += 1;
        *handed_out
    };
    if let Ok(id) = HeaderValue::from_str(&format!("c0ld5tar-0000-4000-8000-{n:012}")) {
        headers.insert("lambda-runtime-aws-request-id", id);
    }
    if let Ok(v) = HeaderValue::from_str(&deadline.as_millis().to_string()) {
        headers.insert("lambda-runtime-deadline-ms", v);
    }
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:appcreds-cold-start"),
    );
    headers.insert("lambda-runtime-trace-id", HeaderValue::from_static("Root=1-00000000-000000000000000000000000"));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (StatusCode::OK, headers, event.to_string()).into_response()
}

async fn response(State(inner): State<Arc<Inner>>, Path(_id): Path<String>, body: Bytes) -> StatusCode {
    RuntimeApi::finish(&inner, &body, false);
    StatusCode::ACCEPTED
}

async fn error(State(inner): State<Arc<Inner>>, Path(_id): Path<String>, body: Bytes) -> StatusCode {
    RuntimeApi::finish(&inner, &body, true);
    StatusCode::ACCEPTED
}

async fn init_error(State(inner): State<Arc<Inner>>, body: Bytes) -> StatusCode {
    RuntimeApi::finish(&inner, &body, true);
    StatusCode::ACCEPTED
}
