//! `host.translate-address` and `host.translate-endpoint`: map an address (or an address and a
//! port) of the origin cluster to what the peer must use, per peering. The data plane policy
//! lives here so plugins never change when it does.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;

/// An endpoint of a local Service, as `host.translate-endpoint` receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointRef<'a> {
    /// Namespace of the local Service.
    pub namespace: &'a str,
    /// Name of the local Service.
    pub service: &'a str,
    /// Address of a backing pod (an IP).
    pub address: &'a str,
    /// Target port on that pod.
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: &'a str,
}

impl std::fmt::Display for EndpointRef<'_> {
    /// `ns/service address:port/protocol` (IPv6 addresses in brackets), as errors name it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (namespace, service, address, port, protocol) = (
            self.namespace,
            self.service,
            self.address,
            self.port,
            self.protocol,
        );
        if address.contains(':') {
            write!(f, "{namespace}/{service} [{address}]:{port}/{protocol}")
        } else {
            write!(f, "{namespace}/{service} {address}:{port}/{protocol}")
        }
    }
}

/// The endpoint the peer must connect to (`host.translated-endpoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslatedEndpoint {
    /// IP address.
    pub address: String,
    /// Port.
    pub port: u16,
}

/// Translates origin-cluster addresses and endpoints for one peering.
pub trait AddressTranslator: Send + Sync {
    /// Returns the translated address, or an error naming the address and the reason.
    fn translate(&self, address: &str) -> Result<String, String>;

    /// Returns the endpoint the peer must use for `endpoint`. The default translates the
    /// address with [`AddressTranslator::translate`] and keeps the port: right for every
    /// translation that only rewrites addresses (identity, CIDR remapping).
    fn translate_endpoint(&self, endpoint: &EndpointRef<'_>) -> Result<TranslatedEndpoint, String> {
        let address = self
            .translate(endpoint.address)
            .map_err(|error| format!("cannot translate endpoint {endpoint}: {error}"))?;
        Ok(TranslatedEndpoint {
            address,
            port: endpoint.port,
        })
    }
}

/// Flat network: addresses are reachable as they are.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdentityTranslation;

impl AddressTranslator for IdentityTranslation {
    fn translate(&self, address: &str) -> Result<String, String> {
        IpAddr::from_str(address).map_err(|_| format!("{address:?} is not an IP address"))?;
        Ok(address.to_string())
    }
}

/// CIDR remapping: an address inside `from` keeps its host bits and takes the network of `to`
/// (london's pod CIDR 10.200.0.0/16 seen from newyork as 10.201.0.0/16). Addresses outside every
/// rule are returned unchanged (for example a secondary CIDR that does not overlap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrRemap {
    rules: Vec<(IpNet, IpNet)>,
}

impl CidrRemap {
    /// Builds the remapping; each pair must be of the same family and prefix length.
    pub fn new(rules: Vec<(IpNet, IpNet)>) -> Result<Self, String> {
        for (from, to) in &rules {
            if from.prefix_len() != to.prefix_len() {
                return Err(format!(
                    "cannot remap {from} to {to}: prefix lengths differ ({} vs {})",
                    from.prefix_len(),
                    to.prefix_len()
                ));
            }
            if from.addr().is_ipv4() != to.addr().is_ipv4() {
                return Err(format!(
                    "cannot remap {from} to {to}: address families differ"
                ));
            }
        }
        Ok(Self { rules })
    }

    /// Parses `FROM=TO[,FROM=TO...]`, for example `10.200.0.0/16=10.201.0.0/16`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (from, to) = part.split_once('=').ok_or_else(|| {
                format!("{part:?} is not FROM=TO (e.g. 10.200.0.0/16=10.201.0.0/16)")
            })?;
            let parse =
                |s: &str| IpNet::from_str(s.trim()).map_err(|_| format!("{s:?} is not a CIDR"));
            rules.push((parse(from)?.trunc(), parse(to)?.trunc()));
        }
        Self::new(rules)
    }
}

impl AddressTranslator for CidrRemap {
    fn translate(&self, address: &str) -> Result<String, String> {
        let ip =
            IpAddr::from_str(address).map_err(|_| format!("{address:?} is not an IP address"))?;
        for (from, to) in &self.rules {
            if !from.contains(&ip) {
                continue;
            }
            let translated = match (ip, to.network(), to.hostmask()) {
                (IpAddr::V4(a), IpAddr::V4(net), IpAddr::V4(host)) => IpAddr::V4(
                    std::net::Ipv4Addr::from((u32::from(a) & u32::from(host)) | u32::from(net)),
                ),
                (IpAddr::V6(a), IpAddr::V6(net), IpAddr::V6(host)) => IpAddr::V6(
                    std::net::Ipv6Addr::from((u128::from(a) & u128::from(host)) | u128::from(net)),
                ),
                _ => continue,
            };
            return Ok(translated.to_string());
        }
        Ok(address.to_string())
    }
}

/// Gateway mode: every address and endpoint of the local cluster is reached through the peer's gateway.
///
/// The peer cannot route to this cluster's pods, so each endpoint becomes the gateway's address
/// and port; the gateway forwards to the Service. Pod identity is lost on purpose: the plugin
/// merges the endpoints that translate to the same address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayTranslation {
    endpoint: SocketAddr,
}

impl GatewayTranslation {
    /// Translates everything to `endpoint`, the gateway as the peer reaches it.
    pub fn new(endpoint: SocketAddr) -> Self {
        Self { endpoint }
    }

    /// The gateway's address and port.
    pub fn endpoint(&self) -> SocketAddr {
        self.endpoint
    }
}

impl AddressTranslator for GatewayTranslation {
    fn translate(&self, address: &str) -> Result<String, String> {
        // Validated although it is replaced: garbage in a slice is a bug to report, not to hide.
        IpAddr::from_str(address).map_err(|_| format!("{address:?} is not an IP address"))?;
        Ok(self.endpoint.ip().to_string())
    }

    fn translate_endpoint(&self, endpoint: &EndpointRef<'_>) -> Result<TranslatedEndpoint, String> {
        IpAddr::from_str(endpoint.address).map_err(|_| {
            format!(
                "cannot translate endpoint {endpoint} through the gateway {}: {:?} is not an IP address",
                self.endpoint, endpoint.address
            )
        })?;
        Ok(TranslatedEndpoint {
            address: self.endpoint.ip().to_string(),
            port: self.endpoint.port(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_keeps_addresses_and_rejects_garbage() {
        assert_eq!(
            IdentityTranslation.translate("10.200.0.7").unwrap(),
            "10.200.0.7"
        );
        assert!(IdentityTranslation.translate("pod-a").is_err());
    }

    #[test]
    fn remap_keeps_host_bits() {
        let r = CidrRemap::parse("10.200.0.0/16=10.201.0.0/16").unwrap();
        assert_eq!(r.translate("10.200.3.7").unwrap(), "10.201.3.7");
        assert_eq!(r.translate("10.202.3.7").unwrap(), "10.202.3.7");
    }

    #[test]
    fn remap_ipv6() {
        let r = CidrRemap::parse("fd00:1::/64=fd00:2::/64").unwrap();
        assert_eq!(r.translate("fd00:1::5").unwrap(), "fd00:2::5");
    }

    #[test]
    fn rejects_mismatched_rules() {
        assert!(CidrRemap::parse("10.200.0.0/16=10.201.0.0/24").is_err());
        assert!(CidrRemap::parse("10.200.0.0/16=fd00::/16").is_err());
        assert!(CidrRemap::parse("10.200.0.0/16").is_err());
        assert!(CidrRemap::parse("x=y").is_err());
    }

    fn endpoint<'a>(address: &'a str, port: u16) -> EndpointRef<'a> {
        EndpointRef {
            namespace: "liqo-demo",
            service: "flights",
            address,
            port,
            protocol: "TCP",
        }
    }

    fn translated(address: &str, port: u16) -> TranslatedEndpoint {
        TranslatedEndpoint {
            address: address.to_string(),
            port,
        }
    }

    #[test]
    fn identity_endpoint_keeps_address_and_port() {
        assert_eq!(
            IdentityTranslation
                .translate_endpoint(&endpoint("10.200.0.7", 8080))
                .unwrap(),
            translated("10.200.0.7", 8080)
        );
        let error = IdentityTranslation
            .translate_endpoint(&endpoint("pod-a", 8080))
            .unwrap_err();
        assert!(
            error.contains("liqo-demo/flights pod-a:8080/TCP") && error.contains("not an IP"),
            "{error}"
        );
    }

    #[test]
    fn remap_endpoint_rewrites_the_address_and_keeps_the_port() {
        let r = CidrRemap::parse("10.200.0.0/16=10.201.0.0/16").unwrap();
        assert_eq!(
            r.translate_endpoint(&endpoint("10.200.3.7", 7999)).unwrap(),
            translated("10.201.3.7", 7999)
        );
        let r = CidrRemap::parse("fd00:1::/64=fd00:2::/64").unwrap();
        assert_eq!(
            r.translate_endpoint(&endpoint("fd00:1::5", 53)).unwrap(),
            translated("fd00:2::5", 53)
        );
        let error = r
            .translate_endpoint(&endpoint("fd00:1::zz", 53))
            .unwrap_err();
        assert!(error.contains("[fd00:1::zz]:53/TCP"), "{error}");
    }

    #[test]
    fn gateway_replaces_every_address_and_port() {
        let gateway = GatewayTranslation::new("10.96.0.50:7901".parse().unwrap());
        assert_eq!(gateway.endpoint(), "10.96.0.50:7901".parse().unwrap());
        assert_eq!(gateway.translate("10.200.0.7").unwrap(), "10.96.0.50");
        assert_eq!(
            gateway
                .translate_endpoint(&endpoint("10.200.0.7", 8080))
                .unwrap(),
            translated("10.96.0.50", 7901)
        );
        // Two pods of the Service: the same gateway endpoint.
        assert_eq!(
            gateway
                .translate_endpoint(&endpoint("10.200.4.2", 8080))
                .unwrap(),
            translated("10.96.0.50", 7901)
        );
        let v6 = GatewayTranslation::new("[fd00:96::50]:7901".parse().unwrap());
        assert_eq!(
            v6.translate_endpoint(&endpoint("fd00:1::5", 80)).unwrap(),
            translated("fd00:96::50", 7901)
        );
    }

    #[test]
    fn gateway_rejects_non_ip_addresses() {
        let gateway = GatewayTranslation::new("10.96.0.50:7901".parse().unwrap());
        assert!(gateway.translate("flights.example.com").is_err());
        let error = gateway
            .translate_endpoint(&endpoint("flights.example.com", 8080))
            .unwrap_err();
        assert!(
            error.contains("liqo-demo/flights flights.example.com:8080/TCP")
                && error.contains("10.96.0.50:7901")
                && error.contains("not an IP"),
            "{error}"
        );
    }

    #[test]
    fn translators_work_through_the_shared_handle() {
        // What the host import calls: the trait object, default method included.
        let handles: Vec<super::super::AddressTranslatorRef> = vec![
            std::sync::Arc::new(IdentityTranslation),
            std::sync::Arc::new(CidrRemap::parse("10.200.0.0/16=10.201.0.0/16").unwrap()),
            std::sync::Arc::new(GatewayTranslation::new("10.96.0.50:7901".parse().unwrap())),
        ];
        let got: Vec<TranslatedEndpoint> = handles
            .iter()
            .map(|t| t.translate_endpoint(&endpoint("10.200.1.1", 80)).unwrap())
            .collect();
        assert_eq!(
            got,
            vec![
                translated("10.200.1.1", 80),
                translated("10.201.1.1", 80),
                translated("10.96.0.50", 7901)
            ]
        );
    }
}
