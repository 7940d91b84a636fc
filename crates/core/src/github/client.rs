//! The GitHub REST client: one `reqwest` client (rustls) per process, GitHub's headers, timeouts,
//! retries with exponential backoff and full jitter, bounded waits on rate limits, and `Link`
//! pagination that never leaves the API's origin.
//!
//! Every attempt and every wait fits in the invocation's [`deadline`]: an attempt's timeout is
//! cut to the time left, and a wait that would not leave room for another attempt ends the call
//! instead. A `POST` (minting a token) is sent again only when the answer proves GitHub did not
//! act on it (no connection, or a rate-limit refusal): after a timeout or a 5xx its outcome is
//! unknown, and a second mint could leave a token nobody holds, valid for an hour.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;

use crate::deadline;
use crate::domain::secret::Secret;
use crate::error::Error;

/// The least time worth starting an attempt with: less, and the call ends instead.
const MIN_ATTEMPT: Duration = Duration::from_millis(250);

/// The REST API version appcreds is written against.
pub(crate) const API_VERSION: &str = "2022-11-28";

/// How GitHub calls are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// First backoff; doubled per attempt (with full jitter), capped at `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The most one call may spend waiting between attempts, rate-limit waits included. A longer
    /// wait asked for by GitHub ends the call with `ThrottlingException` instead.
    pub max_total_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            max_total_wait: Duration::from_secs(5),
        }
    }
}

/// Timeouts of each attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(3), request: Duration::from_secs(10) }
    }
}

/// How a request authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// As the App, with its JWT.
    App { app_id: i64, jwt: &'a Secret },
    /// As an installation, with an installation access token.
    Installation(&'a Secret),
}

/// A successful response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

/// A GitHub REST API client for one base URL (api.github.com or GHES `https://HOST/api/v3`).
#[derive(Debug, Clone)]
pub struct GitHubClient {
    /// Built for the first request (a cold start reads no root certificates for it); shared by clones.
    http: Arc<OnceLock<reqwest::Client>>,
    timeouts: Timeouts,
    base: String,
    origin: String,
    retry: RetryPolicy,
    request_timeout: Duration,
}

impl GitHubClient {
    pub fn new(base_url: &str, timeouts: Timeouts, retry: RetryPolicy) -> Result<Self, Error> {
        let base = base_url.trim_end_matches('/').to_string();
        let origin = origin_of(&base).ok_or(Error::Misconfigured("GITHUB_API_URL is not an http(s) URL"))?;
        let http = Arc::new(OnceLock::new());
        Ok(GitHubClient { http, timeouts, base, origin, retry, request_timeout: timeouts.request })
    }

    /// The HTTP client, built on first use with GitHub's headers and the process's shared TLS
    /// configuration.
    fn http(&self) -> Result<&reqwest::Client, Error> {
        if let Some(http) = self.http.get() {
            return Ok(http);
        }
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/vnd.github+json"));
        headers.insert("x-github-api-version", HeaderValue::from_static(API_VERSION));
        headers.insert(USER_AGENT, HeaderValue::from_static(concat!("appcreds/", env!("CARGO_PKG_VERSION"))));
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(crate::tls::client_config()?)
            .default_headers(headers)
            .connect_timeout(self.timeouts.connect)
            .timeout(self.timeouts.request)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::internal("building the GitHub client", e))?;
        Ok(self.http.get_or_init(|| http))
    }

    /// Sends a request with retries; `path` is relative to the base URL (or an absolute URL on
    /// the same origin, as in `Link` headers). Non-2xx answers become errors.
    pub async fn send(&self, method: Method, path: &str, auth: Auth<'_>, body: Option<&Value>) -> Result<Reply, Error> {
        let url = self.url(path)?;
        let started = Instant::now();
        let mut waited = Duration::ZERO;
        let mut attempt = 1;
        loop {
            if !deadline::allows(Duration::ZERO, MIN_ATTEMPT) {
                tracing::warn!(%url, attempts = attempt - 1, "no time left for a GitHub call");
                return Err(Error::OutOfTime);
            }
            let outcome = self.attempt(method.clone(), &url, auth, body).await;
            let wait = match &outcome {
                Attempt::Done(_) | Attempt::Fatal(_) => None,
                Attempt::Retry(_) => Some(self.backoff(attempt)),
                Attempt::RateLimited { wait, .. } => Some(*wait),
            };
            let exhausted = attempt >= self.retry.max_attempts;
            // A wait must fit the call's budget and leave room for one more attempt before the deadline.
            let fits =
                |delay: Duration| waited + delay <= self.retry.max_total_wait && deadline::allows(delay, MIN_ATTEMPT);
            match (outcome, wait) {
                (Attempt::Done(reply), _) => return Ok(reply),
                (Attempt::Fatal(err), _) => return Err(err),
                (Attempt::RateLimited { wait, .. }, _) if exhausted || !fits(wait) => {
                    tracing::warn!(%url, retry_after = wait.as_secs(), "GitHub rate limit outlasts the retry budget");
                    return Err(Error::Throttled { service: "GitHub", retry_after_seconds: wait.as_secs().max(1) });
                }
                (Attempt::Retry(err), Some(delay)) if exhausted || !fits(delay) => {
                    tracing::warn!(%url, attempts = attempt, elapsed_ms = started.elapsed().as_millis() as u64, "GitHub call failed");
                    return Err(err);
                }
                (outcome, Some(delay)) => {
                    tracing::info!(%url, attempt, delay_ms = delay.as_millis() as u64, reason = outcome.reason(), "retrying GitHub call");
                    tokio::time::sleep(delay).await;
                    waited += delay;
                    attempt += 1;
                }
                (_, None) => unreachable!("only retryable outcomes have a wait"),
            }
        }
    }

    /// `GET` and deserialize.
    pub async fn get<T: DeserializeOwned>(&self, path: &str, auth: Auth<'_>) -> Result<T, Error> {
        let reply = self.send(Method::GET, path, auth, None).await?;
        serde_json::from_value(reply.body).map_err(|e| Error::internal("reading a GitHub response", e))
    }

    /// `GET` every page of a list, following `Link: <…>; rel="next"`. `items` names the array in
    /// an object response (`"repositories"`); `None` means the response is the array itself.
    pub async fn get_all<T: DeserializeOwned>(
        &self,
        path: &str,
        auth: Auth<'_>,
        items: Option<&str>,
    ) -> Result<Vec<T>, Error> {
        let mut out = Vec::new();
        let mut next = Some(path.to_string());
        let mut pages = 0;
        while let Some(page) = next.take() {
            pages += 1;
            if pages > 10_000 {
                return Err(Error::internal("listing from GitHub", "more than 10,000 pages"));
            }
            let reply = self.send(Method::GET, &page, auth, None).await?;
            let list = match items {
                None => reply.body,
                Some(key) => reply.body.get(key).cloned().unwrap_or(Value::Null),
            };
            let Value::Array(list) = list else {
                return Err(Error::internal("listing from GitHub", "a page without a list"));
            };
            for item in list {
                out.push(serde_json::from_value(item).map_err(|e| Error::internal("reading a GitHub list", e))?);
            }
            next = next_link(&reply.headers);
        }
        Ok(out)
    }

    fn url(&self, path: &str) -> Result<String, Error> {
        if path.starts_with('/') {
            return Ok(format!("{}{}", self.base, path));
        }
        // Absolute URLs (from Link headers) must stay on the API's origin: credentials go with them.
        if origin_of(path).as_deref() == Some(self.origin.as_str()) {
            return Ok(path.to_string());
        }
        Err(Error::internal("following a GitHub link", format!("refusing to leave {}", self.origin)))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.retry.base_delay.saturating_mul(1 << (attempt - 1).min(16));
        let cap = exp.min(self.retry.max_delay);
        // Full jitter: uniform in [cap/2, cap], so a burst of callers spreads out.
        let half = cap / 2;
        half + Duration::from_millis(fastrand::u64(0..=half.as_millis() as u64))
    }

    async fn attempt(&self, method: Method, url: &str, auth: Auth<'_>, body: Option<&Value>) -> Attempt {
        let token = match auth {
            Auth::App { jwt, .. } => jwt,
            Auth::Installation(token) => token,
        };
        // Only a request GitHub provably did not act on may be sent again if it is not idempotent.
        let idempotent = method != Method::POST;
        let http = match self.http() {
            Ok(http) => http,
            Err(e) => return Attempt::Fatal(e),
        };
        let mut req = http
            .request(method, url)
            .header(AUTHORIZATION, format!("Bearer {}", token.expose()))
            .timeout(deadline::clamp(self.request_timeout));
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = match req.send().await {
            Ok(resp) => resp,
            // Nothing reached GitHub: safe to send again, whatever the method.
            Err(e) if e.is_connect() => return Attempt::Retry(Error::GitHubUnavailable("connection failed".into())),
            Err(e) => {
                let kind = if e.is_timeout() { "timed out" } else { "request failed" };
                return self.unknown_outcome(idempotent, url, kind);
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = match resp.bytes().await {
            Ok(bytes) if bytes.is_empty() => Value::Null,
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(_) => return self.unknown_outcome(idempotent, url, "response interrupted"),
        };
        if status.is_success() {
            return Attempt::Done(Reply { status, headers, body });
        }
        let message = body.get("message").and_then(Value::as_str).unwrap_or("").to_string();
        if let Some(wait) = rate_limit_wait(status, &headers, &message) {
            return Attempt::RateLimited { wait };
        }
        match status.as_u16() {
            500..=599 => self.unknown_outcome(idempotent, url, &format!("HTTP {}", status.as_u16())),
            401 => Attempt::Fatal(match auth {
                Auth::App { app_id, .. } => Error::GitHubUnauthorized { app_id },
                Auth::Installation(_) => {
                    Error::GitHubRejected { status: 401, message: "Bad credentials".into(), documentation_url: None }
                }
            }),
            // Not the caller's doing: an organization's SSO or IP allow-list refusing the App (403),
            // or an App-level endpoint that is not there (404: a wrong GITHUB_API_URL).
            403 => Attempt::Fatal(self.refused_appcreds(url, 403, &message)),
            404 if self.is_app_endpoint(url) => Attempt::Fatal(self.refused_appcreds(url, 404, &message)),
            code => Attempt::Fatal(Error::GitHubRejected {
                status: code,
                message: if message.is_empty() { format!("GitHub answered HTTP {code}") } else { message },
                documentation_url: body.get("documentation_url").and_then(Value::as_str).map(str::to_string),
            }),
        }
    }
}

impl GitHubClient {
    /// A failure after which GitHub may or may not have acted: retried only if the request is
    /// idempotent.
    fn unknown_outcome(&self, idempotent: bool, url: &str, kind: &str) -> Attempt {
        let err = Error::GitHubUnavailable(kind.to_string());
        if idempotent {
            return Attempt::Retry(err);
        }
        tracing::warn!(%url, reason = kind, "not sending again: GitHub may have acted on it (a minted token expires by itself within the hour)");
        Attempt::Fatal(err)
    }

    /// Whether `url` is an endpoint of the App itself (`/app`, `/app/installations`), which is
    /// always there on a right base URL.
    fn is_app_endpoint(&self, url: &str) -> bool {
        let path = url.strip_prefix(&self.base).unwrap_or(url);
        let path = path.split('?').next().unwrap_or_default();
        path == "/app" || path == "/app/installations"
    }

    /// A refusal that is appcreds' deployment's to fix, not the caller's: logged with GitHub's
    /// words, answered as a `ServerSideError`.
    fn refused_appcreds(&self, url: &str, status: u16, message: &str) -> Error {
        tracing::error!(%url, status, github_message = message, "GitHub refused appcreds itself (SSO, IP allow-list, or a wrong GITHUB_API_URL?)");
        Error::GitHubRefusedAppcreds { status, message: message.to_string() }
    }
}

enum Attempt {
    Done(Reply),
    Retry(Error),
    RateLimited { wait: Duration },
    Fatal(Error),
}

impl Attempt {
    fn reason(&self) -> &'static str {
        match self {
            Attempt::RateLimited { .. } => "rate limited",
            _ => "unavailable",
        }
    }
}

/// GitHub's rate-limit answers (403 or 429): `retry-after` seconds, or, with
/// `x-ratelimit-remaining: 0`, the wait until `x-ratelimit-reset`. A 403 that is neither is a
/// plain refusal. Secondary limits without either header wait a minute, as GitHub advises.
fn rate_limit_wait(status: StatusCode, headers: &HeaderMap, message: &str) -> Option<Duration> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let header =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(secs) = header("retry-after") {
        return Some(Duration::from_secs(secs));
    }
    if header("x-ratelimit-remaining") == Some(0)
        && let Some(reset) = header("x-ratelimit-reset")
    {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        return Some(Duration::from_secs(reset.saturating_sub(now).max(1)));
    }
    if status == StatusCode::TOO_MANY_REQUESTS || message.to_ascii_lowercase().contains("rate limit") {
        return Some(Duration::from_secs(60));
    }
    None
}

/// The `rel="next"` target of a `Link` header.
pub(crate) fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

/// `scheme://host[:port]` of an absolute http(s) URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next().filter(|h| !h.is_empty())?;
    Some(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cold start builds no HTTP client (nor reads root certificates for one): the first request does.
    #[tokio::test]
    async fn the_http_client_is_built_for_the_first_request() {
        let once = RetryPolicy { max_attempts: 1, ..RetryPolicy::default() };
        let github = GitHubClient::new("http://127.0.0.1:1", Timeouts::default(), once).expect("a client");
        assert!(github.http.get().is_none());
        let token = Secret::new("ghs_x");
        let sent = github.send(Method::GET, "/rate_limit", Auth::Installation(&token), None).await;
        assert!(matches!(sent, Err(Error::GitHubUnavailable(_))), "{sent:?}");
        assert!(github.http.get().is_some());
        assert!(github.clone().http.get().is_some(), "clones share it");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn link_headers() {
        let h = headers(&[(
            "link",
            r#"<https://api.github.com/app/installations?per_page=100&page=2>; rel="next", <https://api.github.com/app/installations?per_page=100&page=5>; rel="last""#,
        )]);
        assert_eq!(next_link(&h).as_deref(), Some("https://api.github.com/app/installations?per_page=100&page=2"));
        let last_page = headers(&[(
            "link",
            r#"<https://api.github.com/x?page=1>; rel="prev", <https://api.github.com/x?page=1>; rel="first""#,
        )]);
        assert_eq!(next_link(&last_page), None);
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn links_must_stay_on_the_api_origin() {
        let c = GitHubClient::new("https://ghe.example/api/v3", Timeouts::default(), RetryPolicy::default()).unwrap();
        assert_eq!(c.url("/app").unwrap(), "https://ghe.example/api/v3/app");
        assert!(c.url("https://ghe.example/api/v3/app/installations?page=2").is_ok());
        assert!(c.url("https://evil.example/api/v3/app/installations?page=2").is_err());
        assert!(c.url("https://ghe.example.evil.example/x").is_err());
        assert!(c.url("http://ghe.example/api/v3/app").is_err(), "no downgrade to http");
    }

    #[test]
    fn rate_limit_answers() {
        let wait = |status: u16, h: &[(&'static str, &str)], msg: &str| {
            rate_limit_wait(StatusCode::from_u16(status).unwrap(), &headers(h), msg)
        };
        assert_eq!(wait(403, &[("retry-after", "7")], ""), Some(Duration::from_secs(7)));
        assert_eq!(wait(429, &[("retry-after", "3")], ""), Some(Duration::from_secs(3)));
        let soon =
            (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 30).to_string();
        let w = wait(403, &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &soon)], "API rate limit exceeded")
            .unwrap();
        assert!((29..=30).contains(&w.as_secs()), "{w:?}");
        assert_eq!(wait(403, &[], "You have exceeded a secondary rate limit"), Some(Duration::from_secs(60)));
        assert_eq!(wait(403, &[], "Resource not accessible by integration"), None, "a plain refusal");
        assert_eq!(wait(500, &[("retry-after", "1")], ""), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let c = GitHubClient::new("https://api.github.com", Timeouts::default(), RetryPolicy::default()).unwrap();
        for attempt in 1..10 {
            let cap = (Duration::from_millis(200) * (1 << (attempt - 1))).min(Duration::from_secs(2));
            let d = c.backoff(attempt);
            assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d:?} not in [{:?}, {cap:?}]", cap / 2);
        }
    }
}
