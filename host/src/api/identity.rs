//! The identity of this cluster, kept as in Liqo in the ConfigMap
//! `liqo/liqo-clusterid-configmap` with the keys `CLUSTER_ID` and `CLUSTER_NAME`.
//! `liqoctl install` creates it; the host reads it at startup.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;

/// Namespace of the identity ConfigMap.
pub const CLUSTER_IDENTITY_NAMESPACE: &str = "liqo";
/// Name of the identity ConfigMap.
pub const CLUSTER_IDENTITY_CONFIGMAP: &str = "liqo-clusterid-configmap";
/// Key of the cluster id in the identity ConfigMap.
pub const CLUSTER_ID_KEY: &str = "CLUSTER_ID";
/// Key of the cluster's display name in the identity ConfigMap.
pub const CLUSTER_NAME_KEY: &str = "CLUSTER_NAME";

/// A cluster taking part in a peering: what a peer is called on the wire (the origin and
/// destination labels carry the id) and what plugins are told in every call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ClusterIdentity {
    /// Stable cluster id.
    pub id: String,
    /// Human-friendly name.
    pub name: String,
}

/// This cluster's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterIdentityConfig {
    /// The cluster id: the value of the `offloading.liqo.io/origin` label on every object this
    /// cluster reflects, and the suffix of `DefaultName` remote namespaces.
    pub cluster_id: String,
    /// The display name (the cluster id when `CLUSTER_NAME` is absent or empty).
    pub cluster_name: String,
}

/// Why the identity ConfigMap cannot be used. Every message names the ConfigMap and the fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// The ConfigMap does not exist (for callers that got a 404 reading it).
    #[error(
        "ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{CLUSTER_IDENTITY_CONFIGMAP} not found: this cluster has no identity; run `liqoctl install`"
    )]
    NotFound,
    /// The ConfigMap has no `CLUSTER_ID` or an empty one.
    #[error(
        "ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{CLUSTER_IDENTITY_CONFIGMAP} has no {CLUSTER_ID_KEY} in data: run `liqoctl install` to set up the cluster identity"
    )]
    MissingClusterId,
    /// `CLUSTER_ID` is not a valid label value.
    #[error(
        "ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{CLUSTER_IDENTITY_CONFIGMAP}: {CLUSTER_ID_KEY} {0:?} is not a valid label value (at most 63 characters: letters, digits, '-', '_', '.', starting and ending with a letter or digit); fix it or run `liqoctl install` again"
    )]
    InvalidClusterId(String),
}

impl ClusterIdentityConfig {
    /// Parses the identity from the ConfigMap's `data`.
    pub fn from_config_map(cm: &ConfigMap) -> Result<Self, IdentityError> {
        let data = cm.data.as_ref();
        let get = |key: &str| {
            data.and_then(|d| d.get(key))
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        let cluster_id = get(CLUSTER_ID_KEY).ok_or(IdentityError::MissingClusterId)?;
        if !is_label_value(cluster_id) {
            return Err(IdentityError::InvalidClusterId(cluster_id.to_string()));
        }
        let cluster_name = get(CLUSTER_NAME_KEY).unwrap_or(cluster_id);
        Ok(Self {
            cluster_id: cluster_id.to_string(),
            cluster_name: cluster_name.to_string(),
        })
    }

    /// The identity ConfigMap holding this identity (what `liqoctl install` writes).
    pub fn to_config_map(&self) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(CLUSTER_IDENTITY_CONFIGMAP.to_string()),
                namespace: Some(CLUSTER_IDENTITY_NAMESPACE.to_string()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([
                (CLUSTER_ID_KEY.to_string(), self.cluster_id.clone()),
                (CLUSTER_NAME_KEY.to_string(), self.cluster_name.clone()),
            ])),
            ..ConfigMap::default()
        }
    }
}

/// Whether `value` is a valid Kubernetes label value (cluster ids end up in labels).
pub fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    if value.is_empty() {
        return true;
    }
    bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(pairs: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn parses_id_and_name() {
        let id = ClusterIdentityConfig::from_config_map(&cm(&[
            ("CLUSTER_ID", "london"),
            ("CLUSTER_NAME", "London"),
        ]))
        .unwrap();
        assert_eq!(id.cluster_id, "london");
        assert_eq!(id.cluster_name, "London");
    }

    #[test]
    fn name_defaults_to_id() {
        let id = ClusterIdentityConfig::from_config_map(&cm(&[("CLUSTER_ID", "london")])).unwrap();
        assert_eq!(id.cluster_name, "london");
    }

    #[test]
    fn round_trips_through_a_config_map() {
        let id = ClusterIdentityConfig {
            cluster_id: "newyork".into(),
            cluster_name: "New York".into(),
        };
        let cm = id.to_config_map();
        assert_eq!(
            cm.metadata.name.as_deref(),
            Some("liqo-clusterid-configmap")
        );
        assert_eq!(cm.metadata.namespace.as_deref(), Some("liqo"));
        assert_eq!(ClusterIdentityConfig::from_config_map(&cm).unwrap(), id);
    }

    #[test]
    fn errors_name_the_config_map_and_the_fix() {
        let err = ClusterIdentityConfig::from_config_map(&ConfigMap::default()).unwrap_err();
        assert_eq!(err, IdentityError::MissingClusterId);
        let msg = err.to_string();
        assert!(msg.contains("liqo/liqo-clusterid-configmap"), "{msg}");
        assert!(msg.contains("CLUSTER_ID"), "{msg}");
        assert!(msg.contains("liqoctl install"), "{msg}");

        let err = ClusterIdentityConfig::from_config_map(&cm(&[("CLUSTER_ID", " ")])).unwrap_err();
        assert_eq!(err, IdentityError::MissingClusterId);

        let err = ClusterIdentityConfig::from_config_map(&cm(&[("CLUSTER_ID", "not valid!")]))
            .unwrap_err();
        assert!(matches!(err, IdentityError::InvalidClusterId(_)));
        assert!(err.to_string().contains("liqoctl install"));

        assert!(
            IdentityError::NotFound
                .to_string()
                .contains("liqoctl install")
        );
    }

    #[test]
    fn label_values() {
        assert!(is_label_value("london"));
        assert!(is_label_value("a.b_c-d"));
        assert!(is_label_value("0b3c9a5e-1f2d-4c4e-9d7a-2b1f0c8e6a11"));
        assert!(!is_label_value("-a"));
        assert!(!is_label_value("a/b"));
        assert!(!is_label_value(&"a".repeat(64)));
    }
}
