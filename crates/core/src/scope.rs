//! `scopeDown`: parsing and validation of an installation token's requested scope, before any
//! call to GitHub. Permission names and levels come from GitHub's OpenAPI description
//! (`data/app-permissions.json`, written by `scripts/update-permissions`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::api::{Fields, Violations, as_i64};
use crate::error::Error;

/// GitHub refuses more repositories in one token request.
pub const MAX_REPOSITORIES: usize = 500;
/// GitHub's longest repository name.
pub const MAX_REPOSITORY_NAME: usize = 100;

/// The permissions an installation token may request, with their allowed levels.
pub fn permission_levels() -> &'static BTreeMap<String, Vec<String>> {
    static LEVELS: OnceLock<BTreeMap<String, Vec<String>>> = OnceLock::new();
    LEVELS.get_or_init(|| {
        #[derive(serde::Deserialize)]
        struct File {
            permissions: BTreeMap<String, Vec<String>>,
        }
        serde_json::from_str::<File>(include_str!("../data/app-permissions.json"))
            .map(|f| f.permissions)
            .expect("data/app-permissions.json is valid (checked by a unit test)")
    })
}

/// A validated scope. Repository lists keep the caller's order without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeDown {
    pub repository_ids: Vec<i64>,
    pub repository_names: Vec<String>,
    pub permissions: BTreeMap<String, String>,
}

impl ScopeDown {
    /// Reads `scopeDown` from a request body object; `None` if absent. Wrong JSON types are
    /// `SerializationException`s; every constraint violation is named in one `ValidationException`.
    pub fn from_request(body: &Fields<'_>) -> Result<Option<ScopeDown>, Error> {
        let Some(map) = body.object("scopeDown")? else { return Ok(None) };
        Self::parse(map, "/scopeDown").map(Some)
    }

    fn parse(map: &Map<String, Value>, prefix: &str) -> Result<ScopeDown, Error> {
        let fields = Fields::nested(map, prefix);
        let mut bad = Violations::default();
        let mut scope = ScopeDown::default();

        for (i, v) in fields.array("repositoryIds")?.into_iter().flatten().enumerate() {
            let path = format!("{prefix}/repositoryIds/{i}");
            let id = as_i64(v, &path)?;
            if id < 1 {
                bad.add(path, "must be greater than or equal to 1");
            } else if !scope.repository_ids.contains(&id) {
                scope.repository_ids.push(id);
            }
        }
        for (i, v) in fields.array("repositoryNames")?.into_iter().flatten().enumerate() {
            let path = format!("{prefix}/repositoryNames/{i}");
            let Value::String(name) = v else {
                return Err(Error::Serialization(format!("Value at '{path}' must be a string")));
            };
            if let Some(problem) = repository_name_problem(name) {
                bad.add(path, problem);
            } else if !scope.repository_names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                scope.repository_names.push(name.clone());
            }
        }
        let repositories = scope.repository_ids.len() + scope.repository_names.len();
        if repositories > MAX_REPOSITORIES {
            bad.add(
                format!("{prefix}/repositoryNames"),
                format!("names at most {MAX_REPOSITORIES} repositories in all (ids and names), not {repositories}"),
            );
        }
        if let Some(perms) = fields.object("permissions")? {
            let known = permission_levels();
            // Sorted, so the errors come in one order whatever serde_json's map preserves.
            let mut perms: Vec<(&String, &Value)> = perms.iter().collect();
            perms.sort_by_key(|(name, _)| *name);
            for (name, level) in perms {
                let path = format!("{prefix}/permissions/{name}");
                let Value::String(level) = level else {
                    return Err(Error::Serialization(format!("Value at '{path}' must be a string")));
                };
                match known.get(name) {
                    None => bad.add(path, "is not a GitHub App permission"),
                    Some(allowed) if !allowed.contains(level) => {
                        bad.add(path, format!("must be one of {}", allowed.join(", ")));
                    }
                    Some(_) => {
                        scope.permissions.insert(name.clone(), level.clone());
                    }
                }
            }
        }
        bad.finish()?;
        Ok(scope)
    }

    pub fn is_empty(&self) -> bool {
        self.repository_ids.is_empty() && self.repository_names.is_empty() && self.permissions.is_empty()
    }

    /// The fields of GitHub's `POST /app/installations/{id}/access_tokens` body.
    pub fn github_body(&self) -> Value {
        let mut body = Map::new();
        if !self.repository_ids.is_empty() {
            body.insert("repository_ids".into(), json!(self.repository_ids));
        }
        if !self.repository_names.is_empty() {
            body.insert("repositories".into(), json!(self.repository_names));
        }
        if !self.permissions.is_empty() {
            body.insert("permissions".into(), json!(self.permissions));
        }
        Value::Object(body)
    }

    /// The scope in the API's shape (`requestedScopeDown`, `actualScopeDown`); empty parts omitted.
    pub fn to_api(&self) -> Value {
        let mut out = Map::new();
        if !self.repository_ids.is_empty() {
            out.insert("repositoryIds".into(), json!(self.repository_ids));
        }
        if !self.repository_names.is_empty() {
            out.insert("repositoryNames".into(), json!(self.repository_names));
        }
        if !self.permissions.is_empty() {
            out.insert("permissions".into(), json!(self.permissions));
        }
        Value::Object(out)
    }

    /// A key that is equal for scopes GitHub treats alike (order, duplicates and the case of
    /// repository names do not matter).
    pub fn cache_key(&self) -> String {
        let mut ids = self.repository_ids.clone();
        ids.sort_unstable();
        let mut names: Vec<String> = self.repository_names.iter().map(|n| n.to_ascii_lowercase()).collect();
        names.sort();
        json!({ "i": ids, "n": names, "p": self.permissions }).to_string()
    }
}

/// Why `name` is not a valid GitHub repository name, if it is not.
fn repository_name_problem(name: &str) -> Option<String> {
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
    use crate::api::error_parts;

    fn parse(v: Value) -> Result<ScopeDown, Error> {
        let Value::Object(body) = json!({ "scopeDown": v }) else { unreachable!() };
        ScopeDown::from_request(&Fields::new(&body)).map(|s| s.expect("present"))
    }

    fn field_paths(err: &Error) -> Vec<String> {
        let (_, name, body) = error_parts(err);
        assert_eq!(name, "ValidationException", "{body}");
        body["fieldList"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_string()).collect()
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

    #[test]
    fn a_valid_scope_is_normalised() {
        let s = parse(json!({
            "repositoryIds": [3, 1, 3],
            "repositoryNames": ["Hello-World", "hello-world", "docs.site", "a_b"],
            "permissions": {"contents": "read", "issues": "write"},
            "unknown": true
        }))
        .unwrap();
        assert_eq!(s.repository_ids, [3, 1]);
        assert_eq!(s.repository_names, ["Hello-World", "docs.site", "a_b"]);
        assert_eq!(
            s.github_body(),
            json!({"repository_ids": [3, 1], "repositories": ["Hello-World", "docs.site", "a_b"], "permissions": {"contents": "read", "issues": "write"}})
        );
        let reordered = parse(json!({"repositoryIds": [1, 3], "repositoryNames": ["a_b", "DOCS.site", "hello-world"], "permissions": {"issues": "write", "contents": "read"}})).unwrap();
        assert_eq!(s.cache_key(), reordered.cache_key());
        assert_ne!(s.cache_key(), parse(json!({"repositoryIds": [1, 3]})).unwrap().cache_key());
    }

    #[test]
    fn every_violation_is_named_by_its_path() {
        let err = parse(json!({
            "repositoryIds": [0, 5, -1],
            "repositoryNames": ["ok", "", "owner/name", "..", "x".repeat(101), "sp ace"],
            "permissions": {"contents": "admin", "not_a_permission": "read", "issues": "execute"}
        }))
        .unwrap_err();
        assert_eq!(
            field_paths(&err),
            [
                "/scopeDown/repositoryIds/0",
                "/scopeDown/repositoryIds/2",
                "/scopeDown/repositoryNames/1",
                "/scopeDown/repositoryNames/2",
                "/scopeDown/repositoryNames/3",
                "/scopeDown/repositoryNames/4",
                "/scopeDown/repositoryNames/5",
                "/scopeDown/permissions/contents",
                "/scopeDown/permissions/issues",
                "/scopeDown/permissions/not_a_permission",
            ]
        );
    }

    #[test]
    fn at_most_500_repositories() {
        let names: Vec<String> = (0..300).map(|i| format!("r{i}")).collect();
        let ids: Vec<i64> = (1..=200).collect();
        assert!(parse(json!({"repositoryNames": names, "repositoryIds": ids})).is_ok());
        let ids: Vec<i64> = (1..=201).collect();
        let err = parse(json!({"repositoryNames": names, "repositoryIds": ids})).unwrap_err();
        assert_eq!(field_paths(&err), ["/scopeDown/repositoryNames"]);
    }

    #[test]
    fn wrong_types_are_serialization_errors() {
        for bad in [
            json!("all"),
            json!({"repositoryIds": "1"}),
            json!({"repositoryIds": [1.5]}),
            json!({"repositoryNames": [1]}),
            json!({"permissions": {"contents": 1}}),
            json!({"permissions": ["contents"]}),
        ] {
            let err = parse(bad.clone()).unwrap_err();
            assert_eq!(error_parts(&err).1, "SerializationException", "{bad}");
        }
    }
}
