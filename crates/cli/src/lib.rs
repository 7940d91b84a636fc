//! The `appcreds` operator and caller CLI: App keys in KMS ([`keys`], [`keywrap`]), access rules
//! ([`access_rules`]), access-key rotation targets ([`rotation_targets`]), and the errors of all,
//! with the exit code each one ends the process with.

pub mod access_rules;
pub mod keys;
pub mod keywrap;
pub mod rotation_targets;

use appcreds_client::ClientError;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Exit codes: what kind of failure ended the command.
pub mod exit {
    /// The command line is wrong (a flag, a file that cannot be read, a missing setting).
    pub const USAGE: u8 = 2;
    /// AWS credentials are missing or IAM refused the caller.
    pub const AUTH: u8 = 3;
    /// The request was refused: invalid input, unknown App or installation, a conflict.
    pub const REFUSED: u8 = 4;
    /// appcreds, AWS, GitHub or the network failed.
    pub const FAILED: u8 = 5;
    /// Throttled: retry later.
    pub const THROTTLED: u8 = 6;
}

/// What kind of AWS failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// No or bad credentials, or IAM/key policy refused the call.
    Auth,
    /// AWS refused the request itself (not found, invalid state, invalid parameter).
    Refused,
    Throttled,
    Failed,
}

/// A failed AWS call: which operation, what kind, and AWS's words.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} failed: {message}")]
pub struct AwsFailure {
    pub operation: &'static str,
    pub kind: AwsErrorKind,
    pub message: String,
}

const AUTH_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
];
const SERVER_FAULT_CODES: &[&str] = &[
    "InternalFailure",
    "InternalServerError",
    "KMSInternalException",
    "ServiceUnavailable",
    "DependencyTimeoutException",
];
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
];

/// Whether a credentials provider refused, somewhere in an error's sources: the `--role-arn` role's
/// provider answers [`ClientError::Credentials`] when GitHub or STS refuses (and `Transport` when
/// either does not answer, which stays a failure).
fn refused_credentials(mut source: Option<&(dyn std::error::Error + 'static)>) -> bool {
    while let Some(err) = source {
        if matches!(err.downcast_ref::<ClientError>(), Some(ClientError::Credentials(_))) {
            return true;
        }
        source = err.source();
    }
    false
}

impl AwsFailure {
    /// Classifies an SDK error by its AWS error code (a 5xx, or no answer, is a failure).
    pub fn of<E, R>(operation: &'static str, err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let chain = DisplayErrorContext(err).to_string();
        let code = err.as_service_error().and_then(|e| e.code()).filter(|c| !SERVER_FAULT_CODES.contains(c));
        let kind = match code {
            Some(c) if AUTH_CODES.contains(&c) => AwsErrorKind::Auth,
            Some(c) if THROTTLING_CODES.contains(&c) => AwsErrorKind::Throttled,
            Some(_) => AwsErrorKind::Refused,
            None if refused_credentials(std::error::Error::source(err))
                || chain.contains("no credentials")
                || chain.contains("credentials provider") =>
            {
                AwsErrorKind::Auth
            }
            None => AwsErrorKind::Failed,
        };
        let message = match (code, err.as_service_error().and_then(|e| e.message())) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_string(),
            (None, _) => chain,
        };
        AwsFailure { operation, kind, message }
    }

    pub fn other(operation: &'static str, message: &str) -> Self {
        AwsFailure { operation, kind: AwsErrorKind::Failed, message: message.to_string() }
    }
}

/// Everything the CLI can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line is wrong (nothing was sent anywhere).
    #[error("{0}")]
    Usage(String),
    /// The PEM is not a usable GitHub App key (nothing was sent to AWS).
    #[error("bad key: {0}")]
    BadKey(String),
    /// The request was refused by the state of things (an App that already has a key, ...).
    #[error("{0}")]
    Refused(String),
    /// The import itself failed (wrapping, or KMS does not sign with the PEM's key).
    #[error("import failed: {0}")]
    Import(String),
    #[error(transparent)]
    Aws(AwsFailure),
    /// Something failed after a KMS key was created; the key was tagged `Status=Failed`.
    #[error(
        "{cause}\n{} delete it with:\n  {cleanup}",
        if *tagged { "The new KMS key was tagged Status=Failed;" } else { "Tagging the new KMS key Status=Failed failed too;" }
    )]
    KeyFailed { cause: Box<CliError>, tagged: bool, cleanup: String },
    /// `access test` judged the request refused (the decision is already printed).
    #[error("the access rules refuse this request")]
    Denied,
    /// The main change was made, a follow-up step was not (the message says how to finish).
    #[error("{0}")]
    Partial(String),
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl CliError {
    /// The process exit code for this failure (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::BadKey(_) | CliError::Refused(_) | CliError::Denied => exit::REFUSED,
            CliError::Import(_) | CliError::Partial(_) => exit::FAILED,
            CliError::Aws(f) => match f.kind {
                AwsErrorKind::Auth => exit::AUTH,
                AwsErrorKind::Refused => exit::REFUSED,
                AwsErrorKind::Throttled => exit::THROTTLED,
                AwsErrorKind::Failed => exit::FAILED,
            },
            CliError::KeyFailed { cause, .. } => cause.exit_code(),
            CliError::Client(err) => match err.cause() {
                ClientError::Config(_) => exit::USAGE,
                ClientError::Forbidden { .. } | ClientError::AccessDenied(_) | ClientError::Credentials(_) => {
                    exit::AUTH
                }
                ClientError::Validation { .. } | ClientError::ClientSide(_) | ClientError::Protocol { .. } => {
                    exit::REFUSED
                }
                ClientError::ServerSide(_) | ClientError::Transport { .. } => exit::FAILED,
                ClientError::Throttled { .. } => exit::THROTTLED,
                // `cause` is never one.
                ClientError::InTarget { .. } => exit::FAILED,
            },
        }
    }

    /// An App table failure from `appcreds-core`.
    pub fn from_core(err: appcreds_core::Error) -> Self {
        let kind = match &err {
            appcreds_core::Error::Throttled { .. } => AwsErrorKind::Throttled,
            other => {
                let text = DisplayErrorContext(other).to_string();
                if refused_credentials(Some(other)) || AUTH_CODES.iter().any(|c| text.contains(c)) {
                    AwsErrorKind::Auth
                } else {
                    AwsErrorKind::Failed
                }
            }
        };
        CliError::Aws(AwsFailure {
            operation: "DynamoDB (App table)",
            kind,
            message: DisplayErrorContext(&err).to_string(),
        })
    }
}
