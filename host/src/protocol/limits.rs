//! What a provider allows each peer (`liqoctl install --max-namespaces/--quota/
//! --service-types`): written by liqoctl into the [`LIMITS_CONFIGMAP`] ConfigMap, read by the
//! provider's twins controller ([`crate::twins`]) for every twin namespace it makes.

use std::collections::BTreeMap;

#[cfg(doc)]
use crate::api::wire::LIMITS_CONFIGMAP;
use crate::api::wire::{LIMITS_KEY_MAX_NAMESPACES, LIMITS_KEY_QUOTA, LIMITS_KEY_SERVICE_TYPES};

/// What this cluster allows each peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerLimits {
    /// Twin namespaces per tenant.
    pub max_namespaces: usize,
    /// `spec.hard` of the ResourceQuota in each twin namespace.
    pub quota: BTreeMap<String, String>,
    /// Service types the consumer may write.
    pub service_types: Vec<String>,
}

impl Default for PeerLimits {
    fn default() -> Self {
        Self {
            max_namespaces: 200,
            quota: BTreeMap::from([
                ("count/services".into(), "1000".into()),
                (
                    "count/endpointslices.discovery.k8s.io".into(),
                    "2000".into(),
                ),
                ("services.loadbalancers".into(), "0".into()),
                ("services.nodeports".into(), "20".into()),
            ]),
            service_types: ["ClusterIP", "NodePort", "ExternalName"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// The Service types a provider may allow.
pub const SERVICE_TYPES: &[&str] = &["ClusterIP", "NodePort", "ExternalName", "LoadBalancer"];

impl PeerLimits {
    /// Reads [`LIMITS_CONFIGMAP`]'s data; absent keys keep their defaults.
    pub fn from_data(data: Option<&BTreeMap<String, String>>) -> Result<Self, String> {
        let mut limits = Self::default();
        let Some(data) = data else { return Ok(limits) };
        if let Some(max) = data.get(LIMITS_KEY_MAX_NAMESPACES) {
            limits.max_namespaces = max.trim().parse().map_err(|_| {
                format!("{LIMITS_KEY_MAX_NAMESPACES} {max:?} is not a whole number")
            })?;
        }
        if let Some(quota) = data.get(LIMITS_KEY_QUOTA) {
            limits.quota = parse_quota(quota)?;
        }
        if let Some(types) = data.get(LIMITS_KEY_SERVICE_TYPES) {
            limits.service_types = parse_service_types(types)?;
        }
        Ok(limits)
    }

    /// The ConfigMap data that [`Self::from_data`] reads back.
    pub fn to_data(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                LIMITS_KEY_MAX_NAMESPACES.to_string(),
                self.max_namespaces.to_string(),
            ),
            (
                LIMITS_KEY_QUOTA.to_string(),
                if self.quota.is_empty() {
                    "none".to_string()
                } else {
                    self.quota
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ),
            (
                LIMITS_KEY_SERVICE_TYPES.to_string(),
                self.service_types.join(","),
            ),
        ])
    }
}

/// Parses `count/services=100,requests.storage=0` (ResourceQuota `spec.hard`); `none` (or
/// nothing) is no quota at all: new twin namespaces get none (one made before keeps its own).
pub fn parse_quota(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut hard = BTreeMap::new();
    if text.trim() == "none" {
        return Ok(hard);
    }
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("quota item {item:?} is not RESOURCE=COUNT"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty()
            || v.is_empty()
            || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
        {
            return Err(format!(
                "quota item {item:?} is not RESOURCE=QUANTITY (e.g. count/services=100)"
            ));
        }
        hard.insert(k.to_string(), v.to_string());
    }
    Ok(hard)
}

/// Parses `ClusterIP,NodePort` (each one of [`SERVICE_TYPES`]).
pub fn parse_service_types(text: &str) -> Result<Vec<String>, String> {
    let mut types = Vec::new();
    for t in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !SERVICE_TYPES.contains(&t) {
            return Err(format!(
                "Service type {t:?} is not one of {}",
                SERVICE_TYPES.join(", ")
            ));
        }
        if !types.iter().any(|x| x == t) {
            types.push(t.to_string());
        }
    }
    Ok(types)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_round_trip_and_defaults() {
        let d = PeerLimits::default();
        assert_eq!(PeerLimits::from_data(None).unwrap(), d);
        assert_eq!(PeerLimits::from_data(Some(&d.to_data())).unwrap(), d);
        let custom = PeerLimits::from_data(Some(&BTreeMap::from([
            (LIMITS_KEY_MAX_NAMESPACES.into(), "2".into()),
            (LIMITS_KEY_QUOTA.into(), "count/services=3".into()),
            (LIMITS_KEY_SERVICE_TYPES.into(), "ClusterIP".into()),
        ])))
        .unwrap();
        assert_eq!(custom.max_namespaces, 2);
        assert_eq!(custom.quota["count/services"], "3");
        assert_eq!(custom.service_types, ["ClusterIP"]);
    }

    #[test]
    fn bad_limits_are_named() {
        let e = PeerLimits::from_data(Some(&BTreeMap::from([(
            LIMITS_KEY_MAX_NAMESPACES.into(),
            "many".into(),
        )])))
        .unwrap_err();
        assert!(e.contains("maxNamespacesPerPeer"), "{e}");
        assert!(
            parse_quota("count/services")
                .unwrap_err()
                .contains("RESOURCE=COUNT")
        );
        assert!(parse_quota("a=$(x)").is_err());
        assert!(
            parse_service_types("ClusterIP,Bogus")
                .unwrap_err()
                .contains("Bogus")
        );
        assert_eq!(
            parse_service_types("ClusterIP, ClusterIP").unwrap(),
            ["ClusterIP"]
        );
    }
}
