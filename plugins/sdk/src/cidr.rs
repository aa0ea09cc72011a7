//! CIDR-to-CIDR address remapping, the kind of translation a peering applies when the two
//! clusters' pod CIDRs overlap (`10.200.0.0/16` in london seen as `10.201.0.0/16` in newyork).
//!
//! Used by [`crate::FakeHost`] and by golden-case contexts (`"translate"`); the real host has its
//! own network mapping but may reuse this.

use std::net::IpAddr;

/// One prefix mapping: addresses inside `from` keep their host bits and get `to`'s network bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrMapping {
    from: IpAddr,
    to: IpAddr,
    prefix_len: u8,
}

/// A set of [`CidrMapping`]s. Addresses outside every mapping are returned unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CidrMap {
    mappings: Vec<CidrMapping>,
}

/// Parses `a.b.c.d/n` or `x::y/n` into its network address and prefix length.
fn parse_cidr(text: &str) -> Result<(IpAddr, u8), String> {
    let (address, prefix) = text.split_once('/').ok_or_else(|| {
        format!("invalid CIDR \"{text}\": expected ADDRESS/PREFIX, e.g. 10.200.0.0/16")
    })?;
    let address: IpAddr = address
        .parse()
        .map_err(|_| format!("invalid CIDR \"{text}\": \"{address}\" is not an IP address"))?;
    let max = address_bits(&address);
    let prefix_len: u8 = prefix
        .parse()
        .ok()
        .filter(|len| u32::from(*len) <= max)
        .ok_or_else(|| {
            format!("invalid CIDR \"{text}\": prefix length must be between 0 and {max}")
        })?;
    Ok((address, prefix_len))
}

fn address_bits(address: &IpAddr) -> u32 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn to_bits(address: &IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(*v4)),
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

/// The mask selecting the network bits of a `prefix_len` prefix in an address of `bits` bits.
fn network_mask(bits: u32, prefix_len: u8) -> u128 {
    let all = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    let host_bits = bits - u32::from(prefix_len);
    if host_bits >= 128 {
        0
    } else {
        all & !((1u128 << host_bits) - 1)
    }
}

fn from_bits(template: &IpAddr, bits: u128) -> IpAddr {
    match template {
        // Truncation is intended: an IPv4 value occupies the low 32 bits.
        IpAddr::V4(_) => IpAddr::V4((bits as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(bits.into()),
    }
}

impl CidrMapping {
    /// Builds a mapping from two CIDRs of the same family and prefix length.
    pub fn new(from: &str, to: &str) -> Result<Self, String> {
        let (from_address, from_len) = parse_cidr(from)?;
        let (to_address, to_len) = parse_cidr(to)?;
        if from_address.is_ipv4() != to_address.is_ipv4() {
            return Err(format!(
                "cannot map {from} to {to}: the address families differ"
            ));
        }
        if from_len != to_len {
            return Err(format!(
                "cannot map {from} to {to}: the prefix lengths differ (/{from_len} vs /{to_len})"
            ));
        }
        Ok(Self {
            from: from_address,
            to: to_address,
            prefix_len: from_len,
        })
    }

    /// The translated address if `address` is inside this mapping's source CIDR.
    fn apply(&self, address: &IpAddr) -> Option<IpAddr> {
        if address.is_ipv4() != self.from.is_ipv4() {
            return None;
        }
        let mask = network_mask(address_bits(address), self.prefix_len);
        let bits = to_bits(address);
        if bits & mask != to_bits(&self.from) & mask {
            return None;
        }
        Some(from_bits(
            address,
            (to_bits(&self.to) & mask) | (bits & !mask),
        ))
    }
}

impl CidrMap {
    /// An empty map (every address translates to itself).
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a map from `(from, to)` CIDR pairs, e.g. `[("10.200.0.0/16", "10.201.0.0/16")]`.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mappings = pairs
            .into_iter()
            .map(|(from, to)| CidrMapping::new(from, to))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { mappings })
    }

    /// Translates one address. The most specific (longest prefix) matching mapping wins; an
    /// address no mapping covers is returned unchanged (in canonical form). Text that is not an
    /// IP address is an error naming it.
    pub fn translate(&self, address: &str) -> Result<String, String> {
        let parsed: IpAddr = address
            .parse()
            .map_err(|_| format!("cannot translate \"{address}\": not an IP address"))?;
        let translated = self
            .mappings
            .iter()
            .filter_map(|mapping| mapping.apply(&parsed).map(|out| (mapping.prefix_len, out)))
            .max_by_key(|(prefix_len, _)| *prefix_len)
            .map_or(parsed, |(_, out)| out);
        Ok(translated.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaps_network_bits_and_keeps_host_bits() {
        let map = CidrMap::from_pairs([("10.200.0.0/16", "10.201.0.0/16")]).unwrap();
        assert_eq!(map.translate("10.200.3.7").unwrap(), "10.201.3.7");
        assert_eq!(map.translate("10.199.3.7").unwrap(), "10.199.3.7");
    }

    #[test]
    fn longest_prefix_wins() {
        let map =
            CidrMap::from_pairs([("10.0.0.0/8", "11.0.0.0/8"), ("10.1.0.0/16", "12.1.0.0/16")])
                .unwrap();
        assert_eq!(map.translate("10.1.2.3").unwrap(), "12.1.2.3");
        assert_eq!(map.translate("10.2.2.3").unwrap(), "11.2.2.3");
    }

    #[test]
    fn ipv6_and_edge_prefixes() {
        let map = CidrMap::from_pairs([
            ("fd00:10::/64", "fd00:20::/64"),
            ("192.168.1.1/32", "192.168.9.9/32"),
        ])
        .unwrap();
        assert_eq!(map.translate("fd00:10::abcd").unwrap(), "fd00:20::abcd");
        assert_eq!(map.translate("192.168.1.1").unwrap(), "192.168.9.9");
        let everything = CidrMap::from_pairs([("0.0.0.0/0", "0.0.0.0/0")]).unwrap();
        assert_eq!(everything.translate("1.2.3.4").unwrap(), "1.2.3.4");
    }

    #[test]
    fn rejects_bad_input() {
        assert!(
            CidrMapping::new("10.0.0.0/16", "10.1.0.0/24")
                .unwrap_err()
                .contains("prefix lengths differ")
        );
        assert!(
            CidrMapping::new("10.0.0.0/16", "fd00::/16")
                .unwrap_err()
                .contains("families differ")
        );
        assert!(
            CidrMapping::new("10.0.0.0", "10.1.0.0/16")
                .unwrap_err()
                .contains("ADDRESS/PREFIX")
        );
        assert!(
            CidrMapping::new("10.0.0.0/33", "10.1.0.0/33")
                .unwrap_err()
                .contains("between 0 and 32")
        );
        assert!(
            CidrMap::new()
                .translate("not-an-ip")
                .unwrap_err()
                .contains("not-an-ip")
        );
    }
}
