//! `NamespaceOffloading` (`offloading.liqo.io/v1beta1`): the request to offload the namespace it
//! lives in, as in Liqo.
//!
//! `liqoctl offload namespace liqo-demo --namespace-mapping-strategy EnforceSameName
//! --pod-offloading-strategy Local` creates or updates the object `liqo-demo/offloading`;
//! `liqoctl unoffload namespace liqo-demo` deletes it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cluster_selector::ClusterSelector;
use super::conditions::{ConditionLike, ConditionStatus};

/// The only accepted name of a `NamespaceOffloading` object (one per namespace).
pub const NAMESPACE_OFFLOADING_NAME: &str = "offloading";

/// Asks the host to offload the namespace this object lives in: a twin namespace is created in
/// every selected peer and the namespace's objects are reflected into it.
// The printer columns repeat `type_`/`priority`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "offloading.liqo.io",
    version = "v1beta1",
    kind = "NamespaceOffloading",
    plural = "namespaceoffloadings",
    namespaced,
    status = "NamespaceOffloadingStatus",
    shortname = "nso",
    shortname = "nsof",
    shortname = "nsoff",
    shortname = "nsoffloading",
    category = "liqo",
    derive = "PartialEq",
    doc = "NamespaceOffloading asks for the namespace it lives in to be offloaded: a twin namespace is created in each selected peered cluster and the namespace's objects are reflected into it. There is one per namespace and it must be named `offloading`.",
    validation = Rule::new("self.metadata.name == 'offloading'")
        .message("metadata.name must be 'offloading': a namespace has at most one NamespaceOffloading, named 'offloading'"),
    printcolumn(
        name = "STRATEGY",
        type_ = "string",
        json_path = ".spec.namespaceMappingStrategy",
        description = "How the remote namespace is named."
    ),
    printcolumn(
        name = "REMOTE NAMESPACE",
        type_ = "string",
        json_path = ".status.remoteNamespaceName",
        description = "The name of the twin namespace in the peers."
    ),
    printcolumn(
        name = "PHASE",
        type_ = "string",
        json_path = ".status.offloadingPhase",
        description = "The offloading state over all selected peers."
    ),
    printcolumn(name = "AGE", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "POD STRATEGY",
        type_ = "string",
        json_path = ".spec.podOffloadingStrategy",
        priority = 1,
        description = "Where the namespace's pods run."
    ),
    printcolumn(
        name = "MESSAGE",
        type_ = "string",
        json_path = ".status.message",
        priority = 1,
        description = "Why the offloading is not Ready (for example a twin namespace name taken by another consumer)."
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.namespaceMappingStrategy != 'SelectedName' || (has(self.remoteNamespaceName) && self.remoteNamespaceName != '')",
        "message": "remoteNamespaceName is required with namespaceMappingStrategy SelectedName; set --remote-namespace-name"
    },
    {
        "rule": "self.namespaceMappingStrategy == oldSelf.namespaceMappingStrategy",
        "message": "namespaceMappingStrategy is immutable: unoffload the namespace (liqoctl unoffload namespace) and offload it again to change it"
    },
    {
        "rule": "(has(self.remoteNamespaceName) ? self.remoteNamespaceName : '') == (has(oldSelf.remoteNamespaceName) ? oldSelf.remoteNamespaceName : '')",
        "message": "remoteNamespaceName is immutable: unoffload the namespace (liqoctl unoffload namespace) and offload it again to change it"
    }
]))]
pub struct NamespaceOffloadingSpec {
    /// How the twin namespace in the peers is named: `EnforceSameName` (the same name, so DNS
    /// names like `svc.ns.svc.cluster.local` work unchanged), `DefaultName` (default:
    /// `<namespace>-<local cluster id>`) or `SelectedName` (`remoteNamespaceName`). Immutable.
    #[serde(default)]
    pub namespace_mapping_strategy: NamespaceMappingStrategy,

    /// The twin namespace name with `SelectedName` (required then, ignored otherwise). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 63),
        regex(pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$")
    )]
    pub remote_namespace_name: Option<String>,

    /// Where the namespace's pods run: `Local` (pods stay in this cluster), `Remote` or
    /// `LocalAndRemote` (default, as in Liqo). Only `Local` is supported: with another value
    /// nothing is offloaded and `status.message` says why.
    #[serde(default)]
    pub pod_offloading_strategy: PodOffloadingStrategy,

    /// Which peers get the namespace: Liqo's `nodeSelectorTerms` (terms ORed, expressions
    /// ANDed) or a label selector, evaluated against each peer's ForeignCluster labels (which
    /// carry the provider's `liqoctl install --cluster-labels`). Absent, empty, or with an
    /// empty `nodeSelectorTerms` list, it selects every peer; a selector the host cannot
    /// evaluate selects none (see docs/multi-provider.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_selector: Option<ClusterSelector>,
}

impl NamespaceOffloadingSpec {
    /// The spec `liqoctl offload namespace` writes with no flags, and that an empty spec defaults
    /// to: `DefaultName`, `LocalAndRemote`, every peer.
    pub fn liqo_defaults() -> Self {
        Self {
            namespace_mapping_strategy: NamespaceMappingStrategy::default(),
            remote_namespace_name: None,
            pod_offloading_strategy: PodOffloadingStrategy::default(),
            cluster_selector: None,
        }
    }
}

/// How the twin namespace is named.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum NamespaceMappingStrategy {
    /// The twin namespace has the same name as the local one.
    EnforceSameName,
    /// The twin namespace is named `<namespace>-<local cluster id>`.
    #[default]
    DefaultName,
    /// The twin namespace is named `spec.remoteNamespaceName`.
    SelectedName,
}

impl NamespaceMappingStrategy {
    /// The strategy as written in YAML and on the `liqoctl` command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EnforceSameName => "EnforceSameName",
            Self::DefaultName => "DefaultName",
            Self::SelectedName => "SelectedName",
        }
    }
}

/// Where the pods of an offloaded namespace run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum PodOffloadingStrategy {
    /// Pods stay in this cluster; only the supporting objects are reflected. The only supported
    /// strategy.
    Local,
    /// Pods run only in the peers (not supported yet).
    Remote,
    /// Pods run in both (Liqo's default; not supported yet).
    #[default]
    LocalAndRemote,
}

impl PodOffloadingStrategy {
    /// The strategy as written in YAML and on the `liqoctl` command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "Local",
            Self::Remote => "Remote",
            Self::LocalAndRemote => "LocalAndRemote",
        }
    }
}

/// The state of the offloading, written by the host.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceOffloadingStatus {
    /// The name of the twin namespace in the peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_namespace_name: Option<String>,

    /// The offloading state over all selected peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offloading_phase: Option<OffloadingPhase>,

    /// Per peer cluster id: whether the peer is selected (`OffloadingRequired`) and whether its
    /// twin namespace is in place (`Ready`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remote_namespaces_conditions: BTreeMap<String, Vec<RemoteNamespaceCondition>>,

    /// The `metadata.generation` the status was computed from; `liqoctl offload` waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// A sentence about the whole object, for example why the pod offloading strategy was
    /// rejected and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The offloading state over all selected peers, as in Liqo.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum OffloadingPhase {
    /// Every selected peer has its twin namespace.
    Ready,
    /// The selector matches no peer (`liqoctl offload` warns and succeeds).
    NoClusterSelected,
    /// Twin namespaces are being created.
    InProgress,
    /// Some selected peers failed.
    SomeFailed,
    /// Every selected peer failed (also used when the spec is rejected).
    AllFailed,
    /// The object is being deleted and the twin namespaces removed.
    Terminating,
}

impl OffloadingPhase {
    /// The phase as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::NoClusterSelected => "NoClusterSelected",
            Self::InProgress => "InProgress",
            Self::SomeFailed => "SomeFailed",
            Self::AllFailed => "AllFailed",
            Self::Terminating => "Terminating",
        }
    }
}

/// The state of the twin namespace in one peer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteNamespaceCondition {
    /// `OffloadingRequired` (the peer is selected), `Ready` (its twin namespace is in place) or
    /// `ReflectionConflicts` (objects that cannot be reflected because the peer has foreign
    /// objects with the same names).
    #[serde(rename = "type")]
    pub type_: RemoteNamespaceConditionType,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A CamelCase word saying why (for example `NamespaceCreated`, `CreationLoopBackOff`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// A human sentence with the details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

impl RemoteNamespaceCondition {
    /// A condition with a reason and a message (the time is set by
    /// [`upsert_condition`](super::conditions::upsert_condition)).
    pub fn new(
        type_: RemoteNamespaceConditionType,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
            last_transition_time: None,
        }
    }
}

impl ConditionLike for RemoteNamespaceCondition {
    fn same_type(&self, other: &Self) -> bool {
        self.type_ == other.type_
    }
    fn same_status(&self, other: &Self) -> bool {
        self.status == other.status
    }
    fn last_transition_time(&self) -> Option<&Time> {
        self.last_transition_time.as_ref()
    }
    fn set_last_transition_time(&mut self, time: Time) {
        self.last_transition_time = Some(time);
    }
}

/// The condition types of a twin namespace, as in Liqo.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum RemoteNamespaceConditionType {
    /// The twin namespace exists in the peer and is ours.
    Ready,
    /// The peer is selected by `spec.clusterSelector`.
    OffloadingRequired,
    /// `True` while objects of this namespace cannot be reflected because an object with the
    /// same name exists in the twin namespace and is not managed by this peering (the message
    /// lists them). Not in Liqo, which reports these only as Events.
    ReflectionConflicts,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::{REASON_NAMESPACE_CREATED, upsert_condition};
    use kube::{CustomResourceExt, Resource};
    use serde_json::json;

    #[test]
    fn resource_identity() {
        assert_eq!(NamespaceOffloading::group(&()), "offloading.liqo.io");
        assert_eq!(NamespaceOffloading::version(&()), "v1beta1");
        assert_eq!(NamespaceOffloading::plural(&()), "namespaceoffloadings");
        assert_eq!(NamespaceOffloading::crd().spec.scope, "Namespaced");
    }

    #[test]
    fn empty_spec_gets_liqo_defaults() {
        let spec: NamespaceOffloadingSpec = serde_json::from_value(json!({})).unwrap();
        assert_eq!(spec, NamespaceOffloadingSpec::liqo_defaults());
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            json!({"namespaceMappingStrategy": "DefaultName", "podOffloadingStrategy": "LocalAndRemote"})
        );
        // The defaults are in the schema too, so the API server fills them in.
        let crd = serde_json::to_value(NamespaceOffloading::crd()).unwrap();
        let props = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"];
        assert_eq!(props["namespaceMappingStrategy"]["default"], "DefaultName");
        assert_eq!(props["podOffloadingStrategy"]["default"], "LocalAndRemote");
        assert_eq!(
            props["namespaceMappingStrategy"]["enum"],
            json!(["EnforceSameName", "DefaultName", "SelectedName"])
        );
    }

    #[test]
    fn round_trips_with_liqo_field_names() {
        let obj = json!({
            "apiVersion": "offloading.liqo.io/v1beta1",
            "kind": "NamespaceOffloading",
            "metadata": {"name": "offloading", "namespace": "liqo-demo"},
            "spec": {
                "namespaceMappingStrategy": "SelectedName",
                "remoteNamespaceName": "demo-remote",
                "podOffloadingStrategy": "Local",
                "clusterSelector": {"matchLabels": {"region": "us"}}
            },
            "status": {
                "remoteNamespaceName": "demo-remote",
                "offloadingPhase": "Ready",
                "remoteNamespacesConditions": {
                    "newyork": [
                        {"type": "OffloadingRequired", "status": "True", "reason": "ClusterSelected"},
                        {"type": "Ready", "status": "True", "reason": "NamespaceCreated",
                         "message": "created", "lastTransitionTime": "2024-01-01T00:00:00Z"}
                    ]
                },
                "observedGeneration": 2,
                "message": "ok"
            }
        });
        let nso: NamespaceOffloading = serde_json::from_value(obj.clone()).unwrap();
        assert_eq!(
            nso.spec.namespace_mapping_strategy,
            NamespaceMappingStrategy::SelectedName
        );
        assert_eq!(
            nso.spec.pod_offloading_strategy,
            PodOffloadingStrategy::Local
        );
        let status = nso.status.as_ref().unwrap();
        assert_eq!(status.offloading_phase, Some(OffloadingPhase::Ready));
        assert_eq!(
            status.remote_namespaces_conditions["newyork"][1].status,
            ConditionStatus::True
        );
        assert_eq!(serde_json::to_value(&nso).unwrap(), obj);
    }

    #[test]
    fn remote_namespace_conditions_upsert() {
        let t = |s| Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap());
        let mut list = Vec::new();
        let ready = |status| {
            RemoteNamespaceCondition::new(
                RemoteNamespaceConditionType::Ready,
                status,
                REASON_NAMESPACE_CREATED,
                "",
            )
        };
        upsert_condition(&mut list, ready(ConditionStatus::True), t(1));
        upsert_condition(&mut list, ready(ConditionStatus::True), t(2));
        assert_eq!(list[0].last_transition_time, Some(t(1)));
        upsert_condition(&mut list, ready(ConditionStatus::False), t(3));
        assert_eq!(list[0].last_transition_time, Some(t(3)));
    }

    #[test]
    fn name_and_immutability_rules_are_in_the_schema() {
        let crd = serde_json::to_value(NamespaceOffloading::crd()).unwrap();
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let rule = &root["x-kubernetes-validations"][0];
        assert_eq!(rule["rule"], "self.metadata.name == 'offloading'");
        assert!(rule["message"].as_str().unwrap().contains("'offloading'"));
        let spec_rules: Vec<&str> = root["properties"]["spec"]["x-kubernetes-validations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule"].as_str().unwrap())
            .collect();
        assert_eq!(spec_rules.len(), 3);
        assert!(spec_rules[0].contains("SelectedName"));
        assert!(spec_rules[1].contains("oldSelf.namespaceMappingStrategy"));
    }

    #[test]
    fn printer_columns() {
        let crd = NamespaceOffloading::crd();
        let columns: Vec<(String, String)> = crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap()
            .into_iter()
            .filter(|c| c.priority.unwrap_or(0) == 0)
            .map(|c| (c.name, c.json_path))
            .collect();
        let expected = [
            ("STRATEGY", ".spec.namespaceMappingStrategy"),
            ("REMOTE NAMESPACE", ".status.remoteNamespaceName"),
            ("PHASE", ".status.offloadingPhase"),
            ("AGE", ".metadata.creationTimestamp"),
        ];
        assert_eq!(
            columns,
            expected.map(|(n, p)| (n.to_string(), p.to_string()))
        );
    }

    #[test]
    fn as_str_matches_serde() {
        for p in [
            OffloadingPhase::Ready,
            OffloadingPhase::NoClusterSelected,
            OffloadingPhase::InProgress,
            OffloadingPhase::SomeFailed,
            OffloadingPhase::AllFailed,
            OffloadingPhase::Terminating,
        ] {
            assert_eq!(serde_json::to_value(p).unwrap(), json!(p.as_str()));
        }
        for s in [
            NamespaceMappingStrategy::EnforceSameName,
            NamespaceMappingStrategy::DefaultName,
            NamespaceMappingStrategy::SelectedName,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        for s in [
            PodOffloadingStrategy::Local,
            PodOffloadingStrategy::Remote,
            PodOffloadingStrategy::LocalAndRemote,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
    }
}
