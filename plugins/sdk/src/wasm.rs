//! The component side of the contract (`wasm32` only): the `wit-bindgen` bindings of both
//! worlds, generated once here, and the adapters the export macros use.
//!
//! Each world has its own module: the generated type modules of the two worlds would otherwise
//! collide. The export macros are public (`pub_export_macro`): the bindings here carry only the
//! imports, and each plugin's macro invocation adds the exports of its own world, so a plugin
//! exports exactly one world although the SDK generates both.

#![doc(hidden)]

use crate::host::{HostApi, LogLevel, TranslatedEndpoint};
use crate::types::{ClusterIdentity, KindRef};

/// World `kind-reflector`: the `reflector` export.
pub mod reflector {
    wit_bindgen::generate!({
        world: "kind-reflector",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "liqo_plugin_sdk::wasm::reflector",
    });

    use core::marker::PhantomData;

    use exports::liqo::reflection::reflector::Guest;
    use liqo::reflection::types;

    use super::{WitHost, sdk_cluster, wit_kind};
    use crate::types::{DecisionJson, ReflectContext};

    /// Exports the [`crate::Reflector`] `T` through the generated `Guest` trait.
    pub struct Adapter<T>(PhantomData<T>);

    impl<T: crate::Reflector> Guest for Adapter<T> {
        fn manifest() -> types::Manifest {
            let manifest = T::manifest();
            types::Manifest {
                name: manifest.name,
                version: manifest.version,
                description: manifest.description,
                reflects: manifest.reflects.into_iter().map(wit_kind).collect(),
                triggers: manifest.triggers.into_iter().map(wit_kind).collect(),
                reads: manifest.reads.into_iter().map(wit_kind).collect(),
                reflect_status: manifest.reflect_status,
            }
        }

        fn reflect(ctx: types::ReflectContext, object: String) -> Result<types::Decision, String> {
            let ctx = ReflectContext {
                local_cluster: sdk_cluster(ctx.local_cluster),
                remote_cluster: sdk_cluster(ctx.remote_cluster),
                local_namespace: ctx.local_namespace,
                remote_namespace: ctx.remote_namespace,
                config: ctx.config,
            };
            Ok(match T::reflect(&WitHost, &ctx, &object)? {
                DecisionJson::Apply(object) => types::Decision::Apply(object),
                DecisionJson::Skip(reason) => types::Decision::Skip(reason),
            })
        }
    }
}

/// World `namespace-mapper-plugin`: the `namespace-mapper` export.
pub mod namespace_mapper {
    wit_bindgen::generate!({
        world: "namespace-mapper-plugin",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "liqo_plugin_sdk::wasm::namespace_mapper",
    });

    use core::marker::PhantomData;

    use exports::liqo::reflection::namespace_mapper::Guest;
    use liqo::reflection::types;

    use crate::types::ClusterIdentity;

    /// Exports the [`crate::NamespaceMapper`] `T` through the generated `Guest` trait.
    pub struct Adapter<T>(PhantomData<T>);

    impl<T: crate::NamespaceMapper> Guest for Adapter<T> {
        fn map_namespace(
            local_cluster: types::ClusterIdentity,
            remote_cluster: types::ClusterIdentity,
            namespace: String,
            offloading_spec: String,
        ) -> Result<types::NamespaceMapping, String> {
            let mapping = T::map_namespace(
                &cluster(local_cluster),
                &cluster(remote_cluster),
                &namespace,
                &offloading_spec,
            )?;
            Ok(types::NamespaceMapping {
                remote_name: mapping.remote_name,
                namespace_object: mapping.namespace_object,
            })
        }
    }

    /// This world's generated identity, as the SDK's.
    fn cluster(cluster: types::ClusterIdentity) -> ClusterIdentity {
        ClusterIdentity {
            id: cluster.id,
            name: cluster.name,
        }
    }
}

use reflector::liqo::reflection::{host, types};

/// The imported host functions, as the SDK's [`HostApi`].
struct WitHost;

impl HostApi for WitHost {
    fn get_object(
        &self,
        kind: &KindRef,
        namespace: &str,
        name: &str,
    ) -> Result<Option<serde_json::Value>, String> {
        let kind = types::KindRef {
            group: kind.group.clone(),
            version: kind.version.clone(),
            kind: kind.kind.clone(),
            plural: kind.plural.clone(),
            namespaced: kind.namespaced,
        };
        match host::get_object(&kind, namespace, name)? {
            None => Ok(None),
            Some(text) => {
                crate::object::parse_object(&text, "the object from the host cache").map(Some)
            }
        }
    }

    fn translate_address(&self, address: &str) -> Result<String, String> {
        host::translate_address(address)
    }

    fn translate_endpoint(
        &self,
        service_namespace: &str,
        service_name: &str,
        address: &str,
        port: u16,
        protocol: &str,
    ) -> Result<TranslatedEndpoint, String> {
        let translated =
            host::translate_endpoint(service_namespace, service_name, address, port, protocol)?;
        Ok(TranslatedEndpoint {
            address: translated.address,
            port: translated.port,
        })
    }

    fn log(&self, level: LogLevel, message: &str, fields: &[(&str, &str)]) {
        let level = match level {
            LogLevel::Trace => host::LogLevel::Trace,
            LogLevel::Debug => host::LogLevel::Debug,
            LogLevel::Info => host::LogLevel::Info,
            LogLevel::Warn => host::LogLevel::Warn,
            LogLevel::Error => host::LogLevel::Error,
        };
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        host::log(level, message, &fields);
    }
}

/// A kind in the `kind-reflector` world's generated type.
fn wit_kind(kind: KindRef) -> types::KindRef {
    types::KindRef {
        group: kind.group,
        version: kind.version,
        kind: kind.kind,
        plural: kind.plural,
        namespaced: kind.namespaced,
    }
}

/// A `kind-reflector` world's generated identity, as the SDK's.
fn sdk_cluster(cluster: types::ClusterIdentity) -> ClusterIdentity {
    ClusterIdentity {
        id: cluster.id,
        name: cluster.name,
    }
}
