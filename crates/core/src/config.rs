//! The functions' configuration, read from the environment that `template.yaml` sets.

use crate::error::Error;

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
    /// `PAGINATION_KEY_ID`: the KMS HMAC key that makes `nextToken`s tamper-evident.
    pub pagination_key: Option<String>,
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
        Ok(Config {
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
    }
}
