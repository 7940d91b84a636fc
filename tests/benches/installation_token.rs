#![allow(clippy::unwrap_used, missing_docs)]
//! The installation-token handler in a warm process: a cache hit, and a miss (a new token from
//! the GitHub double on loopback; the App JWT and the resolution stay cached, as when a warm
//! function sees a token near its expiry).

use appcreds_tests::Stack;
use appcreds_tests::github::Installation;
use appcreds_tests::lambda::UrlRequest;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

fn installation_token(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (stack, handler) = rt.block_on(async {
        let stack = Stack::start().await;
        stack.add_app(1).await;
        stack.github.install(Installation::org(1, 11, "octo-org", &[(1, "hello-world")]));
        let handler = stack.installation_token_handler();
        (stack, handler)
    });
    let _logs = appcreds_tests::logs_to_sink();
    let hit = UrlRequest::post_json(
        "/tokens/installation",
        &json!({"appId": 1, "nodeId": "O_kgDOocto-org", "scopeDown": {"permissions": {"metadata": "read"}}}),
    )
    .event_json()
    .to_string();
    let call = |event: String| {
        let handler = &handler;
        async move { appcreds_tests::expect_ok(handler, &event).await }
    };
    rt.block_on(call(hit.clone()));
    let mut group = c.benchmark_group("installation-token");
    group.bench_function("cache hit", |b| b.to_async(&rt).iter(|| call(hit.clone())));
    // Each iteration asks for a scope not seen before: a token is minted at the double.
    let mut n = 0u64;
    group.bench_function("cache miss (mint at the GitHub double)", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let event = UrlRequest::post_json("/tokens/installation", &json!({"appId": 1, "nodeId": "O_kgDOocto-org", "scopeDown": {"repositoryIds": [1], "repositoryNames": [format!("r{n}")]}}))
                .event_json()
                .to_string();
            // The double refuses unknown repositories; register r{n} first so the mint succeeds.
            stack.github.install(Installation::org(1, 11, "octo-org", &[(1, "hello-world"), (n as i64 + 100, &format!("r{n}"))]));
            call(event)
        })
    });
    group.finish();
}

criterion_group!(benches, installation_token);
criterion_main!(benches);
