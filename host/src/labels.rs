//! Label and annotation keys, kept identical to Liqo's so users and tools find the same names.

/// Label on every reflected remote object: the id of the cluster the object comes from.
pub const ORIGIN: &str = "offloading.liqo.io/origin";
/// Label on every reflected remote object: the id of the cluster it was reflected to.
pub const DESTINATION: &str = "offloading.liqo.io/destination";
/// Field manager used for every server-side apply the host makes.
pub const FIELD_MANAGER: &str = "reflection.liqo.io";
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
