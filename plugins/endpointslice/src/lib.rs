//! Built-in reflection plugin for `discovery.k8s.io/v1` EndpointSlices.
//!
//! A local EndpointSlice becomes a remote EndpointSlice of the same name whose endpoints are
//! translated through the peering's network mapping (`host.translate-endpoint`, or
//! `host.translate-address` for a slice without ports), marked as managed by the reflection so
//! the remote EndpointSlice controller leaves it alone. When several pods translate to one
//! address (the peer reaches them through a gateway) they become one remote endpoint. A slice is reflected
//! only while its Service is: the plugin reads the Service from the host cache and applies the
//! same rules as the Service plugin. See `plugins/README.md` for the rule table and the
//! deliberate differences from Liqo.
//!
//! The transform is plain Rust ([`reflect`], [`reflect_json`], [`manifest`]); the `component`
//! module (wasm32 only) exports it through the `kind-reflector` world of `wit/reflection.wit`.

mod endpoints;
mod manifest;
mod reflect;

#[cfg(target_arch = "wasm32")]
mod component;

pub use manifest::manifest;
pub use reflect::{reflect, reflect_json};
