//! GitHub App JWTs: RS256 over `base64url(header).base64url(claims)`, signed elsewhere (KMS).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `iat` is back-dated by this much to tolerate clock drift, as GitHub recommends.
pub(crate) const BACKDATE_SECS: i64 = 60;
/// `exp` is this far after "now". GitHub refuses an `exp` more than 10 minutes ahead.
pub const LIFETIME_SECS: i64 = 9 * 60;

const HEADER_JSON: &str = r#"{"alg":"RS256","typ":"JWT"}"#;

/// The claims of a GitHub App JWT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    pub iat: i64,
    pub exp: i64,
    pub iss: i64,
}

impl Claims {
    /// Claims for `app_id` issued at `now` (Unix seconds).
    pub fn for_app(app_id: i64, now: i64) -> Self {
        Claims { iat: now - BACKDATE_SECS, exp: now + LIFETIME_SECS, iss: app_id }
    }

    /// The bytes the signature covers: `base64url(header).base64url(claims)`.
    pub fn signing_input(&self) -> String {
        let claims = serde_json::to_vec(self).expect("claims are plain integers");
        format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER_JSON), URL_SAFE_NO_PAD.encode(claims))
    }
}

/// Appends the signature to the signing input to form the compact JWT.
pub fn assemble(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_follow_githubs_rules() {
        let c = Claims::for_app(42, 1_700_000_000);
        assert_eq!(c.iat, 1_700_000_000 - 60);
        assert_eq!(c.exp, 1_700_000_000 + 540);
        assert!(c.exp - c.iat <= 600, "GitHub refuses a JWT that lives more than 10 minutes");
        assert_eq!(c.iss, 42);
    }

    #[test]
    fn signing_input_is_two_base64url_parts() {
        let input = Claims::for_app(42, 1_700_000_000).signing_input();
        let parts: Vec<_> = input.split('.').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[0]).unwrap(), HEADER_JSON.as_bytes());
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims, serde_json::json!({"iat": 1_699_999_940, "exp": 1_700_000_540, "iss": 42}));
        assert_eq!(assemble(&input, &[0xfb, 0xff]), format!("{input}.-_8"));
    }
}
