//! widget: a liqo reflection plugin for example.com/v1alpha1/Widget.
//!
//! The decision is plain Rust in [`transform`], so `cargo test` runs it natively. The
//! `component` module below exists only in the `wasm32-wasip2` build: it implements the
//! `kind-reflector` world of `wit/reflection.wit` by converting types and calling
//! [`transform::manifest`] and [`transform::reflect`]. Keep decisions out of it.
//!
//! The built-in plugins get this glue from `liqo_plugin_sdk::export_reflector!`; this crate
//! spells it out instead because it must build on its own, from crates.io only, and the liqo
//! plugin SDK is not published there.

pub mod transform;

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "kind-reflector", path: "wit" });

    use exports::liqo::reflection::reflector::Guest;
    use liqo::reflection::types::{Decision, KindRef, Manifest, ReflectContext};

    use crate::transform;

    // The host's functions are in `liqo::reflection::host`: `log(level, message, fields)`,
    // `get_object(kind, namespace, name)` for kinds declared in the manifest's `reads`, and
    // `translate_address(ip)` for addresses of this cluster seen from the peer.

    struct Plugin;

    fn kind_ref(kind: transform::Kind) -> KindRef {
        KindRef {
            group: kind.group,
            version: kind.version,
            kind: kind.kind,
            plural: kind.plural,
            namespaced: kind.namespaced,
        }
    }

    impl Guest for Plugin {
        fn manifest() -> Manifest {
            let manifest = transform::manifest();
            Manifest {
                name: manifest.name,
                version: manifest.version,
                description: manifest.description,
                reflects: manifest.reflects.into_iter().map(kind_ref).collect(),
                triggers: manifest.triggers.into_iter().map(kind_ref).collect(),
                reads: manifest.reads.into_iter().map(kind_ref).collect(),
                reflect_status: manifest.reflect_status,
            }
        }

        fn reflect(ctx: ReflectContext, object: String) -> Result<Decision, String> {
            let object: serde_json::Value = serde_json::from_str(&object)
                .map_err(|e| format!("the object is not valid JSON: {e}"))?;
            let config: serde_json::Value = serde_json::from_str(&ctx.config)
                .map_err(|e| format!("the configuration is not valid JSON: {e}"))?;
            let ctx = transform::Context {
                local_cluster_id: ctx.local_cluster.id,
                remote_cluster_id: ctx.remote_cluster.id,
                local_namespace: ctx.local_namespace,
                remote_namespace: ctx.remote_namespace,
                config,
            };
            Ok(match transform::reflect(&ctx, &object)? {
                transform::Decision::Apply(remote) => Decision::Apply(remote.to_string()),
                transform::Decision::Skip(reason) => Decision::Skip(reason),
            })
        }
    }

    export!(Plugin);
}
