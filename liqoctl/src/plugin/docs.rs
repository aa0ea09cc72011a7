//! Reading objects from files: YAML streams (`---` separated documents) or JSON, with errors
//! that name the file and the line; and printing them the way kubectl does.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use serde::Deserialize;
use serde_json::Value;

/// Reads a file (or stdin for `-`) and parses every YAML document in it. JSON is YAML, so a
/// JSON file is one document. Empty documents (a trailing `---`) are dropped.
pub fn read_documents(path: &Path) -> Result<Vec<Value>> {
    let text = read_text(path)?;
    parse_documents(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Reads a whole file, or stdin for `-`.
pub fn read_text(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("reading standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Parses a YAML stream into JSON values. The error says which line is wrong and why, in one
/// sentence.
pub fn parse_documents(text: &str) -> std::result::Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| {
            // A file that looks like JSON gets the JSON parser's diagnosis: the YAML parser's
            // ("while parsing a flow node") means little to someone who wrote JSON.
            if text.trim_start().starts_with(['{', '['])
                && let Err(json) = serde_json::from_str::<Value>(text)
            {
                return format!(
                    "invalid JSON at line {}, column {}: {}",
                    json.line(),
                    json.column(),
                    json.to_string().replacen(
                        &format!(" at line {} column {}", json.line(), json.column()),
                        "",
                        1
                    )
                );
            }
            yaml_error(&e)
        })?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// `invalid YAML at line L, column C: <problem>` (serde_yaml_ng appends the position to its
/// message; it is moved to the front so that the line is the first thing users read).
fn yaml_error(err: &serde_yaml_ng::Error) -> String {
    let message = err.to_string();
    match err.location() {
        Some(location) => {
            let suffix = format!(" at line {} column {}", location.line(), location.column());
            let problem = message.replacen(&suffix, "", 1);
            format!(
                "invalid YAML at line {}, column {}: {problem}",
                location.line(),
                location.column()
            )
        }
        None => format!("invalid YAML: {message}"),
    }
}

/// The Kubernetes objects of a file: every document, with `kind: List` documents (as printed
/// by `kubectl get -o yaml`) expanded into their items. Each must have `apiVersion`, `kind` and
/// `metadata.name`; the error names the file and the document.
pub fn read_objects(path: &Path) -> Result<Vec<Value>> {
    let docs = read_documents(path)?;
    let mut objects = Vec::new();
    for (index, doc) in docs.into_iter().enumerate() {
        // `kubectl get -o yaml` prints a `List` (typed lists such as `ConfigMapList` too).
        let is_list = doc.get("items").is_some_and(Value::is_array)
            && doc
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"));
        let items = if is_list {
            match doc.get("items") {
                Some(Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            }
        } else {
            vec![doc]
        };
        for item in items {
            if let Err(problem) = check_object(&item) {
                bail!("{}: document {}: {problem}", path.display(), index + 1);
            }
            objects.push(item);
        }
    }
    Ok(objects)
}

/// Checks that a value looks like a Kubernetes object.
fn check_object(value: &Value) -> std::result::Result<(), String> {
    if !value.is_object() {
        return Err(
            "is not a Kubernetes object (a mapping with apiVersion, kind and metadata)".into(),
        );
    }
    let missing: Vec<&str> = [
        ("/apiVersion", "apiVersion"),
        ("/kind", "kind"),
        ("/metadata/name", "metadata.name"),
    ]
    .into_iter()
    .filter(|(pointer, _)| {
        value
            .pointer(pointer)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    })
    .map(|(_, name)| name)
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "is not a Kubernetes object: {} missing",
            missing.join(", ")
        ))
    }
}

/// `apiVersion/kind namespace/name` of an object, for messages.
pub fn describe(object: &Value) -> String {
    let s = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("");
    let ns = s("/metadata/namespace");
    let name = s("/metadata/name");
    if ns.is_empty() {
        format!("{} {name}", s("/kind"))
    } else {
        format!("{} {ns}/{name}", s("/kind"))
    }
}

/// The object as a YAML value with kubectl's key order: `apiVersion`, `kind`, `metadata`
/// (`name`, `namespace` first), then the other fields; nested maps sorted by key.
pub fn kube_ordered(value: &Value) -> serde_yaml_ng::Value {
    ordered(value, &["apiVersion", "kind", "metadata"], true)
}

fn ordered(value: &Value, first: &[&str], top: bool) -> serde_yaml_ng::Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| {
                (
                    first.iter().position(|f| f == k).unwrap_or(first.len()),
                    (*k).clone(),
                )
            });
            keys.into_iter()
                .map(|k| {
                    let child = if top && k == "metadata" {
                        ordered(
                            &map[k],
                            &["name", "namespace", "labels", "annotations"],
                            false,
                        )
                    } else {
                        ordered(&map[k], &[], false)
                    };
                    (serde_yaml_ng::Value::String(k.clone()), child)
                })
                .collect::<serde_yaml_ng::Mapping>()
                .into()
        }
        Value::Array(items) => {
            serde_yaml_ng::Value::Sequence(items.iter().map(|v| ordered(v, &[], false)).collect())
        }
        other => serde_yaml_ng::to_value(other).unwrap_or(serde_yaml_ng::Value::Null),
    }
}

/// The object as YAML text in kubectl's key order.
pub fn to_yaml(value: &Value) -> String {
    serde_yaml_ng::to_string(&kube_ordered(value)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_streams_and_json() {
        let docs = parse_documents("a: 1\n---\nb: 2\n---\n").unwrap();
        assert_eq!(docs, vec![json!({"a": 1}), json!({"b": 2})]);
        let docs = parse_documents(r#"{"apiVersion": "v1", "kind": "ConfigMap"}"#).unwrap();
        assert_eq!(docs, vec![json!({"apiVersion": "v1", "kind": "ConfigMap"})]);
        assert!(parse_documents("").unwrap().is_empty());
    }

    #[test]
    fn malformed_yaml_names_the_line_first() {
        let err = parse_documents("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [a\n")
            .unwrap_err();
        assert!(err.starts_with("invalid YAML at line "), "{err}");
        assert!(
            !err.contains(" at line 5 column"),
            "position only once: {err}"
        );
        let err = parse_documents("a: [1\n").unwrap_err();
        assert_eq!(err.matches("at line 2").count(), 1, "{err}");
        let err = parse_documents("a: 1\nb: c: d\n").unwrap_err();
        assert!(err.starts_with("invalid YAML at line 2, column "), "{err}");
    }

    #[test]
    fn malformed_json_gets_a_json_message() {
        let err = parse_documents("{\"apiVersion\": \"v1\",\n").unwrap_err();
        assert!(
            err.starts_with("invalid JSON at line 2, column 0: EOF"),
            "{err}"
        );
        // JSON that is fine stays parsed as YAML (JSON is YAML).
        assert_eq!(
            parse_documents("{\"a\": [1]}").unwrap(),
            vec![json!({"a": [1]})]
        );
    }

    #[test]
    fn objects_need_identity() {
        assert!(
            check_object(
                &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
            )
            .is_ok()
        );
        let err = check_object(&json!({"kind": "ConfigMap", "metadata": {}})).unwrap_err();
        assert!(err.contains("apiVersion, metadata.name missing"), "{err}");
        assert!(check_object(&json!("text")).is_err());
    }

    #[test]
    fn yaml_output_uses_kubectl_order() {
        let v = json!({"spec": {"b": 1, "a": 2}, "metadata": {"labels": {"x": "y"}, "namespace": "n", "name": "o"}, "kind": "K", "apiVersion": "v1"});
        assert_eq!(
            to_yaml(&v),
            "apiVersion: v1\nkind: K\nmetadata:\n  name: o\n  namespace: n\n  labels:\n    x: y\nspec:\n  a: 2\n  b: 1\n"
        );
    }
}
