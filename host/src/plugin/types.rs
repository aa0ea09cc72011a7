//! Host-side types of the plugin contract, independent of the generated bindings so the rest of
//! the host never names a wasmtime type.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::bindings::wit;

/// A Kubernetes resource kind, as declared in a plugin manifest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KindRef {
    /// API group; empty for the core group.
    pub group: String,
    /// API version, for example `v1`.
    pub version: String,
    /// Kind, for example `Service`.
    pub kind: String,
    /// Plural resource name, for example `services`.
    pub plural: String,
    /// Whether the kind is namespaced.
    pub namespaced: bool,
}

impl KindRef {
    /// `apiVersion` as written in objects: `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// True when `self` and `other` name the same group, version and kind.
    pub fn same_kind(&self, other: &KindRef) -> bool {
        self.group == other.group && self.version == other.version && self.kind == other.kind
    }
}

impl fmt::Display for KindRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.api_version(), self.kind)
    }
}

impl From<wit::KindRef> for KindRef {
    fn from(k: wit::KindRef) -> Self {
        Self {
            group: k.group,
            version: k.version,
            kind: k.kind,
            plural: k.plural,
            namespaced: k.namespaced,
        }
    }
}

impl From<&KindRef> for wit::KindRef {
    fn from(k: &KindRef) -> Self {
        Self {
            group: k.group.clone(),
            version: k.version.clone(),
            kind: k.kind.clone(),
            plural: k.plural.clone(),
            namespaced: k.namespaced,
        }
    }
}

/// A cluster taking part in a peering (defined with the wire contract; re-exported here
/// because plugins receive it in every call).
pub use crate::api::identity::ClusterIdentity;

impl From<&ClusterIdentity> for wit::ClusterIdentity {
    fn from(c: &ClusterIdentity) -> Self {
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
        }
    }
}

/// What a reflector plugin declares about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// One line for humans.
    pub description: String,
    /// Kinds it reflects.
    pub reflects: Vec<KindRef>,
    /// Kinds whose changes re-evaluate its objects.
    pub triggers: Vec<KindRef>,
    /// Kinds it may read from the host cache.
    pub reads: Vec<KindRef>,
    /// Whether `status` is reflected.
    pub reflect_status: bool,
}

impl From<wit::Manifest> for Manifest {
    fn from(m: wit::Manifest) -> Self {
        Self {
            name: m.name,
            version: m.version,
            description: m.description,
            reflects: m.reflects.into_iter().map(Into::into).collect(),
            triggers: m.triggers.into_iter().map(Into::into).collect(),
            reads: m.reads.into_iter().map(Into::into).collect(),
            reflect_status: m.reflect_status,
        }
    }
}

impl Manifest {
    /// Checks what the host relies on: a usable name, at least one reflected kind, every kind
    /// complete and namespaced.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(format!(
                "name {:?} must be non-empty lower-case letters, digits and '-'",
                self.name
            ));
        }
        if self.reflects.is_empty() {
            return Err("reflects no kind; declare at least one in `reflects`".into());
        }
        for (field, kinds) in [
            ("reflects", &self.reflects),
            ("triggers", &self.triggers),
            ("reads", &self.reads),
        ] {
            for k in kinds {
                if k.version.is_empty() || k.kind.is_empty() || k.plural.is_empty() {
                    return Err(format!(
                        "{field} has an incomplete kind {k:?}: version, kind and plural are required"
                    ));
                }
            }
        }
        if let Some(k) = self.reflects.iter().find(|k| !k.namespaced) {
            return Err(format!(
                "reflects cluster-scoped kind {k}; only namespaced kinds can be reflected"
            ));
        }
        Ok(())
    }
}

/// The result of mapping a local namespace to its remote twin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceMapping {
    /// Remote namespace name.
    pub remote_name: String,
    /// Remote Namespace object, with ownership labels added by the host.
    pub namespace_object: Value,
}

/// Identifies the object a call is about, for errors, logs and invariants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// `apiVersion` of the object.
    pub api_version: String,
    /// `kind` of the object.
    pub kind: String,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
}

impl ObjectRef {
    /// Reads the identity from an object as the API serves it.
    pub fn from_object(object: &Value) -> Option<Self> {
        let s = |ptr: &str| {
            object
                .pointer(ptr)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Some(Self {
            api_version: s("/apiVersion")?,
            kind: s("/kind")?,
            namespace: s("/metadata/namespace").unwrap_or_default(),
            name: s("/metadata/name")?,
        })
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// What the host should do with one local object, after invariants were enforced.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Write this object to the remote cluster.
    Apply(Value),
    /// Do not reflect it (and delete an owned remote copy); the reason is for humans.
    Skip(String),
}
