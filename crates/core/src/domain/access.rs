//! Access rules: who may get which credential. Deny by default.
//!
//! A [`Rule`] names callers (IAM role or user ARNs, `*` inside one ARN segment; optionally GitHub
//! Actions OIDC claims they must also present), the operations it grants, the Apps, the
//! installations (owner logins, enterprise slugs or node IDs), the repositories and a permission
//! ceiling. A
//! [`Policy`] is every rule, indexed by principal so that a request is judged in microseconds
//! whatever the number of rules. This module does no I/O: rules come from the access table
//! through the `AccessStore` port, claims from a verified OIDC token.
//!
//! An assumed-role caller (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`) is matched through
//! its account and role name only, never through the session name, which the caller chooses; a
//! role's path is not in that ARN, so a rule's role path is not compared either.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::scope::{ScopeDown, acts_on_the_account, permission_levels, repository_name_problem};
pub use appcreds_wire::Target;

/// What a rule may grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// `POST /tokens/installation`.
    InstallationToken,
    /// `POST /tokens/app`: the App JWT, with which a caller can mint any token at GitHub itself.
    AppToken,
    /// `POST /installations/info` and `POST /installations`.
    ReadInstallations,
    /// `POST /installations/refresh`.
    Refresh,
}

impl Action {
    /// The name as rules and messages write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::InstallationToken => "installation-token",
            Action::AppToken => "app-token",
            Action::ReadInstallations => "read-installations",
            Action::Refresh => "refresh",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A permission level: `read` < `write` < `admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// `read`.
    Read,
    /// `write`.
    Write,
    /// `admin`.
    Admin,
}

impl Level {
    /// The level GitHub writes as `text`.
    pub fn parse(text: &str) -> Option<Level> {
        match text {
            "read" => Some(Level::Read),
            "write" => Some(Level::Write),
            "admin" => Some(Level::Admin),
            _ => None,
        }
    }

    /// The level as GitHub writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Read => "read",
            Level::Write => "write",
            Level::Admin => "admin",
        }
    }
}

/// A rule as operators write it (YAML or JSON) and as the access table stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleDocument {
    /// A name for the rule: 1 to 64 of `A-Z a-z 0-9 . _ -`.
    pub id: String,
    /// What the rule is for, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// IAM role or user ARNs (or patterns with `*` inside one segment) of the callers.
    pub principals: Vec<String>,
    /// GitHub Actions OIDC claims the caller must also present (claim → exact value or `*` pattern).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub github: BTreeMap<String, String>,
    /// What it grants: `installation-token`, `app-token`, `read-installations`, `refresh`.
    pub operations: Vec<Action>,
    /// App IDs; `["*"]` for every App.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<AppRef>,
    /// Installations by account login (case-insensitive); `["*"]` for every installation,
    /// enterprises' included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    /// Installations on enterprises, by the enterprise's slug (case-insensitive). Logins and
    /// slugs are separate names on GitHub, so `owners` never covers an enterprise's installation
    /// (except `["*"]`) and `enterprises` never covers a user's or an organization's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enterprises: Vec<String>,
    /// Installations by the account's node ID.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_ids: Vec<String>,
    /// Repository names or `*` patterns; `["*"]` for every repository of the installation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// Repository IDs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repository_ids: Vec<i64>,
    /// Only the repository of the caller's verified `repository` claim.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub caller_repository_only: bool,
    /// The permission ceiling: permission → highest level.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub permissions: BTreeMap<String, String>,
    /// The ceiling may name organization and account permissions (`members`,
    /// `organization_secrets`, …), which no `repositories` or `callerRepositoryOnly` confines:
    /// a token with one acts on the whole account. Off unless set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub organization_permissions: bool,
}

/// An App ID, or `"*"` for any App.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AppRef {
    /// One App.
    Id(i64),
    /// `"*"`.
    Any(String),
}

/// The claims GitHub Actions OIDC tokens carry that rules may require (and, besides these, any
/// custom property claim: see [`is_repo_property_claim`]).
pub const CLAIMS: [&str; 11] = [
    "sub",
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "ref",
    "job_workflow_ref",
    "environment",
    "event_name",
    "workflow_ref",
    "check_run_id",
];

/// The prefix of the claims GitHub adds for a repository's custom properties, when the
/// organization includes them in its OIDC tokens: `repo_property_NAME`.
pub const REPO_PROPERTY_PREFIX: &str = "repo_property_";

/// The longest custom property claim name a rule may require.
pub const MAX_REPO_PROPERTY_CLAIM: usize = 128;

/// Whether `claim` is a custom property claim rules may require: [`REPO_PROPERTY_PREFIX`] then
/// lower-case letters, digits and `_`, at most [`MAX_REPO_PROPERTY_CLAIM`] characters in all.
pub fn is_repo_property_claim(claim: &str) -> bool {
    claim.len() <= MAX_REPO_PROPERTY_CLAIM
        && claim.strip_prefix(REPO_PROPERTY_PREFIX).is_some_and(|name| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// Whether a rule may require `claim`: one of [`CLAIMS`] or a custom property claim. Neither
/// `check_run_id` nor a custom property anchors a rule to an owner ([`anchors_an_owner`]): any
/// repository on GitHub can have a property of any name and value.
pub fn may_require(claim: &str) -> bool {
    CLAIMS.contains(&claim) || is_repo_property_claim(claim)
}

/// The longest enterprise slug a rule or a request may name.
pub const MAX_ENTERPRISE_SLUG: usize = 100;

/// Whether `slug` can be an enterprise's slug: 1 to [`MAX_ENTERPRISE_SLUG`] letters, digits and
/// hyphens, neither first nor last a hyphen (as a login).
fn is_enterprise_slug(slug: &str) -> bool {
    (1..=MAX_ENTERPRISE_SLUG).contains(&slug.len())
        && slug.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !slug.starts_with('-')
        && !slug.ends_with('-')
}

/// Whether the condition `claim: pattern` pins the owner of the calling repository: an ID or an
/// owner login with no `*`; a `repository` (`OWNER/NAME`) or a `sub` (`repo:OWNER/…`, or the
/// immutable `repo:OWNER@ID/NAME@ID:…`) whose owner part has no `*`.
pub fn anchors_an_owner(claim: &str, pattern: &str) -> bool {
    let exact = |text: &str| !text.is_empty() && !text.contains('*');
    match claim {
        "repository_owner_id" | "repository_id" | "repository_owner" => exact(pattern),
        "repository" => pattern.split_once('/').is_some_and(|(owner, _)| exact(owner)),
        "sub" => {
            pattern.strip_prefix("repo:").and_then(|rest| rest.split_once('/')).is_some_and(|(owner, _)| exact(owner))
        }
        _ => false,
    }
}

/// Most rules a policy holds; a larger table is refused rather than judged slowly.
pub const MAX_RULES: usize = 10_000;

/// A principal pattern, split for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PrincipalPattern {
    partition: String,
    account: String,
    kind: PrincipalKind,
    /// For a role: the role name pattern (its path dropped). For a user: the whole `path/name`.
    name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PrincipalKind {
    Role,
    User,
}

/// A caller as the request context names it, split for matching.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CallerKey {
    partition: String,
    account: String,
    kind: PrincipalKind,
    name: String,
}

impl CallerKey {
    /// The key of a caller ARN: an assumed role by its role name (not its session), a user by its
    /// path and name. Anything else (the account root, a federated user) has none.
    fn of(arn: &str) -> Option<CallerKey> {
        let (partition, service, account, resource) = split_arn(arn)?;
        let (kind, name) = match (service, resource.split_once('/')) {
            ("sts", Some(("assumed-role", rest))) => (PrincipalKind::Role, rest.split_once('/')?.0.to_string()),
            ("iam", Some(("user", rest))) => (PrincipalKind::User, rest.to_string()),
            ("iam", Some(("role", rest))) => (PrincipalKind::Role, rest.rsplit('/').next()?.to_string()),
            _ => return None,
        };
        (!name.is_empty()).then(|| CallerKey { partition: partition.into(), account: account.into(), kind, name })
    }
}

/// `arn:PARTITION:SERVICE::ACCOUNT:RESOURCE` (IAM and STS ARNs have no region).
fn split_arn(arn: &str) -> Option<(&str, &str, &str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (prefix, partition, service, region, account, resource) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (prefix == "arn" && region.is_empty() && !partition.is_empty()).then_some((partition, service, account, resource))
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters (none included).
pub fn glob(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else { return pattern == text };
    let Some(mut remaining) = text.strip_prefix(first) else { return false };
    let mut parts: Vec<&str> = rest.split('*').collect();
    let last = parts.pop().unwrap_or_default();
    for part in parts {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

/// [`glob`], where `*` does not cross `/` (one path segment of an ARN).
fn segment_glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), text.split('/').collect());
    p.len() == t.len() && p.iter().zip(&t).all(|(p, t)| glob(p, t))
}

impl PrincipalPattern {
    fn parse(arn: &str) -> Result<PrincipalPattern, String> {
        let bad = || format!("{arn:?} is not an IAM role or user ARN (arn:aws:iam::123456789012:role/NAME)");
        let (partition, service, account, resource) = split_arn(arn).ok_or_else(bad)?;
        if service != "iam" || partition.contains('*') {
            return Err(bad());
        }
        if !(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())) && account != "*" {
            return Err(format!("{arn:?}: the account must be 12 digits (or *)"));
        }
        let (kind, path) = match resource.split_once('/') {
            Some(("role", rest)) => (PrincipalKind::Role, rest),
            Some(("user", rest)) => (PrincipalKind::User, rest),
            _ => return Err(bad()),
        };
        if path.is_empty() || path.split('/').any(str::is_empty) || path.contains("**") {
            return Err(bad());
        }
        if path.chars().any(|c| !(c.is_ascii_alphanumeric() || "+=,.@_-/*".contains(c))) {
            return Err(format!("{arn:?}: a role or user name has only letters, digits and +=,.@_-"));
        }
        if kind == PrincipalKind::Role && path.contains('/') && path.contains('*') {
            // An assumed-role ARN has no path, so only the last segment could be compared, and
            // `role/team/*` would name every role of the account.
            return Err(format!("{arn:?}: a role pattern with * cannot have a path (name the role: role/NAME-*)"));
        }
        let name = match kind {
            PrincipalKind::Role => path.rsplit('/').next().unwrap_or_default().to_string(),
            PrincipalKind::User => path.to_string(),
        };
        Ok(PrincipalPattern { partition: partition.into(), account: account.into(), kind, name })
    }

    fn is_exact(&self) -> bool {
        !self.account.contains('*') && !self.name.contains('*')
    }

    fn key(&self) -> CallerKey {
        CallerKey {
            partition: self.partition.clone(),
            account: self.account.clone(),
            kind: self.kind,
            name: self.name.clone(),
        }
    }

    fn matches(&self, caller: &CallerKey) -> bool {
        self.kind == caller.kind
            && self.partition == caller.partition
            && (self.account == "*" || self.account == caller.account)
            && segment_glob(&self.name, &caller.name)
    }
}

/// Which Apps a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Apps {
    Any,
    Some(BTreeSet<i64>),
}

/// Which repositories an installation-token rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Repositories {
    /// Every repository of the installation.
    Any,
    /// These names (lower case; `*` patterns allowed) and IDs.
    Listed { names: Vec<String>, ids: BTreeSet<i64> },
    /// The repository of the caller's `repository` claim.
    CallerRepository,
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The rule's ID.
    pub id: String,
    /// Its version in the access table (each write increments it).
    pub version: u64,
    /// The document it was read from.
    pub document: RuleDocument,
    principals: Vec<PrincipalPattern>,
    operations: BTreeSet<Action>,
    apps: Apps,
    /// Lower-case owner logins; `None` for any installation.
    owners: Option<BTreeSet<String>>,
    /// Lower-case enterprise slugs.
    enterprises: BTreeSet<String>,
    node_ids: BTreeSet<String>,
    repositories: Repositories,
    ceiling: BTreeMap<String, Level>,
}

/// Most bytes of a rule document.
pub const MAX_RULE_BYTES: usize = 16 * 1024;

/// The document's size as JSON and its ID.
fn check_size_and_id(d: &RuleDocument, problems: &mut Vec<String>) {
    let size = serde_json::to_string(d).map_or(usize::MAX, |t| t.len());
    if size > MAX_RULE_BYTES {
        problems.push(format!("the rule is {size} bytes as JSON; at most {MAX_RULE_BYTES}"));
    }
    if d.id.is_empty()
        || d.id.len() > 64
        || !d.id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        problems.push(format!("id {:?} must be 1 to 64 of A-Z a-z 0-9 . _ -", d.id));
    }
}

/// The callers a rule names: at least one, each a valid ARN pattern.
fn principals_of(d: &RuleDocument, problems: &mut Vec<String>) -> Vec<PrincipalPattern> {
    if d.principals.is_empty() {
        problems.push("principals: name at least one IAM role or user ARN".into());
    }
    d.principals.iter().filter_map(|p| PrincipalPattern::parse(p).map_err(|e| problems.push(e)).ok()).collect()
}

/// The GitHub Actions OIDC conditions: claims rules may require, none empty, and one that pins
/// the owner.
fn check_github_conditions(d: &RuleDocument, problems: &mut Vec<String>) {
    for (claim, pattern) in &d.github {
        if !may_require(claim) {
            problems.push(format!(
                "github: {claim:?} is not a claim rules can require ({}, or {REPO_PROPERTY_PREFIX}NAME with NAME in \
                 a-z 0-9 _)",
                CLAIMS.join(", ")
            ));
        }
        if pattern.is_empty() {
            problems.push(format!("github: {claim} must not be empty"));
        }
    }
    if !d.github.is_empty() && !d.github.iter().any(|(claim, pattern)| anchors_an_owner(claim, pattern)) {
        problems.push(
            "github: no condition pins the owner, and GitHub signs OIDC tokens for every repository on GitHub with \
             any audience a workflow asks for, so a job in anyone's account would meet these; add \
             repository_owner_id (immutable, preferred), repository_id, repository_owner, or a repository \
             (OWNER/NAME) or sub (repo:OWNER/…) whose owner has no *"
                .into(),
        );
    }
}

/// The operations a rule grants: at least one.
fn operations_of(d: &RuleDocument, problems: &mut Vec<String>) -> BTreeSet<Action> {
    if d.operations.is_empty() {
        problems
            .push("operations: name at least one of installation-token, app-token, read-installations, refresh".into());
    }
    d.operations.iter().copied().collect()
}

/// The Apps a rule covers: App IDs, or `*` alone.
fn apps_of(d: &RuleDocument, problems: &mut Vec<String>) -> Apps {
    match d.apps.as_slice() {
        [AppRef::Any(star)] if star == "*" => Apps::Any,
        [] => {
            problems.push("apps: name the App IDs (or \"*\")".into());
            Apps::Some(BTreeSet::new())
        }
        list => Apps::Some(
            list.iter()
                .filter_map(|a| match a {
                    AppRef::Id(id) if *id >= 1 => Some(*id),
                    other => {
                        problems.push(format!("apps: {other:?} is not an App ID (\"*\" stands alone)"));
                        None
                    }
                })
                .collect(),
        ),
    }
}

/// The owners a rule covers, lower-cased (`None`: every owner, `*`); a rule on installations must
/// name them, or enterprises or node IDs.
fn owners_of(d: &RuleDocument, targets_installations: bool, problems: &mut Vec<String>) -> Option<BTreeSet<String>> {
    match d.owners.as_slice() {
        [star] if star == "*" => None,
        list => {
            for o in list {
                let valid = (1..=39).contains(&o.len())
                    && o.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !o.starts_with('-');
                if !valid {
                    problems.push(format!("owners: {o:?} is not a GitHub login (\"*\" stands alone)"));
                }
            }
            if targets_installations && list.is_empty() && d.enterprises.is_empty() && d.node_ids.is_empty() {
                problems.push("owners, enterprises or nodeIds: name the installations (or owners: [\"*\"])".into());
            }
            Some(list.iter().map(|o| o.to_ascii_lowercase()).collect())
        }
    }
}

/// Enterprise slugs and node IDs, each well-formed.
fn check_enterprises_and_node_ids(d: &RuleDocument, problems: &mut Vec<String>) {
    for e in &d.enterprises {
        if !is_enterprise_slug(e) {
            problems.push(format!(
                "enterprises: {e:?} is not an enterprise slug (1 to {MAX_ENTERPRISE_SLUG} letters, digits and inner \
                 hyphens; owners: [\"*\"] names every installation)"
            ));
        }
    }
    for n in &d.node_ids {
        if n.is_empty() || n.len() > 256 {
            problems.push(format!("nodeIds: {n:?} must be 1 to 256 characters"));
        }
    }
}

/// The repositories a rule covers: the caller's own, every one (`*`), or those listed by name
/// pattern and ID (a rule that mints must say which).
fn repositories_of(d: &RuleDocument, mints: bool, problems: &mut Vec<String>) -> Repositories {
    if d.caller_repository_only {
        if !d.repositories.is_empty() || !d.repository_ids.is_empty() {
            problems.push("callerRepositoryOnly excludes repositories and repositoryIds".into());
        }
        if !d.github.contains_key("repository") && !d.github.contains_key("repository_owner") {
            problems.push("callerRepositoryOnly needs a github condition on repository or repository_owner".into());
        }
        return Repositories::CallerRepository;
    }
    if d.repositories.len() == 1 && d.repositories[0] == "*" && d.repository_ids.is_empty() {
        return Repositories::Any;
    }
    for r in &d.repositories {
        if r == "*" || repository_name_problem(&r.replace('*', "x")).is_some() {
            problems.push(format!("repositories: {r:?} is not a repository name or pattern (\"*\" stands alone)"));
        }
    }
    for id in &d.repository_ids {
        if *id < 1 {
            problems.push(format!("repositoryIds: {id} is not a repository ID"));
        }
    }
    if mints && d.repositories.is_empty() && d.repository_ids.is_empty() {
        problems.push("repositories: name them, or [\"*\"] for all, or set callerRepositoryOnly".into());
    }
    Repositories::Listed {
        names: d.repositories.iter().map(|r| r.to_ascii_lowercase()).collect(),
        ids: d.repository_ids.iter().copied().collect(),
    }
}

/// The permission ceiling: GitHub App permissions at levels GitHub has for them, none acting on
/// the whole account unless `organizationPermissions` says so, and one at least for a rule that
/// mints.
fn ceiling_of(d: &RuleDocument, mints: bool, problems: &mut Vec<String>) -> BTreeMap<String, Level> {
    let known = permission_levels();
    if !d.organization_permissions {
        let wide: Vec<&str> = d.permissions.keys().map(String::as_str).filter(|p| acts_on_the_account(p)).collect();
        if !wide.is_empty() {
            problems.push(format!(
                "permissions: {} act on the whole account, beyond any repositories or callerRepositoryOnly; set \
                 organizationPermissions: true to grant them",
                wide.join(", ")
            ));
        }
    }
    let mut ceiling = BTreeMap::new();
    for (name, level) in &d.permissions {
        match (known.get(name), Level::parse(level)) {
            (None, _) => problems.push(format!("permissions: {name:?} is not a GitHub App permission")),
            (Some(allowed), Some(l)) if allowed.iter().any(|a| a == level) => {
                ceiling.insert(name.clone(), l);
            }
            (Some(allowed), _) => {
                problems.push(format!("permissions: {name} must be one of {}, not {level:?}", allowed.join(", ")))
            }
        }
    }
    if mints && d.permissions.is_empty() {
        problems.push("permissions: an installation-token rule needs a ceiling (permission: level)".into());
    }
    ceiling
}

impl Rule {
    /// Checks a document. Every problem is named, so an operator can fix a file in one go.
    pub fn from_document(document: RuleDocument, version: u64) -> Result<Rule, Vec<String>> {
        let mut problems = Vec::new();
        let d = &document;
        check_size_and_id(d, &mut problems);
        let principals = principals_of(d, &mut problems);
        check_github_conditions(d, &mut problems);
        let operations = operations_of(d, &mut problems);
        let apps = apps_of(d, &mut problems);
        let mints = operations.contains(&Action::InstallationToken);
        let targets_installations = mints || operations.contains(&Action::ReadInstallations);
        let owners = owners_of(d, targets_installations, &mut problems);
        check_enterprises_and_node_ids(d, &mut problems);
        let repositories = repositories_of(d, mints, &mut problems);
        let ceiling = ceiling_of(d, mints, &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Rule {
            id: document.id.clone(),
            version,
            principals,
            operations,
            apps,
            owners,
            enterprises: document.enterprises.iter().map(|e| e.to_ascii_lowercase()).collect(),
            node_ids: document.node_ids.iter().cloned().collect(),
            repositories,
            ceiling,
            document,
        })
    }

    fn covers_app(&self, app_id: i64) -> bool {
        match &self.apps {
            Apps::Any => true,
            Apps::Some(ids) => ids.contains(&app_id),
        }
    }

    fn claims_hold(&self, claims: Option<&Claims>) -> bool {
        if self.document.github.is_empty() {
            return true;
        }
        let Some(claims) = claims else { return false };
        self.document.github.iter().all(|(name, pattern)| claims.get(name).is_some_and(|v| glob(pattern, v)))
    }

    fn covers_installation(&self, installation: &InstallationRef<'_>) -> bool {
        let name = installation.login.to_ascii_lowercase();
        self.node_ids.contains(installation.node_id)
            || match &self.owners {
                None => true,
                Some(_) if installation.enterprise => self.enterprises.contains(&name),
                Some(owners) => owners.contains(&name),
            }
    }
}

/// The verified claims of a caller's GitHub Actions OIDC token (string values).
pub type Claims = BTreeMap<String, String>;

/// The claims rules can match, from a token's JSON claims: strings, numbers and booleans as text;
/// arrays and objects (which no rule names) left out.
pub fn claims_of(json: impl IntoIterator<Item = (String, serde_json::Value)>) -> Claims {
    use serde_json::Value;
    json.into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .collect()
}

/// Who asks, as the platform and a verified OIDC token say.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The caller's IAM ARN from Lambda's request context.
    pub arn: &'a str,
    /// The claims of the caller's verified GitHub Actions OIDC token, if it sent one.
    pub claims: Option<&'a Claims>,
}

/// The installation a request resolved to.
#[derive(Debug, Clone, Copy)]
pub struct InstallationRef<'a> {
    /// The account's node ID.
    pub node_id: &'a str,
    /// The account's login (an enterprise's slug).
    pub login: &'a str,
    /// Whether the account is an enterprise (GitHub's `target_type` `Enterprise`).
    pub enterprise: bool,
}

impl<'a> From<&'a appcreds_wire::InstallationRecord> for InstallationRef<'a> {
    fn from(record: &'a appcreds_wire::InstallationRecord) -> Self {
        InstallationRef {
            node_id: &record.node_id,
            login: &record.name,
            enterprise: record.target_type == "Enterprise",
        }
    }
}

/// The installation records a caller may read.
#[derive(Debug)]
pub struct Readable<'p> {
    rules: Vec<&'p Rule>,
}

impl Readable<'_> {
    /// Whether a rule covers the record's App and installation.
    pub fn covers(&self, app_id: i64, installation: InstallationRef<'_>) -> bool {
        self.rules.iter().any(|r| r.covers_app(app_id) && r.covers_installation(&installation))
    }
}

/// Why a request is refused. The message names what exceeded, never another rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial(pub String);

/// Every rule, indexed by principal.
#[derive(Debug, Default)]
pub struct Policy {
    rules: Vec<Rule>,
    /// Rules naming an exact principal, by it.
    exact: HashMap<CallerKey, Vec<usize>>,
    /// Rules with a `*` in a principal.
    patterns: Vec<usize>,
}

impl Policy {
    /// The policy of `rules` (sorted by ID, so decisions do not depend on table order).
    pub fn new(mut rules: Vec<Rule>) -> Policy {
        rules.sort_by(|a, b| a.id.cmp(&b.id));
        let mut policy = Policy::default();
        for (i, rule) in rules.iter().enumerate() {
            if rule.principals.iter().any(|p| !p.is_exact()) {
                policy.patterns.push(i);
            }
            for p in rule.principals.iter().filter(|p| p.is_exact()) {
                let slot = policy.exact.entry(p.key()).or_default();
                if slot.last() != Some(&i) {
                    slot.push(i);
                }
            }
        }
        policy.rules = rules;
        policy
    }

    /// How many rules it holds (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rules naming `subject` (by principal and claims) that grant `operation` on `app_id`
    /// (any App when `None`), in ID order.
    fn candidates<'p>(&'p self, subject: Subject<'_>, action: Action, app_id: Option<i64>) -> Vec<&'p Rule> {
        let Some(caller) = CallerKey::of(subject.arn) else { return Vec::new() };
        let mut found: Vec<usize> = self.exact.get(&caller).cloned().unwrap_or_default();
        found.extend(
            self.patterns.iter().copied().filter(|i| self.rules[*i].principals.iter().any(|p| p.matches(&caller))),
        );
        found.sort_unstable();
        found.dedup();
        found
            .into_iter()
            .map(|i| &self.rules[i])
            .filter(|r| r.operations.contains(&action))
            .filter(|r| app_id.is_none_or(|a| r.covers_app(a)))
            .filter(|r| r.claims_hold(subject.claims))
            .collect()
    }

    /// The rule that grants `operation` on `app_id` (any App when `None`) to `subject`: for
    /// operations that need nothing more (app-token, read-installations, refresh).
    pub fn allow(&self, subject: Subject<'_>, action: Action, app_id: Option<i64>) -> Result<&Rule, Denial> {
        self.candidates(subject, action, app_id).into_iter().next().ok_or_else(|| {
            Denial(match app_id {
                Some(app) => format!("no access rule allows {} {action} for App {app}", subject.arn),
                None => format!("no access rule allows {} {action}", subject.arn),
            })
        })
    }

    /// What `subject` may read of the installation records: the rules that grant it
    /// `read-installations`, each covering its Apps and installations.
    pub fn readable(&self, subject: Subject<'_>) -> Result<Readable<'_>, Denial> {
        let rules = self.candidates(subject, Action::ReadInstallations, None);
        if rules.is_empty() {
            return Err(Denial(format!("no access rule allows {} {}", subject.arn, Action::ReadInstallations)));
        }
        Ok(Readable { rules })
    }

    /// Whether some rule could grant `subject` an installation token of `app_id` with the scope
    /// `requested` (checked before the installation is looked up, so that a refused caller learns
    /// nothing about it and costs GitHub nothing). Checked with the installation as the caller
    /// named it (`target`): a rule must name the caller, `installation-token` and the App, could
    /// cover that installation, and, where the target names the owner (a login, or the owner of a
    /// repository), must grant the scope asked for on it, repositories included, so that a name
    /// the caller may not have is refused in the same words whether or not it exists.
    pub fn may_mint(
        &self,
        subject: Subject<'_>,
        app_id: i64,
        target: &Target,
        requested: Option<&ScopeDown>,
    ) -> Result<(), Denial> {
        let rules = self.candidates(subject, Action::InstallationToken, Some(app_id));
        if rules.is_empty() {
            return Err(Denial(format!("no access rule allows {} installation-token for App {app_id}", subject.arn)));
        }
        // The account the target names (a login, or an enterprise's slug), or its node ID.
        let (login, enterprise, node_id) = match (target, target.account()) {
            (_, Some((name, enterprise))) => (Some(name), enterprise, None),
            (Target::NodeId(n), None) => (None, false, Some(n.as_str())),
            (_, None) => (None, false, None),
        };
        // What cannot be told before the lookup (a login behind a node ID, a node ID behind a
        // login or a slug) counts as possibly covered; the lookup's answer is judged again.
        let covering: Vec<&Rule> = rules
            .into_iter()
            .filter(|r| match &r.owners {
                None => true,
                Some(owners) => match (login, node_id) {
                    (Some(slug), _) if enterprise => {
                        r.enterprises.contains(&slug.to_ascii_lowercase()) || !r.node_ids.is_empty()
                    }
                    (Some(login), _) => owners.contains(&login.to_ascii_lowercase()) || !r.node_ids.is_empty(),
                    (None, Some(node)) => r.node_ids.contains(node) || !owners.is_empty() || !r.enterprises.is_empty(),
                    (None, None) => false,
                },
            })
            .collect();
        if covering.is_empty() {
            return Err(self.not_covered(subject, app_id, target));
        }
        let Some(login) = login else { return Ok(()) };
        // The account is known: the scope is judged now, as it will be on the installation found.
        let installation = InstallationRef { node_id: "", login, enterprise };
        let mut first_refusal = None;
        for rule in covering {
            match scope_within(rule, subject.claims, installation, requested) {
                Ok(_) => return Ok(()),
                Err(why) => {
                    first_refusal.get_or_insert(why);
                }
            }
        }
        Err(first_refusal.unwrap_or_else(|| self.not_covered(subject, app_id, target)))
    }

    /// Whether some rule that could serve `subject` names the login or enterprise `target` names
    /// (or every installation): if none does, only a rule by node ID could cover it, and the name
    /// is looked for in the App's installation listing rather than asked of GitHub one by one, so
    /// that names the caller makes up cost GitHub nothing more. `true` for a node ID.
    pub fn names_the_account(&self, subject: Subject<'_>, app_id: i64, target: &Target) -> bool {
        let Some((name, enterprise)) = target.account() else { return true };
        let name = name.to_ascii_lowercase();
        self.candidates(subject, Action::InstallationToken, Some(app_id)).iter().any(|r| match &r.owners {
            None => true,
            Some(_) if enterprise => r.enterprises.contains(&name),
            Some(owners) => owners.contains(&name),
        })
    }

    /// Whether some rule grants `subject` tokens of every installation of `app_id` (so that "no
    /// such installation" tells it nothing it could not learn otherwise).
    pub fn covers_every_installation(&self, subject: Subject<'_>, app_id: i64) -> bool {
        self.candidates(subject, Action::InstallationToken, Some(app_id)).iter().any(|r| r.owners.is_none())
    }

    /// The refusal of an installation the caller's rules do not cover, named as the caller named
    /// it: the same whether or not the installation exists.
    pub fn not_covered(&self, subject: Subject<'_>, app_id: i64, target: &Target) -> Denial {
        Denial(format!("no access rule allows {} installation-token for App {app_id} on {target}", subject.arn))
    }

    /// The rule that grants `subject` an installation token of `app_id` on `installation`, and the
    /// scope to mint: the request's scope within the rule's grant, or, without one, the grant's
    /// ceiling. Rules are tried in ID order; when none grants the request, the refusal names what
    /// exceeded the first rule that covers the installation.
    pub fn installation_token(
        &self,
        subject: Subject<'_>,
        app_id: i64,
        target: &Target,
        installation: InstallationRef<'_>,
        requested: Option<&ScopeDown>,
    ) -> Result<(&Rule, ScopeDown), Denial> {
        let rules: Vec<&Rule> = self
            .candidates(subject, Action::InstallationToken, Some(app_id))
            .into_iter()
            .filter(|r| r.covers_installation(&installation))
            .collect();
        let mut first_refusal = None;
        for rule in rules {
            match scope_within(rule, subject.claims, installation, requested) {
                Ok(scope) => return Ok((rule, scope)),
                Err(why) => {
                    first_refusal.get_or_insert(why);
                }
            }
        }
        Err(first_refusal.unwrap_or_else(|| self.not_covered(subject, app_id, target)))
    }
}

/// The scope `rule` grants for `requested`, or what exceeds it.
fn scope_within(
    rule: &Rule,
    claims: Option<&Claims>,
    installation: InstallationRef<'_>,
    requested: Option<&ScopeDown>,
) -> Result<ScopeDown, Denial> {
    let empty = ScopeDown::default();
    let requested = requested.unwrap_or(&empty);
    let mut scope = ScopeDown::default();
    // Permissions: each at most the ceiling; none asked for means the whole ceiling.
    if requested.permissions.is_empty() {
        scope.permissions = rule.ceiling.iter().map(|(p, l)| (p.clone(), l.as_str().to_string())).collect();
    } else {
        for (name, level) in &requested.permissions {
            let asked = Level::parse(level).unwrap_or(Level::Admin);
            match rule.ceiling.get(name) {
                Some(max) if asked <= *max => {
                    scope.permissions.insert(name.clone(), level.clone());
                }
                Some(max) => {
                    return Err(Denial(format!("permission {name}: {level} exceeds the granted {}", max.as_str())));
                }
                None => return Err(Denial(format!("permission {name}: {level} is not granted"))),
            }
        }
    }
    // Repositories.
    match &rule.repositories {
        Repositories::Any => {
            scope.repository_ids = requested.repository_ids.clone();
            scope.repository_names = requested.repository_names.clone();
        }
        Repositories::CallerRepository => {
            let claimed = claims.and_then(|c| c.get("repository")).and_then(|r| r.split_once('/'));
            let Some((owner, name)) = claimed.filter(|(o, _)| o.eq_ignore_ascii_case(installation.login)) else {
                return Err(Denial(format!(
                    "only the calling repository is granted, and it is not on {}",
                    installation.login
                )));
            };
            if !requested.repository_ids.is_empty() {
                return Err(Denial(format!("only the calling repository {owner}/{name} is granted: name it, not IDs")));
            }
            if let Some(other) = requested.repository_names.iter().find(|r| !r.eq_ignore_ascii_case(name)) {
                return Err(Denial(format!(
                    "repository {other} is not granted (only the calling repository {owner}/{name})"
                )));
            }
            scope.repository_names = vec![name.to_string()];
        }
        Repositories::Listed { names, ids } => {
            if let Some(id) = requested.repository_ids.iter().find(|id| !ids.contains(id)) {
                return Err(Denial(format!("repository ID {id} is not granted")));
            }
            if let Some(other) = requested
                .repository_names
                .iter()
                .find(|r| !names.iter().any(|pattern| glob(pattern, &r.to_ascii_lowercase())))
            {
                // A grant by IDs only cannot tell a name's ID: the refusal says how to ask.
                return Err(Denial(if names.is_empty() {
                    format!(
                        "repository {other} is not granted (the grant names repositories by ID: ask with repositoryIds)"
                    )
                } else {
                    format!("repository {other} is not granted")
                }));
            }
            if requested.repository_ids.is_empty() && requested.repository_names.is_empty() {
                if names.iter().any(|n| n.contains('*')) {
                    return Err(Denial(
                        "name the repositories: the grant covers them by pattern, and a token without names would cover every repository"
                            .into(),
                    ));
                }
                scope.repository_names = rule.document.repositories.clone();
                scope.repository_ids = ids.iter().copied().collect();
            } else {
                scope.repository_ids = requested.repository_ids.clone();
                scope.repository_names = requested.repository_names.clone();
            }
        }
    }
    Ok(scope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ROLE: &str = "arn:aws:iam::123456789012:role/release";
    const CALLER: &str = "arn:aws:sts::123456789012:assumed-role/release/run-42";
    const OCTO: InstallationRef<'static> =
        InstallationRef { node_id: "O_kgDOocto", login: "octo-org", enterprise: false };

    fn owner(login: &str) -> Target {
        Target::Owner(login.into())
    }

    fn document(doc: serde_json::Value) -> RuleDocument {
        serde_json::from_value(doc).unwrap()
    }

    fn rule(doc: serde_json::Value) -> Rule {
        Rule::from_document(document(doc), 1).unwrap()
    }

    fn problems(doc: serde_json::Value) -> Vec<String> {
        Rule::from_document(document(doc), 1).unwrap_err()
    }

    /// The release rule: contents write at most, two named repositories and a pattern.
    fn release(id: &str, repositories: serde_json::Value) -> serde_json::Value {
        json!({
            "id": id, "principals": [ROLE], "operations": ["installation-token"], "apps": [7],
            "owners": ["Octo-Org"], "repositories": repositories,
            "permissions": {"contents": "write", "metadata": "read"}
        })
    }

    fn subject(arn: &str) -> Subject<'_> {
        Subject { arn, claims: None }
    }

    fn scope(v: serde_json::Value) -> ScopeDown {
        serde_json::from_value(v).unwrap()
    }

    fn mint(policy: &Policy, requested: Option<serde_json::Value>) -> Result<(String, ScopeDown), String> {
        let requested = requested.map(scope);
        policy
            .installation_token(subject(CALLER), 7, &owner("octo-org"), OCTO, requested.as_ref())
            .map(|(rule, scope)| (rule.id.clone(), scope))
            .map_err(|Denial(why)| why)
    }

    #[test]
    fn globs() {
        assert!(glob("refs/heads/*", "refs/heads/feature/x"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "abc") && glob("a*b*c", "a-b-b-c"));
        assert!(!glob("a*b*c", "a-c") && !glob("docs-*", "doc"));
        assert!(glob("v*.*", "v1.2") && !glob("v*.*", "v1"));
        assert!(!glob("ab*ba", "aba"), "the prefix and suffix may not overlap");
        assert!(!glob("exact", "exactly") && glob("exact", "exact"));
        assert!(segment_glob("ci-*", "ci-main") && !segment_glob("ci-*", "ci-main/x"));
    }

    #[test]
    fn assumed_roles_match_by_role_never_by_session() {
        let policy = Policy::new(vec![rule(release("release", json!(["hello-world"])))]);
        let ok = |arn: &str| policy.may_mint(subject(arn), 7, &owner("octo-org"), None).is_ok();
        assert!(ok(CALLER));
        assert!(ok("arn:aws:sts::123456789012:assumed-role/release/anything-the-caller-chose"));
        assert!(!ok("arn:aws:sts::123456789012:assumed-role/other/release"), "the session name is not the role");
        assert!(!ok("arn:aws:sts::999999999999:assumed-role/release/x"), "another account");
        assert!(!ok("arn:aws-cn:sts::123456789012:assumed-role/release/x"), "another partition");
        assert!(!ok("arn:aws:iam::123456789012:user/release"), "a user of the same name");
        assert!(!ok("arn:aws:iam::123456789012:root"));
        assert!(!ok("arn:aws:sts::123456789012:assumed-role/release"), "no session: not an assumed-role ARN");
        assert!(!ok("not an arn"));
        assert!(policy.may_mint(subject(CALLER), 8, &owner("octo-org"), None).is_err(), "another App");
        assert!(policy.allow(subject(CALLER), Action::AppToken, Some(7)).is_err(), "another operation");
    }

    #[test]
    fn patterns_stay_inside_one_segment_and_users_match_by_path() {
        let policy = Policy::new(vec![rule(json!({
            "id": "ci", "principals": ["arn:aws:iam::123456789012:role/ci-*", "arn:aws:iam::*:user/bots/builder"],
            "operations": ["app-token"], "apps": ["*"]
        }))]);
        let ok = |arn: &str| policy.allow(subject(arn), Action::AppToken, Some(1)).is_ok();
        assert!(ok("arn:aws:sts::123456789012:assumed-role/ci-main/s"));
        assert!(!ok("arn:aws:sts::123456789012:assumed-role/cd-main/s"));
        assert!(ok("arn:aws:iam::111111111111:user/bots/builder"));
        assert!(!ok("arn:aws:iam::111111111111:user/builder"), "the path is part of a user");
        assert!(!ok("arn:aws:iam::111111111111:user/bots/x/builder"));
    }

    #[test]
    fn a_role_path_in_a_rule_is_not_compared() {
        let policy = Policy::new(vec![rule(json!({
            "id": "p", "principals": ["arn:aws:iam::123456789012:role/team/a/release"], "operations": ["app-token"], "apps": [7]
        }))]);
        assert!(policy.allow(subject(CALLER), Action::AppToken, Some(7)).is_ok());
    }

    #[test]
    fn a_request_without_scope_gets_the_grant_never_the_installation() {
        let policy = Policy::new(vec![rule(release("release", json!(["hello-world", "Docs"])))]);
        assert_eq!(
            mint(&policy, None),
            Ok((
                "release".into(),
                scope(
                    json!({"repositoryNames": ["hello-world", "Docs"], "permissions": {"contents": "write", "metadata": "read"}})
                )
            ))
        );
        let patterned = Policy::new(vec![rule(release("release", json!(["docs-*"])))]);
        assert!(mint(&patterned, None).unwrap_err().starts_with("name the repositories"));
        let everything = Policy::new(vec![rule(release("release", json!(["*"])))]);
        let (_, granted) = mint(&everything, None).unwrap();
        assert!(granted.repository_names.is_empty() && granted.permissions.len() == 2, "every repository, the ceiling");
    }

    #[test]
    fn what_exceeds_the_grant_is_named() {
        let policy = Policy::new(vec![rule(release("release", json!(["hello-world", "docs-*"])))]);
        let ask = |v: serde_json::Value| mint(&policy, Some(v));
        assert_eq!(
            ask(json!({"permissions": {"contents": "admin"}})),
            Err("permission contents: admin exceeds the granted write".into())
        );
        assert_eq!(
            ask(json!({"permissions": {"issues": "read"}})),
            Err("permission issues: read is not granted".into())
        );
        assert_eq!(ask(json!({"repositoryNames": ["secrets"]})), Err("repository secrets is not granted".into()));
        assert_eq!(ask(json!({"repositoryIds": [99]})), Err("repository ID 99 is not granted".into()));
        let (_, ok) =
            ask(json!({"repositoryNames": ["Docs-Site", "hello-world"], "permissions": {"contents": "read"}})).unwrap();
        assert_eq!(
            ok,
            scope(json!({"repositoryNames": ["Docs-Site", "hello-world"], "permissions": {"contents": "read"}}))
        );
        let (_, ceiling) = ask(json!({"repositoryNames": ["hello-world"]})).unwrap();
        assert_eq!(ceiling.permissions.len(), 2, "no permissions asked: the ceiling");
    }

    #[test]
    fn an_installation_outside_the_rules_is_refused_before_any_lookup_and_in_the_same_words() {
        let policy = Policy::new(vec![rule(release("release", json!(["*"])))]);
        let s = subject(CALLER);
        assert!(policy.may_mint(s, 7, &owner("Octo-Org"), None).is_ok());
        assert!(policy.may_mint(s, 7, &Target::Repository("octo-org/anything".into()), None).is_ok());
        let other = policy.may_mint(s, 7, &Target::Repository("other-org/secret".into()), None).unwrap_err();
        assert_eq!(
            other.0,
            format!("no access rule allows {CALLER} installation-token for App 7 on repository other-org/secret")
        );
        // A node ID's login is unknown before the lookup; afterwards the refusal names the node ID,
        // not the login behind it, and is the one an unknown node ID gets.
        let node = Target::NodeId("O_other".into());
        assert!(policy.may_mint(s, 7, &node, None).is_ok());
        assert!(!policy.covers_every_installation(s, 7));
        let after = InstallationRef { node_id: "O_other", login: "other-org", enterprise: false };
        let refused = policy.installation_token(s, 7, &node, after, None).unwrap_err();
        assert_eq!(refused, policy.not_covered(s, 7, &node));
        assert!(!refused.0.contains("other-org"), "{}", refused.0);
        let mut everything = release("all", json!(["*"]));
        everything["owners"] = json!(["*"]);
        assert!(Policy::new(vec![rule(everything)]).covers_every_installation(s, 7));
    }

    /// A caller granted one repository of an owner asks for others by name: a private one that
    /// exists and one that does not. Both are refused before any lookup, in the same words, and
    /// so are repositories asked for in the scope; the granted one passes.
    #[test]
    fn a_repository_not_granted_is_refused_before_any_lookup_whether_or_not_it_exists() {
        let policy = Policy::new(vec![rule(release("release", json!(["hello-world", "docs-*"])))]);
        let s = subject(CALLER);
        let ask = |repository: &str, scope_down: Option<ScopeDown>| {
            let target = Target::Repository(repository.into());
            let requested = crate::domain::scope::requested_scope(&target, scope_down.as_ref());
            policy.may_mint(s, 7, &target, requested.as_ref()).map_err(|Denial(why)| why)
        };
        assert_eq!(ask("octo-org/hello-world", None), Ok(()));
        assert_eq!(ask("Octo-Org/Docs-Site", None), Ok(()), "a pattern, without case");
        let exists = ask("octo-org/private-plans", None).unwrap_err();
        let missing = ask("octo-org/no-such-repo", None).unwrap_err();
        assert_eq!(exists, "repository private-plans is not granted");
        assert_eq!(missing, "repository no-such-repo is not granted");
        assert_eq!(
            exists.replace("private-plans", "X"),
            missing.replace("no-such-repo", "X"),
            "the same refusal, whatever GitHub has"
        );
        // A scope that names other repositories is judged before the lookup too.
        let other = scope(json!({"repositoryNames": ["private-plans"]}));
        assert_eq!(ask("octo-org/hello-world", Some(other)).unwrap_err(), "repository private-plans is not granted");
        let too_much = scope(json!({"permissions": {"administration": "write"}}));
        assert_eq!(
            ask("octo-org/hello-world", Some(too_much)).unwrap_err(),
            "permission administration: write is not granted"
        );
        // An owner target is judged on its scope before the lookup as well.
        let by_owner = policy.may_mint(s, 7, &owner("octo-org"), Some(&scope(json!({"repositoryNames": ["secret"]}))));
        assert_eq!(by_owner.unwrap_err().0, "repository secret is not granted");
    }

    /// A grant by repository IDs only cannot judge a name: a repository target is refused before
    /// any lookup, and the refusal says to ask by ID.
    #[test]
    fn a_grant_by_ids_refuses_a_repository_named_and_says_to_ask_by_id() {
        let mut doc = release("by-id", json!([]));
        doc["repositoryIds"] = json!([7101]);
        let policy = Policy::new(vec![rule(doc)]);
        let target = Target::Repository("octo-org/hello-world".into());
        let requested = crate::domain::scope::requested_scope(&target, None);
        let refused = policy.may_mint(subject(CALLER), 7, &target, requested.as_ref()).unwrap_err();
        assert_eq!(
            refused.0,
            "repository hello-world is not granted (the grant names repositories by ID: ask with repositoryIds)"
        );
        let by_id = scope(json!({"repositoryIds": [7101]}));
        assert!(policy.may_mint(subject(CALLER), 7, &target, Some(&by_id)).is_ok());
    }

    /// GitHub's issuer signs a token for any repository on GitHub with the audience a workflow asks
    /// for: a rule whose claims pin no owner is met by a job in an attacker's own account.
    #[test]
    fn a_rule_whose_claims_pin_no_owner_is_refused() {
        let with = |github: serde_json::Value| {
            let mut doc = release("oidc", json!(["*"]));
            doc["github"] = github;
            Rule::from_document(document(doc), 1)
        };
        for unanchored in [
            json!({"environment": "production"}),
            json!({"ref": "refs/heads/main"}),
            json!({"repository": "*/deploy"}),
            json!({"repository": "octo-*/deploy"}),
            json!({"repository": "deploy"}),
            json!({"repository_owner": "octo-*"}),
            json!({"repository_owner_id": "*"}),
            json!({"sub": "repo:*/deploy:environment:production"}),
            json!({"sub": "*:environment:production"}),
            json!({"job_workflow_ref": "octo-org/workflows/.github/workflows/deploy.yml@refs/heads/main"}),
            json!({"environment": "production", "event_name": "push", "workflow_ref": "*"}),
        ] {
            let problems = with(unanchored.clone()).unwrap_err().join("\n");
            assert!(problems.contains("no condition pins the owner"), "{unanchored}: {problems}");
            assert!(problems.contains("repository_owner_id"), "the message names the fix: {problems}");
        }
        for anchored in [
            json!({"environment": "production", "repository_owner_id": "9919"}),
            json!({"repository_id": "1296269"}),
            json!({"repository_owner": "octo-org", "environment": "production"}),
            json!({"repository": "octo-org/*"}),
            json!({"sub": "repo:octo-org/deploy:environment:production"}),
            json!({"sub": "repo:octo-org@9919/deploy@1296269:environment:production"}),
            json!({"sub": "repo:octo-org@9919/*"}),
        ] {
            assert!(with(anchored.clone()).is_ok(), "{anchored}");
        }
        // The attacker's job: its own account, the stack's audience, the environment the rule names.
        let loose = RuleDocument {
            github: [("environment".to_string(), "production".to_string())].into(),
            ..document(release("loose", json!(["*"])))
        };
        assert!(Rule::from_document(loose, 1).is_err(), "such a rule never reaches a policy");
        let anchored = with(json!({"repository_owner_id": "9919", "environment": "production"})).unwrap();
        let policy = Policy::new(vec![anchored]);
        let claims = |owner_id: &str, owner: &str| -> Claims {
            [
                ("repository_owner_id", owner_id),
                ("repository_owner", owner),
                ("repository", &format!("{owner}/deploy")),
                ("environment", "production"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        };
        let attacker = claims("666", "evil-org");
        let renamed_squatter = claims("666", "octo-org");
        let genuine = claims("9919", "octo-org");
        let may = |c: &Claims| policy.may_mint(Subject { arn: CALLER, claims: Some(c) }, 7, &owner("octo-org"), None);
        assert!(may(&attacker).is_err(), "another owner's job with a matching environment");
        assert!(may(&renamed_squatter).is_err(), "a login taken over by another account (its ID differs)");
        assert!(may(&genuine).is_ok());
    }

    /// Custom property claims (`repo_property_*`) and `check_run_id` can be required, matched like
    /// any claim; neither pins an owner, since any repository on GitHub can carry any property.
    #[test]
    fn custom_property_and_check_run_claims_can_be_required_but_pin_no_owner() {
        let with = |github: serde_json::Value| {
            let mut doc = release("props", json!(["*"]));
            doc["github"] = github;
            Rule::from_document(document(doc), 1)
        };
        for unanchored in [json!({"repo_property_team": "platform"}), json!({"check_run_id": "42"})] {
            let problems = with(unanchored.clone()).unwrap_err().join("\n");
            assert!(problems.contains("no condition pins the owner"), "{unanchored}: {problems}");
            assert!(!problems.contains("is not a claim"), "{unanchored}: {problems}");
        }
        assert!(!anchors_an_owner("repo_property_owner", "octo-org"));
        assert!(!anchors_an_owner("check_run_id", "42"));
        for bad in [
            "repo_property_".to_string(),
            "repo_property_Team".into(),
            "repo_property_a-b".into(),
            "repo_property_a.b".into(),
            "repo_properties_team".into(),
            format!("repo_property_{}", "x".repeat(MAX_REPO_PROPERTY_CLAIM)),
        ] {
            let problems = with(json!({ bad.clone(): "x", "repository_owner_id": "17" })).unwrap_err().join("\n");
            assert!(problems.contains("is not a claim rules can require"), "{bad}: {problems}");
            assert!(problems.contains("repo_property_NAME"), "the message names the form: {problems}");
        }
        let longest = format!("repo_property_{}", "a_1".repeat(38));
        assert_eq!(longest.len(), MAX_REPO_PROPERTY_CLAIM);
        assert!(with(json!({ longest: "x", "repository_owner_id": "17" })).is_ok());

        let rule = with(json!({"repository_owner_id": "17", "repo_property_team": "platform", "check_run_id": "*"}));
        let policy = Policy::new(vec![rule.unwrap()]);
        let claims = |pairs: &[(&str, &str)]| -> Claims {
            let mut c: Claims = [("repository_owner_id", "17"), ("check_run_id", "31337")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            c.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            c
        };
        let may = |c: &Claims| policy.may_mint(Subject { arn: CALLER, claims: Some(c) }, 7, &owner("octo-org"), None);
        assert!(may(&claims(&[("repo_property_team", "platform")])).is_ok());
        assert!(may(&claims(&[("repo_property_team", "billing")])).is_err(), "another property value");
        assert!(may(&claims(&[])).is_err(), "the property is absent");
        let mut no_check_run = claims(&[("repo_property_team", "platform")]);
        no_check_run.remove("check_run_id");
        assert!(may(&no_check_run).is_err(), "a required check_run_id that is absent");
    }

    /// An enterprise's installation is named by its slug (`enterprises`), never by an owner's login
    /// (a separate name on GitHub): a rule for the organization `octo-org` does not cover an
    /// enterprise whose slug is `octo-org`, nor the other way round; `owners: ["*"]` covers both.
    #[test]
    fn enterprises_are_named_by_slug_and_owners_never_cover_them() {
        let enterprise = |slug: &str| Target::Enterprise(slug.into());
        let corp = InstallationRef { node_id: "E_kgDOcorp", login: "octo-corp", enterprise: true };
        let mut doc = release("corp", json!(["*"]));
        doc["owners"] = json!([]);
        doc["enterprises"] = json!(["Octo-Corp"]);
        doc["permissions"] = json!({"enterprise_custom_properties_for_organizations": "write"});
        doc["organizationPermissions"] = json!(true);
        let policy = Policy::new(vec![rule(doc)]);
        let s = subject(CALLER);
        assert!(policy.may_mint(s, 7, &enterprise("octo-corp"), None).is_ok(), "without case");
        let (granted_by, granted) = policy.installation_token(s, 7, &enterprise("octo-corp"), corp, None).unwrap();
        assert_eq!(granted_by.id, "corp");
        assert_eq!(granted.permissions["enterprise_custom_properties_for_organizations"], "write");
        let other = policy.may_mint(s, 7, &enterprise("other-corp"), None).unwrap_err();
        assert_eq!(
            other.0,
            format!("no access rule allows {CALLER} installation-token for App 7 on enterprise other-corp")
        );
        assert!(policy.may_mint(s, 7, &owner("octo-corp"), None).is_err(), "an owner of the same name");
        let org_named_alike = InstallationRef { enterprise: false, ..corp };
        assert!(policy.installation_token(s, 7, &Target::NodeId("E_kgDOcorp".into()), org_named_alike, None).is_err());
        // A node ID could be the enterprise's: judged again once it is looked up.
        let node = Target::NodeId("E_kgDOcorp".into());
        assert!(policy.may_mint(s, 7, &node, None).is_ok());
        assert!(policy.installation_token(s, 7, &node, corp, None).is_ok());
        // An owners rule does not cover an enterprise of the same name; owners: ["*"] covers all.
        let owners = Policy::new(vec![rule(release("org", json!(["*"])))]);
        let slug_alike = InstallationRef { node_id: "E_kgDOocto", login: "octo-org", enterprise: true };
        assert!(owners.may_mint(s, 7, &enterprise("octo-org"), None).is_err());
        assert!(owners.installation_token(s, 7, &owner("octo-org"), slug_alike, None).is_err());
        assert!(owners.installation_token(s, 7, &owner("octo-org"), OCTO, None).is_ok());
        let mut everything = release("all", json!(["*"]));
        everything["owners"] = json!(["*"]);
        let everything = Policy::new(vec![rule(everything)]);
        assert!(everything.may_mint(s, 7, &enterprise("octo-corp"), None).is_ok());
        assert!(everything.installation_token(s, 7, &enterprise("octo-corp"), corp, None).is_ok());
        // The scope is judged before the lookup, as for an owner.
        let too_much = scope(json!({"permissions": {"contents": "read"}}));
        let refused = policy.may_mint(s, 7, &enterprise("octo-corp"), Some(&too_much)).unwrap_err();
        assert_eq!(refused.0, "permission contents: read is not granted");
        // The record of an enterprise installation says so.
        let record = appcreds_wire::InstallationRecord {
            app_id: 7,
            installation_id: 1,
            node_id: "E_kgDOcorp".into(),
            target_type: "Enterprise".into(),
            name: "octo-corp".into(),
        };
        assert!(InstallationRef::from(&record).enterprise);
        assert!(
            !InstallationRef::from(&appcreds_wire::InstallationRecord { target_type: "Organization".into(), ..record })
                .enterprise
        );
    }

    #[test]
    fn enterprise_slugs_are_checked() {
        let with = |enterprises: serde_json::Value| {
            let mut doc = release("corp", json!(["*"]));
            doc["owners"] = json!([]);
            doc["enterprises"] = enterprises;
            Rule::from_document(document(doc), 1)
        };
        assert!(with(json!(["octo-corp", "A1", "x".repeat(100)])).is_ok(), "enterprises alone name installations");
        for bad in [
            json!(["*"]),
            json!(["-corp"]),
            json!(["corp-"]),
            json!(["octo corp"]),
            json!(["a/b"]),
            json!(["x".repeat(101)]),
        ] {
            let problems = with(bad.clone()).unwrap_err().join("\n");
            assert!(problems.contains("is not an enterprise slug"), "{bad}: {problems}");
        }
    }

    #[test]
    fn organization_permissions_need_an_explicit_opt_in() {
        let mut doc = release("org", json!(["hello-world"]));
        doc["permissions"] = json!({"contents": "read", "organization_secrets": "write", "members": "read"});
        let problems = Rule::from_document(document(doc.clone()), 1).unwrap_err();
        assert_eq!(
            problems,
            ["permissions: members, organization_secrets act on the whole account, beyond any repositories or \
              callerRepositoryOnly; set organizationPermissions: true to grant them"]
        );
        doc["organizationPermissions"] = json!(true);
        let opted_in = Rule::from_document(document(doc), 1).unwrap();
        assert_eq!(opted_in.ceiling.get("organization_secrets"), Some(&Level::Write));
        assert!(!rule(release("repo-only", json!(["hello-world"]))).document.organization_permissions);
    }

    #[test]
    fn installations_match_by_login_without_case_or_by_node_id() {
        let policy = Policy::new(vec![rule(release("release", json!(["*"])))]);
        let other = InstallationRef { node_id: "O_other", login: "other-org", enterprise: false };
        let denied = policy.installation_token(subject(CALLER), 7, &owner("other-org"), other, None).unwrap_err();
        assert_eq!(denied.0, format!("no access rule allows {CALLER} installation-token for App 7 on owner other-org"));
        let mut by_node = release("by-node", json!(["*"]));
        by_node["owners"] = json!([]);
        by_node["nodeIds"] = json!(["O_other"]);
        let policy = Policy::new(vec![rule(by_node)]);
        assert!(policy.installation_token(subject(CALLER), 7, &Target::NodeId("O_other".into()), other, None).is_ok());
        assert!(policy.installation_token(subject(CALLER), 7, &owner("octo-org"), OCTO, None).is_err());
    }

    #[test]
    fn rules_are_tried_in_id_order_and_a_refusal_names_no_other_rule() {
        let narrow = rule(release("a-narrow", json!(["hello-world"])));
        let mut wide = release("b-wide", json!(["*"]));
        wide["permissions"] = json!({"contents": "write", "issues": "write"});
        let policy = Policy::new(vec![rule(wide), narrow]);
        assert_eq!(mint(&policy, None).unwrap().0, "a-narrow");
        assert_eq!(mint(&policy, Some(json!({"permissions": {"issues": "write"}}))).unwrap().0, "b-wide");
        let refused = mint(&policy, Some(json!({"permissions": {"administration": "read"}}))).unwrap_err();
        assert_eq!(refused, "permission administration: read is not granted");
        assert!(!refused.contains("b-wide") && !refused.contains("a-narrow"));
    }

    #[test]
    fn claims_bind_a_rule_to_a_workflow() {
        let mut doc = release("oidc", json!(["*"]));
        doc["github"] = json!({"repository": "octo-org/*", "ref": "refs/tags/v*", "event_name": "push"});
        let policy = Policy::new(vec![rule(doc)]);
        let claims =
            |pairs: &[(&str, &str)]| -> Claims { pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
        let good =
            claims(&[("repository", "octo-org/hello-world"), ("ref", "refs/tags/v1.2.0"), ("event_name", "push")]);
        let branch =
            claims(&[("repository", "octo-org/hello-world"), ("ref", "refs/heads/main"), ("event_name", "push")]);
        let missing = claims(&[("repository", "octo-org/hello-world"), ("ref", "refs/tags/v1")]);
        let with = |c: Option<&Claims>| {
            policy.may_mint(Subject { arn: CALLER, claims: c }, 7, &owner("octo-org"), None).is_ok()
        };
        assert!(with(Some(&good)));
        assert!(!with(Some(&branch)));
        assert!(!with(Some(&missing)), "a required claim that is absent");
        assert!(!with(None), "no OIDC token");
    }

    #[test]
    fn caller_repository_only_narrows_to_the_claimed_repository() {
        let policy = Policy::new(vec![rule(json!({
            "id": "own-repo", "principals": [ROLE], "github": {"repository_owner": "octo-org"},
            "operations": ["installation-token"], "apps": [7], "owners": ["*"], "callerRepositoryOnly": true,
            "permissions": {"contents": "read"}
        }))]);
        let claims: Claims = [("repository_owner", "octo-org"), ("repository", "octo-org/hello-world")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let s = Subject { arn: CALLER, claims: Some(&claims) };
        let (_, granted) = policy.installation_token(s, 7, &owner("octo-org"), OCTO, None).unwrap();
        assert_eq!(granted, scope(json!({"repositoryNames": ["hello-world"], "permissions": {"contents": "read"}})));
        let other = scope(json!({"repositoryNames": ["other"]}));
        assert!(
            policy
                .installation_token(s, 7, &owner("octo-org"), OCTO, Some(&other))
                .unwrap_err()
                .0
                .contains("repository other is not granted")
        );
        let elsewhere = InstallationRef { node_id: "U_x", login: "octocat", enterprise: false };
        assert!(
            policy.installation_token(s, 7, &owner("octocat"), elsewhere, None).is_err(),
            "the claimed repository is not on this installation"
        );
    }

    #[test]
    fn documents_are_checked_with_every_problem_named() {
        assert_eq!(
            problems(json!({"id": "", "principals": [], "operations": [], "apps": []})),
            [
                "id \"\" must be 1 to 64 of A-Z a-z 0-9 . _ -",
                "principals: name at least one IAM role or user ARN",
                "operations: name at least one of installation-token, app-token, read-installations, refresh",
                "apps: name the App IDs (or \"*\")",
            ]
        );
        let bad = problems(json!({
            "id": "x", "principals": ["arn:aws:iam::123:role/x", "arn:aws:s3:::bucket", "arn:aws:iam::123456789012:group/g",
                                      "arn:aws:iam::123456789012:role/team/*"],
            "github": {"subject": "repo:x"}, "operations": ["installation-token"], "apps": [0, "*"],
            "owners": ["-bad"], "repositories": ["a/b"], "permissions": {"contents": "owner", "nope": "read", "metadata": "admin"}
        }));
        let joined = bad.join("\n");
        for expected in [
            "the account must be 12 digits",
            "\"arn:aws:iam::123456789012:role/team/*\": a role pattern with * cannot have a path",
            "\"arn:aws:s3:::bucket\" is not an IAM role or user ARN",
            "\"arn:aws:iam::123456789012:group/g\" is not an IAM role or user ARN",
            "\"subject\" is not a claim rules can require",
            "apps: Id(0) is not an App ID",
            "apps: Any(\"*\") is not an App ID",
            "owners: \"-bad\" is not a GitHub login",
            "repositories: \"a/b\" is not a repository name or pattern",
            "permissions: contents must be one of read, write, not \"owner\"",
            "permissions: \"nope\" is not a GitHub App permission",
            "permissions: metadata must be one of read, write, not \"admin\"",
        ] {
            assert!(joined.contains(expected), "missing {expected:?} in:\n{joined}");
        }
        let no_ceiling = problems(
            json!({"id": "x", "principals": [ROLE], "operations": ["installation-token"], "apps": [1], "owners": ["o"], "repositories": ["r"]}),
        );
        assert_eq!(no_ceiling, ["permissions: an installation-token rule needs a ceiling (permission: level)"]);
        let no_repos = problems(
            json!({"id": "x", "principals": [ROLE], "operations": ["installation-token"], "apps": [1], "owners": ["o"], "permissions": {"contents": "read"}}),
        );
        assert_eq!(no_repos, ["repositories: name them, or [\"*\"] for all, or set callerRepositoryOnly"]);
        let huge = problems(
            json!({"id": "x", "description": "x".repeat(20_000), "principals": [ROLE], "operations": ["app-token"], "apps": [1]}),
        );
        assert!(huge[0].starts_with("the rule is 20") && huge[0].ends_with("at most 16384"), "{huge:?}");
        let reader =
            problems(json!({"id": "x", "principals": [ROLE], "operations": ["read-installations"], "apps": [1]}));
        assert_eq!(reader, ["owners, enterprises or nodeIds: name the installations (or owners: [\"*\"])"]);
        assert!(
            serde_json::from_value::<RuleDocument>(
                json!({"id": "x", "principals": [], "operations": [], "unknown": 1})
            )
            .is_err()
        );
        assert!(
            serde_json::from_value::<RuleDocument>(json!({"id": "x", "principals": [], "operations": ["everything"]}))
                .is_err()
        );
    }

    #[test]
    fn a_thousand_rules_are_indexed_by_principal() {
        let rules: Vec<Rule> = (0..1000)
            .map(|i| {
                rule(
                    release(&format!("r{i:04}"), json!(["*"]))
                        .as_object()
                        .cloned()
                        .map(|mut m| {
                            m.insert("principals".into(), json!([format!("arn:aws:iam::123456789012:role/role-{i}")]));
                            serde_json::Value::Object(m)
                        })
                        .unwrap(),
                )
            })
            .collect();
        let policy = Policy::new(rules);
        assert_eq!(policy.len(), 1000);
        assert!(policy.patterns.is_empty());
        let s = subject("arn:aws:sts::123456789012:assumed-role/role-617/s");
        assert_eq!(policy.installation_token(s, 7, &owner("octo-org"), OCTO, None).unwrap().0.id, "r0617");
    }
}
