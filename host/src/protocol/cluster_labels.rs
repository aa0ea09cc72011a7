//! Cluster labels: how a provider's `liqoctl install --cluster-labels` reach the ForeignCluster
//! its consumers have for it, where `clusterSelector` matches them.
//!
//! - `liqoctl install --cluster-labels region=south,...` records them in the identity
//!   ConfigMap (`liqo/liqo-clusterid-configmap`, key [`CLUSTER_LABELS_KEY`]).
//! - The provider's twins controller watches that ConfigMap and publishes the labels in
//!   `status.clusterLabels` of every tenant's NamespaceMap, the one object of the provider the
//!   consumer's peering identity may read (nothing new is granted to it).
//! - The consumer's host reads them at every Lease renewal and server-side applies them to its
//!   ForeignCluster with its own field manager ([`CLUSTER_LABELS_FIELD_MANAGER`]): a label the
//!   provider drops is removed, labels set by anyone else (`kubectl label`) stay and win over
//!   the provider's value for the same key, and the keys it manages are listed in the
//!   [`CLUSTER_LABELS_ANNOTATION`] annotation.
//!
//! A provider chooses its labels, but not every key: keys under Liqo's own prefixes (other than
//! `topology.liqo.io/`) are refused on both sides, so a provider cannot pose as something the
//! consumer's tools recognise by label.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::foreign_cluster::ForeignCluster;
use crate::api::wire::CLUSTER_LABELS_ANNOTATION;
use crate::api::wire::CLUSTER_LABELS_FIELD_MANAGER;
use crate::api::wire::CLUSTER_LABELS_KEY;

/// At most this many cluster labels.
pub const MAX_LABELS: usize = 32;

/// Parses `k=v,...` (the `--cluster-labels` flag and the ConfigMap value). Empty text is no
/// labels. The error names the label and the rule it breaks.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!("{pair:?} is not KEY=VALUE"));
        };
        let (key, value) = (key.trim(), value.trim());
        check(key, value)?;
        if labels.insert(key.to_string(), value.to_string()).is_some() {
            return Err(format!("label {key:?} is given twice"));
        }
    }
    if labels.len() > MAX_LABELS {
        return Err(format!(
            "{} labels given; a cluster has at most {MAX_LABELS}",
            labels.len()
        ));
    }
    Ok(labels)
}

/// `k=v,...`, the inverse of [`parse`].
pub fn render(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Checks one label: a valid Kubernetes label, under no reserved Liqo prefix.
pub fn check(key: &str, value: &str) -> Result<(), String> {
    let requirement = format!("{key}={value}");
    // A label is what `key=value` parses back to, exactly (`region==south` or a value with
    // spaces around it is not).
    crate::api::cluster_selector::parse_term(&requirement)
        .ok()
        .filter(|t| {
            matches!(t.match_expressions.as_slice(),
                [r] if r.key == key
                    && r.operator == crate::api::cluster_selector::SelectorOperator::In
                    && r.values.len() == 1
                    && r.values[0] == value)
        })
        .ok_or_else(|| {
            format!(
                "{requirement:?} is not a label: the key is an optional DNS prefix and '/', then \
                 at most 63 letters, digits, '-', '_' or '.'; the value at most 63 of those, \
                 starting and ending with a letter or digit"
            )
        })?;
    if let Some((prefix, _)) = key.rsplit_once('/')
        && (prefix == "liqo.io" || prefix.ends_with(".liqo.io"))
        && prefix != "topology.liqo.io"
    {
        return Err(format!(
            "label {key:?} uses a prefix reserved to Liqo ({prefix}/); use topology.liqo.io/ \
             or a prefix of your own"
        ));
    }
    Ok(())
}

/// This cluster's labels from its identity ConfigMap.
pub fn from_config_map(cm: &ConfigMap) -> Result<BTreeMap<String, String>, String> {
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(CLUSTER_LABELS_KEY))
        .map(String::as_str)
        .unwrap_or_default();
    parse(text).map_err(|e| {
        format!(
            "ConfigMap {}/{} key {CLUSTER_LABELS_KEY}: {e}; run liqoctl install \
             --cluster-labels again",
            crate::api::identity::CLUSTER_IDENTITY_NAMESPACE,
            crate::api::identity::CLUSTER_IDENTITY_CONFIGMAP
        )
    })
}

/// Reads this cluster's labels (none when the identity ConfigMap is missing).
pub async fn read_own(client: &Client) -> Result<BTreeMap<String, String>, String> {
    let cm = Api::<ConfigMap>::namespaced(
        client.clone(),
        crate::api::identity::CLUSTER_IDENTITY_NAMESPACE,
    )
    .get_opt(crate::api::identity::CLUSTER_IDENTITY_CONFIGMAP)
    .await
    .map_err(|e| format!("reading this cluster's identity ConfigMap: {e}"))?;
    cm.as_ref().map_or(Ok(BTreeMap::new()), from_config_map)
}

/// What the consumer keeps of the labels a provider published on its ForeignCluster `fc`:
/// the valid ones, at most [`MAX_LABELS`] (a provider is not trusted to respect the rules), and
/// never a key someone else set on `fc` (`kubectl label`, a GitOps tool): the consumer's own
/// labels win, and are never overwritten or removed by what a provider publishes.
pub fn accepted(
    published: &BTreeMap<String, String>,
    fc: &ForeignCluster,
) -> BTreeMap<String, String> {
    let managed = managed_keys(fc);
    published
        .iter()
        .filter(|(k, v)| check(k, v).is_ok())
        .filter(|(k, _)| !fc.labels().contains_key(*k) || managed.contains(&k.as_str()))
        .take(MAX_LABELS)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The label keys of `fc` that came from its provider ([`CLUSTER_LABELS_ANNOTATION`]).
fn managed_keys(fc: &ForeignCluster) -> Vec<&str> {
    fc.annotations()
        .get(CLUSTER_LABELS_ANNOTATION)
        .map(|keys| keys.split(',').filter(|k| !k.is_empty()).collect())
        .unwrap_or_default()
}

/// Whether `fc` already carries exactly `labels` as the provider's (no write needed).
pub fn in_place(fc: &ForeignCluster, labels: &BTreeMap<String, String>) -> bool {
    let keys: Vec<&str> = labels.keys().map(String::as_str).collect();
    managed_keys(fc) == keys && labels.iter().all(|(k, v)| fc.labels().get(k) == Some(v))
}

/// Server-side applies the provider's `labels` to the consumer's ForeignCluster `name`: labels
/// this manager set before and the provider no longer has are removed by the API server.
pub async fn apply(
    client: &Client,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> kube::Result<ForeignCluster> {
    let keys: Vec<&str> = labels.keys().map(String::as_str).collect();
    let patch = json!({
        "apiVersion": "core.liqo.io/v1beta1",
        "kind": "ForeignCluster",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {CLUSTER_LABELS_ANNOTATION: keys.join(",")},
        },
    });
    Api::<ForeignCluster>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply(CLUSTER_LABELS_FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_the_flag() {
        let labels = parse("topology.liqo.io/region=south, tier=gold").unwrap();
        assert_eq!(labels["topology.liqo.io/region"], "south");
        assert_eq!(render(&labels), "tier=gold,topology.liqo.io/region=south");
        assert_eq!(parse(&render(&labels)).unwrap(), labels);
        assert!(parse("").unwrap().is_empty());
        assert_eq!(parse("empty=").unwrap()["empty"], "");
    }

    #[test]
    fn refuses_bad_labels_saying_why() {
        let table = [
            ("region", "is not KEY=VALUE"),
            ("region=south,region=north", "given twice"),
            ("region=So uth", "is not a label"),
            ("region==south", "is not a label"),
            ("Bad_/k=v", "is not a label"),
            ("liqo.io/remote-cluster-id=x", "reserved to Liqo"),
            ("offloading.liqo.io/origin=x", "reserved to Liqo"),
        ];
        for (text, want) in table {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        let many: Vec<String> = (0..=MAX_LABELS).map(|i| format!("k{i}=v")).collect();
        assert!(parse(&many.join(",")).unwrap_err().contains("at most 32"));
    }

    fn foreign_cluster() -> ForeignCluster {
        ForeignCluster::new(
            "naples",
            serde_json::from_value(json!({"clusterID": "naples"})).unwrap(),
        )
    }

    #[test]
    fn a_consumer_keeps_only_valid_labels_and_never_overrides_its_own() {
        let pairs = [
            ("topology.liqo.io/region", "south"),
            ("liqo.io/remote-cluster-id", "london"),
            ("bad key", "x"),
            ("spaced", " south"),
            ("tier", "gold"),
            ("zone", "a"),
        ];
        let published: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut fc = foreign_cluster();
        // The consumer's admin labelled `tier` itself; `zone` came from the provider before.
        fc.labels_mut().insert("tier".into(), "untrusted".into());
        fc.labels_mut().insert("zone".into(), "b".into());
        fc.annotations_mut()
            .insert(CLUSTER_LABELS_ANNOTATION.into(), "zone".into());
        let kept = accepted(&published, &fc);
        let kept: Vec<(&str, &str)> = kept.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(kept, [("topology.liqo.io/region", "south"), ("zone", "a")]);
    }

    #[test]
    fn in_place_compares_values_and_managed_keys() {
        let mut fc = foreign_cluster();
        let labels = BTreeMap::from([("region".to_string(), "south".to_string())]);
        assert!(!in_place(&fc, &labels));
        fc.labels_mut().insert("region".into(), "south".into());
        assert!(!in_place(&fc, &labels), "the annotation is missing");
        fc.annotations_mut()
            .insert(CLUSTER_LABELS_ANNOTATION.into(), "region".into());
        assert!(in_place(&fc, &labels));
        assert!(!in_place(&fc, &BTreeMap::new()), "region must go");
    }
}
