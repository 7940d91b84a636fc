#![allow(clippy::unwrap_used)]
//! The template's timeouts and alarms against the budgets and names the code works with: each
//! relation below is one the code relies on, so a change on either side that breaks it fails here.

use std::collections::BTreeMap;
use std::time::Duration;

use appcreds_core::aws::aws_timeouts;
use appcreds_core::deadline::ANSWER_MARGIN;
use appcreds_core::github::Timeouts;
use appcreds_core::jobs::rate_limit::{PUBLISH_RESERVE, heartbeat};
use serde_yaml_ng::Value;

fn template() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

/// Each function's `Timeout` (its own, else the Globals'), and whether it has a Function URL.
fn functions(t: &Value) -> BTreeMap<String, (Duration, bool)> {
    let global = t["Globals"]["Function"]["Timeout"].as_u64().unwrap();
    let resources = t["Resources"].as_mapping().unwrap();
    resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(name, r)| {
            let props = &r["Properties"];
            let timeout = props["Timeout"].as_u64().unwrap_or(global);
            let url = props.get("FunctionUrlConfig").is_some();
            (name.as_str().unwrap().to_string(), (Duration::from_secs(timeout), url))
        })
        .collect()
}

#[test]
fn every_function_behind_a_url_has_time_for_one_whole_call_and_its_answer() {
    let functions = functions(&template());
    let github = Timeouts::default();
    let aws = aws_timeouts();
    let aws_operation = aws.operation_timeout().unwrap();
    let urls: Vec<_> = functions.iter().filter(|(_, (_, url))| *url).collect();
    assert_eq!(urls.len(), 4, "{functions:?}");
    for (name, (timeout, _)) in urls {
        // One GitHub attempt at its full timeout, or one AWS call with all its retries, fits
        // before the margin kept to answer; the deadline cuts anything longer short.
        assert!(github.connect + github.request + ANSWER_MARGIN <= *timeout, "{name}: {timeout:?}");
        assert!(aws_operation + ANSWER_MARGIN <= *timeout, "{name}: {timeout:?}");
        // The caller waits longer than the function may run, so it gets the function's answer.
        assert!(appcreds_client::REQUEST_TIMEOUT > *timeout, "{name}: the client gives up first");
    }
}

#[test]
fn the_scheduled_jobs_finish_before_their_next_run() {
    let t = template();
    let functions = functions(&t);
    let (scanner, _) = functions["RateLimitScannerFunction"];
    let (tracker, _) = functions["InstallationTrackerFunction"];
    let schedule = |name: &str| {
        let events = t["Resources"][name]["Properties"]["Events"].as_mapping().unwrap();
        let (_, event) = events.iter().next().unwrap();
        event["Properties"]["ScheduleExpression"].as_str().unwrap().to_string()
    };
    assert_eq!(schedule("RateLimitScannerFunction"), "rate(5 minutes)");
    assert_eq!(schedule("InstallationTrackerFunction"), "rate(30 minutes)");
    // Runs never overlap (a run resumes where the last one stopped), and the scanner keeps most
    // of its time for scanning after the reserve for publishing and the margin to answer.
    assert!(scanner < Duration::from_secs(300) && tracker < Duration::from_secs(1800));
    let scanning = scanner - PUBLISH_RESERVE - ANSWER_MARGIN;
    assert!(scanning >= Duration::from_secs(100), "{scanning:?} to scan");
}

#[test]
fn the_heartbeat_alarms_watch_the_metrics_the_scanner_publishes() {
    let t = template();
    let heartbeat_alarm = &t["Resources"]["RateLimitScannerHeartbeatAlarm"]["Properties"];
    assert_eq!(heartbeat_alarm["MetricName"].as_str(), Some(heartbeat::SCANNED));
    assert_eq!(heartbeat_alarm["Namespace"].as_str(), Some(appcreds_wire::metrics::NAMESPACE));
    assert_eq!(heartbeat_alarm["Dimensions"][0]["Name"].as_str(), Some(heartbeat::DIMENSION));
    let gaps = &t["Resources"]["RateLimitScannerGapAlarm"]["Properties"]["Metrics"];
    let names: Vec<&str> =
        gaps.as_sequence().unwrap().iter().filter_map(|m| m["MetricStat"]["Metric"]["MetricName"].as_str()).collect();
    assert_eq!(names, [heartbeat::FAILED, heartbeat::DEFERRED]);
}

#[test]
fn the_rotator_finishes_before_its_next_run_and_its_alarms_watch_what_it_publishes() {
    use appcreds_core::jobs::key_rotation::{KEY_WAIT, NAMESPACE, metrics};
    let t = template();
    let (rotator, url) = functions(&t)["AccessKeyRotatorFunction"];
    assert!(!url, "the rotator has no Function URL");
    let schedule = t["Parameters"]["RotatorSchedule"]["Default"].as_str().unwrap();
    assert_eq!(schedule, "rate(1 hour)");
    assert!(rotator < Duration::from_secs(3600), "runs never overlap");
    // A new key's wait leaves most of the run for writing; `appcreds rotation run` waits longer
    // than the function may run, so it gets the report.
    assert!(KEY_WAIT * 10 <= rotator);
    assert!(appcreds_client::INVOKE_TIMEOUT > rotator);
    // A key made late in one run is due at the run one maximum age later.
    assert!(Duration::from_secs(appcreds_core::domain::rotation::DUE_EARLY_SECS as u64) >= rotator);
    let alarm = |name: &str| &t["Resources"][name]["Properties"];
    let watched: Vec<(&str, &str)> =
        ["AccessKeyRotationFailureAlarm", "AccessKeyOverMaxAgeAlarm", "AccessKeyRotatorHeartbeatAlarm"]
            .iter()
            .map(|a| (alarm(a)["Namespace"].as_str().unwrap(), alarm(a)["MetricName"].as_str().unwrap()))
            .collect();
    assert_eq!(
        watched,
        [
            (NAMESPACE, metrics::ROTATION_FAILURES),
            (NAMESPACE, metrics::KEYS_OVER_MAX_AGE),
            (NAMESPACE, metrics::ROTATION_RUNS)
        ]
    );
}
