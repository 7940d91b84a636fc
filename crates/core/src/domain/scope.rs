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
