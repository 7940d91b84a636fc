//! The functions' configuration, read from the environment that `template.yaml` sets.

use crate::error::Error;
use crate::ports::AccessMode;

/// Whether `audience` is one of AWS STS's (global, regional, or China's: `sts.amazonaws.com`,
/// `sts.REGION.amazonaws.com`, `sts.amazonaws.com.cn`, …): every job that assumes an AWS role
/// asks GitHub for a token with it, so appcreds never takes it as its own.
pub fn is_sts_audience(audience: &str) -> bool {
    let audience = audience.to_ascii_lowercase();
    audience.starts_with("sts.") && (audience.ends_with(".amazonaws.com") || audience.ends_with(".amazonaws.com.cn"))
}

/// Settings every function reads from its environment (set by `template.yaml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `APP_TABLE_NAME`: the App table.
    pub app_table: String,
    /// `INSTALLATION_TABLE_NAME`: the Installation table, for the functions that use it.
    pub installation_table: Option<String>,
    /// `GITHUB_API_URL`: api.github.com, or `https://HOST/api/v3` for GitHub Enterprise Server.
    pub github_api_url: String,
    /// `REQUIRE_IAM_CALLER` (default `true`): refuse requests without an IAM caller.
    pub require_iam_caller: bool,
    /// `PAGINATION_KEY_ID`: the KMS HMAC key from which each `nextToken`'s encryption key is derived.
    pub pagination_key: Option<String>,
    /// `ACCESS_TABLE_NAME`: the access rules.
    pub access_table: Option<String>,
    /// `ACCESS_MODE`: `enforce` (the default) or `open`.
    pub access_mode: AccessMode,
    /// `OIDC_AUDIENCE`: the audience GitHub Actions OIDC tokens must be issued for; without it
    /// no token is accepted.
    pub oidc_audience: Option<String>,
    /// `OIDC_ISSUER`: the issuer of those tokens (default: the one `GITHUB_API_URL` names, see
    /// [`crate::github::oidc::issuer_for`]); `None` where neither says, and then no OIDC token is
    /// accepted.
    pub oidc_issuer: Option<String>,
    /// `LOCAL_CALLER_ARN`: the caller of requests that carry none, for the local stack's
    /// emulated Function URLs; honoured only with `REQUIRE_IAM_CALLER=false`, which no deployed
    /// function has.
    pub local_caller: Option<String>,
    /// `LEASE_TABLE_NAME`: the lease that keeps installation syncs apart.
    pub lease_table: Option<String>,
    /// `SHARED_APP_JWT_KEY_ID`: **(ext)** the symmetric KMS key that encrypts the App JWT one
    /// function signs for the others, kept in the lease table; without it (or the lease table),
    /// each function signs its own.
    pub shared_jwt_key: Option<String>,
    /// `ROTATION_TABLE_NAME`: the access-key rotator's targets.
    pub rotation_table: Option<String>,
    /// `ROTATION_KMS_KEY_ID`: the symmetric KMS key that encrypts a pending secret access key.
    pub rotation_kms_key: Option<String>,
    /// `ROTATION_IAM_PATH` (default `/appcreds-rotated/`): the IAM path of the users the rotator
    /// may manage.
    pub rotation_iam_path: String,
    /// `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda): names the function in its own metrics.
    pub function_name: Option<String>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `get` (tests pass a table).
    pub(crate) fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let non_empty = |name: &str| get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let app_table = non_empty("APP_TABLE_NAME").ok_or(Error::Misconfigured("APP_TABLE_NAME is not set"))?;
        let github_api_url = non_empty("GITHUB_API_URL")
            .unwrap_or_else(|| "https://api.github.com".to_string())
            .trim_end_matches('/')
            .to_string();
        if !(github_api_url.starts_with("https://") || github_api_url.starts_with("http://")) {
            return Err(Error::Misconfigured("GITHUB_API_URL must be an http(s) URL"));
        }
        let require_iam_caller = match non_empty("REQUIRE_IAM_CALLER").as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(_) => {
                return Err(Error::Misconfigured("REQUIRE_IAM_CALLER must be true or false"));
            }
        };
        let access_mode = match non_empty("ACCESS_MODE").as_deref() {
            None | Some("enforce") => AccessMode::Enforce,
            Some("open") => AccessMode::Open,
            Some(_) => return Err(Error::Misconfigured("ACCESS_MODE must be enforce or open")),
        };
        let local_caller = non_empty("LOCAL_CALLER_ARN");
        if local_caller.is_some() && require_iam_caller {
            return Err(Error::Misconfigured(
                "LOCAL_CALLER_ARN is only for the local stack (REQUIRE_IAM_CALLER=false)",
            ));
        }
        let rotation_iam_path = non_empty("ROTATION_IAM_PATH").unwrap_or_else(|| "/appcreds-rotated/".to_string());
        if !(rotation_iam_path.starts_with('/') && rotation_iam_path.ends_with('/')) {
            return Err(Error::Misconfigured("ROTATION_IAM_PATH must start and end with /"));
        }
        let oidc_issuer = non_empty("OIDC_ISSUER").or_else(|| crate::github::oidc::issuer_for(&github_api_url));
        let oidc_audience = non_empty("OIDC_AUDIENCE");
        if oidc_audience.as_deref().is_some_and(is_sts_audience) {
            // Every job that assumes an AWS role asks GitHub for a token with this audience and
            // hands it to STS (and to whatever else it runs): appcreds must not accept those.
            return Err(Error::Misconfigured("OIDC_AUDIENCE must be appcreds' own, not sts.amazonaws.com"));
        }
        Ok(Config {
            oidc_audience,
            oidc_issuer,
            access_table: non_empty("ACCESS_TABLE_NAME"),
            access_mode,
            local_caller,
            function_name: non_empty("AWS_LAMBDA_FUNCTION_NAME"),
            lease_table: non_empty("LEASE_TABLE_NAME"),
            shared_jwt_key: non_empty("SHARED_APP_JWT_KEY_ID"),
            rotation_table: non_empty("ROTATION_TABLE_NAME"),
            rotation_kms_key: non_empty("ROTATION_KMS_KEY_ID"),
            rotation_iam_path,
            app_table,
            installation_table: non_empty("INSTALLATION_TABLE_NAME"),
            pagination_key: non_empty("PAGINATION_KEY_ID"),
            github_api_url,
            require_iam_caller,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_checks_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let c =
            Config::from_lookup(env(&[("APP_TABLE_NAME", "Apps"), ("GITHUB_API_URL", "https://ghe.example/api/v3/")]))
                .unwrap();
        assert_eq!(c.app_table, "Apps");
        assert_eq!(c.github_api_url, "https://ghe.example/api/v3");
        assert!(c.require_iam_caller);
        assert_eq!(c.installation_table, None);
        assert!(matches!(Config::from_lookup(env(&[])), Err(Error::Misconfigured(_))));
        assert!(Config::from_lookup(env(&[("APP_TABLE_NAME", "A"), ("GITHUB_API_URL", "ftp://x")])).is_err());
        assert!(Config::from_lookup(env(&[("APP_TABLE_NAME", "A"), ("REQUIRE_IAM_CALLER", "no")])).is_err());
        assert_eq!(c.access_mode, AccessMode::Enforce, "deny by default");
        let open = Config::from_lookup(env(&[("APP_TABLE_NAME", "A"), ("ACCESS_MODE", "open")])).unwrap();
        assert_eq!(open.access_mode, AccessMode::Open);
        assert!(Config::from_lookup(env(&[("APP_TABLE_NAME", "A"), ("ACCESS_MODE", "off")])).is_err());
        // The OIDC issuer: GitHub's for github.com, GHE.com's own, none for an unknown API URL
        // unless OIDC_ISSUER names it; STS's audience is never appcreds'.
        let issuer =
            |pairs: &'static [(&'static str, &'static str)]| Config::from_lookup(env(pairs)).unwrap().oidc_issuer;
        assert_eq!(issuer(&[("APP_TABLE_NAME", "A")]).as_deref(), Some("https://token.actions.githubusercontent.com"));
        assert_eq!(
            issuer(&[("APP_TABLE_NAME", "A"), ("GITHUB_API_URL", "https://api.octocorp.ghe.com")]).as_deref(),
            Some("https://token.actions.octocorp.ghe.com")
        );
        assert_eq!(issuer(&[("APP_TABLE_NAME", "A"), ("GITHUB_API_URL", "https://git.example.com")]), None);
        assert_eq!(
            issuer(&[
                ("APP_TABLE_NAME", "A"),
                ("GITHUB_API_URL", "https://git.example.com"),
                ("OIDC_ISSUER", "https://token.actions.githubusercontent.com/octo-enterprise")
            ])
            .as_deref(),
            Some("https://token.actions.githubusercontent.com/octo-enterprise")
        );
        assert!(!is_sts_audience("appcreds:123456789012:appcreds") && !is_sts_audience("sts.example.com"));
        for sts in ["sts.amazonaws.com", "STS.amazonaws.com", "sts.eu-west-1.amazonaws.com", "sts.amazonaws.com.cn"] {
            let pairs = [("APP_TABLE_NAME", "A"), ("OIDC_AUDIENCE", sts)];
            let lookup = move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
            assert!(matches!(Config::from_lookup(lookup), Err(Error::Misconfigured(_))), "{sts}");
        }
        // A caller identity from the environment exists only where the platform gives none.
        let forged = env(&[("APP_TABLE_NAME", "A"), ("LOCAL_CALLER_ARN", "arn:aws:iam::123456789012:role/admin")]);
        assert!(matches!(Config::from_lookup(forged), Err(Error::Misconfigured(_))));
        let local = env(&[
            ("APP_TABLE_NAME", "A"),
            ("REQUIRE_IAM_CALLER", "false"),
            ("LOCAL_CALLER_ARN", "arn:aws:iam::123456789012:role/demo"),
        ]);
        assert_eq!(
            Config::from_lookup(local).unwrap().local_caller.as_deref(),
            Some("arn:aws:iam::123456789012:role/demo")
        );
    }
}
