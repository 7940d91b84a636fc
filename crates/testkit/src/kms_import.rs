//! KMS key import on top of the moto server.
//!
//! moto creates `Origin EXTERNAL` keys (Enabled at once) but implements neither
//! `GetParametersForImport` nor `ImportKeyMaterial`, and signs every key with material of its own.
//! [`KmsImport`] attaches `aws-smithy-mocks` rules to a real KMS client that talks to moto, so
//! that the import runs through the real SDK and its exact parameters can be asserted on:
//! - `GetParametersForImport` answers with a real RSA-4096 wrapping public key and a fresh import
//!   token for the key;
//! - `ImportKeyMaterial` unwraps the upload as KMS does (RSA-OAEP-SHA-256 for the AES key, then
//!   RFC 5649 key wrap with padding) and refuses a wrong token or material that is not RSA-2048;
//! - `GetPublicKey` of an imported key answers the imported material's public key;
//! - `Sign` with an imported key signs with the imported material (RSASSA-PKCS1-v1_5 / SHA-256),
//!   refusing a disabled or pending-deletion key as KMS does and, for a function's client, a key
//!   not tagged `Status=Active` as the functions' tag-conditioned policy does.
//!
//! Every other operation (CreateKey, TagResource, DescribeKey, ScheduleKeyDeletion, ...) is
//! answered by moto; an observer on the same client follows the imported keys' tags and state.
//! (The answered requests reach moto too, as the mocks' passthrough works; its answers to them
//! are replaced.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use aes_kw::{KeyInit, KwpAes256};
use aws_config::SdkConfig;
use aws_sdk_kms::error::ErrorMetadata;
use aws_sdk_kms::operation::cancel_key_deletion::CancelKeyDeletionInput;
use aws_sdk_kms::operation::create_key::{CreateKeyInput, CreateKeyOutput};
use aws_sdk_kms::operation::disable_key::DisableKeyInput;
use aws_sdk_kms::operation::enable_key::EnableKeyInput;
use aws_sdk_kms::operation::get_parameters_for_import::{GetParametersForImportError, GetParametersForImportOutput};
use aws_sdk_kms::operation::get_public_key::GetPublicKeyOutput;
use aws_sdk_kms::operation::import_key_material::{ImportKeyMaterialError, ImportKeyMaterialOutput};
use aws_sdk_kms::operation::schedule_key_deletion::ScheduleKeyDeletionInput;
use aws_sdk_kms::operation::sign::{SignError, SignOutput};
use aws_sdk_kms::operation::tag_resource::TagResourceInput;
use aws_sdk_kms::primitives::{Blob, DateTime};
use aws_sdk_kms::types::error::{
    DisabledException, IncorrectKeyMaterialException, InvalidImportTokenException, KmsInvalidStateException,
};
use aws_sdk_kms::types::{AlgorithmSpec, ExpirationModelType, MessageType, SigningAlgorithmSpec, WrappingKeySpec};
use aws_smithy_mocks::{MockResponse, MockResponseInterceptor, Rule, RuleMode, mock};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey};
use sha2::Sha256;

use crate::aws::CallCounter;

/// Whose client: the operator's (IAM without tag conditions) or a function's (`kms:Sign` only on
/// keys tagged `Status=Active`, as the template and the key policy grant it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Function,
}

/// One `GetParametersForImport` request, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParametersRequest {
    pub key_id: String,
    pub wrapping_algorithm: Option<AlgorithmSpec>,
    pub wrapping_key_spec: Option<WrappingKeySpec>,
}

/// One `ImportKeyMaterial` request, as sent, with what unwrapping it gave.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub key_id: String,
    pub expiration_model: Option<ExpirationModelType>,
    pub valid_to: Option<DateTime>,
    /// Whether the import token was the one issued for this key.
    pub token_matched: bool,
    /// The unwrapped key material (PKCS#8 DER), if it unwrapped.
    pub material: Option<Vec<u8>>,
}

/// A step the next import fails at, as KMS would refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFault {
    /// `ImportKeyMaterial` refuses the upload (`InvalidImportTokenException`).
    RefuseImport,
    /// The imported key signs with other material (what a wrong upload would give).
    SignWithOtherMaterial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
}

struct Imported {
    material: RsaPrivateKey,
    state: KeyState,
}

#[derive(Default)]
struct State {
    tokens: HashMap<String, Vec<u8>>,
    imported: HashMap<String, Imported>,
    /// `Status` tags of every key created or tagged through this client (imported or not yet),
    /// oldest first, with when each was set.
    status: HashMap<String, Vec<(std::time::Instant, String)>>,
    /// How long a tag change takes to affect authorization (AWS: up to five minutes).
    propagation: std::time::Duration,
    /// The `AppcredsScope` tag of keys created with one.
    scope: HashMap<String, String>,
    /// The scope the functions' IAM policy requires (the template's `SigningKeyScope`), if any.
    function_scope: Option<String>,
    parameters: Vec<ParametersRequest>,
    imports: Vec<ImportRequest>,
    fault: Option<ImportFault>,
}

impl State {
    fn set_status(&mut self, key: String, status: String) {
        self.status.entry(key).or_default().push((std::time::Instant::now(), status));
    }

    /// The `Status` authorization sees: the latest set at least the propagation delay ago, or
    /// the key's first (its tags at creation).
    fn authorizing_status(&self, key: &str) -> Option<&str> {
        let history = self.status.get(key)?;
        let seen = |at: &std::time::Instant| at.elapsed() >= self.propagation;
        history.iter().rev().find(|(at, _)| seen(at)).or(history.first()).map(|(_, s)| s.as_str())
    }
}

/// The import emulation; clone it freely (clones share state).
#[derive(Clone, Default)]
pub struct KmsImport {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for KmsImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KmsImport")
    }
}

/// The key ID of a key ARN or key ID.
pub fn key_id(key: &str) -> String {
    key.rsplit('/').next().unwrap_or(key).to_string()
}

/// KMS's wrapping key pair (one per test process: making an RSA-4096 key takes a while).
fn wrapping_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 4096).expect("an RSA-4096 key"))
}

impl KmsImport {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A KMS client on `sdk` (moto) with the emulation attached, for `caller`; `counter` counts
    /// its operations.
    pub fn client(&self, sdk: &SdkConfig, caller: Caller, counter: &CallCounter) -> aws_sdk_kms::Client {
        let mut mocks = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny).allow_passthrough();
        for rule in self.rules(caller) {
            mocks = mocks.with_rule(&rule);
        }
        aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::config::Builder::from(sdk)
                // The answered operations reach moto too, which fails them (HTTP 500); a retry
                // would ask the rules again without an input. moto itself needs no retries.
                .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
                .interceptor(mocks)
                .interceptor(Observer(self.clone()))
                .interceptor(counter.clone())
                .build(),
        )
    }

    /// Makes tag changes affect the functions' `kms:Sign` authorization only after `delay`, as
    /// AWS documents they may (up to five minutes); until then the previous `Status` counts.
    pub fn set_tag_propagation(&self, delay: std::time::Duration) {
        self.state().propagation = delay;
    }

    /// Makes the functions' `kms:Sign` require keys tagged `AppcredsScope=<scope>`, as the
    /// template's IAM condition does for a stack with a `SigningKeyScope`.
    pub fn require_scope(&self, scope: Option<&str>) {
        self.state().function_scope = scope.map(str::to_string);
    }

    /// Makes the next import fail at `fault`.
    pub fn inject(&self, fault: ImportFault) {
        self.state().fault = Some(fault);
    }

    /// Every `GetParametersForImport` request so far.
    pub fn parameter_requests(&self) -> Vec<ParametersRequest> {
        self.state().parameters.clone()
    }

    /// Every `ImportKeyMaterial` request so far.
    pub fn import_requests(&self) -> Vec<ImportRequest> {
        self.state().imports.clone()
    }

    /// Whether `key` has imported material.
    pub fn is_imported(&self, key: &str) -> bool {
        self.state().imported.contains_key(&key_id(key))
    }

    /// The public key (DER SPKI) of the material imported into `key`.
    pub fn imported_public_key(&self, key: &str) -> Option<Vec<u8>> {
        let state = self.state();
        let imported = state.imported.get(&key_id(key))?;
        imported.material.to_public_key().to_public_key_der().ok().map(|d| d.as_bytes().to_vec())
    }

    fn rules(&self, caller: Caller) -> Vec<Rule> {
        let parameters = {
            let this = self.clone();
            mock!(aws_sdk_kms::Client::get_parameters_for_import).then_compute_response(move |input| {
                let key = key_id(input.key_id().unwrap_or_default());
                let mut state = this.state();
                state.parameters.push(ParametersRequest {
                    key_id: key.clone(),
                    wrapping_algorithm: input.wrapping_algorithm().cloned(),
                    wrapping_key_spec: input.wrapping_key_spec().cloned(),
                });
                let supported = input.wrapping_algorithm() == Some(&AlgorithmSpec::RsaAesKeyWrapSha256)
                    && input.wrapping_key_spec() == Some(&WrappingKeySpec::Rsa4096);
                if !supported {
                    return MockResponse::Error(GetParametersForImportError::generic(
                        ErrorMetadata::builder().code("ValidationException").message("unsupported wrapping").build(),
                    ));
                }
                let mut token = vec![0u8; 64];
                rsa::rand_core::RngCore::fill_bytes(&mut rsa::rand_core::OsRng, &mut token);
                state.tokens.insert(key.clone(), token.clone());
                let public = wrapping_key().to_public_key().to_public_key_der().expect("DER of a public key");
                MockResponse::Output(
                    GetParametersForImportOutput::builder()
                        .key_id(format!("arn:aws:kms:us-east-1:123456789012:key/{key}"))
                        .import_token(Blob::new(token))
                        .public_key(Blob::new(public.as_bytes()))
                        .parameters_valid_to(DateTime::from_secs(now() + 24 * 3600))
                        .build(),
                )
            })
        };
        let import = {
            let this = self.clone();
            mock!(aws_sdk_kms::Client::import_key_material).then_compute_response(move |input| {
                let key = key_id(input.key_id().unwrap_or_default());
                let mut state = this.state();
                let token_matched = input
                    .import_token()
                    .zip(state.tokens.get(&key))
                    .is_some_and(|(sent, issued)| sent.as_ref() == issued.as_slice());
                let material = input.encrypted_key_material().and_then(|blob| unwrap(blob.as_ref()));
                state.imports.push(ImportRequest {
                    key_id: key.clone(),
                    expiration_model: input.expiration_model().cloned(),
                    valid_to: input.valid_to().cloned(),
                    token_matched,
                    material: material.clone(),
                });
                if state.fault == Some(ImportFault::RefuseImport) || !token_matched {
                    state.fault = None;
                    return MockResponse::Error(ImportKeyMaterialError::InvalidImportTokenException(
                        InvalidImportTokenException::builder()
                            .meta(meta("InvalidImportTokenException", "The import token is invalid"))
                            .build(),
                    ));
                }
                let parsed = material.as_deref().and_then(|der| RsaPrivateKey::from_pkcs8_der(der).ok());
                let Some(mut private) = parsed.filter(|k| k.n().bits() == 2048) else {
                    return MockResponse::Error(ImportKeyMaterialError::IncorrectKeyMaterialException(
                        IncorrectKeyMaterialException::builder()
                            .meta(meta(
                                "IncorrectKeyMaterialException",
                                "The key material is not an RSA_2048 private key",
                            ))
                            .build(),
                    ));
                };
                if state.fault == Some(ImportFault::SignWithOtherMaterial) {
                    state.fault = None;
                    private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("an RSA-2048 key");
                }
                state.tokens.remove(&key);
                state.imported.insert(key.clone(), Imported { material: private, state: KeyState::Enabled });
                MockResponse::Output(
                    ImportKeyMaterialOutput::builder()
                        .key_id(format!("arn:aws:kms:us-east-1:123456789012:key/{key}"))
                        .build(),
                )
            })
        };
        let sign = {
            let (matcher, this) = (self.clone(), self.clone());
            mock!(aws_sdk_kms::Client::sign)
                .match_requests(move |input| matcher.is_imported(input.key_id().unwrap_or_default()))
                .then_compute_response(move |input| this.sign(caller, input))
        };
        let public = {
            let (matcher, this) = (self.clone(), self.clone());
            mock!(aws_sdk_kms::Client::get_public_key)
                .match_requests(move |input| matcher.is_imported(input.key_id().unwrap_or_default()))
                .then_compute_output(move |input| {
                    let key = input.key_id().unwrap_or_default();
                    GetPublicKeyOutput::builder()
                        .key_id(key)
                        .set_public_key(this.imported_public_key(key).map(Blob::new))
                        .key_spec(aws_sdk_kms::types::KeySpec::Rsa2048)
                        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
                        .signing_algorithms(SigningAlgorithmSpec::RsassaPkcs1V15Sha256)
                        .build()
                })
        };
        vec![parameters, import, sign, public]
    }

    fn sign(
        &self,
        caller: Caller,
        input: &aws_sdk_kms::operation::sign::SignInput,
    ) -> MockResponse<SignOutput, SignError> {
        let key = key_id(input.key_id().unwrap_or_default());
        let state = self.state();
        let Some(imported) = state.imported.get(&key) else {
            return MockResponse::Error(SignError::generic(ErrorMetadata::builder().code("NotFoundException").build()));
        };
        // A scoped stack signs only with keys of its scope; an unscoped one only with unscoped keys.
        if caller == Caller::Function && state.scope.get(&key) != state.function_scope.as_ref() {
            return MockResponse::Error(SignError::generic(
                ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message(
                        "not authorized to perform: kms:Sign (the key is not tagged with this stack's AppcredsScope)",
                    )
                    .build(),
            ));
        }
        if caller == Caller::Function && state.authorizing_status(&key) != Some("Active") {
            return MockResponse::Error(SignError::generic(
                ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message("not authorized to perform: kms:Sign (the key is not tagged Status=Active)")
                    .build(),
            ));
        }
        match imported.state {
            KeyState::Enabled => {}
            KeyState::Disabled => {
                return MockResponse::Error(SignError::DisabledException(
                    DisabledException::builder().meta(meta("DisabledException", "the key is disabled")).build(),
                ));
            }
            KeyState::PendingDeletion => {
                return MockResponse::Error(SignError::KmsInvalidStateException(
                    KmsInvalidStateException::builder()
                        .meta(meta("KMSInvalidStateException", "the key is pending deletion"))
                        .build(),
                ));
            }
        }
        let raw = input.message_type().is_none_or(|t| *t == MessageType::Raw);
        let algorithm = input.signing_algorithm() == Some(&SigningAlgorithmSpec::RsassaPkcs1V15Sha256);
        let (Some(message), true, true) = (input.message(), raw, algorithm) else {
            return MockResponse::Error(SignError::generic(
                ErrorMetadata::builder()
                    .code("ValidationException")
                    .message("only RAW RSASSA_PKCS1_V1_5_SHA_256")
                    .build(),
            ));
        };
        let signature = SigningKey::<Sha256>::new(imported.material.clone()).sign(message.as_ref()).to_vec();
        MockResponse::Output(
            SignOutput::builder()
                .key_id(format!("arn:aws:kms:us-east-1:123456789012:key/{key}"))
                .signature(Blob::new(signature))
                .signing_algorithm(SigningAlgorithmSpec::RsassaPkcs1V15Sha256)
                .build(),
        )
    }
}

/// The metadata AWS's answer would carry: its error code and message.
fn meta(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

/// Unwraps an `ImportKeyMaterial` upload: RSA-OAEP-SHA-256(AES key, 512 bytes) || KWP(material).
fn unwrap(blob: &[u8]) -> Option<Vec<u8>> {
    let (wrapped_key, wrapped_material) = (blob.get(..512)?, blob.get(512..)?);
    let aes_key = wrapping_key().decrypt(Oaep::new::<Sha256>(), wrapped_key).ok()?;
    let kwp = KwpAes256::new_from_slice(&aes_key).ok()?;
    let mut out = vec![0u8; wrapped_material.len().checked_sub(8)?];
    kwp.unwrap_key(wrapped_material, &mut out).ok().map(<[u8]>::to_vec)
}

fn now() -> i64 {
    appcreds_core::domain::clock::Clock::now(&appcreds_core::domain::clock::SystemClock)
}

/// The `Status` and `AppcredsScope` tags a `CreateKey` request carried, kept until its answer
/// names the key.
#[derive(Debug, Clone)]
struct CreatedStatus(Option<String>, Option<String>);

impl Storable for CreatedStatus {
    type Storer = StoreReplace<Self>;
}

/// Follows tags and key state of the keys this client touches.
#[derive(Debug)]
struct Observer(KmsImport);

impl Intercept for Observer {
    fn name(&self) -> &'static str {
        "KmsImportObserver"
    }

    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input();
        let mut state = self.0.state();
        let tag_of = |tags: &[aws_sdk_kms::types::Tag], name: &str| {
            tags.iter().find(|t| t.tag_key() == name).map(|t| t.tag_value().to_string())
        };
        let status_of = |tags: &[aws_sdk_kms::types::Tag]| tag_of(tags, "Status");
        if let Some(create) = input.downcast_ref::<CreateKeyInput>() {
            let created = CreatedStatus(status_of(create.tags()), tag_of(create.tags(), "AppcredsScope"));
            cfg.interceptor_state().store_put(created);
        } else if let Some(tag) = input.downcast_ref::<TagResourceInput>() {
            if let Some(status) = status_of(tag.tags()) {
                state.set_status(key_id(tag.key_id().unwrap_or_default()), status);
            }
        } else {
            let change = if let Some(i) = input.downcast_ref::<ScheduleKeyDeletionInput>() {
                Some((i.key_id(), KeyState::PendingDeletion))
            } else if let Some(i) = input.downcast_ref::<CancelKeyDeletionInput>() {
                Some((i.key_id(), KeyState::Disabled))
            } else if let Some(i) = input.downcast_ref::<DisableKeyInput>() {
                Some((i.key_id(), KeyState::Disabled))
            } else {
                input.downcast_ref::<EnableKeyInput>().map(|i| (i.key_id(), KeyState::Enabled))
            };
            if let Some((key, new_state)) = change
                && let Some(imported) = state.imported.get_mut(&key_id(key.unwrap_or_default()))
            {
                imported.state = new_state;
            }
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(CreatedStatus(Some(status), scope)) = cfg.load::<CreatedStatus>().cloned() else {
            return Ok(());
        };
        let created = context
            .output_or_error()
            .and_then(|r| r.ok())
            .and_then(|out| out.downcast_ref::<CreateKeyOutput>())
            .and_then(|out| out.key_metadata())
            .map(|m| m.key_id().to_string());
        if let Some(key) = created {
            let mut state = self.0.state();
            if let Some(scope) = scope {
                state.scope.insert(key.clone(), scope);
            }
            state.set_status(key, status);
        }
        Ok(())
    }
}
