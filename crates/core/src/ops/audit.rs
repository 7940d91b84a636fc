//! The audit trail: one line per credential handed out, never the credential itself.

use crate::domain::secret::Secret;
use crate::http::Caller;

/// Logs that `caller` received `token` (of `kind`, for `app_id` and maybe an installation).
pub(crate) fn credential_issued(
    caller: &Caller,
    kind: &'static str,
    app_id: i64,
    installation_id: Option<i64>,
    token: &Secret,
    expires_at: &str,
    cached: bool,
) {
    tracing::info!(
        target: "appcreds::audit",
        caller = caller.audit_name(),
        kind,
        app_id,
        installation_id,
        token_sha256 = %token.sha256_hex(),
        expires_at,
        cached,
        "credential issued"
    );
}
