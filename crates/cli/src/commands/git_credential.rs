//! `appcreds git-credential get|store|erase`: a git credential helper. For `get` on the GitHub
//! host it mints an installation token for the one repository git asks about and answers it with
//! its expiry, so that a `credential-cache` in front of it never hands out an expired token.
//! `store` and `erase` are read and ignored. With `--ledger`, each token answered is recorded as
//! the URL git asked for and the token's SHA-256 (never the token), for a clean-up that finds the
//! token in git's credential-cache and revokes it. No token is ever written anywhere.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use appcreds_cli::CliError;
use appcreds_client::{ScopeDown, Target};
use clap::Args;
use zeroize::Zeroizing;

use super::Context;
use super::call::{self, OidcArgs, UrlArgs, parse_permission};

#[derive(Args, Debug)]
pub struct GitCredentialArgs {
    /// What git asks: `get` (mint a token); `store`, `erase` and anything else are read and ignored.
    #[arg(value_name = "OPERATION")]
    operation: String,
    /// The GitHub App's ID.
    #[arg(long, env = "APPCREDS_APP_ID", value_parser = clap::value_parser!(i64).range(1..))]
    app_id: i64,
    /// Answer only for this owner's repositories; and when git sends no path (credential.useHttpPath
    /// unset), mint a token for this owner's installation, all its repositories.
    #[arg(long, env = "APPCREDS_GIT_OWNER", value_name = "LOGIN")]
    owner: Option<String>,
    /// The token's permissions (repeatable, or comma-separated), e.g. contents=write. Default:
    /// contents=read, enough to clone and fetch; pushing needs contents=write.
    #[arg(
        long = "permission",
        env = "APPCREDS_GIT_PERMISSIONS",
        value_delimiter = ',',
        value_name = "NAME=LEVEL",
        value_parser = parse_permission
    )]
    permissions: Vec<(String, String)>,
    /// GitHub REST API base URL; its host is the git host answered for (github.com for
    /// api.github.com; for GitHub Enterprise Server, https://HOST/api/v3 gives HOST).
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com", value_name = "URL")]
    github_api_url: String,
    /// For each token answered for a repository, append to this file a line with the URL git asked
    /// for (https://HOST/PATH) and the token's SHA-256 (never the token). A clean-up reads it to find
    /// the tokens in git's credential-cache, and revoke those that are this helper's (the Action's
    /// post step does).
    #[arg(long, env = "APPCREDS_GIT_LEDGER", value_name = "FILE")]
    ledger: Option<PathBuf>,
}

/// Runs the helper: reads git's request from standard input and, for `get` on the GitHub host,
/// answers a token on standard output. A request that is not for us gets no answer (exit 0), so
/// that git asks its next helper.
pub async fn run(ctx: &Context<'_>, urls: &UrlArgs, oidc: &OidcArgs, args: &GitCredentialArgs) -> Result<(), CliError> {
    let request = read_request(std::io::stdin().lock())?;
    if args.operation != "get" {
        return Ok(());
    }
    let host = github_host(&args.github_api_url)?;
    let Some((target, scope)) = target_of(&request, &host, args) else {
        return Ok(());
    };
    let client = call::connect(ctx, urls, oidc, |u| u.installation_token.is_none()).await?;
    let t = client.installation_token(args.app_id, &target, Some(&scope)).await?;
    let expiry = unix_seconds(&t.expiration_time).ok_or_else(|| {
        CliError::Client(appcreds_client::ClientError::ServerSide(format!(
            "the token's expirationTime {:?} is not RFC 3339",
            t.expiration_time
        )))
    })?;
    let answer = Zeroizing::new(format!(
        "username=x-access-token\npassword={}\npassword_expiry_utc={expiry}\n",
        t.installation_token.expose()
    ));
    let mut out = std::io::stdout().lock();
    out.write_all(answer.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::Usage(format!("cannot answer git: {e}")))?;
    if let Some(ledger) = &args.ledger
        && let Some(line) = ledger_line(&request, &host, t.installation_token.expose())
        && let Err(e) = append(ledger, &line)
    {
        // git has its token either way; it then expires in git's cache, unrevoked.
        eprintln!("appcreds: warning: cannot record the token in {}: {e}", ledger.display());
    }
    Ok(())
}

/// git's request: `key=value` lines up to a blank line or the end. Of a key given more than once
/// the last is kept, as git's own reader does (`wwwauth[]`, `capability[]`: none matters here).
fn read_request(input: impl BufRead) -> Result<BTreeMap<String, String>, CliError> {
    let mut request = BTreeMap::new();
    for line in input.lines() {
        let line = line.map_err(|e| CliError::Usage(format!("cannot read git's request: {e}")))?;
        if line.is_empty() {
            break;
        }
        if let Some((key, value)) = line.split_once('=') {
            request.insert(key.to_string(), value.to_string());
        }
    }
    Ok(request)
}

/// The git host of the GitHub whose REST API is at `api_url`, with its port if it is not the
/// default: `github.com` for `https://api.github.com`, `SUB.ghe.com` for GHE.com's
/// `https://api.SUB.ghe.com`, else the API's own host (GHES, `https://HOST/api/v3`).
fn github_host(api_url: &str) -> Result<String, CliError> {
    let url = reqwest::Url::parse(api_url)
        .map_err(|e| CliError::Usage(format!("--github-api-url: {api_url:?} is not a URL: {e}")))?;
    let host = url.host_str().ok_or_else(|| CliError::Usage(format!("--github-api-url: {api_url:?} has no host")))?;
    let host = host.to_ascii_lowercase();
    let host = match host.strip_prefix("api.") {
        Some(rest) if rest == "github.com" || rest.ends_with(".ghe.com") => rest,
        _ => &host,
    };
    Ok(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

/// What to mint for `request`, or `None` when it is not ours to answer: another protocol or host,
/// a path that is no `owner/repo`, another owner than `--owner`, or no path and no `--owner`.
fn target_of(request: &BTreeMap<String, String>, host: &str, args: &GitCredentialArgs) -> Option<(Target, ScopeDown)> {
    if request.get("protocol").map(String::as_str) != Some("https") {
        return None;
    }
    if !request.get("host").is_some_and(|h| h.eq_ignore_ascii_case(host)) {
        return None;
    }
    let permissions = if args.permissions.is_empty() {
        BTreeMap::from([("contents".to_string(), "read".to_string())])
    } else {
        args.permissions.iter().cloned().collect()
    };
    let Some(path) = request.get("path") else {
        let owner = args.owner.clone()?;
        return Some((Target::Owner(owner), ScopeDown { permissions, ..ScopeDown::default() }));
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let (owner, name) = path.split_once('/')?;
    if owner.is_empty() || name.is_empty() || name.contains('/') {
        return None;
    }
    if args.owner.as_ref().is_some_and(|o| !o.eq_ignore_ascii_case(owner)) {
        return None;
    }
    let scope = ScopeDown { repository_names: vec![name.to_string()], permissions, ..ScopeDown::default() };
    Some((Target::Repository(format!("{owner}/{name}")), scope))
}

/// The ledger's line for `token`, answered to `request`: the URL git asked for, `https://HOST/PATH`,
/// and the token's SHA-256 in hex, if that URL is plain: the GitHub host (letters, digits, `.`, `-`,
/// a port) and a path of letters, digits, `.`, `_`, `~`, `-` and `/`. git reads it back from `url=`
/// as the same protocol, host and path; nothing in it can be another line. A request without a
/// path (git's `useHttpPath` unset) is not recorded: from a URL without one, git's cache gives back
/// the first of its tokens for the host, whichever it is.
fn ledger_line(request: &BTreeMap<String, String>, host: &str, token: &str) -> Option<String> {
    let field = |name: &str| request.get(name).map(String::as_str);
    let asked_host = field("host").filter(|h| h.eq_ignore_ascii_case(host))?;
    let (name, port) = match asked_host.split_once(':') {
        Some((name, port)) if !port.is_empty() => (name, port),
        Some(_) => return None,
        None => (asked_host, ""),
    };
    let plain_host = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && port.chars().all(|c| c.is_ascii_digit());
    let path = field("path")?;
    let plain_path = !path.is_empty() && path.chars().all(|c| c.is_ascii_alphanumeric() || "._~-/".contains(c));
    if field("protocol") != Some("https") || !plain_host || !plain_path {
        return None;
    }
    let sha256 = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()));
    Some(format!("https://{asked_host}/{path} {sha256}"))
}

/// Appends `line` to the ledger (made, and its directory if need be, for its owner alone: the
/// directory may be the one git's credential-cache keeps its socket in, which must be). A ledger
/// that is not a regular file is an error (a warning for git, which has its answer already).
fn append(ledger: &Path, line: &str) -> std::io::Result<()> {
    if let Some(dir) = ledger.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use rustix::fs::OFlags;
        use std::os::unix::fs::OpenOptionsExt;
        // Not through a link, nor waiting on a FIFO someone left in its place: git waits for us.
        options.mode(0o600).custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32);
    }
    let mut file = options.open(ledger)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    file.write_all(format!("{line}\n").as_bytes())
}

/// Unix seconds of an RFC 3339 time.
fn unix_seconds(time: &str) -> Option<i64> {
    aws_smithy_types::DateTime::from_str(time, aws_smithy_types::date_time::Format::DateTime).ok().map(|t| t.secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(owner: Option<&str>, permissions: &[(&str, &str)]) -> GitCredentialArgs {
        GitCredentialArgs {
            operation: "get".into(),
            app_id: 1,
            owner: owner.map(str::to_string),
            permissions: permissions.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            github_api_url: "https://api.github.com".into(),
            ledger: None,
        }
    }

    fn request(text: &str) -> BTreeMap<String, String> {
        read_request(text.as_bytes()).unwrap_or_default()
    }

    #[test]
    fn the_request_ends_at_a_blank_line_and_keeps_the_last_of_repeated_keys_as_git_does() {
        let r = request("protocol=https\nhost=github.com\nwwwauth[]=a\nwwwauth[]=b\n\npath=ignored\n");
        assert_eq!(r.get("host").map(String::as_str), Some("github.com"));
        assert_eq!(r.get("wwwauth[]").map(String::as_str), Some("b"));
        assert!(!r.contains_key("path"));
    }

    #[test]
    fn the_git_host_is_github_com_or_the_api_host() {
        assert_eq!(github_host("https://api.github.com").ok().as_deref(), Some("github.com"));
        assert_eq!(github_host("https://GHES.example.com/api/v3").ok().as_deref(), Some("ghes.example.com"));
        assert_eq!(github_host("https://api.octo-corp.ghe.com").ok().as_deref(), Some("octo-corp.ghe.com"));
        assert_eq!(github_host("https://api.example.com/api/v3").ok().as_deref(), Some("api.example.com"));
        assert_eq!(github_host("https://ghes.example.com:8443/api/v3").ok().as_deref(), Some("ghes.example.com:8443"));
        assert!(github_host("not a url").is_err());
    }

    #[test]
    fn a_repository_path_gives_a_token_for_that_repository_only() {
        let r = request("protocol=https\nhost=github.com\npath=octo-org/hello-world.git\n");
        let (target, scope) = target_of(&r, "github.com", &args(None, &[])).unwrap_or_else(|| panic!("no target"));
        assert_eq!(target, Target::Repository("octo-org/hello-world".into()));
        assert_eq!(scope.repository_names, ["hello-world"]);
        assert_eq!(scope.permissions, BTreeMap::from([("contents".into(), "read".into())]));
        let (_, scope) = target_of(&r, "github.com", &args(None, &[("contents", "write"), ("issues", "read")]))
            .unwrap_or_else(|| panic!("no target"));
        assert_eq!(scope.permissions.len(), 2);
    }

    #[test]
    fn requests_that_are_not_ours_get_no_answer() {
        let none = |text: &str, owner: Option<&str>| target_of(&request(text), "github.com", &args(owner, &[]));
        assert!(none("protocol=https\nhost=gitlab.com\npath=a/b\n", None).is_none());
        assert!(none("protocol=http\nhost=github.com\npath=a/b\n", None).is_none());
        assert!(none("protocol=https\nhost=github.com\npath=a\n", None).is_none());
        assert!(none("protocol=https\nhost=github.com\npath=a/b/c\n", None).is_none());
        assert!(none("protocol=https\nhost=github.com\npath=other/b\n", Some("octo-org")).is_none());
        assert!(none("protocol=https\nhost=github.com\n", None).is_none());
        let owner = none("protocol=https\nhost=github.com\n", Some("octo-org")).map(|(t, _)| t);
        assert_eq!(owner, Some(Target::Owner("octo-org".into())));
    }

    #[test]
    fn the_ledger_line_is_a_plain_url_and_the_tokens_hash() {
        let line = |text: &str, host: &str| ledger_line(&request(text), host, "ghs_x");
        let hash = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"ghs_x"));
        assert_eq!(hash.len(), 64);
        let asked = "protocol=https\nhost=github.com\npath=octo-org/hello-world.git\n";
        assert_eq!(line(asked, "github.com"), Some(format!("https://github.com/octo-org/hello-world.git {hash}")));
        assert!(line("protocol=https\nhost=github.com\n", "github.com").is_none(), "no path");
        assert!(line(&asked.replace("https", "http"), "github.com").is_none());
        for path in ["a/b%0a", "a/b c", "a/b;x", "", "a/b?x", "a/b@c"] {
            let text = format!("protocol=https\nhost=github.com\npath={path}\n");
            assert!(line(&text, "github.com").is_none(), "{path:?}");
        }
        let ghes = |host: &str| line(&asked.replace("github.com", host), host);
        assert!(
            ghes("ghes.example.com:8443").is_some_and(|l| l.starts_with("https://ghes.example.com:8443/octo-org/"))
        );
        for host in ["gh_es.example.com", "ghes~x", "ghes:", "ghes:x", ":8443", "a:1:2"] {
            assert!(ghes(host).is_none(), "{host:?}");
        }
    }

    #[test]
    fn the_expiry_is_read_as_unix_seconds() {
        assert_eq!(unix_seconds("2026-11-24T14:53:07Z"), Some(1_795_531_987));
        assert_eq!(unix_seconds("tomorrow"), None);
    }
}
