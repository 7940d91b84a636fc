//! The access-key rotator's targets, as `appcreds rotation …` manages them. A target is built from
//! flags and checked in full (the same rules the rotator holds it to, and that its App is
//! registered) before anything is written.

use appcreds_core::aws::app_table::DynamoAppStore;
use appcreds_core::aws::rotation_table::DynamoRotationStore;
use appcreds_core::domain::rotation::{Destination, SecretNames, TargetSpec, Visibility};
use appcreds_core::ports::{AppStore, RotationStore, TargetRecord};
use serde_json::{Value, json};

use crate::CliError;

/// What `rotation put` was given.
#[derive(Debug, Clone, Default)]
pub struct PutInput {
    pub user_name: String,
    pub app_id: i64,
    /// `owner/name`.
    pub repositories: Vec<String>,
    /// `owner/name:environment`.
    pub environments: Vec<String>,
    /// `org:all`, `org:private` or `org:selected:repo,repo`.
    pub organizations: Vec<String>,
    pub access_key_id_name: Option<String>,
    pub secret_access_key_name: Option<String>,
    pub max_age_hours: u32,
    pub grace_hours: u32,
    /// Also set the `AWS_REGION` Actions variable.
    pub region: Option<String>,
}

/// The spec `input` describes, checked; every problem is named, and nothing is written.
pub fn spec_of(input: &PutInput) -> Result<TargetSpec, CliError> {
    let mut problems = Vec::new();
    let mut destinations: Vec<Destination> =
        input.repositories.iter().map(|r| Destination::Repository { repository: r.clone() }).collect();
    for e in &input.environments {
        match e.rsplit_once(':') {
            Some((repository, environment)) => destinations.push(Destination::Environment {
                repository: repository.to_string(),
                environment: environment.to_string(),
            }),
            None => problems.push(format!("--environment {e:?}: give owner/name:environment")),
        }
    }
    for o in &input.organizations {
        let mut parts = o.splitn(3, ':');
        let org = parts.next().unwrap_or_default().to_string();
        let visibility = match parts.next() {
            Some("all") => Visibility::All,
            Some("private") => Visibility::Private,
            Some("selected") => Visibility::Selected,
            _ => {
                problems.push(format!("--organization {o:?}: give org:all, org:private or org:selected:repo,repo"));
                continue;
            }
        };
        let selected_repositories = parts
            .next()
            .map(|r| r.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        destinations.push(Destination::Organization { org, visibility, selected_repositories });
    }
    let defaults = SecretNames::default();
    let spec = TargetSpec {
        user_name: input.user_name.clone(),
        app_id: input.app_id,
        destinations,
        secret_names: SecretNames {
            access_key_id: input.access_key_id_name.clone().unwrap_or(defaults.access_key_id),
            secret_access_key: input.secret_access_key_name.clone().unwrap_or(defaults.secret_access_key),
        },
        max_age_hours: input.max_age_hours,
        grace_hours: input.grace_hours,
        region: input.region.clone(),
    };
    if let Err(appcreds_core::Error::Validation { fields, .. }) = spec.validate() {
        problems.extend(fields.into_iter().map(|f| format!("{}: {}", f.path, f.message)));
    }
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err(CliError::Refused(format!("nothing was written:\n  {}", problems.join("\n  "))))
    }
}

/// The rotation table, and the App table to check Apps against.
pub struct Targets {
    store: DynamoRotationStore,
    apps: DynamoAppStore,
}

fn failed(err: appcreds_core::Error) -> CliError {
    CliError::from_core(err)
}

impl Targets {
    pub fn new(client: aws_sdk_dynamodb::Client, rotation_table: &str, app_table: &str) -> Self {
        Targets {
            store: DynamoRotationStore::new(client.clone(), rotation_table),
            apps: DynamoAppStore::new(client, app_table),
        }
    }

    /// Writes `spec` (checked already) if its App is registered; keeps the target's state.
    pub async fn put(&self, spec: &TargetSpec) -> Result<Value, CliError> {
        if self.apps.get_app(spec.app_id).await.map_err(failed)?.is_none() {
            return Err(CliError::Refused(format!(
                "App {} is not registered with appcreds (import its key first); nothing was written",
                spec.app_id
            )));
        }
        self.store.put_spec(spec).await.map_err(failed)?;
        Ok(json!({"written": spec.user_name, "destinations": spec.destinations.len()}))
    }

    /// One target: its spec and state (never a secret: the pending one is shown only as present).
    pub async fn get(&self, user: &str) -> Result<Value, CliError> {
        match self.store.get(user).await.map_err(failed)? {
            Some(record) => Ok(view(&record)),
            None => Err(CliError::Refused(format!("no rotation target for IAM user {user:?}"))),
        }
    }

    /// Every target; a row that is not a valid target is listed with why.
    pub async fn list(&self) -> Result<Vec<Value>, CliError> {
        let listed = self.store.list().await.map_err(failed)?;
        let mut all: Vec<Value> = listed.records.iter().map(view).collect();
        all.extend(listed.invalid.into_iter().map(|(user, why)| {
            json!({"spec": {"userName": user}, "state": {"lastError": format!("invalid target, not rotated: {why}")}, "behind": []})
        }));
        Ok(all)
    }

    /// Deletes a target (the user's keys and the secrets stay as they are). A target in the
    /// middle of a rotation (destinations behind, the old key still active) is kept unless
    /// `force`: deleting it would drop the encrypted new secret and leave two active keys.
    pub async fn delete(&self, user: &str, force: bool) -> Result<(), CliError> {
        if !force
            && let Some(record) = self.store.get(user).await.map_err(failed)?
            && (record.pending.is_some()
                || record.state.retiring.is_some()
                || record.state.creating.is_some()
                || record.state.previous.is_some())
        {
            return Err(CliError::Refused(format!(
                "target {user:?} is in the middle of a rotation (destinations behind: {}), or its replaced key \
                 is in its grace period; run it until that is over, or delete with --force (its keys are then \
                 yours to sort out by hand)",
                record.state.behind(&record.spec).len()
            )));
        }
        if self.store.delete(user).await.map_err(failed)? {
            Ok(())
        } else {
            Err(CliError::Refused(format!("no rotation target for IAM user {user:?}")))
        }
    }
}

fn view(record: &TargetRecord) -> Value {
    let state = &record.state;
    let behind: Vec<String> = state.behind(&record.spec).iter().map(|d| d.id()).collect();
    json!({
        "spec": record.spec,
        "state": state,
        "behind": behind,
        "pendingSecret": record.pending.is_some(),
        "version": record.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> PutInput {
        PutInput {
            user_name: "ci-deployer".into(),
            app_id: 7,
            repositories: vec!["octo-org/api".into()],
            environments: vec!["octo-org/api:production".into()],
            organizations: vec!["octo-org:selected:web,tools".into()],
            max_age_hours: 720,
            grace_hours: 24,
            ..PutInput::default()
        }
    }

    #[test]
    fn flags_become_a_spec() {
        let spec = spec_of(&input()).unwrap();
        assert_eq!(spec.destinations.len(), 3);
        assert_eq!(
            spec.destinations[2],
            Destination::Organization {
                org: "octo-org".into(),
                visibility: Visibility::Selected,
                selected_repositories: vec!["web".into(), "tools".into()]
            }
        );
        assert_eq!(spec.secret_names, SecretNames::default());
    }

    #[test]
    fn every_problem_is_named_and_nothing_is_written() {
        let bad = PutInput {
            repositories: vec!["not-a-repo".into()],
            environments: vec!["octo-org/api".into()],
            organizations: vec!["octo-org:everyone".into()],
            access_key_id_name: Some("GITHUB_TOKEN".into()),
            ..input()
        };
        let CliError::Refused(message) = spec_of(&bad).unwrap_err() else { panic!() };
        assert!(message.starts_with("nothing was written"), "{message}");
        for expected in
            ["give owner/name:environment", "org:all, org:private", "must be owner/name", "\"GITHUB_TOKEN\""]
        {
            assert!(message.contains(expected), "{expected}: {message}");
        }
        let empty = PutInput { repositories: vec![], environments: vec![], organizations: vec![], ..input() };
        let CliError::Refused(message) = spec_of(&empty).unwrap_err() else { panic!() };
        assert!(message.contains("/destinations: names no destination"), "{message}");
    }
}
