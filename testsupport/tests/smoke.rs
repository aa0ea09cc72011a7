//! The test environment itself: real API servers, real controllers, the kubelet stand-in and
//! kubectl behave as a user of two independent clusters expects.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;
use testsupport::{TestEnv, eventually};

const WAIT: Duration = Duration::from_secs(60);

fn flights_deployment() -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "flights-service"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"run": "flights-service"}},
            "template": {
                "metadata": {"labels": {"run": "flights-service"}},
                "spec": {"containers": [{
                    "name": "flights",
                    "image": "nginx",
                    "ports": [{"containerPort": 7999}]
                }]}
            }
        }
    }))
    .expect("deployment json")
}

fn flights_service() -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "flights-service"},
        "spec": {
            "type": "ClusterIP",
            "selector": {"run": "flights-service"},
            "ports": [{"port": 7999, "targetPort": 7999, "protocol": "TCP"}]
        }
    }))
    .expect("service json")
}

fn cluster_ip(svc: &Service) -> IpAddr {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .expect("service has a clusterIP")
        .parse()
        .expect("clusterIP is an IP")
}

fn ready_pod_ip(pod: &Pod) -> Option<IpAddr> {
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .as_ref()?
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready || status.phase.as_deref() != Some("Running") {
        return None;
    }
    status.pod_ip.as_deref()?.parse().ok()
}

#[tokio::test]
async fn deployment_service_and_endpointslice_in_two_clusters() {
    let env = TestEnv::shared();
    let london_info = env.cluster("london");
    let newyork_info = env.cluster("newyork");
    let london = env.client("london").await;
    let newyork = env.client("newyork").await;
    let ns = env.unique_namespace("smoke").await;

    // london: a Deployment and its Service.
    Api::<Deployment>::namespaced(london.clone(), &ns)
        .create(&PostParams::default(), &flights_deployment())
        .await
        .expect("create deployment");
    let london_svc = Api::<Service>::namespaced(london.clone(), &ns)
        .create(&PostParams::default(), &flights_service())
        .await
        .expect("create service in london");
    let london_ip = cluster_ip(&london_svc);
    assert!(
        london_info.service_cidr.contains(&london_ip),
        "london ClusterIP {london_ip} outside {}",
        london_info.service_cidr
    );

    // The real ReplicaSet controller creates the pod; the kubelet stand-in binds it and
    // reports it Running and Ready with an IP from london's pod CIDR.
    let pods = Api::<Pod>::namespaced(london.clone(), &ns);
    let (pod_name, pod_ip) = eventually("a ready flights-service pod", WAIT, || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("run=flights-service"))
                .await
                .ok()?;
            list.items
                .iter()
                .find_map(|p| Some((p.metadata.name.clone()?, ready_pod_ip(p)?)))
        }
    })
    .await;
    assert!(
        london_info.pod_cidr.contains(&pod_ip),
        "pod IP {pod_ip} outside london's pod CIDR {}",
        london_info.pod_cidr
    );

    // The real EndpointSlice controller publishes that address.
    let slices = Api::<EndpointSlice>::namespaced(london.clone(), &ns);
    eventually("an EndpointSlice with the pod's address", WAIT, || {
        let slices = slices.clone();
        let want = pod_ip.to_string();
        async move {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=flights-service"))
                .await
                .ok()?;
            list.items
                .iter()
                .flat_map(|s| s.endpoints.iter())
                .find(|e| {
                    e.addresses.contains(&want)
                        && e.conditions.as_ref().and_then(|c| c.ready) == Some(true)
                })
                .map(|_| ())
        }
    })
    .await;

    // newyork is an independent cluster: the same Service gets a ClusterIP from newyork's range.
    env.create_namespace("newyork", &ns).await;
    let newyork_svc = Api::<Service>::namespaced(newyork.clone(), &ns)
        .create(&PostParams::default(), &flights_service())
        .await
        .expect("create service in newyork");
    let newyork_ip = cluster_ip(&newyork_svc);
    assert!(
        newyork_info.service_cidr.contains(&newyork_ip),
        "newyork ClusterIP {newyork_ip} outside {}",
        newyork_info.service_cidr
    );
    assert_ne!(london_ip, newyork_ip);
    assert_ne!(london_info.service_cidr, newyork_info.service_cidr);

    // kubectl prints what a user expects.
    let out = env.kubectl_ok("london", ["get", "pods", "-n", &ns]);
    let line = out
        .lines()
        .find(|l| l.starts_with(&pod_name))
        .unwrap_or_else(|| panic!("no line for {pod_name} in:\n{out}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1..3], ["1/1", "Running"], "line: {line}");

    let out = env.kubectl("newyork", ["get", "pods", "-n", &ns]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        format!("No resources found in {ns} namespace.")
    );
}

/// Stopping and starting a cluster keeps its data, its URL and its credentials; a client made
/// before the stop works again after the start. Runs in its own environment so the shared
/// clusters are never disturbed.
#[tokio::test]
async fn stop_and_start_keep_the_data() {
    let env = TestEnv::start(&["paris"]).unwrap_or_else(|e| panic!("{e:#}"));
    let client = env.client("paris").await;
    let cms = Api::<ConfigMap>::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "survivor"},
        "data": {"flight": "LH400"}
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create configmap");

    env.stop_cluster("paris").expect("stop");
    assert!(
        cms.get("survivor").await.is_err(),
        "a stopped cluster still answers"
    );
    let status = env.testenv("status", std::iter::empty::<&str>());
    assert!(status.is_err(), "status of a stopped cluster succeeded");

    env.start_cluster("paris").expect("start");
    let got = cms.get("survivor").await.expect("configmap after restart");
    assert_eq!(
        got.data
            .unwrap_or_default()
            .get("flight")
            .map(String::as_str),
        Some("LH400")
    );
    let status = env
        .testenv("status", std::iter::empty::<&str>())
        .expect("status");
    assert!(status.contains("ready"), "{status}");
}
