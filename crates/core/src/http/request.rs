//! The contract's request readers: typed, path-aware reads of a request body that produce the
//! `appcreds-wire` request types. Type mismatches are `SerializationException`s; constraint
//! violations are collected into one `ValidationException` naming every field.

use appcreds_wire::{
    AppTokenRequest, InstallationInfoRequest, InstallationTokenRequest, InstallationTokensRequest,
    ListInstallationsRequest, ScopeDown, Target,
};
use serde_json::{Map, Value};

use std::sync::LazyLock;

use crate::domain::access::MAX_ENTERPRISE_SLUG;
use crate::domain::scope::{MAX_REPOSITORIES, MAX_REPOSITORY_NAME, permission_levels};
use crate::error::Error;
use crate::http::constraint::{Pattern, Violations};

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

/// **(ext)** `owner`: a GitHub login (with `@length(1, 39)`).
static LOGIN: LazyLock<Pattern> = LazyLock::new(|| Pattern::new("^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$"));
/// **(ext)** `repository`: `owner/name` (with `@length(3, 140)`).
static REPOSITORY: LazyLock<Pattern> =
    LazyLock::new(|| Pattern::new("^[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?/[A-Za-z0-9._-]{1,100}$"));
/// A repository name in `scopeDown` (with `@length(1, 100)`).
static REPOSITORY_NAME: LazyLock<Pattern> = LazyLock::new(|| Pattern::new("^[A-Za-z0-9._-]+$"));

/// A value known to be present once the request's violations came to none.
fn checked<T>(value: Option<T>) -> Result<T, Error> {
    value.ok_or_else(|| Error::internal("reading the request", "a member missing after validation"))
}

/// A required ID (`appId`, …): `@required`, `@range(min: 1)`; `None` if it violates either.
fn id(fields: &Fields<'_>, name: &str, v: &mut Violations) -> Result<Option<i64>, Error> {
    let path = fields.path(name);
    Ok(match fields.i64(name)? {
        None => {
            v.required(&path);
            None
        }
        Some(n) => v.range(&path, n, Some(1), None).then_some(n),
    })
}

/// A node ID at `path`: `@length(1, 256)`.
fn node_id_value(path: &str, node_id: &str, v: &mut Violations) -> Option<String> {
    v.text_length(path, node_id, Some(1), Some(256)).then(|| node_id.to_string())
}

/// `POST /tokens/app`'s body.
pub fn app_token(body: &Map<String, Value>) -> Result<AppTokenRequest, Error> {
    let mut v = Violations::default();
    let app_id = id(&Fields::new(body), "appId", &mut v)?;
    v.finish()?;
    Ok(AppTokenRequest { app_id: checked(app_id)? })
}

/// `POST /tokens/installation`'s body: `appId`, exactly one of `nodeId`, `owner`, `repository`
/// and `enterprise`, and an optional `scopeDown`. Every violation of all of them is counted.
pub fn installation_token(body: &Map<String, Value>) -> Result<InstallationTokenRequest, Error> {
    let mut v = Violations::default();
    let read = token_request(&Fields::new(body), &mut v)?;
    v.finish()?;
    checked(read)
}

/// One installation-token body (at `fields`' prefix), its violations added to `v`; `None` if it
/// has any.
fn token_request(fields: &Fields<'_>, v: &mut Violations) -> Result<Option<InstallationTokenRequest>, Error> {
    let app_id = id(fields, "appId", v)?;
    let target = target(fields, v)?;
    let scope_down = match fields.object("scopeDown")? {
        None => None,
        Some(map) => Some(scope_down(map, &fields.path("scopeDown"), v)?),
    };
    Ok(app_id.zip(target).map(|(app_id, target)| InstallationTokenRequest { app_id, target, scope_down }))
}

/// **(ext)** `POST /tokens/installations`' body: `targets`, 1 to
/// [`InstallationTokensRequest::MAX_TARGETS`] installation-token bodies, each read as
/// [`installation_token`] reads one (its paths under `/targets/{index}`), no two naming the same
/// App and target (logins and slugs compared without case, as GitHub compares them).
pub fn installation_tokens(body: &Map<String, Value>) -> Result<InstallationTokensRequest, Error> {
    let fields = Fields::new(body);
    let mut v = Violations::default();
    let items: &[Value] = match fields.array("targets")? {
        None => {
            v.required("/targets");
            &[]
        }
        // Nothing of a list beyond the bound is read.
        Some(items) if !v.length("/targets", items.len(), Some(1), Some(InstallationTokensRequest::MAX_TARGETS)) => &[],
        Some(items) => items,
    };
    let mut targets = Vec::with_capacity(items.len());
    let mut seen = std::collections::BTreeMap::new();
    for (index, item) in items.iter().enumerate() {
        let prefix = format!("/targets/{index}");
        let Value::Object(map) = item else { return Err(wrong_type(&prefix, "an object", item)) };
        let Some(read) = token_request(&Fields::nested(map, prefix.as_str()), &mut v)? else { continue };
        let key = (read.app_id, same_target(&read.target));
        if let Some(first) = seen.insert(key, index) {
            v.rule(&prefix, &format!("must not name the App and installation target of /targets/{first} again"));
        }
        targets.push(read);
    }
    v.finish()?;
    Ok(InstallationTokensRequest { targets })
}

/// What two targets of one batch are compared by: their kind and name, logins and slugs (and
/// repositories' names) without case.
fn same_target(target: &Target) -> (u8, String) {
    match target {
        Target::NodeId(node_id) => (0, node_id.clone()),
        Target::Owner(login) => (1, login.to_ascii_lowercase()),
        Target::Repository(repository) => (2, repository.to_ascii_lowercase()),
        Target::Enterprise(slug) => (3, slug.to_ascii_lowercase()),
    }
}

/// `POST /installations/info`'s body: a required `nodeId`.
pub fn installation_info(body: &Map<String, Value>) -> Result<InstallationInfoRequest, Error> {
    let fields = Fields::new(body);
    let mut v = Violations::default();
    let node_id = match fields.str("nodeId")? {
        None => {
            v.required("/nodeId");
            None
        }
        Some(n) => node_id_value("/nodeId", n, &mut v),
    };
    v.finish()?;
    Ok(InstallationInfoRequest { node_id: checked(node_id)? })
}

/// `POST /installations`' body: `maxResults` `@range(1, 100)` (the page token is checked by its
/// reader).
pub fn list_installations(body: &Map<String, Value>) -> Result<ListInstallationsRequest, Error> {
    let fields = Fields::new(body);
    let mut v = Violations::default();
    let max_results = fields.i64("maxResults")?;
    if let Some(n) = max_results {
        v.range("/maxResults", n, Some(1), Some(100));
    }
    v.finish()?;
    Ok(ListInstallationsRequest { max_results, next_token: fields.str("nextToken")?.map(str::to_string) })
}

/// The installation target: exactly one of `nodeId`, `owner`, `repository`, `enterprise`
/// (`nodeId` is the contract's required member; the others are extensions that stand in for it).
fn target(fields: &Fields<'_>, v: &mut Violations) -> Result<Option<Target>, Error> {
    let node_id = fields.str("nodeId")?;
    let owner = fields.str("owner")?;
    let repository = fields.str("repository")?;
    let enterprise = fields.str("enterprise")?;
    let given: Vec<&str> = [
        ("nodeId", node_id.is_some()),
        ("owner", owner.is_some()),
        ("repository", repository.is_some()),
        ("enterprise", enterprise.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    match given.as_slice() {
        [] => {
            v.required(&fields.path("nodeId"));
            return Ok(None);
        }
        [_] => {}
        [first, rest @ ..] => {
            for extra in rest {
                v.rule(
                    &fields.path(extra),
                    &format!(
                        "must not be set together with {first} (give one of nodeId, owner, repository and enterprise)"
                    ),
                );
            }
            return Ok(None);
        }
    }
    if let Some(node_id) = node_id {
        return Ok(node_id_value(&fields.path("nodeId"), node_id, v).map(Target::NodeId));
    }
    if let Some(owner) = owner {
        // `&`, not `&&`: both constraints are checked and counted, as Smithy does.
        let path = fields.path("owner");
        let ok = v.text_length(&path, owner, Some(1), Some(39)) & v.pattern(&path, owner, &LOGIN);
        return Ok(ok.then(|| Target::Owner(owner.to_string())));
    }
    if let Some(enterprise) = enterprise {
        // **(ext)** An enterprise's slug: letters, digits and inner hyphens, as a login (with
        // `@length(1, 100)`). It goes into GitHub's path (/enterprises/{slug}/installation): the
        // pattern keeps it one segment.
        let path = fields.path("enterprise");
        let ok =
            v.text_length(&path, enterprise, Some(1), Some(MAX_ENTERPRISE_SLUG)) & v.pattern(&path, enterprise, &LOGIN);
        return Ok(ok.then(|| Target::Enterprise(enterprise.to_string())));
    }
    let repository = repository.unwrap_or_default();
    let path = fields.path("repository");
    let mut ok = v.text_length(&path, repository, Some(3), Some(140)) & v.pattern(&path, repository, &REPOSITORY);
    if ok && matches!(repository.rsplit_once('/'), Some((_, "." | ".."))) {
        v.rule(&path, "must not name the repository . or ..");
        ok = false;
    }
    Ok(ok.then(|| Target::Repository(repository.to_string())))
}

/// A `scopeDown` object at `prefix`. Repository lists keep the caller's order without
/// duplicates (names compared without case, as GitHub does).
fn scope_down(map: &Map<String, Value>, prefix: &str, v: &mut Violations) -> Result<ScopeDown, Error> {
    let fields = Fields::nested(map, prefix);
    let mut scope = ScopeDown::default();
    // Duplicates are dropped in O(n log n): a body of 32,000 IDs is judged in milliseconds.
    let mut seen_ids = std::collections::BTreeSet::<i64>::new();
    let mut seen_names = std::collections::BTreeSet::<String>::new();
    let mut one_list_too_long = false;

    if let Some(ids) = fields.array("repositoryIds")? {
        one_list_too_long |= !v.length(&fields.path("repositoryIds"), ids.len(), None, Some(MAX_REPOSITORIES));
        for (i, value) in ids.iter().enumerate() {
            let path = format!("{prefix}/repositoryIds/{i}");
            let id = as_i64(value, &path)?;
            if v.range(&path, id, Some(1), None) && seen_ids.insert(id) {
                scope.repository_ids.push(id);
            }
        }
    }
    if let Some(names) = fields.array("repositoryNames")? {
        one_list_too_long |= !v.length(&fields.path("repositoryNames"), names.len(), None, Some(MAX_REPOSITORIES));
        for (i, value) in names.iter().enumerate() {
            let path = format!("{prefix}/repositoryNames/{i}");
            let Value::String(name) = value else {
                return Err(wrong_type(&path, "a string", value));
            };
            let mut ok = v.text_length(&path, name, Some(1), Some(MAX_REPOSITORY_NAME))
                & v.pattern(&path, name, &REPOSITORY_NAME);
            if ok && (name == "." || name == "..") {
                v.rule(&path, "must not be . or ..");
                ok = false;
            }
            if ok && seen_names.insert(name.to_ascii_lowercase()) {
                scope.repository_names.push(name.clone());
            }
        }
    }
    let repositories = scope.repository_ids.len() + scope.repository_names.len();
    if repositories > MAX_REPOSITORIES && !one_list_too_long {
        v.rule(
            prefix,
            &format!(
                "must name at most {MAX_REPOSITORIES} repositories in all (repositoryIds and repositoryNames together)"
            ),
        );
    }
    if let Some(perms) = fields.object("permissions")? {
        let known = permission_levels();
        let permissions_path = fields.path("permissions");
        // Sorted, so the errors come in one order whatever serde_json's map preserves.
        let mut perms: Vec<(&String, &Value)> = perms.iter().collect();
        perms.sort_by_key(|(name, _)| *name);
        for (name, level) in perms {
            let path = format!("{permissions_path}/{name}");
            let Value::String(level) = level else {
                return Err(wrong_type(&path, "a string", level));
            };
            match known.get(name) {
                // A map key that fails is reported at the map's path, as Smithy does.
                None => {
                    let names: Vec<&str> = known.keys().map(String::as_str).collect();
                    v.one_of(&permissions_path, name, &names);
                }
                Some(allowed) => {
                    if v.one_of(&path, level, allowed) {
                        scope.permissions.insert(name.clone(), level.clone());
                    }
                }
            }
        }
    }
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
        let mut m = obj(v);
        m.insert("appId".into(), json!(1));
        installation_token(&m).map(|r| r.target).map_err(|e| name_of(&e))
    }

    #[test]
    fn exactly_one_target() {
        assert_eq!(target_of(json!({"nodeId": "MDEy"})), Ok(Target::NodeId("MDEy".into())));
        assert_eq!(target_of(json!({"owner": "octo-org"})), Ok(Target::Owner("octo-org".into())));
        assert_eq!(target_of(json!({"enterprise": "octo-corp"})), Ok(Target::Enterprise("octo-corp".into())));
        assert_eq!(target_of(json!({"enterprise": "x".repeat(100)})), Ok(Target::Enterprise("x".repeat(100))));
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
            json!({"enterprise": ""}),
            json!({"enterprise": "x".repeat(101)}),
            json!({"enterprise": "-corp"}),
            json!({"enterprise": "octo/../orgs"}),
            json!({"enterprise": "octo corp"}),
            json!({"enterprise": "octo-corp", "owner": "octo-org"}),
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
                "/scopeDown/repositoryNames/1", // length
                "/scopeDown/repositoryNames/1", // and pattern
                "/scopeDown/repositoryNames/2",
                "/scopeDown/repositoryNames/3",
                "/scopeDown/repositoryNames/4",
                "/scopeDown/repositoryNames/5",
                "/scopeDown/permissions/contents",
                "/scopeDown/permissions/issues",
                "/scopeDown/permissions", // a key that fails is reported at the map's path
            ]
        );
    }

    /// The messages and the summary of one request.
    fn messages(err: &Error) -> (String, Vec<String>) {
        let (name, body) = error_reply(err);
        assert_eq!(name.as_str(), "ValidationException", "{body:?}");
        (body.message, body.field_list.unwrap().into_iter().map(|f| f.message).collect())
    }

    /// Every constraint of the contract (and of its extensions), with Smithy's exact words.
    #[test]
    fn every_constraint_of_the_contract_in_smithys_words() {
        let pattern = |path: &str, p: &str| {
            format!(
                "Value at '{path}' failed to satisfy constraint: Member must satisfy regular expression pattern: {p}"
            )
        };
        let login = "^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$";
        let repo = "^[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?/[A-Za-z0-9._-]{1,100}$";
        let cases: Vec<(Result<(), Error>, Vec<String>)> = vec![
            (
                app_token(&obj(json!({}))).map(drop),
                vec!["Value at '/appId' failed to satisfy constraint: Member must not be null".into()],
            ),
            (
                app_token(&obj(json!({"appId": 0}))).map(drop),
                vec!["Value at '/appId' failed to satisfy constraint: Member must be greater than or equal to 1".into()],
            ),
            (
                installation_info(&obj(json!({}))).map(drop),
                vec!["Value at '/nodeId' failed to satisfy constraint: Member must not be null".into()],
            ),
            (
                installation_info(&obj(json!({"nodeId": "é".repeat(257)}))).map(drop),
                vec!["Value with length 257 at '/nodeId' failed to satisfy constraint: Member must have length between 1 and 256, inclusive".into()],
            ),
            (
                list_installations(&obj(json!({"maxResults": 0}))).map(drop),
                vec!["Value at '/maxResults' failed to satisfy constraint: Member must be between 1 and 100, inclusive".into()],
            ),
            (
                list_installations(&obj(json!({"maxResults": 101}))).map(drop),
                vec!["Value at '/maxResults' failed to satisfy constraint: Member must be between 1 and 100, inclusive".into()],
            ),
            (
                installation_token(&obj(json!({"appId": 1}))).map(drop),
                vec!["Value at '/nodeId' failed to satisfy constraint: Member must not be null".into()],
            ),
            (
                installation_token(&obj(json!({"appId": 1, "owner": "-".repeat(40)}))).map(drop),
                vec![
                    "Value with length 40 at '/owner' failed to satisfy constraint: Member must have length between 1 and 39, inclusive".into(),
                    pattern("/owner", login),
                ],
            ),
            (
                installation_token(&obj(json!({"appId": 1, "repository": "noslash"}))).map(drop),
                vec![pattern("/repository", repo)],
            ),
            (
                installation_token(&obj(json!({"appId": 1, "repository": "octo/.."}))).map(drop),
                vec!["Value at '/repository' failed to satisfy constraint: Member must not name the repository . or ..".into()],
            ),
            (
                installation_token(&obj(json!({"appId": 1, "nodeId": "N", "owner": "o"}))).map(drop),
                vec!["Value at '/owner' failed to satisfy constraint: Member must not be set together with nodeId (give one of nodeId, owner, repository and enterprise)".into()],
            ),
            (
                parse(json!({"repositoryIds": [0], "repositoryNames": ["a b"], "permissions": {"contents": "admin"}})).map(drop),
                vec![
                    "Value at '/scopeDown/repositoryIds/0' failed to satisfy constraint: Member must be greater than or equal to 1".into(),
                    pattern("/scopeDown/repositoryNames/0", "^[A-Za-z0-9._-]+$"),
                    "Value at '/scopeDown/permissions/contents' failed to satisfy constraint: Member must satisfy enum value set: [read, write]".into(),
                ],
            ),
            (
                parse(json!({"repositoryNames": ["x".repeat(101)]})).map(drop),
                vec!["Value with length 101 at '/scopeDown/repositoryNames/0' failed to satisfy constraint: Member must have length between 1 and 100, inclusive".into()],
            ),
        ];
        for (outcome, expected) in cases {
            let (summary, got) = messages(&outcome.unwrap_err());
            assert_eq!(got, expected);
            if expected.len() == 1 {
                assert_eq!(summary, format!("1 validation error detected. {}", expected[0]));
            } else {
                assert!(summary.ends_with(&format!("detected. First failure: {}", expected[0])), "{summary}");
            }
        }
        // An unknown permission: at the map's path, with the whole set, sorted.
        let (_, got) = messages(&parse(json!({"permissions": {"nope": "read"}})).unwrap_err());
        let set = got[0]
            .strip_prefix(
                "Value at '/scopeDown/permissions' failed to satisfy constraint: Member must satisfy enum value set: [",
            )
            .unwrap();
        let names: Vec<&str> = set.trim_end_matches(']').split(", ").collect();
        assert_eq!(names.len(), permission_levels().len());
        assert!(names.windows(2).all(|w| w[0] < w[1]) && names.contains(&"contents"));
    }

    /// Violations of several members are all counted: appId 0 and an empty nodeId are two.
    #[test]
    fn violations_of_every_member_are_counted() {
        let (summary, got) = messages(&installation_token(&obj(json!({"appId": 0, "nodeId": ""}))).unwrap_err());
        assert_eq!(got.len(), 2);
        assert_eq!(
            summary,
            "2 validation errors at 2 paths detected. First failure: Value at '/appId' failed to satisfy constraint: Member must be greater than or equal to 1"
        );
        let (summary, _) = messages(
            &installation_token(&obj(json!({"appId": 0, "owner": "", "scopeDown": {"repositoryIds": [0]}})))
                .unwrap_err(),
        );
        assert!(summary.starts_with("4 validation errors at 3 paths detected."), "{summary}");
    }

    #[test]
    fn at_most_500_repositories() {
        let names: Vec<String> = (0..300).map(|i| format!("r{i}")).collect();
        let ids: Vec<i64> = (1..=200).collect();
        assert!(parse(json!({"repositoryNames": names, "repositoryIds": ids})).is_ok());
        let ids: Vec<i64> = (1..=201).collect();
        let err = parse(json!({"repositoryNames": names, "repositoryIds": ids})).unwrap_err();
        assert_eq!(field_paths(&err), ["/scopeDown"]);
        let ids: Vec<i64> = (1..=501).collect();
        let (_, got) = messages(&parse(json!({"repositoryIds": ids})).unwrap_err());
        assert_eq!(
            got,
            [
                "Value with length 501 at '/scopeDown/repositoryIds' failed to satisfy constraint: Member must have length less than or equal to 500"
            ]
        );
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
