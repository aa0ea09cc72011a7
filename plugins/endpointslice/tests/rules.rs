//! One table row per EndpointSlice rule (LIQO-REFERENCE.md §3.3 and plugins/README.md).

use liqo_plugin_endpointslice::{manifest, reflect, reflect_json};
use liqo_plugin_sdk::{
    CidrMap, ClusterIdentity, Decision, DecisionJson, FakeHost, ReflectContext, kinds,
};
use serde_json::{Value, json};

fn context(config: Value) -> ReflectContext {
    ReflectContext {
        local_cluster: ClusterIdentity::new("london", "london"),
        remote_cluster: ClusterIdentity::new("newyork", "newyork"),
        local_namespace: "liqo-demo".to_owned(),
        remote_namespace: "liqo-demo".to_owned(),
        config: config.to_string(),
    }
}

fn service(namespace: &str, name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
           "spec": {"type": "ClusterIP"}})
}

/// A host whose cache holds `liqo-demo/flights` (no annotations), remapping 10.200/16 → 10.201/16.
fn host() -> FakeHost {
    FakeHost::new()
        .with_object(service("liqo-demo", "flights", json!({})))
        .with_cidr_map(CidrMap::from_pairs([("10.200.0.0/16", "10.201.0.0/16")]).unwrap())
        .with_allowed_reads(manifest().reads)
}

fn slice(endpoints: Value) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "flights-x7k2p", "namespace": "liqo-demo",
                     "labels": {"kubernetes.io/service-name": "flights",
                                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 7999, "protocol": "TCP"}],
    })
}

fn applied(decision: Decision) -> Value {
    match decision {
        Decision::Apply(object) => object,
        Decision::Skip(reason) => panic!("expected apply, got skip: {reason}"),
    }
}

/// (rule, local endpoints, expected remote endpoints)
fn endpoint_rows() -> Vec<(&'static str, Value, Value)> {
    vec![
        (
            "every address is translated through the host (CIDR remap)",
            json!([{"addresses": ["10.200.1.5"]}, {"addresses": ["10.200.7.9", "10.200.7.10"]}]),
            json!([{"addresses": ["10.201.1.5"]}, {"addresses": ["10.201.7.9", "10.201.7.10"]}]),
        ),
        (
            "addresses outside every mapping are unchanged",
            json!([{"addresses": ["192.168.3.4"]}]),
            json!([{"addresses": ["192.168.3.4"]}]),
        ),
        (
            "conditions ready, serving, terminating are kept (unknown conditions dropped)",
            json!([{"addresses": ["10.200.0.1"],
                    "conditions": {"ready": false, "serving": true, "terminating": true, "futureCondition": true}}]),
            json!([{"addresses": ["10.201.0.1"], "conditions": {"ready": false, "serving": true, "terminating": true}}]),
        ),
        (
            "hostname and zone are kept",
            json!([{"addresses": ["10.200.0.1"], "hostname": "cassandra-0", "zone": "eu-west-2a"}]),
            json!([{"addresses": ["10.201.0.1"], "hostname": "cassandra-0", "zone": "eu-west-2a"}]),
        ),
        (
            "nodeName, targetRef, hints, deprecatedTopology are dropped",
            json!([{"addresses": ["10.200.0.1"], "nodeName": "london-worker-1",
                    "targetRef": {"kind": "Pod", "name": "flights-7d9f", "namespace": "liqo-demo", "uid": "u-1"},
                    "hints": {"forZones": [{"name": "eu-west-2a"}]},
                    "deprecatedTopology": {"kubernetes.io/hostname": "london-worker-1"}}]),
            json!([{"addresses": ["10.201.0.1"]}]),
        ),
        (
            "endpoints null (a Service without pods) becomes []",
            Value::Null,
            json!([]),
        ),
    ]
}

#[test]
fn endpoint_rules() {
    for (rule, local, expected) in endpoint_rows() {
        let remote = applied(reflect(&host(), &context(json!({})), &slice(local)).unwrap());
        assert_eq!(remote["endpoints"], expected, "rule: {rule}");
    }
}

#[test]
fn address_type_and_ports_are_copied() {
    let mut local = slice(json!([{"addresses": ["10.200.0.1"]}]));
    local["ports"] = json!([{"name": "http", "port": 7999, "protocol": "TCP", "appProtocol": "http"},
                            {"name": "dns", "port": 53, "protocol": "UDP"}]);
    let remote = applied(reflect(&host(), &context(json!({})), &local).unwrap());
    assert_eq!(remote["addressType"], "IPv4");
    assert_eq!(remote["ports"], local["ports"]);

    local["ports"] = Value::Null;
    let remote = applied(reflect(&host(), &context(json!({})), &local).unwrap());
    assert_eq!(remote["ports"], json!([]), "null ports become []");
}

#[test]
fn ipv6_addresses_are_translated() {
    let host = FakeHost::new()
        .with_object(service("liqo-demo", "flights", json!({})))
        .with_cidr_map(CidrMap::from_pairs([("fd00:10::/64", "fd00:20::/64")]).unwrap());
    let mut local = slice(json!([{"addresses": ["fd00:10::1:5"]}]));
    local["addressType"] = json!("IPv6");
    let remote = applied(reflect(&host, &context(json!({})), &local).unwrap());
    assert_eq!(
        remote["endpoints"],
        json!([{"addresses": ["fd00:20::1:5"]}])
    );
}

#[test]
fn fqdn_addresses_are_not_translated() {
    let host = FakeHost::new()
        .with_object(service("liqo-demo", "flights", json!({})))
        .with_translation(|address| Err(format!("translation must not be called for {address}")));
    let mut local = slice(json!([{"addresses": ["db.example.com"]}]));
    local["addressType"] = json!("FQDN");
    let remote = applied(reflect(&host, &context(json!({})), &local).unwrap());
    assert_eq!(
        remote["endpoints"],
        json!([{"addresses": ["db.example.com"]}])
    );
}

#[test]
fn a_failed_translation_fails_the_slice() {
    let host = FakeHost::new()
        .with_object(service("liqo-demo", "flights", json!({})))
        .with_translation(|address| {
            if address == "10.200.0.2" {
                Err("no IP mapping for 10.200.0.2".to_owned())
            } else {
                Ok(address.to_owned())
            }
        });
    let mut local = slice(json!([{"addresses": ["10.200.0.1"]}, {"addresses": ["10.200.0.2"]}]));
    let error = reflect(&host, &context(json!({})), &local).unwrap_err();
    assert_eq!(
        error,
        "endpoints[1]: cannot translate endpoint liqo-demo/flights 10.200.0.2:7999/TCP: no IP \
         mapping for 10.200.0.2"
    );
    // Without ports the addresses go through translate_address.
    local["ports"] = json!([]);
    let error = reflect(&host, &context(json!({})), &local).unwrap_err();
    assert_eq!(
        error,
        "cannot translate address 10.200.0.2 of endpoint 1: no IP mapping for 10.200.0.2"
    );
}

/// A host whose cache holds `liqo-demo/flights`, reaching this cluster through the gateway
/// 10.96.0.50:7901.
fn gateway_host() -> FakeHost {
    FakeHost::new()
        .with_object(service("liqo-demo", "flights", json!({})))
        .with_gateway("10.96.0.50:7901")
        .with_allowed_reads(manifest().reads)
}

/// (rule, local endpoints, expected remote endpoints) in gateway mode.
fn gateway_rows() -> Vec<(&'static str, Value, Value)> {
    vec![
        (
            "one pod: its endpoint at the gateway, per-pod fields as without a gateway",
            json!([{"addresses": ["10.200.1.5"], "conditions": {"ready": true}, "hostname": "flights-0",
                    "nodeName": "london-worker-1", "targetRef": {"kind": "Pod", "name": "flights-0"}}]),
            json!([{"addresses": ["10.96.0.50"], "conditions": {"ready": true}, "hostname": "flights-0"}]),
        ),
        (
            "two ready pods: one endpoint at the gateway, no per-pod fields",
            json!([{"addresses": ["10.200.1.5"], "conditions": {"ready": true, "serving": true, "terminating": false},
                    "nodeName": "london-worker-1", "zone": "eu-west-2a", "hostname": "a",
                    "targetRef": {"kind": "Pod", "name": "flights-a"}},
                   {"addresses": ["10.200.7.9"], "conditions": {"ready": true, "serving": true, "terminating": false},
                    "nodeName": "london-worker-2", "zone": "eu-west-2b",
                    "targetRef": {"kind": "Pod", "name": "flights-b"}}]),
            json!([{"addresses": ["10.96.0.50"], "conditions": {"ready": true, "serving": true, "terminating": false}}]),
        ),
        (
            "one ready, one not ready: ready",
            json!([{"addresses": ["10.200.1.5"], "conditions": {"ready": false, "serving": false, "terminating": false}},
                   {"addresses": ["10.200.7.9"], "conditions": {"ready": true, "serving": true, "terminating": false}}]),
            json!([{"addresses": ["10.96.0.50"], "conditions": {"ready": true, "serving": true, "terminating": false}}]),
        ),
        (
            "all not ready: not ready",
            json!([{"addresses": ["10.200.1.5"], "conditions": {"ready": false, "serving": false}},
                   {"addresses": ["10.200.7.9"], "conditions": {"ready": false, "serving": false}}]),
            json!([{"addresses": ["10.96.0.50"], "conditions": {"ready": false, "serving": false, "terminating": false}}]),
        ),
        (
            "absent conditions count as ready and serving, not terminating",
            json!([{"addresses": ["10.200.1.5"], "conditions": {"ready": false, "serving": false, "terminating": true}},
                   {"addresses": ["10.200.7.9"]}]),
            json!([{"addresses": ["10.96.0.50"], "conditions": {"ready": true, "serving": true, "terminating": false}}]),
        ),
        (
            "all terminating, one still serving: terminating and serving, not ready",
            json!([{"addresses": ["10.200.1.5"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                   {"addresses": ["10.200.7.9"], "conditions": {"ready": false, "serving": false, "terminating": true}}]),
            json!([{"addresses": ["10.96.0.50"], "conditions": {"ready": false, "serving": true, "terminating": true}}]),
        ),
        ("null endpoints stay []", Value::Null, json!([])),
    ]
}

#[test]
fn gateway_rules() {
    for (rule, local, expected) in gateway_rows() {
        let remote = applied(reflect(&gateway_host(), &context(json!({})), &slice(local)).unwrap());
        assert_eq!(remote["endpoints"], expected, "rule: {rule}");
        let want_ports = if expected == json!([]) {
            // No endpoint was translated: the ports are the local ones.
            json!([{"name": "http", "port": 7999, "protocol": "TCP"}])
        } else {
            json!([{"name": "http", "port": 7901, "protocol": "TCP"}])
        };
        assert_eq!(remote["ports"], want_ports, "rule: {rule}: ports");
    }
}

#[test]
fn gateway_rewrites_every_port_and_passes_the_endpoint_to_the_host() {
    let calls = std::sync::Mutex::new(Vec::new());
    struct Recording<'a>(FakeHost, &'a std::sync::Mutex<Vec<String>>);
    impl liqo_plugin_sdk::HostApi for Recording<'_> {
        fn get_object(
            &self,
            kind: &liqo_plugin_sdk::KindRef,
            namespace: &str,
            name: &str,
        ) -> Result<Option<Value>, String> {
            self.0.get_object(kind, namespace, name)
        }
        fn translate_address(&self, address: &str) -> Result<String, String> {
            Err(format!(
                "translate_address must not be called for {address}"
            ))
        }
        fn translate_endpoint(
            &self,
            namespace: &str,
            service: &str,
            address: &str,
            port: u16,
            protocol: &str,
        ) -> Result<liqo_plugin_sdk::TranslatedEndpoint, String> {
            self.1
                .lock()
                .unwrap()
                .push(format!("{namespace}/{service} {address}:{port}/{protocol}"));
            self.0
                .translate_endpoint(namespace, service, address, port, protocol)
        }
    }
    let host = Recording(gateway_host(), &calls);
    let mut local = slice(json!([{"addresses": ["10.200.1.5"]}, {"addresses": ["10.200.7.9"]}]));
    local["ports"] = json!([{"name": "http", "port": 8080, "appProtocol": "http"},
                            {"name": "dns", "port": 53, "protocol": "UDP"},
                            {"name": "any"}]);
    let remote = applied(reflect(&host, &context(json!({})), &local).unwrap());
    assert_eq!(
        remote["ports"],
        json!([{"name": "http", "port": 7901, "appProtocol": "http"},
               {"name": "dns", "port": 7901, "protocol": "UDP"},
               {"name": "any"}]),
        "numbered ports take the gateway port; other fields, and a port without number, unchanged"
    );
    assert_eq!(
        remote["endpoints"],
        json!([{"addresses": ["10.96.0.50"],
        "conditions": {"ready": true, "serving": true, "terminating": false}}])
    );
    assert_eq!(
        *calls.lock().unwrap(),
        vec![
            "liqo-demo/flights 10.200.1.5:8080/TCP",
            "liqo-demo/flights 10.200.1.5:53/UDP",
            "liqo-demo/flights 10.200.7.9:8080/TCP",
            "liqo-demo/flights 10.200.7.9:53/UDP",
        ],
        "one call per (address, numbered port); protocol TCP when absent"
    );
}

#[test]
fn gateway_without_ports_translates_addresses_and_merges() {
    let mut local = slice(
        json!([{"addresses": ["10.200.1.5"], "conditions": {"ready": false}},
                                 {"addresses": ["10.200.7.9"], "conditions": {"ready": true}}]),
    );
    local["ports"] = Value::Null;
    let remote = applied(reflect(&gateway_host(), &context(json!({})), &local).unwrap());
    assert_eq!(
        remote["endpoints"],
        json!([{"addresses": ["10.96.0.50"], "conditions": {"ready": true, "serving": true, "terminating": false}}])
    );
    assert_eq!(remote["ports"], json!([]));
}

#[test]
fn gateway_leaves_fqdn_slices_alone() {
    let mut local =
        slice(json!([{"addresses": ["db-1.example.com"]}, {"addresses": ["db-2.example.com"]}]));
    local["addressType"] = json!("FQDN");
    let remote = applied(reflect(&gateway_host(), &context(json!({})), &local).unwrap());
    assert_eq!(
        remote["endpoints"],
        json!([{"addresses": ["db-1.example.com"]}, {"addresses": ["db-2.example.com"]}])
    );
    assert_eq!(remote["ports"], local["ports"]);
}

#[test]
fn distinct_addresses_are_never_merged() {
    // CIDR remap: every pod keeps its own endpoint, the port is unchanged.
    let local = slice(
        json!([{"addresses": ["10.200.1.5"], "conditions": {"ready": false}},
                             {"addresses": ["10.200.7.9"], "conditions": {"ready": true}}]),
    );
    let remote = applied(reflect(&host(), &context(json!({})), &local).unwrap());
    assert_eq!(
        remote["endpoints"],
        json!([{"addresses": ["10.201.1.5"], "conditions": {"ready": false}},
               {"addresses": ["10.201.7.9"], "conditions": {"ready": true}}])
    );
    assert_eq!(remote["ports"], local["ports"]);
}

/// A host translating per address: 10.200.0.1 → port 7001, others → 7002 (or another address
/// for port 53), to provoke what a slice cannot express.
fn per_address_host() -> impl liqo_plugin_sdk::HostApi {
    struct PerAddress(FakeHost);
    impl liqo_plugin_sdk::HostApi for PerAddress {
        fn get_object(
            &self,
            kind: &liqo_plugin_sdk::KindRef,
            namespace: &str,
            name: &str,
        ) -> Result<Option<Value>, String> {
            self.0.get_object(kind, namespace, name)
        }
        fn translate_address(&self, address: &str) -> Result<String, String> {
            Ok(address.to_owned())
        }
        fn translate_endpoint(
            &self,
            _: &str,
            _: &str,
            address: &str,
            port: u16,
            _: &str,
        ) -> Result<liqo_plugin_sdk::TranslatedEndpoint, String> {
            let remote_port = if address == "10.200.0.1" { 7001 } else { 7002 };
            let remote_address = if port == 53 {
                "10.96.0.53"
            } else {
                "10.96.0.50"
            };
            Ok(liqo_plugin_sdk::TranslatedEndpoint {
                address: remote_address.to_owned(),
                port: remote_port,
            })
        }
    }
    PerAddress(FakeHost::new().with_object(service("liqo-demo", "flights", json!({}))))
}

#[test]
fn a_slice_cannot_give_each_address_its_own_port_or_each_port_its_own_address() {
    let local = slice(json!([{"addresses": ["10.200.0.1"]}, {"addresses": ["10.200.0.2"]}]));
    let error = reflect(&per_address_host(), &context(json!({})), &local).unwrap_err();
    assert!(error.contains("ports[0] \"http\" (7999/TCP)"), "{error}");
    assert!(
        error.contains("endpoints[0] (10.200.0.1) translates to port 7001")
            && error.contains("endpoints[1] (10.200.0.2) to port 7002"),
        "{error}"
    );

    let mut local = slice(json!([{"addresses": ["10.200.0.2"]}]));
    local["ports"] = json!([{"name": "http", "port": 80, "protocol": "TCP"},
                            {"name": "dns", "port": 53, "protocol": "UDP"}]);
    let error = reflect(&per_address_host(), &context(json!({})), &local).unwrap_err();
    assert!(
        error.contains("endpoints[0] (10.200.0.2) translates to 10.96.0.50 for ports[0]")
            && error.contains("but to 10.96.0.53 for ports[1] \"dns\" (53/UDP)"),
        "{error}"
    );
}

#[test]
fn gateway_errors_name_the_endpoint() {
    let local = slice(json!([{"addresses": ["10.200.0.1"]}, {"addresses": ["not-an-ip"]}]));
    let error = reflect(&gateway_host(), &context(json!({})), &local).unwrap_err();
    assert_eq!(
        error,
        "endpoints[1]: cannot translate endpoint liqo-demo/flights not-an-ip:7999/TCP through \
         the gateway 10.96.0.50:7901: \"not-an-ip\" is not an IP address"
    );
    let mut bad_port = slice(json!([{"addresses": ["10.200.0.1"]}]));
    bad_port["ports"] = json!([{"name": "http", "port": 70000}]);
    let error = reflect(&gateway_host(), &context(json!({})), &bad_port).unwrap_err();
    assert_eq!(error, "ports[0].port 70000 is not a port number");
}

#[test]
fn labels_and_annotations() {
    let mut local = slice(json!([]));
    local["metadata"]["labels"]["app"] = json!("flights");
    local["metadata"]["annotations"] = json!({
        "endpoints.kubernetes.io/last-change-trigger-time": "2026-11-26T07:10:44Z",
        "metallb.universe.tf/address-pool": "public",
    });
    let config = json!({"labelsNotReflected": ["kubernetes.io/service-name", "endpointslice.kubernetes.io/*"]});
    let remote = applied(reflect(&host(), &context(config), &local).unwrap());
    assert_eq!(
        remote["metadata"],
        json!({
            "name": "flights-x7k2p",
            "labels": {
                "app": "flights",
                // Always set, whatever labelsNotReflected says: the remote slice needs both.
                "kubernetes.io/service-name": "flights",
                "endpointslice.kubernetes.io/managed-by": "endpointslice.reflection.liqo.io",
            },
            "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2026-11-26T07:10:44Z"},
        })
    );
}

/// (rule, config, Service in the cache (None = absent), slice annotations, reflected?, reason contains)
#[allow(clippy::type_complexity)]
fn follow_rows() -> Vec<(
    &'static str,
    Value,
    Option<Value>,
    Value,
    bool,
    &'static str,
)> {
    let allow = json!({"reflectionPolicy": "AllowList"});
    vec![
        (
            "Service reflected: slice reflected",
            json!({}),
            Some(service("liqo-demo", "flights", json!({}))),
            json!({}),
            true,
            "",
        ),
        (
            "Service absent: skipped",
            json!({}),
            None,
            json!({}),
            false,
            "its Service liqo-demo/flights was not found",
        ),
        (
            "Service annotated skip-reflection: skipped",
            json!({}),
            Some(service(
                "liqo-demo",
                "flights",
                json!({"liqo.io/skip-reflection": "true"}),
            )),
            json!({}),
            false,
            "its Service liqo-demo/flights is not reflected: the Service is annotated liqo.io/skip-reflection",
        ),
        (
            "AllowList, Service allowed: slice reflected",
            allow.clone(),
            Some(service(
                "liqo-demo",
                "flights",
                json!({"liqo.io/allow-reflection": "true"}),
            )),
            json!({}),
            true,
            "",
        ),
        (
            "AllowList, Service not allowed: skipped",
            allow.clone(),
            Some(service("liqo-demo", "flights", json!({}))),
            json!({}),
            false,
            "is not annotated liqo.io/allow-reflection",
        ),
        (
            "AllowList, slice allowed but Service not: skipped",
            allow,
            Some(service("liqo-demo", "flights", json!({}))),
            json!({"liqo.io/allow-reflection": "true"}),
            false,
            "is not annotated liqo.io/allow-reflection",
        ),
        (
            "slice annotated skip-reflection, Service reflected: skipped",
            json!({}),
            Some(service("liqo-demo", "flights", json!({}))),
            json!({"liqo.io/skip-reflection": "true"}),
            false,
            "the EndpointSlice is annotated liqo.io/skip-reflection",
        ),
    ]
}

#[test]
fn a_slice_follows_its_service() {
    for (rule, config, cached_service, annotations, reflected, reason_part) in follow_rows() {
        let mut host = FakeHost::new().with_allowed_reads(manifest().reads);
        if let Some(cached) = cached_service {
            host.insert_object(cached).unwrap();
        }
        let mut local = slice(json!([]));
        local["metadata"]["annotations"] = annotations;
        match reflect(&host, &context(config), &local).unwrap() {
            Decision::Apply(_) => assert!(reflected, "rule: {rule}: expected a skip"),
            Decision::Skip(reason) => {
                assert!(!reflected, "rule: {rule}: unexpected skip: {reason}");
                assert!(
                    reason.contains(reason_part),
                    "rule: {rule}: reason {reason:?}"
                );
            }
        }
    }
}

#[test]
fn the_api_server_slice_is_never_reflected() {
    let host = FakeHost::new().with_object(service("default", "kubernetes", json!({})));
    let local = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                       "metadata": {"name": "kubernetes", "namespace": "default",
                                    "labels": {"kubernetes.io/service-name": "kubernetes"}},
                       "addressType": "IPv4", "endpoints": [{"addresses": ["172.18.0.2"]}], "ports": []});
    let Decision::Skip(reason) = reflect(&host, &context(json!({})), &local).unwrap() else {
        panic!("expected a skip")
    };
    assert!(
        reason.contains("default/kubernetes is the API server's own Service"),
        "{reason}"
    );
}

#[test]
fn slices_without_a_service_or_already_reflected_are_skipped() {
    let mut orphan = slice(json!([]));
    orphan["metadata"]["labels"] =
        json!({"endpointslice.kubernetes.io/managed-by": "example.com/controller"});
    let Decision::Skip(reason) = reflect(&host(), &context(json!({})), &orphan).unwrap() else {
        panic!("expected a skip")
    };
    assert!(
        reason.contains("no kubernetes.io/service-name label"),
        "{reason}"
    );

    let mut reflected = slice(json!([]));
    reflected["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] =
        json!("endpointslice.reflection.liqo.io");
    let Decision::Skip(reason) = reflect(&host(), &context(json!({})), &reflected).unwrap() else {
        panic!("expected a skip")
    };
    assert!(reason.contains("itself a reflection"), "{reason}");
}

#[test]
fn errors_say_what_is_wrong() {
    let ctx = context(json!({}));
    let service_object = service("liqo-demo", "flights", json!({}));
    assert_eq!(
        reflect(&host(), &ctx, &service_object).unwrap_err(),
        "expected a discovery.k8s.io/v1 EndpointSlice, got a v1 Service"
    );

    let mut no_type = slice(json!([]));
    no_type.as_object_mut().unwrap().remove("addressType");
    assert_eq!(
        reflect(&host(), &ctx, &no_type).unwrap_err(),
        "the EndpointSlice has no addressType"
    );

    // A cache that refuses Service reads (as the host does for undeclared kinds) is an error, not a skip.
    let refusing = FakeHost::new().with_allowed_reads(vec![]);
    let error = reflect(&refusing, &ctx, &slice(json!([]))).unwrap_err();
    assert!(error.contains("not declared"), "{error}");

    assert!(
        reflect(
            &host(),
            &context(json!({"reflectionPolicy": 1})),
            &slice(json!([]))
        )
        .unwrap_err()
        .contains("must be a string")
    );
    assert!(
        reflect_json(&host(), &ctx, "[]")
            .unwrap_err()
            .contains("must be a JSON object")
    );
}

#[test]
fn reflect_json_matches_reflect() {
    let ctx = context(json!({}));
    let local = slice(
        json!([{"addresses": ["10.200.1.1"], "conditions": {"ready": true}, "nodeName": "n1"}]),
    );
    let native = reflect(&host(), &ctx, &local).unwrap();
    let DecisionJson::Apply(text) = reflect_json(&host(), &ctx, &local.to_string()).unwrap() else {
        panic!("expected apply")
    };
    assert_eq!(
        Decision::Apply(serde_json::from_str(&text).unwrap()),
        native
    );
}

#[test]
fn manifest_reflects_slices_and_follows_services() {
    let manifest = manifest();
    assert_eq!(manifest.name, "endpointslice");
    assert_eq!(manifest.reflects, vec![kinds::endpoint_slice()]);
    assert_eq!(manifest.reflects[0].plural, "endpointslices");
    assert_eq!(manifest.triggers, vec![kinds::service()]);
    assert_eq!(manifest.reads, vec![kinds::service()]);
    assert!(!manifest.reflect_status);
}
