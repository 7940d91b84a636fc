//! Access-key rotation targets: an IAM user whose access key is rotated into GitHub Actions
//! secrets, where the key goes, and what the last runs did. No I/O: the rules a target must meet
//! before anything is written, the destinations' IDs, the token scope each owner's destinations
//! need, and the decisions the rotator makes from a target's state and the user's keys.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::domain::scope::{ScopeDown, permission_levels, repository_name_problem};
use crate::error::{Error, FieldError};

/// The default secret names.
pub const DEFAULT_KEY_ID_NAME: &str = "AWS_ACCESS_KEY_ID";
/// The default name of the secret holding the secret access key.
pub const DEFAULT_SECRET_KEY_NAME: &str = "AWS_SECRET_ACCESS_KEY";
/// The Actions variable that holds the region, when a target names one.
pub const REGION_VARIABLE: &str = "AWS_REGION";
/// GitHub's App permission for repository Actions variables. GitHub reports and grants it
/// (`actions_variables`), though `@octokit/openapi`'s `app-permissions` schema does not list it.
pub const VARIABLES_PERMISSION: &str = "actions_variables";
/// GitHub's App permission for organisation Actions variables (`organization_actions_variables`,
/// named by GitHub's REST reference for the variables endpoints; not in `app-permissions` either).
pub const ORG_VARIABLES_PERMISSION: &str = "organization_actions_variables";
/// The most destinations one target may have (each costs three GitHub calls per rotation).
pub const MAX_DESTINATIONS: usize = 500;
/// The longest maximum key age, a year.
pub const MAX_AGE_HOURS: u32 = 24 * 366;
/// IAM user names: 1 to 64 of `[\w+=,.@-]`.
const MAX_USER_NAME: usize = 64;
/// How early a key is due before its maximum age: the longest run (the rotator's timeout).
pub const DUE_EARLY_SECS: i64 = 15 * 60;
/// GitHub's longest environment name.
const MAX_ENVIRONMENT_NAME: usize = 255;

/// GitHub's secret names: letters, digits and `_`, not starting with a digit or `GITHUB_`.
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && !name.to_ascii_uppercase().starts_with("GITHUB_")
}

/// Which repositories of an organisation may use an organisation secret (GitHub's `visibility`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Every repository.
    All,
    /// Private and internal repositories.
    Private,
    /// The listed repositories only.
    Selected,
}

impl Visibility {
    /// GitHub's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::All => "all",
            Visibility::Private => "private",
            Visibility::Selected => "selected",
        }
    }
}

/// Where a key is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Destination {
    /// A repository's Actions secrets.
    #[serde(rename_all = "camelCase")]
    Repository {
        /// `owner/name`.
        repository: String,
    },
    /// An environment's secrets.
    #[serde(rename_all = "camelCase")]
    Environment {
        /// `owner/name`.
        repository: String,
        /// The environment's name.
        environment: String,
    },
    /// An organisation's Actions secrets.
    #[serde(rename_all = "camelCase")]
    Organization {
        /// The organisation's login.
        org: String,
        /// Which of its repositories may use the secrets.
        visibility: Visibility,
        /// With `selected`: the repositories (names, without the owner).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        selected_repositories: Vec<String>,
    },
}

impl Destination {
    /// A stable ID, the key of the destination's state: `repo:owner/name`,
    /// `env:owner/name:environment` or `org:login` (in lower case, as GitHub compares them;
    /// an environment keeps its case).
    pub fn id(&self) -> String {
        match self {
            Destination::Repository { repository } => format!("repo:{}", repository.to_ascii_lowercase()),
            Destination::Environment { repository, environment } => {
                format!("env:{}:{environment}", repository.to_ascii_lowercase())
            }
            Destination::Organization { org, .. } => format!("org:{}", org.to_ascii_lowercase()),
        }
    }

    /// The account whose installation writes it.
    pub fn owner(&self) -> &str {
        match self {
            Destination::Repository { repository } | Destination::Environment { repository, .. } => {
                repository.split_once('/').map_or(repository.as_str(), |(owner, _)| owner)
            }
            Destination::Organization { org, .. } => org,
        }
    }

    /// The repositories (names without the owner) a token must cover to write it.
    fn repositories(&self) -> Vec<&str> {
        match self {
            Destination::Repository { repository } | Destination::Environment { repository, .. } => {
                repository.split_once('/').map(|(_, name)| vec![name]).unwrap_or_default()
            }
            Destination::Organization { selected_repositories, .. } => {
                selected_repositories.iter().map(String::as_str).collect()
            }
        }
    }

    /// The least permissions for writing it: `secrets` (repository secrets), `environments` and
    /// `secrets` (environment secrets: GitHub documents both for them), `organization_secrets`
    /// (organisation secrets); each `write`, which includes reading the public key.
    pub fn permissions(&self) -> &'static [&'static str] {
        match self {
            Destination::Repository { .. } => &["secrets"],
            Destination::Environment { .. } => &["environments", "secrets"],
            Destination::Organization { .. } => &["organization_secrets"],
        }
    }

    /// What a destination holds besides the key: its kind and place, the secret names and the
    /// region. A destination written under another fingerprint is behind, so an edited target
    /// is written again.
    pub fn fingerprint(&self, spec: &TargetSpec) -> String {
        use sha2::Digest;
        let described = serde_json::json!([self, spec.secret_names, spec.region]).to_string();
        hex::encode(&sha2::Sha256::digest(described.as_bytes())[..8])
    }
}

/// The names of the two secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretNames {
    /// Holds the access key ID.
    pub access_key_id: String,
    /// Holds the secret access key.
    pub secret_access_key: String,
}

impl Default for SecretNames {
    fn default() -> Self {
        SecretNames { access_key_id: DEFAULT_KEY_ID_NAME.into(), secret_access_key: DEFAULT_SECRET_KEY_NAME.into() }
    }
}

/// What an operator says about a target (`appcreds rotation put`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetSpec {
    /// The IAM user whose key is rotated (one target per user: a user has at most two keys).
    pub user_name: String,
    /// The App whose installations write the secrets.
    pub app_id: i64,
    /// Where the key goes.
    pub destinations: Vec<Destination>,
    /// The secrets' names.
    #[serde(default)]
    pub secret_names: SecretNames,
    /// A key older than this is replaced.
    pub max_age_hours: u32,
    /// How long a replaced key stays (inactive) before it is deleted, so it can be reactivated.
    pub grace_hours: u32,
    /// **Optional**: also set the Actions variable [`REGION_VARIABLE`] to this AWS region in each
    /// destination (an organisation's with the visibility of its secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl TargetSpec {
    /// Every way this spec breaks the rules, as a `ValidationException` (field paths as in the
    /// JSON); `Ok` if it has none.
    pub fn validate(&self) -> Result<(), Error> {
        let mut problems = Vec::new();
        let mut bad = |path: String, message: String| problems.push(FieldError::new(path, message));
        if let Some(problem) = user_name_problem(&self.user_name) {
            bad("/userName".into(), problem);
        }
        if self.app_id <= 0 {
            bad("/appId".into(), format!("{} is not a GitHub App ID", self.app_id));
        }
        if self.destinations.is_empty() {
            bad("/destinations".into(), "names no destination; give at least one".into());
        }
        if self.destinations.len() > MAX_DESTINATIONS {
            bad(
                "/destinations".into(),
                format!("has {} destinations; at most {MAX_DESTINATIONS}", self.destinations.len()),
            );
        }
        let mut seen = BTreeSet::new();
        for (i, destination) in self.destinations.iter().enumerate() {
            let path = format!("/destinations/{i}");
            if let Some(problem) = destination_problem(destination) {
                bad(path.clone(), problem);
            } else if !seen.insert(destination.id().to_ascii_lowercase()) {
                // (Environment names too: GitHub does not tell `Prod` from `prod`.)
                bad(path, format!("{} is listed twice", destination.id()));
            }
        }
        for (path, name) in [
            ("/secretNames/accessKeyId", &self.secret_names.access_key_id),
            ("/secretNames/secretAccessKey", &self.secret_names.secret_access_key),
        ] {
            if !valid_secret_name(name) {
                bad(
                    path.into(),
                    format!(
                        "{name:?} is not a name GitHub takes for a secret (letters, digits and _, \
                         not starting with a digit or GITHUB_, at most 255)"
                    ),
                );
            }
        }
        if self.secret_names.access_key_id.eq_ignore_ascii_case(&self.secret_names.secret_access_key) {
            bad("/secretNames".into(), "the two secrets must have different names".into());
        }
        if let Some(region) = &self.region {
            let parts: Vec<&str> = region.split('-').collect();
            let ok = parts.len() >= 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
                && parts.last().is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
                && region.len() <= 32;
            if !ok {
                bad("/region".into(), format!("{region:?} is not an AWS region (like eu-west-1)"));
            }
        }
        if self.max_age_hours == 0 || self.max_age_hours > MAX_AGE_HOURS {
            bad("/maxAgeHours".into(), format!("must be 1 to {MAX_AGE_HOURS}"));
        }
        if self.grace_hours >= self.max_age_hours {
            bad(
                "/graceHours".into(),
                "must be shorter than maxAgeHours (the replaced key is deleted before the next rotation needs its slot)"
                    .into(),
            );
        }
        if problems.is_empty() { Ok(()) } else { Err(Error::invalid_fields(problems)) }
    }

    /// The destinations by owner (whose installation writes them), owners in lower case.
    pub fn by_owner<'a>(
        destinations: impl IntoIterator<Item = &'a Destination>,
    ) -> BTreeMap<String, Vec<&'a Destination>> {
        let mut owners: BTreeMap<String, Vec<&Destination>> = BTreeMap::new();
        for d in destinations {
            owners.entry(d.owner().to_ascii_lowercase()).or_default().push(d);
        }
        owners
    }
}

/// The token scope that writes `destinations` (all of one owner): exactly their repositories,
/// and for each kind of destination its one permission at `write`. Organisation destinations
/// without selected repositories add no repository.
///
/// With `variables`, repository destinations also get [`VARIABLES_PERMISSION`], organisation
/// destinations [`ORG_VARIABLES_PERMISSION`] (environment variables come with `environments`).
pub fn token_scope(destinations: &[&Destination], variables: bool) -> ScopeDown {
    let mut repositories = BTreeSet::new();
    let mut permissions = BTreeMap::new();
    for d in destinations {
        repositories.extend(d.repositories().into_iter().map(str::to_ascii_lowercase));
        for p in d.permissions() {
            permissions.insert((*p).to_string(), "write".to_string());
        }
        let variables_permission = match d {
            Destination::Repository { .. } => Some(VARIABLES_PERMISSION),
            Destination::Organization { .. } => Some(ORG_VARIABLES_PERMISSION),
            Destination::Environment { .. } => None,
        };
        if let (true, Some(p)) = (variables, variables_permission) {
            permissions.insert(p.to_string(), "write".to_string());
        }
    }
    debug_assert!(permissions.keys().all(|p| {
        p == VARIABLES_PERMISSION || p == ORG_VARIABLES_PERMISSION || permission_levels().contains_key(p)
    }));
    ScopeDown { repository_ids: Vec::new(), repository_names: repositories.into_iter().collect(), permissions }
}

/// What is wrong with `name` as an IAM user name, if anything. A name far too long to be one is
/// not quoted back.
pub fn user_name_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_USER_NAME
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    let rule = "1 to 64 of A-Z a-z 0-9 +=,.@_-";
    match ok {
        true => None,
        false if name.len() > 4 * MAX_USER_NAME => {
            Some(format!("a name of {} bytes is not an IAM user name ({rule})", name.len()))
        }
        false => Some(format!("{name:?} is not an IAM user name ({rule})")),
    }
}

fn owner_problem(owner: &str) -> Option<String> {
    let ok = !owner.is_empty()
        && owner.len() <= 39
        && owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !owner.starts_with('-')
        && !owner.ends_with('-');
    (!ok).then(|| format!("{owner:?} is not a GitHub account name"))
}

fn repository_problem(repository: &str) -> Option<String> {
    let Some((owner, name)) = repository.split_once('/') else {
        return Some(format!("repository {repository:?} must be owner/name"));
    };
    if let Some(p) = owner_problem(owner) {
        return Some(format!("repository {repository:?}: {p}"));
    }
    repository_name_problem(name).map(|p| format!("repository {repository:?}: the name {p}"))
}

fn destination_problem(destination: &Destination) -> Option<String> {
    match destination {
        Destination::Repository { repository } => repository_problem(repository),
        Destination::Environment { repository, environment } => repository_problem(repository).or_else(|| {
            let ok = !environment.is_empty()
                && environment.len() <= MAX_ENVIRONMENT_NAME
                && !environment.chars().any(|c| c.is_control() || c == '/' || c == ':');
            (!ok).then(|| format!("environment {environment:?} is not an environment name"))
        }),
        Destination::Organization { org, visibility, selected_repositories } => owner_problem(org)
            .or_else(|| match (visibility, selected_repositories.is_empty()) {
                (Visibility::Selected, true) => Some("visibility selected needs selectedRepositories".into()),
                (Visibility::All | Visibility::Private, false) => {
                    Some("selectedRepositories is only for visibility selected".into())
                }
                _ => None,
            })
            .or_else(|| {
                selected_repositories.iter().find_map(|n| {
                    repository_name_problem(n).map(|p| format!("selected repository {n:?}: the name {p}"))
                })
            }),
    }
}

/// What one destination holds, as far as the rotator knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationState {
    /// The access key ID it was last written with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// When that write happened (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_at: Option<i64>,
    /// Why the last attempt to write it failed (GitHub's message), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// [`Destination::fingerprint`] of what was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// A pair was left incomplete where what the destination held was not known: it may hold
    /// anything until it is written whole.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unknown: bool,
}

/// A key the rotator made or replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    /// The access key ID.
    pub key_id: String,
    /// When it was created, or (for a replaced key) deactivated (Unix seconds).
    pub at: i64,
}

/// A key creation in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Creating {
    /// When (Unix seconds).
    pub at: i64,
    /// The user's keys just before.
    pub existing: Vec<String>,
}

/// Hours from `at` to `now` (Unix seconds; 0 if `at` is later): a key's age.
pub fn hours_since(at: i64, now: i64) -> f64 {
    (now - at).max(0) as f64 / 3600.0
}

/// What the rotator recorded about a target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationState {
    /// The newest key, the one every destination should hold (with its creation time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<KeyRef>,
    /// The key the current one replaces, still **active** until every destination holds the
    /// current one (with its creation time, if known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring: Option<KeyRef>,
    /// A replaced key, inactive since `at`, deleted once the grace period has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<KeyRef>,
    /// Each destination's state, by [`Destination::id`].
    #[serde(default)]
    pub destinations: BTreeMap<String, DestinationState>,
    /// Set just before a key is created (with the keys the user had then), cleared when the new
    /// key is recorded: a run that dies in between leaves it, and the next run deletes the key
    /// that is in neither (it was never handed out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creating: Option<Creating>,
    /// Set (saved) when a run starts writing destinations, cleared when it records the end: a run
    /// that finds it set knows that one before it may have written destinations without recording
    /// it, so what those hold is not known and no key ID is put back on them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writing: Option<i64>,
    /// When the rotator last looked at the target, and what went wrong then, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl RotationState {
    /// The destinations of `spec` that do not hold the current key.
    pub fn behind<'a>(&self, spec: &'a TargetSpec) -> Vec<&'a Destination> {
        let current = self.current.as_ref().map(|k| k.key_id.as_str());
        spec.destinations
            .iter()
            .filter(|d| {
                let held = self.destinations.get(&d.id());
                current.is_none()
                    || held.and_then(|s| s.key_id.as_deref()) != current
                    || held.and_then(|s| s.fingerprint.as_deref()).is_some_and(|f| f != d.fingerprint(spec))
            })
            .collect()
    }

    /// Whether the current key is due by its age at `now`: it reaches its maximum age within
    /// [`DUE_EARLY_SECS`]. A key is made up to a run's length after the run starts, so without
    /// that margin the run one maximum age later would find it a few minutes short, and it would
    /// live a whole schedule period longer.
    pub fn aged(&self, spec: &TargetSpec, now: i64) -> bool {
        self.current.as_ref().is_some_and(|c| now - c.at + DUE_EARLY_SECS >= i64::from(spec.max_age_hours) * 3600)
    }

    /// Whether a run at `now` has nothing to do for `spec` by this state alone: a current key
    /// younger than its maximum age that every destination holds, no old key still active, and
    /// no replaced key whose grace period is over, and no key creation interrupted. The scheduled
    /// run skips such a target after checking only that IAM still has its current key active.
    pub fn nothing_due(&self, spec: &TargetSpec, now: i64) -> bool {
        let young = self.current.is_some() && !self.aged(spec, now);
        let grace = i64::from(spec.grace_hours) * 3600;
        young
            && self.creating.is_none()
            && self.retiring.is_none()
            && self.previous.as_ref().is_none_or(|p| now < p.at + grace)
            && self.behind(spec).is_empty()
    }
}

/// One of the user's access keys, as IAM lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyInfo {
    /// The access key ID.
    pub key_id: String,
    /// Whether it is `Active`.
    pub active: bool,
    /// When it was created (Unix seconds).
    pub created: i64,
}

/// Which of a user's two keys may be deleted to make room for a new one: one that is inactive and
/// is neither the current key nor a replaced key still in its grace period. `Err` names why none
/// may (both live), and no key is ever deleted then.
pub fn key_to_make_room(
    keys: &[AccessKeyInfo],
    state: &RotationState,
    grace_secs: i64,
    now: i64,
) -> Result<Option<String>, String> {
    if keys.len() < 2 {
        return Ok(None);
    }
    let current = state.current.as_ref().map(|k| k.key_id.as_str());
    let retiring = state.retiring.as_ref().map(|k| k.key_id.as_str());
    let in_grace = |id: &str| state.previous.as_ref().is_some_and(|p| p.key_id == id && now < p.at + grace_secs);
    let live = |id: &str| Some(id) == current || Some(id) == retiring || in_grace(id);
    if let Some(k) = keys.iter().find(|k| !k.active && !live(&k.key_id)) {
        return Ok(Some(k.key_id.clone()));
    }
    let described: Vec<String> = keys
        .iter()
        .map(|k| {
            if k.active {
                format!("{} is active", k.key_id)
            } else if Some(k.key_id.as_str()) == retiring {
                format!("{} still serves destinations that are behind", k.key_id)
            } else if let Some(p) = state.previous.as_ref().filter(|p| p.key_id == k.key_id) {
                format!(
                    "{} is in its grace period until {}",
                    k.key_id,
                    crate::domain::clock::rfc3339(p.at + grace_secs)
                )
            } else {
                format!("{} is the current key", k.key_id)
            }
        })
        .collect();
    Err(format!(
        "the user already has two live access keys ({}); none is deleted. Deactivate the one no longer in use, \
         or wait for the grace period to end",
        described.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(destinations: Vec<Destination>) -> TargetSpec {
        TargetSpec {
            user_name: "ci-deployer".into(),
            app_id: 42,
            destinations,
            secret_names: SecretNames::default(),
            max_age_hours: 24,
            grace_hours: 2,
            region: None,
        }
    }

    fn repo(r: &str) -> Destination {
        Destination::Repository { repository: r.into() }
    }

    fn messages(err: Error) -> Vec<(String, String)> {
        match err {
            Error::Validation { fields, .. } => fields.into_iter().map(|f| (f.path, f.message)).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_good_spec_passes_and_round_trips_as_json() {
        let s = spec(vec![
            repo("octo-org/api"),
            Destination::Environment { repository: "octo-org/api".into(), environment: "Production".into() },
            Destination::Organization {
                org: "octo-org".into(),
                visibility: Visibility::Selected,
                selected_repositories: vec!["web".into()],
            },
        ]);
        s.validate().unwrap();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json["destinations"][1],
            serde_json::json!({"type": "environment", "repository": "octo-org/api", "environment": "Production"})
        );
        assert_eq!(json["destinations"][2]["selectedRepositories"], serde_json::json!(["web"]));
        assert_eq!(serde_json::from_value::<TargetSpec>(json).unwrap(), s);
    }

    #[test]
    fn every_problem_is_named_with_its_path() {
        let mut s = spec(vec![
            repo("no-slash"),
            repo("octo/bad name"),
            repo("-bad-owner/x"),
            repo("octo/ok"),
            repo("OCTO/OK"),
            Destination::Organization {
                org: "octo".into(),
                visibility: Visibility::Selected,
                selected_repositories: vec![],
            },
            Destination::Environment { repository: "octo/ok".into(), environment: "".into() },
        ]);
        s.user_name = "has space".into();
        s.app_id = 0;
        s.secret_names.access_key_id = "GITHUB_KEY".into();
        s.secret_names.secret_access_key = "1ABC".into();
        s.grace_hours = 24;
        s.region = Some("Mars-1".into());
        let m = messages(s.validate().unwrap_err());
        let paths: Vec<&str> = m.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/userName",
                "/appId",
                "/destinations/0",
                "/destinations/1",
                "/destinations/2",
                "/destinations/4",
                "/destinations/5",
                "/destinations/6",
                "/secretNames/accessKeyId",
                "/secretNames/secretAccessKey",
                "/region",
                "/graceHours"
            ]
        );
        assert!(m[2].1.contains("must be owner/name"), "{m:?}");
        assert!(m[5].1.contains("listed twice"), "{m:?}");
        assert!(m[8].1.contains("\"GITHUB_KEY\" is not a name GitHub takes"), "{m:?}");
        let empty = messages(spec(vec![]).validate().unwrap_err());
        assert_eq!(empty, [("/destinations".to_string(), "names no destination; give at least one".to_string())]);
    }

    #[test]
    fn each_owner_gets_exactly_its_repositories_and_least_permissions() {
        let s = spec(vec![
            repo("octo/api"),
            repo("octo/web"),
            Destination::Environment { repository: "octo/api".into(), environment: "prod".into() },
            repo("other/tool"),
            Destination::Organization {
                org: "third".into(),
                visibility: Visibility::All,
                selected_repositories: vec![],
            },
        ]);
        let owners = TargetSpec::by_owner(&s.destinations);
        assert_eq!(owners.keys().collect::<Vec<_>>(), ["octo", "other", "third"]);
        let octo = token_scope(&owners["octo"], false);
        assert_eq!(octo.repository_names, ["api", "web"]);
        assert_eq!(
            octo.permissions,
            BTreeMap::from([("environments".into(), "write".into()), ("secrets".into(), "write".into())])
        );
        // An owner with environment destinations only still gets `secrets`.
        let env_only = Destination::Environment { repository: "solo/app".into(), environment: "prod".into() };
        assert_eq!(
            token_scope(&[&env_only], false).permissions.keys().collect::<Vec<_>>(),
            ["environments", "secrets"]
        );
        let other = token_scope(&owners["other"], true);
        assert_eq!(
            other.permissions,
            BTreeMap::from([("actions_variables".into(), "write".into()), ("secrets".into(), "write".into())]),
            "with a region, repositories also get their variables' permission"
        );
        let third = token_scope(&owners["third"], true);
        assert!(third.repository_names.is_empty());
        assert_eq!(
            third.permissions,
            BTreeMap::from([
                ("organization_actions_variables".into(), "write".into()),
                ("organization_secrets".into(), "write".into())
            ]),
            "with a region, organisations get theirs"
        );
        let third = token_scope(&owners["third"], false);
        assert_eq!(third.permissions, BTreeMap::from([("organization_secrets".into(), "write".into())]));
        // Environment variables need nothing beyond `environments`.
        assert_eq!(token_scope(&[&env_only], true).permissions.keys().collect::<Vec<_>>(), ["environments", "secrets"]);
        // The permission names are GitHub's (data/app-permissions.json).
        for p in ["secrets", "environments", "organization_secrets"] {
            assert_eq!(permission_levels()[p], ["read", "write"]);
        }
    }

    #[test]
    fn room_is_made_only_from_a_key_that_is_not_live() {
        let key = |id: &str, active: bool| AccessKeyInfo { key_id: id.into(), active, created: 0 };
        let mut state = RotationState {
            current: Some(KeyRef { key_id: "B".into(), at: 100 }),
            previous: Some(KeyRef { key_id: "A".into(), at: 1000 }),
            ..Default::default()
        };
        // One key: nothing to delete.
        assert_eq!(key_to_make_room(&[key("B", true)], &state, 3600, 2000), Ok(None));
        // A replaced key in its grace period is live.
        let err = key_to_make_room(&[key("A", false), key("B", true)], &state, 3600, 2000).unwrap_err();
        assert!(err.contains("A is in its grace period") && err.contains("B is active"), "{err}");
        // After it, it goes.
        assert_eq!(key_to_make_room(&[key("A", false), key("B", true)], &state, 3600, 5000), Ok(Some("A".into())));
        // An inactive key the rotator never knew is not live.
        assert_eq!(key_to_make_room(&[key("B", true), key("X", false)], &state, 3600, 2000), Ok(Some("X".into())));
        // Two active keys: never.
        assert!(key_to_make_room(&[key("B", true), key("X", true)], &state, 3600, 2000).is_err());
        // The current key is never deleted, even inactive.
        state.previous = None;
        assert!(key_to_make_room(&[key("B", false), key("X", true)], &state, 3600, 2000).is_err());
        // Nor the key being replaced, which destinations that are behind still hold.
        state.retiring = Some(KeyRef { key_id: "R".into(), at: 0 });
        let err = key_to_make_room(&[key("B", true), key("R", false)], &state, 3600, 2000).unwrap_err();
        assert!(err.contains("R still serves destinations that are behind"), "{err}");
    }

    #[test]
    fn behind_means_not_holding_the_current_key() {
        let s = spec(vec![repo("octo/a"), repo("octo/b")]);
        let mut state = RotationState::default();
        assert_eq!(state.behind(&s).len(), 2, "no key yet: all behind");
        state.current = Some(KeyRef { key_id: "K2".into(), at: 0 });
        let held = |d: &Destination, key: &str| DestinationState {
            key_id: Some(key.into()),
            fingerprint: Some(d.fingerprint(&s)),
            ..Default::default()
        };
        state.destinations.insert("repo:octo/a".into(), held(&s.destinations[0], "K2"));
        state.destinations.insert("repo:octo/b".into(), held(&s.destinations[1], "K1"));
        assert_eq!(state.behind(&s), [&s.destinations[1]]);
        // An edited target (other secret names, a region) is written again.
        let names = SecretNames { access_key_id: "KEY".into(), ..SecretNames::default() };
        let renamed = TargetSpec { secret_names: names, ..s.clone() };
        assert_eq!(state.behind(&renamed).len(), 2);
        let regional = TargetSpec { region: Some("eu-west-1".into()), ..s.clone() };
        assert_eq!(state.behind(&regional).len(), 2);
    }

    #[test]
    fn a_key_is_due_when_it_reaches_its_maximum_age_within_one_run() {
        let s = spec(vec![repo("octo/a")]);
        let created = 1_000_000;
        let mut state =
            RotationState { current: Some(KeyRef { key_id: "K".into(), at: created }), ..Default::default() };
        state.destinations.insert(
            "repo:octo/a".into(),
            DestinationState {
                key_id: Some("K".into()),
                fingerprint: Some(s.destinations[0].fingerprint(&s)),
                ..Default::default()
            },
        );
        let max = 24 * 3600;
        // Made ten minutes into a run: the run a maximum age later rotates it, not the one after.
        let next_run = created - 10 * 60 + max;
        assert!(state.aged(&s, next_run) && !state.nothing_due(&s, next_run));
        // Earlier than one run's length before its maximum age, it is not due.
        let early = created + max - DUE_EARLY_SECS - 1;
        assert!(!state.aged(&s, early) && state.nothing_due(&s, early));
        assert!(!RotationState::default().aged(&s, next_run), "no key: nothing aged (but everything behind)");
    }

    #[test]
    fn one_environment_named_in_two_cases_is_listed_twice() {
        let env = |e: &str| Destination::Environment { repository: "Octo/API".into(), environment: e.into() };
        let err = spec(vec![env("Prod"), env("prod")]).validate().unwrap_err().to_string();
        assert!(err.contains("listed twice"), "{err}");
        spec(vec![env("prod"), env("staging")]).validate().unwrap();
    }

    #[test]
    fn secret_names_as_github_takes_them() {
        for good in ["AWS_ACCESS_KEY_ID", "aws_secret", "A1", "_X"] {
            assert!(valid_secret_name(good), "{good}");
        }
        for bad in ["", "1ABC", "GITHUB_TOKEN", "github_x", "A-B", "A B", "É", &"A".repeat(256)] {
            assert!(!valid_secret_name(bad), "{bad}");
        }
    }
}
