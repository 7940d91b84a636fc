#![allow(clippy::unwrap_used)]
//! **(ext)** The App JWT one function signs for the others: two "functions" (each its own
//! services and caches) on one moto server, the entry in the lease table, encrypted with a
//! symmetric KMS key.

use std::sync::Arc;

use appcreds_core::aws::app_table::DynamoAppStore;
use appcreds_core::aws::kms::KmsVault;
use appcreds_core::aws::shared_jwt::{DynamoSharedJwts, item_key};
use appcreds_core::domain::clock::SystemClock;
use appcreds_core::domain::jwt::{self, Claims, Issuer, LIFETIME_SECS};
use appcreds_core::ports::{ClaimIf, JwtClaim, JwtShare, RowAndItem, SharedItem, SharedJwt, SharedJwts, Signer, Vault};
use appcreds_core::tokens::app_jwt::AppJwts;
use appcreds_core::{Secret, Services};
use appcreds_testkit::aws;
use appcreds_testkit::fault_proxy::FaultProxy;
use appcreds_tests::github::jwt::{public_key, verify_rs256};
use appcreds_tests::lambda::UrlRequest;
use appcreds_tests::{Logs, Stack, endpoint, send};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;

const APP: i64 = 2000;

/// A stack with the App's installations, the lease table and the key that encrypts the share.
struct Fleet {
    stack: Stack,
    table: String,
    key: String,
}

impl Fleet {
    async fn start(app: i64) -> Fleet {
        let stack = Stack::with_installations(app).await;
        let table = appcreds_tests::unique("leases");
        aws::create_lease_table(&stack.ddb, &table).await.unwrap();
        let key = aws::create_vault_key(&stack.kms).await.unwrap();
        Fleet { stack, table, key }
    }

    /// The ports of one cold function, on the counted clients, sharing its App JWTs.
    fn services(&self) -> Services {
        let mut services = self.stack.services();
        services.jwt_share = Some(JwtShare {
            store: Arc::new(
                DynamoSharedJwts::new(self.stack.counted_ddb(), &self.table).with_app_table(&self.stack.app_table),
            ),
            vault: Arc::new(KmsVault::new(self.stack.counted_kms(), &self.key)),
        });
        services
    }

    /// A cold function's App JWTs.
    fn jwts(&self) -> AppJwts {
        AppJwts::new(&self.services())
    }

    fn kms(&self, operation: &str) -> usize {
        self.stack.counter.count(operation)
    }

    async fn item(&self, app: i64) -> std::collections::HashMap<String, AttributeValue> {
        let out = self
            .stack
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("LeaseId", AttributeValue::S(item_key(app)))
            .send()
            .await
            .unwrap();
        out.item.unwrap_or_default()
    }

    /// A fault proxy in front of moto, and a cold function's ports whose App table and share go
    /// through it (the share reading the App row with its item if `batch`).
    async fn through_proxy(&self, batch: bool) -> (FaultProxy, Services) {
        let proxy = FaultProxy::start(self.stack.sdk.endpoint_url().unwrap()).await.unwrap();
        let ddb = aws_sdk_dynamodb::Client::new(&aws::sdk_config(&proxy.url()).await);
        let mut services = self.services();
        services.apps = Arc::new(DynamoAppStore::new(ddb.clone(), &self.stack.app_table));
        let store = DynamoSharedJwts::new(ddb, &self.table);
        let store = if batch { store.with_app_table(&self.stack.app_table) } else { store };
        services.jwt_share.as_mut().unwrap().store = Arc::new(store);
        (proxy, services)
    }

    /// A cold function's ports whose KMS `Sign` takes `secs` seconds, and what is notified as
    /// each signing starts.
    fn slow(&self, secs: u64) -> (Services, Arc<tokio::sync::Notify>) {
        let mut slow = self.services();
        let entered = Arc::new(tokio::sync::Notify::new());
        slow.signer = Arc::new(Slow(slow.signer.clone(), std::time::Duration::from_secs(secs), entered.clone()));
        (slow, entered)
    }

    /// The App's item once it has `attribute` (`present`) or not, or as it is after 5 s.
    async fn once(
        &self,
        app: i64,
        attribute: &str,
        present: bool,
    ) -> std::collections::HashMap<String, AttributeValue> {
        let mut item = self.item(app).await;
        for _ in 0..250 {
            if item.contains_key(attribute) == present {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            item = self.item(app).await;
        }
        item
    }

    /// Once the App's signing is claimed.
    async fn until_claimed(&self, app: i64) {
        while !self.item(app).await.contains_key("ClaimedBy") {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    async fn set(&self, app: i64, name: &str, value: AttributeValue) {
        self.stack
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("LeaseId", AttributeValue::S(item_key(app)))
            .update_expression("SET #a = :v")
            .expression_attribute_names("#a", name)
            .expression_attribute_values(":v", value)
            .send()
            .await
            .unwrap();
    }
}

/// Two cold functions: the first signs (and encrypts and writes the entry), the second decrypts
/// it: one `Sign` in all. Both mint installation tokens with it.
#[tokio::test]
async fn a_second_cold_function_takes_the_first_ones_jwt() {
    let fleet = Fleet::start(APP).await;
    let logs = Logs::capture();
    let first = fleet.jwts().get(APP).await.unwrap();
    assert_eq!((fleet.kms("Sign"), fleet.kms("Encrypt"), fleet.kms("Decrypt")), (1, 1, 0));
    let second = fleet.jwts().get(APP).await.unwrap();
    assert_eq!((fleet.kms("Sign"), fleet.kms("Decrypt")), (1, 1), "{:?}", fleet.stack.counter.snapshot());
    assert_eq!(second.token.expose(), first.token.expose());
    assert_eq!(second.expires_at, first.expires_at);
    let item = fleet.item(APP).await;
    assert!(!String::from_utf8_lossy(item["Jwt"].as_b().unwrap().as_ref()).contains(first.token.expose()));
    assert_eq!(item["ExpiresAt"], AttributeValue::N(first.expires_at.to_string()), "the TTL is the JWT's");

    // Two installation-token functions: one Sign between them, and both answer.
    fleet.stack.counter.reset();
    let other =
        Fleet { stack: Stack::with_installations(APP + 1).await, table: fleet.table.clone(), key: fleet.key.clone() };
    for _ in 0..2 {
        let handler = endpoint(appcreds_core::ops::installation_token::InstallationToken::new(&other.services()));
        let reply = send(
            |r| handler.handle(r),
            UrlRequest::post_json("/tokens/installation", &json!({"appId": APP + 1, "owner": "octo-org"})),
        )
        .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
    }
    assert_eq!((other.kms("Sign"), other.kms("Decrypt")), (1, 1), "{:?}", other.stack.counter.snapshot());
    // Entries are never logged, nor the JWT.
    let sealed =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, item["Jwt"].as_b().unwrap().as_ref());
    let text = logs.text();
    assert!(!text.contains(first.token.expose()) && !text.contains(&sealed[..40]), "{text}");
}

/// A cold function reads the App row and the shared item in one request (`BatchGetItem`): one
/// round trip to the tables before it decrypts (or signs), and no `GetItem` of either.
#[tokio::test]
async fn the_app_row_and_the_shared_item_come_in_one_request() {
    let fleet = Fleet::start(APP).await;
    let (proxy, services) = fleet.through_proxy(true).await;
    // As installation-token and the jobs ask (`get`), then as app-token (`get_decided`), each cold.
    let first = AppJwts::new(&services).get(APP).await.unwrap();
    let allowed = async { Ok::<_, appcreds_core::Error>("allowed") };
    let (decision, second) = AppJwts::new(&services).get_decided(APP, allowed).await.unwrap();
    let reads: Vec<_> = proxy.calls().into_iter().filter(|(op, _)| op.contains("Get")).collect();
    assert_eq!(reads, [("DynamoDB_20120810.BatchGetItem".to_string(), 2)]);
    // The row as the App store reads it (its attributes); the item strongly consistent.
    let batch = &proxy.bodies("DynamoDB_20120810.BatchGetItem")[0]["RequestItems"];
    let (row, item) = (&batch[&fleet.stack.app_table], &batch[&fleet.table]);
    assert_eq!(row["Keys"], json!([{"AppId": {"N": APP.to_string()}}]));
    assert_eq!(row["ProjectionExpression"], "AppId, KmsKeyArn, PreviousKmsKeyArn, PreviousKeyUsableUntil, ClientId");
    assert_eq!(row.get("ConsistentRead"), None);
    assert_eq!((&item["Keys"], &item["ConsistentRead"]), (&json!([{"LeaseId": {"S": item_key(APP)}}]), &json!(true)));
    assert_eq!((decision, second.token.expose()), ("allowed", first.token.expose()));
    assert_eq!((fleet.kms("Sign"), fleet.kms("Decrypt")), (1, 1));
    // An App without a row is no App, read the same way.
    let unknown = AppJwts::new(&services).get(APP + 999).await;
    assert!(matches!(unknown, Err(appcreds_core::Error::UnknownApp(id)) if id == APP + 999), "{unknown:?}");
    assert_eq!(proxy.calls()["DynamoDB_20120810.BatchGetItem"], 3);
}

/// A `BatchGetItem` refused (a role from before it was granted) or failing: the row and the item
/// are each read on their own, and the JWT is made and shared as before.
#[tokio::test]
async fn a_failed_batch_read_falls_back_to_reading_each() {
    let fleet = Fleet::start(APP).await;
    let (proxy, services) = fleet.through_proxy(true).await;
    proxy.inject("DynamoDB_20120810.BatchGetItem", 1, 400, "AccessDeniedException");
    let logs = Logs::capture();
    let first = AppJwts::new(&services).get(APP).await.unwrap();
    let calls = proxy.calls();
    let count = |op: &str| calls.get(op).copied().unwrap_or(0);
    let reads = (
        count("DynamoDB_20120810.BatchGetItem"),
        count(&format!("DynamoDB_20120810.GetItem {}", fleet.stack.app_table)),
        count(&format!("DynamoDB_20120810.GetItem {}", fleet.table)),
    );
    assert_eq!(reads, (1, 1, 1), "{calls:?}");
    assert!(logs.text().contains("reading the App row and the shared App JWT one at a time"), "{}", logs.text());
    // Shared all the same: the next cold function's batch succeeds, and it decrypts.
    let second = AppJwts::new(&services).get(APP).await.unwrap();
    assert_eq!(second.token.expose(), first.token.expose());
    assert_eq!((fleet.kms("Sign"), fleet.kms("Decrypt")), (1, 1));
    assert_eq!(proxy.calls()["DynamoDB_20120810.BatchGetItem"], 2);
}

/// Without the App table given to the share's store, a cold function reads the App row and the
/// shared item side by side: one round trip to the tables before it decrypts (or signs), not two.
/// At the wire, each read is held until the other has come (or 10 s: a function that read them
/// one after the other would show it there).
#[tokio::test]
async fn the_app_row_and_the_shared_item_are_read_at_once() {
    let fleet = Fleet::start(APP).await;
    let (proxy, services) = fleet.through_proxy(false).await;
    let read = |table: &str| format!("DynamoDB_20120810.GetItem {table}");
    proxy.meet(&read(&fleet.stack.app_table), &read(&fleet.table));
    // As installation-token and the jobs ask (`get`), then as app-token (`get_decided`), each cold.
    let first = AppJwts::new(&services).get(APP).await.unwrap();
    let allowed = async { Ok::<_, appcreds_core::Error>("allowed") };
    let (decision, second) = AppJwts::new(&services).get_decided(APP, allowed).await.unwrap();
    assert_eq!(proxy.released(), [true; 4], "{:?}", proxy.calls());
    assert_eq!((decision, second.token.expose()), ("allowed", first.token.expose()));
    assert_eq!((fleet.kms("Sign"), fleet.kms("Decrypt")), (1, 1));
}

/// A JWT GitHub refused is replaced in the share by the next one this function makes, even within
/// the second its row read (and the shared item read with it, from before that JWT) is kept.
#[tokio::test]
async fn a_refused_jwt_is_replaced_in_the_share_at_once() {
    let fleet = Fleet::start(APP).await;
    let jwts = fleet.jwts();
    let allowed = || async { Ok::<_, appcreds_core::Error>(()) };
    let (_, refused) = jwts.get_decided(APP, allowed()).await.unwrap();
    // As after GitHub's 401 for it.
    jwts.invalidate(APP).await;
    let (_, second) = jwts.get_decided(APP, allowed()).await.unwrap();
    // Signed again and shared (encrypted for the entry), not signed for this function alone. (In
    // the same second, RSA signs the same claims into the same bytes.)
    assert_eq!((fleet.kms("Sign"), fleet.kms("Encrypt")), (2, 2), "{:?}", fleet.stack.counter.snapshot());
    assert!(second.expires_at >= refused.expires_at);
    // A cold function takes the new entry.
    let third = fleet.jwts().get(APP).await.unwrap();
    assert_eq!((third.token.expose(), fleet.kms("Sign")), (second.token.expose(), 2));
}

/// Cold functions that all miss at once: one claims the signing and the others wait for it.
#[tokio::test]
async fn concurrent_cold_functions_sign_at_most_twice() {
    let fleet = Fleet::start(APP + 10).await;
    let mut functions = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let jwts = fleet.jwts();
        functions.spawn(async move { jwts.get(APP + 10).await.unwrap().token.expose().to_string() });
    }
    let tokens: std::collections::BTreeSet<String> = functions.join_all().await.into_iter().collect();
    assert!(fleet.kms("Sign") <= 2, "{:?}", fleet.stack.counter.snapshot());
    assert!(tokens.len() <= 2, "{}", tokens.len());
}

/// The App's key was rotated: an entry signed with the old key is not taken; the new one is
/// signed with the current key and replaces it.
#[tokio::test]
async fn an_entry_for_a_rotated_key_is_not_used() {
    let app = APP + 20;
    let fleet = Fleet::start(app).await;
    fleet.jwts().get(app).await.unwrap();
    let old = fleet.item(app).await["KeyArn"].as_s().unwrap().clone();
    let new = aws::create_app_key(&fleet.stack.kms, app).await.unwrap();
    fleet.stack.github.add_app_key(app, &new.public_key_der).unwrap();
    aws::put_app(&fleet.stack.ddb, &fleet.stack.app_table, app, Some(&new.arn)).await.unwrap();
    fleet.stack.counter.reset();
    let jwt = fleet.jwts().get(app).await.unwrap();
    assert_eq!((fleet.kms("Sign"), fleet.kms("Decrypt")), (1, 0), "{:?}", fleet.stack.counter.snapshot());
    verify_rs256(&public_key(&new.public_key_der).unwrap(), jwt.token.expose()).expect("signed with the new key");
    let item = fleet.item(app).await;
    assert_eq!(item["KeyArn"].as_s().unwrap(), &new.arn);
    assert_ne!(&old, &new.arn);
}

/// Entries that are broken (garbage, a bad shape, or copied to another expiry or App, which the
/// encryption context refuses; or a JWT that is not the App's for the entry's expiry, though
/// under the right context): the function signs, answers, and replaces the entry.
#[tokio::test]
async fn a_broken_entry_falls_back_to_signing_and_is_replaced() {
    let app = APP + 30;
    let fleet = Fleet::start(app).await;
    let logs = Logs::capture();
    let original = fleet.jwts().get(app).await.unwrap();
    let good = fleet.item(app).await;
    // Another App's entry, copied over this one's.
    let other = APP + 31;
    fleet.stack.add_app(other).await;
    fleet.jwts().get(other).await.unwrap();
    let copied = fleet.item(other).await["Jwt"].clone();
    let exp = good["JwtExpiresAt"].as_n().unwrap().parse::<i64>().unwrap();
    // Plausible JWTs sealed under this entry's own context: KMS opens them, the claims do not fit.
    let vault = KmsVault::new(fleet.stack.kms.clone(), &fleet.key);
    let (app_text, exp_text) = (app.to_string(), exp.to_string());
    let context = [
        ("appcreds:AppId", app_text.as_str()),
        ("appcreds:KeyArn", good["KeyArn"].as_s().unwrap()),
        ("appcreds:ExpiresAt", &exp_text),
    ];
    let fits = Claims::for_app(app, exp - LIFETIME_SECS);
    let mut sealed = Vec::new();
    for claims in [
        Claims { iss: Issuer::AppId(other), ..fits.clone() },
        Claims { exp: exp + 60, ..fits.clone() },
        Claims { iat: fits.iat - 120, ..fits.clone() },
        Claims { iss: Issuer::ClientId("Iv23liOther".into()), ..fits.clone() },
    ] {
        let jwt = Secret::new(jwt::assemble(&claims.signing_input(), b"signature"));
        sealed.push(AttributeValue::B(Blob::new(vault.seal(&context, &jwt).await.unwrap())));
    }
    let [another_iss, another_exp, another_life, a_client_id] = sealed.try_into().unwrap();
    // The control: the claims that fit, sealed the same way, are taken.
    let fitting = Secret::new(jwt::assemble(&fits.signing_input(), b"signature"));
    fleet.set(app, "Jwt", AttributeValue::B(Blob::new(vault.seal(&context, &fitting).await.unwrap()))).await;
    assert_eq!(fleet.jwts().get(app).await.unwrap().token.expose(), fitting.expose(), "the claims that fit");
    let tampered: Vec<(&str, &str, AttributeValue)> = vec![
        ("garbage", "Jwt", AttributeValue::B(Blob::new(b"not a ciphertext".to_vec()))),
        ("bad shape", "Jwt", AttributeValue::S("eyJ.not.binary".into())),
        ("another expiry", "JwtExpiresAt", AttributeValue::N((exp + 1).to_string())),
        ("another App's", "Jwt", copied),
        ("another App's JWT under this context", "Jwt", another_iss),
        ("a JWT of another exp under this context", "Jwt", another_exp),
        ("a JWT of another lifetime under this context", "Jwt", another_life),
        ("a JWT by a client ID the App does not have", "Jwt", a_client_id),
    ];
    for (what, attribute, value) in tampered {
        fleet.stack.counter.reset();
        fleet.set(app, "Jwt", good["Jwt"].clone()).await;
        fleet.set(app, "JwtExpiresAt", good["JwtExpiresAt"].clone()).await;
        fleet.set(app, attribute, value).await;
        let handler = endpoint(appcreds_core::ops::app_token::AppToken::new(&fleet.services()));
        let reply = send(|r| handler.handle(r), UrlRequest::post_json("/tokens/app", &json!({"appId": app}))).await;
        assert_eq!(reply.status, 200, "{what}: {:?}", reply.body);
        assert_eq!(fleet.kms("Sign"), 1, "{what}: {:?}", fleet.stack.counter.snapshot());
        let token = reply.body["appToken"].as_str().unwrap().to_string();
        // Replaced: the next cold function takes the new one without signing.
        fleet.stack.counter.reset();
        let next = fleet.jwts().get(app).await.unwrap();
        assert_eq!((fleet.kms("Sign"), fleet.kms("Decrypt")), (0, 1), "{what}: {:?}", fleet.stack.counter.snapshot());
        assert_eq!(next.token.expose(), token, "{what}");
    }
    assert!(!logs.text().contains(original.token.expose()));
}

/// KMS refuses to decrypt (here: the function is given a key KMS does not have): the function
/// signs its own, and answers.
#[tokio::test]
async fn a_failing_decrypt_falls_back_to_signing() {
    let app = APP + 40;
    let fleet = Fleet::start(app).await;
    fleet.jwts().get(app).await.unwrap();
    fleet.stack.counter.reset();
    let mut services = fleet.services();
    let missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000";
    services.jwt_share.as_mut().unwrap().vault = Arc::new(KmsVault::new(fleet.stack.counted_kms(), missing));
    let handler = endpoint(appcreds_core::ops::app_token::AppToken::new(&services));
    let reply = send(|r| handler.handle(r), UrlRequest::post_json("/tokens/app", &json!({"appId": app}))).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!((fleet.kms("Decrypt"), fleet.kms("Sign")), (1, 1), "{:?}", fleet.stack.counter.snapshot());
}

/// What moto (as KMS) does with a ciphertext opened under another encryption context: refuses it.
#[tokio::test]
async fn a_ciphertext_opens_only_under_its_own_context() {
    let fleet = Fleet::start(APP + 50).await;
    let vault = KmsVault::new(fleet.stack.kms.clone(), &fleet.key);
    let context = [("appcreds:AppId", "1"), ("appcreds:KeyArn", "k"), ("appcreds:ExpiresAt", "100")];
    let sealed = vault.seal(&context, &Secret::new("a.b.c".to_string())).await.unwrap();
    assert_eq!(vault.open(&context, &sealed).await.unwrap().expose(), "a.b.c");
    for wrong in [
        [("appcreds:AppId", "2"), ("appcreds:KeyArn", "k"), ("appcreds:ExpiresAt", "100")],
        [("appcreds:AppId", "1"), ("appcreds:KeyArn", "other"), ("appcreds:ExpiresAt", "100")],
        [("appcreds:AppId", "1"), ("appcreds:KeyArn", "k"), ("appcreds:ExpiresAt", "101")],
    ] {
        assert!(vault.open(&wrong, &sealed).await.is_err(), "{wrong:?}");
    }
    assert!(vault.open(&context[..2], &sealed).await.is_err(), "a context missing a key");
}

/// Without the share (the CLI, old deployments), each function signs its own, as before.
#[tokio::test]
async fn without_the_share_each_function_signs() {
    let fleet = Fleet::start(APP + 60).await;
    let cold = || AppJwts::new(&fleet.stack.services_on(fleet.stack.counted_kms(), SystemClock));
    cold().get(APP + 60).await.unwrap();
    cold().get(APP + 60).await.unwrap();
    assert_eq!((fleet.kms("Sign"), fleet.kms("Decrypt")), (2, 0));
    assert!(fleet.item(APP + 60).await.is_empty());
}

/// A function that claims the signing but cannot sign (its KMS is unreachable) ends its claim:
/// the next cold function claims at once, signs and shares, without waiting for it to lapse.
#[tokio::test]
async fn a_holder_that_cannot_sign_ends_its_claim() {
    let app = APP + 70;
    let fleet = Fleet::start(app).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dead = appcreds_testkit::aws::sdk_config(&format!("http://{closed}")).await;
    let mut failing = fleet.stack.services_on(aws_sdk_kms::Client::new(&dead), SystemClock);
    failing.jwt_share = fleet.services().jwt_share;
    assert!(AppJwts::new(&failing).get(app).await.is_err());
    let item = fleet.item(app).await;
    assert!(!item.contains_key("ClaimedBy") && !item.contains_key("ClaimedUntil"), "the claim ended: {item:?}");
    fleet.stack.counter.reset();
    let jwt = fleet.jwts().get(app).await.unwrap();
    // The App row and the entry read once, together; the claim and the write: no wait.
    assert_eq!(
        (fleet.kms("Sign"), fleet.kms("BatchGetItem"), fleet.kms("GetItem"), fleet.kms("UpdateItem")),
        (1, 1, 0, 2),
        "{:?}",
        fleet.stack.counter.snapshot()
    );
    assert_eq!(fleet.item(app).await["JwtExpiresAt"], AttributeValue::N(jwt.expires_at.to_string()), "shared");
}

/// The seconds since the Unix epoch, now.
fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A claim sent again by its holder (the SDK resends an attempt whose answer is late, and the
/// first attempt may have claimed) is still its own: its holder signs, instead of waiting for
/// itself while every other function does too. Another holder's is refused all the same.
#[tokio::test]
async fn a_claim_resent_by_its_holder_is_its_own() {
    let app = APP + 130;
    let fleet = Fleet::start(app).await;
    let store = DynamoSharedJwts::new(fleet.stack.ddb.clone(), &fleet.table);
    let at = now();
    let claim = |holder: &'static str| store.claim(app, holder, at, at + 10, ClaimIf::Still(None));
    assert_eq!(claim("first").await.unwrap(), JwtClaim::Claimed);
    assert_eq!(claim("first").await.unwrap(), JwtClaim::Claimed, "resent");
    match claim("second").await.unwrap() {
        JwtClaim::Refused(item) => assert_eq!(item.claimed_until, Some(at + 10)),
        other => panic!("{other:?}"),
    }
    assert_eq!(fleet.item(app).await["ClaimedBy"], AttributeValue::S("first".into()));
    // So with the condition that the entry is not usable: resent, still the holder's; once a usable
    // entry is there, refused.
    let key = "arn:aws:kms:us-east-1:123456789012:key/k";
    let not_usable = ClaimIf::NotUsable { key_arn: key, after: at + 300 };
    let claim = |holder: &'static str| store.claim(app + 1, holder, at, at + 10, not_usable);
    assert_eq!(claim("first").await.unwrap(), JwtClaim::Claimed);
    assert_eq!(claim("first").await.unwrap(), JwtClaim::Claimed, "resent");
    let entry = SharedJwt { key_arn: key.into(), expires_at: at + 540, sealed: vec![1, 2, 3], slug: None };
    assert!(store.put(app + 1, "first", &entry).await.unwrap());
    match claim("first").await.unwrap() {
        JwtClaim::Refused(item) => assert_eq!(item.entry, Some(entry)),
        other => panic!("a usable entry is there: {other:?}"),
    }
}

/// Another holder's claim (never to write) that lapses while a function waits for it: the
/// function stops waiting when it lapses, claims the signing, signs and shares.
#[tokio::test]
async fn a_waiter_takes_over_a_claim_that_lapses() {
    let app = APP + 80;
    let fleet = Fleet::start(app).await;
    fleet.set(app, "ClaimedBy", AttributeValue::S("gone".into())).await;
    fleet.set(app, "ClaimedUntil", AttributeValue::N((now() + 1).to_string())).await;
    let jwt = fleet.jwts().get(app).await.unwrap();
    assert_eq!(fleet.kms("Sign"), 1, "{:?}", fleet.stack.counter.snapshot());
    let item = fleet.item(app).await;
    assert_eq!(item.get("JwtExpiresAt"), Some(&AttributeValue::N(jwt.expires_at.to_string())), "shared: {item:?}");
    assert!(!item.contains_key("ClaimedBy"), "{item:?}");
}

/// A claim further out than any a function makes (a clock ahead, or garbage) is no claim: the
/// function claims, signs and shares at once.
#[tokio::test]
async fn a_claim_far_in_the_future_is_ignored() {
    let app = APP + 90;
    let fleet = Fleet::start(app).await;
    fleet.set(app, "ClaimedBy", AttributeValue::S("skewed".into())).await;
    fleet.set(app, "ClaimedUntil", AttributeValue::N((now() + 3600).to_string())).await;
    let jwt = fleet.jwts().get(app).await.unwrap();
    let counts = (fleet.kms("Sign"), fleet.kms("BatchGetItem"), fleet.kms("GetItem"), fleet.kms("UpdateItem"));
    assert_eq!(counts, (1, 1, 0, 2), "no wait: {:?}", fleet.stack.counter.snapshot());
    let item = fleet.item(app).await;
    assert_eq!(item.get("JwtExpiresAt"), Some(&AttributeValue::N(jwt.expires_at.to_string())), "shared: {item:?}");
}

/// Too close to its deadline to wait and still sign and mint after (one attempt of its `Sign`, and
/// 3 s for the mint: 6 s), a function does not wait for another's claim: it signs its own at once.
#[tokio::test]
async fn no_wait_into_the_time_that_follows_it() {
    let app = APP + 100;
    let fleet = Fleet::start(app).await;
    fleet.set(app, "ClaimedBy", AttributeValue::S("busy".into())).await;
    fleet.set(app, "ClaimedUntil", AttributeValue::N((now() + 9).to_string())).await;
    let jwts = fleet.jwts();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(5_900);
    appcreds_core::deadline::within(deadline, jwts.get(app)).await.unwrap();
    let counts = (fleet.kms("Sign"), fleet.kms("BatchGetItem"), fleet.kms("GetItem"));
    assert_eq!(counts, (1, 1, 0), "the entry read once, no polling: {:?}", fleet.stack.counter.snapshot());
    assert!(!fleet.item(app).await.contains_key("Jwt"), "not shared: the claim is another's");
}

/// Signs as its inner signer does, `delay` later: a claimant held up by a slow KMS. Notifies
/// `entered` as each signing starts.
struct Slow(Arc<dyn Signer>, std::time::Duration, Arc<tokio::sync::Notify>);

#[async_trait::async_trait]
impl Signer for Slow {
    async fn sign(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>, appcreds_core::Error> {
        self.2.notify_one();
        tokio::time::sleep(self.1).await;
        self.0.sign(key_id, message).await
    }
}

/// A claimant whose `Sign` takes 5 s (a burst's queue, a throttled KMS): a function with Lambda's
/// 15 s deadline that finds its claim waits for it, past the first 5 s of its invocation, and
/// takes its JWT instead of adding a `Sign` of its own to the load. One `Sign` in all.
#[tokio::test]
async fn a_waiter_with_lambdas_deadline_outwaits_a_slow_claimant() {
    let app = APP + 120;
    let fleet = Fleet::start(app).await;
    let (slow, _) = fleet.slow(5);
    let claimant = tokio::spawn(async move { AppJwts::new(&slow).get(app).await.unwrap() });
    fleet.until_claimed(app).await;
    let started = tokio::time::Instant::now();
    let deadline = started + std::time::Duration::from_secs(15);
    let waited = appcreds_core::deadline::within(deadline, fleet.jwts().get(app)).await.unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(4_500), "it waited: {:?}", started.elapsed());
    let signed = claimant.await.unwrap();
    assert_eq!(waited.token.expose(), signed.token.expose());
    assert_eq!((fleet.kms("Sign"), fleet.kms("Decrypt")), (1, 1), "{:?}", fleet.stack.counter.snapshot());
}

/// A claimant whose JWT cannot be encrypted (its key is not found) answers with it, and ends its
/// claim: nothing is written for the others to wait for.
#[tokio::test]
async fn a_holder_that_cannot_share_ends_its_claim() {
    let app = APP + 110;
    let fleet = Fleet::start(app).await;
    let mut services = fleet.services();
    let missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000";
    services.jwt_share.as_mut().unwrap().vault = Arc::new(KmsVault::new(fleet.stack.counted_kms(), missing));
    AppJwts::new(&services).get(app).await.unwrap();
    assert_eq!((fleet.kms("Sign"), fleet.kms("Encrypt")), (1, 1), "{:?}", fleet.stack.counter.snapshot());
    let item = fleet.item(app).await;
    assert!(!item.contains_key("ClaimedBy") && !item.contains_key("Jwt"), "{item:?}");
}

/// An installation-token function's answer, on `services`.
async fn installation_token(services: &Services, app: i64) -> serde_json::Value {
    let handler = endpoint(appcreds_core::ops::installation_token::InstallationToken::new(services));
    let body = json!({"appId": app, "owner": "octo-org"});
    let reply = send(|r| handler.handle(r), UrlRequest::post_json("/tokens/installation", &body)).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body
}

/// The App's slug goes with the shared JWT: of two cold installation-token functions, the one
/// that signs asks GitHub for it and writes it with the entry; the other answers with it and asks
/// GitHub nothing. One `GET /app` in all.
#[tokio::test]
async fn a_second_cold_function_takes_the_slug_with_the_jwt() {
    let app = APP + 90;
    let fleet = Fleet::start(app).await;
    let slug = format!("appcreds-test-app-{app}");
    assert_eq!(installation_token(&fleet.services(), app).await["appSlug"], slug.as_str());
    assert_eq!(fleet.item(app).await["AppSlug"], AttributeValue::S(slug.clone()), "written with the entry");
    let second = installation_token(&fleet.services(), app).await;
    assert_eq!(second["appSlug"], slug.as_str(), "{second}");
    assert_eq!((fleet.kms("Sign"), fleet.kms("Decrypt")), (1, 1), "{:?}", fleet.stack.counter.snapshot());
    assert_eq!(fleet.stack.github.calls("GET /app"), 1, "{:?}", fleet.stack.github.all_calls());
}

/// An entry without a slug (its signer had none to give), or with one that cannot be an App's:
/// the function that takes the JWT asks GitHub for the slug, as without the share. A new entry
/// without a slug leaves none of the one before.
#[tokio::test]
async fn an_entry_without_a_slug_leaves_it_to_github() {
    let app = APP + 91;
    let fleet = Fleet::start(app).await;
    let slug = format!("appcreds-test-app-{app}");
    fleet.jwts().get(app).await.unwrap();
    assert_eq!(fleet.item(app).await["AppSlug"], AttributeValue::S(slug.clone()));
    // The entry goes stale (another key); a function without GitHub signs the next one.
    fleet.set(app, "KeyArn", AttributeValue::S("arn:aws:kms:us-east-1:123456789012:key/old".into())).await;
    let mut no_github = fleet.services();
    no_github.github = None;
    AppJwts::new(&no_github).get(app).await.unwrap();
    let item = fleet.item(app).await;
    assert!(!item.contains_key("AppSlug"), "no slug of the entry before: {item:?}");
    fleet.stack.counter.reset();
    let asked = fleet.stack.github.calls("GET /app");
    assert_eq!(installation_token(&fleet.services(), app).await["appSlug"], slug.as_str());
    assert_eq!((fleet.kms("Sign"), fleet.kms("Decrypt")), (0, 1), "{:?}", fleet.stack.counter.snapshot());
    assert_eq!(fleet.stack.github.calls("GET /app"), asked + 1, "asked GitHub");
    // A slug no App has is not handed out: GitHub is asked.
    fleet.set(app, "AppSlug", AttributeValue::S("<not a slug>".into())).await;
    assert_eq!(installation_token(&fleet.services(), app).await["appSlug"], slug.as_str());
    assert_eq!(fleet.stack.github.calls("GET /app"), asked + 2, "asked GitHub");
}

/// A cold installation-token function whose `Sign` takes 3 s, longer than the slug's 2 s budget:
/// the JWT is made outside that budget (the mint waits for it anyway), so the slug's timeout does
/// not cancel the claimed signing. One `Sign`, the JWT shared, the claim ended, and the answer
/// has the slug that came with it. (The request asks for the slug beside its issue, and the slug
/// starts the JWT's making: the issue waits for the installation table first.)
#[tokio::test]
async fn a_slow_signing_is_not_cancelled_by_the_slugs_budget() {
    let app = APP + 140;
    let fleet = Fleet::start(app).await;
    let (slow, _) = fleet.slow(3);
    let body = installation_token(&slow, app).await;
    assert_eq!(body["appSlug"], format!("appcreds-test-app-{app}").as_str(), "{body}");
    assert_eq!((fleet.kms("Sign"), fleet.kms("Encrypt")), (1, 1), "{:?}", fleet.stack.counter.snapshot());
    let item = fleet.item(app).await;
    assert!(item.contains_key("Jwt") && !item.contains_key("ClaimedBy"), "shared, claim ended: {item:?}");
}

/// A claimant whose request is dropped while it signs (a timeout around the request's work, its
/// deadline) still signs and shares: the signing runs in a task of its own, for the other functions
/// wait for it. One `Sign`, and the next cold function decrypts the entry.
#[tokio::test]
async fn a_claimed_signing_outlives_its_request() {
    let app = APP + 150;
    let fleet = Fleet::start(app).await;
    let (slow, entered) = fleet.slow(1);
    let jwts = Arc::new(AppJwts::new(&slow));
    // Aborted once it signs under its claim (not while the claim's call is still on its way).
    aborted_while_signing(&jwts, app, &entered).await;
    // Settled (as the transport does before it answers), the JWT is shared: read once, no waiting.
    jwts.settle(tokio::time::Instant::now() + std::time::Duration::from_secs(10)).await;
    let item = fleet.item(app).await;
    assert!(item.contains_key("Jwt") && !item.contains_key("ClaimedBy"), "shared, claim ended: {item:?}");
    let jwt = fleet.jwts().get(app).await.unwrap();
    assert_eq!((fleet.kms("Sign"), fleet.kms("Decrypt")), (1, 1), "{:?}", fleet.stack.counter.snapshot());
    assert_eq!(item["JwtExpiresAt"], AttributeValue::N(jwt.expires_at.to_string()));
}

/// Panics as it signs: a bug.
struct Panicking;

#[async_trait::async_trait]
impl Signer for Panicking {
    async fn sign(&self, _: &str, _: &[u8]) -> Result<Vec<u8>, appcreds_core::Error> {
        panic!("a signer's bug")
    }
}

/// A claimed signing that fails without ending its claim itself (it panics) ends it all the same
/// (the claim's guard), and the request gets a server error, not a hang: the next cold function
/// claims, signs and shares at once.
#[tokio::test]
async fn a_signing_that_panics_ends_its_claim() {
    let app = APP + 160;
    let fleet = Fleet::start(app).await;
    let mut broken = fleet.services();
    broken.signer = Arc::new(Panicking);
    let failed = AppJwts::new(&broken).get(app).await;
    assert!(matches!(failed, Err(appcreds_core::Error::Internal { .. })), "{failed:?}");
    let item = fleet.once(app, "ClaimedBy", false).await;
    assert!(!item.contains_key("ClaimedBy"), "the claim ended: {item:?}");
    fleet.stack.counter.reset();
    let jwt = fleet.jwts().get(app).await.unwrap();
    assert_eq!((fleet.kms("Sign"), fleet.kms("UpdateItem")), (1, 2), "claimed and shared at once");
    assert_eq!(fleet.item(app).await["JwtExpiresAt"], AttributeValue::N(jwt.expires_at.to_string()));
}

/// A request cut at its invocation's deadline (to answer in time) while it signs under its claim
/// stops the signing (in Lambda the process would be frozen with it, its claim held until it
/// lapsed), and its claim's guard ends the claim at once.
#[tokio::test]
async fn a_signing_cut_at_the_deadline_ends_its_claim() {
    let app = APP + 170;
    let fleet = Fleet::start(app).await;
    let (mut slow, entered) = fleet.slow(5);
    // The claim's end takes 100 ms to be sent: it is waited for before the answer.
    SlowRelease::around(&mut slow, std::time::Duration::from_millis(100));
    let jwts = AppJwts::new(&slow);
    let by = cut_at_the_deadline(&jwts, app, &entered).await;
    // As the transport does before it answers; then the item is read once, as the others would
    // find it while this process is frozen.
    jwts.settle(by - appcreds_core::deadline::ANSWER_MARGIN / 2).await;
    let item = fleet.item(app).await;
    assert!(!item.contains_key("ClaimedBy") && !item.contains_key("Jwt"), "stopped, claim ended: {item:?}");
    assert_eq!(fleet.kms("Sign"), 0, "stopped before its Sign was sent");
}

/// A claim's end the store does not answer in time (5 s; the guard gives it 1 s) is not waited for:
/// the request settles and answers, and the claim lapses instead.
#[tokio::test]
async fn a_claims_end_that_does_not_come_is_not_waited_for() {
    let app = APP + 175;
    let fleet = Fleet::start(app).await;
    let (mut slow, entered) = fleet.slow(5);
    SlowRelease::around(&mut slow, std::time::Duration::from_secs(5));
    let jwts = AppJwts::new(&slow);
    cut_at_the_deadline(&jwts, app, &entered).await;
    // Told it may take 10 s, settling ends with the guard's budget: the end never went out.
    jwts.settle(tokio::time::Instant::now() + std::time::Duration::from_secs(10)).await;
    let item = fleet.item(app).await;
    assert!(item.contains_key("ClaimedBy"), "the claim is left to lapse: {item:?}");
}

/// `jwts.get(app)` cut once its signing has started, as the transport cuts a request's work at a
/// deadline 3 s away (less the answer's margin); the deadline.
async fn cut_at_the_deadline(jwts: &AppJwts, app: i64, entered: &tokio::sync::Notify) -> tokio::time::Instant {
    let by = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    let cut = by - appcreds_core::deadline::ANSWER_MARGIN;
    let request = appcreds_core::deadline::within(by, tokio::time::timeout_at(cut, jwts.get(app)));
    let (cut_short, ()) = tokio::join!(request, async {
        entered.notified().await;
        tokio::time::sleep_until(cut).await;
    });
    assert!(cut_short.is_err(), "cut at the deadline");
    by
}

/// `jwts.get(app)` in a task of its own, aborted once its signing has started (a request dropped
/// by a budget narrower than its deadline).
async fn aborted_while_signing(jwts: &Arc<AppJwts>, app: i64, entered: &tokio::sync::Notify) {
    let request = tokio::spawn({
        let jwts = jwts.clone();
        async move { jwts.get(app).await }
    });
    entered.notified().await;
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
}

/// A store whose `release` (a claim's end) is sent `1` later.
struct SlowRelease(Arc<dyn SharedJwts>, std::time::Duration);

impl SlowRelease {
    /// `services`' share, its claims' ends sent `delay` later.
    fn around(services: &mut Services, delay: std::time::Duration) {
        let share = services.jwt_share.as_mut().unwrap();
        share.store = Arc::new(SlowRelease(share.store.clone(), delay));
    }
}

#[async_trait::async_trait]
impl SharedJwts for SlowRelease {
    async fn read(&self, app_id: i64) -> Result<SharedItem, appcreds_core::Error> {
        self.0.read(app_id).await
    }
    async fn read_with_app(&self, app_id: i64) -> Option<RowAndItem> {
        self.0.read_with_app(app_id).await
    }
    async fn claim(
        &self,
        app_id: i64,
        holder: &str,
        now: i64,
        until: i64,
        only_if: ClaimIf<'_>,
    ) -> Result<JwtClaim, appcreds_core::Error> {
        self.0.claim(app_id, holder, now, until, only_if).await
    }
    async fn put(&self, app_id: i64, holder: &str, entry: &SharedJwt) -> Result<bool, appcreds_core::Error> {
        self.0.put(app_id, holder, entry).await
    }
    async fn release(&self, app_id: i64, holder: &str) -> Result<(), appcreds_core::Error> {
        tokio::time::sleep(self.1).await;
        self.0.release(app_id, holder).await
    }
}

/// Settling waits no longer than it is given: a claimed signing that outlived its request and
/// takes longer still (a 5 s `Sign`) holds its claim after it.
#[tokio::test]
async fn settling_ends_when_it_is_told() {
    let app = APP + 180;
    let fleet = Fleet::start(app).await;
    let (slow, entered) = fleet.slow(5);
    let jwts = Arc::new(AppJwts::new(&slow));
    aborted_while_signing(&jwts, app, &entered).await;
    jwts.settle(tokio::time::Instant::now() + std::time::Duration::from_millis(200)).await;
    let item = fleet.item(app).await;
    assert!(item.contains_key("ClaimedBy") && !item.contains_key("Jwt"), "still signing: {item:?}");
}
