//! appcreds' wire contract (`docs/api.md`) as serde types: the routes, every operation's
//! request and response, the installation record, and the error names and bodies.
//!
//! The functions (through `appcreds-core`), the SigV4 client and the CLI all use these types, so a
//! change to the contract is one edit here and the compiler shows every place it affects.
//! Field names follow the contract (camelCase on the wire). This crate depends on serde only.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The path of each operation. Every operation is a JSON `POST`.
pub mod paths {
    /// app-token: `POST /tokens/app`.
    pub const APP_TOKEN: &str = "/tokens/app";
    /// installation-token: `POST /tokens/installation`.
    pub const INSTALLATION_TOKEN: &str = "/tokens/installation";
    /// **(ext)** installation-token, several targets at once: `POST /tokens/installations`.
    pub const INSTALLATION_TOKENS: &str = "/tokens/installations";
    /// refresh-cache: `POST /installations/refresh`.
    pub const REFRESH: &str = "/installations/refresh";
    /// get-installation by node ID: `POST /installations/info`.
    pub const INSTALLATION_INFO: &str = "/installations/info";
    /// get-installation, the whole table paginated: `POST /installations`.
    pub const LIST_INSTALLATIONS: &str = "/installations";
}

/// The CloudWatch side of the contract: where the rate-limit scanner publishes.
pub mod metrics {
    /// The namespace of every metric.
    pub const NAMESPACE: &str = "AppFrameworkGitHubAPICallMetrics";
}

/// A credential (App JWT or installation token) on the wire. `Debug` never shows it and there is
/// no `Display`: only [`Token::expose`] gives the value, for whoever puts it to use.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Token(value.into())
    }

    /// The credential itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(redacted)")
    }
}

/// `POST /tokens/app`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppTokenRequest {
    /// The GitHub App (≥ 1).
    pub app_id: i64,
}

/// The answer of `POST /tokens/app`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppTokenResponse {
    /// The App the JWT is for.
    pub app_id: i64,
    /// The App JWT (RS256; `iss` is the App's client ID when the App table has one, otherwise
    /// the App ID).
    pub app_token: Token,
    /// RFC 3339, a few seconds before the JWT's `exp`.
    pub expiration_time: String,
}

/// Which installation a token is for: exactly one of these members is on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Target {
    /// `nodeId`: the node ID of the account the App is installed on (1 to 256 characters).
    NodeId(String),
    /// **(ext)** `owner`: the login of the account the App is installed on.
    Owner(String),
    /// **(ext)** `repository`: `owner/name` of a repository the installation covers.
    Repository(String),
    /// **(ext)** `enterprise`: the slug of the enterprise the App is installed on.
    Enterprise(String),
}

impl Target {
    /// The account the target names by name, as given: a login (an owner's, or a repository's
    /// owner's) with `false`, or an enterprise's slug with `true`; `None` for a node ID.
    pub fn account(&self) -> Option<(&str, bool)> {
        match self {
            Target::Owner(login) => Some((login, false)),
            Target::Repository(repository) => Some((repository.split('/').next().unwrap_or(repository), false)),
            Target::Enterprise(slug) => Some((slug, true)),
            Target::NodeId(_) => None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::NodeId(n) => write!(f, "node ID {n}"),
            Target::Owner(o) => write!(f, "owner {o}"),
            Target::Repository(r) => write!(f, "repository {r}"),
            Target::Enterprise(e) => write!(f, "enterprise {e}"),
        }
    }
}

/// What an installation token may do: repositories and permissions. Empty parts are omitted on
/// the wire. Requested, it maps to GitHub's `repository_ids`, `repositories` and `permissions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeDown {
    /// Repository IDs (each ≥ 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repository_ids: Vec<i64>,
    /// Repository names, without the owner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repository_names: Vec<String>,
    /// Permission name → `read`, `write` or `admin`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub permissions: BTreeMap<String, String>,
}

impl ScopeDown {
    /// Whether it names no repository and no permission.
    pub fn is_empty(&self) -> bool {
        self.repository_ids.is_empty() && self.repository_names.is_empty() && self.permissions.is_empty()
    }
}

/// `POST /tokens/installation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallationTokenRequest {
    /// The GitHub App (≥ 1).
    pub app_id: i64,
    /// The installation.
    #[serde(flatten)]
    pub target: Target,
    /// The scope to narrow the token to; absent: whatever the installation has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_down: Option<ScopeDown>,
}

/// The answer of `POST /tokens/installation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallationTokenResponse {
    /// The installation access token (`ghs_…`).
    pub installation_token: Token,
    /// The node ID of the installation's account.
    pub node_id: String,
    /// The App.
    pub app_id: i64,
    /// **(ext)** GitHub's installation ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<i64>,
    /// **(ext)** The App's slug, when GitHub told it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_slug: Option<String>,
    /// GitHub's `expires_at`.
    pub expiration_time: String,
    /// The scope the caller asked for; absent when it asked for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_scope_down: Option<ScopeDown>,
    /// The scope GitHub granted.
    #[serde(default)]
    pub actual_scope_down: ScopeDown,
}

/// **(ext)** `POST /tokens/installations`: one token for each target, all or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallationTokensRequest {
    /// 1 to [`InstallationTokensRequest::MAX_TARGETS`] targets, each a `POST /tokens/installation`
    /// body, no two naming the same App and target.
    pub targets: Vec<InstallationTokenRequest>,
}

impl InstallationTokensRequest {
    /// The most targets one request may name.
    pub const MAX_TARGETS: usize = 10;
}

/// **(ext)** The answer of `POST /tokens/installations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallationTokensResponse {
    /// One answer per target, in the request's order, each as `POST /tokens/installation` gives it.
    pub tokens: Vec<InstallationTokenResponse>,
}

/// `POST /installations/refresh` (an empty object).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRequest {}

/// The answer of `POST /installations/refresh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshResponse {
    /// What was done, for people.
    pub message: String,
    /// When the sync started (RFC 3339).
    pub refreshed_date: String,
    /// **(ext)** The Apps whose installations could not be synced.
    #[serde(default)]
    pub failed_apps: Vec<i64>,
}

/// A row of the Installation table, as the contract shows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallationRecord {
    /// The App.
    pub app_id: i64,
    /// GitHub's installation ID.
    pub installation_id: i64,
    /// The node ID of the account the App is installed on.
    pub node_id: String,
    /// GitHub's `target_type`: `Organization`, `User` or `Enterprise`.
    pub target_type: String,
    /// The account login (or the enterprise slug).
    pub name: String,
}

/// `POST /installations/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallationInfoRequest {
    /// The account's node ID (1 to 256 characters).
    pub node_id: String,
}

/// The answer of `POST /installations/info`: one record per App installed on the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallationInfoResponse {
    /// The records, by App ID.
    pub installations: Vec<InstallationRecord>,
}

/// `POST /installations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListInstallationsRequest {
    /// Page size, 1 to 100 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i64>,
    /// Where the previous page ended: its `nextToken`, opaque, and valid only for the caller it
    /// was returned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// The answer of `POST /installations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListInstallationsResponse {
    /// This page's records: only those the caller may read.
    pub installations: Vec<InstallationRecord>,
    /// Present while there may be more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// **(ext)** The request header that carries the caller's GitHub Actions OIDC token, for access
/// rules that require its claims (SigV4 owns `Authorization`). Sign it with the request.
pub const OIDC_TOKEN_HEADER: &str = "x-appcreds-github-oidc-token";

/// The header that names an error, as in Smithy's restJson1 protocol.
pub const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";

/// The contract's error names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorName {
    /// 400: a field is missing or violates a constraint; `fieldList` names each.
    Validation,
    /// 400: the body is not valid JSON for the operation.
    Serialization,
    /// 415: the content type is not JSON.
    UnsupportedMediaType,
    /// 404: no operation at this method and path.
    UnknownOperation,
    /// 400: unknown App or installation, or GitHub refused the request.
    ClientSide,
    /// 500: appcreds or what it depends on failed.
    ServerSide,
    /// **(ext)** 429: GitHub or AWS throttled appcreds after bounded retries.
    Throttling,
    /// **(ext)** 403: no access rule allows this caller this request.
    AccessDenied,
}

impl ErrorName {
    /// Every name, for readers that match on the header.
    pub const ALL: [ErrorName; 8] = [
        ErrorName::Validation,
        ErrorName::Serialization,
        ErrorName::UnsupportedMediaType,
        ErrorName::UnknownOperation,
        ErrorName::ClientSide,
        ErrorName::ServerSide,
        ErrorName::Throttling,
        ErrorName::AccessDenied,
    ];

    /// The name as in the `x-amzn-errortype` header.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorName::Validation => "ValidationException",
            ErrorName::Serialization => "SerializationException",
            ErrorName::UnsupportedMediaType => "UnsupportedMediaTypeException",
            ErrorName::UnknownOperation => "UnknownOperationException",
            ErrorName::ClientSide => "ClientSideError",
            ErrorName::ServerSide => "ServerSideError",
            ErrorName::Throttling => "ThrottlingException",
            ErrorName::AccessDenied => "AccessDeniedException",
        }
    }

    /// The HTTP status the contract gives it.
    pub const fn status(self) -> u16 {
        match self {
            ErrorName::Validation | ErrorName::Serialization | ErrorName::ClientSide => 400,
            ErrorName::UnsupportedMediaType => 415,
            ErrorName::UnknownOperation => 404,
            ErrorName::ServerSide => 500,
            ErrorName::Throttling => 429,
            ErrorName::AccessDenied => 403,
        }
    }

    /// The name of an `x-amzn-errortype` value (which may carry a `:` suffix, as restJson1 allows).
    pub fn parse(header: &str) -> Option<ErrorName> {
        let name = header.split(':').next().unwrap_or_default();
        ErrorName::ALL.into_iter().find(|n| n.as_str() == name)
    }
}

impl fmt::Display for ErrorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One invalid field of a request, as in the `fieldList` of a `ValidationException`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// JSON pointer of the field, e.g. `/appId` or `/scopeDown/permissions/issues`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// What went wrong, safe to show (no internals).
    pub message: String,
    /// `ValidationException` only: every invalid field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_list: Option<Vec<FieldError>>,
    /// **(ext)** `ThrottlingException` only: when to try again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// **(ext)** A `ClientSideError` with GitHub's message: GitHub's `documentation_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documentation_url: Option<String>,
    /// **(ext)** `POST /tokens/installations` only: the index of the target the error is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_index: Option<usize>,
}

impl ErrorBody {
    /// A body with only a message.
    pub fn message(message: impl Into<String>) -> Self {
        ErrorBody {
            message: message.into(),
            field_list: None,
            retry_after_seconds: None,
            documentation_url: None,
            target_index: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_and_responses_have_the_contracts_names() {
        let req = InstallationTokenRequest {
            app_id: 7,
            target: Target::Repository("octo-org/hello".into()),
            scope_down: Some(ScopeDown {
                permissions: BTreeMap::from([("contents".into(), "read".into())]),
                ..ScopeDown::default()
            }),
        };
        let wire = serde_json::to_value(&req).unwrap();
        assert_eq!(
            wire,
            json!({"appId": 7, "repository": "octo-org/hello", "scopeDown": {"permissions": {"contents": "read"}}})
        );
        assert_eq!(serde_json::from_value::<InstallationTokenRequest>(wire).unwrap(), req);
        let node = InstallationTokenRequest { app_id: 1, target: Target::NodeId("N".into()), scope_down: None };
        assert_eq!(serde_json::to_value(&node).unwrap(), json!({"appId": 1, "nodeId": "N"}));
        let enterprise =
            InstallationTokenRequest { app_id: 1, target: Target::Enterprise("acme".into()), scope_down: None };
        assert_eq!(serde_json::to_value(&enterprise).unwrap(), json!({"appId": 1, "enterprise": "acme"}));
        assert_eq!(Target::Enterprise("acme".into()).to_string(), "enterprise acme");

        let reply: InstallationTokenResponse = serde_json::from_value(json!({
            "installationToken": "ghs_x", "nodeId": "N", "appId": 1, "expirationTime": "2026-01-01T00:00:00Z",
            "actualScopeDown": {"repositoryNames": ["a"]}
        }))
        .unwrap();
        assert_eq!(reply.installation_token.expose(), "ghs_x");
        assert_eq!((reply.installation_id, reply.requested_scope_down), (None, None));
        assert_eq!(reply.actual_scope_down.repository_names, ["a"]);

        let batch = InstallationTokensRequest { targets: vec![node.clone(), enterprise.clone()] };
        assert_eq!(
            serde_json::to_value(&batch).unwrap(),
            json!({"targets": [{"appId": 1, "nodeId": "N"}, {"appId": 1, "enterprise": "acme"}]})
        );

        let page = ListInstallationsResponse { installations: Vec::new(), next_token: None };
        assert_eq!(serde_json::to_value(&page).unwrap(), json!({"installations": []}));
    }

    #[test]
    fn errors_have_the_contracts_names_and_statuses() {
        for name in ErrorName::ALL {
            assert_eq!(ErrorName::parse(name.as_str()), Some(name));
        }
        assert_eq!(
            ErrorName::parse("ValidationException:http://internal.amazon.com/coral"),
            Some(ErrorName::Validation)
        );
        assert_eq!(ErrorName::parse("Nope"), None);
        assert_eq!(ErrorName::Throttling.status(), 429);
        let body = ErrorBody { field_list: Some(vec![FieldError::new("/appId", "x")]), ..ErrorBody::message("m") };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"message": "m", "fieldList": [{"path": "/appId", "message": "x"}]})
        );
        assert_eq!(format!("{:?}", Token::new("ghs_secret")), "Token(redacted)");
    }
}
