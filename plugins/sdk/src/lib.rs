//! Native side of the `liqo:reflection@0.1.0` plugin contract.
//!
//! It mirrors the WIT types as plain Rust ([`types`]), abstracts the host imports as a trait
//! ([`HostApi`]) and provides the helpers the built-in plugins share (reflection policy,
//! label/annotation filters, DNS-1123 validation, CIDR remapping). Plugin logic written against
//! it compiles natively, so it can be unit-tested and benchmarked without a wasm runtime.
//!
//! A plugin becomes a component by implementing [`Reflector`] or [`NamespaceMapper`] and
//! invoking [`export_reflector!`] or [`export_namespace_mapper!`]; the `wit-bindgen` bindings
//! are generated once, in this crate, and only for `wasm32` (the `wasm` module).
//!
//! Native-only: [`golden`] (golden-file cases, needs a filesystem).

pub mod cidr;
pub mod config;
pub mod dns;
pub mod export;
pub mod fake_host;
pub mod filter;
#[cfg(not(target_arch = "wasm32"))]
pub mod golden;
pub mod host;
pub mod keys;
pub mod object;
pub mod policy;
pub mod types;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

/// The guest's global allocator (feature `talc-allocator`, on by default): faster than the
/// default dlmalloc for the many small allocations JSON work makes.
#[cfg(all(target_arch = "wasm32", feature = "talc-allocator"))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

pub use cidr::{CidrMap, CidrMapping};
pub use config::ReflectionConfig;
pub use dns::{MAX_DNS1123_LABEL_LEN, is_dns1123_label, validate_dns1123_label};
pub use export::{NamespaceMapper, Reflector};
pub use fake_host::{FakeHost, LogRecord};
pub use filter::{KeyFilter, glob_matches};
pub use host::{HostApi, LogLevel, TranslatedEndpoint};
pub use policy::ReflectionPolicy;
pub use types::{
    ClusterIdentity, Decision, DecisionJson, KindRef, Manifest, NamespaceMapping,
    NamespaceMappingJson, ReflectContext, kinds,
};
