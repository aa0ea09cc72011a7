//! The wasm component: exports `liqo:reflection/namespace-mapper` by calling the native logic.
//!
//! Every decision is made in [`crate::map_namespace_json`] so the native tests cover exactly
//! what the component runs; the SDK's export macro does the conversions. The `host` import
//! (logging, cache, address translation) is part of the world but not needed by this plugin.

use liqo_plugin_sdk::{ClusterIdentity, NamespaceMapper, NamespaceMappingJson};

/// The namespace plugin, as the SDK exports it.
struct NamespacePlugin;

impl NamespaceMapper for NamespacePlugin {
    fn map_namespace(
        local: &ClusterIdentity,
        remote: &ClusterIdentity,
        namespace: &str,
        offloading_spec: &str,
    ) -> Result<NamespaceMappingJson, String> {
        crate::map_namespace_json(local, remote, namespace, offloading_spec)
    }
}

liqo_plugin_sdk::export_namespace_mapper!(NamespacePlugin);
