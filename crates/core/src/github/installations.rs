//! The App's installation endpoints: the full listing and the lookups by owner or repository.

use crate::domain::secret::Secret;
use crate::error::Error;
use crate::github::types::GitHubInstallation;
use crate::github::{Auth, GitHubClient};

/// The listing endpoint, at GitHub's largest page size.
pub(crate) const LIST_PATH: &str = "/app/installations?per_page=100";

/// Every installation of `app_id` (all pages), authenticated with the App's `jwt`.
pub(crate) async fn list(github: &GitHubClient, app_id: i64, jwt: &Secret) -> Result<Vec<GitHubInstallation>, Error> {
    github.get_all(LIST_PATH, Auth::App { app_id, jwt }, None).await
}

/// The installation a lookup endpoint (`/users/{u}/installation`, `/orgs/{o}/installation`,
/// `/repos/{o}/{r}/installation`, `/enterprises/{e}/installation`) names, or `None` on 404.
pub(crate) async fn lookup(
    github: &GitHubClient,
    app_id: i64,
    jwt: &Secret,
    path: &str,
) -> Result<Option<GitHubInstallation>, Error> {
    match github.get::<GitHubInstallation>(path, Auth::App { app_id, jwt }).await {
        Ok(i) => Ok(Some(i)),
        Err(Error::GitHubRejected { status: 404, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}
