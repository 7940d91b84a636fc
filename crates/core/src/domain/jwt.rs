//! GitHub App JWTs: RS256 over `base64url(header).base64url(claims)`, signed elsewhere (KMS).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `iat` is back-dated by this much to tolerate clock drift, as GitHub recommends.
pub(crate) const BACKDATE_SECS: i64 = 60;
/// `exp` is this far after "now". GitHub refuses an `exp` more than 10 minutes ahead.
pub const LIFETIME_SECS: i64 = 9 * 60;

const HEADER_JSON: &str = r#"{"alg":"RS256","typ":"JWT"}"#;

/// The longest client ID the App table may name.
pub const MAX_CLIENT_ID_LEN: usize = 64;

/// Who a JWT says it is from (`iss`): the App's ID (a JSON number), or its client ID (a JSON
/// string, `Iv23li…` or `Iv1.` and hex), which GitHub recommends and accepts alike.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Issuer {
    /// The App ID.
    AppId(i64),
    /// The App's client ID.
    ClientId(String),
}

impl From<i64> for Issuer {
    fn from(app_id: i64) -> Self {
        Issuer::AppId(app_id)
    }
}

/// What is wrong with `client_id` as an App's client ID, if anything: 1 to 64 of
/// `A-Z a-z 0-9 . _ -`, and not digits only (that would read as an App ID).
pub fn client_id_problem(client_id: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID_LEN || !client_id.chars().all(allowed) {
        return Some(format!(
            "{client_id:?} is not a GitHub App client ID (1 to {MAX_CLIENT_ID_LEN} of A-Z a-z 0-9 . _ -, like Iv23li…)"
        ));
    }
    if client_id.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!("{client_id:?} is digits only: that is an App ID, not a client ID (Iv23li…)"));
    }
    None
}

/// The claims of a GitHub App JWT.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    pub iat: i64,
    pub exp: i64,
    pub iss: Issuer,
}

impl Claims {
    /// Claims for `app_id` issued at `now` (Unix seconds), with the App ID as the issuer.
    pub fn for_app(app_id: i64, now: i64) -> Self {
        Claims { iat: now - BACKDATE_SECS, exp: now + LIFETIME_SECS, iss: Issuer::AppId(app_id) }
    }

    /// The same claims, issued by the App's client ID when it has one.
    pub fn with_client_id(self, client_id: Option<&str>) -> Self {
        match client_id {
            Some(client_id) => Claims { iss: Issuer::ClientId(client_id.to_string()), ..self },
            None => self,
        }
    }

    /// The claims of the compact JWT `token` (its signature not checked), if it is one.
    pub fn of(token: &str) -> Option<Claims> {
        let mut parts = token.split('.');
        let (Some(_), Some(claims), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return None;
        };
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()
    }

    /// The bytes the signature covers: `base64url(header).base64url(claims)`.
    pub fn signing_input(&self) -> String {
        let claims = serde_json::to_vec(self).expect("claims are integers and a string");
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
    fn claims_are_read_back_from_a_jwt() {
        let claims = Claims::for_app(42, 1_700_000_000).with_client_id(Some("Iv23liX"));
        let token = assemble(&claims.signing_input(), b"signature");
        assert_eq!(Claims::of(&token), Some(claims));
        let by_id = Claims::for_app(42, 1_700_000_000);
        assert_eq!(Claims::of(&assemble(&by_id.signing_input(), b"s")).map(|c| c.iss), Some(Issuer::AppId(42)));
        for broken in ["", "a.b.c", "a.b", &format!("{token}.d"), "eyJ9.eyJpYXQiOjF9.c"] {
            assert_eq!(Claims::of(broken), None, "{broken}");
        }
    }

    #[test]
    fn claims_follow_githubs_rules() {
        let c = Claims::for_app(42, 1_700_000_000);
        assert_eq!(c.iat, 1_700_000_000 - 60);
        assert_eq!(c.exp, 1_700_000_000 + 540);
        assert!(c.exp - c.iat <= 600, "GitHub refuses a JWT that lives more than 10 minutes");
        assert_eq!(c.iss, Issuer::AppId(42));
    }

    #[test]
    fn the_client_id_is_the_issuer_when_the_app_has_one() {
        let input = Claims::for_app(42, 1_700_000_000).with_client_id(Some("Iv23liAbC.d_e-F")).signing_input();
        let claims = input.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert_eq!(claims, serde_json::json!({"iat": 1_699_999_940, "exp": 1_700_000_540, "iss": "Iv23liAbC.d_e-F"}));
        assert_eq!(Claims::for_app(42, 0).with_client_id(None).iss, Issuer::AppId(42), "none: the App ID");
    }

    #[test]
    fn client_ids_are_checked() {
        for good in ["Iv23liAbCdEfGhIjKlMn", "Iv1.0123456789abcdef", "a", &"x".repeat(64), "Iv1_x-y.z", "007x"] {
            assert_eq!(client_id_problem(good), None, "{good}");
        }
        for bad in ["", &"x".repeat(65), "Iv1 x", "Iv1/x", "\"Iv1\"", "Iv1é", "123456"] {
            assert!(client_id_problem(bad).is_some(), "{bad}");
        }
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
