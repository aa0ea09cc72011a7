//! Label and annotation keys (and fixed values) shared with Liqo.
//! See LIQO-REFERENCE.md §1.6 for where each one appears.

/// Label on every reflected remote object: the local (consumer) cluster id.
pub const ORIGIN_LABEL: &str = "offloading.liqo.io/origin";

/// Label on every reflected remote object: the remote (provider) cluster id.
pub const DESTINATION_LABEL: &str = "offloading.liqo.io/destination";

/// Per-object opt-out annotation, honoured under the `DenyList` reflection policy.
pub const SKIP_REFLECTION_ANNOTATION: &str = "liqo.io/skip-reflection";

/// Per-object opt-in annotation, required under the `AllowList` reflection policy.
pub const ALLOW_REFLECTION_ANNOTATION: &str = "liqo.io/allow-reflection";

/// Service annotation: `"true"` copies the local nodePorts to the remote Service.
pub const FORCE_REMOTE_NODE_PORT_ANNOTATION: &str = "liqo.io/force-remote-node-port";

/// EndpointSlice label naming the controller that manages the slice.
pub const ENDPOINTSLICE_MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";

/// Value of [`ENDPOINTSLICE_MANAGED_BY_LABEL`] on reflected slices, so the remote EndpointSlice
/// controller leaves them alone.
pub const ENDPOINTSLICE_MANAGED_BY_REFLECTION: &str = "endpointslice.reflection.liqo.io";

/// EndpointSlice label naming the Service the slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Annotation `kubectl apply` writes with the last applied manifest. Never reflected: it describes
/// the local object's apply history, and on the remote cluster it would make a later
/// `kubectl apply` compute a wrong three-way merge.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Annotation on remote Namespaces created by the namespace plugin: the local namespace name.
pub const REMOTE_NAMESPACE_ORIGIN_NAME_ANNOTATION: &str = "liqo.io/remote-namespace-origin-name";
