//! Host-side bindings generated from `wit/reflection.wit`.
//!
//! The namespace-mapper world reuses the shared interfaces of the reflector world through
//! `with`, so the host imports are implemented once.

/// Bindings for the `kind-reflector` world.
pub mod reflector_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "kind-reflector",
    });
}

/// Bindings for the `namespace-mapper-plugin` world.
pub mod mapper_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "namespace-mapper-plugin",
        with: {
            "liqo:reflection/types": super::reflector_world::liqo::reflection::types,
            "liqo:reflection/host": super::reflector_world::liqo::reflection::host,
        },
    });
}

pub use reflector_world::liqo::reflection::host as wit_host;
pub use reflector_world::liqo::reflection::types as wit;
