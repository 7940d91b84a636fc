//! The parts of GitHub's responses that appcreds reads, named after GitHub's OpenAPI schemas.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::domain::scope::InstallationGrants;
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
    /// What the installation grants: permission → level (`None` when GitHub's answer does not
    /// say: not known, which is not "nothing").
    #[serde(default)]
    pub permissions: Option<BTreeMap<String, String>>,
    /// `all` or `selected`.
    #[serde(default)]
    pub repository_selection: String,
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
        let grants =
            self.permissions.iter().flatten().map(|(k, v)| 2 * size_of::<String>() + k.len() + v.len()).sum::<usize>();
        size_of::<Self>() + account + self.target_type.len() + self.repository_selection.len() + grants
    }

    /// What it grants, for the pre-flight check of a token request: `None` when GitHub's answer
    /// does not name its permissions (not known: the check refuses nothing).
    pub fn grants(&self) -> Option<InstallationGrants> {
        Some(InstallationGrants {
            permissions: self.permissions.clone()?,
            repository_selection: self.repository_selection.clone(),
        })
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
    /// What the token grants: permission → level (`None` when the answer does not say, which
    /// proves nothing about it).
    #[serde(default)]
    pub permissions: Option<BTreeMap<String, String>>,
    /// `all` or `selected`.
    pub repository_selection: Option<String>,
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn permissions_missing_are_not_known_rather_than_none() {
        let installation = |v| serde_json::from_value::<GitHubInstallation>(v).unwrap();
        let bare = installation(json!({"id": 71, "repository_selection": "all"}));
        assert_eq!(bare.grants(), None, "not known: the pre-flight refuses nothing");
        let none = installation(json!({"id": 71, "permissions": {}, "repository_selection": "all"}));
        assert_eq!(none.grants().unwrap().permissions.len(), 0, "grants nothing");
        let some = installation(json!({"id": 71, "permissions": {"contents": "read"}}));
        assert_eq!(some.grants().unwrap().permissions["contents"], "read");

        let token = |v| serde_json::from_value::<AccessToken>(v).unwrap();
        let bare = token(json!({"token": "ghs_x", "expires_at": "2026-12-05T09:00:00Z"}));
        assert_eq!(bare.permissions, None);
        let none = token(json!({"token": "ghs_x", "expires_at": "2026-12-05T09:00:00Z", "permissions": {}}));
        assert_eq!(none.permissions, Some(BTreeMap::new()));
    }
}
