//! What a ForeignCluster's `spec.networking` (written from the provider's peer command) means
//! for the data path: the peer's gateway and the address translation towards it (shared with
//! `liqoctl plugin diff`, which must reflect exactly as the host does), and the gateway a
//! consumer announces on its peering Lease for the provider to dial.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use liqo_gateway::Fingerprint;

use serde_json::json;

use crate::api::foreign_cluster::{AddressTranslation, ForeignCluster};
use crate::api::wire::{LEASE_ADDRESS_ANNOTATION, LEASE_FINGERPRINT_ANNOTATION};
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

/// A consumer this cluster imports from: we dial it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportPeer {
    /// Pinned fingerprint of its gateway.
    pub fingerprint: Fingerprint,
    /// `HOST:PORT` of its link listener.
    pub address: String,
}

/// The gateway annotations a consumer writes on its peering Lease: its gateway's link
/// address and pinned fingerprint (`None`: no gateway to announce, the annotations go).
pub fn lease_annotations(gateway: Option<(&str, Fingerprint)>) -> serde_json::Value {
    match gateway {
        Some((address, fingerprint)) => json!({
            LEASE_ADDRESS_ANNOTATION: address,
            LEASE_FINGERPRINT_ANNOTATION: fingerprint.to_string(),
        }),
        None => json!({
            LEASE_ADDRESS_ANNOTATION: null,
            LEASE_FINGERPRINT_ANNOTATION: null,
        }),
    }
}

/// The consumer's gateway as its Lease announces it, or why it cannot be used.
pub fn import_peer_of(
    annotations: &BTreeMap<String, String>,
) -> Option<Result<ImportPeer, String>> {
    let address = annotations.get(LEASE_ADDRESS_ANNOTATION)?;
    let Some(fingerprint) = annotations.get(LEASE_FINGERPRINT_ANNOTATION) else {
        return Some(Err(format!(
            "annotation {LEASE_FINGERPRINT_ANNOTATION} is missing"
        )));
    };
    let checked = SocketAddr::from_str(address)
        .map_err(|_| format!("gateway address {address:?} is not IP:PORT"))
        .and_then(|addr| {
            let ip = addr.ip();
            let refused = ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_multicast()
                || addr.port() == 0
                || match ip {
                    IpAddr::V4(v4) => v4.is_link_local() || v4.is_broadcast(),
                    IpAddr::V6(v6) => v6.is_unicast_link_local(),
                };
            if refused {
                Err(format!(
                    "gateway address {address} is not one a peer can be dialed at (loopback, \
                     link-local, multicast, unspecified or port 0)"
                ))
            } else {
                Ok(addr)
            }
        });
    Some(checked.and_then(|addr| {
        Fingerprint::from_str(fingerprint)
            .map_err(|e| e.to_string())
            .map(|fingerprint| ImportPeer {
                fingerprint,
                address: addr.to_string(),
            })
    }))
}

/// A ForeignCluster `newyork` with `networking` as its `spec.networking` (a test fixture, also
/// for the peering controller's tests).
#[cfg(test)]
pub(crate) fn foreign_cluster_with(networking: serde_json::Value) -> ForeignCluster {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "core.liqo.io/v1beta1", "kind": "ForeignCluster",
        "metadata": {"name": "newyork"},
        "spec": {"clusterID": "newyork", "networking": networking},
    }))
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use super::foreign_cluster_with as foreign_cluster;

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

    #[test]
    fn lease_annotations_name_the_gateway() {
        let fp = "ab".repeat(32);
        let mut annotations = BTreeMap::new();
        assert!(import_peer_of(&annotations).is_none());
        annotations.insert(
            LEASE_ADDRESS_ANNOTATION.to_string(),
            "172.30.0.10:7900".into(),
        );
        assert!(import_peer_of(&annotations).unwrap().is_err());
        for bad in [
            "gateway:7900",
            "127.0.0.1:7900",
            "169.254.169.254:80",
            "0.0.0.0:7900",
            "[::1]:7900",
            "172.30.0.10:0",
        ] {
            let mut a = annotations.clone();
            a.insert(LEASE_ADDRESS_ANNOTATION.to_string(), bad.into());
            a.insert(LEASE_FINGERPRINT_ANNOTATION.to_string(), fp.clone());
            assert!(import_peer_of(&a).unwrap().is_err(), "{bad} accepted");
        }
        annotations.insert(LEASE_FINGERPRINT_ANNOTATION.to_string(), "xyz".into());
        assert!(
            import_peer_of(&annotations)
                .unwrap()
                .unwrap_err()
                .contains("64 hex digits")
        );
        annotations.insert(LEASE_FINGERPRINT_ANNOTATION.to_string(), fp.clone());
        let peer = import_peer_of(&annotations).unwrap().unwrap();
        assert_eq!(peer.address, "172.30.0.10:7900");
        assert_eq!(peer.fingerprint.to_string(), fp);
    }
}
