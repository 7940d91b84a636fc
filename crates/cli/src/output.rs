//! What `appcreds` prints: each result as one JSON line (`--output json`) or as text for people
//! (tables, messages), and the spinner on standard error while something slow runs.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use appcreds_cli::keys::{AppKeyInfo, Imported, ManagedKey, Retired, Rotated};
use appcreds_client::{AppTokenResponse, InstallationRecord, InstallationTokenResponse, RefreshResponse};
use appcreds_core::domain::clock::rfc3339;
use appcreds_core::domain::rotation::Destination;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

/// Prints `value` as one JSON line, or the text `human` makes.
pub fn print(json_out: bool, value: Value, human: impl FnOnce() -> String) {
    let text = if json_out { format!("{value}\n") } else { human() };
    let _ = std::io::stdout().write_all(text.as_bytes());
}

// --- Calls to the functions ----------------------------------------------------------------------

pub fn app_token(json_out: bool, t: &AppTokenResponse) {
    print(
        json_out,
        json!({"appId": t.app_id, "appToken": t.app_token.expose(), "expirationTime": t.expiration_time}),
        || format!("{}\n", t.app_token.expose()),
    );
}

pub fn installation_token(json_out: bool, t: &InstallationTokenResponse) {
    print(
        json_out,
        json!({
            "installationToken": t.installation_token.expose(), "nodeId": t.node_id, "appId": t.app_id,
            "installationId": t.installation_id, "appSlug": t.app_slug, "expirationTime": t.expiration_time,
            "actualScopeDown": t.actual_scope_down,
        }),
        || format!("{}\n", t.installation_token.expose()),
    );
}

/// A token per owner (`token --owner a --owner b`): one line `OWNER TOKEN` each, or one JSON line
/// `{"tokens": [...]}`, each as [`installation_token`] prints it with its `owner`.
pub fn owners_tokens(json_out: bool, tokens: &[(String, InstallationTokenResponse)]) {
    let list: Vec<Value> = tokens
        .iter()
        .map(|(owner, t)| {
            json!({
                "owner": owner, "installationToken": t.installation_token.expose(), "nodeId": t.node_id,
                "appId": t.app_id, "installationId": t.installation_id, "appSlug": t.app_slug,
                "expirationTime": t.expiration_time, "actualScopeDown": t.actual_scope_down,
            })
        })
        .collect();
    print(json_out, json!({"tokens": list}), || {
        tokens.iter().map(|(owner, t)| format!("{owner} {}\n", t.installation_token.expose())).collect()
    });
}

pub fn installations(json_out: bool, list: &[InstallationRecord]) {
    print(json_out, json!({"installations": list}), || {
        let mut out = format!("{:<10} {:<14} {:<14} {:<30} {}\n", "APP", "INSTALLATION", "TYPE", "NAME", "NODE ID");
        for i in list {
            out += &format!(
                "{:<10} {:<14} {:<14} {:<30} {}\n",
                i.app_id, i.installation_id, i.target_type, i.name, i.node_id
            );
        }
        out
    });
}

pub fn refreshed(json_out: bool, out: &RefreshResponse) {
    print(json_out, serde_json::to_value(out).unwrap_or_default(), || format!("{}\n", out.message));
}

pub fn revoked(json_out: bool) {
    print(json_out, json!({"revoked": true}), || "revoked\n".to_string());
}

// --- App keys ------------------------------------------------------------------------------------

pub fn imported(json_out: bool, imported: &Imported) {
    print(json_out, json!({"appId": imported.app_id, "kmsKeyArn": imported.key_arn, "verified": true}), || {
        format!(
            "App {} now signs with {}\n(KMS signed a challenge that verified with the PEM's public key.)\n",
            imported.app_id, imported.key_arn
        )
    });
}

/// A rotation; `wait`: the old key is retired once the grace period is over.
pub fn rotated(json_out: bool, rotated: &Rotated, wait: bool) {
    print(
        json_out,
        json!({
            "appId": rotated.app_id, "kmsKeyArn": rotated.key_arn, "previousKmsKeyArn": rotated.previous_key_arn,
            "previousKeyUsableUntil": rotated.previous_usable_until, "verified": true,
        }),
        || {
            format!(
                "App {} now signs with {}\nThe old key {} stays usable until {} (the grace period).\n{}",
                rotated.app_id,
                rotated.key_arn,
                rotated.previous_key_arn,
                rotated.previous_usable_until,
                if wait {
                    "Waiting for it to end, then retiring the old key.\n".to_string()
                } else {
                    format!("Then retire it: appcreds key retire --app-id {}\n", rotated.app_id)
                }
            )
        },
    );
}

pub fn retired(json_out: bool, retired: &Retired) {
    print(
        json_out,
        json!({
            "appId": retired.app_id, "retiredKmsKeyArn": retired.key_arn, "replacedBy": retired.replaced_by,
            "deletionDate": retired.deletion,
        }),
        || {
            let deletion = retired.deletion.as_ref().map(|d| format!(", deleted by KMS on {d}")).unwrap_or_default();
            format!(
                "App {}'s previous key {} is tagged Status=Inactive{deletion}.\n\
                 Delete the old private key in the App's settings on GitHub once 10 minutes have passed.\n",
                retired.app_id, retired.key_arn
            )
        },
    );
}

/// `key list`: every App with its key.
pub fn apps(json_out: bool, apps: &[AppKeyInfo]) {
    print(json_out, json!({"apps": apps}), || {
        let mut out = format!("{:<10} {:<16} {:<9} {}\n", "APP", "KEY STATE", "STATUS", "KEY ARN");
        for app in apps {
            out += &format!(
                "{:<10} {:<16} {:<9} {}{}\n",
                app.app_id,
                app.key_state.as_deref().unwrap_or("-"),
                app.tags.get("Status").map(String::as_str).unwrap_or("-"),
                app.kms_key_arn.as_deref().unwrap_or("(no key)"),
                app.error.as_ref().map(|e| format!("  ({e})")).unwrap_or_default(),
            );
        }
        out
    });
}

/// `key list --all-keys`: every KMS key tagged as an App key.
pub fn managed_keys(json_out: bool, keys: &[ManagedKey]) {
    print(json_out, json!({"keys": keys}), || {
        let mut out = format!("{:<10} {:<10} {:<16} {:<7} {}\n", "APP", "STATUS", "KEY STATE", "IN USE", "KEY ARN");
        for key in keys {
            let tag = |name: &str| key.tags.get(name).map(String::as_str).unwrap_or("-").to_string();
            out += &format!(
                "{:<10} {:<10} {:<16} {:<7} {}\n",
                tag("AppId"),
                tag("Status"),
                key.key_state,
                if key.in_use { "yes" } else { "no" },
                key.key_arn
            );
        }
        out
    });
}

// --- Access rules --------------------------------------------------------------------------------

pub fn rules_written(json_out: bool, written: &[Value]) {
    print(json_out, json!({"written": written}), || {
        written.iter().map(|w| format!("rule {} is at version {}\n", w["id"], w["version"])).collect()
    });
}

/// One rule, as YAML under its version.
pub fn rule(json_out: bool, rule: &Value) {
    print(json_out, rule.clone(), || {
        format!("# version {}\n{}", rule["version"], serde_yaml_ng::to_string(&rule["rule"]).unwrap_or_default())
    });
}

pub fn rules(json_out: bool, all: &[Value]) {
    print(json_out, json!({"rules": all}), || {
        let mut out = format!("{:<32} {:<8} {:<40} {}\n", "RULE", "VERSION", "OPERATIONS", "DESCRIPTION");
        for r in all {
            let ops: Vec<&str> =
                r["rule"]["operations"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            out += &format!(
                "{:<32} {:<8} {:<40} {}\n",
                r["rule"]["id"].as_str().unwrap_or("-"),
                r["version"],
                ops.join(","),
                r["rule"]["description"].as_str().unwrap_or("")
            );
        }
        out
    });
}

pub fn rule_deleted(json_out: bool, id: &str) {
    print(json_out, json!({"deleted": id}), || format!("rule {id:?} deleted\n"));
}

/// `access test`: allowed by `rule`, with the scope an installation token would be minted with.
pub fn allowed(json_out: bool, rule: &str, scope: &Option<Value>) {
    print(json_out, json!({"decision": "allow", "rule": rule, "scope": scope}), || match scope {
        Some(scope) => format!("allow: rule {rule:?}, minting with scope {scope}\n"),
        None => format!("allow: rule {rule:?}\n"),
    });
}

pub fn denied(json_out: bool, why: &str) {
    print(json_out, json!({"decision": "deny", "why": why}), || format!("deny: {why}\n"));
}

// --- Rotation targets ----------------------------------------------------------------------------

pub fn target_written(json_out: bool, written: Value, user: &str, destinations: usize) {
    print(json_out, written, || {
        format!(
            "target {user} written: {destinations} destination(s); the next rotator run (or `appcreds rotation run --user {user}`) acts on it\n"
        )
    });
}

/// One target, as YAML.
pub fn target(json_out: bool, target: &Value) {
    print(json_out, target.clone(), || serde_yaml_ng::to_string(target).unwrap_or_default());
}

/// Targets: each one's key age (at `now`, Unix seconds) and destinations behind.
pub fn targets(json_out: bool, all: &[Value], now: i64) {
    print(json_out, json!({"targets": all}), || targets_table(all, now));
}

/// One target's status, and each of its destinations.
pub fn target_status(json_out: bool, target: &Value, now: i64) {
    print(json_out, target.clone(), || {
        targets_table(std::slice::from_ref(target), now) + "\n" + &destinations_table(target)
    });
}

pub fn target_deleted(json_out: bool, user: &str) {
    print(json_out, json!({"deleted": user}), || {
        format!("target {user:?} deleted (its keys and secrets are untouched)\n")
    });
}

/// The rotator's report of a run for `user`.
pub fn rotator_report(json_out: bool, user: &str, report: &Value) {
    print(json_out, report.clone(), || {
        let mut out = format!(
            "{}: {} (key {})\n",
            user,
            report["outcome"].as_str().unwrap_or("-"),
            report["currentKeyId"].as_str().unwrap_or("-")
        );
        for d in report["destinations"].as_array().into_iter().flatten() {
            out += &format!(
                "  {:<48} {:<14} {}\n",
                d["destination"].as_str().unwrap_or("-"),
                d["status"].as_str().unwrap_or("-"),
                d["error"].as_str().unwrap_or("")
            );
        }
        out
    });
}

/// The targets' table: each one's key age at `now` and how many destinations are behind.
fn targets_table(targets: &[Value], now: i64) -> String {
    let mut out = format!(
        "{:<28} {:<8} {:<22} {:>9} {:>7} {}\n",
        "USER", "APP", "CURRENT KEY", "AGE (h)", "BEHIND", "LAST ERROR"
    );
    for t in targets {
        let current = &t["state"]["current"];
        let age = current["at"].as_i64().map_or("-".to_string(), |at| format!("{:.1}", (now - at) as f64 / 3600.0));
        out += &format!(
            "{:<28} {:<8} {:<22} {:>9} {:>7} {}\n",
            t["spec"]["userName"].as_str().unwrap_or("-"),
            t["spec"]["appId"],
            current["keyId"].as_str().unwrap_or("-"),
            age,
            t["behind"].as_array().map_or(0, Vec::len),
            t["state"]["lastError"].as_str().unwrap_or("")
        );
    }
    out
}

/// One target's destinations: the key each holds and when it was written.
fn destinations_table(target: &Value) -> String {
    let mut out = format!("{:<48} {:<22} {:<22} {}\n", "DESTINATION", "KEY", "WRITTEN", "ERROR");
    let states = &target["state"]["destinations"];
    for d in target["spec"]["destinations"].as_array().into_iter().flatten() {
        let spec: Result<Destination, _> = serde_json::from_value(d.clone());
        let Ok(destination) = spec else { continue };
        let s = &states[destination.id()];
        out += &format!(
            "{:<48} {:<22} {:<22} {}\n",
            destination.id(),
            s["keyId"].as_str().unwrap_or("-"),
            s["writtenAt"].as_i64().map_or("-".to_string(), rfc3339),
            s["error"].as_str().unwrap_or("")
        );
    }
    out
}

// --- Progress ------------------------------------------------------------------------------------

/// A spinner on standard error while something slow runs (only on a terminal).
pub struct Spinner(ProgressBar);

impl Spinner {
    pub fn start(message: &str) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if std::io::stderr().is_terminal() {
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}…").unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
        } else {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_message(message.to_string());
        Spinner(bar)
    }

    pub fn set(&self, message: &str) {
        self.0.set_message(message.to_string());
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Runs `work` with a spinner showing `message`.
pub async fn spin<T>(message: &str, work: impl Future<Output = T>) -> T {
    let _spinner = Spinner::start(message);
    work.await
}
