//! GitHub Actions OIDC tokens, verified: RS256 only, the configured issuer and audience, `exp`,
//! `nbf` and `iat` within a small skew, signed by a key of the issuer's JWKS.
//!
//! The JWKS is fetched once (discovery, then `jwks_uri` on the issuer's own origin) and kept. A
//! token whose `kid` is not in it makes the verifier fetch the JWKS again (GitHub rotates keys),
//! but at most once per [`REFETCH_INTERVAL`] ([`RETRY_AFTER_FAILURE`] after a failed fetch): a
//! flood of tokens with made-up `kid`s costs GitHub at most one request per interval. Concurrent
//! fetches are one fetch, and tokens with known keys never wait for one.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::domain::access::{Claims, claims_of};
use crate::error::Error;
use crate::ports::{Clock, OidcVerifier};

/// GitHub.com's Actions OIDC issuer.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// The shortest time between two JWKS fetches.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// The clock skew allowed on `exp`, `nbf` and `iat`.
pub const SKEW_SECS: u64 = 60;
/// The longest token accepted (GitHub's are about 1.2 KB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The issuer of Actions OIDC tokens for a GitHub REST API URL, where it can be told from it:
/// github.com's (`https://api.github.com`); a GitHub Enterprise Server's
/// `https://HOST/_services/token` (`https://HOST/api/v3`); a GitHub Enterprise Cloud with data
/// residency's `https://token.actions.SUBDOMAIN.ghe.com` (`https://api.SUBDOMAIN.ghe.com`).
/// Any other URL has none: the functions then accept no OIDC token unless `OIDC_ISSUER` names
/// the issuer (falling back to github.com's would accept every github.com job and refuse the
/// genuine ones). An enterprise that asked GitHub for its own issuer
/// (`include_enterprise_slug`) sets `OIDC_ISSUER` too.
pub fn issuer_for(github_api_url: &str) -> Option<String> {
    let url = github_api_url.trim_end_matches('/');
    if url == "https://api.github.com" {
        return Some(GITHUB_ISSUER.to_string());
    }
    let host = url.strip_prefix("https://")?;
    if let Some(server) = host.strip_suffix("/api/v3")
        && !server.is_empty()
        && !server.contains('/')
    {
        return Some(format!("https://{server}/_services/token"));
    }
    let subdomain = host.strip_prefix("api.")?.strip_suffix(".ghe.com")?;
    let label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !s.starts_with('-')
    };
    label(subdomain).then(|| format!("https://token.actions.{subdomain}.ghe.com"))
}

/// The state of JWKS fetching (one fetch at a time).
struct Fetching {
    /// When the last fetch started (None: never).
    last_attempt: Option<Instant>,
    last_failed: bool,
    fetches: usize,
}

/// After a failed fetch, the next one may start this soon.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Verifies GitHub Actions OIDC tokens for one issuer and audience.
pub struct GitHubOidc {
    /// Built when the JWKS is first fetched: a function that gets no token never builds it.
    http: OnceLock<reqwest::Client>,
    issuer: String,
    audience: String,
    clock: Arc<dyn Clock>,
    /// The JWKS by `kid`: read without waiting for a fetch.
    keys: RwLock<BTreeMap<String, DecodingKey>>,
    fetching: Mutex<Fetching>,
}

fn refused(why: impl std::fmt::Display) -> Error {
    Error::AccessDenied(format!("the GitHub OIDC token is refused: {why}"))
}

impl GitHubOidc {
    /// A verifier of tokens from `issuer` for `audience`. Its HTTP client is built when a token
    /// first needs the JWKS fetched (a cold start without tokens reads no root certificates for it).
    pub fn new(issuer: &str, audience: &str, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        Ok(Self {
            http: OnceLock::new(),
            issuer: issuer.trim_end_matches('/').to_string(),
            audience: audience.to_string(),
            clock,
            keys: RwLock::new(BTreeMap::new()),
            fetching: Mutex::new(Fetching { last_attempt: None, last_failed: false, fetches: 0 }),
        })
    }

    /// Whether the HTTP client was built (tests that it is built only when needed).
    pub fn client_built(&self) -> bool {
        self.http.get().is_some()
    }

    /// The HTTP client, built on first use, with the process's shared TLS configuration.
    fn http(&self) -> Result<&reqwest::Client, Error> {
        if let Some(http) = self.http.get() {
            return Ok(http);
        }
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(crate::tls::client_config()?)
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(4))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("appcreds/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal("building the OIDC client", e))?;
        Ok(self.http.get_or_init(|| http))
    }

    /// How many times the JWKS was fetched (for tests of the limit).
    pub async fn fetches(&self) -> usize {
        self.fetching.lock().await.fetches
    }

    fn known(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).get(kid).cloned()
    }

    /// The key `kid`, fetching the JWKS again if it is unknown and the last fetch is old enough
    /// (a minute; 5 s after a failed one). A known key never waits for a fetch.
    async fn key(&self, kid: &str) -> Result<DecodingKey, Error> {
        if let Some(key) = self.known(kid) {
            return Ok(key);
        }
        let mut fetching = self.fetching.lock().await;
        if let Some(key) = self.known(kid) {
            return Ok(key); // fetched by the request this one waited for
        }
        let wait = if fetching.last_failed { RETRY_AFTER_FAILURE } else { REFETCH_INTERVAL };
        if fetching.last_attempt.is_none_or(|at| at.elapsed() >= wait) {
            fetching.last_attempt = Some(Instant::now());
            fetching.fetches += 1;
            match self.fetch().await {
                Ok(fresh) => {
                    *self.keys.write().unwrap_or_else(PoisonError::into_inner) = fresh;
                    fetching.last_failed = false;
                }
                Err(e) => {
                    fetching.last_failed = true;
                    tracing::warn!(issuer = %self.issuer, error = %e, "could not fetch the OIDC JWKS");
                    return Err(Error::GitHubUnavailable("the OIDC signing keys cannot be read".into()));
                }
            }
        }
        drop(fetching);
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        if keys.is_empty() {
            // Never read (the issuer was unreachable): not the caller's fault.
            return Err(Error::GitHubUnavailable("the OIDC signing keys cannot be read".into()));
        }
        keys.get(kid).cloned().ok_or_else(|| refused(format!("no signing key {kid:?} at {}", self.issuer)))
    }

    /// The issuer's JWKS, through its discovery document; `jwks_uri` must be on the issuer's origin.
    async fn fetch(&self) -> Result<BTreeMap<String, DecodingKey>, Error> {
        let get = |url: String| async move {
            let resp = self.http()?.get(&url).send().await.map_err(|e| Error::internal("fetching OIDC metadata", e))?;
            if !resp.status().is_success() {
                return Err(Error::internal("fetching OIDC metadata", format!("{url} answered {}", resp.status())));
            }
            resp.json::<Value>().await.map_err(|e| Error::internal("reading OIDC metadata", e))
        };
        let discovery = get(format!("{}/.well-known/openid-configuration", self.issuer)).await?;
        if discovery["issuer"].as_str().map(|i| i.trim_end_matches('/')) != Some(self.issuer.as_str()) {
            return Err(Error::internal("reading OIDC metadata", "the discovery document names another issuer"));
        }
        let jwks_uri = discovery["jwks_uri"].as_str().unwrap_or_default().to_string();
        if !same_origin(&jwks_uri, &self.issuer) {
            return Err(Error::internal("reading OIDC metadata", "jwks_uri is not on the issuer's origin"));
        }
        let set: JwkSet =
            serde_json::from_value(get(jwks_uri).await?).map_err(|e| Error::internal("reading the OIDC JWKS", e))?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
            .collect())
    }
}

fn same_origin(url: &str, base: &str) -> bool {
    let origin = |u: &str| {
        let (scheme, rest) = u.split_once("://")?;
        Some((scheme.to_string(), rest.split('/').next()?.to_ascii_lowercase()))
    };
    origin(url).is_some() && origin(url) == origin(base)
}

#[async_trait]
impl OidcVerifier for GitHubOidc {
    async fn verify(&self, token: &str) -> Result<Claims, Error> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(refused("it is too long"));
        }
        // The algorithm is read first, so that `none` or HS256 is named as such.
        let alg = token
            .split('.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
            .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_string))
            .ok_or_else(|| refused("it is not a JWT"))?;
        if alg != "RS256" {
            return Err(refused(format!("it is signed with {alg}, not RS256")));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| refused("it is not a JWT"))?;
        let kid = header.kid.ok_or_else(|| refused("it names no signing key"))?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.leeway = SKEW_SECS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
        let data = jsonwebtoken::decode::<BTreeMap<String, Value>>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            refused(match e.kind() {
                ErrorKind::ExpiredSignature => "it has expired".to_string(),
                ErrorKind::ImmatureSignature => "it is not valid yet (nbf)".to_string(),
                ErrorKind::InvalidIssuer => format!("its issuer is not {}", self.issuer),
                ErrorKind::InvalidAudience => format!("its audience is not {:?}", self.audience),
                ErrorKind::InvalidSignature => "its signature does not verify".to_string(),
                ErrorKind::MissingRequiredClaim(c) => format!("it has no {c} claim"),
                _ => "it cannot be read".to_string(),
            })
        })?;
        let iat = data.claims.get("iat").and_then(Value::as_i64).unwrap_or(i64::MAX);
        if iat > self.clock.now() + SKEW_SECS as i64 {
            return Err(refused("it was issued in the future (iat)"));
        }
        Ok(claims_of(data.claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cold start builds no client for the verifier (nor reads root certificates for one): the
    /// first token whose keys must be fetched does.
    #[tokio::test]
    async fn the_http_client_is_built_for_the_first_token_that_needs_the_keys() {
        let clock = Arc::new(crate::domain::clock::SystemClock);
        let verifier = GitHubOidc::new("http://127.0.0.1:1", "appcreds", clock).expect("a verifier");
        assert!(!verifier.client_built());
        // Refused on its face: no keys needed.
        assert!(matches!(verifier.verify("not-a-jwt").await, Err(Error::AccessDenied(_))));
        assert!(!verifier.client_built());
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k1"}"#);
        let fetched = verifier.verify(&format!("{header}.e30.c2ln")).await;
        assert!(matches!(fetched, Err(Error::GitHubUnavailable(_))), "{fetched:?}");
        assert!(verifier.client_built());
    }

    #[test]
    fn issuers_follow_the_github_url() {
        let issuer = |url: &str| issuer_for(url);
        assert_eq!(issuer("https://api.github.com").as_deref(), Some(GITHUB_ISSUER));
        assert_eq!(issuer("https://api.github.com/").as_deref(), Some(GITHUB_ISSUER));
        assert_eq!(issuer("https://ghe.example/api/v3").as_deref(), Some("https://ghe.example/_services/token"));
        assert_eq!(issuer("https://ghe.example/api/v3/").as_deref(), Some("https://ghe.example/_services/token"));
        // GitHub Enterprise Cloud with data residency: its own issuer, never github.com's.
        assert_eq!(issuer("https://api.octocorp.ghe.com").as_deref(), Some("https://token.actions.octocorp.ghe.com"));
        assert_eq!(issuer("https://api.octocorp.ghe.com/").as_deref(), Some("https://token.actions.octocorp.ghe.com"));
        // Anything else is unknown (no fallback to github.com's issuer).
        for unknown in [
            "https://github.example.com",
            "https://api.ghe.com",
            "https://api.a.b.ghe.com",
            "https://api.octocorp.ghe.com.evil.example",
            "http://api.github.com",
            "http://ghe.example/api/v3",
            "https://ghe.example/x/api/v3",
            "https://api.github.com.evil.example",
        ] {
            assert_eq!(issuer(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn jwks_must_stay_on_the_issuers_origin() {
        assert!(same_origin("https://token.actions.githubusercontent.com/.well-known/jwks", GITHUB_ISSUER));
        assert!(!same_origin("https://evil.example/.well-known/jwks", GITHUB_ISSUER));
        assert!(!same_origin("http://token.actions.githubusercontent.com/jwks", GITHUB_ISSUER), "no downgrade");
        assert!(!same_origin("", GITHUB_ISSUER));
    }
}
