//! The `endpoints` of the remote EndpointSlice.

use liqo_plugin_sdk::HostApi;
use liqo_plugin_sdk::object::move_set_fields;
use serde_json::{Map, Value};

/// Endpoint fields copied unchanged when set.
///
/// Dropped on purpose:
/// - `nodeName`: names a node of the local cluster; no such node exists remotely, and the remote
///   kube-proxy compares it with its own node name (for `internalTrafficPolicy: Local`).
/// - `targetRef`: points at a local Pod (namespace, uid) that does not exist remotely.
/// - `hints`: zone/node hints computed from the local cluster's topology.
/// - `deprecatedTopology`: local node topology labels.
const COPIED_ENDPOINT_FIELDS: &[&str] = &["hostname", "zone"];

/// Endpoint conditions copied unchanged when set. All three are kept (Liqo keeps only `ready`)
/// so the remote kube-proxy can keep routing to serving endpoints of terminating pods.
const COPIED_CONDITIONS: &[&str] = &["ready", "serving", "terminating"];

/// Address types whose addresses are IPs and go through the peering's address translation.
/// `FQDN` addresses are names and are copied unchanged.
const TRANSLATED_ADDRESS_TYPES: &[&str] = &["IPv4", "IPv6"];

/// Whether addresses of this `addressType` are translated.
pub(crate) fn translates(address_type: &str) -> bool {
    TRANSLATED_ADDRESS_TYPES.contains(&address_type)
}

/// Builds the remote endpoints from the local ones, translating every address when `translate`
/// is set. A translation failure fails the whole slice (nothing half-translated is written);
/// the error names the address and the endpoint.
pub(crate) fn remote_endpoints(
    host: &dyn HostApi,
    local: Value,
    translate: bool,
) -> Result<Vec<Value>, String> {
    let Value::Array(endpoints) = local else {
        // `null` (no endpoints yet) is how the EndpointSlice controller writes an empty slice.
        return Ok(Vec::new());
    };
    endpoints
        .into_iter()
        .enumerate()
        .filter_map(|(index, endpoint)| match endpoint {
            Value::Object(endpoint) => Some(remote_endpoint(host, endpoint, translate, index)),
            _ => None,
        })
        .collect()
}

fn remote_endpoint(
    host: &dyn HostApi,
    mut local: Map<String, Value>,
    translate: bool,
    index: usize,
) -> Result<Value, String> {
    let mut remote = Map::new();
    let addresses = match local.get_mut("addresses").map(Value::take) {
        Some(Value::Array(addresses)) => addresses,
        _ => Vec::new(),
    };
    let addresses = addresses
        .into_iter()
        .map(|address| match address {
            Value::String(address) if translate => host
                .translate_address(&address)
                .map(Value::String)
                .map_err(|error| {
                    format!("cannot translate address {address} of endpoint {index}: {error}")
                }),
            other => Ok(other),
        })
        .collect::<Result<Vec<_>, _>>()?;
    remote.insert("addresses".to_owned(), Value::Array(addresses));

    if let Some(Value::Object(mut local_conditions)) = local.get_mut("conditions").map(Value::take)
    {
        let mut conditions = Map::new();
        move_set_fields(&mut local_conditions, &mut conditions, COPIED_CONDITIONS);
        if !conditions.is_empty() {
            remote.insert("conditions".to_owned(), Value::Object(conditions));
        }
    }
    move_set_fields(&mut local, &mut remote, COPIED_ENDPOINT_FIELDS);
    Ok(Value::Object(remote))
}
