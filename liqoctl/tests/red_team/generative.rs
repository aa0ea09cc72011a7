//! The generative red-team test: thousands of seeded random writes with a real peering token,
//! each judged by an oracle written from the design ([`in_scope`]), then a before/after
//! comparison of everything outside the scope.
//!
//! The seed is printed; `RED_TEAM_SEED=<seed>` replays the same writes (only time stamps and
//! the API server's answers may differ). `RED_TEAM_WRITES` changes how many (default 2000).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Client, ResourceExt};
use liqo_host::api::namespace_map::{MappingPhase, NAMESPACE_MAP_NAME, NamespaceMap};
use liqo_host::api::wire;
use liqo_host::api::wire::{CONSUMER_SERVICE_ACCOUNT, LEASE_NAME, TENANT_LABEL};
use serde_json::{Map, Value, json};
use testsupport::{TestEnv, eventually};

use crate::harness::{
    CONSUMER_PODS, DESTINATION, ORIGIN, PROVIDER, Tenant, WAIT, address_in, admin_namespace,
    api_server_addresses, cidr_contains, denied_ranges, merge, namespaces_labelled, owned_labels,
    service, service_cidrs, slice,
};

/// A tiny xorshift64 generator: reproducible from its seed, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so that small seeds start far apart; never 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Namespace,
    Service,
    EndpointSlice,
    Lease,
    NamespaceMap,
    ConfigMap,
    Secret,
    RoleBinding,
    ServiceAccount,
    ResourceQuota,
}

impl Kind {
    const NAMESPACED: [Kind; 9] = [
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Lease,
        Kind::NamespaceMap,
        Kind::ConfigMap,
        Kind::Secret,
        Kind::RoleBinding,
        Kind::ServiceAccount,
        Kind::ResourceQuota,
    ];

    fn resource(self) -> ApiResource {
        match self {
            Kind::Namespace => ApiResource::erase::<Namespace>(&()),
            Kind::Service => ApiResource::erase::<Service>(&()),
            Kind::EndpointSlice => ApiResource::erase::<EndpointSlice>(&()),
            Kind::Lease => ApiResource::erase::<Lease>(&()),
            Kind::NamespaceMap => ApiResource::erase::<NamespaceMap>(&()),
            Kind::ConfigMap => ApiResource::erase::<ConfigMap>(&()),
            Kind::Secret => ApiResource::erase::<Secret>(&()),
            Kind::RoleBinding => ApiResource::erase::<RoleBinding>(&()),
            Kind::ServiceAccount => ApiResource::erase::<ServiceAccount>(&()),
            Kind::ResourceQuota => ApiResource::erase::<ResourceQuota>(&()),
        }
    }

    /// Names to aim at: objects that exist somewhere among the targets, and its own.
    fn names(self) -> &'static [&'static str] {
        match self {
            Kind::Namespace => &[],
            Kind::Service => &[
                "kubernetes",
                "admins",
                "theirs",
                "o-svc",
                "provider-svc",
                "mine-0",
                "mine-1",
                "mine-2",
                "mine-3",
            ],
            Kind::EndpointSlice => &[
                "kubernetes",
                "theirs-slice",
                "o-slice",
                "mine-0",
                "mine-1",
                "mine-2",
                "mine-3",
            ],
            Kind::Lease => &[
                LEASE_NAME,
                "kube-controller-manager",
                "kube-scheduler",
                "mine-0",
            ],
            Kind::NamespaceMap => &[NAMESPACE_MAP_NAME, "mine-0"],
            Kind::ConfigMap => &[
                "kube-root-ca.crt",
                "liqo-clusterid-configmap",
                "liqo-peering-limits",
                "provider-cm",
                "mine-0",
            ],
            Kind::Secret => &["provider-secret", "mine-0"],
            Kind::RoleBinding => &[
                "liqo-peering",
                CONSUMER_SERVICE_ACCOUNT,
                "provider-rb",
                "mine-0",
            ],
            Kind::ServiceAccount => &["default", CONSUMER_SERVICE_ACCOUNT, "provider-sa", "mine-0"],
            Kind::ResourceQuota => &["liqo-peering", "mine-0"],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Create,
    Update,
    Patch,
    Delete,
}

/// One side of the game: a consumer id, its tenant namespace and its one twin namespace.
struct Party {
    id: String,
    tenant: String,
    twin: String,
    local: String,
}

/// What the generator and the oracle know.
struct World {
    me: Party,
    other: Party,
    provider_ns: String,
    /// The ranges the design denies a peer's endpoints.
    denied: Vec<String>,
    /// The endpoint ranges the peer declared when it claimed: its endpoints point nowhere else.
    declared: Vec<String>,
    bad_ipv4: Vec<String>,
    /// Names the NamespaceMap may ask for that the provider must refuse.
    refused_twins: Vec<String>,
}

impl World {
    /// Every namespace the writes aim at.
    fn targets(&self) -> Vec<String> {
        vec![
            "kube-system".into(),
            "default".into(),
            "liqo".into(),
            self.me.tenant.clone(),
            self.me.twin.clone(),
            self.other.tenant.clone(),
            self.other.twin.clone(),
            self.provider_ns.clone(),
        ]
    }

    fn fresh_namespaces() -> [&'static str; 2] {
        ["rt-gen-new-0", "rt-gen-new-1"]
    }
}

/// One random write.
struct Write {
    verb: Verb,
    kind: Kind,
    namespace: Option<String>,
    name: String,
    /// The object for create (and for an update of an object that does not exist).
    body: Value,
    /// A merge patch: sent as is, or applied to the current object for an update.
    patch: Value,
}

impl Write {
    fn describe(&self) -> String {
        format!(
            "{:?} {:?} {}/{}",
            self.verb,
            self.kind,
            self.namespace.as_deref().unwrap_or("-"),
            self.name
        )
    }
}

fn micro_now() -> String {
    Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn random_labels(rng: &mut Rng, w: &World) -> Map<String, Value> {
    let mut labels = Map::new();
    match rng.below(10) {
        0..=5 => {
            labels.insert(ORIGIN.into(), json!(w.me.id));
            labels.insert(DESTINATION.into(), json!(PROVIDER));
        }
        6 => {
            labels.insert(ORIGIN.into(), json!(w.other.id));
            labels.insert(DESTINATION.into(), json!(PROVIDER));
        }
        7 => {
            labels.insert(ORIGIN.into(), json!(w.me.id));
            labels.insert(DESTINATION.into(), json!("london"));
        }
        8 => {
            labels.insert(ORIGIN.into(), json!(w.me.id));
        }
        _ => {}
    }
    if rng.chance(20) {
        let extra = [
            (TENANT_LABEL, w.me.tenant.as_str()),
            (TENANT_LABEL, w.other.tenant.as_str()),
            ("pod-security.kubernetes.io/enforce", "privileged"),
            ("liqo.io/tenant-namespace", "true"),
            ("liqo.io/consumer-id", w.me.id.as_str()),
            ("liqo.io/peering-lease", "true"),
            ("kubernetes.io/service-name", "kubernetes"),
            (
                "endpointslice.kubernetes.io/managed-by",
                "endpointslice-controller.k8s.io",
            ),
        ];
        let (k, v) = rng.pick(&extra);
        labels.insert(k.to_string(), json!(v));
    }
    labels
}

fn ghost_owner() -> Value {
    json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "rt-gen-ghost",
            "uid": "6f1c2a4e-0000-4000-8000-00000000beef"}])
}

fn address(rng: &mut Rng, w: &World, address_type: &str) -> String {
    match address_type {
        "IPv6" => rng
            .pick(&[
                "fd00:10::5",
                "2001:db8::7",
                "::1",
                "fe80::1",
                "::",
                "64:ff9b::a9fe:a9fe",
                "fd00:ec2::254",
            ])
            .to_string(),
        "FQDN" => rng
            .pick(&[
                "metadata.example.com",
                "kubernetes.default.svc.cluster.local",
            ])
            .to_string(),
        _ if rng.chance(50) => rng
            .pick(&[
                "10.200.0.5",
                "10.200.7.20",
                "192.0.2.44",
                "198.51.100.7",
                "168.63.129.16",
                "224.0.0.251",
            ])
            .to_string(),
        _ => rng.pick(&w.bad_ipv4).clone(),
    }
}

fn service_spec(rng: &mut Rng) -> Value {
    let kind = *rng.pick(&[
        None,
        Some("ClusterIP"),
        Some("ClusterIP"),
        Some("NodePort"),
        Some("ExternalName"),
        Some("LoadBalancer"),
    ]);
    let mut spec = json!({"ports": [{"port": 80, "protocol": "TCP"}]});
    if let Some(kind) = kind {
        spec["type"] = json!(kind);
        if kind == "ExternalName" {
            spec["externalName"] = json!("db.example.com");
        }
    }
    if rng.chance(20) {
        spec["externalIPs"] = json!(["203.0.113.9"]);
    }
    spec
}

fn desired_extra(rng: &mut Rng, w: &World) -> Value {
    let key = format!("x-{}", rng.below(4));
    let value = if rng.chance(25) {
        Value::Null
    } else {
        json!(rng.pick(&w.refused_twins))
    };
    json!({"spec": {"desiredMapping": {key: value}}})
}

/// A whole object of `kind`.
fn body(rng: &mut Rng, w: &World, kind: Kind, namespace: Option<&str>, name: &str) -> Value {
    let resource = kind.resource();
    let mut metadata = json!({"name": name, "labels": random_labels(rng, w)});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    if rng.chance(10) {
        metadata["ownerReferences"] = ghost_owner();
    }
    if rng.chance(10) {
        metadata["finalizers"] = json!(["example.com/red-team"]);
    }
    let mut object = json!({"apiVersion": resource.api_version, "kind": resource.kind,
                            "metadata": metadata});
    let rest = match kind {
        Kind::Namespace | Kind::ServiceAccount => json!({}),
        Kind::Service => json!({"spec": service_spec(rng)}),
        Kind::EndpointSlice => {
            let address_type = *rng.pick(&["IPv4", "IPv4", "IPv4", "IPv4", "IPv6", "FQDN"]);
            json!({"addressType": address_type,
                   "endpoints": [{"addresses": [address(rng, w, address_type)]}],
                   "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]})
        }
        Kind::Lease => {
            let holder = *rng.pick(&[w.me.id.as_str(), w.other.id.as_str(), "mallory", ""]);
            let duration = *rng.pick(&[90, 100_000]);
            let renew = if rng.chance(50) {
                micro_now()
            } else {
                "2099-01-01T00:00:00.000000Z".to_string()
            };
            json!({"spec": {"holderIdentity": holder, "leaseDurationSeconds": duration,
                            "renewTime": renew}})
        }
        Kind::NamespaceMap => {
            let mut spec =
                json!({"spec": {"desiredMapping": {w.me.local.clone(): w.me.twin.clone()}}});
            merge(&mut spec, &desired_extra(rng, w));
            spec
        }
        Kind::ConfigMap => json!({"data": {"k": "v"}}),
        Kind::Secret => json!({"type": "Opaque", "stringData": {"k": "v"}}),
        Kind::RoleBinding => json!({
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": CONSUMER_SERVICE_ACCOUNT, "namespace": w.me.tenant}],
        }),
        Kind::ResourceQuota => json!({"spec": {"hard": {"count/services": "100000"}}}),
    };
    merge(&mut object, &rest);
    object
}

/// A merge patch of one or two random changes.
fn patch(rng: &mut Rng, w: &World, kind: Kind) -> Value {
    let mut patch = json!({});
    for _ in 0..1 + rng.below(2) {
        let part = match rng.below(6) {
            0 => {
                let mut labels = random_labels(rng, w);
                if rng.chance(20) {
                    labels.insert(ORIGIN.into(), Value::Null);
                }
                json!({"metadata": {"labels": labels}})
            }
            1 => json!({"metadata": {"ownerReferences": ghost_owner()}}),
            2 => {
                let finalizers = if rng.chance(70) {
                    json!(["example.com/red-team"])
                } else {
                    Value::Null
                };
                json!({"metadata": {"finalizers": finalizers}})
            }
            3 => {
                let (key, value) = rng
                    .pick(&[
                        ("gateway.liqo.io/address", json!("172.30.0.9:7900")),
                        ("gateway.liqo.io/fingerprint", json!("ab".repeat(32))),
                        ("gateway.liqo.io/address", json!("1".repeat(129))),
                        ("gateway.liqo.io/other", json!("x")),
                        (
                            wire::DECLARED_RANGES_ANNOTATION,
                            json!(format!("{CONSUMER_PODS},").repeat(80)),
                        ),
                        ("example.com/note", json!("x")),
                        ("liqo.io/peer-command-expiration", Value::Null),
                    ])
                    .clone();
                json!({"metadata": {"annotations": {key: value}}})
            }
            _ => match kind {
                Kind::Namespace => json!({"metadata": {"labels": random_labels(rng, w)}}),
                Kind::Service => {
                    let mut spec = service_spec(rng);
                    if let Some(spec) = spec.as_object_mut() {
                        spec.remove("ports");
                    }
                    json!({"spec": spec})
                }
                Kind::EndpointSlice => {
                    if rng.chance(10) {
                        json!({"addressType": "FQDN"})
                    } else {
                        json!({"endpoints": [{"addresses": [address(rng, w, "IPv4")]}]})
                    }
                }
                Kind::Lease => rng
                    .pick(&[
                        json!({"spec": {"renewTime": micro_now()}}),
                        json!({"spec": {"renewTime": "2099-01-01T00:00:00.000000Z"}}),
                        json!({"spec": {"holderIdentity": w.other.id}}),
                        json!({"spec": {"holderIdentity": "mallory"}}),
                        json!({"spec": {"leaseDurationSeconds": 100_000}}),
                        json!({"spec": {"acquireTime": micro_now()}}),
                    ])
                    .clone(),
                Kind::NamespaceMap => desired_extra(rng, w),
                Kind::ConfigMap => json!({"data": {"k": "changed"}}),
                Kind::Secret => json!({"stringData": {"k": "changed"}}),
                Kind::RoleBinding => json!({"subjects": [{"kind": "ServiceAccount",
                    "name": CONSUMER_SERVICE_ACCOUNT, "namespace": w.me.tenant}]}),
                Kind::ServiceAccount => json!({"automountServiceAccountToken": true}),
                Kind::ResourceQuota => json!({"spec": {"hard": {"count/services": "100000"}}}),
            },
        };
        merge(&mut patch, &part);
    }
    patch
}

fn generate(rng: &mut Rng, w: &World) -> Write {
    let verb = *rng.pick(&[Verb::Create, Verb::Update, Verb::Patch, Verb::Delete]);
    let kind = if rng.chance(10) {
        Kind::Namespace
    } else {
        *rng.pick(&[
            Kind::Service,
            Kind::Service,
            Kind::Service,
            Kind::EndpointSlice,
            Kind::EndpointSlice,
            Kind::EndpointSlice,
            Kind::Lease,
            Kind::Lease,
            Kind::NamespaceMap,
            Kind::NamespaceMap,
            Kind::ConfigMap,
            Kind::Secret,
            Kind::RoleBinding,
            Kind::ServiceAccount,
            Kind::ResourceQuota,
        ])
    };
    let targets = w.targets();
    let (namespace, name) = if kind == Kind::Namespace {
        let mut names = targets.clone();
        names.extend(World::fresh_namespaces().map(String::from));
        (None, rng.pick(&names).clone())
    } else {
        // Half of the writes aim where they could be allowed.
        let favourite = match kind {
            Kind::Service | Kind::EndpointSlice => Some(&w.me.twin),
            Kind::Lease | Kind::NamespaceMap => Some(&w.me.tenant),
            _ => None,
        };
        let namespace = match favourite {
            Some(f) if rng.chance(50) => f.clone(),
            _ => rng.pick(&targets).clone(),
        };
        (Some(namespace), rng.pick(kind.names()).to_string())
    };
    let body = body(rng, w, kind, namespace.as_deref(), &name);
    let patch = patch(rng, w, kind);
    Write {
        verb,
        kind,
        namespace,
        name,
        body,
        patch,
    }
}

// ---- the oracle: what the design allows --------------------------------------------------------

fn label<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object["metadata"]["labels"][key].as_str()
}

/// Labelled as the peer's own reflected copy in its twin.
fn owned(w: &World, object: Option<&Value>) -> bool {
    object.is_some_and(|o| {
        label(o, ORIGIN) == Some(w.me.id.as_str()) && label(o, DESTINATION) == Some(PROVIDER)
    })
}

/// Null, absent, `{}` and `[]` are the same metadata.
fn same(a: &Value, b: &Value) -> bool {
    let empty = |v: &Value| {
        v.is_null()
            || v.as_object().is_some_and(Map::is_empty)
            || v.as_array().is_some_and(Vec::is_empty)
    };
    (empty(a) && empty(b)) || a == b
}

fn content_ok(w: &World, kind: Kind, object: &Value) -> bool {
    match kind {
        Kind::Service => {
            let kind = object["spec"]["type"].as_str().unwrap_or("ClusterIP");
            ["ClusterIP", "NodePort", "ExternalName"].contains(&kind)
                && same(&object["spec"]["externalIPs"], &Value::Null)
        }
        Kind::EndpointSlice => {
            object["addressType"].as_str() != Some("FQDN")
                && object["endpoints"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
                    .all(|a| {
                        a.as_str()
                            .and_then(|a| a.parse::<IpAddr>().ok())
                            .is_some_and(|ip| {
                                w.declared.iter().any(|r| cidr_contains(r, ip))
                                    && !w.denied.iter().any(|r| cidr_contains(r, ip))
                            })
                    })
        }
        _ => false,
    }
}

/// The peer's Lease: it may set the renew time, the two gateway annotations and its declared
/// endpoint ranges; the holder is fixed once claimed; everything else is the provider's.
fn lease_ok(w: &World, old: &Value, new: &Value) -> bool {
    const GATEWAY: [&str; 2] = ["gateway.liqo.io/address", "gateway.liqo.io/fingerprint"];
    const DECLARED: &str = "liqo.io/declared-endpoint-ranges";
    let metadata_kept = ["labels", "ownerReferences", "finalizers"]
        .iter()
        .all(|f| same(&old["metadata"][f], &new["metadata"][f]));
    let spec_kept = [
        "leaseDurationSeconds",
        "acquireTime",
        "leaseTransitions",
        "preferredHolder",
        "strategy",
    ]
    .iter()
    .all(|f| same(&old["spec"][f], &new["spec"][f]));
    let holder = new["spec"]["holderIdentity"].as_str() == Some(w.me.id.as_str());
    let empty = Map::new();
    let old_annotations = old["metadata"]["annotations"].as_object().unwrap_or(&empty);
    let new_annotations = new["metadata"]["annotations"].as_object().unwrap_or(&empty);
    let annotations = new_annotations.iter().all(|(k, v)| {
        (GATEWAY.contains(&k.as_str()) && v.as_str().is_some_and(|v| v.len() <= 128))
            || (k == DECLARED && v.as_str().is_some_and(|v| v.len() <= 1024))
            || old_annotations.get(k) == Some(v)
    }) && old_annotations
        .keys()
        .all(|k| GATEWAY.contains(&k.as_str()) || k == DECLARED || new_annotations.contains_key(k));
    metadata_kept && spec_kept && holder && annotations
}

/// The peer's NamespaceMap: its spec only.
fn map_ok(old: &Value, new: &Value) -> bool {
    ["labels", "annotations", "ownerReferences", "finalizers"]
        .iter()
        .all(|f| same(&old["metadata"][f], &new["metadata"][f]))
}

/// Whether the design allows `write`, given the object before (`old`) and what it would be
/// after (`new`). Allowed only: Services and EndpointSlices in its own twin, labelled as its
/// copies before and after, of an allowed type, without externalIPs, pointing inside its
/// declared ranges and outside the denied ones; its Lease's renew time and announcements; its
/// NamespaceMap's spec.
fn in_scope(w: &World, write: &Write, old: Option<&Value>, new: Option<&Value>) -> bool {
    let ns = write.namespace.as_deref();
    match write.kind {
        Kind::Service | Kind::EndpointSlice if ns == Some(w.me.twin.as_str()) => {
            match (write.verb, old) {
                (Verb::Delete, _) => owned(w, old),
                (Verb::Create, _) | (Verb::Update, None) => {
                    owned(w, new) && new.is_some_and(|n| content_ok(w, write.kind, n))
                }
                (Verb::Update | Verb::Patch, Some(_)) => {
                    owned(w, old)
                        && owned(w, new)
                        && new.is_some_and(|n| content_ok(w, write.kind, n))
                }
                (Verb::Patch, None) => false,
            }
        }
        Kind::Lease if ns == Some(w.me.tenant.as_str()) && write.name == LEASE_NAME => {
            matches!(write.verb, Verb::Update | Verb::Patch)
                && matches!((old, new), (Some(o), Some(n)) if lease_ok(w, o, n))
        }
        Kind::NamespaceMap
            if ns == Some(w.me.tenant.as_str()) && write.name == NAMESPACE_MAP_NAME =>
        {
            matches!(write.verb, Verb::Update | Verb::Patch)
                && matches!((old, new), (Some(o), Some(n)) if map_ok(o, n))
        }
        _ => false,
    }
}

// ---- sending --------------------------------------------------------------------------------

enum Outcome {
    Allowed,
    Refused(u16, String),
    Failed(String),
}

fn api(client: &Client, kind: Kind, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &kind.resource()),
        None => Api::all_with(client.clone(), &kind.resource()),
    }
}

fn outcome<T>(result: kube::Result<T>) -> Outcome {
    match result {
        Ok(_) => Outcome::Allowed,
        Err(kube::Error::Api(s)) if (400..500).contains(&s.code) => {
            Outcome::Refused(s.code, s.message)
        }
        Err(kube::Error::Api(s)) => Outcome::Failed(format!("{} {}", s.code, s.message)),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Sends `write` with the peer's token; returns the object as the oracle judges it (after the
/// write) and what the API server said.
async fn send(
    peer: &Client,
    admin: &Client,
    write: &Write,
) -> (Option<Value>, Option<Value>, Value, Outcome) {
    let ns = write.namespace.as_deref();
    let old = match write.verb {
        Verb::Create => None,
        _ => api(admin, write.kind, ns)
            .get_opt(&write.name)
            .await
            .unwrap_or_else(|e| panic!("reading {}: {e}", write.describe()))
            .map(|o| {
                let mut v = serde_json::to_value(o).unwrap();
                if let Some(m) = v["metadata"].as_object_mut() {
                    m.remove("managedFields");
                }
                v
            }),
    };
    let target = api(peer, write.kind, ns);
    let object = |v: &Value| -> DynamicObject { serde_json::from_value(v.clone()).unwrap() };
    match write.verb {
        Verb::Create => {
            let result = target
                .create(&PostParams::default(), &object(&write.body))
                .await;
            (
                old,
                Some(write.body.clone()),
                write.body.clone(),
                outcome(result),
            )
        }
        Verb::Update => {
            let sent = match &old {
                Some(old) => {
                    let mut v = old.clone();
                    merge(&mut v, &write.patch);
                    v
                }
                None => write.body.clone(),
            };
            let result = target
                .replace(&write.name, &PostParams::default(), &object(&sent))
                .await;
            (old, Some(sent.clone()), sent, outcome(result))
        }
        Verb::Patch => {
            let new = old.as_ref().map(|old| {
                let mut v = old.clone();
                merge(&mut v, &write.patch);
                v
            });
            let result = target
                .patch(
                    &write.name,
                    &PatchParams::default(),
                    &Patch::Merge(&write.patch),
                )
                .await;
            (old, new, write.patch.clone(), outcome(result))
        }
        Verb::Delete => {
            let result = target.delete(&write.name, &DeleteParams::default()).await;
            (old, None, Value::Null, outcome(result))
        }
    }
}

// ---- before and after -------------------------------------------------------------------------

type Snapshot = BTreeMap<(String, Kind, String), Value>;

/// Every object of the written kinds in the target namespaces, and the namespaces themselves,
/// without what changes by itself (resourceVersion, managedFields, status, renew times) or is
/// the peer's to change (its Lease's gateway annotations, its NamespaceMap's spec).
async fn snapshot(admin: &Client, w: &World) -> Snapshot {
    let mut out = Snapshot::new();
    let mut normalize = |ns: &str, kind: Kind, object: DynamicObject| {
        let name = object.name_any();
        let mut v = serde_json::to_value(object).unwrap();
        // The resourceVersion is compared too, but for what others write on their own: every
        // Lease (renewals), the peer's NamespaceMap (the host's status) and the quota of its
        // twin (its usage); their content is compared without those fields.
        let volatile = kind == Kind::Lease
            || (kind == Kind::ResourceQuota && ns == w.me.twin)
            || (kind == Kind::NamespaceMap && ns == w.me.tenant);
        if let Some(m) = v["metadata"].as_object_mut() {
            if volatile {
                m.remove("resourceVersion");
            }
            m.remove("managedFields");
        }
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
        }
        if kind == Kind::Lease
            && let Some(spec) = v["spec"].as_object_mut()
        {
            spec.remove("renewTime");
        }
        let own_tenant = ns == w.me.tenant;
        if own_tenant
            && kind == Kind::Lease
            && name == LEASE_NAME
            && let Some(a) = v["metadata"]["annotations"].as_object_mut()
        {
            a.remove("gateway.liqo.io/address");
            a.remove("gateway.liqo.io/fingerprint");
        }
        if own_tenant && kind == Kind::NamespaceMap {
            if let Some(o) = v.as_object_mut() {
                o.remove("spec");
            }
            if let Some(m) = v["metadata"].as_object_mut() {
                m.remove("generation");
            }
        }
        out.insert((ns.to_string(), kind, name), v);
    };
    for ns in w.targets() {
        for kind in Kind::NAMESPACED {
            for object in api(admin, kind, Some(&ns))
                .list(&ListParams::default())
                .await
                .unwrap_or_else(|e| panic!("listing {kind:?} in {ns}: {e}"))
                .items
            {
                normalize(&ns, kind, object);
            }
        }
    }
    let mut namespaces = w.targets();
    namespaces.extend(World::fresh_namespaces().map(String::from));
    // (Names that are not valid namespace names cannot exist.)
    namespaces.extend(
        w.refused_twins
            .iter()
            .filter(|n| !n.contains(|c: char| c.is_ascii_uppercase() || c == '_'))
            .cloned(),
    );
    for name in namespaces {
        if let Some(object) = api(admin, Kind::Namespace, None)
            .get_opt(&name)
            .await
            .unwrap()
        {
            normalize("-", Kind::Namespace, object);
        }
    }
    out
}

/// A snapshot once two in a row agree: new namespaces get their `default` ServiceAccount and
/// `kube-root-ca.crt` from controllers a moment after they are made.
async fn settled_snapshot(admin: &Client, w: &World) -> Snapshot {
    let mut last = snapshot(admin, w).await;
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = snapshot(admin, w).await;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the target namespaces keep changing without any write: cannot take a snapshot");
}

// ---- the run ----------------------------------------------------------------------------------

async fn setup(env: &'static TestEnv, admin: &Client) -> (World, Tenant, Tenant) {
    let mut me = Tenant::generate(env, "rt-gen", false).await;
    me.claim(admin).await;
    me.twin("a-local", "rt-gen-twin").await;
    let mut other = Tenant::generate(env, "rt-gen-other", false).await;
    other.claim(admin).await;
    other.twin("app", "rt-gen-other-twin").await;
    let pp = PostParams::default();
    // The other consumer reflects a Service and an EndpointSlice into its twin.
    Api::<Service>::namespaced(other.peer.clone(), "rt-gen-other-twin")
        .create(
            &pp,
            &service("o-svc", owned_labels("rt-gen-other"), json!({})),
        )
        .await
        .unwrap();
    Api::<EndpointSlice>::namespaced(other.peer.clone(), "rt-gen-other-twin")
        .create(
            &pp,
            &slice(
                "o-slice",
                owned_labels("rt-gen-other"),
                "IPv4",
                "10.200.0.9",
            ),
        )
        .await
        .unwrap();
    // In its own twin, objects it did not create: the provider admin's, and another consumer's
    // copies (labelled with the other's origin).
    let services = Api::<Service>::namespaced(admin.clone(), "rt-gen-twin");
    services
        .create(&pp, &service("admins", json!({}), json!({})))
        .await
        .unwrap();
    services
        .create(
            &pp,
            &service("theirs", owned_labels("rt-gen-other"), json!({})),
        )
        .await
        .unwrap();
    Api::<EndpointSlice>::namespaced(admin.clone(), "rt-gen-twin")
        .create(
            &pp,
            &slice(
                "theirs-slice",
                owned_labels("rt-gen-other"),
                "IPv4",
                "10.200.0.10",
            ),
        )
        .await
        .unwrap();
    // A provider namespace with a bit of everything.
    let provider_ns = "rt-gen-provider";
    admin_namespace(admin, provider_ns).await;
    for (kind, object) in [
        (
            Kind::ConfigMap,
            json!({"metadata": {"name": "provider-cm"}, "data": {"k": "v"}}),
        ),
        (
            Kind::Secret,
            json!({"metadata": {"name": "provider-secret"}, "stringData": {"password": "hunter2"}}),
        ),
        (
            Kind::Service,
            json!({"metadata": {"name": "provider-svc"}, "spec": {"ports": [{"port": 443}]}}),
        ),
        (
            Kind::ServiceAccount,
            json!({"metadata": {"name": "provider-sa"}}),
        ),
        (
            Kind::RoleBinding,
            json!({"metadata": {"name": "provider-rb"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane"}]}),
        ),
    ] {
        let resource = kind.resource();
        let mut object = object;
        object["apiVersion"] = json!(resource.api_version);
        object["kind"] = json!(resource.kind);
        api(admin, kind, Some(provider_ns))
            .create(&pp, &serde_json::from_value(object).unwrap())
            .await
            .unwrap();
    }

    let mut bad_ipv4: Vec<String> = ["127.0.0.1", "127.1.2.3", "169.254.169.254", "0.0.0.0"]
        .map(String::from)
        .to_vec();
    bad_ipv4.extend(
        api_server_addresses(admin)
            .await
            .iter()
            .filter(|ip| ip.is_ipv4())
            .map(ToString::to_string),
    );
    bad_ipv4.extend(
        service_cidrs(admin)
            .await
            .iter()
            .filter(|c| !c.contains(':'))
            .map(|c| address_in(c).to_string()),
    );
    let world = World {
        me: Party {
            id: me.id.clone(),
            tenant: me.name.clone(),
            twin: "rt-gen-twin".into(),
            local: "a-local".into(),
        },
        other: Party {
            id: other.id.clone(),
            tenant: other.name.clone(),
            twin: "rt-gen-other-twin".into(),
            local: "app".into(),
        },
        provider_ns: provider_ns.into(),
        denied: denied_ranges(admin).await,
        declared: vec![CONSUMER_PODS.to_string()],
        bad_ipv4,
        refused_twins: vec![
            "kube-system".into(),
            "default".into(),
            "liqo".into(),
            "kube-public".into(),
            "rt-gen-other-twin".into(),
            provider_ns.into(),
            other.name.clone(),
            me.name.clone(),
            "rt-gen-twin".into(),
            "Not_Valid".into(),
        ],
    };
    (world, me, other)
}

pub async fn run(env: &'static TestEnv, admin: &Client) {
    let seed = match std::env::var("RED_TEAM_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("RED_TEAM_SEED={s:?} is not a number")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    let writes: usize = std::env::var("RED_TEAM_WRITES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    eprintln!("red team: seed {seed} (RED_TEAM_SEED={seed} replays these writes)");
    let (w, me, other) = setup(env, admin).await;
    let before = settled_snapshot(admin, &w).await;
    eprintln!(
        "red team: watching {} objects and namespaces outside the scope",
        before.len()
    );

    let mut rng = Rng::new(seed);
    let (mut refused, mut allowed, mut in_scope_refused) = (0usize, 0usize, 0usize);
    let mut violations = Vec::new();
    let mut refusals_in_scope: BTreeMap<String, usize> = BTreeMap::new();
    let mut allowed_by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let started = std::time::Instant::now();
    for i in 0..writes {
        let write = generate(&mut rng, &w);
        let (old, new, sent, result) = send(&me.peer, admin, &write).await;
        let scoped = in_scope(&w, &write, old.as_ref(), new.as_ref());
        match result {
            Outcome::Allowed => {
                allowed += 1;
                *allowed_by_kind
                    .entry(format!("{:?} {:?}", write.verb, write.kind))
                    .or_default() += 1;
                if !scoped {
                    violations.push(format!(
                        "#{i} {} ALLOWED out of scope\n  request: {sent}\n  before: {}",
                        write.describe(),
                        old.map(|o| o.to_string()).unwrap_or("-".into())
                    ));
                }
            }
            Outcome::Refused(code, message) => {
                refused += 1;
                if scoped {
                    in_scope_refused += 1;
                    let why: String = message.chars().take(110).collect();
                    *refusals_in_scope
                        .entry(format!("{code} {why}"))
                        .or_default() += 1;
                }
            }
            Outcome::Failed(error) => violations.push(format!(
                "#{i} {} answered neither 2xx nor 4xx: {error}\n  request: {sent}",
                write.describe()
            )),
        }
    }
    eprintln!(
        "red team: {writes} writes in {:?}; in scope but refused: {in_scope_refused}",
        started.elapsed()
    );
    eprintln!("red team: allowed: {allowed_by_kind:?}");
    for (why, n) in &refusals_in_scope {
        eprintln!("red team:   {n:4} × {why}");
    }

    // The provider answers the NamespaceMap as it was left: every extra name refused.
    let maps = Api::<NamespaceMap>::namespaced(admin.clone(), &w.me.tenant);
    let map = eventually(
        "newyork to answer rt-gen's last NamespaceMap",
        WAIT,
        || async {
            let map = maps.get(NAMESPACE_MAP_NAME).await.ok()?;
            let status = map.status.clone()?;
            map.spec
                .desired_mapping
                .keys()
                .all(|k| status.current_mapping.contains_key(k))
                .then_some(map)
        },
    )
    .await;
    let status = map.status.unwrap();
    for (local, remote) in &map.spec.desired_mapping {
        let answer = &status.current_mapping[local];
        let expected = if *local == w.me.local {
            MappingPhase::Accepted
        } else {
            MappingPhase::CreationLoopBackOff
        };
        if answer.phase != expected {
            violations.push(format!(
                "NamespaceMap entry {local} -> {remote}: {answer:?}, expected {expected:?}"
            ));
        }
    }
    for (tenant, twin) in [(&w.me.tenant, &w.me.twin), (&w.other.tenant, &w.other.twin)] {
        let twins = namespaces_labelled(admin, &format!("{TENANT_LABEL}={tenant}")).await;
        if twins != [twin.clone()] {
            violations.push(format!("the twin namespaces of {tenant} are now {twins:?}"));
        }
    }

    // Nothing outside the scope changed.
    let after = settled_snapshot(admin, &w).await;
    let keys: BTreeSet<_> = before.keys().chain(after.keys()).collect();
    for key in keys {
        let (b, a) = (before.get(key), after.get(key));
        if b == a {
            continue;
        }
        let (ns, kind, name) = key;
        let peers_copy = *ns == w.me.twin
            && matches!(kind, Kind::Service | Kind::EndpointSlice)
            && (owned(&w, b) || owned(&w, a));
        if !peers_copy {
            violations.push(format!(
                "{kind:?} {ns}/{name} changed outside the scope:\n  before: {}\n  after:  {}",
                b.map(Value::to_string).unwrap_or("(none)".into()),
                a.map(Value::to_string).unwrap_or("(none)".into())
            ));
        }
    }
    drop((me, other));

    assert!(
        violations.is_empty(),
        "red team (seed {seed}): {} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    assert!(
        allowed >= 20,
        "only {allowed} of {writes} writes were allowed: the token or the twin is not working, \
         so the refusals prove nothing"
    );
    println!(
        "red team: {writes} writes tried, {refused} refused, {allowed} allowed (all in scope)"
    );
}
