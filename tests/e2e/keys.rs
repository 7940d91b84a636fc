#![allow(clippy::unwrap_used)]
//! `appcreds key import / rotate / list` through the real KMS and DynamoDB SDK clients: every
//! call goes to the moto server, except the import steps moto lacks (`GetParametersForImport`,
//! `ImportKeyMaterial`, and signing with imported material), which `aws-smithy-mocks` answers on
//! the same client (see `appcreds_testkit::kms_import`). The functions' handlers then sign with
//! the imported keys, and the GitHub double checks their JWTs against the PEMs' public keys.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appcreds_cli::CliError;
use appcreds_cli::keys::{KeyManager, SigningRoles};
use appcreds_cli::keywrap::AppPrivateKey;
use appcreds_core::aws::app_table::DynamoAppStore;
use appcreds_core::domain::clock::{Clock, ManualClock, SystemClock};
use appcreds_core::error::KeyProblem;
use appcreds_core::http::Endpoint;
use appcreds_core::ops::app_token::AppToken;
use appcreds_core::ports::{AppRecord, AppStore};
use appcreds_core::tokens::app_jwt::AppJwts;
use appcreds_testkit::aws::CallCounter;
use appcreds_testkit::kms_import::{Caller, ImportFault, KmsImport};
use appcreds_tests::github::Installation;
use appcreds_tests::github::jwt::{public_key, verify_rs256};
use appcreds_tests::lambda::{Reply, UrlRequest};
use appcreds_tests::{Stack, send};
use aws_sdk_kms::types::{
    AlgorithmSpec, ExpirationModelType, KeySpec, KeyState, KeyUsageType, OriginType, WrappingKeySpec,
};
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{Value, json};

/// The grace period the tests rotate with.
const GRACE: Duration = Duration::from_secs(15 * 60);

const ROLES: [&str; 2] = [
    "arn:aws:iam::123456789012:role/appcreds-AppTokenFunctionRole-1A2B3C",
    "arn:aws:iam::123456789012:role/appcreds-InstallationTokenFunctionRole-4D5E6F",
];

/// A GitHub App key as GitHub hands it out, in memory.
struct Pem {
    key: AppPrivateKey,
    public_der: Vec<u8>,
    pkcs8_der: Vec<u8>,
}

fn pem(pkcs8: bool) -> Pem {
    let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let text = if pkcs8 {
        private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    } else {
        private.to_pkcs1_pem(LineEnding::LF).unwrap().to_string()
    };
    let public_der = private.to_public_key().to_public_key_der().unwrap().as_bytes().to_vec();
    let pkcs8_der = private.to_pkcs8_der().unwrap().as_bytes().to_vec();
    Pem { key: AppPrivateKey::from_pem(&text).unwrap(), public_der, pkcs8_der }
}

/// The test's world: the stack, the import emulation, the operator's key manager and KMS client.
struct World {
    stack: Stack,
    kms_import: KmsImport,
    operator: CallCounter,
    manager: KeyManager,
    roles: SigningRoles,
}

impl World {
    async fn start() -> World {
        let stack = Stack::start().await;
        let kms_import = KmsImport::new();
        let operator = CallCounter::default();
        let kms = kms_import.client(&stack.sdk, Caller::Operator, &operator);
        let manager = KeyManager::new(kms, DynamoAppStore::new(stack.ddb.clone(), &stack.app_table));
        let roles = SigningRoles::new(ROLES.iter().map(|r| r.to_string()).collect()).unwrap();
        World { stack, kms_import, operator, manager, roles }
    }

    /// A KMS client as a function has it (tag-conditioned `kms:Sign`).
    fn function_kms(&self) -> aws_sdk_kms::Client {
        self.kms_import.client(&self.stack.sdk, Caller::Function, &self.stack.counter)
    }

    async fn import(&self, app_id: i64, pem: &Pem) -> Result<String, CliError> {
        self.manager.import(app_id, &pem.key, &self.roles, &|_: &str| {}).await.map(|i| i.key_arn)
    }

    async fn app_row(&self, app_id: i64) -> Option<AppRecord> {
        DynamoAppStore::new(self.stack.ddb.clone(), &self.stack.app_table).get_app(app_id).await.unwrap()
    }

    async fn tags(&self, key: &str) -> BTreeMap<String, String> {
        let out = self.stack.kms.list_resource_tags().key_id(key).send().await.unwrap();
        out.tags().iter().map(|t| (t.tag_key().to_string(), t.tag_value().to_string())).collect()
    }

    /// Every key moto holds for `app_id` (by its AppId tag), with its Status tag. Every page: the
    /// server holds the keys of every test in the process.
    async fn keys_of(&self, app_id: i64) -> Vec<(String, String)> {
        let mut found = Vec::new();
        let pages: Vec<_> = self.stack.kms.list_keys().limit(1000).into_paginator().send().collect().await;
        for key in pages.into_iter().flat_map(|page| page.unwrap().keys.unwrap_or_default()) {
            let arn = key.key_arn().unwrap();
            let tags = self.tags(arn).await;
            if tags.get("AppId") == Some(&app_id.to_string()) {
                found.push((arn.to_string(), tags.get("Status").cloned().unwrap_or_default()));
            }
        }
        found
    }

    fn app_token_handler(&self, clock: ManualClock) -> Endpoint<AppToken> {
        appcreds_tests::endpoint(AppToken::new(&self.stack.services_on(self.function_kms(), clock)))
    }
}

async fn app_token(handler: &Endpoint<AppToken>, app_id: i64) -> Reply {
    send(|r| handler.handle(r), UrlRequest::post_json("/tokens/app", &json!({ "appId": app_id }))).await
}

fn jwt_of(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body["appToken"].as_str().unwrap().to_string()
}

fn signed_by(token: &str, pem: &Pem) -> bool {
    verify_rs256(&public_key(&pem.public_der).unwrap(), token).is_ok()
}

fn public_of(token: &str, candidates: &[&Pem]) -> Vec<bool> {
    candidates.iter().map(|p| signed_by(token, p)).collect()
}

#[tokio::test]
async fn pkcs1_and_pkcs8_pems_import_prove_and_register_the_app() {
    let world = World::start().await;
    for (app_id, pkcs8) in [(101, false), (102, true)] {
        let pem = pem(pkcs8);
        let steps = std::sync::Mutex::new(Vec::new());
        let imported = world
            .manager
            .import(app_id, &pem.key, &world.roles, &|s: &str| steps.lock().unwrap().push(s.to_string()))
            .await
            .unwrap();
        let arn = imported.key_arn.clone();

        // The App table names the key.
        assert_eq!(
            world.app_row(app_id).await,
            Some(AppRecord { app_id, kms_key_arn: Some(arn.clone()), previous_key: None, client_id: None })
        );

        // The key as the spec defines it, with its tags.
        let meta = world.stack.kms.describe_key().key_id(&arn).send().await.unwrap().key_metadata.unwrap();
        assert_eq!(meta.key_spec(), Some(&KeySpec::Rsa2048));
        assert_eq!(meta.key_usage(), Some(&KeyUsageType::SignVerify));
        assert_eq!(meta.origin(), Some(&OriginType::External));
        assert_eq!(meta.description(), Some(format!("GitHub App {app_id} private key (appcreds)").as_str()));
        let tags = world.tags(&arn).await;
        assert_eq!(tags["FrameworkForGitHubAppOnAwsManaged"], "true");
        assert_eq!(tags["Status"], "Active");
        assert_eq!(tags["AppId"], app_id.to_string());
        assert!(
            aws_smithy_types::DateTime::from_str(&tags["CreatedOn"], aws_smithy_types::date_time::Format::DateTime)
                .is_ok()
        );

        // The exact import parameters, and the material KMS received is the PEM's key as PKCS#8 DER.
        let key_id = appcreds_testkit::kms_import::key_id(&arn);
        let params = world.kms_import.parameter_requests();
        let params = params.iter().find(|p| p.key_id == key_id).unwrap();
        assert_eq!(params.wrapping_algorithm, Some(AlgorithmSpec::RsaAesKeyWrapSha256));
        assert_eq!(params.wrapping_key_spec, Some(WrappingKeySpec::Rsa4096));
        let imports = world.kms_import.import_requests();
        let import = imports.iter().find(|i| i.key_id == key_id).unwrap();
        assert!(import.token_matched);
        assert_eq!(import.expiration_model, Some(ExpirationModelType::KeyMaterialDoesNotExpire));
        assert_eq!(import.valid_to, None);
        assert_eq!(import.material.as_deref(), Some(pem.pkcs8_der.as_slice()), "byte for byte");

        assert_eq!(
            *steps.lock().unwrap(),
            [
                "reading the App table",
                "creating the KMS key",
                "getting KMS's wrapping key",
                "wrapping and importing the key",
                "checking that KMS signs with the App's key",
                "registering the App"
            ]
        );

        // A function signs with it, and GitHub accepts the JWT.
        world.stack.github.register_app(app_id, &pem.public_der).unwrap();
        let token = jwt_of(&app_token(&world.app_token_handler(ManualClock::new(SystemClock.now())), app_id).await);
        assert!(signed_by(&token, &pem));
        let resp = reqwest::Client::new()
            .get(format!("{}/app", world.stack.github.url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // The proof signed once per import; the operator sent the whole sequence through one client.
    let calls = world.operator.snapshot();
    for (op, n) in
        [("CreateKey", 2), ("GetParametersForImport", 2), ("ImportKeyMaterial", 2), ("Sign", 2), ("TagResource", 2)]
    {
        assert_eq!(calls.get(&format!("KMS.{op}")), Some(&n), "{op}: {calls:?}");
    }
}

#[tokio::test]
async fn the_key_policy_lets_the_functions_only_sign_and_only_while_active() {
    let world = World::start().await;
    let arn = world.import(110, &pem(false)).await.unwrap();
    let policy = world.stack.kms.get_key_policy().key_id(&arn).policy_name("default").send().await.unwrap();
    let policy: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    let by_sid = |sid: &str| statements.iter().find(|s| s["Sid"] == sid).unwrap().clone();

    let admin = by_sid("AccountAdministersTheKeyThroughIAM");
    assert_eq!(admin["Principal"]["AWS"], "arn:aws:iam::123456789012:root");
    let sign = by_sid("FunctionsSignWhileTheKeyIsActive");
    assert_eq!((sign["Effect"].as_str(), sign["Action"].as_str()), (Some("Allow"), Some("kms:Sign")));
    assert_eq!(sign["Principal"]["AWS"], json!(ROLES));
    assert_eq!(
        sign["Condition"]["StringEquals"],
        json!({
            "kms:SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256",
            "kms:MessageType": "RAW",
            "aws:ResourceTag/FrameworkForGitHubAppOnAwsManaged": "true",
            "aws:ResourceTag/Status": "Active"
        })
    );
    let nothing_else = by_sid("FunctionsDoNothingButSign");
    assert_eq!((nothing_else["Effect"].as_str(), nothing_else["NotAction"].as_str()), (Some("Deny"), Some("kms:Sign")));
    assert_eq!(nothing_else["Principal"]["AWS"], json!(ROLES));
    let only_rs256 = by_sid("FunctionsSignOnlyWithPkcs1Sha256");
    assert_eq!(only_rs256["Condition"]["StringNotEquals"]["kms:SigningAlgorithm"], "RSASSA_PKCS1_V1_5_SHA_256");
    assert_eq!(statements.len(), 4);
}

#[test]
fn signing_roles_must_be_role_arns_of_one_account() {
    let err =
        |roles: &[&str]| SigningRoles::new(roles.iter().map(|r| r.to_string()).collect()).unwrap_err().to_string();
    assert!(err(&[]).contains("--stack NAME or --function-role-arn ARN"));
    assert!(err(&["arn:aws:iam::123456789012:user/alice"]).contains("is not an IAM role ARN"));
    assert!(err(&["arn:aws:iam::12345:role/x"]).contains("is not an IAM role ARN"));
    assert!(err(&["role/x"]).contains("is not an IAM role ARN"));
    assert!(err(&["arn:aws:iam::123456789012:role/a", "arn:aws:iam::210987654321:role/b"]).contains("one account"));
    let china = SigningRoles::new(vec!["arn:aws-cn:iam::123456789012:role/fn".into()]).unwrap();
    assert_eq!(china.key_policy()["Statement"][0]["Principal"]["AWS"], "arn:aws-cn:iam::123456789012:root");
}

#[tokio::test]
async fn an_app_that_has_a_key_is_refused_and_no_key_is_created() {
    let world = World::start().await;
    let first = world.import(120, &pem(false)).await.unwrap();
    let created = world.operator.count("CreateKey");
    let err = world.import(120, &pem(true)).await.unwrap_err();
    assert!(matches!(err, CliError::Refused(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("App 120 already has a key ({first}); use `appcreds key rotate` to replace it")
    );
    assert_eq!(err.exit_code(), 4);
    assert_eq!(world.operator.count("CreateKey"), created, "no second key");
    assert_eq!(world.app_row(120).await.unwrap().kms_key_arn, Some(first));
}

#[tokio::test]
async fn a_failure_after_the_key_exists_tags_it_failed_and_names_the_cleanup() {
    let world = World::start().await;
    for (app_id, fault, cause) in [
        (
            130,
            ImportFault::RefuseImport,
            "KMS ImportKeyMaterial failed: InvalidImportTokenException: The import token is invalid",
        ),
        (131, ImportFault::SignWithOtherMaterial, "import failed: KMS signs with other key material than the PEM's"),
    ] {
        world.kms_import.inject(fault);
        let err = world.import(app_id, &pem(false)).await.unwrap_err();
        let keys = world.keys_of(app_id).await;
        assert_eq!(keys.len(), 1, "{keys:?}");
        let (arn, status) = &keys[0];
        assert_eq!(status, "Failed", "{fault:?}");
        let text = err.to_string();
        assert!(text.starts_with(cause), "{text}");
        assert!(text.contains("The new KMS key was tagged Status=Failed"), "{text}");
        assert!(
            text.ends_with(&format!("aws kms schedule-key-deletion --key-id {arn} --pending-window-in-days 7")),
            "{text}"
        );
        assert_eq!(world.app_row(app_id).await, None, "the App table was not touched");
    }
}

#[tokio::test]
async fn kms_refusing_to_create_the_key_is_an_auth_error_and_leaves_nothing() {
    use aws_sdk_kms::error::ErrorMetadata;
    use aws_sdk_kms::operation::create_key::CreateKeyError;
    use aws_smithy_mocks::{MockResponseInterceptor, RuleMode, create_mock_http_client, mock};

    let world = World::start().await;
    let refuse = mock!(aws_sdk_kms::Client::create_key).then_error(|| {
        CreateKeyError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("User: arn:aws:iam::123456789012:user/op is not authorized to perform: kms:CreateKey")
                .build(),
        )
    });
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&world.stack.sdk)
            .http_client(create_mock_http_client())
            .interceptor(MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny).with_rule(&refuse))
            .build(),
    );
    let manager = KeyManager::new(kms, DynamoAppStore::new(world.stack.ddb.clone(), &world.stack.app_table));
    let err = manager.import(140, &pem(false).key, &world.roles, &|_: &str| {}).await.unwrap_err();
    assert_eq!(err.exit_code(), 3, "{err}");
    assert!(err.to_string().starts_with("KMS CreateKey failed: AccessDeniedException: User:"), "{err}");
    assert_eq!(refuse.num_calls(), 1);
    assert!(world.keys_of(140).await.is_empty());
    assert_eq!(world.app_row(140).await, None);
}

#[tokio::test]
async fn rotation_switches_the_app_retires_the_old_key_and_tokens_keep_coming() {
    const APP: i64 = 150;
    let world = World::start().await;
    let (old_pem, new_pem) = (pem(false), pem(true));
    let old = world.import(APP, &old_pem).await.unwrap();
    world.stack.github.register_app(APP, &old_pem.public_der).unwrap();
    world.stack.github.install(Installation::org(APP, 1501, "rotating-org", &[(150101, "repo")]));

    // The functions, warm: app-token on a clock the test moves, installation-token on the real one.
    let clock = ManualClock::new(SystemClock.now());
    let app_tokens = Arc::new(world.app_token_handler(clock.clone()));
    let installation_tokens = Arc::new(world.stack.installation_token_handler_on(world.function_kms()));
    let before = jwt_of(&app_token(&app_tokens, APP).await);
    assert!(signed_by(&before, &old_pem));

    // Callers keep asking while the operator rotates.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::<String>::new())));
    let mut callers = Vec::new();
    for n in 0..4 {
        let (app_tokens, installation_tokens) = (app_tokens.clone(), installation_tokens.clone());
        let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
        callers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let reply = if n % 2 == 0 {
                    app_token(&app_tokens, APP).await
                } else {
                    let body = json!({"appId": APP, "owner": "rotating-org", "scopeDown": {"repositoryIds": [150101]}});
                    send(|r| installation_tokens.handle(r), UrlRequest::post_json("/tokens/installation", &body)).await
                };
                if reply.status == 200 {
                    served.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed.lock().unwrap().push(format!("{} {:?}", reply.status, reply.body));
                }
                tokio::task::yield_now().await;
            }
        }));
    }

    // The operator: the new key first goes to GitHub (both are valid there), then to appcreds.
    world.stack.github.add_app_key(APP, &new_pem.public_der).unwrap();
    let rotated = world.manager.rotate(APP, &new_pem.key, &world.roles, GRACE, &|_: &str| {}).await.unwrap();
    assert_eq!(rotated.previous_key_arn, old);
    assert_ne!(rotated.key_arn, old);

    // The App table names the new key, and the old one as usable for the grace period.
    let row = world.app_row(APP).await.unwrap();
    assert_eq!(row.kms_key_arn.as_deref(), Some(rotated.key_arn.as_str()));
    let previous = row.previous_key.unwrap();
    assert_eq!(previous.arn, old);
    assert!((previous.usable_until - SystemClock.now() - GRACE.as_secs() as i64).abs() <= 2, "{previous:?}");
    assert_eq!(world.tags(&old).await["Status"], "Active", "still usable during the grace period");
    assert_eq!(world.tags(&rotated.key_arn).await["Status"], "Active");

    // The operator retires the old key (here before the grace period ends: --early).
    let retired = world.manager.retire(APP, Some(7), true, &|_: &str| {}).await.unwrap();
    assert_eq!((retired.key_arn.as_str(), retired.replaced_by.as_str()), (old.as_str(), rotated.key_arn.as_str()));
    assert!(retired.deletion.is_some());
    assert_eq!(world.app_row(APP).await.unwrap().previous_key, None);
    let old_tags = world.tags(&old).await;
    assert_eq!(old_tags["Status"], "Inactive");
    assert_eq!(old_tags["ReplacedBy"], rotated.key_arn);
    assert!(old_tags.contains_key("ReplacedOn"));
    let old_meta = world.stack.kms.describe_key().key_id(&old).send().await.unwrap().key_metadata.unwrap();
    assert_eq!(old_meta.key_state(), Some(&KeyState::PendingDeletion));

    // The warm function still hands out its cached JWT (signed by the old key, still valid at
    // GitHub), and signs with the new key once that JWT is due for renewal: no restart.
    assert_eq!(jwt_of(&app_token(&app_tokens, APP).await), before);
    clock.advance(appcreds_core::domain::jwt::LIFETIME_SECS - appcreds_core::tokens::app_jwt::MIN_REMAINING_SECS);
    let after = jwt_of(&app_token(&app_tokens, APP).await);
    assert_eq!(public_of(&after, &[&old_pem, &new_pem]), [false, true], "signed by the new key only");

    // The operator deletes the old key on GitHub: installation tokens keep coming.
    world.stack.github.remove_app_key(APP, &old_pem.public_der).unwrap();
    let body = json!({"appId": APP, "owner": "rotating-org"});
    let reply = send(|r| installation_tokens.handle(r), UrlRequest::post_json("/tokens/installation", &body)).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);

    stop.store(true, Ordering::SeqCst);
    for caller in callers {
        caller.await.unwrap();
    }
    assert_eq!(*failed.lock().unwrap(), Vec::<String>::new(), "no request failed across the rotation");
    assert!(served.load(Ordering::SeqCst) >= 4, "the callers were served");
}

/// A rotation while IAM has not yet seen the new key's `Status=Active` tag (AWS documents up to
/// five minutes; the KMS emulation delays tag effects): during the grace period a cold function
/// refused on the new key signs with the previous one, and with the new one once the tag took
/// effect. Without a grace period, the same cold function fails: what the grace period is for.
#[tokio::test]
async fn a_rotation_survives_tag_propagation_with_a_grace_period() {
    const APP: i64 = 165;
    const PROPAGATION: Duration = Duration::from_millis(1500);
    let world = World::start().await;
    world.kms_import.set_tag_propagation(PROPAGATION);
    let (old_pem, new_pem) = (pem(false), pem(true));
    let old = world.import(APP, &old_pem).await.unwrap();
    tokio::time::sleep(PROPAGATION).await; // the old key's Active tag takes effect
    let cold = || AppJwts::new(&world.stack.services_on(world.function_kms(), SystemClock));

    let rotated = world.manager.rotate(APP, &new_pem.key, &world.roles, GRACE, &|_: &str| {}).await.unwrap();
    let jwt = cold().get(APP).await.expect("no failure while the new key's tag propagates");
    assert_eq!(public_of(jwt.token.expose(), &[&old_pem, &new_pem]), [true, false], "signed by the previous key");
    tokio::time::sleep(PROPAGATION).await;
    let jwt = cold().get(APP).await.unwrap();
    assert_eq!(public_of(jwt.token.expose(), &[&old_pem, &new_pem]), [false, true], "signed by the new key");

    // Retiring before the grace period ends is refused, naming when it ends; --early does it.
    let refused = world.manager.retire(APP, None, false, &|_: &str| {}).await.unwrap_err();
    assert!(refused.to_string().contains(&format!("{old} is usable until")), "{refused}");
    assert_eq!(refused.exit_code(), 4);
    let again = world.manager.rotate(APP, &pem(false).key, &world.roles, GRACE, &|_: &str| {}).await.unwrap_err();
    assert!(again.to_string().contains("last rotation is not finished"), "{again}");
    world.manager.retire(APP, None, true, &|_: &str| {}).await.unwrap();
    assert_eq!(world.tags(&old).await["Status"], "Inactive");

    // A rotation without a grace period: the cold function has no key IAM lets it use.
    let third = pem(false);
    world.manager.rotate(APP, &third.key, &world.roles, Duration::ZERO, &|_: &str| {}).await.unwrap();
    let err = cold().get(APP).await.unwrap_err();
    assert!(matches!(err, appcreds_core::Error::SigningKey(KeyProblem::AccessDenied)), "{err:?}");
    assert_ne!(rotated.key_arn, old);
}

/// Two stacks in one account: with a signing scope, a key is tagged `AppcredsScope` and its
/// policy requires it, and a function of another scope (staging) cannot sign with it, even though
/// both keys carry the managed tag and `Status=Active`.
#[tokio::test]
async fn a_signing_scope_keeps_one_stacks_functions_off_anothers_keys() {
    let world = World::start().await;
    let prod_roles = world.roles.clone().with_scope(Some("prod".into())).unwrap();
    let prod_pem = pem(false);
    let prod_key = world.manager.import(310, &prod_pem.key, &prod_roles, &|_: &str| {}).await.unwrap().key_arn;
    assert_eq!(world.tags(&prod_key).await["AppcredsScope"], "prod");
    let policy = world.stack.kms.get_key_policy().key_id(&prod_key).policy_name("default").send().await.unwrap();
    let policy: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    let sign = policy["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == "FunctionsSignWhileTheKeyIsActive");
    assert_eq!(sign.unwrap()["Condition"]["StringEquals"]["aws:ResourceTag/AppcredsScope"], "prod");
    assert!(world.roles.clone().with_scope(Some("no spaces".into())).is_err());

    let jwt = |scope: &str| {
        world.kms_import.require_scope(Some(scope));
        async { AppJwts::new(&world.stack.services_on(world.function_kms(), SystemClock)).get(310).await }
    };
    let signed = jwt("prod").await.unwrap();
    assert_eq!(public_of(signed.token.expose(), &[&prod_pem]), [true]);
    let refused = jwt("staging").await.unwrap_err();
    assert!(matches!(refused, appcreds_core::Error::SigningKey(KeyProblem::AccessDenied)), "{refused:?}");
    // An unscoped stack cannot sign with a scoped key either (the template's Null condition).
    world.kms_import.require_scope(None);
    let unscoped = AppJwts::new(&world.stack.services_on(world.function_kms(), SystemClock)).get(310).await;
    assert!(matches!(unscoped, Err(appcreds_core::Error::SigningKey(KeyProblem::AccessDenied))), "{unscoped:?}");
}

/// Two stacks in one account, and their operators: a staging operator holds the staging stack's
/// `OperatorPolicy`, which reaches only keys tagged `AppcredsScope=staging`. It can neither sign a
/// JWT with prod's App key, nor retire it (tag it `Status=Inactive`), nor delete it, nor take it
/// into its own scope: not through the SDK, and not through `appcreds key retire` even with prod's
/// App table at hand. The refused requests never reach KMS: the key stays Active and Enabled, and
/// prod's functions keep signing with it. Prod's own operator retires it (and signs with it no
/// more than the staging one: its only signature is an import's proof).
#[tokio::test]
async fn another_stacks_operator_is_refused_sign_retag_and_deletion() {
    use aws_sdk_kms::error::ProvideErrorMetadata;
    use aws_sdk_kms::primitives::Blob;
    use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec, Tag};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const APP: i64 = 320;
    let world = World::start().await;
    let operator_of = |scope: Option<&'static str>| {
        let kms = world.kms_import.client(&world.stack.sdk, Caller::StackOperator(scope), &CallCounter::default());
        (kms.clone(), KeyManager::new(kms, DynamoAppStore::new(world.stack.ddb.clone(), &world.stack.app_table)))
    };
    let prod_roles = world.roles.clone().with_scope(Some("prod".into())).unwrap();
    let (prod_kms, prod) = operator_of(Some("prod"));
    let (old_pem, new_pem) = (pem(false), pem(true));
    let old = prod.import(APP, &old_pem.key, &prod_roles, &|_: &str| {}).await.unwrap().key_arn;
    let new = prod.rotate(APP, &new_pem.key, &prod_roles, GRACE, &|_: &str| {}).await.unwrap().key_arn;

    // A JWT for prod's App, signed the way the functions sign.
    let part = |value: Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let unsigned = format!("{}.{}", part(json!({"alg": "RS256", "typ": "JWT"})), part(json!({"iss": APP.to_string()})));
    let sign = |kms: &aws_sdk_kms::Client| {
        kms.sign()
            .key_id(&old)
            .message(Blob::new(unsigned.as_bytes()))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::RsassaPkcs1V15Sha256)
            .send()
    };
    let tag = |key: &str, value: &str| Tag::builder().tag_key(key).tag_value(value).build().unwrap();

    let (staging_kms, staging) = operator_of(Some("staging"));
    let (unscoped_kms, _) = operator_of(None);
    for kms in [&staging_kms, &unscoped_kms] {
        let err = sign(kms).await.unwrap_err();
        assert_eq!(err.as_service_error().and_then(|e| e.code()), Some("AccessDeniedException"), "{err:?}");
        let err = kms.tag_resource().key_id(&old).tags(tag("Status", "Inactive")).send().await.unwrap_err();
        assert_eq!(err.as_service_error().and_then(|e| e.code()), Some("AccessDeniedException"), "{err:?}");
        let err = kms.schedule_key_deletion().key_id(&old).pending_window_in_days(7).send().await.unwrap_err();
        assert_eq!(err.as_service_error().and_then(|e| e.code()), Some("AccessDeniedException"), "{err:?}");
    }
    let err = staging_kms.tag_resource().key_id(&old).tags(tag("AppcredsScope", "staging")).send().await.unwrap_err();
    assert_eq!(err.as_service_error().and_then(|e| e.code()), Some("AccessDeniedException"), "{err:?}");
    let err = staging.retire(APP, Some(7), true, &|_: &str| {}).await.unwrap_err();
    assert_eq!(err.exit_code(), 3, "{err}");
    assert!(err.to_string().starts_with("KMS TagResource failed: AccessDeniedException"), "{err}");
    // Prod's own operator signs only an import's proof, with a key still Importing: not with it.
    let err = sign(&prod_kms).await.unwrap_err();
    assert_eq!(err.as_service_error().and_then(|e| e.code()), Some("AccessDeniedException"), "{err:?}");

    // None of it reached KMS or changed what the functions' authorization sees.
    let tags = world.tags(&old).await;
    assert_eq!((tags["Status"].as_str(), tags["AppcredsScope"].as_str()), ("Active", "prod"));
    assert!(!tags.contains_key("ReplacedBy"));
    let described = world.stack.kms.describe_key().key_id(&old).send().await.unwrap().key_metadata.unwrap();
    assert_eq!(described.key_state(), Some(&KeyState::Enabled));
    assert_eq!(world.app_row(APP).await.unwrap().previous_key.map(|p| p.arn), Some(old.clone()));
    world.kms_import.require_scope(Some("prod"));
    let signature = sign(&world.function_kms()).await.unwrap().signature.unwrap();
    let jwt = format!("{unsigned}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
    assert!(signed_by(&jwt, &old_pem), "prod's functions still sign with prod's key");

    // Prod's own operator retires it.
    let retired = prod.retire(APP, Some(7), true, &|_: &str| {}).await.unwrap();
    assert_eq!((retired.key_arn.as_str(), retired.replaced_by.as_str()), (old.as_str(), new.as_str()));
    assert_eq!(world.tags(&old).await["Status"], "Inactive");
    let described = world.stack.kms.describe_key().key_id(&old).send().await.unwrap().key_metadata.unwrap();
    assert_eq!(described.key_state(), Some(&KeyState::PendingDeletion));
}

/// A function that read the App row just before the switch signs after the old key stopped
/// signing: it reads the row again and signs with the new key instead of failing.
#[tokio::test]
async fn a_row_read_just_before_the_switch_signs_with_the_new_key() {
    const APP: i64 = 160;
    let world = Arc::new(World::start().await);
    let (old_pem, new_pem) = (pem(false), Arc::new(pem(false)));
    world.import(APP, &old_pem).await.unwrap();
    let new_key = new_pem.clone();
    let world_for_hook = world.clone();
    let store = RotateAfterFirstRead {
        inner: DynamoAppStore::new(world.stack.ddb.clone(), &world.stack.app_table),
        rotate: tokio::sync::Mutex::new(Some(Box::pin(async move {
            let manager = &world_for_hook.manager;
            manager.rotate(APP, &new_key.key, &world_for_hook.roles, GRACE, &|_: &str| {}).await.unwrap();
            manager.retire(APP, None, true, &|_: &str| {}).await.unwrap();
        }))),
        reads: AtomicUsize::new(0),
    };
    let mut services = world.stack.services_on(world.function_kms(), SystemClock);
    services.apps = Arc::new(store);
    let jwts = AppJwts::new(&services);
    let jwt = jwts.get(APP).await.expect("no failure across the rotation");
    assert_eq!(public_of(jwt.token.expose(), &[&old_pem, &new_pem]), [false, true], "signed by the new key only");
    // The old key refused (Status=Inactive), so the row was read again.
    assert_eq!(world.stack.counter.count("Sign"), 2);
    assert_eq!(world.tags(&world.app_row(APP).await.unwrap().kms_key_arn.unwrap()).await["Status"], "Active");
}

/// An App store that, on its first read, lets a rotation run after reading the row and before
/// answering: the reader holds the old key's ARN while the old key is retired.
struct RotateAfterFirstRead {
    inner: DynamoAppStore,
    rotate: tokio::sync::Mutex<Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>>,
    reads: AtomicUsize,
}

#[async_trait::async_trait]
impl AppStore for RotateAfterFirstRead {
    async fn get_app(&self, app_id: i64) -> Result<Option<AppRecord>, appcreds_core::Error> {
        let row = self.inner.get_app(app_id).await?;
        self.reads.fetch_add(1, Ordering::SeqCst);
        if let Some(rotation) = self.rotate.lock().await.take() {
            rotation.await;
        }
        Ok(row)
    }

    async fn list_apps(&self) -> Result<Vec<AppRecord>, appcreds_core::Error> {
        self.inner.list_apps().await
    }
}

#[tokio::test]
async fn rotation_is_refused_for_the_same_key_and_for_an_app_without_a_key() {
    let world = World::start().await;
    let current = pem(false);
    let arn = world.import(170, &current).await.unwrap();
    let created = world.operator.count("CreateKey");

    let same = world.manager.rotate(170, &current.key, &world.roles, GRACE, &|_: &str| {}).await.unwrap_err();
    assert_eq!(same.to_string(), format!("the PEM is App 170's current key ({arn})"));
    let none = world.manager.rotate(171, &pem(false).key, &world.roles, GRACE, &|_: &str| {}).await.unwrap_err();
    assert_eq!(none.to_string(), "App 171 has no key to rotate; use `appcreds key import`");
    assert_eq!((same.exit_code(), none.exit_code()), (4, 4));
    assert_eq!(world.operator.count("CreateKey"), created, "no key was created");
    assert_eq!(world.tags(&arn).await["Status"], "Active");
}

/// Two operators rotate one App at once: the App table's conditional write lets exactly one
/// switch; the other's new key is tagged Failed and the App ends on the winner's key.
#[tokio::test]
async fn concurrent_rotations_switch_once_and_fail_the_loser_cleanly() {
    const APP: i64 = 180;
    let world = World::start().await;
    let original = world.import(APP, &pem(false)).await.unwrap();
    let (a, b) = (pem(false), pem(true));
    let (ra, rb) = tokio::join!(
        world.manager.rotate(APP, &a.key, &world.roles, GRACE, &|_: &str| {}),
        world.manager.rotate(APP, &b.key, &world.roles, GRACE, &|_: &str| {}),
    );
    let (winner, loser) = match (ra, rb) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        other => panic!("exactly one rotation must win: {other:?}"),
    };
    assert_eq!(winner.previous_key_arn, original);
    assert!(
        loser.to_string().starts_with(&format!("App {APP}'s key changed meanwhile (now {})", winner.key_arn)),
        "{loser}"
    );
    assert_eq!(loser.exit_code(), 4);
    assert_eq!(world.app_row(APP).await.unwrap().kms_key_arn.as_deref(), Some(winner.key_arn.as_str()));
    let mut statuses: Vec<String> = world.keys_of(APP).await.into_iter().map(|(_, s)| s).collect();
    statuses.sort();
    // The original stays Active (the winner's previous key, in its grace period).
    assert_eq!(statuses, ["Active", "Active", "Failed"]);
}

#[tokio::test]
async fn list_shows_each_app_with_its_key_state_and_tags() {
    let world = World::start().await;
    let arn = world.import(190, &pem(false)).await.unwrap();
    appcreds_testkit::aws::put_app(&world.stack.ddb, &world.stack.app_table, 191, None).await.unwrap();
    let gone = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000";
    appcreds_testkit::aws::put_app(&world.stack.ddb, &world.stack.app_table, 192, Some(gone)).await.unwrap();

    let apps = world.manager.list().await.unwrap();
    assert_eq!(apps.iter().map(|a| a.app_id).collect::<Vec<_>>(), [190, 191, 192]);
    assert_eq!(apps[0].kms_key_arn.as_deref(), Some(arn.as_str()));
    assert_eq!(apps[0].key_state.as_deref(), Some("Enabled"));
    assert_eq!(apps[0].tags["Status"], "Active");
    assert_eq!(apps[0].tags["AppId"], "190");
    assert_eq!((apps[1].kms_key_arn.as_deref(), apps[1].key_state.as_deref()), (None, None));
    assert!(
        apps[2].error.as_deref().unwrap().starts_with("KMS DescribeKey failed: NotFoundException"),
        "{:?}",
        apps[2]
    );
    let listed = serde_json::to_value(&apps[0]).unwrap();
    assert_eq!(listed["kmsKeyArn"], arn);
    assert!(listed.get("error").is_none());
}

/// `key list --all-keys`: every appcreds-tagged key, in use or left to clean up.
#[tokio::test]
async fn managed_keys_show_what_is_in_use_and_what_to_clean_up() {
    let world = World::start().await;
    let first = world.import(200, &pem(false)).await.unwrap();
    world.kms_import.inject(ImportFault::RefuseImport);
    world.import(201, &pem(false)).await.unwrap_err();
    let rotated = world.manager.rotate(200, &pem(true).key, &world.roles, GRACE, &|_: &str| {}).await.unwrap();
    world.manager.retire(200, None, true, &|_: &str| {}).await.unwrap();
    // A key that is not an appcreds App key is not listed.
    let foreign = world.stack.kms.create_key().description("someone else's").send().await.unwrap();
    let foreign = foreign.key_metadata.unwrap().arn.unwrap();

    let keys = world.manager.managed_keys().await.unwrap();
    assert!(keys.iter().all(|k| k.key_arn != foreign));
    let ours: Vec<(String, String, bool)> = keys
        .iter()
        .filter(|k| ["200", "201"].contains(&k.tags["AppId"].as_str()))
        .map(|k| (k.tags["AppId"].clone(), k.tags["Status"].clone(), k.in_use))
        .collect();
    let mut expected = vec![
        ("200".to_string(), "Inactive".to_string(), false),
        ("200".to_string(), "Active".to_string(), true),
        ("201".to_string(), "Failed".to_string(), false),
    ];
    let mut sorted = ours.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected);
    let active = keys.iter().find(|k| k.key_arn == rotated.key_arn).unwrap();
    assert_eq!((active.key_state.as_str(), active.in_use), ("Enabled", true));
    let old = keys.iter().find(|k| k.key_arn == first).unwrap();
    assert_eq!(old.tags["ReplacedBy"], rotated.key_arn);
}

/// A key switch whose answer was lost is retried (by the SDK or the operator); the retry finds
/// the row already naming the new key, and that is success, not a conflict that would tag the
/// new key Failed while the App table points at it.
#[tokio::test]
async fn a_key_write_retried_after_a_lost_answer_is_a_success() {
    use appcreds_core::aws::app_table::KeyWrite;
    let stack = appcreds_tests::Stack::start().await;
    let store = DynamoAppStore::new(stack.ddb.clone(), &stack.app_table);
    let (old, new, other) = (
        "arn:aws:kms:us-east-1:123456789012:key/old",
        "arn:aws:kms:us-east-1:123456789012:key/new",
        "arn:aws:kms:us-east-1:123456789012:key/other",
    );
    assert_eq!(store.register_key(190, old, None).await.unwrap(), KeyWrite::Written);
    assert_eq!(store.register_key(190, old, None).await.unwrap(), KeyWrite::Written, "the same registration again");
    assert_eq!(store.register_key(190, other, None).await.unwrap(), KeyWrite::Conflict { current: Some(old.into()) });
    let until = "2026-11-26T12:00:00Z";
    assert_eq!(store.switch_key(190, old, new, until, None).await.unwrap(), KeyWrite::Written);
    assert_eq!(
        store.switch_key(190, old, new, until, None).await.unwrap(),
        KeyWrite::Written,
        "the retry of a lost answer"
    );
    assert_eq!(
        store.switch_key(190, old, other, until, None).await.unwrap(),
        KeyWrite::Conflict { current: Some(new.into()) }
    );
    // While the rotation is open, no other switch, even from the current key.
    assert_eq!(
        store.switch_key(190, new, other, until, None).await.unwrap(),
        KeyWrite::Conflict { current: Some(new.into()) }
    );
    store.clear_previous_key(190, old).await.unwrap();
    store.clear_previous_key(190, old).await.unwrap(); // the retry of a lost answer
    assert_eq!(store.get_app(190).await.unwrap().unwrap().previous_key, None);
    assert_eq!(store.switch_key(190, new, other, until, None).await.unwrap(), KeyWrite::Written);
}

/// `key import --client-id` and `key rotate --client-id` write the App's client ID with the key,
/// and the functions' JWTs then name it as their issuer (`iss`, a string), which GitHub (the
/// double) accepts; without one, the issuer is the App ID (a number). A rotation without
/// `--client-id` keeps the one the row has.
#[tokio::test]
async fn a_client_id_written_with_the_key_becomes_the_jwts_issuer() {
    let world = World::start().await;
    let issuer = |jwt: &str| appcreds_tests::github::jwt::peek_claims(jwt).unwrap()["iss"].clone();
    let accepted = |jwt: String| {
        let url = format!("{}/app", world.stack.github.url());
        async move { reqwest::Client::new().get(url).bearer_auth(jwt).send().await.unwrap().status().as_u16() }
    };

    // Imported without a client ID: the App ID is the issuer.
    const PLAIN: i64 = 210;
    let (first, second) = (pem(false), pem(true));
    world.import(PLAIN, &first).await.unwrap();
    world.stack.github.register_app(PLAIN, &first.public_der).unwrap();
    assert_eq!(world.app_row(PLAIN).await.unwrap().client_id, None);
    let jwt = jwt_of(&app_token(&world.app_token_handler(ManualClock::new(SystemClock.now())), PLAIN).await);
    assert_eq!(issuer(&jwt), json!(PLAIN));
    assert_eq!(accepted(jwt).await, 200);

    // Rotated with its client ID: a function started afterwards names it.
    let client_id = world.stack.github.app_client_id(PLAIN).unwrap();
    world.stack.github.add_app_key(PLAIN, &second.public_der).unwrap();
    let with_client_id = world.manager.clone().with_client_id(Some(client_id.clone()));
    with_client_id.rotate(PLAIN, &second.key, &world.roles, GRACE, &|_: &str| {}).await.unwrap();
    assert_eq!(world.app_row(PLAIN).await.unwrap().client_id.as_deref(), Some(client_id.as_str()));
    let jwt = jwt_of(&app_token(&world.app_token_handler(ManualClock::new(SystemClock.now())), PLAIN).await);
    assert_eq!(issuer(&jwt), json!(client_id));
    assert!(signed_by(&jwt, &second));
    assert_eq!(accepted(jwt).await, 200, "GitHub takes the client ID as the issuer");

    // Imported with a client ID, then rotated without one: the row keeps it.
    const NAMED: i64 = 211;
    let (first, second) = (pem(false), pem(true));
    world.stack.github.register_app(NAMED, &first.public_der).unwrap();
    let client_id = world.stack.github.app_client_id(NAMED).unwrap();
    let with_client_id = world.manager.clone().with_client_id(Some(client_id.clone()));
    with_client_id.import(NAMED, &first.key, &world.roles, &|_: &str| {}).await.unwrap();
    assert_eq!(world.app_row(NAMED).await.unwrap().client_id.as_deref(), Some(client_id.as_str()));
    let jwt = jwt_of(&app_token(&world.app_token_handler(ManualClock::new(SystemClock.now())), NAMED).await);
    assert_eq!(issuer(&jwt), json!(client_id));
    assert_eq!(accepted(jwt).await, 200);
    world.stack.github.add_app_key(NAMED, &second.public_der).unwrap();
    world.manager.rotate(NAMED, &second.key, &world.roles, GRACE, &|_: &str| {}).await.unwrap();
    assert_eq!(world.app_row(NAMED).await.unwrap().client_id.as_deref(), Some(client_id.as_str()));
    let listed = world.manager.list().await.unwrap();
    let named = listed.iter().find(|a| a.app_id == NAMED).unwrap();
    assert_eq!(serde_json::to_value(named).unwrap()["clientId"], json!(client_id), "`key list` shows it");

    // A client ID that is not the App's is refused by GitHub: the JWT's issuer is what GitHub checks.
    let wrong = world.manager.clone().with_client_id(Some("Iv23liNotThisApp".into()));
    const WRONG: i64 = 212;
    let third = pem(false);
    world.stack.github.register_app(WRONG, &third.public_der).unwrap();
    wrong.import(WRONG, &third.key, &world.roles, &|_: &str| {}).await.unwrap();
    let jwt = jwt_of(&app_token(&world.app_token_handler(ManualClock::new(SystemClock.now())), WRONG).await);
    assert_eq!(issuer(&jwt), json!("Iv23liNotThisApp"));
    assert_eq!(accepted(jwt).await, 401);
}
