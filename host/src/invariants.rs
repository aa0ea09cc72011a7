//! Invariants the host enforces on every object a plugin asks it to write.
//!
//! Plugins are trusted to transform, not to decide where things land or who owns them. After
//! every `reflect` call the host rewrites what a plugin must not control, and rejects what it
//! cannot repair. This module is pure (no IO, no wasmtime) so every rule has a unit test.

use crate::api::wire;
use serde_json::{Map, Value};

/// Metadata fields the API server owns; copying them to another cluster is meaningless at best
/// (uid, resourceVersion) and harmful at worst (ownerReferences to objects that do not exist
/// there, finalizers nobody will remove).
pub const SERVER_OWNED_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "ownerReferences",
    "selfLink",
    "finalizers",
    "generateName",
];

/// What the host knows for certain about the object being reflected.
#[derive(Debug, Clone)]
pub struct Expectation<'a> {
    /// `apiVersion` of the local object; the remote object must keep it.
    pub api_version: &'a str,
    /// `kind` of the local object; the remote object must keep it.
    pub kind: &'a str,
    /// `metadata.name` of the local object; the remote object must keep it, because the host
    /// maps remote objects back to their sources by name.
    pub name: &'a str,
    /// The twin namespace the object must land in.
    pub remote_namespace: &'a str,
    /// Id of this (origin) cluster.
    pub origin_cluster_id: &'a str,
    /// Id of the peer (destination) cluster.
    pub destination_cluster_id: &'a str,
    /// Whether the plugin declared status reflection.
    pub reflect_status: bool,
}

/// Why a plugin's output cannot be written. The message is what users read in Events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOutput {
    /// The output is not JSON at all.
    #[error("output is not valid JSON: {0}")]
    NotJson(String),
    /// The output is JSON but not an object.
    #[error("output is not a JSON object")]
    NotAnObject,
    /// `apiVersion`/`kind` differ from the local object's.
    #[error("output has kind {found}, expected {expected} (plugins may not change the kind)")]
    WrongKind {
        /// What the plugin returned, as `apiVersion/kind`.
        found: String,
        /// What the local object is.
        expected: String,
    },
    /// `metadata.name` is missing or differs from the local object's name.
    #[error(
        "output metadata.name is {found:?}, expected {expected:?} (plugins may not rename objects)"
    )]
    WrongName {
        /// What the plugin returned (empty when missing).
        found: String,
        /// The local object's name.
        expected: String,
    },
    /// A name is not a valid DNS-1123 label.
    #[error("{0}")]
    InvalidName(String),
    /// `metadata` exists but is not an object, or `labels` is not a string map.
    #[error("output metadata is malformed: {0}")]
    MalformedMetadata(&'static str),
}

/// Corrections the host made, reported so tests and logs can show that a plugin tried.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Corrections {
    /// The plugin aimed the object at this namespace; it was replaced by the twin namespace.
    pub namespace_overridden: Option<String>,
    /// The plugin set ownership labels to other values; they were replaced.
    pub ownership_labels_overridden: bool,
    /// Server-owned fields the plugin returned, which were removed.
    pub removed_fields: Vec<String>,
}

/// Parses a plugin's JSON output and enforces every invariant, returning the object to write.
pub fn enforce(
    output: &str,
    expect: &Expectation<'_>,
) -> Result<(Value, Corrections), InvalidOutput> {
    let value: Value =
        serde_json::from_str(output).map_err(|e| InvalidOutput::NotJson(e.to_string()))?;
    enforce_value(value, expect)
}

/// Same as [`enforce`] for an already parsed value.
pub fn enforce_value(
    mut value: Value,
    expect: &Expectation<'_>,
) -> Result<(Value, Corrections), InvalidOutput> {
    let mut corrections = Corrections::default();
    let object = value.as_object_mut().ok_or(InvalidOutput::NotAnObject)?;

    check_kind(object, expect)?;

    let metadata = object
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or(InvalidOutput::MalformedMetadata(
            "metadata is not an object",
        ))?;

    let name = metadata.get("name").and_then(Value::as_str).unwrap_or("");
    if name != expect.name {
        return Err(InvalidOutput::WrongName {
            found: name.to_string(),
            expected: expect.name.to_string(),
        });
    }

    match metadata.get("namespace").and_then(Value::as_str) {
        Some(ns) if ns == expect.remote_namespace => {}
        Some(ns) if !ns.is_empty() => corrections.namespace_overridden = Some(ns.to_string()),
        _ => {}
    }
    metadata.insert(
        "namespace".into(),
        Value::String(expect.remote_namespace.to_string()),
    );

    for field in SERVER_OWNED_METADATA {
        if metadata.remove(*field).is_some() {
            corrections.removed_fields.push(format!("metadata.{field}"));
        }
    }

    let labels = metadata
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if labels.is_null() {
        *labels = Value::Object(Map::new());
    }
    let labels = labels
        .as_object_mut()
        .ok_or(InvalidOutput::MalformedMetadata(
            "metadata.labels is not an object",
        ))?;
    for (key, want) in [
        (wire::ORIGIN, expect.origin_cluster_id),
        (wire::DESTINATION, expect.destination_cluster_id),
    ] {
        if let Some(existing) = labels.get(key)
            && existing.as_str() != Some(want)
        {
            corrections.ownership_labels_overridden = true;
        }
        labels.insert(key.to_string(), Value::String(want.to_string()));
    }

    if !expect.reflect_status && object.remove("status").is_some() {
        corrections.removed_fields.push("status".into());
    }

    Ok((value, corrections))
}

fn check_kind(object: &Map<String, Value>, expect: &Expectation<'_>) -> Result<(), InvalidOutput> {
    let api_version = object.get("apiVersion").and_then(Value::as_str);
    let kind = object.get("kind").and_then(Value::as_str);
    if api_version == Some(expect.api_version) && kind == Some(expect.kind) {
        return Ok(());
    }
    Err(InvalidOutput::WrongKind {
        found: format!(
            "{}/{}",
            api_version.unwrap_or("<none>"),
            kind.unwrap_or("<none>")
        ),
        expected: format!("{}/{}", expect.api_version, expect.kind),
    })
}

/// Enforces the invariants on a remote Namespace returned by the namespace mapper: a valid
/// name equal to the mapping's, kind v1/Namespace, ownership labels, no server-owned fields.
pub fn enforce_namespace(
    output: &str,
    remote_name: &str,
    origin_cluster_id: &str,
    destination_cluster_id: &str,
) -> Result<Value, InvalidOutput> {
    crate::api::names::validate_dns1123_label(remote_name).map_err(InvalidOutput::InvalidName)?;
    let expect = Expectation {
        api_version: "v1",
        kind: "Namespace",
        name: remote_name,
        remote_namespace: "",
        origin_cluster_id,
        destination_cluster_id,
        reflect_status: false,
    };
    let (mut value, _) = enforce(output, &expect)?;
    // Namespaces are cluster-scoped: `enforce` set the (empty) twin namespace; drop it.
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("namespace");
    }
    if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
        // The remote API server owns the `kubernetes` finalizer; never send another's.
        spec.remove("finalizers");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expect() -> Expectation<'static> {
        Expectation {
            api_version: "v1",
            kind: "Service",
            name: "flights-service",
            remote_namespace: "liqo-demo",
            origin_cluster_id: "london",
            destination_cluster_id: "newyork",
            reflect_status: false,
        }
    }

    fn service(extra_meta: Value) -> Value {
        let mut meta = json!({"name": "flights-service"});
        meta.as_object_mut()
            .unwrap()
            .extend(extra_meta.as_object().unwrap().clone());
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {"ports": []}})
    }

    #[test]
    fn sets_namespace_and_ownership_labels() {
        let (out, corr) = enforce_value(service(json!({})), &expect()).unwrap();
        assert_eq!(out["metadata"]["namespace"], "liqo-demo");
        assert_eq!(out["metadata"]["labels"][wire::ORIGIN], "london");
        assert_eq!(out["metadata"]["labels"][wire::DESTINATION], "newyork");
        assert_eq!(corr, Corrections::default());
    }

    #[test]
    fn overrides_a_namespace_chosen_by_the_plugin() {
        let (out, corr) =
            enforce_value(service(json!({"namespace": "kube-system"})), &expect()).unwrap();
        assert_eq!(out["metadata"]["namespace"], "liqo-demo");
        assert_eq!(corr.namespace_overridden.as_deref(), Some("kube-system"));
    }

    #[test]
    fn overrides_forged_ownership_labels_and_keeps_others() {
        let input = service(json!({"labels": {wire::ORIGIN: "evil", "app": "flights"}}));
        let (out, corr) = enforce_value(input, &expect()).unwrap();
        assert_eq!(out["metadata"]["labels"][wire::ORIGIN], "london");
        assert_eq!(out["metadata"]["labels"]["app"], "flights");
        assert!(corr.ownership_labels_overridden);
    }

    #[test]
    fn strips_every_server_owned_field_and_status() {
        let mut input = service(json!({
            "uid": "u", "resourceVersion": "1", "generation": 3,
            "creationTimestamp": "2024-01-01T00:00:00Z", "managedFields": [],
            "ownerReferences": [], "finalizers": ["x"], "selfLink": "/x",
            "deletionTimestamp": "t", "deletionGracePeriodSeconds": 0, "generateName": "g"
        }));
        input["status"] = json!({"loadBalancer": {}});
        let (out, corr) = enforce_value(input, &expect()).unwrap();
        for field in SERVER_OWNED_METADATA {
            assert!(out["metadata"].get(*field).is_none(), "{field} kept");
        }
        assert!(out.get("status").is_none());
        assert_eq!(corr.removed_fields.len(), SERVER_OWNED_METADATA.len() + 1);
    }

    #[test]
    fn keeps_status_when_the_kind_reflects_it() {
        let mut input = service(json!({}));
        input["status"] = json!({"phase": "x"});
        let exp = Expectation {
            reflect_status: true,
            ..expect()
        };
        let (out, _) = enforce_value(input, &exp).unwrap();
        assert_eq!(out["status"]["phase"], "x");
    }

    #[test]
    fn rejects_invalid_outputs() {
        type Check = fn(&InvalidOutput) -> bool;
        let cases: Vec<(&str, Check)> = vec![
            ("not json {", |e| matches!(e, InvalidOutput::NotJson(_))),
            ("[1,2]", |e| matches!(e, InvalidOutput::NotAnObject)),
            (
                r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"flights-service"}}"#,
                |e| matches!(e, InvalidOutput::WrongKind { .. }),
            ),
            (
                r#"{"apiVersion":"v1","kind":"Service","metadata":{}}"#,
                |e| matches!(e, InvalidOutput::WrongName { .. }),
            ),
            (
                r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"other"}}"#,
                |e| matches!(e, InvalidOutput::WrongName { .. }),
            ),
            (
                r#"{"apiVersion":"v1","kind":"Service","metadata":"x"}"#,
                |e| matches!(e, InvalidOutput::MalformedMetadata(_)),
            ),
            (
                r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"flights-service","labels":[]}}"#,
                |e| matches!(e, InvalidOutput::MalformedMetadata(_)),
            ),
        ];
        for (output, check) in cases {
            let err = enforce(output, &expect()).unwrap_err();
            assert!(check(&err), "{output}: unexpected {err:?}");
        }
    }

    #[test]
    fn namespace_output_is_checked_and_labelled() {
        let ok = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"liqo-demo","namespace":"x"}}"#;
        let v = enforce_namespace(ok, "liqo-demo", "london", "newyork").unwrap();
        assert!(v["metadata"].get("namespace").is_none());
        assert_eq!(v["metadata"]["labels"][wire::ORIGIN], "london");
        let bad_name = enforce_namespace(ok, "Liqo_Demo", "london", "newyork").unwrap_err();
        assert!(matches!(bad_name, InvalidOutput::InvalidName(_)));
        let mismatch = enforce_namespace(ok, "other", "london", "newyork").unwrap_err();
        assert!(matches!(mismatch, InvalidOutput::WrongName { .. }));
    }
}
