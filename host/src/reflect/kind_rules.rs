//! The host's rules that belong to one kind, declared in one place.
//!
//! The engine is generic: every kind, a built-in plugin's or a user plugin's, goes through the
//! same watches, passes and writes, and `engine`, `reconcile` and `cached` never name a kind.
//! What the host does for a kind beyond its plugin is declared here, looked up by kind key;
//! a kind not listed gets the defaults (no extra rule).

use serde_json::Value;

/// Kind key of Services (the gateway exports them: see `crate::transport`).
pub const SERVICE_KIND_KEY: &str = "/v1/Service";
/// Kind key of EndpointSlices.
pub(crate) const ENDPOINTSLICE_KIND_KEY: &str = "discovery.k8s.io/v1/EndpointSlice";

/// What the host enforces for one kind on top of its plugin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct KindRules {
    /// While the data path to the peer is down, every endpoint of a reflected object is neither
    /// ready nor serving, whatever the plugin said, so the peer's kube-proxy stops sending
    /// clients into a path that would reset them. A change of the data path re-evaluates the
    /// objects of such kinds.
    pub readiness_follows_data_path: bool,
    /// A remote object is this peering's only if it also says it is managed by reflection
    /// (`endpointslice.kubernetes.io/managed-by`): the peer's EndpointSlice controller copies
    /// a Service's labels, ours included, onto the slices it makes.
    pub owned_only_if_managed_by_reflection: bool,
}

impl KindRules {
    /// The rules of the kind with key `key` (`group/version/Kind`).
    pub(crate) fn of(key: &str) -> Self {
        let group = key.split('/').next().unwrap_or_default();
        let kind = key.rsplit('/').next().unwrap_or_default();
        Self {
            readiness_follows_data_path: key == ENDPOINTSLICE_KIND_KEY,
            owned_only_if_managed_by_reflection: crate::api::ownership::managed_by_required(
                group, kind,
            ),
        }
    }

    /// Applies the rules to the object a plugin asked for, just before it is written.
    pub(crate) fn enforce(self, desired: &mut Value, data_path_up: bool) {
        if self.readiness_follows_data_path && !data_path_up {
            mark_endpoints_not_ready(desired);
        }
    }
}

/// Sets `ready` and `serving` to false on every endpoint of `object` (`endpoints[].conditions`).
fn mark_endpoints_not_ready(object: &mut Value) {
    if let Some(endpoints) = object.get_mut("endpoints").and_then(Value::as_array_mut) {
        for endpoint in endpoints {
            if let Some(endpoint) = endpoint.as_object_mut() {
                let conditions = endpoint
                    .entry("conditions")
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Some(conditions) = conditions.as_object_mut() {
                    conditions.insert("ready".into(), Value::Bool(false));
                    conditions.insert("serving".into(), Value::Bool(false));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice() -> Value {
        serde_json::json!({
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true, "terminating": false}},
                {"addresses": ["10.0.0.2"]},
            ],
        })
    }

    #[test]
    fn endpoints_are_not_ready_while_the_data_path_is_down() {
        let mut down = slice();
        KindRules::of(ENDPOINTSLICE_KIND_KEY).enforce(&mut down, false);
        for endpoint in down["endpoints"].as_array().unwrap() {
            assert_eq!(endpoint["conditions"]["ready"], false);
            assert_eq!(endpoint["conditions"]["serving"], false);
        }
        assert_eq!(down["endpoints"][0]["conditions"]["terminating"], false);
        let mut up = slice();
        KindRules::of(ENDPOINTSLICE_KIND_KEY).enforce(&mut up, true);
        assert_eq!(up, slice());
    }

    #[test]
    fn other_kinds_get_no_extra_rule() {
        for key in [SERVICE_KIND_KEY, "/v1/ConfigMap", "example.com/v1/Widget"] {
            assert_eq!(KindRules::of(key), KindRules::default(), "{key}");
            let mut object = slice();
            KindRules::of(key).enforce(&mut object, false);
            assert_eq!(object, slice(), "{key}");
        }
    }
}
