//! rate-limit-scanner: on an EventBridge schedule, publish every installation's GitHub rate limits
//! to CloudWatch (namespace AppFrameworkGitHubAPICallMetrics).

use std::sync::Arc;

use appcreds_core::aws::cloudwatch::CloudWatchSink;
use appcreds_core::jobs::rate_limit::RateLimitScanner;
use appcreds_core::runtime::{ColdStart, serve_scheduled};
use lambda_http::lambda_runtime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let init = ColdStart::init().await?;
    let mut services = init.require_installation_table()?.services_with_github()?; // one GitHub connection pool
    services.metrics = Arc::new(CloudWatchSink::new(aws_sdk_cloudwatch::Client::new(&init.aws)));
    let mut scanner = RateLimitScanner::new(&services);
    if let Some(name) = &init.config.function_name {
        scanner = scanner.named(name);
    }
    let scanner = Arc::new(scanner);
    let settling = scanner.clone();
    serve_scheduled(
        move || {
            let scanner = scanner.clone();
            async move { scanner.scheduled().await }
        },
        move |by| {
            let scanner = settling.clone();
            async move { scanner.settle(by).await }
        },
    )
    .await
}
