//! The app-token handler in a warm process: a cache hit (parse the Function URL event, check,
//! reuse the JWT, audit line, respond) and a cache miss (plus DynamoDB GetItem and KMS Sign, here
//! against the moto server on loopback). Logs are formatted as JSON into a sink, as in Lambda.

use appcreds_tests::Stack;
use appcreds_tests::lambda::UrlRequest;
use criterion::Criterion;
use serde_json::json;
use std::cell::OnceCell;
use std::time::Duration;

/// The app-token benchmarks; the stack is set up when the first of them is chosen.
pub fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let setup = OnceCell::new();
    let ready = || {
        setup.get_or_init(|| {
            let (stack, handler) = rt.block_on(async {
                let stack = Stack::start().await;
                stack.add_app(1).await;
                let handler = stack.app_token_handler();
                (stack, handler)
            });
            let logs = appcreds_tests::logs_to_sink();
            let event = UrlRequest::post_json("/tokens/app", &json!({"appId": 1})).event_json().to_string();
            rt.block_on(appcreds_tests::expect_ok(&handler, &event));
            (stack, handler, event, logs)
        })
    };

    let mut group = c.benchmark_group("app-token");
    group.bench_function("cache hit", |b| {
        let (_, handler, event, _) = ready();
        b.to_async(&rt).iter(|| appcreds_tests::expect_ok(handler, event))
    });
    group.sample_size(30).measurement_time(Duration::from_secs(10));
    group.bench_function("cache miss (GetItem + Sign on moto)", |b| {
        let (_, handler, event, _) = ready();
        b.to_async(&rt).iter(|| async {
            handler.op().jwts().invalidate(1).await;
            appcreds_tests::expect_ok(handler, event).await
        })
    });
    group.finish();
}
