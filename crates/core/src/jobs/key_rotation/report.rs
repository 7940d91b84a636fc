//! What a run reports: per target and per destination (the answer to `appcreds rotation run`),
//! and the metrics the template's alarms watch.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::{END_RESERVE, Rotator, metrics};
use crate::deadline;
use crate::domain::rotation::{KeyRef, hours_since};
use crate::ports::{Metric, TargetRecord, Unit};

/// What a run did to one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetOutcome {
    /// A new key was made and written.
    Rotated,
    /// The current key was written to the destinations that were behind.
    CaughtUp,
    /// Some destinations are still behind; both keys stay active.
    Partial,
    /// A new key is due, but the replaced key's grace period is in the way (not a failure).
    Waiting,
    /// Nothing was due.
    UpToDate,
    /// The target failed as a whole.
    Failed,
}

impl TargetOutcome {
    /// Every outcome.
    pub const ALL: [TargetOutcome; 6] = [
        TargetOutcome::Rotated,
        TargetOutcome::CaughtUp,
        TargetOutcome::Partial,
        TargetOutcome::Waiting,
        TargetOutcome::UpToDate,
        TargetOutcome::Failed,
    ];

    /// Its name in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetOutcome::Rotated => "rotated",
            TargetOutcome::CaughtUp => "caught-up",
            TargetOutcome::Partial => "partial",
            TargetOutcome::Waiting => "waiting",
            TargetOutcome::UpToDate => "up-to-date",
            TargetOutcome::Failed => "failed",
        }
    }
}

/// What a run did to one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DestinationStatus {
    /// It was written with the current key.
    Written,
    /// Writing it failed.
    Failed,
    /// It was held back before anything was sent (pacing, the deadline, a throttle).
    NotAttempted,
    /// It held the current key already.
    UpToDate,
}

impl DestinationStatus {
    /// Every status.
    pub const ALL: [DestinationStatus; 4] = [
        DestinationStatus::Written,
        DestinationStatus::Failed,
        DestinationStatus::NotAttempted,
        DestinationStatus::UpToDate,
    ];

    /// Its name in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationStatus::Written => "written",
            DestinationStatus::Failed => "failed",
            DestinationStatus::NotAttempted => "not-attempted",
            DestinationStatus::UpToDate => "up-to-date",
        }
    }
}

impl fmt::Display for TargetOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for DestinationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to one destination in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationReport {
    /// [`Destination::id`](crate::domain::rotation::Destination::id).
    pub destination: String,
    pub status: DestinationStatus,
    /// The key it holds, as far as appcreds knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What one run did to one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetReport {
    /// The IAM user.
    pub user_name: String,
    pub outcome: TargetOutcome,
    /// The current key, and when it was created (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_key_created: Option<i64>,
    /// The key deactivated by this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deactivated_key_id: Option<String>,
    /// Keys deleted by this run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deleted_key_ids: Vec<String>,
    /// Each destination's outcome.
    pub destinations: Vec<DestinationReport>,
    /// Why the run failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// GitHub writes in this run, and how long pacing held them back (ms).
    pub github_writes: usize,
    pub paced_ms: u64,
    /// Why the run's writes stopped (throttled, out of time), if they did.
    #[serde(skip)]
    pub(super) stop_reason: Option<String>,
}

impl TargetReport {
    pub(super) fn new(user: &str) -> Self {
        TargetReport {
            user_name: user.to_string(),
            outcome: TargetOutcome::UpToDate,
            current_key_id: None,
            current_key_created: None,
            deactivated_key_id: None,
            deleted_key_ids: Vec::new(),
            destinations: Vec::new(),
            error: None,
            github_writes: 0,
            paced_ms: 0,
            stop_reason: None,
        }
    }

    /// A target that failed as a whole (refused, or an invalid row), and why.
    pub(super) fn failed(user: &str, why: String) -> Self {
        TargetReport { outcome: TargetOutcome::Failed, error: Some(why), ..TargetReport::new(user) }
    }

    /// Notes the current key.
    pub(super) fn current(&mut self, key: Option<&KeyRef>) {
        self.current_key_id = key.map(|k| k.key_id.clone());
        self.current_key_created = key.map(|k| k.at);
    }

    /// Destinations that failed in this run.
    pub fn failures(&self) -> usize {
        self.destinations.iter().filter(|d| d.error.is_some()).count()
            + usize::from(self.error.is_some() && self.outcome != TargetOutcome::Waiting)
    }
}

impl Rotator {
    /// Publishes `KeyAgeHours` per target, `RotationFailures` and `KeysOverMaxAge`, and (for a
    /// scheduled run) the heartbeat `RotationRuns`; returns the keys over their maximum age.
    pub(super) async fn publish(&self, reports: &[TargetReport], all: Option<&[TargetRecord]>) -> usize {
        let now = self.services.now();
        let mut data = Vec::new();
        let metric = |name: &'static str, dimensions: Vec<(&'static str, String)>, value: f64, unit: Unit| Metric {
            name,
            dimensions,
            value,
            unit,
            timestamp: now,
        };
        let mut over_max = 0;
        let reported: HashMap<&str, &TargetReport> = reports.iter().map(|r| (r.user_name.as_str(), r)).collect();
        let users: Vec<(&str, Option<&TargetRecord>)> = match all {
            Some(records) => records.iter().map(|r| (r.spec.user_name.as_str(), Some(r))).collect(),
            None => reports.iter().map(|r| (r.user_name.as_str(), None)).collect(),
        };
        for (user, listed) in users {
            // The run's own view of the key, or the table's as the run's scan read it for a
            // target it did not start. Read again only for a target whose run failed (it may have
            // made a key before failing) or a single run's target, and only while time allows.
            let report = reported.get(user);
            let seen = report.and_then(|r| r.current_key_created);
            let (created, max_age_hours) = match (seen, listed) {
                (Some(created), Some(record)) => (Some(created), record.spec.max_age_hours),
                (None, Some(record)) if report.is_none() || !deadline::allows(Duration::ZERO, END_RESERVE) => {
                    (record.state.current.as_ref().map(|k| k.at), record.spec.max_age_hours)
                }
                _ => match self.ports.targets.get(user).await {
                    Ok(Some(record)) => (record.state.current.map(|k| k.at), record.spec.max_age_hours),
                    _ => continue,
                },
            };
            let age = created.map_or(0.0, |at| hours_since(at, now));
            if created.is_some() {
                data.push(metric(metrics::KEY_AGE_HOURS, vec![("UserName", user.to_string())], age, Unit::None));
            }
            if created.is_none() || age > f64::from(max_age_hours) {
                over_max += 1;
            }
        }
        let failures: usize = reports.iter().map(TargetReport::failures).sum();
        data.push(metric(metrics::ROTATION_FAILURES, Vec::new(), failures as f64, Unit::Count));
        data.push(metric(metrics::KEYS_OVER_MAX_AGE, Vec::new(), over_max as f64, Unit::Count));
        if all.is_some() {
            data.push(metric(metrics::ROTATION_RUNS, Vec::new(), 1.0, Unit::Count));
        }
        for chunk in data.chunks(crate::ports::METRICS_PER_PUT) {
            if let Err(e) = self.services.metrics.put(chunk.to_vec()).await {
                tracing::warn!(error = %e, "could not publish the rotation metrics");
            }
        }
        over_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_and_status_is_written_in_the_report_as_its_name() {
        for outcome in TargetOutcome::ALL {
            assert_eq!(serde_json::to_value(outcome).unwrap(), serde_json::json!(outcome.as_str()));
        }
        for status in DestinationStatus::ALL {
            assert_eq!(serde_json::to_value(status).unwrap(), serde_json::json!(status.as_str()));
        }
        let names: Vec<&str> = TargetOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(names, ["rotated", "caught-up", "partial", "waiting", "up-to-date", "failed"]);
        let names: Vec<&str> = DestinationStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["written", "failed", "not-attempted", "up-to-date"]);
    }

    #[test]
    fn the_api_doc_names_every_outcome_and_status() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md")).unwrap();
        let start = doc.find("### (ext) The access-key rotator's invocation").unwrap();
        let section = &doc[start..start + doc[start..].find("\n## ").unwrap()];
        let (outcomes, statuses) = section.split_once("each destination's `status`").unwrap();
        for outcome in TargetOutcome::ALL {
            assert!(outcomes.contains(&format!("`{outcome}`")), "docs/api.md does not name the outcome {outcome}");
        }
        for status in DestinationStatus::ALL {
            assert!(statuses.contains(&format!("`{status}`")), "docs/api.md does not name the status {status}");
        }
    }

    #[test]
    fn a_run_that_waits_is_not_counted_as_a_failure() {
        let mut report = TargetReport::failed("ci", "two live keys".into());
        assert_eq!(report.failures(), 1);
        report.outcome = TargetOutcome::Waiting;
        assert_eq!(report.failures(), 0);
    }
}
