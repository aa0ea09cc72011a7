//! `host.translate-address`: maps an address of the origin cluster to the address the peer
//! must use, per peering. The data plane policy lives here so plugins never change when it does.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// Translates origin-cluster addresses for one peering.
pub trait AddressTranslator: Send + Sync {
    /// Returns the translated address, or an error naming the address and the reason.
    fn translate(&self, address: &str) -> Result<String, String>;
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
}
