#![allow(clippy::unwrap_used)]
//! A real `git` asks `appcreds git-credential` for credentials, alone and behind git's own
//! `credential-cache`; and `appcreds exec` runs a command with a token. A loopback Function URL
//! mints each token at the GitHub double for the target and scope the CLI asked for, and records
//! the requests; the double issues short-lived tokens where a test needs to see one expire.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appcreds_core::domain::clock::rfc3339;
use appcreds_testkit::github::{Fault, FaultKind, GitHubDouble, Installation};
use appcreds_testkit::unique;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

const APP: i64 = 1501;
/// The repository the loopback function refuses, as an access rule would.
const REFUSED: &str = "octo-org/secret";

/// The GitHub double, a Function URL in front of it, what that was asked, and a directory that
/// is every process's HOME and TMPDIR.
struct Setup {
    github: Arc<GitHubDouble>,
    url: String,
    asked: Arc<Mutex<Vec<Value>>>,
    dir: PathBuf,
}

impl Setup {
    async fn start() -> Setup {
        let github = Arc::new(GitHubDouble::start().await.unwrap());
        github.install(Installation::org(APP, 71, "octo-org", &[(7101, "hello-world"), (7102, "docs")]));
        let asked: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (double, recorded) = (github.clone(), asked.clone());
        let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let (double, recorded) = (double.clone(), recorded.clone());
            async move {
                let body: Value = serde_json::from_slice(&body).unwrap_or_default();
                recorded.lock().unwrap().push(body.clone());
                mint(&double, &body)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let dir = std::env::temp_dir().join(unique("appcreds-git"));
        std::fs::create_dir_all(dir.join("home")).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        Setup { github, url, asked, dir }
    }

    /// `program args` with test AWS credentials, the Function URL, and HOME and TMPDIR in the
    /// test's directory.
    fn command(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(&self.dir)
            .env_remove("GITHUB_ACTIONS")
            .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
            .env_remove("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
            .env_remove("APPCREDS_STACK")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("GIT_ASKPASS")
            .env_remove("SSH_ASKPASS")
            .env_remove("GITHUB_API_URL")
            .env("HOME", self.dir.join("home"))
            .env("TMPDIR", self.dir.join("tmp"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("APPCREDS_INSTALLATION_TOKEN_URL", &self.url)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// [`Self::command`] run to its end with `input` on standard input. On a blocking thread, so
    /// that the test's runtime keeps serving the Function URL meanwhile.
    async fn run(&self, program: &str, args: &[&str], input: &str, env: &[(&str, &str)]) -> Output {
        appcreds_testkit::output_with_input(self.command(program, args, env), input).await
    }

    /// `git -c … credential OPERATION` with `helpers` in this order (git's own list reset first)
    /// and credential.useHttpPath.
    async fn git_credential(&self, helpers: &[String], operation: &str, input: &str) -> Output {
        let mut args = vec!["-c".to_string(), "credential.helper=".into()];
        for helper in helpers {
            args.extend(["-c".to_string(), format!("credential.helper={helper}")]);
        }
        args.extend(["-c".into(), "credential.useHttpPath=true".into(), "credential".into(), operation.into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run("git", &args, input, &[]).await
    }

    /// Every regular file under the test's directory that holds `token`.
    fn files_holding(&self, token: &str) -> Vec<PathBuf> {
        fn walk(dir: &Path, token: &str, found: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                let kind = entry.file_type().unwrap();
                if kind.is_dir() {
                    walk(&path, token, found);
                } else if kind.is_file()
                    && std::fs::read(&path).unwrap().windows(token.len()).any(|w| w == token.as_bytes())
                {
                    found.push(path);
                }
            }
        }
        let mut found = Vec::new();
        walk(&self.dir, token, &mut found);
        found
    }
}

/// The loopback installation-token function: refuses [`REFUSED`]; otherwise mints at the double
/// for the owner's installation, with exactly the repositories and permissions asked for.
fn mint(github: &GitHubDouble, body: &Value) -> axum::response::Response {
    let (owner, repository) = match (body["repository"].as_str(), body["owner"].as_str()) {
        (Some(r), _) => (r.split('/').next().unwrap_or_default(), Some(r)),
        (None, Some(o)) => (o, None),
        _ => return (StatusCode::BAD_REQUEST, "no target").into_response(),
    };
    if repository == Some(REFUSED) {
        let answer = json!({"message": format!("no access rule allows repository {REFUSED}")});
        let mut resp = (StatusCode::FORBIDDEN, axum::Json(answer)).into_response();
        resp.headers_mut().insert("x-amzn-errortype", "AccessDeniedException".parse().unwrap());
        return resp;
    }
    assert_eq!(owner, "octo-org");
    let scope = &body["scopeDown"];
    let permissions: Vec<(&str, &str)> = scope["permissions"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()))
        .collect();
    let names: Option<Vec<&str>> =
        scope["repositoryNames"].as_array().map(|n| n.iter().filter_map(Value::as_str).collect());
    let token = github.issue_scoped_token_for_test(71, &permissions, names.as_deref());
    let expires = rfc3339(github.issued(&token).unwrap().expires_at);
    axum::Json(json!({
        "installationToken": token, "nodeId": "O_kgDOocto-org", "appId": APP, "installationId": 71,
        "expirationTime": expires, "requestedScopeDown": scope, "actualScopeDown": scope
    }))
    .into_response()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `key=value` lines of git's answer.
fn fields(out: &Output) -> BTreeMap<String, String> {
    text(&out.stdout).lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The helper as git runs it: `!'<appcreds>' git-credential …`.
fn helper(flags: &str) -> String {
    format!("!'{}' git-credential --app-id {APP} {flags}", env!("CARGO_BIN_EXE_appcreds"))
}

fn request(host: &str, path: Option<&str>) -> String {
    let path = path.map(|p| format!("path={p}\n")).unwrap_or_default();
    format!("protocol=https\nhost={host}\n{path}\n")
}

#[tokio::test]
async fn git_fills_a_token_for_exactly_the_repository_it_asks_about_with_its_expiry() {
    let s = Setup::start().await;
    let helpers = [helper("--permission contents=write")];
    let mut tokens = Vec::new();
    for name in ["hello-world", "docs"] {
        let out =
            s.git_credential(&helpers, "fill", &request("github.com", Some(&format!("octo-org/{name}.git")))).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        let answer = fields(&out);
        assert_eq!(answer["username"], "x-access-token");
        assert_eq!(answer["path"], format!("octo-org/{name}.git"));
        let issued = s.github.issued(&answer["password"]).unwrap_or_else(|| panic!("not the double's: {answer:?}"));
        assert_eq!(issued.installation_id, 71);
        assert_eq!(issued.repositories, Some(vec![name.to_string()]), "exactly the repository git asked about");
        assert_eq!(issued.permissions, BTreeMap::from([("contents".into(), "write".into())]));
        assert_eq!(answer["password_expiry_utc"], issued.expires_at.to_string());
        assert!((issued.expires_at - unix_now() - 3600).abs() < 60, "GitHub's hour: {}", issued.expires_at);
        assert!(!text(&out.stderr).contains(&answer["password"]));
        tokens.push(answer["password"].clone());
    }
    assert_ne!(tokens[0], tokens[1]);
    let asked = s.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[0]["appId"], APP);
    assert_eq!(asked[0]["repository"], "octo-org/hello-world");
    assert_eq!(
        asked[0]["scopeDown"],
        json!({"repositoryNames": ["hello-world"], "permissions": {"contents": "write"}})
    );

    // Without a flag, contents: read; with APPCREDS_GIT_PERMISSIONS, those.
    let input = request("github.com", Some("octo-org/docs"));
    let out = s.run(env!("CARGO_BIN_EXE_appcreds"), &["git-credential", "--app-id", "1501", "get"], &input, &[]).await;
    let issued = s.github.issued(&fields(&out)["password"]).unwrap();
    assert_eq!(issued.permissions, BTreeMap::from([("contents".into(), "read".into())]));
    let env = [("APPCREDS_GIT_PERMISSIONS", "contents=write,pull_requests=read"), ("APPCREDS_APP_ID", "1501")];
    let out = s.run(env!("CARGO_BIN_EXE_appcreds"), &["git-credential", "get"], &input, &env).await;
    let issued = s.github.issued(&fields(&out)["password"]).unwrap();
    let want = BTreeMap::from([("contents".into(), "write".into()), ("pull_requests".into(), "read".into())]);
    assert_eq!(issued.permissions, want);
}

/// git's credential-cache in front: a second fill is the cached token while it is valid; once it
/// has expired git drops it, and the helper mints a new one.
#[tokio::test]
async fn a_cache_in_front_serves_the_token_until_it_expires_then_a_new_one_is_minted() {
    let s = Setup::start().await;
    s.github.set_token_lifetime(Duration::from_secs(5));
    let socket = s.dir.join("cache").join("socket");
    let cache = format!("cache --socket='{}' --timeout=300", socket.display());
    let helpers = [cache, helper("")];
    let input = request("github.com", Some("octo-org/hello-world.git"));

    let first = s.git_credential(&helpers, "fill", &input).await;
    assert!(first.status.success(), "{}", text(&first.stderr));
    let token = fields(&first)["password"].clone();
    let expiry: i64 = fields(&first)["password_expiry_utc"].parse().unwrap();
    assert_eq!(expiry, s.github.issued(&token).unwrap().expires_at);
    // What git does after a fetch that worked: every helper is told to store it.
    let approved = s.git_credential(&helpers, "approve", &text(&first.stdout)).await;
    assert!(approved.status.success(), "{}", text(&approved.stderr));

    let second = s.git_credential(&helpers, "fill", &input).await;
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(unix_now() < expiry, "too slow to see the cache while the token is valid");
    assert_eq!(fields(&second)["password"], token, "served from the cache");
    assert_eq!(s.asked.lock().unwrap().len(), 1, "no second mint");

    tokio::time::sleep(Duration::from_secs((expiry - unix_now() + 1).max(0) as u64)).await;
    let third = s.git_credential(&helpers, "fill", &input).await;
    assert!(third.status.success(), "{}", text(&third.stderr));
    let renewed = fields(&third)["password"].clone();
    assert_ne!(renewed, token, "the expired token is never handed out");
    assert!(fields(&third)["password_expiry_utc"].parse::<i64>().unwrap() > unix_now());
    assert_eq!(s.github.issued(&renewed).unwrap().repositories, Some(vec!["hello-world".to_string()]));
    assert_eq!(s.asked.lock().unwrap().len(), 2);

    let _ = s.run("git", &["credential-cache", &format!("--socket={}", socket.display()), "exit"], "", &[]).await;
    assert!(s.files_holding(&token).is_empty() && s.files_holding(&renewed).is_empty(), "no token on disk");
}

/// With `--ledger`, each token answered is recorded as the URL git asked for and the token's
/// SHA-256, never the token; from that URL git's credential-cache gives the token back once git has
/// stored it (what the Action's post step asks the cache, to revoke what is the helper's).
#[tokio::test]
async fn the_ledger_holds_the_url_and_hash_the_cache_gives_the_token_back_for() {
    let s = Setup::start().await;
    let socket = s.dir.join("cache").join("socket");
    let ledger = s.dir.join("cache").join("ledger");
    let cache = format!("cache --socket='{}' --timeout=300", socket.display());
    let helpers = [cache, helper(&format!("--ledger '{}'", ledger.display()))];
    let first = s.git_credential(&helpers, "fill", &request("github.com", Some("octo-org/hello-world.git"))).await;
    assert!(first.status.success(), "{}", text(&first.stderr));
    let token = fields(&first)["password"].clone();
    let url = "https://github.com/octo-org/hello-world.git";
    let hash = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()));
    assert_eq!(std::fs::read_to_string(&ledger).unwrap(), format!("{url} {hash}\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&ledger).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // git stores it after a use: nothing more is recorded; without a path, nothing is.
    let approved = s.git_credential(&helpers, "approve", &text(&first.stdout)).await;
    assert!(approved.status.success(), "{}", text(&approved.stderr));
    let owner_helpers = [helpers[0].clone(), helper(&format!("--owner octo-org --ledger '{}'", ledger.display()))];
    let owner_wide = s
        .run(
            "git",
            &[
                "-c",
                "credential.helper=",
                "-c",
                &format!("credential.helper={}", owner_helpers[1]),
                "credential",
                "fill",
            ],
            &request("github.com", None),
            &[],
        )
        .await;
    assert!(owner_wide.status.success(), "{}", text(&owner_wide.stderr));
    assert_eq!(std::fs::read_to_string(&ledger).unwrap().lines().count(), 1);
    assert!(s.files_holding(&token).is_empty(), "no token on disk");

    let socket_arg = format!("--socket={}", socket.display());
    let back = s.run("git", &["credential-cache", &socket_arg, "get"], &format!("url={url}\n\n"), &[]).await;
    assert_eq!(fields(&back).get("password"), Some(&token), "{}", text(&back.stderr));
    let _ = s.run("git", &["credential-cache", &socket_arg, "exit"], "", &[]).await;

    // A FIFO left in the ledger's place: not waited on (git would wait with it); git has its token,
    // and the helper says it recorded nothing.
    #[cfg(unix)]
    {
        let fifo = s.dir.join("fifo");
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let helpers = [helper(&format!("--ledger '{}'", fifo.display()))];
        let out = s.git_credential(&helpers, "fill", &request("github.com", Some("octo-org/docs.git"))).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(fields(&out).contains_key("password"));
        assert!(text(&out.stderr).contains("warning: cannot record the token in"), "{}", text(&out.stderr));
    }
}

/// Other hosts and protocols, paths that name no repository, another owner than --owner: no answer
/// and exit 0, so that git asks its next helper; nothing is asked of appcreds.
#[tokio::test]
async fn requests_for_other_hosts_get_no_answer_and_git_goes_on() {
    let s = Setup::start().await;
    let appcreds = env!("CARGO_BIN_EXE_appcreds");
    let ghes = ["git-credential", "--app-id", "1501", "--github-api-url", "https://ghes.example.com/api/v3", "get"];
    let owned = ["git-credential", "--app-id", "1501", "--owner", "octo-org", "get"];
    let plain = ["git-credential", "--app-id", "1501", "get"];
    let cases: [(&[&str], String); 7] = [
        (&plain, request("gitlab.com", Some("octo-org/hello-world.git"))),
        (&plain, "protocol=http\nhost=github.com\npath=octo-org/hello-world.git\n\n".into()),
        (&plain, request("github.com", Some("octo-org"))),
        (&plain, request("github.com", None)),
        (&owned, request("github.com", Some("octocat/dotfiles"))),
        (&ghes, request("github.com", Some("octo-org/hello-world"))),
        (&plain, request("ghes.example.com", Some("octo-org/hello-world"))),
    ];
    for (args, input) in &cases {
        let out = s.run(appcreds, args, input, &[]).await;
        assert_eq!(out.status.code(), Some(0), "{args:?} {input:?}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "{args:?} {input:?}: {}", text(&out.stdout));
    }
    assert!(s.asked.lock().unwrap().is_empty(), "nothing was minted");

    // GHES: its own host is answered; --owner without a path: that owner's installation.
    let out = s.run(appcreds, &ghes, &request("ghes.example.com", Some("octo-org/hello-world")), &[]).await;
    assert!(s.github.issued(&fields(&out)["password"]).is_some(), "{}", text(&out.stderr));
    let out = s.run(appcreds, &owned, &request("github.com", None), &[]).await;
    let issued = s.github.issued(&fields(&out)["password"]).unwrap();
    assert_eq!(issued.repositories, None, "all of the owner's installation");
    assert_eq!(s.asked.lock().unwrap()[1]["owner"], "octo-org");

    // Through git: nobody answers for gitlab.com, and with prompts off git gives up.
    let out = s.git_credential(&[helper("")], "fill", &request("gitlab.com", Some("a/b.git"))).await;
    assert!(!out.status.success());
    assert!(!text(&out.stdout).contains("password="));
    assert_eq!(s.asked.lock().unwrap().len(), 2);
}

/// A refusal is an error on standard error and a non-zero exit; git gets no password.
#[tokio::test]
async fn a_refused_repository_is_an_error_and_no_answer() {
    let s = Setup::start().await;
    let input = request("github.com", Some(&format!("{REFUSED}.git")));
    let out = s.run(env!("CARGO_BIN_EXE_appcreds"), &["git-credential", "--app-id", "1501", "get"], &input, &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains(&format!("no access rule allows repository {REFUSED}")),
        "{}",
        text(&out.stderr)
    );
    let out = s.git_credential(&[helper("")], "fill", &input).await;
    assert!(!out.status.success());
    assert!(!text(&out.stdout).contains("password="));
    assert!(s.github.issued_tokens().is_empty());
}

/// `store` and `erase` read git's request and do nothing: no file appears anywhere.
#[tokio::test]
async fn store_and_erase_write_nothing() {
    let s = Setup::start().await;
    let token = s.github.issue_scoped_token_for_test(71, &[("contents", "read")], Some(&["hello-world"]));
    let expiry = s.github.issued(&token).unwrap().expires_at;
    let credential = format!(
        "protocol=https\nhost=github.com\npath=octo-org/hello-world.git\nusername=x-access-token\npassword={token}\npassword_expiry_utc={expiry}\n\n"
    );
    for operation in ["approve", "reject"] {
        let out = s.git_credential(&[helper("")], operation, &credential).await;
        assert!(out.status.success(), "{operation}: {}", text(&out.stderr));
    }
    for operation in ["store", "erase", "frobnicate"] {
        let args = ["git-credential", "--app-id", "1501", operation];
        let out = s.run(env!("CARGO_BIN_EXE_appcreds"), &args, &credential, &[]).await;
        assert_eq!(out.status.code(), Some(0), "{operation}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{operation}");
    }
    assert!(s.asked.lock().unwrap().is_empty());
    assert!(s.files_holding(&token).is_empty());
    for dir in ["home", "tmp"] {
        assert_eq!(std::fs::read_dir(s.dir.join(dir)).unwrap().count(), 0, "{dir} stays empty");
    }
}

/// `exec`'s options for a token for octo-org/hello-world, revoked at the double.
fn exec_args<'a>(api: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["exec", "--app-id", "1501", "--repository", "octo-org/hello-world"];
    args.extend(["--repositories", "hello-world", "--github-api-url", api]);
    args.extend(more);
    args.push("--");
    args
}

/// `exec` hands the command the token in GH_TOKEN and GITHUB_TOKEN, prints it nowhere, exits
/// with the command's exit status (128 + the signal that ended it), and revokes the token once
/// the command has ended, whatever its end.
#[tokio::test]
async fn exec_runs_the_command_with_the_token_and_its_exit_status() {
    let s = Setup::start().await;
    let (appcreds, api) = (env!("CARGO_BIN_EXE_appcreds"), s.github.url());
    let script = r#"test -n "$GH_TOKEN" && test "$GH_TOKEN" = "$GITHUB_TOKEN" && printf %s "$GH_TOKEN" > seen; exit 7"#;
    let args: Vec<&str> = exec_args(&api, &[]).into_iter().chain(["sh", "-c", script]).collect();
    let out = s.run(appcreds, &args, "", &[]).await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let token = std::fs::read_to_string(s.dir.join("seen")).unwrap();
    let issued = s.github.issued(&token).unwrap_or_else(|| panic!("not the double's: {token}"));
    assert_eq!(issued.repositories, Some(vec!["hello-world".to_string()]));
    assert!(issued.revoked, "revoked once the command ended");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "nothing printed");

    // In GitHub Actions, only the line that tells the runner to mask it, on standard error: the
    // command's standard output stays its own (it may be captured where no mask applies).
    let args: Vec<&str> =
        exec_args(&api, &[]).into_iter().chain(["sh", "-c", "printf %s \"$GH_TOKEN\" > seen"]).collect();
    let out = s.run(appcreds, &args, "", &[("GITHUB_ACTIONS", "true")]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let token = std::fs::read_to_string(s.dir.join("seen")).unwrap();
    assert_eq!(text(&out.stderr), format!("::add-mask::{token}\n"));
    assert!(out.stdout.is_empty(), "nothing on the command's standard output");
    assert!(s.github.issued(&token).unwrap().revoked);

    // Ended by a signal: appcreds ends by it too, once the token is revoked.
    let script = r#"printf %s "$GH_TOKEN" > seen; kill -TERM $$"#;
    let args: Vec<&str> = exec_args(&api, &[]).into_iter().chain(["sh", "-c", script]).collect();
    let out = s.run(appcreds, &args, "", &[]).await;
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(15), "{:?} {}", out.status, text(&out.stderr));
    }
    assert!(s.github.issued(&std::fs::read_to_string(s.dir.join("seen")).unwrap()).unwrap().revoked);

    // A command that cannot be started: a usage error, and the token it was minted for revoked.
    let before = s.github.issued_tokens().len();
    let args: Vec<&str> = exec_args(&api, &[]).into_iter().chain(["/nonexistent/command"]).collect();
    let out = s.run(appcreds, &args, "", &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot run /nonexistent/command"), "{}", text(&out.stderr));
    let issued = s.github.issued_tokens();
    assert_eq!(issued.len(), before + 1);
    assert!(issued.iter().all(|t| t.revoked), "every token exec minted is revoked");

    let out = s.run(appcreds, &["exec", "--app-id", "1501", "--owner", "octo-org"], "", &[]).await;
    assert_eq!(out.status.code(), Some(2), "a command is required: {}", text(&out.stderr));
    assert_eq!(s.asked.lock().unwrap().len(), 4, "the usage error asked for nothing");
}

/// With `--keep-token` the token outlives the command; a revocation GitHub fails is a warning on
/// standard error, and the exit status is still the command's.
#[tokio::test]
async fn exec_keeps_the_token_when_asked_and_a_failed_revocation_is_only_a_warning() {
    let s = Setup::start().await;
    let (appcreds, api) = (env!("CARGO_BIN_EXE_appcreds"), s.github.url());
    let script = r#"printf %s "$GH_TOKEN" > seen; exit 3"#;
    let args: Vec<&str> = exec_args(&api, &["--keep-token"]).into_iter().chain(["sh", "-c", script]).collect();
    let out = s.run(appcreds, &args, "", &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let token = std::fs::read_to_string(s.dir.join("seen")).unwrap();
    assert!(!s.github.issued(&token).unwrap().revoked, "kept");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));

    s.github.inject(Fault::new("DELETE /installation/token", 1, FaultKind::Status(503)));
    let args: Vec<&str> = exec_args(&api, &[]).into_iter().chain(["sh", "-c", script]).collect();
    let out = s.run(appcreds, &args, "", &[]).await;
    assert_eq!(out.status.code(), Some(3), "the command's status: {}", text(&out.stderr));
    let token = std::fs::read_to_string(s.dir.join("seen")).unwrap();
    assert!(!s.github.issued(&token).unwrap().revoked);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("warning: the token was not revoked (") && stderr.contains("503"), "{stderr}");
    assert!(!stderr.contains(&token), "no token in the warning");

    // A token the command revoked itself: a note that GitHub did not take it (naming where).
    let script = r#"printf %s "$GH_TOKEN" > seen; appcreds revoke --token-env GH_TOKEN > /dev/null"#;
    let path = format!("{}:{}", Path::new(appcreds).parent().unwrap().display(), std::env::var("PATH").unwrap());
    let args: Vec<&str> = exec_args(&api, &[]).into_iter().chain(["sh", "-c", script]).collect();
    let out = s.run(appcreds, &args, "", &[("PATH", &path), ("GITHUB_API_URL", &api)]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(s.github.issued(&std::fs::read_to_string(s.dir.join("seen")).unwrap()).unwrap().revoked);
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with(&format!("appcreds: note: {api} does not accept the token")), "{stderr}");
}

/// `appcreds exec` started in a process group of its own with `signals` ignored (as `nohup`
/// ignores `SIGHUP`), running `script` once it has written `ready`: the process, and what to kill
/// if the test fails (the group: appcreds and the command).
#[cfg(unix)]
async fn exec_in_background(s: &Setup, api: &str, script: &str, ignored: &[&str]) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let appcreds = env!("CARGO_BIN_EXE_appcreds");
    // `trap '' SIG` in the shell that starts appcreds: ignored on entry, as nohup leaves it.
    let traps: String = ignored.iter().map(|sig| format!("trap '' {sig}; ")).collect();
    let inner: Vec<String> = exec_args(api, &[]).into_iter().map(|a| format!("'{a}'")).collect();
    let line = format!("{traps}exec '{appcreds}' {} sh -c '{script}'", inner.join(" "));
    let mut command = s.command("sh", &["-c", &line], &[]);
    command.process_group(0);
    let mut child = command.spawn().unwrap();
    let ready = s.dir.join("ready");
    if within_10s(|| ready.exists().then_some(())).await.is_some() {
        return child;
    }
    kill_group(&mut child);
    panic!("the command did not start");
}

/// What `check` gives, asked every 25 ms for at most 10 s.
#[cfg(unix)]
async fn within_10s<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
    for _ in 0..400 {
        if let Some(found) = check() {
            return Some(found);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

/// Kills `child`'s process group (appcreds and its command), and reaps `child`.
#[cfg(unix)]
fn kill_group(child: &mut std::process::Child) {
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
    let _ = child.wait();
}

#[cfg(unix)]
fn signal(child: &std::process::Child, name: &str) {
    assert!(Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap().success());
}

/// How `child` ended, within 10 s (else the test fails, and its group is killed).
#[cfg(unix)]
async fn ends(mut child: std::process::Child) -> std::process::ExitStatus {
    if let Some(status) = within_10s(|| child.try_wait().unwrap()).await {
        return status;
    }
    kill_group(&mut child);
    panic!("still running: the signal was not passed on");
}

/// A signal sent to appcreds while the command runs (a runner cancelling the job, `kill`) is
/// passed on: the command ends as it chooses, and then the token is revoked. A signal appcreds
/// was started ignoring (`nohup`: `SIGHUP`) stays ignored, by appcreds and by the command.
#[cfg(unix)]
#[tokio::test]
async fn exec_passes_a_signal_on_to_the_command_then_revokes() {
    let s = Setup::start().await;
    let api = s.github.url();
    // No quote in the script: it is quoted as one word above.
    let script = r#"trap "printf %s \$GH_TOKEN > seen; exit 9" TERM; : > ready; while :; do sleep 1; done"#;
    let child = exec_in_background(&s, &api, script, &[]).await;
    signal(&child, "TERM");
    let status = ends(child).await;
    assert_eq!(status.code(), Some(9), "the command's own end: {status:?}");
    let token = std::fs::read_to_string(s.dir.join("seen")).unwrap();
    assert!(s.github.issued(&token).unwrap().revoked);

    std::fs::remove_file(s.dir.join("ready")).unwrap();
    let child = exec_in_background(&s, &api, script, &["HUP"]).await;
    signal(&child, "HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.dir.join("ready").exists());
    signal(&child, "TERM");
    let status = ends(child).await;
    assert_eq!(status.code(), Some(9), "SIGHUP ignored, SIGTERM passed on: {status:?}");
}
