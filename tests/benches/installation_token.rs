//! The installation-token handler in a warm process: every request mints a token of its own at
//! the GitHub double on loopback; the App JWT and the installation's resolution stay cached, so
//! no KMS or DynamoDB call is made.

use std::cell::OnceCell;

use appcreds_tests::Stack;
use appcreds_tests::github::Installation;
use appcreds_tests::lambda::UrlRequest;
use criterion::Criterion;
use serde_json::json;

/// The installation-token benchmark; the stack is set up when it is chosen.
pub fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let setup = OnceCell::new();
    let ready = || {
        setup.get_or_init(|| {
            let (stack, handler) = rt.block_on(async {
                let stack = Stack::start().await;
                stack.add_app(1).await;
                stack.github.install(Installation::org(1, 11, "octo-org", &[(1, "hello-world")]));
                let handler = stack.installation_token_handler();
                (stack, handler)
            });
            let logs = appcreds_tests::logs_to_sink();
            let event = UrlRequest::post_json(
                "/tokens/installation",
                &json!({"appId": 1, "nodeId": "O_kgDOocto-org", "scopeDown": {"permissions": {"metadata": "read"}}}),
            )
            .event_json()
            .to_string();
            rt.block_on(appcreds_tests::expect_ok(&handler, &event));
            (stack, handler, event, logs)
        })
    };
    let mut group = c.benchmark_group("installation-token");
    group.bench_function("warm request (one mint at the GitHub double on loopback)", |b| {
        let (_, handler, event, _) = ready();
        b.to_async(&rt).iter(|| appcreds_tests::expect_ok(handler, event))
    });
    group.finish();
}
