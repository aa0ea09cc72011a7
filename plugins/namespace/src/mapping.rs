//! `map-namespace`: the remote name and the remote Namespace object.

use liqo_plugin_sdk::keys::{
    DESTINATION_LABEL, ORIGIN_LABEL, REMOTE_NAMESPACE_ORIGIN_NAME_ANNOTATION,
};
use liqo_plugin_sdk::{
    ClusterIdentity, NamespaceMapping, NamespaceMappingJson, object, validate_dns1123_label,
};
use serde_json::{Map, Value};

use crate::strategy::{MappingStrategy, default_name};

/// NamespaceOffloading spec field holding the strategy.
const STRATEGY_FIELD: &str = "namespaceMappingStrategy";
/// NamespaceOffloading spec field holding the name chosen with `SelectedName`.
const REMOTE_NAME_FIELD: &str = "remoteNamespaceName";

/// Maps the local namespace `namespace` for the peering `local` → `remote`.
///
/// `spec` is the NamespaceOffloading `spec`; only `namespaceMappingStrategy` (default
/// `DefaultName`) and `remoteNamespaceName` (required with `SelectedName`, ignored otherwise, as in
/// Liqo) are read. Returns the remote name and the remote Namespace object
/// `{apiVersion: v1, kind: Namespace, metadata: {name, labels: {origin, destination},
/// annotations: {liqo.io/remote-namespace-origin-name: <namespace>}}}`.
///
/// Errors say what to fix: an unknown strategy (listing the valid ones), a missing or invalid
/// `remoteNamespaceName`, an invalid local namespace name, a spec that is not an object.
pub fn map_namespace(
    local: &ClusterIdentity,
    remote: &ClusterIdentity,
    namespace: &str,
    spec: &Value,
) -> Result<NamespaceMapping, String> {
    validate_dns1123_label(namespace)
        .map_err(|reason| format!("invalid local namespace name: {reason}"))?;
    let strategy = strategy(spec)?;
    let remote_name = match strategy {
        MappingStrategy::EnforceSameName => namespace.to_owned(),
        MappingStrategy::DefaultName => default_name(namespace, &local.id),
        MappingStrategy::SelectedName => selected_name(spec)?,
    };
    let namespace_object = namespace_object(&remote_name, local, remote, namespace);
    Ok(NamespaceMapping {
        remote_name,
        namespace_object,
    })
}

/// `{apiVersion: v1, kind: Namespace, metadata: {name, labels, annotations}}`.
///
/// Built field by field rather than with `json!`, whose expansion has an `unwrap` (a panic path
/// that adds the panic machinery to the component).
fn namespace_object(
    remote_name: &str,
    local: &ClusterIdentity,
    remote: &ClusterIdentity,
    namespace: &str,
) -> Value {
    let text = |value: &str| Value::String(value.to_owned());
    let mut labels = Map::new();
    labels.insert(ORIGIN_LABEL.to_owned(), text(&local.id));
    labels.insert(DESTINATION_LABEL.to_owned(), text(&remote.id));
    let mut annotations = Map::new();
    annotations.insert(
        REMOTE_NAMESPACE_ORIGIN_NAME_ANNOTATION.to_owned(),
        text(namespace),
    );
    let mut metadata = Map::new();
    metadata.insert("name".to_owned(), text(remote_name));
    metadata.insert("labels".to_owned(), Value::Object(labels));
    metadata.insert("annotations".to_owned(), Value::Object(annotations));
    let mut object = Map::new();
    object.insert("apiVersion".to_owned(), text("v1"));
    object.insert("kind".to_owned(), text("Namespace"));
    object.insert("metadata".to_owned(), Value::Object(metadata));
    Value::Object(object)
}

/// Exactly what the component's `map-namespace` export does: parses the spec JSON text, maps as
/// [`map_namespace`] does, serializes the Namespace object to JSON text.
pub fn map_namespace_json(
    local: &ClusterIdentity,
    remote: &ClusterIdentity,
    namespace: &str,
    spec: &str,
) -> Result<NamespaceMappingJson, String> {
    let spec = object::parse_object(spec, "the NamespaceOffloading spec")?;
    map_namespace(local, remote, namespace, &spec).map(NamespaceMapping::into_json)
}

fn strategy(spec: &Value) -> Result<MappingStrategy, String> {
    if !spec.is_object() {
        return Err("the NamespaceOffloading spec must be a JSON object".to_owned());
    }
    match spec.get(STRATEGY_FIELD) {
        None | Some(Value::Null) => Ok(MappingStrategy::default()),
        Some(Value::String(name)) => MappingStrategy::parse(name),
        Some(other) => Err(format!("{STRATEGY_FIELD} must be a string, got {other}")),
    }
}

fn selected_name(spec: &Value) -> Result<String, String> {
    let name = match spec.get(REMOTE_NAME_FIELD) {
        None | Some(Value::Null) => "",
        Some(Value::String(name)) => name.as_str(),
        Some(other) => return Err(format!("{REMOTE_NAME_FIELD} must be a string, got {other}")),
    };
    if name.is_empty() {
        return Err(format!(
            "{REMOTE_NAME_FIELD} is required with SelectedName; set --remote-namespace-name"
        ));
    }
    validate_dns1123_label(name).map_err(|reason| {
        format!("invalid {REMOTE_NAME_FIELD}: {reason}; set --remote-namespace-name to a valid namespace name")
    })?;
    Ok(name.to_owned())
}
