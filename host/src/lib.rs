//! The liqo host runtime.
//!
//! The host watches offloaded namespaces in its own cluster and reflects their objects into
//! peered clusters. How each kind is transformed is decided by WebAssembly plugins (see the WIT
//! contract in `wit/reflection.wit`); the host enforces the invariants that keep peers safe
//! (remote namespace, ownership labels, no server-owned fields) after every plugin call.
//!
//! Modules (`ARCHITECTURE.md` at the repository root has the map and who may import whom):
//! - [`api`]: CRD types (ForeignCluster, NamespaceOffloading, NamespaceMap, ReflectionPlugin),
//!   conditions, identity, and [`api::wire`], every name that crosses a process or cluster
//!   boundary (labels, annotations, finalizers, field managers).
//! - [`invariants`]: the IO-free post-processing applied to every plugin output.
//! - [`plugin`]: the only module that touches wasmtime: loading, limits, calls, metrics.
//! - [`reflect`]: the reflection engine: caches, work queue, plugin calls, remote writes.
//! - [`peers`]: what controllers share so none imports another: the established peers and the
//!   [`peers::DataPath`] trait (the gateway as the peering and tenant controllers drive it).
//! - [`peering`]: ForeignClusters become peers of the engine (credential, health, columns).
//! - [`offloading`]: NamespaceOffloadings become twin namespaces and reflection.
//! - [`protocol`]: the peering protocol, one owner: identities (provision, tokens, revoke), the
//!   peering Lease, twin namespace requests, peer limits, cluster labels, endpoint ranges and
//!   the data path's address translation. liqoctl and the controllers below call into it.
//! - [`tenant`]: the provider's controller of peering identities: incoming peerings,
//!   peer-health gating, revocation of stale or released identities.
//! - [`twins`]: the provider's side of twin namespaces (NamespaceMap controller).
//! - [`transport`]: the in-process gateway (cross-cluster data path).
//! - [`user_plugins`]: ReflectionPlugin objects: user plugins loaded, swapped and removed live.
//! - [`telemetry`]: `/metrics`, `/healthz`, `/readyz` server and `tracing` setup.
//! - [`leader`]: leader election through a Lease, so two replicas never write at once.

pub mod api;
pub mod invariants;
pub mod leader;
pub mod offloading;
pub mod peering;
pub mod peers;
pub mod plugin;
pub mod protocol;
pub mod reflect;
pub mod telemetry;
pub mod tenant;
pub mod transport;
pub mod twins;
pub mod user_plugins;
