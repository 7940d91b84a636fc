//! GitHub Actions' OIDC provider, as the double plays it: the discovery document and the JWKS at
//! the double's own URL (the issuer), tokens signed RS256 with its current key, key rotation, and
//! the means to forge tokens the way an attacker would. Signing here uses the `rsa` crate, not
//! the verifier's library, so a test does not check a library against itself.

use std::sync::{Arc, PoisonError};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::Sha256;

use super::{GitHubDouble, Inner};

/// A signing key of the provider.
#[derive(Clone)]
pub struct OidcKey {
    pub kid: String,
    pub key: RsaPrivateKey,
}

impl OidcKey {
    /// A fresh RSA-2048 key named `kid`.
    pub fn generate(kid: &str) -> OidcKey {
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("an RSA key");
        OidcKey { kid: kid.to_string(), key }
    }

    fn jwk(&self) -> Value {
        let public = self.key.to_public_key();
        json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        })
    }
}

/// The provider's published keys; the last one signs.
#[derive(Default)]
pub(super) struct Provider {
    keys: Vec<OidcKey>,
}

/// Signs `claims` under `header` with `key` (RS256), as a compact JWT.
pub fn sign(header: &Value, claims: &Value, key: &RsaPrivateKey) -> String {
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = SigningKey::<Sha256>::new(key.clone()).sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// An unsigned token (`alg: none`), as an attacker would send it.
pub fn unsigned(claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT"});
    format!("{}.{}.", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()))
}

impl GitHubDouble {
    /// The OIDC issuer (the double's URL).
    pub fn oidc_issuer(&self) -> String {
        self.url()
    }

    /// The claims GitHub Actions puts in a token for a push to `repository` (`owner/name`), for
    /// `audience`, issued now and valid for 5 minutes, with the classic subject
    /// (`repo:OWNER/NAME:ref:refs/heads/main`); `extra` overrides or adds claims (custom property
    /// claims `repo_property_NAME` among them, which GitHub adds when the organization asks).
    pub fn oidc_claims(&self, repository: &str, audience: &str, extra: Value) -> Value {
        let now = super::now();
        let owner = repository.split('/').next().unwrap_or_default();
        let mut claims = json!({
            "iss": self.oidc_issuer(), "aud": audience, "iat": now, "nbf": now, "exp": now + 300,
            "sub": format!("repo:{repository}:ref:refs/heads/main"),
            "repository": repository, "repository_id": "4242", "repository_owner": owner, "repository_owner_id": "17",
            "ref": "refs/heads/main", "event_name": "push", "check_run_id": "31337",
            "job_workflow_ref": format!("{repository}/.github/workflows/release.yml@refs/heads/main"),
            "workflow_ref": format!("{repository}/.github/workflows/release.yml@refs/heads/main"),
        });
        if let (Value::Object(c), Value::Object(e)) = (&mut claims, extra) {
            c.extend(e);
        }
        claims
    }

    /// [`GitHubDouble::oidc_claims`] with GitHub's immutable subject, the default for repositories
    /// created or renamed since 2026-07-15: `repo:OWNER@OWNER_ID/NAME@REPO_ID:CONTEXT`, from the
    /// claims' own `repository_owner_id` and `repository_id` (`extra` may set them, or `sub`).
    pub fn oidc_claims_immutable(&self, repository: &str, audience: &str, extra: Value) -> Value {
        let explicit = extra.get("sub").is_some();
        let mut claims = self.oidc_claims(repository, audience, extra);
        if !explicit {
            let text = |name: &str| claims[name].as_str().unwrap_or_default().to_string();
            let (owner, name) = repository.split_once('/').unwrap_or((repository, ""));
            let classic = text("sub");
            let context = classic.strip_prefix(&format!("repo:{repository}:")).unwrap_or("ref:refs/heads/main");
            let (owner_id, repository_id) = (text("repository_owner_id"), text("repository_id"));
            claims["sub"] = json!(format!("repo:{owner}@{owner_id}/{name}@{repository_id}:{context}"));
        }
        claims
    }

    /// A token with `claims`, signed by the provider's current key (one is made on first use).
    pub fn oidc_token(&self, claims: &Value) -> String {
        let key = self.current_oidc_key();
        sign(&json!({"alg": "RS256", "typ": "JWT", "kid": key.kid}), claims, &key.key)
    }

    /// The key that signs now.
    pub fn current_oidc_key(&self) -> OidcKey {
        let mut provider = self.inner.oidc.lock().unwrap_or_else(PoisonError::into_inner);
        if provider.keys.is_empty() {
            provider.keys.push(OidcKey::generate("double-key-1"));
        }
        provider.keys.last().cloned().expect("a key")
    }

    /// Publishes a new key that signs from now on (the old ones stay published).
    pub fn rotate_oidc_key(&self, kid: &str) {
        self.current_oidc_key();
        self.inner.oidc.lock().unwrap_or_else(PoisonError::into_inner).keys.push(OidcKey::generate(kid));
    }

    /// Stops publishing key `kid`.
    pub fn retire_oidc_key(&self, kid: &str) {
        self.inner.oidc.lock().unwrap_or_else(PoisonError::into_inner).keys.retain(|k| k.kid != kid);
    }
}

pub(super) async fn discovery(State(inner): State<Arc<Inner>>) -> Response {
    let issuer = inner.base.get().cloned().unwrap_or_default();
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks"),
        "subject_types_supported": ["public", "pairwise"],
        "response_types_supported": ["id_token"],
        "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "repository", "repository_id",
                             "repository_owner", "repository_owner_id", "run_id", "run_number", "run_attempt",
                             "actor", "actor_id", "workflow", "workflow_ref", "event_name", "ref_type",
                             "environment", "job_workflow_ref", "check_run_id"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid"],
    }))
    .into_response()
}

pub(super) async fn jwks(State(inner): State<Arc<Inner>>) -> Response {
    let provider = inner.oidc.lock().unwrap_or_else(PoisonError::into_inner);
    axum::Json(json!({"keys": provider.keys.iter().map(OidcKey::jwk).collect::<Vec<_>>()})).into_response()
}
