//! The reflection engine against two real control planes (testenv): london reflects offloaded
//! namespaces into newyork through the built-in wasm plugins.
//!
//! Each test runs its own engine on its own namespace, peered the way the peering controller
//! will do it: a newyork client, the newyork identity, and a CIDR remap of london's pod CIDR.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use liqo_host::plugin::{
    CidrRemap, ClusterIdentity, PluginLimits, PluginMetrics, PluginRuntime, RuntimeConfig, builtin,
};
use liqo_host::reflect::{Engine, EngineConfig, EngineMetrics, PeerHandle};
use serde_json::json;
use testsupport::{TestEnv, eventually};

const WAIT: Duration = Duration::from_secs(30);
const LONDON_POD_CIDR_SEEN_FROM_NEWYORK: &str = "10.201.0.0/16";

struct Peering {
    env: &'static TestEnv,
    london: Client,
    newyork: Client,
    engine: Engine,
    namespace: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn identity(name: &str) -> ClusterIdentity {
    ClusterIdentity {
        id: name.into(),
        name: name.into(),
    }
}

/// Starts an engine for london with the built-in Service and EndpointSlice plugins, its workers
/// running until the returned sender is dropped.
fn start_engine(
    london: &Client,
    service_config: &str,
) -> (Engine, tokio::sync::oneshot::Sender<()>) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let runtime = PluginRuntime::new(
        RuntimeConfig {
            cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compile-cache")),
            ..RuntimeConfig::default()
        },
        PluginMetrics::default(),
    )
    .unwrap();
    let plugins = vec![
        runtime
            .load_reflector(
                "builtin:service",
                builtin::SERVICE,
                PluginLimits::default(),
                service_config,
            )
            .unwrap(),
        runtime
            .load_reflector(
                "builtin:endpointslice",
                builtin::ENDPOINTSLICE,
                PluginLimits::default(),
                service_config,
            )
            .unwrap(),
    ];
    let engine = Engine::start(
        london.clone(),
        EngineConfig {
            local: identity("london"),
            workers: 4,
            backoff: Default::default(),
        },
        plugins,
        EngineMetrics::default(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .run(async {
                    let _ = stopped.await;
                })
                .await
        });
    }
    (engine, stop)
}

/// Starts an engine for london, peers it with newyork and offloads a fresh namespace
/// (EnforceSameName: same name on both sides).
async fn offloaded_namespace(prefix: &str, service_config: &str) -> Peering {
    let env = TestEnv::shared();
    let london = env.client("london").await;
    let newyork = env.client("newyork").await;
    let (engine, stop) = start_engine(&london, service_config);
    let london_pods = env.cluster("london").pod_cidr.to_string();
    engine.add_peer(PeerHandle {
        identity: identity("newyork"),
        client: newyork.clone(),
        translator: Arc::new(
            CidrRemap::parse(&format!(
                "{london_pods}={LONDON_POD_CIDR_SEEN_FROM_NEWYORK}"
            ))
            .unwrap(),
        ),
    });
    let namespace = env.unique_namespace(prefix).await;
    env.create_namespace("newyork", &namespace).await;
    assert!(engine.offload("newyork", &namespace, &namespace));
    Peering {
        env,
        london,
        newyork,
        engine,
        namespace,
        _stop: stop,
    }
}

impl Peering {
    fn services(&self, client: &Client) -> Api<Service> {
        Api::namespaced(client.clone(), &self.namespace)
    }

    async fn create_local(&self, svc: serde_json::Value) -> Service {
        let svc: Service = serde_json::from_value(svc).unwrap();
        self.services(&self.london)
            .create(&PostParams::default(), &svc)
            .await
            .unwrap()
    }

    async fn remote(&self, name: &str) -> Option<Service> {
        self.services(&self.newyork).get_opt(name).await.unwrap()
    }

    async fn wait_remote(
        &self,
        what: &str,
        name: &str,
        check: impl Fn(&Service) -> bool,
    ) -> Service {
        eventually(what, WAIT, || async {
            self.remote(name).await.filter(|s| check(s))
        })
        .await
    }

    async fn wait_remote_gone(&self, name: &str) {
        eventually(&format!("{name} removed from newyork"), WAIT, || async {
            self.remote(name).await.is_none().then_some(())
        })
        .await;
    }

    /// Waits until the engine has nothing left to do.
    async fn settle(&self) {
        eventually("the engine to be idle", WAIT, || async {
            (self.engine.pending() == 0).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn service(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"app": name}}, "spec": spec})
}

fn flights() -> serde_json::Value {
    service(
        "flights-service",
        json!({"type": "ClusterIP", "selector": {"run": "flights-service"},
               "ports": [{"port": 7999, "targetPort": 7999, "protocol": "TCP"}]}),
    )
}

fn spec(svc: &Service) -> &k8s_openapi::api::core::v1::ServiceSpec {
    svc.spec.as_ref().unwrap()
}

fn label<'a>(svc: &'a Service, key: &str) -> Option<&'a str> {
    svc.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

#[tokio::test]
async fn offloaded_service_and_endpoints_appear_in_newyork() {
    let p = offloaded_namespace("refl-seed", "{}").await;
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "flights-service"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"run": "flights-service"}},
                 "template": {"metadata": {"labels": {"run": "flights-service"}},
                              "spec": {"containers": [{"name": "flights", "image": "flights:1", "ports": [{"containerPort": 7999}]}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(p.london.clone(), &p.namespace)
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let local = p.create_local(flights()).await;

    let remote = p
        .wait_remote("flights-service in newyork", "flights-service", |_| true)
        .await;
    let remote_ip: IpAddr = spec(&remote)
        .cluster_ip
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let local_ip: IpAddr = spec(&local).cluster_ip.as_deref().unwrap().parse().unwrap();
    assert!(
        p.env.cluster("newyork").service_cidr.contains(&remote_ip),
        "{remote_ip} from newyork's range"
    );
    assert_ne!(remote_ip, local_ip);
    assert_eq!(
        spec(&remote).selector.as_ref().unwrap()["run"],
        "flights-service"
    );
    let port = &spec(&remote).ports.as_ref().unwrap()[0];
    assert_eq!((port.port, port.protocol.as_deref()), (7999, Some("TCP")));
    assert_eq!(label(&remote, "offloading.liqo.io/origin"), Some("london"));
    assert_eq!(
        label(&remote, "offloading.liqo.io/destination"),
        Some("newyork")
    );
    assert_eq!(label(&remote, "app"), Some("flights-service"));

    // No pods in newyork: pods stay local.
    let pods = Api::<Pod>::namespaced(p.newyork.clone(), &p.namespace)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(pods.items.is_empty());

    // The EndpointSlice follows, with london's pod address translated for newyork.
    let london_pod_ip: IpAddr = eventually("the london pod to be Ready", WAIT, || async {
        let pods = Api::<Pod>::namespaced(p.london.clone(), &p.namespace)
            .list(&ListParams::default().labels("run=flights-service"))
            .await
            .ok()?;
        pods.items
            .first()?
            .status
            .as_ref()?
            .pod_ip
            .as_deref()?
            .parse()
            .ok()
    })
    .await;
    let slices = Api::<EndpointSlice>::namespaced(p.newyork.clone(), &p.namespace);
    let slice = eventually(
        "a reflected EndpointSlice with the pod address",
        WAIT,
        || async {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=flights-service"))
                .await
                .ok()?;
            list.items.into_iter().find(|s| !s.endpoints.is_empty())
        },
    )
    .await;
    let labels = slice.metadata.labels.as_ref().unwrap();
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice.reflection.liqo.io"
    );
    assert_eq!(labels["offloading.liqo.io/origin"], "london");
    let address: IpAddr = slice.endpoints[0].addresses[0].parse().unwrap();
    let expected = match london_pod_ip {
        IpAddr::V4(ip) => {
            let host = u32::from(ip) & 0x0000_ffff;
            IpAddr::V4(
                (u32::from("10.201.0.0".parse::<std::net::Ipv4Addr>().unwrap()) | host).into(),
            )
        }
        v6 => v6,
    };
    assert_eq!(
        address, expected,
        "london pod {london_pod_ip} seen from newyork"
    );
    // Exactly one reflected slice (as Liqo's e2e checks). newyork's own EndpointSlice controller
    // also keeps a slice for the Service (it has a selector); with no pods in newyork it is empty.
    let all = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=flights-service"))
        .await
        .unwrap();
    let is_reflected = |s: &EndpointSlice| {
        s.metadata.labels.as_ref().unwrap()["endpointslice.kubernetes.io/managed-by"]
            == "endpointslice.reflection.liqo.io"
    };
    assert_eq!(
        all.items.iter().filter(|s| is_reflected(s)).count(),
        1,
        "exactly one reflected slice"
    );
    assert!(
        all.items
            .iter()
            .filter(|s| !is_reflected(s))
            .all(|s| s.endpoints.is_empty()),
        "newyork's own slices for the Service are empty"
    );

    // A SuccessfulReflection event on the local Service.
    let events = Api::<Event>::namespaced(p.london.clone(), &p.namespace);
    eventually("a SuccessfulReflection event", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("SuccessfulReflection"))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn updates_and_deletes_propagate() {
    let p = offloaded_namespace("refl-update", "{}").await;
    p.create_local(flights()).await;
    p.wait_remote("reflected", "flights-service", |_| true)
        .await;

    let patch = json!({"metadata": {"labels": {"tier": "backend", "app": null}},
                       "spec": {"selector": {"run": "flights-v2"},
                                "ports": [{"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}]}});
    p.services(&p.london)
        .patch(
            "flights-service",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let remote = p
        .wait_remote("the update in newyork", "flights-service", |s| {
            spec(s)
                .ports
                .as_ref()
                .is_some_and(|ports| ports.len() == 1 && ports[0].port == 8080)
        })
        .await;
    assert_eq!(
        spec(&remote).selector.as_ref().unwrap()["run"],
        "flights-v2"
    );
    assert_eq!(label(&remote, "tier"), Some("backend"));
    assert_eq!(
        label(&remote, "app"),
        None,
        "a removed label is removed remotely"
    );

    p.services(&p.london)
        .delete("flights-service", &DeleteParams::default())
        .await
        .unwrap();
    p.wait_remote_gone("flights-service").await;
}

#[tokio::test]
async fn service_rules_hold_on_the_live_remote_objects() {
    let p = offloaded_namespace("refl-rules", "{}").await;
    p.create_local(service(
        "headless",
        json!({"clusterIP": "None", "selector": {"a": "b"}, "ports": [{"port": 80}]}),
    ))
    .await;
    p.create_local(service(
        "nodeport",
        json!({"type": "NodePort", "selector": {"a": "b"}, "ports": [{"port": 80}]}),
    ))
    .await;
    let forced = p
        .create_local(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "forced", "annotations": {"liqo.io/force-remote-node-port": "true"}},
            "spec": {"type": "NodePort", "selector": {"a": "b"}, "ports": [{"port": 80}]}}))
        .await;
    p.create_local(service(
        "external",
        json!({"type": "ExternalName", "externalName": "flights.example.com"}),
    ))
    .await;
    p.create_local(service("multi", json!({"selector": {"a": "b"}, "ports": [
        {"name": "http", "port": 80, "targetPort": 8080}, {"name": "grpc", "port": 9090, "protocol": "TCP", "appProtocol": "grpc"}]})))
        .await;
    p.create_local(service("lb", json!({"type": "LoadBalancer", "selector": {"a": "b"}, "ports": [{"port": 443}],
        "loadBalancerSourceRanges": ["10.0.0.0/8"], "externalIPs": ["192.0.2.10"], "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}})))
        .await;

    let headless = p.wait_remote("headless", "headless", |_| true).await;
    assert_eq!(spec(&headless).cluster_ip.as_deref(), Some("None"));

    let nodeport = p.wait_remote("nodeport", "nodeport", |_| true).await;
    assert_eq!(spec(&nodeport).type_.as_deref(), Some("NodePort"));
    assert!(
        spec(&nodeport).ports.as_ref().unwrap()[0]
            .node_port
            .is_some(),
        "newyork allocated a node port"
    );

    let forced_remote = p.wait_remote("forced", "forced", |_| true).await;
    assert_eq!(
        spec(&forced_remote).ports.as_ref().unwrap()[0].node_port,
        spec(&forced).ports.as_ref().unwrap()[0].node_port,
        "the annotation copies london's node port"
    );

    let external = p.wait_remote("external", "external", |_| true).await;
    assert_eq!(spec(&external).type_.as_deref(), Some("ExternalName"));
    assert_eq!(
        spec(&external).external_name.as_deref(),
        Some("flights.example.com")
    );

    let multi = p.wait_remote("multi", "multi", |_| true).await;
    let ports = spec(&multi).ports.as_ref().unwrap();
    assert_eq!(ports.len(), 2);
    assert_eq!(ports[1].app_protocol.as_deref(), Some("grpc"));

    let lb = p.wait_remote("lb", "lb", |_| true).await;
    let s = spec(&lb);
    assert_eq!(s.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(
        s.load_balancer_source_ranges.as_deref(),
        Some(&["10.0.0.0/8".to_string()][..])
    );
    assert!(s.external_ips.is_none(), "externalIPs are not reflected");
    assert_eq!(s.session_affinity.as_deref(), Some("ClientIP"));
    // The API server defaults sessionAffinityConfig for ClientIP (10800 s); ours is not copied.
    let timeout = s
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds);
    assert_ne!(timeout, Some(60), "sessionAffinityConfig is not reflected");
}

#[tokio::test]
async fn a_change_the_remote_refuses_in_place_recreates_the_copy() {
    let p = offloaded_namespace("refl-immutable", "{}").await;
    // The remote copy was reflected earlier as a ClusterIP Service (ours: it carries the
    // ownership labels); meanwhile the local Service became headless. spec.clusterIP is
    // immutable, so the apply is refused in place and the copy must be replaced.
    p.engine.unoffload("newyork", &p.namespace);
    let earlier: Service = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "flights-service", "labels": {
            "offloading.liqo.io/origin": "london", "offloading.liqo.io/destination": "newyork"}},
        "spec": {"selector": {"run": "x"}, "ports": [{"port": 7999}]}}))
    .unwrap();
    let before = p
        .services(&p.newyork)
        .create(&PostParams::default(), &earlier)
        .await
        .unwrap();
    assert_ne!(spec(&before).cluster_ip.as_deref(), Some("None"));
    p.create_local(service(
        "flights-service",
        json!({"clusterIP": "None", "selector": {"run": "x"}, "ports": [{"port": 7999}]}),
    ))
    .await;
    assert!(p.engine.offload("newyork", &p.namespace, &p.namespace));
    let after = p
        .wait_remote("headless copy", "flights-service", |s| {
            spec(s).cluster_ip.as_deref() == Some("None")
        })
        .await;
    assert_ne!(
        before.metadata.uid, after.metadata.uid,
        "replaced, not patched"
    );
}

#[tokio::test]
async fn an_object_that_is_not_ours_is_never_touched() {
    let p = offloaded_namespace("refl-conflict", "{}").await;
    // A user created a Service with the same name in newyork first.
    let theirs: Service = serde_json::from_value(service(
        "flights-service",
        json!({"selector": {"owner": "newyork"}, "ports": [{"port": 1234}]}),
    ))
    .unwrap();
    p.services(&p.newyork)
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    p.create_local(flights()).await;

    let events = Api::<Event>::namespaced(p.london.clone(), &p.namespace);
    let event = eventually("a FailedReflection event", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedReflection"))
    })
    .await;
    assert!(
        event
            .message
            .unwrap_or_default()
            .contains("not managed by this peering")
    );
    p.settle().await;
    let remote = p.remote("flights-service").await.unwrap();
    assert_eq!(
        spec(&remote).selector.as_ref().unwrap()["owner"],
        "newyork",
        "left untouched"
    );
    assert_eq!(label(&remote, "offloading.liqo.io/origin"), None);

    // Once it is gone, reflection proceeds.
    p.services(&p.newyork)
        .delete("flights-service", &DeleteParams::default())
        .await
        .unwrap();
    p.wait_remote("our copy", "flights-service", |s| {
        label(s, "offloading.liqo.io/origin") == Some("london")
    })
    .await;
}

#[tokio::test]
async fn remote_drift_is_corrected() {
    let p = offloaded_namespace("refl-drift", "{}").await;
    p.create_local(flights()).await;
    p.wait_remote("reflected", "flights-service", |_| true)
        .await;

    let drift = json!({"spec": {"selector": {"run": "hijacked"}}});
    p.services(&p.newyork)
        .patch(
            "flights-service",
            &PatchParams::default(),
            &Patch::Merge(&drift),
        )
        .await
        .unwrap();
    p.wait_remote("the edit reverted", "flights-service", |s| {
        spec(s).selector.as_ref().unwrap()["run"] == "flights-service"
    })
    .await;

    p.services(&p.newyork)
        .delete("flights-service", &DeleteParams::default())
        .await
        .unwrap();
    p.wait_remote("the copy re-created", "flights-service", |s| {
        s.metadata.deletion_timestamp.is_none()
    })
    .await;
}

#[tokio::test]
async fn skip_annotation_removes_and_restores_the_copy() {
    let p = offloaded_namespace("refl-skip", "{}").await;
    p.create_local(flights()).await;
    p.wait_remote("reflected", "flights-service", |_| true)
        .await;
    // The Service's EndpointSlice (empty: no pods) follows its Service.
    let reflected_slices = || async {
        Api::<EndpointSlice>::namespaced(p.newyork.clone(), &p.namespace)
            .list(&ListParams::default().labels(
                "kubernetes.io/service-name=flights-service,endpointslice.kubernetes.io/managed-by=endpointslice.reflection.liqo.io",
            ))
            .await
            .unwrap()
            .items
            .len()
    };
    eventually("the slice reflected", WAIT, || async {
        (reflected_slices().await == 1).then_some(())
    })
    .await;

    let skip = json!({"metadata": {"annotations": {"liqo.io/skip-reflection": "true"}}});
    p.services(&p.london)
        .patch(
            "flights-service",
            &PatchParams::default(),
            &Patch::Merge(&skip),
        )
        .await
        .unwrap();
    p.wait_remote_gone("flights-service").await;
    eventually("the slice removed with its Service", WAIT, || async {
        (reflected_slices().await == 0).then_some(())
    })
    .await;
    let events = Api::<Event>::namespaced(p.london.clone(), &p.namespace);
    eventually("a ReflectionDisabled event", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ReflectionDisabled"))
            .then_some(())
    })
    .await;

    let unskip = json!({"metadata": {"annotations": {"liqo.io/skip-reflection": null}}});
    p.services(&p.london)
        .patch(
            "flights-service",
            &PatchParams::default(),
            &Patch::Merge(&unskip),
        )
        .await
        .unwrap();
    p.wait_remote("reflected again", "flights-service", |_| true)
        .await;
    eventually("the slice reflected again", WAIT, || async {
        (reflected_slices().await == 1).then_some(())
    })
    .await;
}

/// A slice seen before its Service is skipped, and the Service's arrival re-evaluates exactly
/// the slices that looked for it (the host records what each plugin call read).
#[tokio::test]
async fn a_slice_seen_before_its_service_follows_when_the_service_arrives() {
    let p = offloaded_namespace("refl-late", "{}").await;
    let local_slices = Api::<EndpointSlice>::namespaced(p.london.clone(), &p.namespace);
    let remote_slices = Api::<EndpointSlice>::namespaced(p.newyork.clone(), &p.namespace);
    let slice = |name: &str, service: &str| -> EndpointSlice {
        serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.200.0.7"], "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": 7999, "protocol": "TCP"}]
        }))
        .unwrap()
    };
    for (name, service) in [("late-a", "late"), ("other-a", "other")] {
        local_slices
            .create(&PostParams::default(), &slice(name, service))
            .await
            .unwrap();
    }
    p.settle().await;
    assert!(
        remote_slices.get_opt("late-a").await.unwrap().is_none(),
        "a slice whose Service does not exist is not reflected"
    );
    // A Service without a selector: london's EndpointSlice controller leaves its slices alone.
    p.create_local(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "late"},
        "spec": {"ports": [{"name": "http", "port": 7999}]}}))
        .await;
    eventually("the waiting slice reflected", WAIT, || async {
        remote_slices.get_opt("late-a").await.unwrap().map(|_| ())
    })
    .await;
    p.settle().await;
    assert!(
        remote_slices.get_opt("other-a").await.unwrap().is_none(),
        "the slice of a Service that still does not exist stays unreflected"
    );
}

#[tokio::test]
async fn allow_list_policy_reflects_only_annotated_services() {
    let p = offloaded_namespace("refl-allow", r#"{"reflectionPolicy":"AllowList"}"#).await;
    p.create_local(flights()).await;
    p.create_local(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "allowed", "annotations": {"liqo.io/allow-reflection": "true"}},
        "spec": {"selector": {"a": "b"}, "ports": [{"port": 80}]}}))
        .await;
    p.wait_remote("allowed", "allowed", |_| true).await;
    p.settle().await;
    assert!(
        p.remote("flights-service").await.is_none(),
        "not annotated: not reflected"
    );
}

#[tokio::test]
async fn orphans_left_while_the_host_was_down_are_removed_at_start() {
    let p = offloaded_namespace("refl-orphan", "{}").await;
    p.create_local(flights()).await;
    p.create_local(service(
        "keeper",
        json!({"selector": {"a": "b"}, "ports": [{"port": 80}]}),
    ))
    .await;
    p.wait_remote("reflected", "flights-service", |_| true)
        .await;
    p.wait_remote("reflected", "keeper", |_| true).await;
    let namespace = p.namespace.clone();
    drop(p); // the host stops

    let env = TestEnv::shared();
    let london = env.client("london").await;
    Api::<Service>::namespaced(london, &namespace)
        .delete("flights-service", &DeleteParams::default())
        .await
        .unwrap();

    // A new host for the same namespace.
    let p2 = offloaded_namespace_existing(&namespace).await;
    p2.wait_remote_gone("flights-service").await;
    assert!(p2.remote("keeper").await.is_some());
}

/// Like [`offloaded_namespace`], for a namespace that already exists on both sides.
async fn offloaded_namespace_existing(namespace: &str) -> Peering {
    let mut p = offloaded_namespace("refl-scratch", "{}").await;
    p.engine.unoffload("newyork", &p.namespace);
    assert!(p.engine.offload("newyork", namespace, namespace));
    p.namespace = namespace.to_string();
    p
}

#[tokio::test]
async fn steady_state_makes_no_writes() {
    let p = offloaded_namespace("refl-steady", "{}").await;
    for i in 0..5 {
        p.create_local(service(
            &format!("svc-{i}"),
            json!({"selector": {"a": "b"}, "ports": [{"port": 80}]}),
        ))
        .await;
    }
    for i in 0..5 {
        p.wait_remote("reflected", &format!("svc-{i}"), |_| true)
            .await;
    }
    p.settle().await;
    let before = p.engine.metrics().total_writes();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut registry = prometheus_client::registry::Registry::default();
    p.engine.metrics().register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    eprintln!("{text}");
    assert_eq!(
        p.engine.metrics().total_writes(),
        before,
        "no writes at steady state"
    );
    assert!(p.engine.metrics().passes("Service", "error") == 0);
}

/// A stand-in for a peer's API server that refuses every request with 403 Forbidden, as a
/// provider does for a kind it has not accepted (`liqoctl plugin accept`), but holds every
/// request until `answer` turns true. Returns its URL.
async fn forbidding_api_server(answer: tokio::sync::watch::Receiver<bool>) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let mut answer = answer.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                // The request head (the watcher's requests have no body).
                let mut line = String::new();
                loop {
                    line.clear();
                    match stream.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                if answer.wait_for(|a| *a).await.is_err() {
                    return;
                }
                let body = json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "services is forbidden: User \"system:serviceaccount:liqo-tenant-x:liqo-consumer\" cannot list resource \"services\" in API group \"\" in the namespace \"x\"",
                    "reason": "Forbidden", "code": 403,
                })
                .to_string();
                let response = format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.get_mut().write_all(response.as_bytes()).await;
                let _ = stream.get_mut().shutdown().await;
            });
        }
    });
    url
}

/// The peer refuses to let this peering read the kind, and says so only after the local cache
/// has listed and the object's first pass found the remote cache merely not ready (the order
/// that made `plugin_examples` time out: the host then never looked at the object again). The
/// refusal must still reach the local object as a FailedReflection Event.
#[tokio::test]
async fn a_refused_remote_watch_is_reported_even_when_it_fails_after_the_first_pass() {
    let env = TestEnv::shared();
    let london = env.client("london").await;
    let namespace = env.unique_namespace("refl-refused-watch").await;
    let local: Api<Service> = Api::namespaced(london.clone(), &namespace);
    // No selector: no EndpointSlice, so nothing else changes in the namespace.
    let svc: Service =
        serde_json::from_value(service("settings", json!({"ports": [{"port": 80}]}))).unwrap();
    local.create(&PostParams::default(), &svc).await.unwrap();

    let (answer, held) = tokio::sync::watch::channel(false);
    let url = forbidding_api_server(held).await;
    let peer = Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let (engine, _stop) = start_engine(&london, "{}");
    engine.add_peer(PeerHandle {
        identity: identity("newyork"),
        client: peer,
        translator: Arc::new(CidrRemap::parse("").unwrap()),
    });
    assert!(engine.offload("newyork", &namespace, &namespace));

    // The local list completes and the Service's passes find the remote cache not ready, with
    // no error yet: the peer has not answered. Then the engine is idle.
    eventually(
        "the local caches listed, a pass that found the remote cache not ready, an idle engine",
        WAIT,
        || async {
            (engine.local_caches_ready()
                && engine.metrics().passes("Service", "not_ready") > 0
                && engine.pending() == 0)
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(engine.metrics().passes("Service", "error"), 0);
    answer.send_replace(true);

    // 5 s of grace (a new twin namespace gets its RoleBinding shortly after it is created),
    // then the Warning.
    let events = Api::<Event>::namespaced(london.clone(), &namespace);
    let note = eventually("a FailedReflection event on settings", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some("FailedReflection")
                    && e.involved_object.name.as_deref() == Some("settings")
            })
            .find_map(|e| e.message)
    })
    .await;
    assert!(
        note.contains("cannot watch Service") && note.contains("forbidden"),
        "{note}"
    );
    assert!(engine.metrics().passes("Service", "error") > 0);
}
