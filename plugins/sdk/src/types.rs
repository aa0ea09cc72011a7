//! Native mirrors of the records and variants in `wit/reflection.wit` (`interface types`).
//!
//! The component glue of each plugin converts between these and the `wit-bindgen` generated
//! types; everything else (transform logic, tests, the host's native benchmark) uses these.

use serde_json::Value;

/// A cluster taking part in a peering (`types.cluster-identity`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterIdentity {
    /// Stable, unique cluster id (as written in `offloading.liqo.io/origin` labels).
    pub id: String,
    /// Human-friendly name (for example `london`).
    pub name: String,
}

impl ClusterIdentity {
    /// Builds an identity from its id and name.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
        }
    }
}

/// A Kubernetes resource kind (`types.kind-ref`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KindRef {
    /// API group; the empty string for the core group.
    pub group: String,
    /// API version within the group, for example `v1`.
    pub version: String,
    /// Kind, for example `Service`.
    pub kind: String,
    /// Lower-case plural resource name used in URLs, for example `services`.
    pub plural: String,
    /// Whether objects of this kind live in a namespace.
    pub namespaced: bool,
}

impl KindRef {
    /// Builds a kind reference.
    pub fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Self {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            namespaced,
        }
    }

    /// The `apiVersion` string of this kind: `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Well-known kinds used by the built-in plugins.
pub mod kinds {
    use super::KindRef;

    /// Core `v1` `Service` (plural `services`).
    pub fn service() -> KindRef {
        KindRef::new("", "v1", "Service", "services", true)
    }

    /// `discovery.k8s.io/v1` `EndpointSlice` (plural `endpointslices`).
    pub fn endpoint_slice() -> KindRef {
        KindRef::new(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            true,
        )
    }

    /// Core `v1` `Namespace` (cluster-scoped, plural `namespaces`).
    pub fn namespace() -> KindRef {
        KindRef::new("", "v1", "Namespace", "namespaces", false)
    }
}

/// Everything a plugin knows about a reflect call besides the object (`types.reflect-context`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReflectContext {
    /// The cluster the object comes from (the consumer).
    pub local_cluster: ClusterIdentity,
    /// The cluster the object is reflected to (the provider).
    pub remote_cluster: ClusterIdentity,
    /// Namespace of the local object.
    pub local_namespace: String,
    /// Namespace the remote object will be written to (enforced by the host).
    pub remote_namespace: String,
    /// The plugin's configuration as JSON text (`{}` when none was given).
    pub config: String,
}

/// What to do with one local object (`types.decision`), with the object already parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Write this object to the remote cluster with server-side apply.
    Apply(Value),
    /// Do not reflect; the string is a human-readable reason. The host deletes a remote copy.
    Skip(String),
}

impl Decision {
    /// Serializes the decision the way it crosses the WIT boundary (object as JSON text).
    pub fn into_json(self) -> DecisionJson {
        match self {
            Decision::Apply(object) => DecisionJson::Apply(object.to_string()),
            Decision::Skip(reason) => DecisionJson::Skip(reason),
        }
    }

    /// The golden-file form of the decision: the object itself, or `{"skip": reason}`.
    pub fn to_golden(&self) -> Value {
        match self {
            Decision::Apply(object) => object.clone(),
            Decision::Skip(reason) => serde_json::json!({ "skip": reason }),
        }
    }
}

/// A [`Decision`] exactly as the WIT `decision` variant carries it: the object as JSON text.
///
/// `reflect_json` functions return this so that native and wasm calls do the same work
/// (parse the input text, transform, serialize the output text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionJson {
    /// Write this object (JSON text) to the remote cluster.
    Apply(String),
    /// Do not reflect, with a human-readable reason.
    Skip(String),
}

/// The description of a reflector plugin (`types.manifest`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// Plugin name, unique per host (for example `service`).
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// One line for humans: what the plugin does.
    pub description: String,
    /// The kinds this plugin reflects.
    pub reflects: Vec<KindRef>,
    /// Kinds whose changes re-evaluate this plugin's objects in the same namespace.
    pub triggers: Vec<KindRef>,
    /// Kinds the plugin may read with `host.get-object`.
    pub reads: Vec<KindRef>,
    /// Whether `status` is reflected too.
    pub reflect_status: bool,
}

/// The result of mapping a local namespace to its remote twin (`types.namespace-mapping`),
/// with the Namespace object already parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceMapping {
    /// Name of the remote namespace: a valid DNS-1123 label of at most 63 characters.
    pub remote_name: String,
    /// The remote Namespace object.
    pub namespace_object: Value,
}

impl NamespaceMapping {
    /// Serializes the mapping the way it crosses the WIT boundary (object as JSON text).
    pub fn into_json(self) -> NamespaceMappingJson {
        NamespaceMappingJson {
            remote_name: self.remote_name,
            namespace_object: self.namespace_object.to_string(),
        }
    }

    /// The golden-file form: `{"remoteName": ..., "namespaceObject": {...}}`.
    pub fn to_golden(&self) -> Value {
        serde_json::json!({
            "remoteName": self.remote_name,
            "namespaceObject": self.namespace_object,
        })
    }
}

/// A [`NamespaceMapping`] exactly as the WIT `namespace-mapping` record carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceMappingJson {
    /// Name of the remote namespace.
    pub remote_name: String,
    /// The remote Namespace object as JSON text.
    pub namespace_object: String,
}
