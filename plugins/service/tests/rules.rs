//! One table row per Service field rule (LIQO-REFERENCE.md §2.2 and plugins/README.md).

use liqo_plugin_sdk::{ClusterIdentity, Decision, DecisionJson, FakeHost, ReflectContext, kinds};
use liqo_plugin_service::{manifest, reflect, reflect_json};
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

fn service(annotations: Value, spec: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "flights", "namespace": "liqo-demo", "annotations": annotations},
        "spec": spec,
    })
}

fn applied(decision: Decision) -> Value {
    match decision {
        Decision::Apply(object) => object,
        Decision::Skip(reason) => panic!("expected apply, got skip: {reason}"),
    }
}

/// (rule, local annotations, local spec, expected remote spec)
fn spec_rows() -> Vec<(&'static str, Value, Value, Value)> {
    let port = json!({"name": "http", "port": 7999, "targetPort": 7999, "protocol": "TCP"});
    vec![
        (
            "ClusterIP: type, selector, ports, ipFamilyPolicy, sessionAffinity, internalTrafficPolicy copied; clusterIP, clusterIPs, ipFamilies dropped",
            json!({}),
            json!({"type": "ClusterIP", "clusterIP": "10.96.12.7", "clusterIPs": ["10.96.12.7"], "ipFamilies": ["IPv4"],
                   "ipFamilyPolicy": "SingleStack", "selector": {"run": "flights"}, "ports": [port],
                   "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"}),
            json!({"type": "ClusterIP", "ipFamilyPolicy": "SingleStack", "selector": {"run": "flights"}, "ports": [port],
                   "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"}),
        ),
        (
            "headless: the literal clusterIP None is kept",
            json!({}),
            json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"], "selector": {"app": "db"}}),
            json!({"type": "ClusterIP", "clusterIP": "None", "selector": {"app": "db"}}),
        ),
        (
            "NodePort: nodePort dropped, externalTrafficPolicy copied",
            json!({}),
            json!({"type": "NodePort", "externalTrafficPolicy": "Cluster",
                   "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080}]}),
            json!({"type": "NodePort", "externalTrafficPolicy": "Cluster",
                   "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}),
        ),
        (
            "NodePort forced: liqo.io/force-remote-node-port=true copies nodePort",
            json!({"liqo.io/force-remote-node-port": "true"}),
            json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}),
            json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}),
        ),
        (
            "NodePort forced with a value other than true: nodePort dropped",
            json!({"liqo.io/force-remote-node-port": "false"}),
            json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}),
            json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}),
        ),
        (
            "forced but nodePort 0: never emitted (no Liqo nodePort-0 trick)",
            json!({"liqo.io/force-remote-node-port": "true"}),
            json!({"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 0}]}),
            json!({"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]}),
        ),
        (
            "ExternalName: externalName kept",
            json!({}),
            json!({"type": "ExternalName", "externalName": "db.example.com", "sessionAffinity": "None"}),
            json!({"type": "ExternalName", "externalName": "db.example.com", "sessionAffinity": "None"}),
        ),
        (
            "multi-port: name, port, targetPort (number or name), protocol, appProtocol copied in order",
            json!({}),
            json!({"type": "ClusterIP", "ports": [
                {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP", "appProtocol": "http"},
                {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"},
                {"name": "grpc", "port": 9090, "targetPort": 9090, "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}]}),
            json!({"type": "ClusterIP", "ports": [
                {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP", "appProtocol": "http"},
                {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"},
                {"name": "grpc", "port": 9090, "targetPort": 9090, "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}]}),
        ),
        (
            "port without protocol: TCP (the API server default, part of the SSA merge key)",
            json!({}),
            json!({"ports": [{"port": 80}]}),
            json!({"ports": [{"port": 80, "protocol": "TCP"}]}),
        ),
        (
            "LoadBalancer: loadBalancerIP, loadBalancerClass, healthCheckNodePort, externalIPs, nodePorts dropped; allocateLoadBalancerNodePorts, loadBalancerSourceRanges, externalTrafficPolicy copied",
            json!({}),
            json!({"type": "LoadBalancer", "loadBalancerIP": "203.0.113.10", "loadBalancerClass": "example.com/lb",
                   "healthCheckNodePort": 31000, "externalIPs": ["198.51.100.1"], "externalTrafficPolicy": "Local",
                   "allocateLoadBalancerNodePorts": false, "loadBalancerSourceRanges": ["10.0.0.0/8"],
                   "ports": [{"port": 443, "protocol": "TCP", "nodePort": 31443}]}),
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "allocateLoadBalancerNodePorts": false,
                   "loadBalancerSourceRanges": ["10.0.0.0/8"], "ports": [{"port": 443, "protocol": "TCP"}]}),
        ),
        (
            "sessionAffinity copied, sessionAffinityConfig dropped",
            json!({}),
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}}),
            json!({"sessionAffinity": "ClientIP"}),
        ),
        (
            "publishNotReadyAddresses copied (false too); trafficDistribution dropped",
            json!({}),
            json!({"publishNotReadyAddresses": false, "trafficDistribution": "PreferClose"}),
            json!({"publishNotReadyAddresses": false}),
        ),
        (
            "externalTrafficPolicy on a ClusterIP Service (possible only with externalIPs, not reflected): dropped",
            json!({}),
            json!({"type": "ClusterIP", "externalIPs": ["198.51.100.1"], "externalTrafficPolicy": "Cluster"}),
            json!({"type": "ClusterIP"}),
        ),
        (
            "unset values (empty string, list, map, null) are omitted",
            json!({}),
            json!({"type": "ClusterIP", "externalName": "", "loadBalancerSourceRanges": [], "selector": {},
                   "ipFamilyPolicy": null, "ports": []}),
            json!({"type": "ClusterIP"}),
        ),
        (
            "fields outside the rules (future API fields) are dropped",
            json!({}),
            json!({"type": "ClusterIP", "someFutureField": {"x": 1}}),
            json!({"type": "ClusterIP"}),
        ),
    ]
}

#[test]
fn spec_field_rules() {
    let host = FakeHost::new();
    for (rule, annotations, local_spec, expected_spec) in spec_rows() {
        let remote = applied(
            reflect(
                &host,
                &context(json!({})),
                &service(annotations, local_spec),
            )
            .unwrap(),
        );
        assert_eq!(remote["spec"], expected_spec, "rule: {rule}");
    }
}

#[test]
fn output_has_only_api_version_kind_metadata_and_spec() {
    let local = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "flights", "namespace": "liqo-demo", "uid": "0b4c", "resourceVersion": "812",
                     "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z",
                     "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "y", "uid": "z"}],
                     "finalizers": ["example.com/f"], "managedFields": [{"manager": "kubectl"}],
                     "labels": {"run": "flights"}},
        "spec": {"type": "ClusterIP"},
        "status": {"loadBalancer": {}},
    });
    let remote = applied(reflect(&FakeHost::new(), &context(json!({})), &local).unwrap());
    assert_eq!(
        remote,
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "flights", "labels": {"run": "flights"}},
               "spec": {"type": "ClusterIP"}})
    );
}

/// (rule, config, local labels, local annotations, expected remote metadata)
fn metadata_rows() -> Vec<(&'static str, Value, Value, Value, Value)> {
    vec![
        (
            "labels and annotations copied",
            json!({}),
            json!({"app": "flights", "tier": "backend"}),
            json!({"example.com/owner": "team-a"}),
            json!({"name": "flights", "labels": {"app": "flights", "tier": "backend"},
                   "annotations": {"example.com/owner": "team-a"}}),
        ),
        (
            "default annotationsNotReflected: cloud load-balancer state, metallb.universe.tf/*, metallb.io/*, last-applied dropped",
            json!({}),
            json!({}),
            json!({"cloud.google.com/neg": "{\"ingress\":true}", "cloud.google.com/neg-status": "{}",
                   "metallb.universe.tf/address-pool": "public", "metallb.io/loadBalancerIPs": "203.0.113.10",
                   "kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "me"}),
            json!({"name": "flights", "annotations": {"keep": "me"}}),
        ),
        (
            "annotationsNotReflected replaces the defaults; last-applied is still dropped",
            json!({"annotationsNotReflected": ["example.com/*"]}),
            json!({}),
            json!({"metallb.universe.tf/address-pool": "public", "example.com/a": "x",
                   "kubectl.kubernetes.io/last-applied-configuration": "{}"}),
            json!({"name": "flights", "annotations": {"metallb.universe.tf/address-pool": "public"}}),
        ),
        (
            "labelsNotReflected filters labels with glob patterns",
            json!({"labelsNotReflected": ["internal.example.com/*", "pod-template-hash"]}),
            json!({"internal.example.com/cost-center": "42", "pod-template-hash": "abc", "app": "flights"}),
            json!({}),
            json!({"name": "flights", "labels": {"app": "flights"}}),
        ),
        (
            "reflection annotations are copied like any other (as in Liqo)",
            json!({}),
            json!({}),
            json!({"liqo.io/skip-reflection": "false", "liqo.io/force-remote-node-port": "true"}),
            json!({"name": "flights", "annotations": {"liqo.io/skip-reflection": "false",
                                                      "liqo.io/force-remote-node-port": "true"}}),
        ),
        (
            "empty labels and annotations are omitted",
            json!({}),
            json!({}),
            json!({"kubectl.kubernetes.io/last-applied-configuration": "{}"}),
            json!({"name": "flights"}),
        ),
    ]
}

#[test]
fn metadata_rules() {
    for (rule, config, labels, annotations, expected) in metadata_rows() {
        let local = json!({"apiVersion": "v1", "kind": "Service",
                           "metadata": {"name": "flights", "labels": labels, "annotations": annotations},
                           "spec": {}});
        let remote = applied(reflect(&FakeHost::new(), &context(config), &local).unwrap());
        assert_eq!(remote["metadata"], expected, "rule: {rule}");
    }
}

/// (rule, config, namespace, name, annotations, reflected?)
fn policy_rows() -> Vec<(&'static str, Value, &'static str, &'static str, Value, bool)> {
    let deny = json!({});
    let deny_explicit = json!({"reflectionPolicy": "DenyList"});
    let allow = json!({"reflectionPolicy": "AllowList"});
    vec![
        (
            "DenyList (default), no annotation: reflected",
            deny.clone(),
            "liqo-demo",
            "web",
            json!({}),
            true,
        ),
        (
            "DenyList explicit, no annotation: reflected",
            deny_explicit.clone(),
            "liqo-demo",
            "web",
            json!({}),
            true,
        ),
        (
            "DenyList, skip-reflection=true: skipped",
            deny.clone(),
            "liqo-demo",
            "web",
            json!({"liqo.io/skip-reflection": "true"}),
            false,
        ),
        (
            "DenyList, skip-reflection with empty value: skipped",
            deny.clone(),
            "liqo-demo",
            "web",
            json!({"liqo.io/skip-reflection": ""}),
            false,
        ),
        (
            "DenyList, skip-reflection=false: reflected",
            deny_explicit,
            "liqo-demo",
            "web",
            json!({"liqo.io/skip-reflection": "false"}),
            true,
        ),
        (
            "AllowList, no annotation: skipped",
            allow.clone(),
            "liqo-demo",
            "web",
            json!({}),
            false,
        ),
        (
            "AllowList, allow-reflection=true: reflected",
            allow.clone(),
            "liqo-demo",
            "web",
            json!({"liqo.io/allow-reflection": "true"}),
            true,
        ),
        (
            "AllowList, allow-reflection=FALSE: skipped",
            allow.clone(),
            "liqo-demo",
            "web",
            json!({"liqo.io/allow-reflection": "FALSE"}),
            false,
        ),
        (
            "AllowList, skip-reflection=false is not an opt-in: skipped",
            allow.clone(),
            "liqo-demo",
            "web",
            json!({"liqo.io/skip-reflection": "false"}),
            false,
        ),
        (
            "default/kubernetes: never reflected",
            deny.clone(),
            "default",
            "kubernetes",
            json!({}),
            false,
        ),
        (
            "default/kubernetes: never reflected, even allowed",
            allow,
            "default",
            "kubernetes",
            json!({"liqo.io/allow-reflection": "true"}),
            false,
        ),
        (
            "a Service named kubernetes elsewhere: reflected",
            deny,
            "liqo-demo",
            "kubernetes",
            json!({}),
            true,
        ),
    ]
}

#[test]
fn reflection_policy_rules() {
    for (rule, config, namespace, name, annotations, reflected) in policy_rows() {
        let local = json!({"apiVersion": "v1", "kind": "Service",
                           "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
                           "spec": {"type": "ClusterIP"}});
        let decision = reflect(&FakeHost::new(), &context(config), &local).unwrap();
        assert_eq!(
            matches!(decision, Decision::Apply(_)),
            reflected,
            "rule: {rule}: {decision:?}"
        );
    }
}

#[test]
fn skip_reasons_say_why() {
    let skipped = service(json!({"liqo.io/skip-reflection": "true"}), json!({}));
    let Decision::Skip(reason) = reflect(&FakeHost::new(), &context(json!({})), &skipped).unwrap()
    else {
        panic!("expected a skip");
    };
    assert_eq!(
        reason,
        "the Service is annotated liqo.io/skip-reflection (reflection policy DenyList)"
    );

    let Decision::Skip(reason) = reflect(
        &FakeHost::new(),
        &context(json!({"reflectionPolicy": "AllowList"})),
        &service(json!({}), json!({})),
    )
    .unwrap() else {
        panic!("expected a skip");
    };
    assert_eq!(
        reason,
        "the Service is not annotated liqo.io/allow-reflection (reflection policy AllowList)"
    );
}

#[test]
fn namespace_comes_from_the_context_when_the_object_has_none() {
    let kubernetes = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes"}, "spec": {}});
    let mut ctx = context(json!({}));
    ctx.local_namespace = "default".to_owned();
    assert!(matches!(
        reflect(&FakeHost::new(), &ctx, &kubernetes).unwrap(),
        Decision::Skip(_)
    ));
}

#[test]
fn errors_say_what_is_wrong() {
    let host = FakeHost::new();
    let ctx = context(json!({}));
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
    assert_eq!(
        reflect(&host, &ctx, &pod).unwrap_err(),
        "expected a v1 Service, got a v1 Pod"
    );
    let nameless = json!({"apiVersion": "v1", "kind": "Service", "metadata": {}});
    assert_eq!(
        reflect(&host, &ctx, &nameless).unwrap_err(),
        "the object has no metadata.name"
    );
    let bad_policy = context(json!({"reflectionPolicy": "Sometimes"}));
    let error = reflect(&host, &bad_policy, &service(json!({}), json!({}))).unwrap_err();
    assert!(error.contains("\"DenyList\" and \"AllowList\""), "{error}");
    let error = reflect_json(&host, &ctx, "{not json").unwrap_err();
    assert!(
        error.starts_with("the Service is not valid JSON"),
        "{error}"
    );
}

#[test]
fn reflect_json_matches_reflect() {
    let host = FakeHost::new();
    let ctx = context(json!({}));
    let local = service(
        json!({"a": "b"}),
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
    );
    let native = reflect(&host, &ctx, &local).unwrap();
    let DecisionJson::Apply(text) = reflect_json(&host, &ctx, &local.to_string()).unwrap() else {
        panic!("expected apply");
    };
    assert_eq!(
        Decision::Apply(serde_json::from_str(&text).unwrap()),
        native
    );

    let skipped = service(json!({"liqo.io/skip-reflection": "yes"}), json!({}));
    assert!(matches!(
        reflect_json(&host, &ctx, &skipped.to_string()).unwrap(),
        DecisionJson::Skip(_)
    ));
}

#[test]
fn manifest_declares_services_only() {
    let manifest = manifest();
    assert_eq!(manifest.name, "service");
    assert_eq!(manifest.reflects, vec![kinds::service()]);
    assert!(manifest.triggers.is_empty());
    assert!(manifest.reads.is_empty());
    assert!(!manifest.reflect_status);
}
