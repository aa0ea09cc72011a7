//! Liqo's ownership rule: which objects in a peer a peering may modify or delete. One rule for
//! the host's reflection and for `liqoctl plugin diff`, which must judge exactly as the host.

use serde_json::{Map, Value};

use super::wire;

/// The labels of an object that prove (or disprove) that a peering reflected it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnershipLabels<'a> {
    /// [`wire::ORIGIN`]: the cluster the object was reflected from.
    pub origin: Option<&'a str>,
    /// [`wire::DESTINATION`]: the cluster it was reflected to.
    pub destination: Option<&'a str>,
    /// [`wire::ENDPOINTSLICE_MANAGED_BY`]: who manages it, when it says so.
    pub managed_by: Option<&'a str>,
}

impl<'a> OwnershipLabels<'a> {
    /// Reads the labels from an object's `metadata.labels` (JSON).
    pub fn from_json(labels: Option<&'a Map<String, Value>>) -> Self {
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        Self {
            origin: label(wire::ORIGIN),
            destination: label(wire::DESTINATION),
            managed_by: label(wire::ENDPOINTSLICE_MANAGED_BY),
        }
    }

    /// True when the labels prove that `origin` reflected the object to `destination`: both
    /// reflection labels with exactly these values (an object reflected by another consumer,
    /// or created by a user, is not ours and is never modified or deleted). An object that
    /// says who manages it must say reflection does, and kinds whose copies a peer's
    /// controller may relabel (`managed_by_required`: EndpointSlices, whose controller copies
    /// a Service's labels, ours included, onto the slices it manages) must say so at all.
    pub fn prove(&self, origin: &str, destination: &str, managed_by_required: bool) -> bool {
        let reflected = self.origin == Some(origin) && self.destination == Some(destination);
        let managed_by_reflection =
            self.managed_by == Some(wire::ENDPOINTSLICE_MANAGED_BY_REFLECTION);
        reflected && (managed_by_reflection || (!managed_by_required && self.managed_by.is_none()))
    }
}

/// Whether a copy of kind `group`/`kind` is ours only if it also says it is managed by
/// reflection (the `managed_by_required` of [`OwnershipLabels::prove`]): EndpointSlices, whose
/// controller in the peer copies a Service's labels, ours included, onto the slices it makes.
/// The engine's per-kind rules and `liqoctl plugin diff` both ask here.
pub fn managed_by_required(group: &str, kind: &str) -> bool {
    group == "discovery.k8s.io" && kind == "EndpointSlice"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn ownership_needs_both_labels_with_this_peerings_values() {
        let ours = labels(json!({wire::ORIGIN: "london", wire::DESTINATION: "newyork"}));
        let owned = |l: &Map<String, Value>| {
            OwnershipLabels::from_json(Some(l)).prove("london", "newyork", false)
        };
        assert!(owned(&ours));
        assert!(!owned(&labels(
            json!({wire::ORIGIN: "paris", wire::DESTINATION: "newyork"})
        )));
        assert!(!owned(&labels(
            json!({wire::ORIGIN: "london", wire::DESTINATION: "paris"})
        )));
        assert!(!owned(&labels(json!({wire::ORIGIN: "london"}))));
        assert!(!OwnershipLabels::from_json(None).prove("london", "newyork", false));
    }

    #[test]
    fn only_endpointslices_need_the_managed_by_proof() {
        assert!(managed_by_required("discovery.k8s.io", "EndpointSlice"));
        assert!(!managed_by_required("", "Service"));
        assert!(!managed_by_required("", "Endpoints"));
        assert!(!managed_by_required("example.com", "EndpointSlice"));
    }

    #[test]
    fn a_managed_object_must_be_managed_by_reflection() {
        let with_manager = |manager: &str| {
            labels(json!({wire::ORIGIN: "london", wire::DESTINATION: "newyork",
                          wire::ENDPOINTSLICE_MANAGED_BY: manager}))
        };
        let controller = with_manager("endpointslice-controller.k8s.io");
        let reflection = with_manager(wire::ENDPOINTSLICE_MANAGED_BY_REFLECTION);
        let plain = labels(json!({wire::ORIGIN: "london", wire::DESTINATION: "newyork"}));
        for required in [false, true] {
            let owned = |l: &Map<String, Value>| {
                OwnershipLabels::from_json(Some(l)).prove("london", "newyork", required)
            };
            // The remote EndpointSlice controller copied our labels: never ours.
            assert!(!owned(&controller), "required={required}");
            assert!(owned(&reflection), "required={required}");
            // Without a manager: ours unless the kind requires the proof.
            assert_eq!(owned(&plain), !required);
        }
    }
}
