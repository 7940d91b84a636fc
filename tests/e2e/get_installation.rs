#![allow(clippy::unwrap_used)]
//! get-installation through the real handler and moto (DynamoDB, and the KMS HMAC key that
//! nextTokens' encryption keys are derived with).

use appcreds_core::ports::{InstallationRecord, InstallationStore};
use appcreds_tests::lambda::{Reply, UrlRequest};
use appcreds_tests::{Stack, send};
use serde_json::{Value, json};

fn row(app: i64, i: i64) -> InstallationRecord {
    InstallationRecord {
        app_id: app,
        installation_id: app * 1000 + i,
        node_id: format!("N{i:04}"),
        target_type: "Organization".into(),
        name: format!("org{i}"),
    }
}

async fn stack_with_rows() -> Stack {
    let stack = Stack::start().await;
    let mut rows: Vec<_> = (0..120).map(|i| row(1, i)).collect();
    rows.extend((0..3).map(|i| row(2, i)));
    stack
        .installation_store()
        .write(rows.into_iter().map(Into::into).collect(), Vec::new(), "2026-11-24T00:00:00Z")
        .await
        .unwrap();
    stack
}

#[tokio::test]
async fn info_finds_every_app_of_a_node() {
    let stack = stack_with_rows().await;
    let handler = stack.get_installation_handler().await;
    let reply =
        send(|r| handler.handle(r), UrlRequest::post_json("/installations/info", &json!({"nodeId": "N0001"}))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        json!({"installations": [
            {"appId": 1, "installationId": 1001, "nodeId": "N0001", "targetType": "Organization", "name": "org1"},
            {"appId": 2, "installationId": 2001, "nodeId": "N0001", "targetType": "Organization", "name": "org1"}
        ]})
    );
    let none =
        send(|r| handler.handle(r), UrlRequest::post_json("/installations/info", &json!({"nodeId": "nope"}))).await;
    assert_eq!(none.body, json!({"installations": []}));
    for (body, error) in [
        (json!({}), "ValidationException"),
        (json!({"nodeId": ""}), "ValidationException"),
        (json!({"nodeId": 3}), "SerializationException"),
    ] {
        let r = send(|r| handler.handle(r), UrlRequest::post_json("/installations/info", &body)).await;
        assert_eq!(r.error_type.as_deref(), Some(error), "{body}");
    }
}

async fn list(
    handler: &appcreds_core::http::Endpoint<appcreds_core::ops::get_installation::GetInstallation>,
    body: Value,
) -> Reply {
    send(|r| handler.handle(r), UrlRequest::post_json("/installations", &body)).await
}

#[tokio::test]
async fn the_list_pages_through_everything_once() {
    let stack = stack_with_rows().await;
    let handler = stack.get_installation_handler().await;
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut body = json!({"maxResults": 50});
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let reply = list(&handler, body).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        pages += 1;
        let items = reply.body["installations"].as_array().unwrap();
        assert!(items.len() <= 50);
        seen.extend(items.iter().map(|i| (i["appId"].as_i64().unwrap(), i["nodeId"].as_str().unwrap().to_string())));
        match reply.body.get("nextToken") {
            Some(Value::String(t)) => token = Some(t.clone()),
            _ => break,
        }
    }
    assert_eq!(seen.len(), 123, "every row");
    let unique: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 123, "no row twice");
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn forged_and_malformed_next_tokens_are_validation_errors() {
    let stack = stack_with_rows().await;
    let handler = stack.get_installation_handler().await;
    let first = list(&handler, json!({"maxResults": 10})).await;
    let token = first.body["nextToken"].as_str().unwrap().to_string();
    let sealed = token.strip_prefix("v2.").unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = b64.encode(br#"{"a":2,"n":"N0000"}"#);
    let other_key = stack.get_installation_handler().await; // a different HMAC key
    let from_other = list(&other_key, json!({"maxResults": 10})).await.body["nextToken"].as_str().unwrap().to_string();
    let cases = [
        // The earlier format: a readable position and its MAC.
        format!("v1.{payload}.{}", b64.encode([0u8; 32])),
        format!("v1.{sealed}"),
        format!("v2.{payload}"),
        format!("v2.{}", b64.encode([0u8; 80])),
        format!("v2.{sealed}.{sealed}"),
        "v2.%%%".to_string(),
        String::new(),
        "x".repeat(5000),
        format!("v2.{}", "A".repeat(5000)),
        from_other,
    ];
    for bad in cases {
        let reply = list(&handler, json!({"nextToken": bad})).await;
        assert_eq!(
            (reply.status, reply.error_type.as_deref()),
            (400, Some("ValidationException")),
            "{bad:.60}: {:?}",
            reply.body
        );
        assert_eq!(reply.body["fieldList"][0]["path"], "/nextToken");
    }
    let ok = list(&handler, json!({"nextToken": token})).await;
    assert_eq!(ok.status, 200);
    for (body, error) in [
        (json!({"maxResults": 0}), "ValidationException"),
        (json!({"maxResults": 101}), "ValidationException"),
        (json!({"maxResults": "5"}), "SerializationException"),
        (json!({"nextToken": 5}), "SerializationException"),
    ] {
        assert_eq!(list(&handler, body.clone()).await.error_type.as_deref(), Some(error), "{body}");
    }
}

/// KMS throttling the MAC that derives a page token's key is `ThrottlingException`, which a
/// caller may retry, not a `ServerSideError`.
#[tokio::test]
async fn a_throttled_page_token_mac_is_a_throttling_error() {
    use aws_sdk_kms::error::ErrorMetadata;
    use aws_sdk_kms::operation::generate_mac::GenerateMacError;
    use aws_smithy_mocks::{MockResponseInterceptor, RuleMode, create_mock_http_client, mock};
    let stack = stack_with_rows().await;
    let throttled = || ErrorMetadata::builder().code("ThrottlingException").message("Rate exceeded").build();
    let generate = mock!(aws_sdk_kms::Client::generate_mac).then_error(move || GenerateMacError::generic(throttled()));
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&stack.sdk)
            .http_client(create_mock_http_client())
            .interceptor(MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny).with_rule(&generate))
            .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
            .build(),
    );
    let mut services = stack.services();
    services.mac =
        std::sync::Arc::new(appcreds_core::aws::kms::KmsMac::new(kms, "arn:aws:kms:us-east-1:123456789012:key/mac"));
    let handler = appcreds_tests::endpoint(appcreds_core::ops::get_installation::GetInstallation::new(&services));
    // Well-formed enough that its key is derived (a KMS call) before it is found not to open.
    let sealed = format!("v2.{}", "A".repeat(230));
    for body in [json!({"maxResults": 10}), json!({"nextToken": sealed})] {
        let reply = list(&handler, body).await;
        assert_eq!((reply.status, reply.error_type.as_deref()), (429, Some("ThrottlingException")), "{:?}", reply.body);
        assert_eq!(reply.body["retryAfterSeconds"], 1);
    }
}

/// The role of [`CALLER_ARN`](appcreds_tests::lambda::CALLER_ARN) (`assumed-role/ci-deployer/session-1`).
const READER_ROLE: &str = "arn:aws:iam::123456789012:role/ci-deployer";
/// Another IAM caller.
const OTHER_CALLER: &str = "arn:aws:sts::123456789012:assumed-role/someone-else/session-2";
/// The Apps of [`stack_with_a_reader`]: the reader's rule grants the first three.
const READER_APPS: [i64; 3] = [7_100_001, 7_200_002, 7_300_003];
/// An App the reader's rule does not grant.
const HIDDEN_APP: i64 = 7_400_004;
/// The one owner the reader's rule covers.
const READER_NODE: &str = "O_kgDOocto-org";

/// App `app`'s installations: `octo-org` (the reader's owner), and twelve other owners whose
/// node IDs sort before and after it, so that in scan order the reader's rows sit among others'.
fn rows_of(app: i64) -> Vec<InstallationRecord> {
    let mut rows: Vec<_> = (0..12)
        .map(|i| InstallationRecord {
            app_id: app,
            installation_id: app * 100 + i,
            node_id: format!("O_kgDO{}{i:02}", if i % 2 == 0 { "a" } else { "z" }),
            target_type: "Organization".into(),
            name: format!("other{i:02}"),
        })
        .collect();
    rows.push(InstallationRecord {
        app_id: app,
        installation_id: app * 100 + 99,
        node_id: READER_NODE.into(),
        target_type: "Organization".into(),
        name: "octo-org".into(),
    });
    rows
}

/// Four Apps' installations, and a rule that lets [`READER_ROLE`] read `octo-org`'s
/// installations of three of them: the caller may read three rows of 52.
async fn stack_with_a_reader() -> Stack {
    let stack = Stack::start().await;
    let rows = READER_APPS.iter().chain([&HIDDEN_APP]).flat_map(|&app| rows_of(app)).map(Into::into).collect();
    stack.installation_store().write(rows, Vec::new(), "2026-11-24T00:00:00Z").await.unwrap();
    stack
        .put_rule(json!({
            "id": "reader", "principals": [READER_ROLE], "operations": ["read-installations"],
            "apps": READER_APPS, "owners": ["octo-org"]
        }))
        .await;
    stack
}

/// get-installation enforcing the access rules, with a fresh HMAC key for nextTokens.
async fn enforcing_handler(
    stack: &Stack,
) -> appcreds_core::http::Endpoint<appcreds_core::ops::get_installation::GetInstallation> {
    let mut services = stack.enforcing(appcreds_core::domain::clock::SystemClock);
    services.mac =
        std::sync::Arc::new(appcreds_core::aws::kms::KmsMac::new(stack.counted_kms(), stack.pagination_key().await));
    appcreds_tests::endpoint(appcreds_core::ops::get_installation::GetInstallation::new(&services))
}

/// The table's keys in DynamoDB's scan order.
async fn scan_order(stack: &Stack) -> Vec<(i64, String)> {
    let out = stack.ddb.scan().table_name(&stack.installation_table).send().await.unwrap();
    assert!(out.last_evaluated_key.is_none(), "one scan page holds the test table");
    out.items
        .unwrap_or_default()
        .iter()
        .map(|item| {
            let app = item["AppId"].as_n().unwrap().parse().unwrap();
            (app, item["NodeId"].as_s().unwrap().clone())
        })
        .collect()
}

/// Every byte string `token` might be read as: its text, and the text and each dot-separated
/// part decoded as base64 (either alphabet, padded or not, from each of the first four offsets)
/// or as hex.
fn readings(token: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    use base64::alphabet::{STANDARD, URL_SAFE};
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let lenient = |alphabet| {
        let config = GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent);
        GeneralPurpose::new(alphabet, config)
    };
    let engines = [lenient(&URL_SAFE), lenient(&STANDARD)];
    let mut out = vec![token.as_bytes().to_vec()];
    for part in std::iter::once(token).chain(token.split('.')) {
        let part = part.trim_end_matches('=');
        for skip in 0..4.min(part.len()) {
            let text = &part[skip..];
            let text = &text[..text.len() / 4 * 4];
            out.extend(engines.iter().filter_map(|e| e.decode(text).ok()));
        }
        let hex: Option<Vec<u8>> = (part.len() % 2 == 0)
            .then(|| (0..part.len()).step_by(2).map(|i| u8::from_str_radix(part.get(i..i + 2)?, 16).ok()).collect())
            .flatten();
        out.extend(hex);
    }
    out
}

/// Whether `haystack` holds `needle` anywhere.
fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Asserts that `token` names, in no encoding, a row of `hidden`: not its node ID (unless the
/// caller reads that node's installations of other Apps), and not its App ID where that App is
/// one the caller may not read at all.
fn assert_reveals_none(token: &str, hidden: &[(i64, String)]) {
    let readings = readings(token);
    for (app, node) in hidden {
        for bytes in &readings {
            if node != READER_NODE {
                assert!(!holds(bytes, node.as_bytes()), "nextToken {token} holds the node ID {node} of App {app}");
            }
            if !READER_APPS.contains(app) {
                for encoded in [app.to_string().into_bytes(), app.to_be_bytes().to_vec(), app.to_le_bytes().to_vec()] {
                    assert!(!holds(bytes, &encoded), "nextToken {token} holds App ID {app}");
                }
            }
        }
    }
}

/// Lists `POST /installations` as `caller`, `deadline` before the invocation's deadline if given.
async fn list_as(
    handler: &appcreds_core::http::Endpoint<appcreds_core::ops::get_installation::GetInstallation>,
    caller: &str,
    body: Value,
    deadline: Option<std::time::Duration>,
) -> Reply {
    let mut req = UrlRequest::post_json("/installations", &body);
    req.caller_arn = Some(caller.into());
    if let Some(left) = deadline {
        req = req.deadline_in(left);
    }
    send(|r| handler.handle(r), req).await
}

/// Pages through the list as the test caller with `maxResults: 1`; the pages' rows, and each
/// page's row count and nextToken.
async fn page_with_one_result(
    handler: &appcreds_core::http::Endpoint<appcreds_core::ops::get_installation::GetInstallation>,
    deadline: Option<std::time::Duration>,
    hidden: &[(i64, String)],
) -> (Vec<(i64, String)>, Vec<(usize, Option<String>)>) {
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        assert!(pages.len() < 100, "the listing does not end: {pages:?}");
        let mut body = json!({"maxResults": 1});
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let reply = list_as(handler, appcreds_tests::lambda::CALLER_ARN, body, deadline).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        let items = reply.body["installations"].as_array().unwrap();
        assert!(items.len() <= 1, "{items:?}");
        seen.extend(items.iter().map(|i| (i["appId"].as_i64().unwrap(), i["nodeId"].as_str().unwrap().to_string())));
        token = reply.body.get("nextToken").map(|t| t.as_str().unwrap().to_string());
        if let Some(t) = &token {
            assert_reveals_none(t, hidden);
        }
        pages.push((items.len(), token.clone()));
        if token.is_none() {
            return (seen, pages);
        }
    }
}

/// Issue 18, item 5: a reader granted one owner pages with `maxResults: 1` and learns nothing
/// about the rows it may not read: it gets exactly its rows, one a page, no empty page, no
/// nextToken after its last row, and no nextToken names another row in any encoding.
#[tokio::test]
async fn a_reader_paging_one_by_one_gets_its_rows_and_learns_nothing_else() {
    let stack = stack_with_a_reader().await;
    let order = scan_order(&stack).await;
    let readable = |(app, node): &(i64, String)| READER_APPS.contains(app) && node == READER_NODE;
    let first = order.iter().position(readable).unwrap();
    let last = order.iter().rposition(readable).unwrap();
    assert!(first > 0 && last + 1 < order.len(), "others' rows come before and after the reader's: {order:?}");
    assert!(order[first..=last].iter().any(|r| !readable(r)), "and between them: {order:?}");
    let hidden: Vec<_> = order.iter().filter(|r| !readable(r)).cloned().collect();
    let mut expected: Vec<_> = order.iter().filter(|r| readable(r)).cloned().collect();

    let handler = enforcing_handler(&stack).await;
    let (mut seen, pages) = page_with_one_result(&handler, None, &hidden).await;
    assert!(pages.iter().all(|(rows, _)| *rows == 1), "every page holds one row: {pages:?}");
    assert_eq!(pages.len(), 3, "three pages, the last without a nextToken: {pages:?}");
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);
}

/// A nextToken is bound to the caller it was given to, and refused if altered in any way.
#[tokio::test]
async fn a_next_token_serves_only_its_caller_and_only_unaltered() {
    let stack = stack_with_rows().await;
    let handler = stack.get_installation_handler().await;
    let me = appcreds_tests::lambda::CALLER_ARN;
    let first = list_as(&handler, me, json!({"maxResults": 10}), None).await;
    let token = first.body["nextToken"].as_str().unwrap().to_string();
    let refused = |reply: &Reply, what: &str| {
        assert_eq!(
            (reply.status, reply.error_type.as_deref()),
            (400, Some("ValidationException")),
            "{what}: {:?}",
            reply.body
        );
        assert_eq!(reply.body["fieldList"][0]["path"], "/nextToken", "{what}");
    };
    let replayed = list_as(&handler, OTHER_CALLER, json!({"maxResults": 10, "nextToken": token}), None).await;
    refused(&replayed, "another caller's token");

    let mut altered = Vec::new();
    for i in 0..token.len() {
        let c = token.as_bytes()[i];
        let swapped = if c == b'A' { 'B' } else { 'A' };
        altered.push((format!("character {i} changed"), format!("{}{swapped}{}", &token[..i], &token[i + 1..])));
    }
    for cut in [1, 2, 16, token.len() / 2] {
        altered.push((format!("{cut} characters cut"), token[..token.len() - cut].to_string()));
    }
    altered.push(("a character added".into(), format!("{token}A")));
    for (what, bad) in altered {
        refused(&list_as(&handler, me, json!({"nextToken": bad}), None).await, &what);
    }
    let mine = list_as(&handler, me, json!({"maxResults": 10, "nextToken": token}), None).await;
    assert_eq!(mine.status, 200, "{:?}", mine.body);
    assert_eq!(mine.body["installations"].as_array().unwrap().len(), 10);
}

/// A listing that reaches its bound of scans answers with what it found (here often nothing)
/// and a token to go on from the last row it scanned: still only the reader's rows, nothing
/// told of the others, and every page one Scan.
#[tokio::test]
async fn a_listing_stopped_by_its_scan_bound_goes_on_from_where_it_stopped() {
    let stack = stack_with_a_reader().await;
    let order = scan_order(&stack).await;
    let readable = |(app, node): &(i64, String)| READER_APPS.contains(app) && node == READER_NODE;
    let hidden: Vec<_> = order.iter().filter(|r| !readable(r)).cloned().collect();
    let mut services = stack.enforcing(appcreds_core::domain::clock::SystemClock);
    services.mac =
        std::sync::Arc::new(appcreds_core::aws::kms::KmsMac::new(stack.counted_kms(), stack.pagination_key().await));
    services.installations = std::sync::Arc::new(stack.installation_store().scans_per_page(1));
    let handler = appcreds_tests::endpoint(appcreds_core::ops::get_installation::GetInstallation::new(&services));
    // The rules are read (a Scan of the access table) on the first request, then cached.
    let warm = list_as(&handler, appcreds_tests::lambda::CALLER_ARN, json!({"maxResults": 1}), None).await;
    assert_eq!(warm.status, 200, "{:?}", warm.body);
    stack.counter.reset();

    let (mut seen, pages) = page_with_one_result(&handler, None, &hidden).await;
    assert_eq!(stack.counter.count("Scan"), pages.len(), "one Scan a page: {:?}", stack.counter.snapshot());
    assert!(pages[0].0 == 0 && pages[0].1.is_some(), "the first two rows scanned are others': {pages:?}");
    assert!(pages.len() > 3, "{pages:?}");
    seen.sort();
    let mut expected: Vec<_> = order.iter().filter(|r| readable(r)).cloned().collect();
    expected.sort();
    assert_eq!(seen, expected);
}

/// With too little time left for a second Scan before the deadline (less the time kept for the
/// nextToken's key), a page is one Scan: the listing still ends, with the reader's rows only.
#[tokio::test]
async fn a_listing_short_of_time_answers_with_what_it_scanned() {
    let stack = stack_with_a_reader().await;
    let order = scan_order(&stack).await;
    let readable = |(app, node): &(i64, String)| READER_APPS.contains(app) && node == READER_NODE;
    let hidden: Vec<_> = order.iter().filter(|r| !readable(r)).cloned().collect();
    let handler = enforcing_handler(&stack).await;
    let warm = list_as(&handler, appcreds_tests::lambda::CALLER_ARN, json!({"maxResults": 1}), None).await;
    assert_eq!(warm.status, 200, "{:?}", warm.body);
    stack.counter.reset();

    // 6 s to the deadline: 0.5 s kept to answer, 3 s for the token's key, and 2.5 s is less than a Scan's 3.
    let (mut seen, pages) = page_with_one_result(&handler, Some(std::time::Duration::from_secs(6)), &hidden).await;
    assert_eq!(stack.counter.count("Scan"), pages.len(), "one Scan a page: {:?}", stack.counter.snapshot());
    assert!(pages[0].0 == 0 && pages[0].1.is_some(), "{pages:?}");
    seen.sort();
    let mut expected: Vec<_> = order.iter().filter(|r| readable(r)).cloned().collect();
    expected.sort();
    assert_eq!(seen, expected);

    // With time, the same listing is three pages of one row.
    stack.counter.reset();
    let (_, pages) = page_with_one_result(&handler, Some(std::time::Duration::from_secs(30)), &hidden).await;
    assert_eq!(pages.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 1, 1], "{pages:?}");
}
