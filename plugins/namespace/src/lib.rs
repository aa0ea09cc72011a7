//! Built-in namespace mapping plugin: decides the name of the remote (twin) namespace and the
//! Namespace object the host creates in the remote cluster.
//!
//! Strategies (NamespaceOffloading `spec.namespaceMappingStrategy`, as in Liqo):
//! `EnforceSameName` (remote = local name), `DefaultName` (the default: `<namespace>-<local
//! cluster id>`, made a valid DNS-1123 label deterministically), `SelectedName` (the user's
//! `spec.remoteNamespaceName`, validated).
//!
//! The logic is plain Rust ([`map_namespace`], [`map_namespace_json`]); the `component` module
//! (wasm32 only) exports it through the `namespace-mapper-plugin` world of `wit/reflection.wit`.

mod hash;
mod mapping;
mod strategy;

#[cfg(target_arch = "wasm32")]
mod component;

pub use mapping::{map_namespace, map_namespace_json};
pub use strategy::{MappingStrategy, default_name};
