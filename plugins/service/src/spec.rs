//! `spec` of the remote Service: Liqo's field rules (LIQO-REFERENCE.md §2.2).
//!
//! The rules are an allow-list: a field not named here (including fields added to Services in
//! future Kubernetes versions) is not reflected, so the remote API server applies its own
//! defaults. Unset values (`null`, `""`, `[]`, `{}`) are never emitted: with server-side apply an
//! emitted field is owned by the reflection's field manager, and an empty value could override a
//! default the remote API server would pick differently.

use liqo_plugin_sdk::object::move_set_fields;
use serde_json::{Map, Value};

/// Fields copied unchanged when set.
///
/// `externalTrafficPolicy` is not here: see [`remote_spec`].
const COPIED_FIELDS: &[&str] = &[
    "type",
    "selector",
    "ipFamilyPolicy",
    "externalName",
    "internalTrafficPolicy",
    "allocateLoadBalancerNodePorts",
    "loadBalancerSourceRanges",
    "publishNotReadyAddresses",
    "sessionAffinity",
];

/// Port fields copied unchanged when set. `nodePort` is handled separately.
const COPIED_PORT_FIELDS: &[&str] = &["name", "port", "targetPort", "protocol", "appProtocol"];

/// The only `clusterIP` value reflected: a headless Service stays headless.
const HEADLESS_CLUSTER_IP: &str = "None";

/// Service types whose `externalTrafficPolicy` the API server accepts without `externalIPs`.
const EXTERNALLY_ACCESSIBLE_TYPES: &[&str] = &["NodePort", "LoadBalancer"];

/// Builds the remote `spec` from the local one.
///
/// - `type`, `selector`, `ipFamilyPolicy`, `externalName`, `internalTrafficPolicy`,
///   `allocateLoadBalancerNodePorts`, `loadBalancerSourceRanges`, `publishNotReadyAddresses`,
///   `sessionAffinity`: copied.
/// - `externalTrafficPolicy`: copied for NodePort and LoadBalancer Services only. A ClusterIP
///   Service has one only when it has `externalIPs`, which are not reflected; the remote API
///   server would reject the policy without them.
/// - `clusterIP`: only `None` (headless) is copied; `clusterIPs`, `ipFamilies`,
///   `healthCheckNodePort`, `loadBalancerIP`, `externalIPs`, `sessionAffinityConfig`,
///   `loadBalancerClass`, `trafficDistribution` are dropped so the remote cluster allocates or
///   defaults them.
/// - `ports`: see [`remote_port`].
pub(crate) fn remote_spec(
    mut local: Map<String, Value>,
    force_node_ports: bool,
) -> Map<String, Value> {
    let mut remote = Map::new();
    // Decided before the fields move out of `local`.
    let externally_accessible = local
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|service_type| EXTERNALLY_ACCESSIBLE_TYPES.contains(&service_type));
    let headless = local.get("clusterIP").and_then(Value::as_str) == Some(HEADLESS_CLUSTER_IP);

    move_set_fields(&mut local, &mut remote, COPIED_FIELDS);
    if externally_accessible {
        move_set_fields(&mut local, &mut remote, &["externalTrafficPolicy"]);
    }
    if headless {
        remote.insert(
            "clusterIP".to_owned(),
            Value::String(HEADLESS_CLUSTER_IP.to_owned()),
        );
    }

    if let Some(Value::Array(local_ports)) = local.get_mut("ports").map(Value::take) {
        let ports: Vec<Value> = local_ports
            .into_iter()
            .filter_map(|port| match port {
                Value::Object(port) => Some(remote_port(port, force_node_ports)),
                _ => None,
            })
            .collect();
        if !ports.is_empty() {
            remote.insert("ports".to_owned(), Value::Array(ports));
        }
    }
    remote
}

/// One remote port: `name`, `port`, `targetPort`, `protocol`, `appProtocol` copied.
///
/// `protocol` defaults to `TCP` when absent (the API server's default) because it is part of the
/// server-side-apply merge key of `ports` (`port` + `protocol`).
///
/// `nodePort` is copied only when forced (`liqo.io/force-remote-node-port: "true"`) and non-zero;
/// otherwise it is omitted and the remote cluster allocates its own. Unlike Liqo, no explicit
/// `nodePort: 0` is ever sent: on a NodePort → ClusterIP change the API server clears node ports
/// that the request leaves unchanged, and a forced port the reflection owned is removed by
/// server-side apply when it disappears from the applied object.
fn remote_port(mut local: Map<String, Value>, force_node_ports: bool) -> Value {
    let mut remote = Map::new();
    move_set_fields(&mut local, &mut remote, COPIED_PORT_FIELDS);
    if !remote.contains_key("protocol") {
        remote.insert("protocol".to_owned(), Value::String("TCP".to_owned()));
    }
    let forced_node_port = local
        .get_mut("nodePort")
        .map(Value::take)
        .filter(|port| force_node_ports && port.as_u64().is_some_and(|port| port != 0));
    if let Some(node_port) = forced_node_port {
        remote.insert("nodePort".to_owned(), node_port);
    }
    Value::Object(remote)
}
