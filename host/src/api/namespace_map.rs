//! `NamespaceMap` (`virtualkubelet.liqo.io/v1beta1`): how a consumer asks a provider for twin
//! namespaces, as in Liqo.
//!
//! A consumer's peering identity holds no cluster-scoped permission on the provider: it cannot
//! create, label or delete namespaces. Instead its host writes `spec.desiredMapping` (local
//! namespace → twin namespace name) of the one NamespaceMap in its tenant namespace, and the
//! provider's host creates the twin namespaces, labels them, binds the identity inside them,
//! bounds them with a ResourceQuota, and reports each one in `status.currentMapping`; removing an
//! entry makes the provider delete that twin namespace (see `crate::twins`).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only NamespaceMap of a tenant: `liqoctl generate peer-command` creates it, and the
/// identity's Role lets it get, update and patch that name only.
pub const NAMESPACE_MAP_NAME: &str = "liqo-namespaces";

/// The twin namespaces a consumer asks of this cluster (spec, written by the consumer) and
/// what this cluster made of them (status, written by this cluster's host).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "virtualkubelet.liqo.io",
    version = "v1beta1",
    kind = "NamespaceMap",
    plural = "namespacemaps",
    namespaced,
    status = "NamespaceMapStatus",
    shortname = "nm",
    category = "liqo",
    derive = "PartialEq",
    derive = "Default",
    doc = "NamespaceMap holds the twin namespaces a consumer asks of this cluster (spec.desiredMapping) and what this cluster's host made of them (status.currentMapping). It lives in the consumer's tenant namespace; the consumer's peering identity may write its spec, never namespaces."
)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceMapSpec {
    /// Local namespace (in the consumer) → twin namespace name (in this cluster).
    #[serde(default)]
    #[schemars(extend("maxProperties" = 256))]
    pub desired_mapping: BTreeMap<String, String>,
}

/// What the provider made of each requested twin namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceMapStatus {
    /// Local namespace (in the consumer) → the state of its twin namespace here.
    #[serde(default)]
    pub current_mapping: BTreeMap<String, RemoteNamespaceStatus>,
    /// This cluster's labels (`liqoctl install --cluster-labels`): the consumer's host puts
    /// them on its ForeignCluster for this cluster, where `clusterSelector` matches them.
    /// Absent from a provider too old to publish them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_labels: Option<BTreeMap<String, String>>,
}

/// The state of one twin namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteNamespaceStatus {
    /// The twin namespace's name in this cluster.
    pub remote_namespace: String,
    /// `Accepted` (created, bound: the consumer may reflect into it), `CreationLoopBackOff`
    /// (refused or failed: see `reason` and `message`) or `Terminating` (being deleted).
    pub phase: MappingPhase,
    /// Why, in one word (`NamespaceCreated`, `NamespaceConflict`, `ReservedName`,
    /// `NamespaceLimit`, `InvalidName`, `Terminating`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// What happened and, when refused, what the consumer's user can do.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The phase of one twin namespace, Liqo's names.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum MappingPhase {
    /// Created and bound; reflection may start.
    Accepted,
    /// Not created: refused or failed.
    #[default]
    CreationLoopBackOff,
    /// Being deleted.
    Terminating,
}

/// Reasons in [`RemoteNamespaceStatus::reason`].
pub mod reasons {
    /// The twin namespace exists and the consumer may reflect into it.
    pub const CREATED: &str = "NamespaceCreated";
    /// The name is taken here by a namespace this peering did not create.
    pub const CONFLICT: &str = "NamespaceConflict";
    /// The name is one of this cluster's system or liqo namespaces.
    pub const RESERVED: &str = "ReservedName";
    /// The consumer already has as many twin namespaces as this cluster allows.
    pub const LIMIT: &str = "NamespaceLimit";
    /// The name is not a valid namespace name.
    pub const INVALID: &str = "InvalidName";
    /// The twin namespace is being deleted.
    pub const TERMINATING: &str = "Terminating";
    /// An API request of the provider's host failed; retried.
    pub const ERROR: &str = "Error";
    /// Event reason: some endpoint ranges the consumer declared overlap this cluster's own
    /// (see [`crate::protocol::endpoint_ranges`]); its EndpointSlices may not point there.
    pub const RANGES_REFUSED: &str = "EndpointRangesRefused";
}
