//! The contract's request readers: typed, path-aware reads of a request body that produce the
//! `appcreds-wire` request types. Type mismatches are `SerializationException`s; constraint
//! violations are collected into one `ValidationException` naming every field.

use appcreds_wire::{
    AppTokenRequest, InstallationInfoRequest, InstallationTokenRequest, ListInstallationsRequest, ScopeDown, Target,
};
use serde_json::{Map, Value};

use crate::domain::scope::{MAX_REPOSITORIES, permission_levels, repository_name_problem};
use crate::error::{Error, FieldError};

/// Typed, path-aware reads of a JSON object's members.
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
}

impl<'a> Fields<'a> {
    /// The members of a request body.
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Self { map, prefix: String::new() }
    }

    /// The members of a nested object at JSON pointer `prefix`.
    fn nested(map: &'a Map<String, Value>, prefix: impl Into<String>) -> Self {
        Self { map, prefix: prefix.into() }
    }

    /// The JSON pointer of member `name`.
    fn path(&self, name: &str) -> String {
        format!("{}/{}", self.prefix, name)
    }

    /// A member's value; JSON `null` counts as absent, as in Smithy's JSON protocols.
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// An integer member within `i64`; `None` if absent.
    fn i64(&self, name: &str) -> Result<Option<i64>, Error> {
        self.get(name).map(|v| as_i64(v, &self.path(name))).transpose()
    }

    /// A string member; `None` if absent.
    fn str(&self, name: &str) -> Result<Option<&'a str>, Error> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(&self.path(name), "a string", other)),
        }
    }

    /// An object member; `None` if absent.
    fn object(&self, name: &str) -> Result<Option<&'a Map<String, Value>>, Error> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => Err(wrong_type(&self.path(name), "an object", other)),
        }
    }

    /// An array member; `None` if absent.
    fn array(&self, name: &str) -> Result<Option<&'a Vec<Value>>, Error> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(other) => Err(wrong_type(&self.path(name), "an array", other)),
        }
    }
}

/// Reads a JSON number as an `i64`, refusing floats and values outside the 64-bit range.
fn as_i64(value: &Value, path: &str) -> Result<i64, Error> {
    match value {
        Value::Number(n) => n.as_i64().ok_or_else(|| {
            Error::Serialization(if n.is_f64() && n.as_f64().is_some_and(|f| f.abs() < 9.2e18) {
                format!("Value at '{path}' must be an integer, not {n}")
            } else {
                format!("Value at '{path}' is outside the 64-bit integer range")
            })
        }),
        other => Err(wrong_type(path, "an integer", other)),
    }
}

fn wrong_type(path: &str, expected: &str, got: &Value) -> Error {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    Error::Serialization(format!("Value at '{path}' must be {expected}, not {kind}"))
}

/// Collects constraint violations so a response can name all of them at once.
#[derive(Debug, Default)]
struct Violations(Vec<FieldError>);

impl Violations {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }

    /// `Ok` if nothing was added, else one `ValidationException` naming every field.
    fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() { Ok(()) } else { Err(Error::invalid_fields(self.0)) }
    }
}

/// Reads a required ID (`appId`, …): an integer from 1 to 2^63 − 1.
fn required_id(fields: &Fields<'_>, name: &str) -> Result<i64, Error> {
    match fields.i64(name)? {
        None => Err(Error::invalid(fields.path(name), "must not be null")),
        Some(v) if v < 1 => Err(Error::invalid(fields.path(name), "must be greater than or equal to 1")),
        Some(v) => Ok(v),
    }
}

/// A required node ID: 1 to 256 characters.
fn node_id(fields: &Fields<'_>) -> Result<String, Error> {
    match fields.str("nodeId")? {
        None => Err(Error::invalid("/nodeId", "must not be null")),
        Some(n) => checked_node_id(n),
    }
}

fn checked_node_id(node_id: &str) -> Result<String, Error> {
    if node_id.is_empty() || node_id.chars().count() > 256 {
        return Err(Error::invalid("/nodeId", "must be 1 to 256 characters long"));
    }
    Ok(node_id.to_string())
}

/// `POST /tokens/app`'s body.
pub fn app_token(body: &Map<String, Value>) -> Result<AppTokenRequest, Error> {
    Ok(AppTokenRequest { app_id: required_id(&Fields::new(body), "appId")? })
}

/// `POST /tokens/installation`'s body: `appId`, exactly one of `nodeId`, `owner` and
/// `repository`, and an optional `scopeDown`.
pub fn installation_token(body: &Map<String, Value>) -> Result<InstallationTokenRequest, Error> {
    let fields = Fields::new(body);
    let app_id = required_id(&fields, "appId")?;
    let target = target(&fields)?;
    let scope_down = match fields.object("scopeDown")? {
        None => None,
        Some(map) => Some(scope_down(map, "/scopeDown")?),
    };
    Ok(InstallationTokenRequest { app_id, target, scope_down })
}

/// `POST /installations/info`'s body.
pub fn installation_info(body: &Map<String, Value>) -> Result<InstallationInfoRequest, Error> {
    Ok(InstallationInfoRequest { node_id: node_id(&Fields::new(body))? })
}

/// `POST /installations`' body (the page token is checked by its reader).
pub fn list_installations(body: &Map<String, Value>) -> Result<ListInstallationsRequest, Error> {
    let fields = Fields::new(body);
    let max_results = match fields.i64("maxResults")? {
        Some(n) if !(1..=100).contains(&n) => return Err(Error::invalid("/maxResults", "must be between 1 and 100")),
        other => other,
    };
    Ok(ListInstallationsRequest { max_results, next_token: fields.str("nextToken")?.map(str::to_string) })
}

/// GitHub logins: 1 to 39 characters, ASCII letters, digits and single inner hyphens.
fn valid_login(login: &str) -> bool {
    (1..=39).contains(&login.len())
        && login.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !login.starts_with('-')
        && !login.ends_with('-')
}

/// The installation target: exactly one of `nodeId`, `owner`, `repository`.
fn target(body: &Fields<'_>) -> Result<Target, Error> {
    let node_id = body.str("nodeId")?;
    let owner = body.str("owner")?;
    let repository = body.str("repository")?;
    let given = [node_id.is_some(), owner.is_some(), repository.is_some()].iter().filter(|g| **g).count();
    if given == 0 {
        return Err(Error::invalid("/nodeId", "must not be null (or give owner or repository)"));
    }
    if given > 1 {
        return Err(Error::invalid("/nodeId", "give only one of nodeId, owner and repository"));
    }
    if let Some(node_id) = node_id {
        return Ok(Target::NodeId(checked_node_id(node_id)?));
    }
    if let Some(owner) = owner {
        if !valid_login(owner) {
            return Err(Error::invalid("/owner", "is not a GitHub login"));
        }
        return Ok(Target::Owner(owner.to_string()));
    }
    let repository = repository.unwrap_or_default();
    match repository.split_once('/') {
        Some((owner, name)) if valid_login(owner) && repository_name_problem(name).is_none() => {
            Ok(Target::Repository(repository.to_string()))
        }
        _ => Err(Error::invalid("/repository", "must be owner/name")),
    }
}

/// A `scopeDown` object at `prefix`. Repository lists keep the caller's order without
/// duplicates (names compared without case, as GitHub does).
fn scope_down(map: &Map<String, Value>, prefix: &str) -> Result<ScopeDown, Error> {
    let fields = Fields::nested(map, prefix);
    let mut bad = Violations::default();
    let mut scope = ScopeDown::default();
    // Duplicates are dropped in O(n log n): a body of 32,000 IDs is judged in milliseconds.
    let mut seen_ids = std::collections::BTreeSet::<i64>::new();
    let mut seen_names = std::collections::BTreeSet::<String>::new();

    for (i, v) in fields.array("repositoryIds")?.into_iter().flatten().enumerate() {
        let path = format!("{prefix}/repositoryIds/{i}");
        let id = as_i64(v, &path)?;
        if id < 1 {
            bad.add(path, "must be greater than or equal to 1");
        } else if seen_ids.insert(id) {
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
        } else if seen_names.insert(name.to_ascii_lowercase()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::scope::cache_key;
    use crate::http::error_reply;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    fn name_of(err: &Error) -> &'static str {
        error_reply(err).0.as_str()
    }

    #[test]
    fn ids_are_read_strictly() {
        let cases = [
            (r#"{"appId": 7}"#, Ok(7)),
            (r#"{"appId": 9223372036854775807}"#, Ok(i64::MAX)),
            (r#"{}"#, Err("ValidationException")),
            (r#"{"appId": null}"#, Err("ValidationException")),
            (r#"{"appId": 0}"#, Err("ValidationException")),
            (r#"{"appId": -3}"#, Err("ValidationException")),
            (r#"{"appId": "7"}"#, Err("SerializationException")),
            (r#"{"appId": 7.5}"#, Err("SerializationException")),
            (r#"{"appId": 7.0}"#, Err("SerializationException")),
            (r#"{"appId": 9223372036854775808}"#, Err("SerializationException")),
            (r#"{"appId": 1e30}"#, Err("SerializationException")),
            (r#"{"appId": true}"#, Err("SerializationException")),
            (r#"{"appId": [1]}"#, Err("SerializationException")),
        ];
        for (body, expected) in cases {
            let map = obj(serde_json::from_str(body).unwrap());
            let got = app_token(&map).map(|r| r.app_id).map_err(|e| name_of(&e));
            assert_eq!(got, expected, "{body}");
        }
    }

    #[test]
    fn validation_errors_name_the_field() {
        let err = app_token(&obj(json!({"appId": 0}))).unwrap_err();
        let (name, body) = error_reply(&err);
        assert_eq!((name.status(), name.as_str()), (400, "ValidationException"));
        let fields = body.field_list.unwrap();
        assert_eq!(fields[0].path, "/appId");
        assert_eq!(fields.len(), 1);
    }

    fn target_of(v: Value) -> Result<Target, &'static str> {
        let m = obj(v);
        target(&Fields::new(&m)).map_err(|e| name_of(&e))
    }

    #[test]
    fn exactly_one_target() {
        assert_eq!(target_of(json!({"nodeId": "MDEy"})), Ok(Target::NodeId("MDEy".into())));
        assert_eq!(target_of(json!({"owner": "octo-org"})), Ok(Target::Owner("octo-org".into())));
        assert_eq!(
            target_of(json!({"repository": "octo-org/hello.world"})),
            Ok(Target::Repository("octo-org/hello.world".into()))
        );
        for bad in [
            json!({}),
            json!({"nodeId": ""}),
            json!({"nodeId": "x".repeat(257)}),
            json!({"nodeId": "a", "owner": "b"}),
            json!({"owner": "-bad"}),
            json!({"owner": "a/b"}),
            json!({"owner": "x".repeat(40)}),
            json!({"repository": "noslash"}),
            json!({"repository": "a/b/c"}),
            json!({"repository": "a/.."}),
            json!({"repository": "../x"}),
        ] {
            assert_eq!(target_of(bad.clone()), Err("ValidationException"), "{bad}");
        }
        assert_eq!(target_of(json!({"nodeId": 5})), Err("SerializationException"));
    }

    fn parse(v: Value) -> Result<ScopeDown, Error> {
        let body = obj(json!({ "appId": 1, "nodeId": "N", "scopeDown": v }));
        installation_token(&body).map(|r| r.scope_down.expect("present"))
    }

    fn field_paths(err: &Error) -> Vec<String> {
        let (name, body) = error_reply(err);
        assert_eq!(name.as_str(), "ValidationException", "{body:?}");
        body.field_list.unwrap().into_iter().map(|f| f.path).collect()
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
            crate::domain::scope::github_body(&s),
            json!({"repository_ids": [3, 1], "repositories": ["Hello-World", "docs.site", "a_b"], "permissions": {"contents": "read", "issues": "write"}})
        );
        let reordered = parse(json!({"repositoryIds": [1, 3], "repositoryNames": ["a_b", "DOCS.site", "hello-world"], "permissions": {"issues": "write", "contents": "read"}})).unwrap();
        assert_eq!(cache_key(&s), cache_key(&reordered));
        assert_ne!(cache_key(&s), cache_key(&parse(json!({"repositoryIds": [1, 3]})).unwrap()));
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
    fn a_flood_of_violations_is_counted_but_not_echoed() {
        // 64 KiB of invalid repository IDs: about 32,000 violations.
        let ids: Vec<i64> = vec![0; 32_000];
        let err = parse(json!({"repositoryIds": ids})).unwrap_err();
        let (_, body) = error_reply(&err);
        assert_eq!(body.field_list.as_ref().map(Vec::len), Some(20), "at most 20 listed");
        assert_eq!(
            body.message,
            "32000 validation errors at 32000 paths detected. First failure: Value at '/scopeDown/repositoryIds/0' must be greater than or equal to 1"
        );
        assert!(serde_json::to_string(&body).unwrap().len() < 4096, "a small answer");
        // Many valid duplicates are dropped quickly, keeping the first of each.
        let names: Vec<String> = (0..30_000).map(|i| format!("Repo{}", i % 3)).collect();
        let s = parse(json!({"repositoryNames": names})).unwrap();
        assert_eq!(s.repository_names, ["Repo0", "Repo1", "Repo2"]);
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
            assert_eq!(name_of(&err), "SerializationException", "{bad}");
        }
    }
}
