//! The built-in plugins, compiled to `wasm32-wasip2` by `build.rs` and embedded in the binary,
//! so a fresh host reflects Services and EndpointSlices with no configuration.

/// The Service reflector component.
pub const SERVICE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/service.wasm"));
/// The EndpointSlice reflector component.
pub const ENDPOINTSLICE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/endpointslice.wasm"));
/// The namespace mapper component.
pub const NAMESPACE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/namespace.wasm"));

/// The built-in reflectors as (source name, component bytes), in load order.
pub const REFLECTORS: &[(&str, &[u8])] = &[
    ("builtin:service", SERVICE),
    ("builtin:endpointslice", ENDPOINTSLICE),
];

/// Source name of the built-in namespace mapper.
pub const NAMESPACE_SOURCE: &str = "builtin:namespace";
