//! The parts of GitHub's responses that appcreds reads, named after GitHub's OpenAPI schemas.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::ports::InstallationRecord;

/// An installation (schema `installation`), as `GET /app/installations` and the lookup endpoints
/// return it: the fields appcreds keeps.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct GitHubInstallation {
    /// The installation ID.
    pub id: i64,
    /// The account it is installed on.
    pub account: Option<GitHubAccount>,
    /// `Organization`, `User` or `Enterprise`.
    #[serde(default)]
    pub target_type: String,
}

/// The account of an installation (a user, an organization or an enterprise).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct GitHubAccount {
    /// Users and organizations have a login.
    pub login: Option<String>,
    /// Enterprises have a slug instead of a login.
    pub slug: Option<String>,
    /// The account's node ID.
    pub node_id: String,
}

impl GitHubInstallation {
    /// The bytes it holds, inline and on the heap (for cache bounds).
    pub fn weight(&self) -> usize {
        let account = self.account.as_ref().map_or(0, |a| {
            size_of::<GitHubAccount>()
                + a.login.as_ref().map_or(0, String::len)
                + a.slug.as_ref().map_or(0, String::len)
                + a.node_id.len()
        });
        size_of::<Self>() + account + self.target_type.len()
    }

    /// The Installation row for this installation of `app_id`.
    pub fn record(&self, app_id: i64) -> Option<InstallationRecord> {
        let account = self.account.as_ref()?;
        Some(InstallationRecord {
            app_id,
            installation_id: self.id,
            node_id: account.node_id.clone(),
            target_type: self.target_type.clone(),
            name: account.login.clone().or_else(|| account.slug.clone()).unwrap_or_default(),
        })
    }
}

/// `POST /app/installations/{id}/access_tokens`' answer (schema `installation-token`).
#[derive(Deserialize)]
pub(crate) struct AccessToken {
    pub token: String,
    pub expires_at: String,
    #[serde(default)]
    pub permissions: BTreeMap<String, String>,
    pub repositories: Option<Vec<RepoRef>>,
}

/// A repository of an [`AccessToken`].
#[derive(Deserialize)]
pub(crate) struct RepoRef {
    pub id: i64,
    pub name: String,
}

/// `GET /app`'s answer: the App's slug.
#[derive(Deserialize)]
pub(crate) struct App {
    pub slug: Option<String>,
}

/// `GET /rate_limit`'s answer (schema `rate-limit-overview`).
#[derive(Debug, Deserialize)]
pub(crate) struct RateLimitOverview {
    pub resources: BTreeMap<String, Rate>,
}

/// One resource category of `GET /rate_limit` (schema `rate-limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) struct Rate {
    /// Requests allowed per window.
    pub limit: i64,
    /// Requests made in this window.
    pub used: i64,
    /// Requests left in this window.
    pub remaining: i64,
    /// Unix seconds when the window resets.
    pub reset: i64,
}
