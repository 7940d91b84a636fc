#![allow(clippy::unwrap_used)]
//! A cold start reads the system's root certificates once, for all its HTTPS clients: the AWS
//! SDK's, the GitHub client and the OIDC verifier's (`appcreds_core::tls`). A child process of
//! this test binary does a function's cold start and one call through each client, with
//! `SSL_CERT_FILE` a FIFO: each read of the store opens it, and this side counts the opens.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use appcreds_core::github::Auth;
use appcreds_core::runtime::ColdStart;
use appcreds_core::tokens::app_jwt::AppJwts;
use appcreds_tests::Stack;
use serde_json::json;

/// Set for the child: the test it runs does its work only then.
const CHILD: &str = "APPCREDS_TEST_ROOTS_CHILD";
const AUDIENCE: &str = "appcreds";
const APP: i64 = 870;
/// Linux's `O_NONBLOCK`: opening a FIFO does not wait for the other end.
const O_NONBLOCK: i32 = 0o4000;

#[tokio::test]
async fn a_cold_start_reads_the_root_certificates_once_for_every_client() {
    let stack = Stack::start().await;
    stack.add_app(APP).await;
    let dir = std::env::temp_dir().join(appcreds_tests::unique("roots"));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("roots.pem");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // Hands the roots to each reader that opens the FIFO, and counts them.
    let (bundle, stop) = (appcreds_core::tls::roots_pem().unwrap(), Arc::new(AtomicBool::new(false)));
    let writer = {
        let (fifo, stop) = (fifo.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            loop {
                let mut to_reader = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                if stop.load(Ordering::SeqCst) {
                    return reads;
                }
                reads += 1;
                let _ = to_reader.write_all(bundle);
                drop(to_reader);
                // Until that reader closes its end, a writer opening now would hand it a second copy.
                while std::fs::OpenOptions::new().write(true).custom_flags(O_NONBLOCK).open(&fifo).is_ok() {
                    if stop.load(Ordering::SeqCst) {
                        return reads;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        })
    };
    let claims = stack.github.oidc_claims("octo-org/hello-world", AUDIENCE, json!({}));
    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "tls_roots::child", "--include-ignored", "--nocapture"])
        .env(CHILD, stack.github.oidc_token(&claims))
        .env("SSL_CERT_FILE", &fifo)
        .env_remove("SSL_CERT_DIR")
        .env("AWS_ENDPOINT_URL", stack.sdk.endpoint_url().unwrap())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("APP_TABLE_NAME", &stack.app_table)
        .env("INSTALLATION_TABLE_NAME", &stack.installation_table)
        .env("ACCESS_TABLE_NAME", &stack.access_table)
        .env("GITHUB_API_URL", stack.github.url())
        .env("OIDC_ISSUER", stack.github.oidc_issuer())
        .env("OIDC_AUDIENCE", AUDIENCE)
        .output()
        .await
        .unwrap();
    // The writer waits for a reader: this side is the last one.
    stop.store(true, Ordering::SeqCst);
    let _last = std::fs::OpenOptions::new().read(true).custom_flags(O_NONBLOCK).open(&fifo).unwrap();
    let reads = writer.join().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let out = String::from_utf8_lossy(&child.stdout);
    assert!(child.status.success() && out.contains("1 passed"), "{out}\n{}", String::from_utf8_lossy(&child.stderr));
    assert_eq!(reads, 1, "the system's root certificates were read {reads} times");
}

/// The child: a function's cold start (installation-token's services), then a call through the
/// SDK (the App row), the GitHub client and the OIDC verifier (a token, verified).
#[tokio::test]
#[ignore = "the child process of a_cold_start_reads_the_root_certificates_once_for_every_client"]
async fn child() {
    let Ok(token) = std::env::var(CHILD) else { return };
    let init = ColdStart::init().await.unwrap();
    let services = init.services_with_github().unwrap();
    // The App row and a KMS signature, through the SDK; the App itself, through the GitHub client.
    let jwt = AppJwts::new(&services).get(APP).await.unwrap();
    let auth = Auth::App { app_id: APP, jwt: &jwt.token };
    assert_eq!(
        services.github().unwrap().send(reqwest::Method::GET, "/app", auth, None).await.unwrap().body["id"],
        APP
    );
    assert_eq!(services.oidc.verify(&token).await.unwrap()["repository"], "octo-org/hello-world");
}
