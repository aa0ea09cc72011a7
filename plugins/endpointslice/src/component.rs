//! The wasm component: exports `liqo:reflection/reflector` by calling the native transform.
//!
//! Every decision is made in [`crate::reflect_json`] so the native tests cover exactly what the
//! component runs; the SDK's export macro does the conversions.

use liqo_plugin_sdk::{DecisionJson, HostApi, Manifest, ReflectContext, Reflector};

/// The EndpointSlice plugin, as the SDK exports it.
struct EndpointSlicePlugin;

impl Reflector for EndpointSlicePlugin {
    fn manifest() -> Manifest {
        crate::manifest()
    }

    fn reflect(
        host: &dyn HostApi,
        ctx: &ReflectContext,
        object: &str,
    ) -> Result<DecisionJson, String> {
        crate::reflect_json(host, ctx, object)
    }
}

liqo_plugin_sdk::export_reflector!(EndpointSlicePlugin);
