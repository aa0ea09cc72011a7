//! The liqo host runtime.
//!
//! The host watches offloaded namespaces in its own cluster and reflects their objects into
//! peered clusters. How each kind is transformed is decided by WebAssembly plugins (see the WIT
//! contract in `wit/reflection.wit`); the host enforces the invariants that keep peers safe
//! (remote namespace, ownership labels, no server-owned fields) after every plugin call.
//!
//! Modules:
//! - [`api`]: CRD types (ForeignCluster, NamespaceOffloading, ReflectionPlugin), conditions, identity.
//! - [`labels`]: label and annotation keys shared with Liqo.
//! - [`invariants`]: the IO-free post-processing applied to every plugin output.
//! - [`plugin`]: the only module that touches wasmtime: loading, limits, calls, metrics.
//! - [`peering`]: ForeignClusters become peers of the engine (credential, health, columns).
//! - [`offloading`]: NamespaceOffloadings become twin namespaces and reflection.
//! - [`reflect`]: the reflection engine: caches, work queue, plugin calls, remote writes.
//! - [`telemetry`]: `/metrics`, `/healthz`, `/readyz` server and `tracing` setup.
//! - [`leader`]: leader election through a Lease, so two replicas never write at once.
//! - [`endpoint_ranges`]: where a peer's EndpointSlices may point (declared, reviewed, recorded).
//! - [`tenant`]: peering identities on providers: Lease renewal, incoming peerings, revocation.
//! - [`user_plugins`]: ReflectionPlugin objects: user plugins loaded, swapped and removed live.

pub mod api;
pub mod cluster_labels;
pub mod endpoint_ranges;
pub mod invariants;
pub mod labels;
pub mod leader;
pub mod offloading;
pub mod peering;
pub mod plugin;
pub mod reflect;
pub mod telemetry;
pub mod tenant;
pub mod transport;
pub mod twins;
pub mod user_plugins;
