//! What the EndpointSlice plugin declares to the host.

use liqo_plugin_sdk::{Manifest, kinds};

/// The plugin's manifest: reflects `discovery.k8s.io/v1` EndpointSlices; reads core `v1`
/// Services (a slice follows its Service's reflection decision) and is re-triggered by their
/// changes; no status.
pub fn manifest() -> Manifest {
    Manifest {
        name: "endpointslice".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        description: "Reflects the EndpointSlices of reflected Services, translating endpoint addresses for the \
                      remote cluster"
            .to_owned(),
        reflects: vec![kinds::endpoint_slice()],
        triggers: vec![kinds::service()],
        reads: vec![kinds::service()],
        reflect_status: false,
    }
}
