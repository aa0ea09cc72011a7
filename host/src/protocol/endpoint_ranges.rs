//! Where a peer's EndpointSlices may point, as both sides of a peering see it.
//!
//! A consumer's reflected EndpointSlices carry addresses the provider's kube-proxy will send
//! traffic to, so the provider must never let a token holder point them at something of its
//! own (its API server, its Services, its nodes) or at anything the peering has no business
//! with. The peering therefore **declares** the ranges its endpoints use, and the provider
//! allows only those:
//!
//! - the consumer's host announces its declaration on the peering Lease
//!   ([`DECLARED_RANGES_ANNOTATION`]): its pod ranges with address translation `Identity`, the
//!   ranges the provider sees them as with `CidrRemap`, nothing with `Gateway` (its endpoints
//!   then point at the provider's own gateway, which the provider knows);
//! - the provider [`review`]s the declaration against its own ranges ([`ALWAYS_DENIED_RANGES`]
//!   and [`provider_ranges`]), records the outcome on the tenant namespace
//!   ([`RECORDED_RANGES_ANNOTATION`], [`REFUSED_RANGES_ANNOTATION`]: the consumer cannot write
//!   namespaces) and writes the accepted ranges into every twin namespace, where the
//!   `liqo-peering-reflection` admission policy enforces them.
//!
//! A declaration can change (a CidrRemap edit, a new node's pod range): the provider follows
//! it at once, and never accepts a range that overlaps its own as it reads them (when it cannot
//! read them, it keeps the rules it had). No declaration allows nothing. The admission policy
//! judges writes: EndpointSlices written before a declaration narrowed stay until the consumer
//! changes or deletes them.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::Client;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

use crate::api::foreign_cluster::{AddressTranslation, NetworkingSpec};
use crate::api::wire::DECLARED_RANGES_ANNOTATION;
use crate::api::wire::RECORDED_RANGES_ANNOTATION;
use crate::api::wire::REFUSED_RANGES_ANNOTATION;

/// Longest declaration the tenant admission policy accepts, in characters.
pub const MAX_DECLARATION_LEN: usize = 1024;

/// Always denied to a peer's EndpointSlices: "this network", loopback, link-local (cloud
/// metadata services live there), multicast and broadcast, unspecified addresses, NAT64's
/// well-known prefix (it can embed any IPv4 address, the metadata service's included), and
/// the cloud metadata and host services outside link-local (AWS's IPv6 one, Azure's
/// WireServer).
pub const ALWAYS_DENIED_RANGES: &[&str] = &[
    "0.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/4",
    "255.255.255.255/32",
    "168.63.129.16/32",
    "::/128",
    "::1/128",
    "fe80::/10",
    "ff00::/8",
    "64:ff9b::/96",
    "fd00:ec2::254/128",
];

/// What the consumer declares for a peering with `networking` (absent: `Identity`), given its
/// own pod ranges: `None` for a gateway peering (nothing to declare). CIDRs are normalised to
/// their network and aggregated (sorted, adjacent ranges merged).
pub fn declaration(networking: Option<&NetworkingSpec>, pod_ranges: &[String]) -> Option<String> {
    let translation = networking
        .map(|n| n.address_translation)
        .unwrap_or_default();
    let ranges: Vec<&str> = match translation {
        AddressTranslation::Gateway => return None,
        AddressTranslation::CidrRemap => networking
            .into_iter()
            .flat_map(|n| n.remapping.iter().map(|m| m.remote_cidr.as_str()))
            .collect(),
        AddressTranslation::Identity => pod_ranges.iter().map(String::as_str).collect(),
    };
    // Adjacent node ranges (a /24 per node) merge into one: the declaration stays short.
    let (nets, unparsed): (Vec<_>, Vec<_>) = ranges
        .iter()
        .map(|r| (r.trim(), r.trim().parse::<IpNet>()))
        .filter(|(r, _)| !r.is_empty())
        .partition(|(_, net)| net.is_ok());
    let nets: Vec<IpNet> = nets.into_iter().filter_map(|(_, n)| n.ok()).collect();
    let mut out: Vec<String> = IpNet::aggregate(&nets)
        .iter()
        .map(IpNet::to_string)
        .collect();
    // Kept as written: the provider refuses them and says why.
    for (range, _) in unparsed {
        if !out.iter().any(|o| o == range) {
            out.push(range.to_string());
        }
    }
    Some(out.join(","))
}

/// The Lease annotations carrying `declaration` (a JSON merge patch: `None` removes it).
pub fn lease_annotation(declaration: Option<&str>) -> Value {
    json!({ DECLARED_RANGES_ANNOTATION: declaration })
}

/// This cluster's pod ranges: every Node's `spec.podCIDRs` (Kubernetes allocates them from the
/// cluster CIDR; a new node's range joins the declaration at the next Lease renewal).
pub async fn local_pod_ranges(client: &Client) -> kube::Result<Vec<String>> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let mut ranges: Vec<String> = nodes
        .items
        .into_iter()
        .filter_map(|n| n.spec)
        .flat_map(|s| {
            s.pod_cidrs
                .unwrap_or_default()
                .into_iter()
                .chain(s.pod_cidr)
        })
        .collect();
    ranges.sort();
    ranges.dedup();
    Ok(ranges)
}

/// The provider's review of a declaration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Review {
    /// The declared ranges the peer's endpoints may use, normalised.
    pub accepted: Vec<String>,
    /// The declared ranges refused, each `CIDR: why`.
    pub refused: Vec<String>,
}

impl Review {
    /// The record written on the tenant namespace (a JSON merge patch of its annotations).
    pub fn record(&self) -> Value {
        json!({
            RECORDED_RANGES_ANNOTATION: self.accepted.join(","),
            REFUSED_RANGES_ANNOTATION:
                (!self.refused.is_empty()).then(|| self.refused.join("; ")),
        })
    }

    /// Whether `annotations` (a tenant namespace's) already hold this record.
    pub fn recorded_in(&self, annotations: &std::collections::BTreeMap<String, String>) -> bool {
        let refused = (!self.refused.is_empty()).then(|| self.refused.join("; "));
        annotations.get(RECORDED_RANGES_ANNOTATION) == Some(&self.accepted.join(","))
            && annotations.get(REFUSED_RANGES_ANNOTATION) == refused.as_ref()
    }
}

/// Reviews `declared` (comma-separated CIDRs, as the Lease carries it) against this cluster's
/// `own` ranges: a range is refused when it is not a CIDR, or overlaps one of
/// [`ALWAYS_DENIED_RANGES`] or of `own` (either containing the other). Pure, so the rules are
/// tested without a cluster.
pub fn review(declared: &str, own: &[String]) -> Review {
    let denied: Vec<(IpNet, &str)> = ALWAYS_DENIED_RANGES
        .iter()
        .filter_map(|r| Some((r.parse().ok()?, "a range no peer may use")))
        .chain(
            own.iter()
                .filter_map(|r| Some((r.parse().ok()?, "a range of this cluster"))),
        )
        .collect();
    let mut out = Review::default();
    for range in declared.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let Ok(net) = range.parse::<IpNet>() else {
            out.refused.push(format!("{range}: not a CIDR"));
            continue;
        };
        let net = net.trunc();
        if let Some((own, what)) = denied.iter().find(|(d, _)| overlaps(&net, d)) {
            out.refused.push(format!("{net}: overlaps {own}, {what}"));
            continue;
        }
        let text = net.to_string();
        if !out.accepted.contains(&text) {
            out.accepted.push(text);
        }
    }
    out
}

/// Whether two networks share an address (of one family, one contains the other's network).
fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// This cluster's own address ranges that a peer's endpoints may never point at: its Service
/// ranges (ServiceCIDR objects), its nodes' addresses and pod ranges, and the addresses of its
/// API server (the `kubernetes` Service's endpoints). Read each time. A read that fails is an
/// error, so the caller keeps the rules it had rather than judging with ranges missing (fail
/// closed); only a cluster without the ServiceCIDR API (before Kubernetes 1.33) is read
/// without it, with a warning (its Service range is then not known, see docs/security.md).
pub async fn provider_ranges(client: &Client) -> kube::Result<Vec<String>> {
    let host = |ip: IpAddr| format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 });
    let mut ranges = Vec::new();
    for node in Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
    {
        if let Some(spec) = node.spec {
            ranges.extend(spec.pod_cidrs.unwrap_or_default());
            ranges.extend(spec.pod_cidr);
        }
        for address in node.status.and_then(|s| s.addresses).unwrap_or_default() {
            if let Ok(ip) = address.address.parse() {
                ranges.push(host(ip));
            }
        }
    }
    match Api::<ServiceCIDR>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => ranges.extend(
            list.items
                .into_iter()
                .filter_map(|c| c.spec)
                .flat_map(|s| s.cidrs.unwrap_or_default()),
        ),
        Err(kube::Error::Api(s)) if s.code == 404 => tracing::warn!(
            "this cluster serves no ServiceCIDR API (Kubernetes before 1.33): its Service range \
             is not denied to peers' endpoints"
        ),
        Err(e) => return Err(e),
    }
    for slice in Api::<EndpointSlice>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("kubernetes.io/service-name=kubernetes"))
        .await?
        .items
    {
        for endpoint in slice.endpoints {
            for address in endpoint.addresses {
                if let Ok(ip) = address.parse() {
                    ranges.push(host(ip));
                }
            }
        }
    }
    ranges.sort();
    ranges.dedup();
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::foreign_cluster::CidrMapping;

    fn networking(translation: AddressTranslation, remote: &[&str]) -> NetworkingSpec {
        NetworkingSpec {
            address_translation: translation,
            remapping: remote
                .iter()
                .map(|r| CidrMapping {
                    local_cidr: "10.200.0.0/16".into(),
                    remote_cidr: r.to_string(),
                })
                .collect(),
            gateway: None,
        }
    }

    #[test]
    fn each_translation_declares_what_its_endpoints_use() {
        let pods = ["10.200.0.0/16".to_string(), "10.200.0.0/16".to_string()];
        // Identity (also when networking is absent): the pod ranges, once each.
        assert_eq!(declaration(None, &pods).as_deref(), Some("10.200.0.0/16"));
        let identity = networking(AddressTranslation::Identity, &[]);
        assert_eq!(
            declaration(Some(&identity), &pods).as_deref(),
            Some("10.200.0.0/16")
        );
        // CidrRemap: what the provider sees, normalised; the pod ranges are not used.
        let remap = networking(
            AddressTranslation::CidrRemap,
            &["10.70.0.9/16", "fd00:70::/64"],
        );
        assert_eq!(
            declaration(Some(&remap), &pods).as_deref(),
            Some("10.70.0.0/16,fd00:70::/64")
        );
        // Gateway: nothing to declare.
        let gateway = networking(AddressTranslation::Gateway, &[]);
        assert_eq!(declaration(Some(&gateway), &pods), None);
        // One /24 per node: merged where adjacent.
        let nodes: Vec<String> = (0..4).map(|i| format!("10.244.{i}.0/24")).collect();
        assert_eq!(
            declaration(None, &nodes[..3]).as_deref(),
            Some("10.244.0.0/23,10.244.2.0/24")
        );
        assert_eq!(declaration(None, &nodes).as_deref(), Some("10.244.0.0/22"));
        // No pod range known: an empty declaration (the provider then allows nothing).
        assert_eq!(declaration(None, &[]).as_deref(), Some(""));
    }

    #[test]
    fn review_accepts_only_ranges_apart_from_the_providers() {
        let own = [
            "10.201.0.0/16".to_string(),
            "10.96.0.0/16".to_string(),
            "172.30.0.11/32".to_string(),
        ];
        let r = review(
            "10.200.0.0/16, 10.200.0.0/16,10.201.4.0/24,10.0.0.0/8,172.30.0.0/24,127.0.0.1/32,\
             169.254.169.254/32,0.0.0.0/0,bogus,fd00:70::/64",
            &own,
        );
        assert_eq!(r.accepted, ["10.200.0.0/16", "fd00:70::/64"]);
        assert_eq!(
            r.refused,
            [
                "10.201.4.0/24: overlaps 10.201.0.0/16, a range of this cluster",
                "10.0.0.0/8: overlaps 10.201.0.0/16, a range of this cluster",
                "172.30.0.0/24: overlaps 172.30.0.11/32, a range of this cluster",
                "127.0.0.1/32: overlaps 127.0.0.0/8, a range no peer may use",
                "169.254.169.254/32: overlaps 169.254.0.0/16, a range no peer may use",
                "0.0.0.0/0: overlaps 0.0.0.0/8, a range no peer may use",
                "bogus: not a CIDR",
            ]
        );
        // Nothing declared: nothing accepted, nothing refused.
        assert_eq!(review("", &own), Review::default());
    }

    #[test]
    fn the_record_round_trips_through_annotations() {
        let r = review("10.200.0.0/16,bogus", &[]);
        let record = r.record();
        let annotations: std::collections::BTreeMap<String, String> = record
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        assert!(r.recorded_in(&annotations));
        assert_eq!(annotations[RECORDED_RANGES_ANNOTATION], "10.200.0.0/16");
        assert_eq!(annotations[REFUSED_RANGES_ANNOTATION], "bogus: not a CIDR");
        // Nothing refused: the refusal annotation is removed.
        let clean = review("10.200.0.0/16", &[]);
        assert_eq!(clean.record()[REFUSED_RANGES_ANNOTATION], Value::Null);
        assert!(!clean.recorded_in(&annotations));
    }
}
