//! The credentials appcreds hands out, each with its in-process cache: App JWTs signed by KMS
//! ([`app_jwt`]) and installation access tokens minted at GitHub ([`installation`]).

pub mod app_jwt;
pub mod installation;

use crate::error::Error;

/// **(ext)** The audit line of a token GitHub minted wider than asked (the proof after the mint):
/// who asked (`caller`: a principal's ARN, or the job that minted it), what was wider, and
/// whether the token was revoked; its SHA-256 as the `credential issued` line writes it, never
/// the token. Nothing for another error. Written by the operations and by the jobs that mint.
pub(crate) fn audit_too_wide(caller: &str, app_id: i64, err: &Error) {
    let Error::TokenTooWide { installation_id, token_sha256, hashed_token, wider, revoked } = err else { return };
    // One line, at WARN if the token was revoked and at ERROR if not (a level is fixed where an
    // event is written, so the line is written in each branch, from one spelling).
    macro_rules! too_wide {
        ($level:ident, $message:literal) => {
            tracing::$level!(
                target: "appcreds::audit",
                caller,
                kind = "installation-token",
                app_id,
                installation_id,
                hashed_token,
                token_sha256,
                wider,
                revoked,
                $message
            )
        };
    }
    if *revoked {
        too_wide!(warn, "installation token wider than asked: revoked");
    } else {
        too_wide!(error, "installation token wider than asked: not revoked, expires within the hour");
    }
}
