//! Installation-token scopes (the contract's [`ScopeDown`]): GitHub's permission list, the rules
//! for repository names, GitHub's request body, and the key under which equal scopes meet.
//! Permission names and levels come from GitHub's OpenAPI description
//! (`data/app-permissions.json`, written by `scripts/update-permissions`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

pub use appcreds_wire::ScopeDown;
use serde_json::{Map, Value, json};

/// GitHub refuses more repositories in one token request.
pub(crate) const MAX_REPOSITORIES: usize = 500;
/// GitHub's longest repository name.
pub(crate) const MAX_REPOSITORY_NAME: usize = 100;

/// The permissions an installation token may request, with their allowed levels.
pub(crate) fn permission_levels() -> &'static BTreeMap<String, Vec<String>> {
    static LEVELS: OnceLock<BTreeMap<String, Vec<String>>> = OnceLock::new();
    LEVELS.get_or_init(|| {
        #[derive(serde::Deserialize)]
        struct File {
            permissions: BTreeMap<String, Vec<String>>,
        }
        serde_json::from_str::<File>(include_str!("../../data/app-permissions.json"))
            .map(|f| f.permissions)
            .expect("data/app-permissions.json is valid (checked by a unit test)")
    })
}

/// GitHub's organization, enterprise and user (account) permissions: a token with one acts on the
/// account itself, so no repository list confines it. Every other permission of
/// `data/app-permissions.json` is a repository permission (a unit test holds the two lists to the
/// file, so a permission GitHub adds is classified before it can be granted).
pub(crate) const ACCOUNT_PERMISSIONS: &[&str] = &[
    "custom_properties_for_organizations",
    "email_addresses",
    "enterprise_custom_properties_for_organizations",
    "followers",
    "git_ssh_keys",
    "gpg_keys",
    "interaction_limits",
    "members",
    "organization_administration",
    "organization_announcement_banners",
    "organization_copilot_agent_settings",
    "organization_copilot_seat_management",
    "organization_custom_org_roles",
    "organization_custom_properties",
    "organization_custom_roles",
    "organization_events",
    "organization_hooks",
    "organization_packages",
    "organization_personal_access_token_requests",
    "organization_personal_access_tokens",
    "organization_plan",
    "organization_projects",
    "organization_secrets",
    "organization_self_hosted_runners",
    "organization_user_blocking",
    "profile",
    "starring",
];

/// GitHub's repository permissions, which a token's repository list confines.
#[cfg(test)]
pub(crate) const REPOSITORY_PERMISSIONS: &[&str] = &[
    "actions",
    "administration",
    "artifact_metadata",
    "attestations",
    "checks",
    "code_quality",
    "codespaces",
    "contents",
    "dependabot_secrets",
    "deployments",
    "discussions",
    "environments",
    "issues",
    "merge_queues",
    "metadata",
    "packages",
    "pages",
    "pull_requests",
    "repository_custom_properties",
    "repository_hooks",
    "repository_projects",
    "secret_scanning_alerts",
    "secrets",
    "security_events",
    "single_file",
    "statuses",
    "vulnerability_alerts",
    "workflows",
];

/// Whether `permission` acts on the account (organization, enterprise or user) rather than on
/// repositories, so that no repository list confines it.
pub fn acts_on_the_account(permission: &str) -> bool {
    ACCOUNT_PERMISSIONS.contains(&permission)
}

/// The scope a request asks for: its `scopeDown`, where a request that names its installation by
/// a repository (`owner/name`) and no repositories is narrowed to that repository, so that naming
/// one repository never gets a token for others.
pub fn requested_scope(target: &appcreds_wire::Target, scope_down: Option<&ScopeDown>) -> Option<ScopeDown> {
    let names_none = scope_down.is_none_or(|s| s.repository_ids.is_empty() && s.repository_names.is_empty());
    match target {
        appcreds_wire::Target::Repository(repository) if names_none => {
            let name = repository.split_once('/').map_or(repository.as_str(), |(_, name)| name);
            let mut scope = scope_down.cloned().unwrap_or_default();
            scope.repository_names = vec![name.to_string()];
            Some(scope)
        }
        _ => scope_down.cloned(),
    }
}

/// The fields of GitHub's `POST /app/installations/{id}/access_tokens` body.
pub(crate) fn github_body(scope: &ScopeDown) -> Value {
    let mut body = Map::new();
    if !scope.repository_ids.is_empty() {
        body.insert("repository_ids".into(), json!(scope.repository_ids));
    }
    if !scope.repository_names.is_empty() {
        body.insert("repositories".into(), json!(scope.repository_names));
    }
    if !scope.permissions.is_empty() {
        body.insert("permissions".into(), json!(scope.permissions));
    }
    Value::Object(body)
}

/// A key that is equal for scopes GitHub treats alike (order, duplicates and the case of
/// repository names do not matter).
pub(crate) fn cache_key(scope: &ScopeDown) -> String {
    let mut ids = scope.repository_ids.clone();
    ids.sort_unstable();
    let mut names: Vec<String> = scope.repository_names.iter().map(|n| n.to_ascii_lowercase()).collect();
    names.sort();
    json!({ "i": ids, "n": names, "p": scope.permissions }).to_string()
}

/// How much a permission level allows: `read` < `write` < `admin` (anything else above all).
fn rank(level: &str) -> u8 {
    match level {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        _ => u8::MAX,
    }
}

/// **(ext)** What an installation grants, as GitHub's installation object says (`permissions`,
/// `repository_selection`): the bound of every token minted for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallationGrants {
    /// Permission → level.
    pub permissions: BTreeMap<String, String>,
    /// `all` or `selected`.
    pub repository_selection: String,
}

impl InstallationGrants {
    /// The bytes it holds on the heap (for cache bounds).
    pub fn heap_bytes(&self) -> usize {
        self.repository_selection.len()
            + self.permissions.iter().map(|(k, v)| 2 * size_of::<String>() + k.len() + v.len()).sum::<usize>()
    }
}

/// The pre-flight check: the first permission of `scope` (the scope about to be minted) that the
/// installation does not grant, or grants at a lower level, named for the caller; `None` when
/// the installation grants the whole scope. Only permissions can be told: which repositories a
/// `selected` installation holds is not in its object (GitHub's mint still refuses those).
pub fn beyond_installation(scope: &ScopeDown, installation: &InstallationGrants) -> Option<String> {
    scope.permissions.iter().find_map(|(name, level)| match installation.permissions.get(name) {
        Some(granted) if rank(level) <= rank(granted) => None,
        Some(granted) => Some(format!("permission {name}: {level} (it grants {granted})")),
        None => Some(format!("permission {name}: {level}")),
    })
}

/// What GitHub's mint answered a token grants beyond what was `asked` (the scope sent in the
/// request body), one entry per excess; empty when the answer is within the request. `granted` holds
/// the answer's `permissions` and `repositories` (IDs and names, side by side), and
/// `all_repositories` says whether it covers every repository of the installation (its
/// `repository_selection` is `all`, or it lists none).
///
/// The rule: a permission granted must have been asked for, at most at the level asked; and a
/// repository granted must have been asked for, by ID or by name (names without regard to case).
/// Asking no permissions (open mode without `scopeDown`) asks for the installation's, and asking
/// no repositories asks for all of them: nothing in the answer can exceed those. `metadata: read`
/// is never an excess: GitHub adds it to every token that reaches repositories.
pub fn excess(asked: &ScopeDown, granted: &ScopeDown, all_repositories: bool) -> Vec<String> {
    let mut wider = Vec::new();
    if !asked.permissions.is_empty() {
        for (name, level) in &granted.permissions {
            match asked.permissions.get(name) {
                Some(max) if rank(level) <= rank(max) => {}
                Some(max) => wider.push(format!("permission {name}: {level} (asked {max})")),
                None if name == "metadata" && level == "read" => {}
                None => wider.push(format!("permission {name}: {level} (not asked)")),
            }
        }
    }
    if asked.repository_ids.is_empty() && asked.repository_names.is_empty() {
        return wider;
    }
    if all_repositories {
        wider.push("every repository of the installation (asked for named ones)".into());
        return wider;
    }
    let ids = granted.repository_ids.iter().map(Some).chain(std::iter::repeat(None));
    for (name, id) in granted.repository_names.iter().zip(ids) {
        let by_id = id.is_some_and(|id| asked.repository_ids.contains(id));
        let by_name = asked.repository_names.iter().any(|n| n.eq_ignore_ascii_case(name));
        if !by_id && !by_name {
            wider.push(format!("repository {name} (not asked)"));
        }
    }
    wider
}

/// Why `name` is not a valid GitHub repository name, if it is not.
pub(crate) fn repository_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_REPOSITORY_NAME {
        return Some(format!("must be 1 to {MAX_REPOSITORY_NAME} characters long"));
    }
    if name == "." || name == ".." {
        return Some("is not a repository name".into());
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
        return Some("may contain only ASCII letters, digits, '.', '-' and '_' (no owner/ prefix)".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_permission_is_classified_as_repository_or_account() {
        let known: std::collections::BTreeSet<&str> = permission_levels().keys().map(String::as_str).collect();
        let classified: std::collections::BTreeSet<&str> =
            ACCOUNT_PERMISSIONS.iter().chain(REPOSITORY_PERMISSIONS).copied().collect();
        assert_eq!(classified, known, "classify each permission GitHub lists (and only those)");
        assert_eq!(classified.len(), ACCOUNT_PERMISSIONS.len() + REPOSITORY_PERMISSIONS.len(), "in one list each");
        assert!(!acts_on_the_account("contents") && acts_on_the_account("organization_secrets"));
        assert!(acts_on_the_account("members") && !acts_on_the_account("no-such-permission"));
    }

    #[test]
    fn naming_a_repository_narrows_the_request_to_it() {
        use appcreds_wire::Target;
        let repo = Target::Repository("octo-org/hello-world".into());
        let perms: ScopeDown = serde_json::from_value(json!({"permissions": {"contents": "read"}})).unwrap();
        let narrowed = requested_scope(&repo, Some(&perms)).unwrap();
        assert_eq!(narrowed.repository_names, ["hello-world"]);
        assert_eq!(narrowed.permissions, perms.permissions, "the permissions asked for stay");
        assert_eq!(requested_scope(&repo, None).unwrap().repository_names, ["hello-world"]);
        let named: ScopeDown = serde_json::from_value(json!({"repositoryIds": [5]})).unwrap();
        assert_eq!(requested_scope(&repo, Some(&named)), Some(named.clone()), "repositories asked for are kept");
        assert_eq!(requested_scope(&Target::Owner("octo-org".into()), None), None, "an owner is not narrowed");
    }

    fn scope(v: Value) -> ScopeDown {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn an_answer_within_the_request_has_no_excess() {
        let asked = scope(json!({"repositoryNames": ["Hello-World"], "repositoryIds": [7102],
            "permissions": {"contents": "write", "issues": "read"}}));
        let granted = scope(json!({"repositoryIds": [7101, 7102], "repositoryNames": ["hello-world", "docs"],
            "permissions": {"contents": "read", "issues": "read", "metadata": "read"}}));
        assert_eq!(
            excess(&asked, &granted, false),
            Vec::<String>::new(),
            "lower levels, metadata: read, by ID or name"
        );
        let narrower = scope(json!({"repositoryIds": [7102], "repositoryNames": ["docs"], "permissions": {}}));
        assert!(excess(&asked, &narrower, false).is_empty(), "narrower than asked is within");
        // Nothing asked: the installation's permissions and every repository were asked for.
        let everything = scope(json!({"permissions": {"administration": "admin", "issues": "write"}}));
        assert!(excess(&ScopeDown::default(), &everything, true).is_empty());
        let perms_only = scope(json!({"permissions": {"issues": "write"}}));
        assert!(excess(&perms_only, &scope(json!({"permissions": {"issues": "write"}})), true).is_empty());
    }

    #[test]
    fn the_pre_flight_names_the_first_permission_beyond_the_installation() {
        let installation = InstallationGrants {
            permissions: scope(json!({"permissions": {"contents": "write", "issues": "read", "metadata": "read"}}))
                .permissions,
            repository_selection: "selected".into(),
        };
        let within = scope(json!({"repositoryNames": ["any"], "permissions": {"contents": "read", "issues": "read"}}));
        assert_eq!(beyond_installation(&within, &installation), None);
        assert_eq!(beyond_installation(&ScopeDown::default(), &installation), None, "nothing asked");
        let higher = scope(json!({"permissions": {"contents": "admin", "issues": "read"}}));
        assert_eq!(
            beyond_installation(&higher, &installation).unwrap(),
            "permission contents: admin (it grants write)"
        );
        let missing = scope(json!({"permissions": {"administration": "read", "contents": "read"}}));
        assert_eq!(beyond_installation(&missing, &installation).unwrap(), "permission administration: read");
        let mut odd = installation.clone();
        odd.permissions.insert("issues".into(), "triage".into());
        assert_eq!(beyond_installation(&within, &odd), None, "a level not known refuses nothing: GitHub decides");
    }

    #[test]
    fn each_excess_is_named() {
        let asked = scope(json!({"repositoryNames": ["hello-world"], "permissions": {"contents": "read"}}));
        let granted = scope(json!({"repositoryIds": [7101, 7102], "repositoryNames": ["hello-world", "docs"],
            "permissions": {"contents": "write", "issues": "write", "metadata": "write"}}));
        assert_eq!(
            excess(&asked, &granted, false),
            [
                "permission contents: write (asked read)",
                "permission issues: write (not asked)",
                "permission metadata: write (not asked)",
                "repository docs (not asked)",
            ]
        );
        let all = scope(json!({"permissions": {"contents": "read"}}));
        assert_eq!(excess(&asked, &all, true), ["every repository of the installation (asked for named ones)"]);
        let odd = scope(json!({"permissions": {"contents": "maintain"}}));
        assert_eq!(excess(&asked, &odd, false), ["permission contents: maintain (asked read)"], "unknown level");
        let by_id = scope(json!({"repositoryIds": [5]}));
        let other = scope(json!({"repositoryIds": [6], "repositoryNames": ["x"]}));
        assert_eq!(excess(&by_id, &other, false), ["repository x (not asked)"]);
    }

    #[test]
    fn the_permission_list_is_githubs() {
        let levels = permission_levels();
        assert!(levels.len() >= 50, "{} permissions", levels.len());
        assert_eq!(levels["contents"], ["read", "write"]);
        assert_eq!(levels["metadata"], ["read", "write"]);
        assert!(
            levels
                .values()
                .all(|l| !l.is_empty() && l.iter().all(|x| ["read", "write", "admin"].contains(&x.as_str())))
        );
    }
}
