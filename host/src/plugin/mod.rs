//! The plugin runtime: the only module that touches wasmtime.
//!
//! One [`PluginRuntime`] owns the wasmtime engine (component model, pooling allocator, epoch
//! interruption), the linkers with the host imports, and the on-disk compile cache. Loading a
//! component yields an immutable, `Arc`-shared plugin ([`ReflectorPlugin`] or
//! [`NamespaceMapperPlugin`]) that keeps one `InstancePre` and a small pool of warm instances,
//! so a call costs an instance checkout, not an instantiation.
//!
//! Every call runs under a CPU limit (epoch deadline) and a linear-memory cap. A call that hits
//! a limit or traps returns a typed [`PluginError`] naming the plugin, the object and the limit,
//! and its instance is discarded: other calls, other plugins and other kinds are unaffected.
//!
//! The sandbox cannot starve the host either. From async code, calls run on tokio's blocking
//! pool, at most `max_instances` per plugin and `max_concurrent_calls` in all (see
//! `plugin/calls.rs`), so a guest spinning to its CPU limit never holds an async worker: the
//! leader Lease, the watches and the other kinds go on. And each plugin's instances together
//! stay within one memory budget, checked at load against the container's memory limit (see
//! `plugin/memory.rs`).

mod bindings;
pub mod builtin;
mod calls;
pub mod capabilities;
mod compile_cache;
mod error;
mod limits;
mod mapper;
mod memory;
pub mod metrics;
mod pool;
mod reflector;
mod runtime;
mod store;
mod types;

pub use calls::CallSlot;
pub use capabilities::address::{
    AddressTranslator, CidrRemap, EndpointRef, GatewayTranslation, IdentityTranslation,
    TranslatedEndpoint,
};
pub use capabilities::cache::{NoObjects, ObjectReader};
pub use error::{LoadError, PluginError};
pub use limits::PluginLimits;
pub use mapper::NamespaceMapperPlugin;
pub use memory::{DEFAULT_HOST_MEMORY_RESERVE, container_memory_limit};
pub use metrics::PluginMetrics;
pub use reflector::{CallServices, ReflectCall, ReflectorPlugin};
pub use runtime::{PluginRuntime, RuntimeConfig, default_cache_dir};
pub use types::{ClusterIdentity, KindRef, Manifest, NamespaceMapping, ObjectRef, Outcome};

/// The WIT package version this host implements. Components built against another version are
/// refused at load with an error naming both.
pub const WIT_PACKAGE: &str = "liqo:reflection";
/// See [`WIT_PACKAGE`].
pub const WIT_VERSION: &str = "0.1.0";
