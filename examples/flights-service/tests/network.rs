//! The real data path on one machine (testenv network mode, root only): flights-service runs as
//! two pod processes in london, a ClusterIP reaches both through the real kube-proxy, newyork
//! uses the same pod CIDR without conflict, the WAN links the clusters (a NodePort answers on the
//! node's WAN address) and nothing else, readiness is a real TCP probe, and
//! deleting the Deployment or tearing the environment down leaves no process or namespace.

use std::collections::BTreeMap;
use std::net::{IpAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use testsupport::{TestEnv, eventually, network_namespaces, output_text, pod_binaries_dir};

const WAIT: Duration = Duration::from_secs(60);
const PORT: u16 = 7999;
const BINARY: &str = env!("CARGO_BIN_EXE_flights-service");

/// A Deployment `name` (label `run=name`) running the flights-service binary, with extra
/// container env.
fn deployment(name: &str, replicas: i32, env: Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"run": name}},
            "template": {
                "metadata": {"labels": {"run": name}},
                "spec": {"containers": [{
                    "name": "flights",
                    "image": "liqo-wasm/flights-service",
                    "command": ["flights-service"],
                    "env": env,
                    "ports": [{"name": "http", "containerPort": PORT}]
                }]}
            }
        }
    }))
    .unwrap()
}

fn service() -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "flights-service"},
        "spec": {
            "selector": {"run": "flights-service"},
            "ports": [{"port": PORT, "targetPort": "http"}]
        }
    }))
    .unwrap()
}

/// Name -> IP of the flights-service pods that are Ready.
async fn ready_pods(pods: &Api<Pod>) -> BTreeMap<String, String> {
    let list = pods
        .list(&ListParams::default().labels("run=flights-service"))
        .await
        .unwrap();
    list.items
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|p| Some((p.metadata.name?, p.status?.pod_ip?)))
        .collect()
}

/// Pids of live processes whose environment has `POD_NAME=name` (the kubelet stand-in sets it).
fn processes_of_pod(name: &str) -> Vec<u32> {
    let needle = format!("POD_NAME={name}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
        })
        .collect()
}

fn schedule(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert!(
        v["flights"].as_array().is_some_and(|f| !f.is_empty()),
        "no flights in {v}"
    );
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flights_service_behind_a_cluster_ip_in_network_mode() {
    let started = Instant::now();
    let bins = pod_binaries_dir(&[Path::new(BINARY)]).unwrap();
    // Overlapping pod CIDRs on purpose (testenv gives distinct ones by default): pods with the
    // same address in both clusters must not clash.
    let env = TestEnv::start_network(
        &["london", "newyork"],
        &bins,
        &["--pod-cidr", "london=10.200.0.0/16,newyork=10.200.0.0/16"],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let up = started.elapsed();
    let net = env.network().unwrap();
    let (london, newyork) = (&net.clusters["london"], &net.clusters["newyork"]);
    assert_eq!(
        env.cluster("london").pod_cidr,
        env.cluster("newyork").pod_cidr,
        "both clusters use the same pod CIDR"
    );

    // london: two replicas behind a ClusterIP.
    let lon = env.client("london").await;
    let deployments: Api<Deployment> = Api::namespaced(lon.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(lon.clone(), "default");
    deployments
        .create(
            &PostParams::default(),
            &deployment("flights-service", 2, json!([])),
        )
        .await
        .unwrap();
    let svc = Api::<Service>::namespaced(lon.clone(), "default")
        .create(&PostParams::default(), &service())
        .await
        .unwrap();
    let cluster_ip = svc.spec.unwrap().cluster_ip.unwrap();
    assert!(
        env.cluster("london")
            .service_cidr
            .contains(&cluster_ip.parse::<IpAddr>().unwrap())
    );
    let london_pods = eventually("2 ready flights-service pods in london", WAIT, || async {
        let ready = ready_pods(&pods).await;
        (ready.len() == 2).then_some(ready)
    })
    .await;
    for (name, ip) in &london_pods {
        assert!(
            env.cluster("london")
                .pod_cidr
                .contains(&ip.parse::<IpAddr>().unwrap()),
            "{name} has IP {ip} outside the pod CIDR"
        );
        assert_eq!(processes_of_pod(name).len(), 1, "one process serves {name}");
    }

    // Readiness is a real probe: a pod whose process listens on another port than its
    // containerPort runs but never becomes Ready.
    let deaf = deployment(
        "flights-deaf",
        1,
        json!([{"name": "PORT", "value": "7998"}]),
    );
    deployments
        .create(&PostParams::default(), &deaf)
        .await
        .unwrap();
    let deaf_pod = eventually("the flights-deaf pod's process", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("run=flights-deaf"))
            .await
            .ok()?;
        let name = list.items.first()?.metadata.name.clone()?;
        (!processes_of_pod(&name).is_empty()).then_some(name)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = pods.get(&deaf_pod).await.unwrap().status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert!(
        status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "False"),
        "{deaf_pod} is Ready although nothing listens on its containerPort"
    );
    deployments
        .delete("flights-deaf", &DeleteParams::default())
        .await
        .unwrap();

    // From the london "node": the ClusterIP reaches both pods (kube-proxy balances randomly).
    let url = format!("http://{cluster_ip}:{PORT}/schedule");
    let mut answered = BTreeMap::new();
    for _ in 0..60 {
        let body = env.http_get_in("london", &url).unwrap();
        let v = schedule(&body);
        let pod = v["pod"].as_str().unwrap().to_string();
        answered.insert(pod, v["podIP"].as_str().unwrap().to_string());
        if answered.len() == 2 {
            break;
        }
    }
    assert_eq!(answered, london_pods, "the pods that answered on {url}");

    // newyork, same pod CIDR: its first pod gets an IP london also uses; each cluster's
    // namespace reaches its own pod at that address.
    let ny = env.client("newyork").await;
    Api::<Deployment>::namespaced(ny.clone(), "default")
        .create(
            &PostParams::default(),
            &deployment("flights-service", 1, json!([])),
        )
        .await
        .unwrap();
    let ny_pods: Api<Pod> = Api::namespaced(ny.clone(), "default");
    let (ny_pod, ny_ip) = eventually("a ready flights-service pod in newyork", WAIT, || async {
        ready_pods(&ny_pods).await.into_iter().next()
    })
    .await;
    let (lon_pod, _) = london_pods
        .iter()
        .find(|(_, ip)| **ip == ny_ip)
        .unwrap_or_else(|| {
            panic!("newyork's pod IP {ny_ip} is not one of london's: {london_pods:?}")
        });
    let pod_url = format!("http://{ny_ip}:{PORT}/schedule");
    let from_ny = schedule(&env.http_get_in("newyork", &pod_url).unwrap());
    let from_lon = schedule(&env.http_get_in("london", &pod_url).unwrap());
    assert_eq!(from_ny["pod"], ny_pod.as_str(), "{pod_url} from newyork");
    assert_eq!(from_lon["pod"], lon_pod.as_str(), "{pod_url} from london");

    // A NodePort Service in newyork is reachable from london on newyork's WAN address (the
    // Node's InternalIP), as peers reach an exposed gateway.
    let mut node_port_svc = service();
    node_port_svc.spec.as_mut().unwrap().type_ = Some("NodePort".into());
    let node_port_svc = Api::<Service>::namespaced(ny.clone(), "default")
        .create(&PostParams::default(), &node_port_svc)
        .await
        .unwrap();
    let node_port = node_port_svc.spec.unwrap().ports.unwrap()[0]
        .node_port
        .unwrap();
    let node_port_url = format!("http://{}:{node_port}/schedule", newyork.wan_address);
    let answer = eventually("newyork's NodePort from london", WAIT, || async {
        env.http_get_in("london", &node_port_url).ok()
    })
    .await;
    assert_eq!(schedule(&answer)["pod"], ny_pod.as_str(), "{node_port_url}");

    // The WAN: london reaches a listener on newyork's WAN address...
    let _wan_listener = env
        .spawn_in(
            "newyork",
            BINARY,
            std::iter::empty::<&str>(),
            &[("PORT", "18080"), ("POD_NAME", "newyork-wan-listener")],
        )
        .unwrap();
    let wan_url = format!("http://{}:18080/schedule", newyork.wan_address);
    let answer = eventually("the listener on newyork's WAN address", WAIT, || async {
        env.http_get_in("london", &wan_url).ok()
    })
    .await;
    assert_eq!(schedule(&answer)["pod"], "newyork-wan-listener");
    assert!(net.wan_cidr.contains(&IpAddr::V4(london.wan_address)));

    // ...but not the host's loopback services, except the forwarded API server...
    let host_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host_url = format!("http://{}/", host_listener.local_addr().unwrap());
    let err = env.http_get_in("london", &host_url).unwrap_err();
    assert!(
        format!("{err:#}").contains("connection refused"),
        "{host_url} from london's namespace: {err:#}"
    );
    let kubeconfig = env.kubeconfig_path("london").to_str().unwrap().to_string();
    let out = env.exec_in(
        "london",
        env.kubectl_bin(),
        [
            "--kubeconfig",
            &kubeconfig,
            "get",
            "node",
            "london-node",
            "-o",
            "name",
        ],
    );
    assert!(
        out.status.success(),
        "kubectl inside london's namespace: {}",
        output_text(&out)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "node/london-node"
    );
    // ...nor any address outside the namespaces (no default route).
    let err = env.http_get_in("london", "http://192.0.2.1/").unwrap_err();
    assert!(
        format!("{err:#}").contains("network is unreachable"),
        "192.0.2.1 from london's namespace: {err:#}"
    );

    // Deleting the Deployment stops its processes and the Service path closes.
    deployments
        .delete("flights-service", &DeleteParams::foreground())
        .await
        .unwrap();
    for name in london_pods.keys() {
        eventually(&format!("the process of {name} to exit"), WAIT, || async {
            processes_of_pod(name).is_empty().then_some(())
        })
        .await;
    }
    eventually("the ClusterIP to stop answering", WAIT, || async {
        env.http_get_in("london", &url).is_err().then_some(())
    })
    .await;
    // flights-deaf's too, deleted earlier.
    eventually("london's pod namespaces to be deleted", WAIT, || async {
        network_namespaces(&format!("{}-pod-", london.netns))
            .is_empty()
            .then_some(())
    })
    .await;

    // down removes every namespace (veths go with them) and every process.
    let namespaces = network_namespaces(&net.prefix);
    assert!(namespaces.contains(&net.wan_namespace), "{namespaces:?}");
    assert!(namespaces.contains(&newyork.netns), "{namespaces:?}");
    env.down().unwrap();
    assert_eq!(network_namespaces(&net.prefix), Vec::<String>::new());
    assert!(
        processes_of_pod(&ny_pod).is_empty(),
        "newyork's pod process outlived down"
    );
    assert!(
        processes_of_pod("newyork-wan-listener").is_empty(),
        "a process started with testenv exec outlived down"
    );
    let _ = std::fs::remove_dir_all(&bins);
    eprintln!(
        "network test: up {up:.1?}, whole test {:.1?}",
        started.elapsed()
    );
}
