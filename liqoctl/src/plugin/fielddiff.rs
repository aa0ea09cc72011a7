//! Field-level differences between two JSON values, printed as jq-like paths:
//!
//! ```text
//!   .metadata.labels.tier: "web" -> "api"
//! + .data.extra: "1"
//! - .spec.ports[1]: {"port":81}
//! ```
//!
//! Used by `plugin test --expect` (expected vs actual) and `plugin diff` (remote vs what the
//! plugin would write). Numbers compare by value (`80` equals `80.0`), as the host does.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

/// One difference at a path.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Change {
    /// Present only in the new value.
    Added {
        /// jq-like path (`.metadata.labels.app`).
        path: String,
        /// The new value.
        value: Value,
    },
    /// Present only in the old value.
    Removed {
        /// jq-like path.
        path: String,
        /// The old value.
        value: Value,
    },
    /// Present in both, with different values.
    Changed {
        /// jq-like path.
        path: String,
        /// The old value.
        from: Value,
        /// The new value.
        to: Value,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Added { path, value } => write!(f, "+ {path}: {value}"),
            Self::Removed { path, value } => write!(f, "- {path}: {value}"),
            Self::Changed { path, from, to } => write!(f, "  {path}: {from} -> {to}"),
        }
    }
}

/// Every difference from `old` to `new`, in path order. Objects are compared key by key,
/// arrays index by index (extra elements are added or removed), anything else by value.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut changes = Vec::new();
    walk(&mut String::new(), old, new, &mut changes);
    changes
}

fn walk(path: &mut String, old: &Value, new: &Value, out: &mut Vec<Change>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let len = path.len();
                push_key(path, key);
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => walk(path, x, y, out),
                    (Some(x), None) => out.push(Change::Removed {
                        path: shown(path),
                        value: x.clone(),
                    }),
                    (None, Some(y)) => out.push(Change::Added {
                        path: shown(path),
                        value: y.clone(),
                    }),
                    (None, None) => {}
                }
                path.truncate(len);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                match (a.get(i), b.get(i)) {
                    (Some(x), Some(y)) => walk(path, x, y, out),
                    (Some(x), None) => out.push(Change::Removed {
                        path: shown(path),
                        value: x.clone(),
                    }),
                    (None, Some(y)) => out.push(Change::Added {
                        path: shown(path),
                        value: y.clone(),
                    }),
                    (None, None) => {}
                }
                path.truncate(len);
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        (a, b) if a == b => {}
        (a, b) => out.push(Change::Changed {
            path: shown(path),
            from: a.clone(),
            to: b.clone(),
        }),
    }
}

/// `.` for the root.
fn shown(path: &str) -> String {
    if path.is_empty() {
        ".".into()
    } else {
        path.to_string()
    }
}

/// Appends `.key`, or `["key"]` when the key is not a plain identifier (labels such as
/// `app.kubernetes.io/name`).
fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !key.as_bytes()[0].is_ascii_digit();
    if plain {
        path.push('.');
        path.push_str(key);
    } else {
        path.push_str(&format!("[{}]", Value::String(key.to_string())));
    }
}

/// The part of `actual` that `wanted` talks about: for objects, only the keys of `wanted`
/// (recursively), for arrays element by element; anything else is kept as it is. Used to
/// compare a remote object with an intent while ignoring what the API server added (uid,
/// defaults, allocated addresses).
///
/// Where `wanted` has an empty list or map and `actual` has nothing, the empty value is used:
/// the API server omits empty lists and maps, and the host treats them as equal.
pub fn project(actual: &Value, wanted: &Value) -> Value {
    match (actual, wanted) {
        (Value::Object(a), Value::Object(w)) => {
            let mut out = Map::new();
            for (key, wv) in w {
                match a.get(key) {
                    Some(Value::Null) | None if is_empty(wv) => {
                        out.insert(key.clone(), wv.clone());
                    }
                    Some(av) => {
                        out.insert(key.clone(), project(av, wv));
                    }
                    None => {}
                }
            }
            Value::Object(out)
        }
        (Value::Array(a), Value::Array(w)) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, av)| match w.get(i) {
                    Some(wv) => project(av, wv),
                    None => av.clone(),
                })
                .collect(),
        ),
        (a, _) => a.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Prints changes one per line with `indent`, in the format of the module documentation.
pub fn render(changes: &[Change], indent: &str) -> String {
    let mut out = String::new();
    for change in changes {
        out.push_str(indent);
        out.push_str(&change.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(old: Value, new: Value) -> Vec<String> {
        diff(&old, &new).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn equal_values_have_no_changes() {
        let v = json!({"a": [1, {"b": "c"}], "d": null});
        assert!(diff(&v, &v.clone()).is_empty());
        assert!(diff(&json!({"port": 80}), &json!({"port": 80.0})).is_empty());
    }

    #[test]
    fn changes_additions_and_removals_with_paths() {
        let old = json!({"metadata": {"labels": {"foo": "a", "gone": "x"}}, "data": {"k": "v"}});
        let new = json!({"metadata": {"labels": {"foo": "b", "new": "y"}}, "data": {"k": "v"}});
        assert_eq!(
            lines(old, new),
            [
                r#"  .metadata.labels.foo: "a" -> "b""#,
                r#"- .metadata.labels.gone: "x""#,
                r#"+ .metadata.labels.new: "y""#,
            ]
        );
    }

    #[test]
    fn keys_that_are_not_identifiers_are_quoted() {
        let old = json!({"metadata": {"annotations": {}}});
        let new = json!({"metadata": {"annotations": {"liqo.io/skip-reflection": "true"}}});
        assert_eq!(
            lines(old, new),
            [r#"+ .metadata.annotations["liqo.io/skip-reflection"]: "true""#]
        );
        assert_eq!(
            lines(json!({"1a": 1}), json!({"1a": 2})),
            [r#"  ["1a"]: 1 -> 2"#]
        );
    }

    #[test]
    fn arrays_compare_by_index() {
        let old = json!({"ports": [{"port": 80}, {"port": 81}]});
        let new = json!({"ports": [{"port": 8080}]});
        assert_eq!(
            lines(old, new),
            [
                "  .ports[0].port: 80 -> 8080",
                r#"- .ports[1]: {"port":81}"#
            ]
        );
    }

    #[test]
    fn type_changes_and_root() {
        assert_eq!(
            lines(json!({"a": 1}), json!({"a": "1"})),
            [r#"  .a: 1 -> "1""#]
        );
        assert_eq!(lines(json!(1), json!(2)), ["  .: 1 -> 2"]);
    }

    #[test]
    fn projection_keeps_only_wanted_fields() {
        let remote = json!({
            "metadata": {"name": "s", "uid": "u", "resourceVersion": "7",
                         "labels": {"app": "x", "extra": "y"}},
            "spec": {"clusterIP": "10.0.0.1", "type": "ClusterIP",
                     "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]},
            "status": {"loadBalancer": {}}
        });
        let wanted = json!({
            "metadata": {"name": "s", "labels": {"app": "x"}},
            "spec": {"type": "ClusterIP", "ports": [{"port": 80}], "selector": {}}
        });
        assert_eq!(
            project(&remote, &wanted),
            json!({
                "metadata": {"name": "s", "labels": {"app": "x"}},
                "spec": {"type": "ClusterIP", "ports": [{"port": 80}], "selector": {}}
            })
        );
        assert!(diff(&project(&remote, &wanted), &wanted).is_empty());
    }

    #[test]
    fn projection_shows_what_is_missing_or_different() {
        let remote = json!({"data": {"a": "1"}, "metadata": {"name": "c"}});
        let wanted = json!({"data": {"a": "2", "b": "3"}, "metadata": {"name": "c"}});
        assert_eq!(
            lines(project(&remote, &wanted), wanted),
            [r#"  .data.a: "1" -> "2""#, r#"+ .data.b: "3""#]
        );
        // Extra remote array elements stay visible.
        let remote = json!({"list": [1, 2]});
        let wanted = json!({"list": [1]});
        assert_eq!(lines(project(&remote, &wanted), wanted), ["- .list[1]: 2"]);
    }

    #[test]
    fn render_indents_each_line() {
        let changes = diff(&json!({"a": 1}), &json!({"a": 2, "b": true}));
        assert_eq!(render(&changes, "  "), "    .a: 1 -> 2\n  + .b: true\n");
    }
}
