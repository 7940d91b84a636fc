#![allow(clippy::unwrap_used)]
//! The functions' JSON log format (`runtime::json_logs`), as CloudWatch receives it: one object
//! per event, fields at the top level, the target named (so the audit lines are found by
//! `target = "appcreds::audit"`), no span list, and never a token. The test sets the functions'
//! subscriber on its own thread, after the process's global one (see
//! [`Logs::install_global_subscriber`]), so it sees every event its thread logs.

use std::io::Write;
use std::sync::{Arc, Mutex};

use appcreds_core::runtime::{json_logs, log_filter};
use appcreds_tests::lambda::UrlRequest;
use appcreds_tests::{Logs, Stack, send};
use serde_json::{Value, json};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_audit_line_is_one_compact_object_with_its_target_and_no_token() {
    const APP: i64 = 1200;
    let stack = Stack::with_installations(APP).await;
    let handler = stack.installation_token_handler();
    let captured = Captured::default();
    let writer = captured.clone();
    Logs::install_global_subscriber();
    // The functions' subscriber as init_logging makes it at LogLevel=INFO.
    let subscriber = json_logs(move || writer.clone()).finish().with(log_filter(LevelFilter::INFO, ""));
    let _guard = tracing::subscriber::set_default(subscriber);
    let body = json!({"appId": APP, "owner": "octo-org"});
    let reply = send(|r| handler.handle(r), UrlRequest::post_json("/tokens/installation", &body)).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let token = reply.body["installationToken"].as_str().unwrap().to_string();

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains(&token), "the token never reaches the log");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let audit: Vec<&Value> = lines.iter().filter(|l| l["target"] == "appcreds::audit").collect();
    assert_eq!(audit.len(), 1, "{text}");
    let line = audit[0];
    assert_eq!((line["level"].as_str(), line["message"].as_str()), (Some("INFO"), Some("credential issued")));
    assert_eq!(line["kind"], "installation-token");
    assert_eq!(line["token_sha256"].as_str().map(str::len), Some(64));
    // GitHub's audit-log `hashed_token` (base64 of the SHA-256), for a Logs Insights query to match.
    use base64::Engine;
    use rsa::sha2::Digest;
    let sha256 = rsa::sha2::Sha256::digest(token.as_bytes());
    assert_eq!(line["hashed_token"], base64::engine::general_purpose::STANDARD.encode(sha256));
    assert!(line.get("fields").is_none() && line.get("spans").is_none(), "fields flattened, no span list: {line}");
}
