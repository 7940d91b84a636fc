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
//! - For a stack operator's client ([`Caller::StackOperator`]), every request the stack's
//!   `OperatorPolicy` refuses - any operation on a key of another scope, a new key with other
//!   tags, a change of a key's `AppcredsScope` or managed tag - is answered `AccessDeniedException`
//!   by a rule, and never sent: moto and the observer see nothing of it.
//!
//! Every other operation (CreateKey, TagResource, DescribeKey, ScheduleKeyDeletion, ...) is
//! answered by moto; an observer on the same client follows the imported keys' tags and state.
//! (The answered requests reach moto too, as the mocks' passthrough works; its answers to them
//! are replaced. The refused ones do not: the emulation's clients reach moto through a connection
//! that answers them itself.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use aes_kw::{KeyInit, KwpAes256};
use aws_config::SdkConfig;
use aws_sdk_kms::error::ErrorMetadata;
use aws_sdk_kms::operation::cancel_key_deletion::{CancelKeyDeletionError, CancelKeyDeletionInput};
use aws_sdk_kms::operation::create_key::{CreateKeyError, CreateKeyInput, CreateKeyOutput};
use aws_sdk_kms::operation::describe_key::{DescribeKeyError, DescribeKeyInput};
use aws_sdk_kms::operation::disable_key::{DisableKeyError, DisableKeyInput};
use aws_sdk_kms::operation::enable_key::{EnableKeyError, EnableKeyInput};
use aws_sdk_kms::operation::get_parameters_for_import::{
    GetParametersForImportError, GetParametersForImportInput, GetParametersForImportOutput,
};
use aws_sdk_kms::operation::get_public_key::{GetPublicKeyError, GetPublicKeyInput, GetPublicKeyOutput};
use aws_sdk_kms::operation::import_key_material::{
    ImportKeyMaterialError, ImportKeyMaterialInput, ImportKeyMaterialOutput,
};
use aws_sdk_kms::operation::list_resource_tags::{ListResourceTagsError, ListResourceTagsInput};
use aws_sdk_kms::operation::schedule_key_deletion::{ScheduleKeyDeletionError, ScheduleKeyDeletionInput};
use aws_sdk_kms::operation::sign::{SignError, SignInput, SignOutput};
use aws_sdk_kms::operation::tag_resource::{TagResourceError, TagResourceInput};
use aws_sdk_kms::operation::untag_resource::{UntagResourceError, UntagResourceInput};
use aws_sdk_kms::primitives::{Blob, DateTime};
use aws_sdk_kms::types::error::{
    DisabledException, IncorrectKeyMaterialException, InvalidImportTokenException, KmsInvalidStateException,
};
use aws_sdk_kms::types::{
    AlgorithmSpec, ExpirationModelType, KeySpec, KeyUsageType, MessageType, OriginType, SigningAlgorithmSpec,
    WrappingKeySpec,
};
use aws_smithy_mocks::{MockResponse, MockResponseInterceptor, Rule, RuleMode, mock};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextMut, FinalizerInterceptorContextRef,
    Input,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey};
use sha2::Sha256;

use crate::aws::CallCounter;

/// Whose client: an operator without the stack's policy (an administrator: IAM without tag
/// conditions), a stack's operator (its `OperatorPolicy`), or a function (`kms:Sign` only on keys
/// tagged `Status=Active`, as the template and the key policy grant it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Operator,
    /// An operator holding the `OperatorPolicy` of a stack with this `SigningKeyScope` (`None`: a
    /// stack without one). As the template's policy does, it is refused every operation on a key
    /// without the managed tag or of another scope (an unscoped stack's operator: any key that
    /// has an `AppcredsScope`; a scoped one's: any key without its own), a new key with other
    /// tags than `appcreds key import` gives, a tag change other than `Status`, `ReplacedBy` and
    /// `ReplacedOn` (with `Status` one of Active, Inactive, Failed), any `UntagResource`, and a
    /// signature other than the import's proof (RAW, RSASSA_PKCS1_V1_5_SHA_256, while the key is
    /// `Status=Importing`). The keys it knows are those created through this emulation.
    StackOperator(Option<&'static str>),
    Function,
}

/// The tag every App key carries.
const MANAGED_TAG: &str = "FrameworkForGitHubAppOnAwsManaged";
/// The tag that scopes a key to one stack.
const SCOPE_TAG: &str = "AppcredsScope";

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
    /// Keys created with `FrameworkForGitHubAppOnAwsManaged=true`.
    managed: std::collections::HashSet<String>,
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
        let observer = Observer { kms: self.clone(), caller };
        // moto, except for what a stack operator is refused (see `Gate`).
        let gate = Gate(reqwest::Client::new());
        let gated = http_client_fn(move |_, _| SharedHttpConnector::new(gate.clone()));
        aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::config::Builder::from(sdk)
                .http_client(gated)
                // The answered operations reach moto too, which fails them (HTTP 500); a retry
                // would ask the rules again without an input. moto itself needs no retries.
                .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
                .interceptor(mocks)
                .interceptor(observer)
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

    /// Why the `OperatorPolicy` of a stack of `scope` refuses this request, if it does (see
    /// [`Caller::StackOperator`]); `None` for a request it allows or does not govern.
    fn operator_refusal(&self, scope: Option<&str>, input: &impl Downcast) -> Option<String> {
        let denied = |why: String| Some(format!("not authorized by the stack's operator policy: {why}"));
        if let Some(create) = input.get::<CreateKeyInput>() {
            let tags: HashMap<&str, &str> = create.tags().iter().map(|t| (t.tag_key(), t.tag_value())).collect();
            let allowed = [MANAGED_TAG, "Status", "AppId", "CreatedOn", SCOPE_TAG];
            let app_key = create.key_spec() == Some(&KeySpec::Rsa2048)
                && create.key_usage() == Some(&KeyUsageType::SignVerify)
                && create.origin() == Some(&OriginType::External);
            return if !app_key {
                denied("kms:CreateKey of a key that is no imported RSA_2048 signing key".into())
            } else if tags.get(MANAGED_TAG) != Some(&"true") || tags.get("Status") != Some(&"Importing") {
                denied("kms:CreateKey without FrameworkForGitHubAppOnAwsManaged=true and Status=Importing".into())
            } else if tags.get(SCOPE_TAG).copied() != scope {
                denied(format!("kms:CreateKey with {SCOPE_TAG}={:?} (the stack's: {scope:?})", tags.get(SCOPE_TAG)))
            } else if let Some(other) = tags.keys().find(|k| !allowed.contains(k)) {
                denied(format!("kms:TagResource of a new key with the tag {other}"))
            } else {
                None
            };
        }
        let (action, key) = key_operation(input)?;
        let state = self.state();
        let key = key_id(key);
        if !state.managed.contains(&key) || state.scope.get(&key).map(String::as_str) != scope {
            return denied(format!(
                "{action} on a key of {SCOPE_TAG}={:?} (the stack's: {scope:?})",
                state.scope.get(&key)
            ));
        }
        if let Some(tag) = input.get::<TagResourceInput>() {
            let keys: Vec<&str> = tag.tags().iter().map(|t| t.tag_key()).collect();
            if let Some(kept) = keys.iter().find(|k| [SCOPE_TAG, MANAGED_TAG].contains(k)) {
                return denied(format!("kms:TagResource of {kept} on an existing App key (an explicit deny)"));
            }
            if let Some(other) = keys.iter().find(|k| !["Status", "ReplacedBy", "ReplacedOn"].contains(k)) {
                return denied(format!("kms:TagResource of {other} on an existing App key"));
            }
            let status = tag.tags().iter().find(|t| t.tag_key() == "Status").map(|t| t.tag_value());
            if !matches!(status, Some("Active" | "Inactive" | "Failed")) {
                return denied(format!("kms:TagResource with Status {status:?} (Active, Inactive or Failed)"));
            }
        }
        if input.get::<UntagResourceInput>().is_some() {
            return denied("kms:UntagResource".into());
        }
        if let Some(sign) = input.get::<SignInput>() {
            let proof = sign.signing_algorithm() == Some(&SigningAlgorithmSpec::RsassaPkcs1V15Sha256)
                && sign.message_type().is_none_or(|t| *t == MessageType::Raw);
            if !proof {
                return denied("kms:Sign other than a RAW message with RSASSA_PKCS1_V1_5_SHA_256".into());
            }
            if state.authorizing_status(&key) != Some("Importing") {
                return denied("kms:Sign with a key that is not Status=Importing (only the import's proof)".into());
            }
        }
        if ["kms:CancelKeyDeletion", "kms:DisableKey", "kms:EnableKey"].contains(&action) {
            return denied(action.into());
        }
        None
    }

    /// The rules that answer what a stack operator is refused, before any other rule.
    fn refusals(&self, scope: Option<&'static str>) -> Vec<Rule> {
        macro_rules! refused {
            ($operation:expr, $error:ident) => {{
                let (matcher, answer) = (self.clone(), self.clone());
                mock!($operation)
                    .match_requests(move |input| matcher.operator_refusal(scope, &Typed(input)).is_some())
                    .then_compute_response(move |input| {
                        let why = answer.operator_refusal(scope, &Typed(input)).unwrap_or_default();
                        MockResponse::Error($error::generic(meta("AccessDeniedException", &why)))
                    })
            }};
        }
        vec![
            refused!(aws_sdk_kms::Client::create_key, CreateKeyError),
            refused!(aws_sdk_kms::Client::sign, SignError),
            refused!(aws_sdk_kms::Client::tag_resource, TagResourceError),
            refused!(aws_sdk_kms::Client::untag_resource, UntagResourceError),
            refused!(aws_sdk_kms::Client::schedule_key_deletion, ScheduleKeyDeletionError),
            refused!(aws_sdk_kms::Client::cancel_key_deletion, CancelKeyDeletionError),
            refused!(aws_sdk_kms::Client::disable_key, DisableKeyError),
            refused!(aws_sdk_kms::Client::enable_key, EnableKeyError),
            refused!(aws_sdk_kms::Client::get_parameters_for_import, GetParametersForImportError),
            refused!(aws_sdk_kms::Client::import_key_material, ImportKeyMaterialError),
            refused!(aws_sdk_kms::Client::get_public_key, GetPublicKeyError),
            refused!(aws_sdk_kms::Client::describe_key, DescribeKeyError),
            refused!(aws_sdk_kms::Client::list_resource_tags, ListResourceTagsError),
        ]
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
        let mut rules = match caller {
            Caller::StackOperator(scope) => self.refusals(scope),
            Caller::Operator | Caller::Function => Vec::new(),
        };
        rules.extend([parameters, import, sign, public]);
        rules
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

/// The `Status` and `AppcredsScope` tags a `CreateKey` request carried, and whether it had the
/// managed tag, kept until its answer names the key.
#[derive(Debug, Clone)]
struct CreatedStatus(Option<String>, Option<String>, bool);

impl Storable for CreatedStatus {
    type Storer = StoreReplace<Self>;
}

/// A request the stack operator's policy refuses: answered by a rule, never sent.
#[derive(Debug, Clone)]
struct Refused(String);

impl Storable for Refused {
    type Storer = StoreReplace<Self>;
}

/// The emulation's HTTP connection: to moto, except a request a stack operator is refused (the
/// observer marks it), which is answered here with KMS's AccessDeniedException and never sent.
/// The refusing rule's answer then replaces this one (an operation's answer, even a rule's, needs
/// a response to have been received, so the request cannot simply be dropped).
#[derive(Debug, Clone)]
struct Gate(reqwest::Client);

impl HttpConnector for Gate {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        if let Some(Refused(why)) = request.extension::<Refused>() {
            let body = serde_json::json!({"__type": "AccessDeniedException", "message": why}).to_string();
            let mut response = HttpResponse::new(StatusCode::try_from(400).expect("a status"), SdkBody::from(body));
            response.headers_mut().insert("content-type", "application/x-amz-json-1.1");
            return HttpConnectorFuture::ready(Ok(response));
        }
        let http = self.0.clone();
        HttpConnectorFuture::new(async move {
            let other = |e: BoxError| ConnectorError::other(e, None);
            let method = reqwest::Method::from_bytes(request.method().as_bytes()).map_err(|e| other(e.into()))?;
            let mut sent = http.request(method, request.uri());
            for (name, value) in request.headers() {
                if !name.eq_ignore_ascii_case("host") && !name.eq_ignore_ascii_case("content-length") {
                    sent = sent.header(name, value);
                }
            }
            let body = request.body().bytes().ok_or_else(|| other("a streaming request body".into()))?.to_vec();
            let answer = sent.body(body).send().await.map_err(|e| ConnectorError::io(e.into()))?;
            let status = StatusCode::try_from(answer.status().as_u16()).map_err(|e| other(e.into()))?;
            let headers: Vec<(String, String)> = answer
                .headers()
                .iter()
                .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
                .collect();
            let bytes = answer.bytes().await.map_err(|e| ConnectorError::io(e.into()))?;
            let mut response = HttpResponse::new(status, SdkBody::from(bytes.to_vec()));
            for (name, value) in headers {
                response.headers_mut().append(name, value);
            }
            Ok(response)
        })
    }
}

/// Finds an operation's input by its type, in a typed or a type-erased input.
trait Downcast {
    fn get<T: std::fmt::Debug + Send + Sync + 'static>(&self) -> Option<&T>;
}

impl Downcast for Input {
    fn get<T: std::fmt::Debug + Send + Sync + 'static>(&self) -> Option<&T> {
        self.downcast_ref::<T>()
    }
}

/// A mock rule's typed input.
struct Typed<'a>(&'a dyn std::any::Any);

impl Downcast for Typed<'_> {
    fn get<T: std::fmt::Debug + Send + Sync + 'static>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

/// The IAM action and the key of a key resource operation the operator policy governs.
fn key_operation(input: &impl Downcast) -> Option<(&'static str, &str)> {
    macro_rules! on_key {
        ($($input:ty => $action:literal),+ $(,)?) => {
            $(if let Some(i) = input.get::<$input>() {
                return Some(($action, i.key_id().unwrap_or_default()));
            })+
        };
    }
    on_key!(
        SignInput => "kms:Sign",
        TagResourceInput => "kms:TagResource",
        UntagResourceInput => "kms:UntagResource",
        ScheduleKeyDeletionInput => "kms:ScheduleKeyDeletion",
        CancelKeyDeletionInput => "kms:CancelKeyDeletion",
        DisableKeyInput => "kms:DisableKey",
        EnableKeyInput => "kms:EnableKey",
        GetParametersForImportInput => "kms:GetParametersForImport",
        ImportKeyMaterialInput => "kms:ImportKeyMaterial",
        GetPublicKeyInput => "kms:GetPublicKey",
        DescribeKeyInput => "kms:DescribeKey",
        ListResourceTagsInput => "kms:ListResourceTags",
    );
    None
}

/// Follows tags and key state of the keys this client touches; for a stack operator, keeps the
/// requests its policy refuses from being sent (a rule answers them) and from counting.
#[derive(Debug)]
struct Observer {
    kms: KmsImport,
    caller: Caller,
}

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
        if let Caller::StackOperator(scope) = self.caller
            && let Some(why) = self.kms.operator_refusal(scope, input)
        {
            cfg.interceptor_state().store_put(Refused(why));
            return Ok(());
        }
        let mut state = self.kms.state();
        let tag_of = |tags: &[aws_sdk_kms::types::Tag], name: &str| {
            tags.iter().find(|t| t.tag_key() == name).map(|t| t.tag_value().to_string())
        };
        let status_of = |tags: &[aws_sdk_kms::types::Tag]| tag_of(tags, "Status");
        if let Some(create) = input.downcast_ref::<CreateKeyInput>() {
            let managed = tag_of(create.tags(), MANAGED_TAG).as_deref() == Some("true");
            let created = CreatedStatus(status_of(create.tags()), tag_of(create.tags(), SCOPE_TAG), managed);
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

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // The gate keeps it from moto.
        if let Some(refused) = cfg.load::<Refused>() {
            context.request_mut().add_extension(refused.clone());
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(CreatedStatus(Some(status), scope, managed)) = cfg.load::<CreatedStatus>().cloned() else {
            return Ok(());
        };
        let created = context
            .output_or_error()
            .and_then(|r| r.ok())
            .and_then(|out| out.downcast_ref::<CreateKeyOutput>())
            .and_then(|out| out.key_metadata())
            .map(|m| m.key_id().to_string());
        if let Some(key) = created {
            let mut state = self.kms.state();
            if let Some(scope) = scope {
                state.scope.insert(key.clone(), scope);
            }
            if managed {
                state.managed.insert(key.clone());
            }
            state.set_status(key, status);
        }
        Ok(())
    }
}
