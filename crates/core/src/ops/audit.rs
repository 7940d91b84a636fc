//! The audit trail: one line per credential handed out, never the credential itself, and one per
//! token GitHub minted wider than asked. (Each refusal by an access rule has its line too,
//! written where the rules are judged.)

use crate::domain::secret::Secret;
use crate::error::Error;
use crate::http::Caller;

/// A credential handed out.
pub(crate) struct Issued<'a> {
    /// `app-jwt` or `installation-token`.
    pub(crate) kind: &'static str,
    pub(crate) app_id: i64,
    pub(crate) installation_id: Option<i64>,
    pub(crate) token: &'a Secret,
    pub(crate) expires_at: &'a str,
    /// Whether it came from the cache.
    pub(crate) cached: bool,
    /// The access rule that allowed it (`None` in open mode).
    pub(crate) rule: Option<&'a str>,
}

/// Logs that `caller` received `issued`: the caller, the App and installation, the SHA-256 of
/// the token, its expiry, and the rule that allowed it.
///
/// The hash is there twice: `hashed_token`, base64 (standard, padded) as GitHub's audit log writes
/// it for the token's every use, so that an operator can find who got the token behind a GitHub
/// event; and `token_sha256`, the same digest in hex, which lines written before had alone (saved
/// queries, metric filters and tools such as `sha256sum` use it).
pub(crate) fn credential_issued(caller: &Caller, issued: &Issued<'_>) {
    tracing::info!(
        target: "appcreds::audit",
        caller = caller.audit_name(),
        kind = issued.kind,
        app_id = issued.app_id,
        installation_id = issued.installation_id,
        hashed_token = %issued.token.sha256_base64(),
        token_sha256 = %issued.token.sha256_hex(),
        expires_at = issued.expires_at,
        cached = issued.cached,
        rule = issued.rule.unwrap_or("-"),
        "credential issued"
    );
}

/// **(ext)** Logs that GitHub answered `caller`'s request with a token wider than asked (the
/// proof after the mint), what was wider, and whether the token was revoked: the token's SHA-256
/// as [`credential_issued`] writes it, never the token. Nothing for another error. (The jobs that
/// mint write the same line, with their own name for the caller.)
pub(crate) fn token_too_wide(caller: &Caller, app_id: i64, err: &Error) {
    crate::tokens::audit_too_wide(caller.audit_name(), app_id, err);
}

/// **(ext)** Logs that a token minted for `caller`'s `POST /tokens/installations` was not handed
/// out, because another of the request's mints failed, and whether GitHub confirmed its
/// revocation: the token's SHA-256 as [`credential_issued`] writes it, never the token.
pub(crate) fn batch_token_revoked(caller: &Caller, app_id: i64, installation_id: i64, token: &Secret, revoked: bool) {
    let message = if revoked {
        "installation token of a failed batch: revoked"
    } else {
        "installation token of a failed batch: not revoked, expires within the hour"
    };
    tracing::warn!(
        target: "appcreds::audit",
        caller = caller.audit_name(),
        kind = "installation-token",
        app_id,
        installation_id,
        hashed_token = %token.sha256_base64(),
        token_sha256 = %token.sha256_hex(),
        revoked,
        "{message}"
    );
}

/// **(ext)** Logs that a mint of `caller`'s `POST /tokens/installations` ran out of time or had
/// no answer (`error`): GitHub may have minted the token all the same, but it was never seen, so
/// it is neither handed out nor revoked (it expires within the hour). There is no token to hash:
/// the App and installation say which.
pub(crate) fn batch_mint_unknown(caller: &Caller, app_id: i64, installation_id: i64, error: &Error) {
    tracing::warn!(
        target: "appcreds::audit",
        caller = caller.audit_name(),
        kind = "installation-token",
        app_id,
        installation_id,
        error = %error,
        "installation token of a batch: the mint's outcome is unknown; GitHub may have minted one, never handed out nor revoked"
    );
}
