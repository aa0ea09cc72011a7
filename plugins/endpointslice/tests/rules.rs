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
    let local = slice(json!([{"addresses": ["10.200.0.1"]}, {"addresses": ["10.200.0.2"]}]));
    let error = reflect(&host, &context(json!({})), &local).unwrap_err();
    assert_eq!(
        error,
        "cannot translate address 10.200.0.2 of endpoint 1: no IP mapping for 10.200.0.2"
    );
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
