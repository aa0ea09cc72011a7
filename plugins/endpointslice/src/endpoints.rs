//! The `endpoints` and `ports` of the remote EndpointSlice.

use std::collections::BTreeMap;

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

/// `ports[].protocol` when absent (the API default).
const DEFAULT_PROTOCOL: &str = "TCP";

/// Whether addresses of this `addressType` are translated.
pub(crate) fn translates(address_type: &str) -> bool {
    TRANSLATED_ADDRESS_TYPES.contains(&address_type)
}

/// The Service whose slice is reflected: `host.translate-endpoint` names it.
pub(crate) struct ServiceRef<'a> {
    /// Namespace of the slice (and of its Service).
    pub namespace: &'a str,
    /// The slice's `kubernetes.io/service-name`.
    pub name: &'a str,
}

/// One numbered slice port, as translation sees it.
struct SlicePort {
    /// Index in `ports`.
    index: usize,
    /// `name` when set, for error messages.
    name: String,
    /// The local target port.
    port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    protocol: String,
    /// The remote port and the (endpoint index, local address) that first gave it, so a
    /// conflicting endpoint can be named next to it.
    translated: Option<(u16, usize, String)>,
}

impl SlicePort {
    fn describe(&self) -> String {
        let name = if self.name.is_empty() {
            String::new()
        } else {
            // Not `{:?}`: Debug escaping pulls Unicode tables into the component.
            format!(" \"{}\"", self.name)
        };
        format!(
            "ports[{}]{name} ({}/{})",
            self.index, self.port, self.protocol
        )
    }
}

/// Builds the remote `endpoints` and `ports` from the local ones.
///
/// Without translation (`FQDN`) both are copied (endpoint fields filtered). With translation:
/// each address of a slice with numbered ports goes through `host.translate_endpoint` once per
/// port, and each port takes the translated port (the same for every endpoint: a slice cannot
/// give per-address ports, so a disagreement fails the slice naming both endpoints); a slice
/// without numbered ports translates addresses with `host.translate_address`. Local endpoints
/// that translate to the same addresses (every pod behind a gateway) become one remote endpoint:
/// ready or serving if any of them is, terminating if all are, without per-pod fields.
///
/// A translation failure fails the whole slice (nothing half-translated is written); the error
/// names the endpoint.
pub(crate) fn remote_endpoints_and_ports(
    host: &dyn HostApi,
    service: &ServiceRef<'_>,
    endpoints: Value,
    ports: Value,
    translate: bool,
) -> Result<(Vec<Value>, Vec<Value>), String> {
    // `null` is how the API serves a slice with no endpoints or no ports yet.
    let endpoints = match endpoints {
        Value::Array(endpoints) => endpoints,
        _ => Vec::new(),
    };
    let mut ports = match ports {
        Value::Array(ports) => ports,
        _ => Vec::new(),
    };
    // Items that are not objects are not endpoints (the API server would not serve them).
    let endpoints = endpoints
        .into_iter()
        .enumerate()
        .filter_map(|(index, endpoint)| {
            let Value::Object(endpoint) = endpoint else {
                return None;
            };
            Some((index, endpoint))
        });
    if !translate {
        let remote = endpoints
            .map(|(_, local)| {
                let (endpoint, addresses) = remote_endpoint(local);
                with_addresses(endpoint, addresses)
            })
            .collect();
        return Ok((remote, ports));
    }

    let mut slice_ports = numbered_ports(&ports)?;
    let mut merged = Merger::default();
    for (index, local) in endpoints {
        let (endpoint, addresses) = remote_endpoint(local);
        let addresses = translate_addresses(host, service, &mut slice_ports, index, addresses)?;
        merged.push(endpoint, addresses);
    }

    for slice_port in &slice_ports {
        if let (Some((port, _, _)), Some(Value::Object(local))) =
            (&slice_port.translated, ports.get_mut(slice_port.index))
        {
            local.insert("port".to_owned(), Value::from(*port));
        }
    }
    Ok((merged.finish(), ports))
}

/// The slice ports that have a number, in order. A port number outside 0..=65535 is an error:
/// the API server would not have accepted it, so the input is not a real slice.
fn numbered_ports(ports: &[Value]) -> Result<Vec<SlicePort>, String> {
    let mut numbered = Vec::new();
    for (index, port) in ports.iter().enumerate() {
        let Some(number) = port.get("port").filter(|p| !p.is_null()) else {
            // No number: the port is not restricted; there is nothing to translate.
            continue;
        };
        let number = number
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| format!("ports[{index}].port {number} is not a port number"))?;
        let text = |key: &str| port.get(key).and_then(Value::as_str).unwrap_or_default();
        let protocol = match text("protocol") {
            "" => DEFAULT_PROTOCOL,
            protocol => protocol,
        };
        numbered.push(SlicePort {
            index,
            name: text("name").to_owned(),
            port: number,
            protocol: protocol.to_owned(),
            translated: None,
        });
    }
    Ok(numbered)
}

/// Translates the addresses of endpoint `index`: with `translate_endpoint` for every numbered
/// port (recording the remote port of each), else with `translate_address`. Non-string
/// addresses are kept as they are; duplicates after translation are dropped.
fn translate_addresses(
    host: &dyn HostApi,
    service: &ServiceRef<'_>,
    ports: &mut [SlicePort],
    index: usize,
    addresses: Vec<Value>,
) -> Result<Vec<Value>, String> {
    let mut remote: Vec<Value> = Vec::with_capacity(addresses.len());
    for address in addresses {
        let Value::String(address) = address else {
            remote.push(address);
            continue;
        };
        let translated = if ports.is_empty() {
            host.translate_address(&address).map_err(|error| {
                format!("cannot translate address {address} of endpoint {index}: {error}")
            })?
        } else {
            translate_endpoint(host, service, ports, index, &address)?
        };
        let translated = Value::String(translated);
        if !remote.contains(&translated) {
            remote.push(translated);
        }
    }
    Ok(remote)
}

/// The remote address of `address` (endpoint `index`) through every numbered port; each port's
/// remote port is recorded and must agree across endpoints, the address must agree across ports.
fn translate_endpoint(
    host: &dyn HostApi,
    service: &ServiceRef<'_>,
    ports: &mut [SlicePort],
    index: usize,
    address: &str,
) -> Result<String, String> {
    // (remote address, position in `ports` of the port that gave it)
    let mut remote_address: Option<(String, usize)> = None;
    for position in 0..ports.len() {
        let Some(port) = ports.get_mut(position) else {
            break;
        };
        let translated = host
            .translate_endpoint(
                service.namespace,
                service.name,
                address,
                port.port,
                &port.protocol,
            )
            .map_err(|error| format!("endpoints[{index}]: {error}"))?;
        match &port.translated {
            None => port.translated = Some((translated.port, index, address.to_owned())),
            Some((first, first_index, first_address)) if *first != translated.port => {
                return Err(format!(
                    "{}: endpoints[{first_index}] ({first_address}) translates to port {first} \
                     but endpoints[{index}] ({address}) to port {}; an EndpointSlice cannot \
                     give each address its own port",
                    port.describe(),
                    translated.port
                ));
            }
            Some(_) => {}
        }
        match remote_address {
            None => remote_address = Some((translated.address, position)),
            Some((ref first, first_position)) if *first != translated.address => {
                let describe = |at: usize| ports.get(at).map(SlicePort::describe);
                return Err(format!(
                    "endpoints[{index}] ({address}) translates to {first} for {} but to {} for \
                     {}; an EndpointSlice cannot give each port its own address",
                    describe(first_position).unwrap_or_default(),
                    translated.address,
                    describe(position).unwrap_or_default()
                ));
            }
            Some(_) => {}
        }
    }
    // Called with at least one port, so an address was set.
    Ok(remote_address
        .map(|(address, _)| address)
        .unwrap_or_default())
}

/// Splits a local endpoint into the remote endpoint without `addresses` (the kept fields and
/// conditions) and its local addresses.
fn remote_endpoint(mut local: Map<String, Value>) -> (Map<String, Value>, Vec<Value>) {
    let addresses = match local.get_mut("addresses").map(Value::take) {
        Some(Value::Array(addresses)) => addresses,
        _ => Vec::new(),
    };
    let mut remote = Map::new();
    if let Some(Value::Object(mut local_conditions)) = local.get_mut("conditions").map(Value::take)
    {
        let mut conditions = Map::new();
        move_set_fields(&mut local_conditions, &mut conditions, COPIED_CONDITIONS);
        if !conditions.is_empty() {
            remote.insert("conditions".to_owned(), Value::Object(conditions));
        }
    }
    move_set_fields(&mut local, &mut remote, COPIED_ENDPOINT_FIELDS);
    (remote, addresses)
}

/// `endpoint` with its `addresses` first (the order the API serves).
fn with_addresses(endpoint: Map<String, Value>, addresses: Vec<Value>) -> Value {
    let mut remote = Map::new();
    remote.insert("addresses".to_owned(), Value::Array(addresses));
    remote.extend(endpoint);
    Value::Object(remote)
}

/// The conditions of an endpoint as kube-proxy reads them: absent `ready` and `serving` count
/// as true, absent `terminating` as false.
#[derive(Clone, Copy)]
struct Conditions {
    ready: bool,
    serving: bool,
    terminating: bool,
}

impl Conditions {
    fn of(endpoint: &Map<String, Value>) -> Self {
        let flag = |key: &str, absent: bool| {
            endpoint
                .get("conditions")
                .and_then(|c| c.get(key))
                .and_then(Value::as_bool)
                .unwrap_or(absent)
        };
        Self {
            ready: flag("ready", true),
            serving: flag("serving", true),
            terminating: flag("terminating", false),
        }
    }
}

/// A remote endpoint being built: the first local endpoint's, until a second one translates to
/// the same addresses.
struct Group {
    endpoint: Map<String, Value>,
    addresses: Vec<Value>,
    conditions: Conditions,
    members: usize,
}

/// Merges local endpoints that translate to the same addresses, keeping first-seen order.
#[derive(Default)]
struct Merger {
    groups: Vec<Group>,
    /// Translated addresses → index in `groups`. Endpoints with no address or with non-string
    /// addresses are never merged (they are not valid, and have no identity to merge on).
    by_addresses: BTreeMap<Vec<String>, usize>,
}

impl Merger {
    fn push(&mut self, endpoint: Map<String, Value>, addresses: Vec<Value>) {
        let conditions = Conditions::of(&endpoint);
        let key: Option<Vec<String>> = if addresses.is_empty() {
            None
        } else {
            addresses
                .iter()
                .map(|a| a.as_str().map(str::to_owned))
                .collect()
        };
        if let Some(group) = key
            .as_ref()
            .and_then(|key| self.by_addresses.get(key))
            .and_then(|&at| self.groups.get_mut(at))
        {
            // API semantics: the merged endpoint takes traffic if any pod behind it would.
            group.conditions.ready |= conditions.ready;
            group.conditions.serving |= conditions.serving;
            group.conditions.terminating &= conditions.terminating;
            group.members += 1;
            return;
        }
        if let Some(key) = key {
            self.by_addresses.insert(key, self.groups.len());
        }
        self.groups.push(Group {
            endpoint,
            addresses,
            conditions,
            members: 1,
        });
    }

    fn finish(self) -> Vec<Value> {
        self.groups
            .into_iter()
            .map(|group| {
                if group.members == 1 {
                    return with_addresses(group.endpoint, group.addresses);
                }
                // Several pods behind one address: no per-pod field (hostname, zone) can be true
                // of the merged endpoint, so only the addresses and the merged conditions remain.
                let mut conditions = Map::new();
                conditions.insert("ready".to_owned(), Value::Bool(group.conditions.ready));
                conditions.insert("serving".to_owned(), Value::Bool(group.conditions.serving));
                conditions.insert(
                    "terminating".to_owned(),
                    Value::Bool(group.conditions.terminating),
                );
                let mut endpoint = Map::new();
                endpoint.insert("conditions".to_owned(), Value::Object(conditions));
                with_addresses(endpoint, group.addresses)
            })
            .collect()
    }
}
