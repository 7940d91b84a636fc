//! IAM access keys and STS behind the [`AccessKeys`] port (the access-key rotator only; feature
//! `rotator`). A new key's secret is copied straight into a [`Secret`], and STS is called with it
//! through a client of its own that retries nothing (the rotator paces its own waiting).

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::StatusType;

use crate::domain::rotation::AccessKeyInfo;
use crate::domain::secret::Secret;
use crate::error::Error;
use crate::ports::{AccessKeys, IamUser, NewAccessKey};

/// IAM and STS on one SDK configuration.
#[derive(Debug, Clone)]
pub struct IamAccessKeys {
    iam: aws_sdk_iam::Client,
    sdk: SdkConfig,
}

impl IamAccessKeys {
    /// IAM from `sdk`; STS clients for new keys are built from it too (region, endpoint,
    /// timeouts), each with the key it checks as its only credentials.
    pub fn new(sdk: &SdkConfig) -> Self {
        Self { iam: aws_sdk_iam::Client::new(sdk), sdk: sdk.clone() }
    }
}

/// IAM's throttling is `ThrottlingException` (retry later); its quota on keys is named; the rest
/// is internal (the detail is logged, never a secret: no request here carries one).
fn iam_error<E>(context: &'static str, err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err.as_service_error().and_then(|e| e.code()) {
        Some("Throttling" | "ThrottlingException" | "RequestLimitExceeded") => {
            Error::Throttled { service: "IAM", retry_after_seconds: 5 }
        }
        _ => Error::internal(context, err),
    }
}

fn is_no_such_entity<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    err.as_service_error().and_then(|e| e.code()) == Some("NoSuchEntity")
}

#[async_trait]
impl AccessKeys for IamAccessKeys {
    async fn user(&self, user: &str) -> Result<Option<IamUser>, Error> {
        match self.iam.get_user().user_name(user).send().await {
            Ok(out) => Ok(out.user().map(|u| IamUser {
                name: u.user_name().to_string(),
                arn: u.arn().to_string(),
                path: u.path().to_string(),
            })),
            Err(e) if is_no_such_entity(&e) => Ok(None),
            // The role may read only users under the rotator's path.
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("AccessDenied") => {
                Err(Error::RotationRefused(format!(
                    "IAM refused to show user {user:?}: the rotator may manage only users under its IAM path \
                     (template parameter RotatedUsersPath)"
                )))
            }
            Err(e) => Err(iam_error("IAM GetUser", e)),
        }
    }

    async fn list(&self, user: &str) -> Result<Vec<AccessKeyInfo>, Error> {
        let out =
            self.iam.list_access_keys().user_name(user).send().await.map_err(|e| iam_error("IAM ListAccessKeys", e))?;
        Ok(out
            .access_key_metadata()
            .iter()
            .filter_map(|k| {
                Some(AccessKeyInfo {
                    key_id: k.access_key_id()?.to_string(),
                    active: k.status() == Some(&StatusType::Active),
                    created: k.create_date().map_or(0, |d| d.secs()),
                })
            })
            .collect())
    }

    async fn create(&self, user: &str) -> Result<NewAccessKey, Error> {
        // Never sent twice: a retry after a lost answer would make a second key nobody records.
        let once =
            aws_sdk_iam::config::Builder::default().retry_config(aws_sdk_iam::config::retry::RetryConfig::disabled());
        let out = self.iam.create_access_key().user_name(user).customize().config_override(once).send().await.map_err(
            |e| {
                if e.as_service_error().and_then(|s| s.code()) == Some("LimitExceeded") {
                    return Error::internal(
                        "IAM CreateAccessKey",
                        "the user already has two access keys (IAM's limit)",
                    );
                }
                iam_error("IAM CreateAccessKey", e)
            },
        )?;
        let key = out.access_key().ok_or_else(|| Error::internal("IAM CreateAccessKey", "no key in the answer"))?;
        Ok(NewAccessKey {
            key_id: key.access_key_id().to_string(),
            secret: Secret::new(key.secret_access_key()),
            created: key.create_date().map_or(0, |d| d.secs()),
        })
    }

    async fn set_active(&self, user: &str, key_id: &str, active: bool) -> Result<(), Error> {
        let status = if active { StatusType::Active } else { StatusType::Inactive };
        let updated = self.iam.update_access_key().user_name(user).access_key_id(key_id).status(status).send().await;
        match updated {
            Ok(_) => Ok(()),
            // Gone already: nothing left to (de)activate.
            Err(e) if is_no_such_entity(&e) => Ok(()),
            Err(e) => Err(iam_error("IAM UpdateAccessKey", e)),
        }
    }

    async fn delete(&self, user: &str, key_id: &str) -> Result<(), Error> {
        match self.iam.delete_access_key().user_name(user).access_key_id(key_id).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_no_such_entity(&e) => Ok(()),
            Err(e) => Err(iam_error("IAM DeleteAccessKey", e)),
        }
    }

    async fn identity(&self, key_id: &str, secret: &Secret) -> Result<Option<String>, Error> {
        let credentials =
            aws_sdk_sts::config::Credentials::new(key_id, secret.expose(), None, None, "appcreds-access-key-rotator");
        let config = aws_sdk_sts::config::Builder::from(&self.sdk)
            .credentials_provider(credentials)
            .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled())
            .build();
        match aws_sdk_sts::Client::from_conf(config).get_caller_identity().send().await {
            Ok(out) => Ok(out.arn().map(str::to_string)),
            // Not (yet) a key AWS accepts: IAM is eventually consistent.
            Err(e)
                if matches!(
                    e.as_service_error().and_then(|s| s.code()),
                    Some("InvalidClientTokenId" | "SignatureDoesNotMatch" | "AccessDenied")
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(iam_error("STS GetCallerIdentity", e)),
        }
    }
}
