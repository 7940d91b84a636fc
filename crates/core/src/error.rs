//! The one error type of `appcreds-core`, and [`error_reply`], the one place it becomes the
//! contract's error (name, HTTP status and body): for the HTTP edge and the rotator's answers alike.

use std::fmt;

pub use appcreds_wire::FieldError;
use appcreds_wire::{ErrorBody, ErrorName};

/// Why a KMS key could not sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProblem {
    /// The key does not exist (or the ARN in the App table is wrong).
    NotFound,
    /// The key is disabled.
    Disabled,
    /// The key is pending deletion, pending import, or otherwise in a state that cannot sign.
    InvalidState,
    /// IAM or the key policy refused `kms:Sign` (for example the key is not tagged `Status=Active`).
    AccessDenied,
    /// The key cannot sign with RSASSA_PKCS1_V1_5_SHA_256 (wrong key spec or usage).
    WrongKeyType,
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyProblem::NotFound => "not found",
            KeyProblem::Disabled => "disabled",
            KeyProblem::InvalidState => "in a state that cannot sign",
            KeyProblem::AccessDenied => "not usable by this function (access denied)",
            KeyProblem::WrongKeyType => "not an RSA signing key",
        })
    }
}

/// Everything that can go wrong in appcreds' core. Client mistakes are the first group; each maps
/// to one error name of the wire contract (see `docs/api.md`, Errors).
/// Cloneable, so that one failure can be handed to every request that waited for it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A field is missing or violates a constraint (`ValidationException`).
    #[error("{message}")]
    Validation { message: String, fields: Vec<FieldError> },
    /// The body is not valid JSON for the operation (`SerializationException`).
    #[error("{0}")]
    Serialization(String),
    /// The request's content type is not JSON (`UnsupportedMediaTypeException`).
    #[error("unsupported content type {0:?}; use application/json")]
    UnsupportedMediaType(String),
    /// No operation at this method and path (`UnknownOperationException`).
    #[error("no operation at {method} {path}")]
    UnknownOperation { method: String, path: String },
    /// No access rule allows this caller this request (`AccessDeniedException`). The message
    /// names what exceeded the grant and nothing about other rules.
    #[error("{0}")]
    AccessDenied(String),
    /// The App is not in the App table (`ClientSideError`).
    #[error("App {0} is not registered with appcreds")]
    UnknownApp(i64),
    /// The App has no installation for what the caller named (`ClientSideError`).
    #[error("App {app_id} has no installation for {target}")]
    UnknownInstallation { app_id: i64, target: String },
    /// **(ext)** The pre-flight check: the access rules allowed the request, but the installation
    /// does not grant what it asks (`ClientSideError`, before any mint). `what` names it.
    #[error("the installation of App {app_id} on {account} does not grant {what}")]
    BeyondInstallation { app_id: i64, account: String, what: String },
    /// The App's row has no `KmsKeyArn` (`ServerSideError`: an operator must import a key).
    #[error("App {0} has no signing key configured")]
    AppKeyMissing(i64),
    /// KMS refused to sign with the App's key (`ServerSideError`).
    #[error("the App's signing key is {0}")]
    SigningKey(KeyProblem),
    /// GitHub refused the request: 404 on an installation, 422 (`ClientSideError`
    /// with GitHub's message).
    #[error("GitHub: {message}")]
    GitHubRejected {
        /// GitHub's status code.
        status: u16,
        /// GitHub's `message`.
        message: String,
        /// GitHub's `documentation_url`, if it gave one.
        documentation_url: Option<String>,
    },
    /// GitHub refused the App's JWT (`ServerSideError`): the key in KMS is not this App's key.
    #[error("GitHub refused the credentials of App {app_id}; check that its KMS key holds this App's private key")]
    GitHubUnauthorized { app_id: i64 },
    /// GitHub refused appcreds itself: a 403 that is not a rate limit (SSO enforcement, an IP
    /// allow-list), or a 404 on an App endpoint (a wrong `GITHUB_API_URL`) (`ServerSideError`;
    /// GitHub's words are in the log).
    #[error("GitHub refused appcreds' request (HTTP {status}); see the function's log")]
    GitHubRefusedAppcreds {
        status: u16,
        /// GitHub's `message` (logged; never in a caller's answer).
        message: String,
    },
    /// GitHub failed or could not be reached, after retries (`ServerSideError`).
    #[error("GitHub is unavailable ({0})")]
    GitHubUnavailable(String),
    /// An upstream throttled us and bounded retries did not help (`ThrottlingException`).
    #[error("{service} is throttling requests; retry after {retry_after_seconds} s")]
    Throttled { service: &'static str, retry_after_seconds: u64 },
    /// An installation sync is already running (`ThrottlingException`): one at a time.
    #[error("an installation sync is already running; retry after {retry_after_seconds} s")]
    SyncRunning { retry_after_seconds: u64 },
    /// The access-key rotator refuses a target (`ClientSideError`): it is unknown, its user is
    /// missing or outside the allowed IAM path, or both of the user's keys are live. The message
    /// says which and what to do.
    #[error("{0}")]
    RotationRefused(String),
    /// Another run is rotating this target's key (`ThrottlingException`): one at a time.
    #[error("another run is rotating this key; retry after {retry_after_seconds} s")]
    RotationRunning { retry_after_seconds: u64 },
    /// **(ext)** GitHub's mint answered a token wider than asked (`ServerSideError`). It is never
    /// handed out: it was revoked at once (`revoked` says whether GitHub confirmed), and what was
    /// wider goes to the audit line, not to the caller.
    #[error("GitHub granted a token wider than asked; {}", too_wide_fate(*.revoked))]
    TokenTooWide {
        installation_id: i64,
        /// The token's SHA-256, hex (never the token).
        token_sha256: String,
        /// The same digest in standard base64, as GitHub's audit log names tokens.
        hashed_token: String,
        /// What the answer granted beyond the request.
        wider: String,
        /// Whether GitHub confirmed the revocation.
        revoked: bool,
    },
    /// **(ext)** What answers for one target of `POST /tokens/installations`: the error its own
    /// `POST /tokens/installation` would give, and the target's index in the request (the index
    /// only: nothing more about the target than that error says).
    #[error("target {index}: {error}")]
    InTarget { index: usize, error: Box<Error> },
    /// The request could not finish before the invocation's deadline (`ServerSideError`).
    #[error("the request did not finish within the function's time limit; retry it")]
    OutOfTime,
    /// The function is deployed wrongly (`ServerSideError`); the message is safe to show.
    #[error("{0}")]
    Misconfigured(&'static str),
    /// Anything else (`ServerSideError` with a generic message; the detail is only logged).
    #[error("{context}: {source}")]
    Internal {
        context: &'static str,
        #[source]
        source: std::sync::Arc<dyn std::error::Error + Send + Sync>,
    },
}

/// What became of a token minted wider than asked, for the caller's message.
fn too_wide_fate(revoked: bool) -> &'static str {
    if revoked {
        "it was revoked and is not handed out"
    } else {
        "it is not handed out (GitHub did not confirm its revocation: it expires within the hour)"
    }
}

impl Error {
    /// A `ValidationException` for one field; `message` is the whole field message.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid_fields(vec![FieldError::new(path, message)])
    }

    /// The most field errors one response lists; the message counts them all.
    pub(crate) const MAX_FIELD_ERRORS: usize = 20;

    /// A `ValidationException` for several fields (at least one), summed up as Smithy's server
    /// SDKs do, listing at most [`Error::MAX_FIELD_ERRORS`] of them: a request cannot make its
    /// answer large.
    pub(crate) fn invalid_fields(mut fields: Vec<FieldError>) -> Self {
        let message = match fields.as_slice() {
            [] => "0 validation errors detected.".to_string(),
            [one] => format!("1 validation error detected. {}", one.message),
            many => {
                let paths: std::collections::BTreeSet<&str> = many.iter().map(|f| f.path.as_str()).collect();
                format!(
                    "{} validation errors at {} path{} detected. First failure: {}",
                    many.len(),
                    paths.len(),
                    if paths.len() > 1 { "s" } else { "" },
                    many[0].message
                )
            }
        };
        fields.truncate(Self::MAX_FIELD_ERRORS);
        Error::Validation { message, fields }
    }

    /// A `ServerSideError` whose detail (`source`) is logged, never shown.
    pub fn internal(context: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Internal { context, source: std::sync::Arc::from(source.into()) }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The contract's name and body for an error. The only place errors become HTTP.
pub fn error_reply(err: &Error) -> (ErrorName, ErrorBody) {
    let message = || ErrorBody::message(err.to_string());
    match err {
        Error::Validation { message, fields } => (
            ErrorName::Validation,
            ErrorBody { field_list: Some(fields.clone()), ..ErrorBody::message(message.clone()) },
        ),
        Error::Serialization(text) => (ErrorName::Serialization, ErrorBody::message(text.clone())),
        Error::UnsupportedMediaType(_) => (ErrorName::UnsupportedMediaType, message()),
        Error::UnknownOperation { .. } => (ErrorName::UnknownOperation, message()),
        Error::AccessDenied(_) => (ErrorName::AccessDenied, message()),
        Error::GitHubRejected { documentation_url, .. } => {
            (ErrorName::ClientSide, ErrorBody { documentation_url: documentation_url.clone(), ..message() })
        }
        Error::UnknownApp(_)
        | Error::UnknownInstallation { .. }
        | Error::BeyondInstallation { .. }
        | Error::RotationRefused(_) => (ErrorName::ClientSide, message()),
        Error::AppKeyMissing(_)
        | Error::SigningKey(_)
        | Error::Misconfigured(_)
        | Error::GitHubUnauthorized { .. }
        | Error::GitHubRefusedAppcreds { .. }
        | Error::GitHubUnavailable(_)
        | Error::TokenTooWide { .. }
        | Error::OutOfTime => (ErrorName::ServerSide, message()),
        Error::Throttled { retry_after_seconds, .. }
        | Error::SyncRunning { retry_after_seconds }
        | Error::RotationRunning { retry_after_seconds } => {
            (ErrorName::Throttling, ErrorBody { retry_after_seconds: Some(*retry_after_seconds), ..message() })
        }
        Error::Internal { .. } => (ErrorName::ServerSide, ErrorBody::message("Internal server error")),
        Error::InTarget { index, error } => {
            let (name, body) = error_reply(error);
            let message = format!("target {index}: {}", body.message);
            (name, ErrorBody { message, target_index: Some(*index), ..body })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_do_not_leak_detail() {
        let err = Error::internal("reading the App table", "arn:aws:dynamodb:eu-west-1:123:table/secret-name");
        let (name, body) = error_reply(&err);
        assert_eq!((name.status(), name.as_str()), (500, "ServerSideError"));
        assert_eq!(serde_json::to_value(body).unwrap(), serde_json::json!({"message": "Internal server error"}));
    }

    #[test]
    fn an_error_in_a_batch_is_its_targets_error_with_the_index() {
        let in_target = |error| Error::InTarget { index: 2, error: Box::new(error) };
        let (name, body) = error_reply(&in_target(Error::AccessDenied("repository docs is not granted".into())));
        assert_eq!(name, ErrorName::AccessDenied);
        assert_eq!(
            serde_json::to_value(body).unwrap(),
            serde_json::json!({"message": "target 2: repository docs is not granted", "targetIndex": 2})
        );
        let (name, body) = error_reply(&in_target(Error::internal("reading the App table", "secret detail")));
        assert_eq!((name, body.message.as_str()), (ErrorName::ServerSide, "target 2: Internal server error"));
        let (_, body) = error_reply(&in_target(Error::Throttled { service: "GitHub", retry_after_seconds: 9 }));
        assert_eq!((body.retry_after_seconds, body.target_index), (Some(9), Some(2)), "the rest of the body kept");
    }

    #[test]
    fn throttling_says_when_to_retry() {
        let (name, body) = error_reply(&Error::Throttled { service: "GitHub", retry_after_seconds: 30 });
        assert_eq!((name.status(), body.retry_after_seconds), (429, Some(30)));
    }

    #[test]
    fn a_token_too_wide_says_whether_it_was_revoked() {
        let too_wide = |revoked| Error::TokenTooWide {
            installation_id: 71,
            token_sha256: String::new(),
            hashed_token: String::new(),
            wider: "permission issues: write (not asked)".into(),
            revoked,
        };
        let message = |revoked| serde_json::to_value(error_reply(&too_wide(revoked)).1).unwrap()["message"].clone();
        assert_eq!(message(true), "GitHub granted a token wider than asked; it was revoked and is not handed out");
        let kept = message(false);
        assert!(!kept.as_str().unwrap().contains("was revoked"), "{kept}");
        assert!(!kept.as_str().unwrap().contains("issues"), "what was wider is not the caller's");
    }
}
