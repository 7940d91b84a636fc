//! app-token: `POST /tokens/app` → a GitHub App JWT signed by KMS.

use std::convert::Infallible;
use std::sync::Arc;

use appcreds_core::api::Transport;
use appcreds_core::app_jwt::AppJwts;
use appcreds_core::app_token::AppTokenHandler;
use appcreds_core::clock::SystemClock;
use appcreds_core::config::{Config, load_aws_config};
use appcreds_core::signer::KmsSigner;
use appcreds_core::store::DynamoAppStore;
use lambda_http::{Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let aws = load_aws_config().await;
    let jwts = AppJwts::new(
        KmsSigner::new(aws_sdk_kms::Client::new(&aws)),
        DynamoAppStore::new(aws_sdk_dynamodb::Client::new(&aws), &config.app_table),
        SystemClock,
    );
    let handler = Arc::new(AppTokenHandler::new(jwts, Transport { require_iam_caller: config.require_iam_caller }));
    lambda_http::run(service_fn(move |req: Request| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler.handle(req).await) }
    }))
    .await
}
