//! The wire contract: every name that crosses a process or cluster boundary, in one place.
//!
//! Labels, annotations, finalizers, field managers, Secret and ConfigMap keys, and the names of
//! the objects a peering creates. Both sides of a peering, `liqoctl`, the admission policies in
//! `deploy/peering/policies.yaml` and Liqo's own tools read these exact strings: change one
//! only with all of its readers. Liqo's names are kept wherever Liqo has one.

// The host in its cluster.

/// Namespace of the host (its Deployment, its leader Lease, the identity ConfigMap), made by
/// `liqoctl install`.
pub const HOST_NAMESPACE: &str = "liqo";
/// Name of the host's Deployment and of its leader-election Lease.
pub const HOST_NAME: &str = "liqo-host";

// Reflected objects.

/// Label on every reflected remote object: the id of the cluster the object comes from.
pub const ORIGIN: &str = "offloading.liqo.io/origin";
/// Label on every reflected remote object: the id of the cluster it was reflected to.
pub const DESTINATION: &str = "offloading.liqo.io/destination";
/// Field manager of the host's reflection writes (the copies in the peers, statuses).
pub const REFLECTION_FIELD_MANAGER: &str = "reflection.liqo.io";
/// Per-object opt-out annotation (deny-list policy).
pub const SKIP_REFLECTION: &str = "liqo.io/skip-reflection";
/// Per-object opt-in annotation (allow-list policy).
pub const ALLOW_REFLECTION: &str = "liqo.io/allow-reflection";
/// Label that keeps the remote EndpointSlice controller away from reflected slices.
pub const ENDPOINTSLICE_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// Value of [`ENDPOINTSLICE_MANAGED_BY`] on reflected slices.
pub const ENDPOINTSLICE_MANAGED_BY_REFLECTION: &str = "endpointslice.reflection.liqo.io";
/// Annotation on a remote (twin) namespace: the name of the local namespace it comes from.
pub const REMOTE_NAMESPACE_ORIGIN_NAME: &str = "liqo.io/remote-namespace-origin-name";

// Reflected objects: what the host last applied.

/// Annotation holding the hash of the last applied intent.
pub const INTENT_HASH_ANNOTATION: &str = "reflection.liqo.io/intent-hash";

// Peering: the tenant namespace, its identity and its Lease (provider side).

/// Label on every tenant namespace (value `true`).
pub const TENANT_NAMESPACE_LABEL: &str = "liqo.io/tenant-namespace";
/// Prefix of tenant namespace names (the API server adds a random suffix).
pub const TENANT_NAMESPACE_PREFIX: &str = "liqo-tenant-";
/// Label on the cluster-scoped objects of a tenant (ClusterRoleBinding, policy binding) and on
/// a ForeignCluster the provider created for an incoming peering: the tenant namespace.
pub const TENANT_LABEL: &str = "liqo.io/tenant";
/// Name of the consumer's ServiceAccount in its tenant namespace.
pub const CONSUMER_SERVICE_ACCOUNT: &str = "liqo-consumer";
/// Name of the consumer's Lease in its tenant namespace.
pub const LEASE_NAME: &str = "liqo-peering";
/// Label on peering Leases (value `true`), so the provider lists them cluster-wide.
pub const PEERING_LEASE_LABEL: &str = "liqo.io/peering-lease";
/// Label on a peering Lease: the provider's cluster id (the destination the policy enforces).
pub const PROVIDER_ID_LABEL: &str = "liqo.io/provider-cluster-id";
/// Annotation on a peering Lease: when the peer command's token expires (RFC 3339). An
/// identity nobody claimed is revoked then.
pub const TOKEN_EXPIRATION_ANNOTATION: &str = "liqo.io/peer-command-expiration";
/// Label on a tenant namespace: the consumer cluster id bound to it, set by `liqoctl generate
/// peer-command --consumer` or by the provider's host when it first sees the claim. The
/// `liqo-peering-claims` admission policy refuses a claim of an id another tenant namespace
/// carries. Namespaces are cluster-scoped: neither a peer nor a namespace admin can set it.
pub const CONSUMER_ID_LABEL: &str = "liqo.io/consumer-id";
/// Annotation on a tenant namespace: the gateway endpoint the peer command announced (set by
/// `liqoctl generate peer-command`); reflected endpoints of a gateway peering may point there.
pub const GATEWAY_ENDPOINT_ANNOTATION: &str = "liqo.io/gateway-endpoint";
/// The admission policy narrowing every write of a peering identity outside its tenant
/// namespace to the twin namespaces of its tenant (`deploy/peering/policies.yaml`).
pub const REFLECTION_POLICY: &str = "liqo-peering-reflection";
/// The policy guarding the Lease, the NamespaceMap and token requests.
pub const TENANT_POLICY: &str = "liqo-peering-tenant";
/// Key of the consumer's credential Secret naming its tenant namespace on the provider. Only
/// credentials made by `liqoctl peer out-of-band` have it; others keep no Lease.
pub const CREDENTIALS_KEY_TENANT: &str = "tenantNamespace";
/// Field manager of tenant objects written by the hosts and liqoctl.
pub const PEERING_FIELD_MANAGER: &str = "peering.liqo.io";

// Peering: the ForeignCluster (consumer side).

/// Finalizer the host puts on ForeignClusters so a peer is always removed from the engine.
pub const PEERING_FINALIZER: &str = "liqo.io/peering";

// Gateways: what a consumer announces on its Lease.

/// Key of the published ConfigMap ([`GATEWAY_CONFIGMAP`]): where peers dial this gateway's
/// link listener (informational: consumers announce theirs on the Lease).
pub const PUBLISHED_LINK_ADDRESS_KEY: &str = "linkAddress";
/// Annotation of a peering Lease: `HOST:PORT` where the consumer's gateway accepts links.
pub const LEASE_ADDRESS_ANNOTATION: &str = "gateway.liqo.io/address";
/// Annotation of a peering Lease: the consumer gateway's certificate fingerprint.
pub const LEASE_FINGERPRINT_ANNOTATION: &str = "gateway.liqo.io/fingerprint";

// Declared endpoint ranges (see `crate::protocol::endpoint_ranges`).

/// Annotation on the peering Lease (the consumer's to set): the ranges its reflected endpoints
/// use, comma-separated CIDRs.
pub const DECLARED_RANGES_ANNOTATION: &str = "liqo.io/declared-endpoint-ranges";
/// Annotation on a tenant namespace (the provider's record): the declared ranges it accepted.
pub const RECORDED_RANGES_ANNOTATION: &str = "liqo.io/endpoint-ranges";
/// Annotation on a tenant namespace (the provider's record): the declared ranges it refused,
/// each with why (`CIDR: reason; ...`).
pub const REFUSED_RANGES_ANNOTATION: &str = "liqo.io/refused-endpoint-ranges";

// Twin namespaces and the provider's limits (see `crate::twins`).

/// Annotation on a twin namespace: the Service types the consumer may write there
/// (comma-separated; read by the `liqo-peering-reflection` admission policy).
pub const SERVICE_TYPES_ANNOTATION: &str = "liqo.io/allowed-service-types";
/// Annotation on a twin namespace: the address ranges (CIDRs, comma-separated) the consumer's
/// EndpointSlices may point at (read by the admission policy).
pub const ENDPOINT_RANGES_ANNOTATION: &str = "liqo.io/allowed-endpoint-ranges";
/// Annotation on a twin namespace: address ranges the consumer's EndpointSlices may never point
/// at, even inside the allowed ranges (this cluster's own ranges, loopback, link-local).
pub const DENIED_RANGES_ANNOTATION: &str = "liqo.io/denied-endpoint-ranges";
/// Name of the RoleBinding and of the ResourceQuota in each twin namespace.
pub const TWIN_OBJECT_NAME: &str = "liqo-peering";
/// ConfigMap (in `liqo`) holding this cluster's limits for peers, written by `liqoctl install`.
pub const LIMITS_CONFIGMAP: &str = "liqo-peering-limits";
/// Keys of [`LIMITS_CONFIGMAP`].
pub const LIMITS_KEY_MAX_NAMESPACES: &str = "maxNamespacesPerPeer";
/// Keys of [`LIMITS_CONFIGMAP`]: the ResourceQuota of each twin namespace, `k=v,...`.
pub const LIMITS_KEY_QUOTA: &str = "quota";
/// Keys of [`LIMITS_CONFIGMAP`]: the Service types peers may write, comma-separated.
pub const LIMITS_KEY_SERVICE_TYPES: &str = "serviceTypes";
/// The ClusterRole bound in each twin namespace (`deploy/peering/clusterrole.yaml`).
pub const REFLECTED_KINDS_CLUSTER_ROLE: &str = "liqo-peering-reflected-kinds";
/// Annotation on a twin namespace: the ResourceQuota it was given (`k=v,...`), so a change of
/// the limits is seen without reading every quota.
pub const QUOTA_ANNOTATION: &str = "liqo.io/peering-quota";

// Cluster labels (see `crate::protocol::cluster_labels`).

/// Key of the identity ConfigMap holding this cluster's labels, `k=v,...` (sorted).
pub const CLUSTER_LABELS_KEY: &str = "CLUSTER_LABELS";
/// Field manager of the labels the consumer's host puts on a ForeignCluster.
pub const CLUSTER_LABELS_FIELD_MANAGER: &str = "liqo-cluster-labels";
/// Annotation on a ForeignCluster: the label keys that came from the provider (comma-separated).
pub const CLUSTER_LABELS_ANNOTATION: &str = "liqo.io/cluster-labels";

// NamespaceOffloading.

/// Finalizer the host puts on NamespaceOffloadings so twin namespaces are always cleaned up.
pub const OFFLOADING_FINALIZER: &str = "offloading.liqo.io/finalizer";

// ReflectionPlugin.

/// Finalizer that keeps a ReflectionPlugin until the remote copies it alone made are gone.
pub const PLUGIN_FINALIZER: &str = "plugins.liqo.io/finalizer";

// liqoctl.

/// Field manager of every object `liqoctl` applies.
pub const LIQOCTL_FIELD_MANAGER: &str = "liqoctl";
