//! Label/annotation key filters with glob-ish patterns.
//!
//! A pattern is a key where `*` stands for any run of characters (possibly empty, `/` included):
//! `metallb.universe.tf/*` matches every MetalLB annotation, `*.example.com/owner` every owner key
//! under example.com subdomains. Anything else matches exactly.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// A set of key patterns; a key matching any of them is filtered out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyFilter {
    // `Cow` so the built-in defaults cost no allocation on every call.
    patterns: Vec<Cow<'static, str>>,
}

/// Whether `key` matches `pattern` (`*` = any run of characters).
pub fn glob_matches(pattern: &str, key: &str) -> bool {
    // Works on bytes: `*` is ASCII, so splitting the UTF-8 bytes on it is exact, and byte slices
    // have no char-boundary panic path (which would pull Unicode tables into the component).
    let mut parts = pattern.as_bytes().split(|byte| *byte == b'*');
    // `split` always yields at least one part: the literal before the first `*`.
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = key.as_bytes().strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&[u8]> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*` at all: exact match.
        return rest.is_empty();
    };
    for part in middle {
        // Leftmost match is always safe for the middle literals: a later match only leaves less
        // room for what follows.
        match find(rest, part) {
            Some(end) => rest = rest.get(end..).unwrap_or_default(),
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The index just past the first occurrence of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|start| start + needle.len())
}

impl KeyFilter {
    /// A filter from patterns.
    pub fn new<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            patterns: patterns
                .into_iter()
                .map(|pattern| Cow::Owned(pattern.into()))
                .collect(),
        }
    }

    /// A filter from built-in patterns (no allocation per pattern).
    pub fn from_static(patterns: &'static [&'static str]) -> Self {
        Self {
            patterns: patterns
                .iter()
                .map(|pattern| Cow::Borrowed(*pattern))
                .collect(),
        }
    }

    /// The patterns, in order.
    pub fn patterns(&self) -> &[Cow<'static, str>] {
        &self.patterns
    }

    /// Whether `key` matches any pattern.
    pub fn matches(&self, key: &str) -> bool {
        self.patterns
            .iter()
            .any(|pattern| glob_matches(pattern, key))
    }

    /// `map` without the keys that match.
    pub fn without_matching(&self, map: Map<String, Value>) -> Map<String, Value> {
        crate::object::keep_keys(map, |key| !self.matches(key))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn glob_rules() {
        let cases = [
            ("app", "app", true),
            ("app", "apps", false),
            (
                "metallb.universe.tf/*",
                "metallb.universe.tf/address-pool",
                true,
            ),
            ("metallb.universe.tf/*", "metallb.universe.tf/", true),
            ("metallb.universe.tf/*", "metallb.universe.tfx/a", false),
            ("*.example.com/owner", "team.example.com/owner", true),
            ("*.example.com/owner", "example.com/owner", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxcyyb", false),
            ("a*a", "a", false),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("a**b", "ab", true),
            ("u*", "über", false),
            ("ü*", "über", true),
            ("*é", "café", true),
        ];
        for (pattern, key, expected) in cases {
            assert_eq!(
                glob_matches(pattern, key),
                expected,
                "pattern {pattern:?} key {key:?}"
            );
        }
    }

    #[test]
    fn filters_maps() {
        let filter = KeyFilter::new(["metallb.universe.tf/*", "drop-me"]);
        let map = json!({"metallb.universe.tf/address-pool": "p", "drop-me": "x", "keep": "y"});
        let kept = filter.without_matching(map.as_object().cloned().unwrap());
        assert_eq!(Value::Object(kept), json!({"keep": "y"}));
    }
}
