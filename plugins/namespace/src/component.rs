//! The wasm component: exports `liqo:reflection/namespace-mapper` by calling the native logic.
//!
//! Only conversions live here; every decision is made in [`crate::map_namespace_json`] so the
//! native tests cover exactly what the component runs. The `host` import (logging, cache, address
//! translation) is part of the world but not needed by this plugin.

wit_bindgen::generate!({ world: "namespace-mapper-plugin", path: "../../wit" });

use exports::liqo::reflection::namespace_mapper::Guest;
use liqo::reflection::types;
use liqo_plugin_sdk as sdk;

fn sdk_cluster(cluster: types::ClusterIdentity) -> sdk::ClusterIdentity {
    sdk::ClusterIdentity {
        id: cluster.id,
        name: cluster.name,
    }
}

struct NamespacePlugin;

impl Guest for NamespacePlugin {
    fn map_namespace(
        local_cluster: types::ClusterIdentity,
        remote_cluster: types::ClusterIdentity,
        namespace: String,
        offloading_spec: String,
    ) -> Result<types::NamespaceMapping, String> {
        let mapping = crate::map_namespace_json(
            &sdk_cluster(local_cluster),
            &sdk_cluster(remote_cluster),
            &namespace,
            &offloading_spec,
        )?;
        Ok(types::NamespaceMapping {
            remote_name: mapping.remote_name,
            namespace_object: mapping.namespace_object,
        })
    }
}

export!(NamespacePlugin);
