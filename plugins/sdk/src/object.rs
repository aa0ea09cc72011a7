//! Small helpers to read Kubernetes objects held as `serde_json::Value`.
//!
//! Plugins avoid typed Kubernetes structs on purpose: fields the plugin does not know about
//! must not be invented (a typed struct would serialize defaults), and the component stays small.

use serde_json::{Map, Value};

/// The value at `path` (object keys), if every step exists.
pub fn get_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |current, key| current.get(key))
}

/// The string at `path`, if present and a string.
pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    get_at(value, path).and_then(Value::as_str)
}

/// The JSON object (map) at `path`, if present and an object.
pub fn map_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    get_at(value, path).and_then(Value::as_object)
}

/// `metadata.name`, or an error saying it is missing.
pub fn name(object: &Value) -> Result<&str, String> {
    str_at(object, &["metadata", "name"])
        .filter(|name| !name.is_empty())
        .ok_or_else(|| "the object has no metadata.name".to_owned())
}

/// Moves the value at `path` out of `value`, leaving `null` behind; `null` if absent.
///
/// Transforms take the parts they keep instead of cloning them: no copy, and no map removal
/// (which would add B-tree rebalancing code to the component).
pub fn take_at(value: &mut Value, path: &[&str]) -> Value {
    path.iter()
        .try_fold(value, |current, key| current.get_mut(key))
        .map(Value::take)
        .unwrap_or(Value::Null)
}

/// Moves the JSON object at `path` out of `value`; empty if absent or not an object.
pub fn take_map_at(value: &mut Value, path: &[&str]) -> Map<String, Value> {
    match take_at(value, path) {
        Value::Object(fields) => fields,
        _ => Map::new(),
    }
}

/// The value of one annotation, if present and a string.
pub fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    str_at(object, &["metadata", "annotations", key])
}

/// The value of one label, if present and a string.
pub fn label<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    str_at(object, &["metadata", "labels", key])
}

/// Checks that the object is of the expected kind. Missing `apiVersion`/`kind` are accepted
/// (some clients strip them from list items); present but different values are an error.
pub fn expect_kind(object: &Value, api_version: &str, kind: &str) -> Result<(), String> {
    if !object.is_object() {
        return Err("the object is not a JSON object".to_owned());
    }
    let actual_kind = str_at(object, &["kind"]).unwrap_or(kind);
    let actual_version = str_at(object, &["apiVersion"]).unwrap_or(api_version);
    if actual_kind != kind || actual_version != api_version {
        return Err(format!(
            "expected a {api_version} {kind}, got a {actual_version} {actual_kind}"
        ));
    }
    Ok(())
}

/// Whether a value counts as "not set" for the purpose of emitting it: `null`, `""`, `[]`, `{}`.
/// `false` and `0` are set values (they can differ from the API server's defaults).
pub fn is_unset(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Moves each of `keys` from `source` to `target` when it is set (see [`is_unset`]).
pub fn move_set_fields(
    source: &mut Map<String, Value>,
    target: &mut Map<String, Value>,
    keys: &[&str],
) {
    for key in keys {
        if let Some(value) = source
            .get_mut(*key)
            .map(Value::take)
            .filter(|value| !is_unset(value))
        {
            target.insert((*key).to_owned(), value);
        }
    }
}

/// `map` with only the entries whose key passes `keep`.
pub fn keep_keys(map: Map<String, Value>, keep: impl Fn(&str) -> bool) -> Map<String, Value> {
    // Re-inserting rather than `retain` or `collect()`: both would add code to the component
    // (B-tree rebalancing, a sort) for nothing; the keys arrive sorted.
    let mut kept = Map::new();
    for (key, value) in map {
        if keep(&key) {
            kept.insert(key, value);
        }
    }
    kept
}

/// Parses JSON text that must be an object, naming `what` in the error.
pub fn parse_object(text: &str, what: &str) -> Result<Value, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|error| format!("{what} is not valid JSON: {error}"))?;
    if !value.is_object() {
        return Err(format!("{what} must be a JSON object"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_nested_fields() {
        let mut object = json!({"metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"a": "b"}}});
        assert_eq!(name(&object).unwrap(), "web");
        assert_eq!(label(&object, "app"), Some("web"));
        assert_eq!(annotation(&object, "a"), Some("b"));
        assert!(name(&json!({"metadata": {}})).is_err());
        assert_eq!(
            take_map_at(&mut object, &["metadata", "labels"]),
            json!({"app": "web"}).as_object().cloned().unwrap()
        );
        assert_eq!(
            object,
            json!({"metadata": {"name": "web", "labels": null, "annotations": {"a": "b"}}})
        );
        assert_eq!(take_at(&mut object, &["missing", "path"]), Value::Null);
    }

    #[test]
    fn checks_kind() {
        assert!(
            expect_kind(
                &json!({"apiVersion": "v1", "kind": "Service"}),
                "v1",
                "Service"
            )
            .is_ok()
        );
        assert!(expect_kind(&json!({}), "v1", "Service").is_ok());
        let error =
            expect_kind(&json!({"apiVersion": "v1", "kind": "Pod"}), "v1", "Service").unwrap_err();
        assert_eq!(error, "expected a v1 Service, got a v1 Pod");
        assert!(expect_kind(&json!([]), "v1", "Service").is_err());
    }

    #[test]
    fn moves_only_set_fields() {
        let mut source = json!({"a": "", "b": false, "c": [], "d": 0, "e": null, "f": "x"});
        let mut target = Map::new();
        move_set_fields(
            source.as_object_mut().unwrap(),
            &mut target,
            &["a", "b", "c", "d", "e", "f", "g"],
        );
        assert_eq!(Value::Object(target), json!({"b": false, "d": 0, "f": "x"}));
    }
}
