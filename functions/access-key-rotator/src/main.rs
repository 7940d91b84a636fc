//! access-key-rotator: on an EventBridge schedule (and on `appcreds rotation run`), rotate IAM
//! users' access keys into GitHub Actions secrets with the App's own installation tokens.

// The job's future is deep (the rotator, the GitHub client, reqwest): proving it `Send` in a
// release build goes beyond the default limit of 128.
#![recursion_limit = "256"]

use std::sync::Arc;

use appcreds_core::Error;
use appcreds_core::aws::cloudwatch::CloudWatchSink;
use appcreds_core::aws::iam::IamAccessKeys;
use appcreds_core::aws::kms::KmsVault;
use appcreds_core::aws::rotation_table::DynamoRotationStore;
use appcreds_core::jobs::key_rotation::{NAMESPACE, Rotator, RotatorPorts, RotatorSettings};
use appcreds_core::runtime::{ColdStart, serve_events};
use lambda_http::lambda_runtime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let init = ColdStart::init().await?;
    let config = &init.config;
    let table = config.rotation_table.clone().ok_or(Error::Misconfigured("ROTATION_TABLE_NAME is not set"))?;
    let key = config.rotation_kms_key.clone().ok_or(Error::Misconfigured("ROTATION_KMS_KEY_ID is not set"))?;
    let mut services = init.require_installation_table()?.services_with_github()?;
    services.metrics = Arc::new(CloudWatchSink::in_namespace(aws_sdk_cloudwatch::Client::new(&init.aws), NAMESPACE));
    let ports = RotatorPorts {
        keys: Arc::new(IamAccessKeys::new(&init.aws)),
        targets: Arc::new(DynamoRotationStore::new(aws_sdk_dynamodb::Client::new(&init.aws), table)),
        vault: Arc::new(KmsVault::new(aws_sdk_kms::Client::new(&init.aws), key)),
    };
    let settings = RotatorSettings { allowed_path: config.rotation_iam_path.clone(), ..RotatorSettings::default() };
    let rotator = Arc::new(Rotator::new(&services, ports, settings));
    let settling = rotator.clone();
    serve_events(
        move |event| {
            let rotator = rotator.clone();
            async move { rotator.handle(event).await }
        },
        move |by| {
            let rotator = settling.clone();
            async move { rotator.settle_claims(by).await }
        },
    )
    .await
}
