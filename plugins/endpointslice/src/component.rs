//! The wasm component: exports `liqo:reflection/reflector` by calling the native transform.
//!
//! Only conversions live here; every decision is made in [`crate::reflect_json`] so the native
//! tests cover exactly what the component runs.

wit_bindgen::generate!({ world: "kind-reflector", path: "../../wit" });

use exports::liqo::reflection::reflector::Guest;
use liqo::reflection::{host, types};
use liqo_plugin_sdk as sdk;

/// The imported host functions, as the SDK's [`sdk::HostApi`].
struct WitHost;

impl sdk::HostApi for WitHost {
    fn get_object(
        &self,
        kind: &sdk::KindRef,
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
                sdk::object::parse_object(&text, "the object from the host cache").map(Some)
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
    ) -> Result<sdk::TranslatedEndpoint, String> {
        let translated =
            host::translate_endpoint(service_namespace, service_name, address, port, protocol)?;
        Ok(sdk::TranslatedEndpoint {
            address: translated.address,
            port: translated.port,
        })
    }

    fn log(&self, level: sdk::LogLevel, message: &str, fields: &[(&str, &str)]) {
        let level = match level {
            sdk::LogLevel::Trace => host::LogLevel::Trace,
            sdk::LogLevel::Debug => host::LogLevel::Debug,
            sdk::LogLevel::Info => host::LogLevel::Info,
            sdk::LogLevel::Warn => host::LogLevel::Warn,
            sdk::LogLevel::Error => host::LogLevel::Error,
        };
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        host::log(level, message, &fields);
    }
}

fn wit_kind(kind: sdk::KindRef) -> types::KindRef {
    types::KindRef {
        group: kind.group,
        version: kind.version,
        kind: kind.kind,
        plural: kind.plural,
        namespaced: kind.namespaced,
    }
}

fn sdk_cluster(cluster: types::ClusterIdentity) -> sdk::ClusterIdentity {
    sdk::ClusterIdentity {
        id: cluster.id,
        name: cluster.name,
    }
}

struct EndpointSlicePlugin;

impl Guest for EndpointSlicePlugin {
    fn manifest() -> types::Manifest {
        let manifest = crate::manifest();
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
        let ctx = sdk::ReflectContext {
            local_cluster: sdk_cluster(ctx.local_cluster),
            remote_cluster: sdk_cluster(ctx.remote_cluster),
            local_namespace: ctx.local_namespace,
            remote_namespace: ctx.remote_namespace,
            config: ctx.config,
        };
        Ok(match crate::reflect_json(&WitHost, &ctx, &object)? {
            sdk::DecisionJson::Apply(object) => types::Decision::Apply(object),
            sdk::DecisionJson::Skip(reason) => types::Decision::Skip(reason),
        })
    }
}

export!(EndpointSlicePlugin);
