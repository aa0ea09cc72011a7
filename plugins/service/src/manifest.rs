//! What the Service plugin declares to the host.

use liqo_plugin_sdk::{Manifest, kinds};

/// The plugin's manifest: reflects core `v1` Services, reads and triggers nothing, no status.
pub fn manifest() -> Manifest {
    Manifest {
        name: "service".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        description:
            "Reflects Services: same name, type, selector and ports; the remote cluster allocates \
                      its own cluster IPs and node ports"
                .to_owned(),
        reflects: vec![kinds::service()],
        triggers: Vec::new(),
        reads: Vec::new(),
        reflect_status: false,
    }
}
