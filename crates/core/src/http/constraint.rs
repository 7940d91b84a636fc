//! Constraint checks with the exact messages of Smithy's server SDKs (`@aws-smithy/server-common`,
//! which the TypeScript framework's callers see), collected so that one `ValidationException`
//! counts every violation of a request:
//!
//! - `Value at '/appId' failed to satisfy constraint: Member must not be null`
//! - `Value at '/appId' failed to satisfy constraint: Member must be greater than or equal to 1`
//! - `Value at '/maxResults' failed to satisfy constraint: Member must be between 1 and 100, inclusive`
//! - `Value with length 0 at '/nodeId' failed to satisfy constraint: Member must have length between 1 and 256, inclusive`
//! - `Value at '/owner' failed to satisfy constraint: Member must satisfy regular expression pattern: ^…$`
//! - `Value at '/scopeDown/permissions/contents' failed to satisfy constraint: Member must satisfy enum value set: [read, write]`
//!
//! As in Smithy, the value itself is never echoed (only a length), lengths count characters
//! (Unicode code points), enum sets are sorted, and a map key that fails is reported at the
//! map's path. The summary is `1 validation error detected. <first>` or `N validation errors at M
//! paths detected. First failure: <first>` ([`crate::error::Error::invalid_fields`]).

use regex_lite::Regex;

use crate::error::{Error, FieldError};

/// Violations of one request, in the order the members were checked.
#[derive(Debug, Default)]
pub(crate) struct Violations(Vec<FieldError>);

impl Violations {
    /// Adds `Value[ with length n] at 'path' failed to satisfy constraint: Member <member>`.
    fn add(&mut self, path: &str, length: Option<usize>, member: &str) {
        let value = match length {
            Some(n) => format!("Value with length {n}"),
            None => "Value".to_string(),
        };
        self.0
            .push(FieldError::new(path, format!("{value} at '{path}' failed to satisfy constraint: Member {member}")));
    }

    /// `@required`: the member is absent (or `null`).
    pub fn required(&mut self, path: &str) {
        self.add(path, None, "must not be null");
    }

    /// `@range`: `value` within `min..=max` (either bound optional). Whether it holds.
    pub fn range(&mut self, path: &str, value: i64, min: Option<i64>, max: Option<i64>) -> bool {
        let member = match (min, max) {
            (Some(lo), Some(hi)) if !(lo..=hi).contains(&value) => format!("must be between {lo} and {hi}, inclusive"),
            (Some(lo), None) if value < lo => format!("must be greater than or equal to {lo}"),
            (None, Some(hi)) if value > hi => format!("must be less than or equal to {hi}"),
            _ => return true,
        };
        self.add(path, None, &member);
        false
    }

    /// `@length`: `length` (characters, items or entries) within `min..=max`. Whether it holds.
    pub fn length(&mut self, path: &str, length: usize, min: Option<usize>, max: Option<usize>) -> bool {
        let member = match (min, max) {
            (Some(lo), Some(hi)) if !(lo..=hi).contains(&length) => {
                format!("must have length between {lo} and {hi}, inclusive")
            }
            (Some(lo), None) if length < lo => format!("must have length greater than or equal to {lo}"),
            (None, Some(hi)) if length > hi => format!("must have length less than or equal to {hi}"),
            _ => return true,
        };
        self.add(path, Some(length), &member);
        false
    }

    /// `@length` of a string, in characters as Smithy counts them (code points).
    pub fn text_length(&mut self, path: &str, text: &str, min: Option<usize>, max: Option<usize>) -> bool {
        self.length(path, text.chars().count(), min, max)
    }

    /// `@pattern`: `text` matches `pattern`. Whether it does.
    pub fn pattern(&mut self, path: &str, text: &str, pattern: &Pattern) -> bool {
        if pattern.regex.is_match(text) {
            return true;
        }
        self.add(path, None, &format!("must satisfy regular expression pattern: {}", pattern.source));
        false
    }

    /// `@enum`: `value` is one of `set`. Whether it is.
    pub fn one_of<S: AsRef<str>>(&mut self, path: &str, value: &str, set: &[S]) -> bool {
        if set.iter().any(|s| s.as_ref() == value) {
            return true;
        }
        let mut sorted: Vec<&str> = set.iter().map(AsRef::as_ref).collect();
        sorted.sort_unstable();
        self.add(path, None, &format!("must satisfy enum value set: [{}]", sorted.join(", ")));
        false
    }

    /// **(ext)** A rule of appcreds' own, worded as Smithy words its constraints.
    pub fn rule(&mut self, path: &str, member: &str) {
        self.add(path, None, member);
    }

    /// `Ok` if nothing was added, else one `ValidationException` counting every violation.
    pub fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() { Ok(()) } else { Err(Error::invalid_fields(self.0)) }
    }
}

/// A `@pattern` constraint: the regular expression as Smithy's model states it (and as the
/// message quotes it), compiled once.
pub(crate) struct Pattern {
    source: &'static str,
    regex: Regex,
}

impl Pattern {
    /// Compiles `source`; the patterns are constants of this crate, so a bad one is a bug that
    /// the tests catch.
    pub fn new(source: &'static str) -> Self {
        #[allow(clippy::expect_used)]
        let regex = Regex::new(source).expect("a valid constant pattern");
        Pattern { source, regex }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error_reply;

    fn messages(v: Violations) -> Vec<String> {
        v.0.into_iter().map(|f| f.message).collect()
    }

    /// Each constraint's message, word for word as smithy-typescript's server-common writes it.
    #[test]
    fn every_constraint_has_smithys_message() {
        let mut v = Violations::default();
        v.required("/appId");
        assert!(!v.range("/appId", 0, Some(1), None));
        assert!(!v.range("/maxResults", 101, Some(1), Some(100)));
        assert!(!v.range("/x", 9, None, Some(8)));
        assert!(v.range("/ok", 1, Some(1), Some(100)));
        assert!(!v.text_length("/nodeId", "", Some(1), Some(256)));
        assert!(!v.text_length("/s", "é", Some(2), None));
        assert!(!v.length("/list", 501, None, Some(500)));
        assert!(!v.pattern("/owner", "-x", &Pattern::new("^[a-z]+$")));
        assert!(!v.one_of("/level", "execute", &["write", "read", "admin"]));
        assert!(v.one_of("/level", "read", &["write", "read"]));
        assert_eq!(
            messages(v),
            [
                "Value at '/appId' failed to satisfy constraint: Member must not be null",
                "Value at '/appId' failed to satisfy constraint: Member must be greater than or equal to 1",
                "Value at '/maxResults' failed to satisfy constraint: Member must be between 1 and 100, inclusive",
                "Value at '/x' failed to satisfy constraint: Member must be less than or equal to 8",
                "Value with length 0 at '/nodeId' failed to satisfy constraint: Member must have length between 1 and 256, inclusive",
                "Value with length 1 at '/s' failed to satisfy constraint: Member must have length greater than or equal to 2",
                "Value with length 501 at '/list' failed to satisfy constraint: Member must have length less than or equal to 500",
                "Value at '/owner' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-z]+$",
                "Value at '/level' failed to satisfy constraint: Member must satisfy enum value set: [admin, read, write]",
            ]
        );
    }

    #[test]
    fn the_summary_counts_violations_and_paths() {
        let summary = |v: Violations| error_reply(&v.finish().unwrap_err()).1.message;
        let mut one = Violations::default();
        one.required("/appId");
        assert_eq!(
            summary(one),
            "1 validation error detected. Value at '/appId' failed to satisfy constraint: Member must not be null"
        );
        let mut two_at_one = Violations::default();
        two_at_one.text_length("/owner", "-", Some(2), None);
        two_at_one.pattern("/owner", "-", &Pattern::new("^[a-z]+$"));
        assert_eq!(
            summary(two_at_one),
            "2 validation errors at 1 path detected. First failure: Value with length 1 at '/owner' failed to satisfy constraint: Member must have length greater than or equal to 2"
        );
        assert!(Violations::default().finish().is_ok());
    }
}
