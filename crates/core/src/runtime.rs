//! What every function builds once per cold start, and serving a handler behind a Function URL.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use aws_config::SdkConfig;
use lambda_http::{Body, Request, Response, service_fn};

use crate::api::Transport;
use crate::app_jwt::AppJwts;
use crate::clock::SystemClock;
use crate::config::{Config, load_aws_config};
use crate::error::Error;
use crate::github::{GitHubClient, RetryPolicy, Timeouts};
use crate::installations::DynamoInstallationStore;
use crate::signer::KmsSigner;
use crate::store::DynamoAppStore;

/// App JWTs as the functions use them.
pub type ProdJwts = AppJwts<KmsSigner, DynamoAppStore, SystemClock>;

/// Configuration and SDK clients, built once per cold start.
pub struct ColdStart {
    pub config: Config,
    pub aws: SdkConfig,
    pub kms: aws_sdk_kms::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl ColdStart {
    /// Initialises logging (JSON per `AWS_LAMBDA_LOG_FORMAT`), reads the environment, and
    /// builds the SDK clients.
    pub async fn init() -> Result<Self, Error> {
        lambda_http::tracing::init_default_subscriber();
        let config = Config::from_env()?;
        let aws = load_aws_config().await;
        Ok(ColdStart {
            kms: aws_sdk_kms::Client::new(&aws),
            dynamodb: aws_sdk_dynamodb::Client::new(&aws),
            config,
            aws,
        })
    }

    pub fn transport(&self) -> Transport {
        Transport { require_iam_caller: self.config.require_iam_caller }
    }

    pub fn app_store(&self) -> DynamoAppStore {
        DynamoAppStore::new(self.dynamodb.clone(), &self.config.app_table)
    }

    pub fn app_jwts(&self) -> ProdJwts {
        AppJwts::new(KmsSigner::new(self.kms.clone()), self.app_store(), SystemClock)
    }

    pub fn installation_store(&self) -> Result<DynamoInstallationStore, Error> {
        let table = self
            .config
            .installation_table
            .as_deref()
            .ok_or(Error::Misconfigured("INSTALLATION_TABLE_NAME is not set"))?;
        Ok(DynamoInstallationStore::new(self.dynamodb.clone(), table))
    }

    pub fn github(&self) -> Result<GitHubClient, Error> {
        GitHubClient::new(&self.config.github_api_url, Timeouts::default(), RetryPolicy::default())
    }
}

/// Serves `handle` behind the Function URL until the runtime stops the process.
pub async fn serve<H, F, Fut>(handler: H, handle: F) -> Result<(), lambda_http::Error>
where
    H: Send + std::marker::Sync + 'static,
    F: Fn(Arc<H>, Request) -> Fut + Send + std::marker::Sync + Copy + 'static,
    Fut: Future<Output = Response<Body>> + Send,
{
    let handler = Arc::new(handler);
    lambda_http::run(service_fn(move |req: Request| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handle(handler, req).await) }
    }))
    .await
}
