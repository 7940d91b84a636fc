//! rate-limit-scanner: on an EventBridge schedule, publish every installation's GitHub rate limits
//! to CloudWatch (namespace AppFrameworkGitHubAPICallMetrics).

use std::sync::Arc;

use appcreds_core::clock::SystemClock;
use appcreds_core::installation_token::InstallationTokens;
use appcreds_core::rate_limit::{CloudWatchSink, RateLimitScanner};
use appcreds_core::runtime::ColdStart;
use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let init = ColdStart::init().await?;
    let github = init.github()?; // one connection pool, shared by minting and /rate_limit
    let scanner = Arc::new(RateLimitScanner {
        tokens: InstallationTokens::new(Arc::new(init.app_jwts()), github.clone(), init.installation_store()?),
        github,
        store: init.installation_store()?,
        sink: CloudWatchSink::new(aws_sdk_cloudwatch::Client::new(&init.aws)),
        clock: SystemClock,
    });
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<Value>| {
        let scanner = scanner.clone();
        async move {
            let report = scanner.run().await?;
            if report.installations > 0 && report.failed.len() == report.installations {
                return Err(lambda_runtime::Error::from("no installation could be scanned"));
            }
            Ok::<_, lambda_runtime::Error>(json!({
                "installations": report.installations,
                "failed": report.failed.len(),
                "metricsSent": report.metrics_sent,
                "githubCalls": report.github_calls,
            }))
        }
    }))
    .await
}
