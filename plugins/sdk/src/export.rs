//! What a plugin implements to be exported as a component, and the macros that export it.
//!
//! A plugin implements [`Reflector`] (world `kind-reflector`) or [`NamespaceMapper`] (world
//! `namespace-mapper-plugin`) with the SDK's native types, then invokes
//! [`export_reflector!`](crate::export_reflector) or
//! [`export_namespace_mapper!`](crate::export_namespace_mapper) once. On `wasm32` the macro
//! expands to the component's exports, which convert the WIT types and call the trait; elsewhere
//! it expands to nothing, so the same crate builds natively for tests and benchmarks.

use crate::host::HostApi;
use crate::types::{ClusterIdentity, DecisionJson, Manifest, NamespaceMappingJson, ReflectContext};

/// A kind reflector (`interface reflector`), in the SDK's types.
pub trait Reflector {
    /// Describes the plugin (`reflector.manifest`). Called once at load; must not depend on
    /// configuration.
    fn manifest() -> Manifest;

    /// Decides what the local object (JSON text) becomes in the remote cluster
    /// (`reflector.reflect`). `host` is the imported host functions.
    fn reflect(
        host: &dyn HostApi,
        ctx: &ReflectContext,
        object: &str,
    ) -> Result<DecisionJson, String>;
}

/// The namespace mapper (`interface namespace-mapper`), in the SDK's types.
pub trait NamespaceMapper {
    /// Maps the local namespace `namespace` for the peering between `local` and `remote`;
    /// `offloading_spec` is the NamespaceOffloading `spec` as JSON text
    /// (`namespace-mapper.map-namespace`).
    fn map_namespace(
        local: &ClusterIdentity,
        remote: &ClusterIdentity,
        namespace: &str,
        offloading_spec: &str,
    ) -> Result<NamespaceMappingJson, String>;
}

/// Exports a [`Reflector`] as the component's `liqo:reflection/reflector` (world
/// `kind-reflector`). Invoke it once, in the plugin's crate: `export_reflector!(MyPlugin);`.
#[macro_export]
macro_rules! export_reflector {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type LiqoReflectorExport = $crate::wasm::reflector::Adapter<$plugin>;
            $crate::wasm::reflector::export!(
                LiqoReflectorExport with_types_in $crate::wasm::reflector
            );
        };
    };
}

/// Exports a [`NamespaceMapper`] as the component's `liqo:reflection/namespace-mapper` (world
/// `namespace-mapper-plugin`). Invoke it once, in the plugin's crate:
/// `export_namespace_mapper!(MyPlugin);`.
#[macro_export]
macro_rules! export_namespace_mapper {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type LiqoNamespaceMapperExport = $crate::wasm::namespace_mapper::Adapter<$plugin>;
            $crate::wasm::namespace_mapper::export!(
                LiqoNamespaceMapperExport with_types_in $crate::wasm::namespace_mapper
            );
        };
    };
}
