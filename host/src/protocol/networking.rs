//! What a ForeignCluster's `spec.networking` (written from the provider's peer command) means
//! for the data path: the peer's gateway and the address translation towards it. Shared with
//! `liqoctl plugin diff`, which must reflect exactly as the host does.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use liqo_gateway::Fingerprint;

use crate::api::foreign_cluster::{AddressTranslation, ForeignCluster};
use crate::plugin::{AddressTranslator, CidrRemap, GatewayTranslation, IdentityTranslation};

/// The peer's gateway from `spec.networking` (pinned fingerprint, service endpoint), `None`
/// when the peering is not in gateway mode, or why the spec is unusable.
pub fn gateway_of(fc: &ForeignCluster) -> Result<Option<(Fingerprint, SocketAddr)>, String> {
    let Some(net) = &fc.spec.networking else {
        return Ok(None);
    };
    if net.address_translation != AddressTranslation::Gateway {
        return Ok(None);
    }
    let gateway = net.gateway.as_ref().ok_or_else(|| {
        "addressTranslation is Gateway but spec.networking.gateway is missing: peer again with \
         the peer command of a cluster that runs a gateway"
            .to_string()
    })?;
    let fingerprint = Fingerprint::from_str(&gateway.fingerprint)
        .map_err(|e| format!("spec.networking.gateway.fingerprint: {e}"))?;
    let endpoint = SocketAddr::from_str(&gateway.endpoint).map_err(|_| {
        format!(
            "spec.networking.gateway.endpoint {:?} is not IP:PORT",
            gateway.endpoint
        )
    })?;
    Ok(Some((fingerprint, endpoint)))
}

/// The address translation the host uses towards the peer of `fc` (from `spec.networking`);
/// an error says what is wrong with the spec.
pub fn translator(fc: &ForeignCluster) -> Result<Arc<dyn AddressTranslator>, String> {
    let Some(net) = &fc.spec.networking else {
        return Ok(Arc::new(IdentityTranslation));
    };
    match net.address_translation {
        AddressTranslation::Identity => Ok(Arc::new(IdentityTranslation)),
        AddressTranslation::Gateway => {
            let (_, endpoint) = gateway_of(fc)?.ok_or("no gateway")?;
            Ok(Arc::new(GatewayTranslation::new(endpoint)))
        }
        AddressTranslation::CidrRemap => {
            let spec = net
                .remapping
                .iter()
                .map(|m| format!("{}={}", m.local_cidr, m.remote_cidr))
                .collect::<Vec<_>>()
                .join(",");
            Ok(Arc::new(CidrRemap::parse(&spec)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn foreign_cluster(networking: serde_json::Value) -> ForeignCluster {
        serde_json::from_value(json!({
            "apiVersion": "core.liqo.io/v1beta1", "kind": "ForeignCluster",
            "metadata": {"name": "newyork"},
            "spec": {"clusterID": "newyork", "networking": networking},
        }))
        .unwrap()
    }

    #[test]
    fn gateway_translation_comes_from_the_spec() {
        let fc = foreign_cluster(json!({"addressTranslation": "Gateway",
            "gateway": {"fingerprint": "cd".repeat(32), "endpoint": "10.0.0.5:7901"}}));
        let translated = translator(&fc).unwrap().translate("10.244.0.7").unwrap();
        assert_eq!(translated, "10.0.0.5");
        let broken = foreign_cluster(json!({"addressTranslation": "Gateway"}));
        let err = translator(&broken).err().unwrap();
        assert!(err.contains("spec.networking.gateway is missing"), "{err}");
    }
}
