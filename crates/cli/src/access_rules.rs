//! `appcreds access …`: access rules from YAML or JSON files, checked in full before anything is
//! written, stored with versions so that a write that loses a race is refused; and `access test`,
//! which judges a request by the table's rules without calling anything else.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use appcreds_client::Target;
use appcreds_core::aws::access_table::{DynamoAccessStore, RuleWrite};
use appcreds_core::domain::access::{Action, Claims, InstallationRef, Policy, Rule, RuleDocument, Subject, claims_of};
use appcreds_core::domain::clock::{Clock, SystemClock, rfc3339};
use appcreds_core::ports::AccessStore;
use serde_json::{Value, json};

use crate::{AwsFailure, CliError};

/// The largest rules file read; a rule is far smaller.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;

/// Reads a rules file: one rule, or a list of rules (YAML, of which JSON is a part). Every rule is
/// checked; any problem refuses the whole file, naming each problem.
pub fn read_rules(path: &Path) -> Result<Vec<RuleDocument>, CliError> {
    let text = read_limited(path, MAX_FILE_BYTES)?;
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .map_err(|e| CliError::Refused(format!("{}: not YAML or JSON: {e}", path.display())))?;
    let items = match value {
        serde_yaml_ng::Value::Sequence(items) => items,
        serde_yaml_ng::Value::Null => Vec::new(),
        one => vec![one],
    };
    if items.is_empty() {
        return Err(CliError::Refused(format!("{}: no rule in the file", path.display())));
    }
    let mut problems = Vec::new();
    let mut documents = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let name = |id: Option<&str>| match id {
            Some(id) => format!("rule {id:?}"),
            None => format!("rule {}", i + 1),
        };
        let id = item.get("id").and_then(|v| v.as_str()).map(str::to_string);
        match serde_yaml_ng::from_value::<RuleDocument>(item) {
            Err(e) => problems.push(format!("{}: {e}", name(id.as_deref()))),
            Ok(document) => match Rule::from_document(document.clone(), 0) {
                Err(found) => problems.extend(found.into_iter().map(|p| format!("{}: {p}", name(id.as_deref())))),
                Ok(_) => documents.push(document),
            },
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for d in &documents {
        if !seen.insert(d.id.clone()) {
            problems.push(format!("rule {:?} appears twice", d.id));
        }
    }
    if !problems.is_empty() {
        return Err(CliError::Refused(format!(
            "{}: nothing was written:\n  {}",
            path.display(),
            problems.join("\n  ")
        )));
    }
    Ok(documents)
}

/// A file's text, refusing one larger than `max` bytes before reading it whole.
pub fn read_limited(path: &Path, max: u64) -> Result<String, CliError> {
    let cannot = |e: std::io::Error| CliError::Usage(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let size = file.metadata().map_err(cannot)?.len();
    if size > max {
        return Err(CliError::Usage(format!("{} is {size} bytes; at most {max} are read", path.display())));
    }
    let mut text = String::with_capacity(size as usize);
    file.take(max + 1).read_to_string(&mut text).map_err(cannot)?;
    Ok(text)
}

/// The access table, as the CLI manages it.
pub struct Rules {
    store: DynamoAccessStore,
}

impl Rules {
    /// The access table `table` on `client`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str) -> Self {
        Self { store: DynamoAccessStore::new(client, table) }
    }

    /// Writes each rule over the version it has now, or over `expected` when given (0: the rule
    /// must be new). A rule that changed meanwhile is refused; the others are written.
    pub async fn put(&self, documents: &[RuleDocument], expected: Option<u64>) -> Result<Vec<Value>, CliError> {
        let now = rfc3339(SystemClock.now());
        let mut written = Vec::new();
        let mut conflicts = Vec::new();
        for document in documents {
            let base = match expected {
                Some(v) => v,
                None => self.store.get_rule(&document.id).await.map_err(core_error)?.map_or(0, |r| r.version),
            };
            match self.store.put_rule(document, base, &now).await.map_err(core_error)? {
                RuleWrite::Written { version } => written.push(json!({"id": document.id, "version": version})),
                RuleWrite::Conflict { current } => conflicts.push(format!(
                    "rule {:?} is at version {current}, not {base}: someone changed it; read it again and retry",
                    document.id
                )),
            }
        }
        if conflicts.is_empty() {
            Ok(written)
        } else {
            Err(CliError::Refused(format!(
                "{}{}",
                if written.is_empty() { String::new() } else { format!("written: {}\n", Value::Array(written)) },
                conflicts.join("\n")
            )))
        }
    }

    /// The rule `id`, with its version.
    pub async fn get(&self, id: &str) -> Result<Value, CliError> {
        match self.store.get_rule(id).await.map_err(core_error)? {
            Some(rule) => Ok(json!({"version": rule.version, "rule": rule.document})),
            None => Err(CliError::Refused(format!("no rule {id:?}"))),
        }
    }

    /// Every valid rule, by ID.
    pub async fn list(&self) -> Result<Vec<Value>, CliError> {
        let mut rules = self.store.list_rules().await.map_err(core_error)?;
        rules.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(rules.into_iter().map(|r| json!({"version": r.version, "rule": r.document})).collect())
    }

    /// Deletes rule `id` at version `expected` (default: the version it has now).
    pub async fn delete(&self, id: &str, expected: Option<u64>) -> Result<(), CliError> {
        let base = match expected {
            Some(v) => v,
            None => match self.store.get_rule(id).await.map_err(core_error)? {
                Some(rule) => rule.version,
                None => return Err(CliError::Refused(format!("no rule {id:?}"))),
            },
        };
        match self.store.delete_rule(id, base).await.map_err(core_error)? {
            RuleWrite::Written { .. } => Ok(()),
            RuleWrite::Conflict { current: 0 } => Err(CliError::Refused(format!("no rule {id:?}"))),
            RuleWrite::Conflict { current } => Err(CliError::Refused(format!(
                "rule {id:?} is at version {current}, not {base}: someone changed it; read it again and retry"
            ))),
        }
    }

    /// Judges `request` from `principal` (with `claims`) by the table's rules, as the functions
    /// do; with it, why each row that is no valid rule grants nothing.
    pub async fn test(
        &self,
        principal: &str,
        claims: Option<&Claims>,
        request: &Value,
    ) -> Result<(Decision, Vec<String>), CliError> {
        let (rules, ignored) = self.store.read_rules().await.map_err(core_error)?;
        Ok((judge(&Policy::new(rules), principal, claims, request)?, ignored))
    }
}

/// The outcome of `access test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by `rule`; for an installation token, with the scope it would be minted with.
    Allow { rule: String, scope: Option<Value> },
    /// Refused, and why.
    Deny { why: String },
}

/// Judges a test request: `{"operation": "installation-token" | "app-token" | "read-installations"
/// | "refresh", "appId": …, and for installation-token the body of the request (`owner`,
/// `repository` or `nodeId`, and `scopeDown`)}`. The installation is taken from the request
/// itself (owner or repository owner as its login, or its node ID), since nothing but the table
/// is asked.
pub fn judge(policy: &Policy, principal: &str, claims: Option<&Claims>, request: &Value) -> Result<Decision, CliError> {
    let bad = |m: String| CliError::Usage(format!("--request: {m}"));
    let Value::Object(body) = request else { return Err(bad("must be a JSON object".into())) };
    let action: Action = serde_json::from_value(body.get("operation").cloned().unwrap_or(Value::Null))
        .map_err(|_| bad("operation must be installation-token, app-token, read-installations or refresh".into()))?;
    let subject = Subject { arn: principal, claims };
    let app_id = body.get("appId").and_then(Value::as_i64);
    let decision = match action {
        Action::InstallationToken => {
            let mut body = body.clone();
            body.remove("operation");
            let req = appcreds_core::http::request::installation_token(&body).map_err(|e| bad(e.to_string()))?;
            let (login, enterprise) = req.target.account().unwrap_or_default();
            let node_id = match &req.target {
                Target::NodeId(n) => n.as_str(),
                _ => "",
            };
            let installation = InstallationRef { node_id, login, enterprise };
            // As the function judges: the App first, then the installation and the scope (a
            // repository target narrows the scope to it).
            let requested = appcreds_core::domain::scope::requested_scope(&req.target, req.scope_down.as_ref());
            policy.may_mint(subject, req.app_id, &req.target, requested.as_ref()).and_then(|()| {
                policy
                    .installation_token(subject, req.app_id, &req.target, installation, requested.as_ref())
                    .map(|(rule, scope)| Decision::Allow { rule: rule.id.clone(), scope: Some(json!(scope)) })
            })
        }
        Action::ReadInstallations | Action::Refresh => {
            policy.allow(subject, action, app_id).map(|rule| Decision::Allow { rule: rule.id.clone(), scope: None })
        }
        Action::AppToken => {
            let app_id = app_id.ok_or_else(|| bad("appId is required".into()))?;
            policy
                .allow(subject, action, Some(app_id))
                .map(|rule| Decision::Allow { rule: rule.id.clone(), scope: None })
        }
    };
    Ok(decision.unwrap_or_else(|denial| Decision::Deny { why: denial.0 }))
}

/// Reads a claims file: a JSON object of claim → string.
pub fn read_claims(path: &Path) -> Result<Claims, CliError> {
    let text = read_limited(path, 64 * 1024)?;
    let map: BTreeMap<String, Value> = serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("--claims {}: not a JSON object: {e}", path.display())))?;
    Ok(claims_of(map))
}

fn core_error(err: appcreds_core::Error) -> CliError {
    match CliError::from_core(err) {
        CliError::Aws(failure) => CliError::Aws(AwsFailure { operation: "DynamoDB (access table)", ..failure }),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("appcreds-access-{}-{name}", std::process::id()));
        std::fs::write(&dir, text).unwrap();
        dir
    }

    const RULE: &str = include_str!("../tests/data/release-rule.yaml");

    #[test]
    fn yaml_and_json_files_give_the_same_rule() {
        let yaml = read_rules(&write("a.yaml", RULE)).unwrap();
        let json_text = serde_json::to_string(&yaml[0]).unwrap();
        let json = read_rules(&write("a.json", &json_text)).unwrap();
        assert_eq!(yaml, json);
        let list = read_rules(&write("list.yaml", &format!("- {}\n", RULE.trim().replace('\n', "\n  ")))).unwrap();
        assert_eq!(list, yaml);
    }

    #[test]
    fn a_bad_file_names_every_problem_and_nothing_is_kept() {
        let bad = RULE.replace("contents: write", "contents: write, secrets: owner, nope: read");
        let err = read_rules(&write("bad.yaml", &format!("- {}\n- {{id: empty}}\n", bad.trim().replace('\n', "\n  "))))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nothing was written"), "{err}");
        assert!(
            err.contains("rule \"release\": permissions: secrets must be one of read, write, not \"owner\""),
            "{err}"
        );
        assert!(err.contains("rule \"release\": permissions: \"nope\" is not a GitHub App permission"), "{err}");
        assert!(err.contains("rule \"empty\": missing field `principals`"), "{err}");
    }

    #[test]
    fn judging_a_request_without_calling_anything() {
        let policy = Policy::new(
            read_rules(&write("p.yaml", RULE))
                .unwrap()
                .into_iter()
                .map(|d| Rule::from_document(d, 1).unwrap())
                .collect(),
        );
        let caller = "arn:aws:sts::123456789012:assumed-role/release/ci";
        let ask = |v: Value| judge(&policy, caller, None, &v).unwrap();
        assert_eq!(
            ask(json!({"operation": "installation-token", "appId": 7, "owner": "octo-org"})),
            Decision::Allow {
                rule: "release".into(),
                scope: Some(
                    json!({"repositoryNames": ["hello-world"], "permissions": {"contents": "write", "metadata": "read"}})
                )
            }
        );
        assert_eq!(
            ask(
                json!({"operation": "installation-token", "appId": 7, "repository": "octo-org/hello-world", "scopeDown": {"permissions": {"metadata": "write"}}})
            ),
            Decision::Deny { why: "permission metadata: write exceeds the granted read".into() }
        );
        assert!(matches!(ask(json!({"operation": "app-token", "appId": 7})), Decision::Deny { .. }));
        assert!(judge(&policy, caller, None, &json!({"operation": "everything"})).is_err());
    }

    #[test]
    fn an_enterprise_is_judged_by_the_rules_naming_enterprises() {
        let corp = json!({
            "id": "corp", "principals": ["arn:aws:iam::123456789012:role/release"],
            "operations": ["installation-token"], "apps": [7], "enterprises": ["octo-corp"], "repositories": ["*"],
            "permissions": {"enterprise_custom_properties_for_organizations": "read"}, "organizationPermissions": true
        });
        let mut rules: Vec<Rule> = read_rules(&write("q.yaml", RULE))
            .unwrap()
            .into_iter()
            .map(|d| Rule::from_document(d, 1).unwrap())
            .collect();
        rules.push(Rule::from_document(serde_json::from_value(corp).unwrap(), 1).unwrap());
        let policy = Policy::new(rules);
        let caller = "arn:aws:sts::123456789012:assumed-role/release/ci";
        let ask = |v: Value| judge(&policy, caller, None, &v).unwrap();
        assert_eq!(
            ask(json!({"operation": "installation-token", "appId": 7, "enterprise": "octo-corp"})),
            Decision::Allow {
                rule: "corp".into(),
                scope: Some(json!({"permissions": {"enterprise_custom_properties_for_organizations": "read"}}))
            }
        );
        assert!(matches!(
            ask(json!({"operation": "installation-token", "appId": 7, "enterprise": "octo-org"})),
            Decision::Deny { .. }
        ));
    }
}
