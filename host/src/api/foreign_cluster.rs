//! `ForeignCluster` (`core.liqo.io/v1beta1`): one object per peered cluster.
//!
//! The spec says who the peer is and how to reach it; the status is written by the host and is
//! what `kubectl get foreignclusters` shows, with the columns of Liqo v0.x:
//!
//! ```text
//! NAME      OUTGOING PEERING   INCOMING PEERING   NETWORKING    AUTHENTICATION   AGE
//! newyork   Established        None               Established   Established      61s
//! ```

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::{ConditionLike, upsert_condition};

/// Key of a credentials Secret holding a complete kubeconfig for the peer.
pub const CREDENTIALS_KEY_KUBECONFIG: &str = "kubeconfig";
/// Key of a credentials Secret holding a bearer token (used with [`CREDENTIALS_KEY_CA`] and
/// [`CREDENTIALS_KEY_SERVER`] when there is no kubeconfig).
pub const CREDENTIALS_KEY_TOKEN: &str = "token";
/// Key of a credentials Secret holding the peer API server's CA bundle (PEM).
pub const CREDENTIALS_KEY_CA: &str = "ca.crt";
/// Key of a credentials Secret holding the peer API server URL.
pub const CREDENTIALS_KEY_SERVER: &str = "server";

/// A peered cluster: who it is, how to reach its API server, and how its network sees ours.
///
/// The object is cluster-scoped and usually named after the peer (for example `newyork`).
/// `liqoctl peer out-of-band` creates it; `liqoctl unpeer out-of-band` deletes it.
// The printer columns repeat `type_`/`priority`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "core.liqo.io",
    version = "v1beta1",
    kind = "ForeignCluster",
    plural = "foreignclusters",
    status = "ForeignClusterStatus",
    shortname = "fc",
    category = "liqo",
    derive = "PartialEq",
    doc = "ForeignCluster is a peered cluster: its identity, how to reach its API server with a scoped credential, how its network sees this cluster, and (in status) the state of each part of the peering.",
    printcolumn(
        name = "OUTGOING PEERING",
        type_ = "string",
        json_path = ".status.peeringConditions[?(@.type==\"OutgoingPeering\")].status",
        description = "Whether this cluster reflects objects to the peer."
    ),
    printcolumn(
        name = "INCOMING PEERING",
        type_ = "string",
        json_path = ".status.peeringConditions[?(@.type==\"IncomingPeering\")].status",
        description = "Whether the peer reflects objects to this cluster."
    ),
    printcolumn(
        name = "NETWORKING",
        type_ = "string",
        json_path = ".status.peeringConditions[?(@.type==\"NetworkStatus\")].status",
        description = "Whether the address translation towards the peer is in place."
    ),
    printcolumn(
        name = "AUTHENTICATION",
        type_ = "string",
        json_path = ".status.peeringConditions[?(@.type==\"AuthenticationStatus\")].status",
        description = "Whether the peering credential is accepted by the peer."
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "ROLE",
        type_ = "string",
        json_path = ".status.role",
        priority = 1,
        description = "The peer's role for this cluster (Liqo v1's column): Provider, Consumer, ConsumerAndProvider."
    ),
    printcolumn(
        name = "CLUSTER ID",
        type_ = "string",
        json_path = ".spec.clusterID",
        priority = 1,
        description = "The peer's cluster id."
    ),
    printcolumn(
        name = "API SERVER",
        type_ = "string",
        json_path = ".status.peeringConditions[?(@.type==\"APIServerStatus\")].status",
        priority = 1,
        description = "Whether the peer's API server answers."
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ForeignClusterSpec {
    /// The peer's cluster id, as in its `liqo/liqo-clusterid-configmap` ConfigMap. It becomes
    /// the value of the `offloading.liqo.io/destination` label on every object reflected to the
    /// peer, so it must be a valid label value. Immutable.
    #[serde(rename = "clusterID")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"),
        extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "clusterID is immutable: unpeer and peer again to change it"}])
    )]
    pub cluster_id: String,

    /// A human-friendly name of the peer, for display only (defaults to the object name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,

    /// URL of the peer's API server (`https://host:port`). When absent, the `server` of the
    /// credentials Secret is used.
    #[serde(
        rename = "apiServerURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub api_server_url: Option<String>,

    /// The Secret holding the credential this cluster uses on the peer: either the key
    /// `kubeconfig` (a complete kubeconfig), or the keys `token`, `ca.crt` and `server`. The
    /// credential is scoped on the peer to what reflection needs. Credentials never appear in
    /// status or logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretReference>,

    /// How addresses of this cluster are seen from the peer, or (`Gateway`) that traffic to
    /// Services goes through the peers' gateways. Absent means `Identity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<NetworkingSpec>,
}

/// A reference to a Secret by name and namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Secret (usually `liqo`).
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
}

/// How the peer's network sees this cluster's addresses (used to translate endpoint IPs).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.addressTranslation != 'CidrRemap' || (has(self.remapping) && size(self.remapping) > 0)",
        "message": "remapping must list at least one CIDR pair when addressTranslation is CidrRemap"
    },
    {
        "rule": "self.addressTranslation != 'Gateway' || has(self.gateway)",
        "message": "gateway (the peer gateway's fingerprint and endpoint) is required when addressTranslation is Gateway: peer again with the command `liqoctl generate peer-command` prints on the peer, or set addressTranslation to Identity"
    }
]))]
pub struct NetworkingSpec {
    /// `Identity` (default): the peer reaches this cluster's pod IPs unchanged. `CidrRemap`:
    /// the peer sees this cluster's ranges through the CIDRs in `remapping`. `Gateway`: traffic
    /// to this cluster's Services goes through the peers' gateways (see `gateway`).
    #[serde(default)]
    pub address_translation: AddressTranslation,
    /// With `CidrRemap`: each range of this cluster and the range the peer sees it as.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub remapping: Vec<CidrMapping>,
    /// With `Gateway`: the peer's gateway, as its peer command announced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewaySpec>,
}

/// The peer's gateway: the certificate it must present and where, inside the peer, its clients
/// reach it. Both come from the peer command printed by `liqoctl generate peer-command` on the
/// peer (an out-of-band, trusted channel); nothing in it is secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// SHA-256 fingerprint of the peer gateway's certificate (64 hex digits, as printed by
    /// `liqoctl generate peer-command`); the only certificate accepted from it.
    #[schemars(length(min = 64, max = 64), regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    pub fingerprint: String,
    /// `IP:PORT` inside the peer cluster where its gateway accepts connections for reflected
    /// Services; reflected EndpointSlices point there. IPv6 addresses are in brackets
    /// (`[fd00::5]:7901`).
    #[schemars(
        length(min = 7, max = 64),
        regex(pattern = r"^([0-9]{1,3}(\.[0-9]{1,3}){3}|\[[0-9a-fA-F:.]+\]):[0-9]{1,5}$")
    )]
    pub endpoint: String,
}

/// How addresses of this cluster are translated for the peer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum AddressTranslation {
    /// Addresses are the same on both sides (flat network, or a shared overlay).
    #[default]
    Identity,
    /// Addresses are remapped CIDR to CIDR, keeping the host part (as Liqo's external CIDRs).
    CidrRemap,
    /// Traffic to this peer's Services goes through the peers' gateways; addresses of this
    /// cluster are never routed. Needs [`NetworkingSpec::gateway`].
    Gateway,
}

/// One remapped range: `localCIDR` of this cluster is seen from the peer as `remoteCIDR`.
/// Both must have the same prefix length.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct CidrMapping {
    /// A CIDR of this cluster (for example its pod CIDR `10.244.0.0/16`).
    #[serde(rename = "localCIDR")]
    #[schemars(length(min = 1, max = 64))]
    pub local_cidr: String,
    /// The same range as the peer sees it (for example `10.70.0.0/16`).
    #[serde(rename = "remoteCIDR")]
    #[schemars(length(min = 1, max = 64))]
    pub remote_cidr: String,
}

/// The state of the peering, written by the host.
///
/// The host always writes all five peering conditions, with status `None` for a part that is
/// not set up: `kubectl get foreignclusters` prints an empty cell for a missing condition, while
/// Liqo users expect `None`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForeignClusterStatus {
    /// The role of the peer for this cluster: `Provider` when this cluster reflects objects to
    /// it, `Consumer` when it reflects objects here, `ConsumerAndProvider` for both, `Unknown`
    /// before the host has looked.
    #[serde(default)]
    pub role: PeeringRole,

    /// One condition per part of the peering, keyed by `type`. The host keeps all five present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub peering_conditions: Vec<PeeringCondition>,

    /// The tenant namespaces of this peering, in this cluster and in the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_namespace: Option<TenantNamespace>,

    /// The `metadata.generation` the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl ForeignClusterStatus {
    /// The condition of type `type_`, if present.
    pub fn condition(&self, type_: PeeringConditionType) -> Option<&PeeringCondition> {
        self.peering_conditions.iter().find(|c| c.type_ == type_)
    }

    /// The status of the condition of type `type_` (`None` when the condition is missing).
    pub fn condition_status(&self, type_: PeeringConditionType) -> PeeringConditionStatus {
        self.condition(type_)
            .map(|c| c.status)
            .unwrap_or(PeeringConditionStatus::None)
    }

    /// Sets a condition (see [`upsert_condition`] for `lastTransitionTime`); returns whether the
    /// status changed.
    pub fn set_condition(&mut self, condition: PeeringCondition, now: Time) -> bool {
        upsert_condition(&mut self.peering_conditions, condition, now)
    }

    /// Adds a `None` condition for every [`PeeringConditionType`] that is missing, so that every
    /// printer column shows a value (a missing condition prints an empty cell). The host calls it
    /// before every status write. Returns whether anything was added.
    pub fn ensure_all_conditions(&mut self, now: Time) -> bool {
        let mut changed = false;
        for type_ in PeeringConditionType::ALL {
            if self.condition(type_).is_none() {
                changed |= self.set_condition(
                    PeeringCondition::new(type_, PeeringConditionStatus::None),
                    now.clone(),
                );
            }
        }
        changed
    }
}

/// The role of a peer, as in Liqo.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum PeeringRole {
    /// The peer reflects objects into this cluster.
    Consumer,
    /// This cluster reflects objects into the peer.
    Provider,
    /// Both directions are active.
    ConsumerAndProvider,
    /// Not determined yet.
    #[default]
    Unknown,
}

impl PeeringRole {
    /// The role a peer has from the two peering conditions of `status`.
    pub fn of(status: &ForeignClusterStatus) -> Self {
        let established = |t| status.condition_status(t) == PeeringConditionStatus::Established;
        match (
            established(PeeringConditionType::OutgoingPeering),
            established(PeeringConditionType::IncomingPeering),
        ) {
            (true, true) => PeeringRole::ConsumerAndProvider,
            (true, false) => PeeringRole::Provider,
            (false, true) => PeeringRole::Consumer,
            (false, false) => PeeringRole::Unknown,
        }
    }
}

/// One part of a peering and its state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeeringCondition {
    /// Which part of the peering: `OutgoingPeering`, `IncomingPeering`, `NetworkStatus`,
    /// `AuthenticationStatus` or `APIServerStatus`.
    #[serde(rename = "type")]
    pub type_: PeeringConditionType,
    /// The state of that part: `None`, `Pending`, `Established`, `Disconnecting`, `Denied`,
    /// `Error` or `External`.
    pub status: PeeringConditionStatus,
    /// A CamelCase word saying why the status is what it is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// A human sentence with the details (what failed and what to do).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

impl PeeringCondition {
    /// A condition with no reason, message or time (set by [`upsert_condition`]).
    pub fn new(type_: PeeringConditionType, status: PeeringConditionStatus) -> Self {
        Self {
            type_,
            status,
            reason: String::new(),
            message: String::new(),
            last_transition_time: None,
        }
    }

    /// Sets the reason and the message.
    pub fn with_reason(mut self, reason: impl Into<String>, message: impl Into<String>) -> Self {
        self.reason = reason.into();
        self.message = message.into();
        self
    }
}

impl ConditionLike for PeeringCondition {
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

/// The parts of a peering, as in Liqo v0.x `peeringConditions`.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum PeeringConditionType {
    /// This cluster reflects objects to the peer (column `OUTGOING PEERING`).
    OutgoingPeering,
    /// The peer reflects objects to this cluster (column `INCOMING PEERING`).
    IncomingPeering,
    /// Address translation towards the peer (column `NETWORKING`).
    NetworkStatus,
    /// The peering credential (column `AUTHENTICATION`).
    AuthenticationStatus,
    /// Reachability of the peer's API server (wide column `API SERVER`).
    #[serde(rename = "APIServerStatus")]
    ApiServerStatus,
}

impl PeeringConditionType {
    /// Every condition type, in column order.
    pub const ALL: [Self; 5] = [
        Self::OutgoingPeering,
        Self::IncomingPeering,
        Self::NetworkStatus,
        Self::AuthenticationStatus,
        Self::ApiServerStatus,
    ];

    /// The type as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutgoingPeering => "OutgoingPeering",
            Self::IncomingPeering => "IncomingPeering",
            Self::NetworkStatus => "NetworkStatus",
            Self::AuthenticationStatus => "AuthenticationStatus",
            Self::ApiServerStatus => "APIServerStatus",
        }
    }
}

/// The state of one part of a peering, as in Liqo v0.x.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum PeeringConditionStatus {
    /// Not set up (and not requested).
    #[default]
    None,
    /// Requested, not yet in place.
    Pending,
    /// In place and working.
    Established,
    /// Being torn down.
    Disconnecting,
    /// Refused by the peer (for example a revoked or expired credential).
    Denied,
    /// Failed; the condition message says why.
    Error,
    /// Managed by something other than this host.
    External,
}

impl PeeringConditionStatus {
    /// The status as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Pending => "Pending",
            Self::Established => "Established",
            Self::Disconnecting => "Disconnecting",
            Self::Denied => "Denied",
            Self::Error => "Error",
            Self::External => "External",
        }
    }
}

/// The tenant namespaces of a peering.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct TenantNamespace {
    /// The tenant namespace in this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    /// The tenant namespace in the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

/// The kubeconfig (YAML or JSON text) a peering credential Secret stands for, from the
/// Secret's `data`: its [`CREDENTIALS_KEY_KUBECONFIG`] entry, or else a kubeconfig built from
/// [`CREDENTIALS_KEY_TOKEN`], [`CREDENTIALS_KEY_CA`] and [`CREDENTIALS_KEY_SERVER`] (what
/// `liqoctl peer out-of-band` writes). The error names the keys that are needed.
///
/// The result holds the credential: never log or print it. Tools that must reach a peer with
/// the host's own credential (`liqoctl plugin diff`) build their client from it.
pub fn credential_kubeconfig(
    data: &std::collections::BTreeMap<String, k8s_openapi::ByteString>,
) -> Result<String, String> {
    let text = |key: &str| {
        data.get(key)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    if let Some(kubeconfig) = text(CREDENTIALS_KEY_KUBECONFIG) {
        return Ok(kubeconfig);
    }
    let (Some(token), Some(ca), Some(server)) = (
        text(CREDENTIALS_KEY_TOKEN),
        data.get(CREDENTIALS_KEY_CA),
        text(CREDENTIALS_KEY_SERVER),
    ) else {
        return Err(format!(
            "needs key {CREDENTIALS_KEY_KUBECONFIG}, or keys {CREDENTIALS_KEY_TOKEN}, \
             {CREDENTIALS_KEY_CA} and {CREDENTIALS_KEY_SERVER}"
        ));
    };
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(&ca.0);
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "peer", "cluster": {"server": server.trim(), "certificate-authority-data": ca}}],
        "users": [{"name": "peer", "user": {"token": token.trim()}}],
        "contexts": [{"name": "peer", "context": {"cluster": "peer", "user": "peer"}}],
        "current-context": "peer",
    });
    Ok(kubeconfig.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::{CustomResourceExt, Resource};
    use serde_json::json;

    fn time(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn resource_identity() {
        assert_eq!(ForeignCluster::group(&()), "core.liqo.io");
        assert_eq!(ForeignCluster::version(&()), "v1beta1");
        assert_eq!(ForeignCluster::plural(&()), "foreignclusters");
        let crd = ForeignCluster::crd();
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.names.short_names, Some(vec!["fc".to_string()]));
        assert_eq!(crd.spec.names.categories, Some(vec!["liqo".to_string()]));
    }

    #[test]
    fn spec_round_trips_with_liqo_field_names() {
        let yaml = json!({
            "apiVersion": "core.liqo.io/v1beta1",
            "kind": "ForeignCluster",
            "metadata": {"name": "newyork"},
            "spec": {
                "clusterID": "newyork-id",
                "clusterName": "newyork",
                "apiServerURL": "https://127.0.0.1:6443",
                "credentialsSecretRef": {"name": "peer-newyork", "namespace": "liqo"},
                "networking": {
                    "addressTranslation": "CidrRemap",
                    "remapping": [{"localCIDR": "10.244.0.0/16", "remoteCIDR": "10.70.0.0/16"}]
                }
            },
            "status": {
                "role": "Provider",
                "peeringConditions": [
                    {"type": "OutgoingPeering", "status": "Established", "reason": "Reflecting",
                     "message": "ok", "lastTransitionTime": "2024-01-01T00:00:00Z"},
                    {"type": "APIServerStatus", "status": "Error"}
                ],
                "tenantNamespace": {"local": "liqo-tenant-newyork", "remote": "liqo-tenant-london"},
                "observedGeneration": 3
            }
        });
        let fc: ForeignCluster = serde_json::from_value(yaml.clone()).unwrap();
        assert_eq!(fc.spec.cluster_id, "newyork-id");
        let net = fc.spec.networking.as_ref().unwrap();
        assert_eq!(net.address_translation, AddressTranslation::CidrRemap);
        assert_eq!(net.remapping[0].remote_cidr, "10.70.0.0/16");
        let status = fc.status.as_ref().unwrap();
        assert_eq!(status.role, PeeringRole::Provider);
        assert_eq!(
            status.condition_status(PeeringConditionType::ApiServerStatus),
            PeeringConditionStatus::Error
        );
        assert_eq!(
            status.condition_status(PeeringConditionType::NetworkStatus),
            PeeringConditionStatus::None
        );
        assert_eq!(serde_json::to_value(&fc).unwrap(), yaml);
    }

    #[test]
    fn defaults() {
        let spec: ForeignClusterSpec =
            serde_json::from_value(json!({"clusterID": "x", "networking": {}})).unwrap();
        assert_eq!(
            spec.networking.unwrap().address_translation,
            AddressTranslation::Identity
        );
        let status: ForeignClusterStatus = serde_json::from_value(json!({})).unwrap();
        assert_eq!(status.role, PeeringRole::Unknown);
        // Nothing optional is written back.
        assert_eq!(
            serde_json::to_value(ForeignClusterSpec {
                cluster_id: "x".into(),
                cluster_name: None,
                api_server_url: None,
                credentials_secret_ref: None,
                networking: None,
            })
            .unwrap(),
            json!({"clusterID": "x"})
        );
    }

    #[test]
    fn ensure_all_conditions_fills_every_column() {
        let mut status = ForeignClusterStatus::default();
        status.set_condition(
            PeeringCondition::new(
                PeeringConditionType::OutgoingPeering,
                PeeringConditionStatus::Established,
            ),
            time(5),
        );
        assert!(status.ensure_all_conditions(time(10)));
        assert_eq!(status.peering_conditions.len(), 5);
        assert_eq!(
            status.condition_status(PeeringConditionType::OutgoingPeering),
            PeeringConditionStatus::Established
        );
        let json = serde_json::to_value(&status).unwrap();
        let types: Vec<&str> = json["peeringConditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "OutgoingPeering",
                "IncomingPeering",
                "NetworkStatus",
                "AuthenticationStatus",
                "APIServerStatus"
            ]
        );
        assert!(!status.ensure_all_conditions(time(20)), "idempotent");
        for t in PeeringConditionType::ALL {
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                json!(t.as_str()),
                "as_str matches serde"
            );
        }
    }

    #[test]
    fn printer_columns_match_liqo_v0() {
        let crd = ForeignCluster::crd();
        let columns = crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap();
        let got: Vec<(&str, &str, i32)> = columns
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.json_path.as_str(),
                    c.priority.unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "OUTGOING PEERING",
                    r#".status.peeringConditions[?(@.type=="OutgoingPeering")].status"#,
                    0
                ),
                (
                    "INCOMING PEERING",
                    r#".status.peeringConditions[?(@.type=="IncomingPeering")].status"#,
                    0
                ),
                (
                    "NETWORKING",
                    r#".status.peeringConditions[?(@.type=="NetworkStatus")].status"#,
                    0
                ),
                (
                    "AUTHENTICATION",
                    r#".status.peeringConditions[?(@.type=="AuthenticationStatus")].status"#,
                    0
                ),
                ("AGE", ".metadata.creationTimestamp", 0),
                // Liqo v1's column, in -o wide only: the v0 table stays as it was.
                ("ROLE", ".status.role", 1),
                ("CLUSTER ID", ".spec.clusterID", 1),
                (
                    "API SERVER",
                    r#".status.peeringConditions[?(@.type=="APIServerStatus")].status"#,
                    1
                ),
            ]
        );
        assert_eq!(columns[4].type_, "date");
    }

    #[test]
    fn cluster_id_is_required_and_immutable_in_the_schema() {
        let crd = serde_json::to_value(ForeignCluster::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["required"], json!(["clusterID"]));
        let rules = &spec["properties"]["clusterID"]["x-kubernetes-validations"];
        assert_eq!(rules[0]["rule"], "self == oldSelf");
    }

    #[test]
    fn gateway_networking_round_trips() {
        let fingerprint = "ab".repeat(32);
        let networking = json!({
            "addressTranslation": "Gateway",
            "gateway": {"fingerprint": fingerprint, "endpoint": "10.96.0.50:7901"}
        });
        let spec: ForeignClusterSpec =
            serde_json::from_value(json!({"clusterID": "newyork", "networking": networking}))
                .unwrap();
        let net = spec.networking.as_ref().unwrap();
        assert_eq!(net.address_translation, AddressTranslation::Gateway);
        assert_eq!(
            net.gateway,
            Some(GatewaySpec {
                fingerprint: fingerprint.clone(),
                endpoint: "10.96.0.50:7901".into()
            })
        );
        assert!(net.remapping.is_empty());
        assert_eq!(
            serde_json::to_value(&spec).unwrap()["networking"],
            networking
        );
        // Without a gateway nothing is written back for it.
        let identity = NetworkingSpec::default();
        assert_eq!(
            serde_json::to_value(identity).unwrap(),
            json!({"addressTranslation": "Identity"})
        );
    }

    #[test]
    fn gateway_is_required_and_bounded_in_the_schema() {
        let crd = serde_json::to_value(ForeignCluster::crd()).unwrap();
        let networking = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["networking"];
        assert_eq!(
            networking["properties"]["addressTranslation"]["enum"],
            json!(["Identity", "CidrRemap", "Gateway"])
        );
        let rules = networking["x-kubernetes-validations"].as_array().unwrap();
        let rule = rules
            .iter()
            .find(|r| r["rule"].as_str().unwrap().contains("'Gateway'"))
            .expect("a rule for Gateway");
        assert_eq!(
            rule["rule"],
            "self.addressTranslation != 'Gateway' || has(self.gateway)"
        );
        let message = rule["message"].as_str().unwrap();
        assert!(message.contains("gateway"), "{message}");
        assert!(
            message.contains("liqoctl generate peer-command"),
            "{message}"
        );
        // The CidrRemap rule is still there.
        assert!(
            rules
                .iter()
                .any(|r| r["rule"].as_str().unwrap().contains("'CidrRemap'"))
        );

        let gateway = &networking["properties"]["gateway"];
        assert_eq!(gateway["required"], json!(["endpoint", "fingerprint"]));
        let fingerprint = &gateway["properties"]["fingerprint"];
        assert_eq!(
            (&fingerprint["minLength"], &fingerprint["maxLength"]),
            (&json!(64), &json!(64))
        );
        let endpoint = &gateway["properties"]["endpoint"];
        assert_eq!(endpoint["maxLength"], json!(64));
        // IPv4 or bracketed IPv6, then a port: the forms `SocketAddr` prints.
        assert_eq!(
            endpoint["pattern"],
            r"^([0-9]{1,3}(\.[0-9]{1,3}){3}|\[[0-9a-fA-F:.]+\]):[0-9]{1,5}$"
        );
        assert_eq!(fingerprint["pattern"], "^[0-9a-fA-F]{64}$");
    }

    #[test]
    fn credential_kubeconfig_from_either_form() {
        use k8s_openapi::ByteString;
        use std::collections::BTreeMap;
        let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, ByteString> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect()
        };
        let full = data(&[("kubeconfig", "apiVersion: v1\nkind: Config\n")]);
        assert_eq!(
            credential_kubeconfig(&full).unwrap(),
            "apiVersion: v1\nkind: Config\n"
        );
        let parts = data(&[
            ("token", "tok\n"),
            ("ca.crt", "PEM"),
            ("server", " https://127.0.0.1:6443 "),
        ]);
        let built: serde_json::Value =
            serde_json::from_str(&credential_kubeconfig(&parts).unwrap()).unwrap();
        assert_eq!(
            built["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        assert_eq!(
            built["clusters"][0]["cluster"]["certificate-authority-data"],
            "UEVN"
        );
        assert_eq!(built["users"][0]["user"]["token"], "tok");
        let err = credential_kubeconfig(&data(&[("token", "t")])).unwrap_err();
        assert!(err.contains("needs key kubeconfig"), "{err}");
    }
}
