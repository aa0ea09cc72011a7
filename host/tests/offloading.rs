//! Peering and offloading controllers against two real control planes: a ForeignCluster with a
//! credential Secret makes newyork a peer; NamespaceOffloadings create twin namespaces (per
//! mapping strategy), reflect into them, refuse to adopt foreign namespaces, and clean up.
//!
//! One test function runs the scenarios in sequence: the controllers watch cluster-scoped
//! ForeignClusters, so two sets of controllers in one cluster would step on each other.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use liqo_host::api::foreign_cluster::{ForeignCluster, PeeringConditionType};
use liqo_host::api::namespace_offloading::{NamespaceOffloading, OffloadingPhase};
use liqo_host::offloading::{self, OffloadingContext};
use liqo_host::peering::{self, PeeringConfig};
use liqo_host::peers::Peers;
use liqo_host::plugin::{
    ClusterIdentity, PluginLimits, PluginMetrics, PluginRuntime, RuntimeConfig, builtin,
};
use liqo_host::reflect::{Engine, EngineConfig, EngineMetrics};
use serde_json::json;
use testsupport::{TestEnv, eventually, unique_name};

const WAIT: Duration = Duration::from_secs(60);

async fn apply_ns(client: &Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("liqo-test"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            ),
        )
        .await
        .unwrap();
}

async fn offload(client: &Client, namespace: &str, spec: serde_json::Value) {
    let nso: NamespaceOffloading = serde_json::from_value(json!({
        "apiVersion": "offloading.liqo.io/v1beta1", "kind": "NamespaceOffloading",
        "metadata": {"name": "offloading", "namespace": namespace}, "spec": spec,
    }))
    .unwrap();
    Api::<NamespaceOffloading>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &nso)
        .await
        .unwrap();
}

async fn wait_phase(
    client: &Client,
    namespace: &str,
    phase: OffloadingPhase,
) -> NamespaceOffloading {
    let api = Api::<NamespaceOffloading>::namespaced(client.clone(), namespace);
    eventually(
        &format!("{namespace} offloading phase {phase:?}"),
        WAIT,
        || async {
            api.get("offloading")
                .await
                .ok()
                .filter(|o| o.status.as_ref().and_then(|s| s.offloading_phase) == Some(phase))
        },
    )
    .await
}

fn owned_by_london(ns: &Namespace) -> bool {
    let l = ns.metadata.labels.clone().unwrap_or_default();
    l.get("offloading.liqo.io/origin").map(String::as_str) == Some("london")
        && l.get("offloading.liqo.io/destination").map(String::as_str) == Some("newyork")
}

async fn wait_twin(newyork: &Client, name: &str) -> Namespace {
    let api = Api::<Namespace>::all(newyork.clone());
    eventually(
        &format!("twin namespace {name} in newyork"),
        WAIT,
        || async {
            api.get_opt(name)
                .await
                .ok()
                .flatten()
                .filter(owned_by_london)
        },
    )
    .await
}

#[tokio::test]
async fn peering_and_offloading_lifecycle() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let env = TestEnv::shared();
    let london = env.client("london").await;
    let newyork = env.client("newyork").await;
    testsupport::apply_crds(&london, liqo_host::api::crds()).await;

    // --- Peering: the credential Secret and the ForeignCluster, as `liqoctl peer` will do.
    apply_ns(&london, "liqo").await;
    let kubeconfig = std::fs::read(env.kubeconfig_path("newyork")).unwrap();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("newyork-credentials".into()),
            ..Default::default()
        },
        data: Some([("kubeconfig".to_string(), ByteString(kubeconfig))].into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(london.clone(), "liqo")
        .patch(
            "newyork-credentials",
            &PatchParams::apply("liqo-test").force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
    let london_pods = env.cluster("london").pod_cidr.to_string();
    let fc: ForeignCluster = serde_json::from_value(json!({
        "apiVersion": "core.liqo.io/v1beta1", "kind": "ForeignCluster",
        "metadata": {"name": "newyork", "labels": {"region": "us-east"}},
        "spec": {"clusterID": "newyork", "clusterName": "newyork",
                 "credentialsSecretRef": {"name": "newyork-credentials", "namespace": "liqo"},
                 "networking": {"addressTranslation": "CidrRemap",
                                "remapping": [{"localCIDR": london_pods, "remoteCIDR": "10.201.0.0/16"}]}}
    }))
    .unwrap();
    Api::<ForeignCluster>::all(london.clone())
        .create(&PostParams::default(), &fc)
        .await
        .unwrap();

    // --- The host, in-process.
    let runtime = PluginRuntime::new(
        RuntimeConfig {
            cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compile-cache")),
            ..RuntimeConfig::default()
        },
        PluginMetrics::default(),
    )
    .unwrap();
    let local = ClusterIdentity {
        id: "london".into(),
        name: "london".into(),
    };
    let plugins = builtin::REFLECTORS
        .iter()
        .map(|(source, bytes)| {
            runtime
                .load_reflector(source, bytes, PluginLimits::default(), "{}")
                .unwrap()
        })
        .collect();
    let mapper = runtime
        .load_namespace_mapper(
            builtin::NAMESPACE_SOURCE,
            builtin::NAMESPACE,
            PluginLimits::default(),
        )
        .unwrap();
    let metrics = EngineMetrics::default();
    let engine = Engine::start(
        london.clone(),
        EngineConfig {
            local: local.clone(),
            workers: 4,
            backoff: Default::default(),
        },
        plugins,
        metrics.clone(),
    );
    let peers = Peers::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let on_stop = move || {
        let mut rx = stopped.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    tokio::spawn({
        let engine = engine.clone();
        let stop = on_stop();
        async move { engine.run(stop).await }
    });
    tokio::spawn(peering::run(
        PeeringConfig {
            client: london.clone(),
            engine: engine.clone(),
            peers: peers.clone(),
            metrics: metrics.clone(),
            local: None,
            transport: None,
        },
        on_stop(),
    ));
    tokio::spawn(offloading::run(
        OffloadingContext {
            client: london.clone(),
            local,
            engine: engine.clone(),
            peers,
            mapper,
            metrics: metrics.clone(),
        },
        on_stop(),
    ));

    // The ForeignCluster reports the peering honestly.
    let fcs = Api::<ForeignCluster>::all(london.clone());
    eventually("newyork peering established", WAIT, || async {
        let fc = fcs.get("newyork").await.ok()?;
        let status = fc.status?;
        (status
            .condition_status(PeeringConditionType::OutgoingPeering)
            .as_str()
            == "Established")
            .then_some(())
    })
    .await;
    let table = env.kubectl_ok("london", ["get", "foreignclusters"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..5],
        ["newyork", "Established", "None", "None", "Established"],
        "{table}"
    );

    // --- EnforceSameName: the twin has the same name; Services are reflected into it.
    let same = unique_name("same");
    apply_ns(&london, &same).await;
    offload(
        &london,
        &same,
        json!({"namespaceMappingStrategy": "EnforceSameName", "podOffloadingStrategy": "Local"}),
    )
    .await;
    let o = wait_phase(&london, &same, OffloadingPhase::Ready).await;
    assert_eq!(
        o.status.unwrap().remote_namespace_name.as_deref(),
        Some(same.as_str())
    );
    let twin = wait_twin(&newyork, &same).await;
    assert_eq!(
        twin.metadata
            .annotations
            .unwrap_or_default()
            .get("liqo.io/remote-namespace-origin-name")
            .map(String::as_str),
        Some(same.as_str())
    );
    let svc: Service = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "flights-service"},
        "spec": {"selector": {"run": "flights-service"}, "ports": [{"port": 7999}]}}))
    .unwrap();
    Api::<Service>::namespaced(london.clone(), &same)
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    let remote_services = Api::<Service>::namespaced(newyork.clone(), &same);
    eventually("flights-service reflected", WAIT, || async {
        remote_services
            .get_opt("flights-service")
            .await
            .ok()
            .flatten()
    })
    .await;

    // --- A foreign object holding a name: an Event (reflection tests) and a condition here.
    let foreign: Service = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "blocked"}, "spec": {"ports": [{"port": 1}]}}))
    .unwrap();
    remote_services
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    let mut local_blocked = foreign.clone();
    local_blocked.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 2;
    Api::<Service>::namespaced(london.clone(), &same)
        .create(&PostParams::default(), &local_blocked)
        .await
        .unwrap();
    let nso_same = Api::<NamespaceOffloading>::namespaced(london.clone(), &same);
    let conflict = |want: &'static str| {
        let nso_same = nso_same.clone();
        async move {
            let o = nso_same.get("offloading").await.ok()?;
            let conds = o
                .status?
                .remote_namespaces_conditions
                .get("newyork")?
                .clone();
            conds.into_iter().find(|c| {
                format!("{:?}", c.type_) == "ReflectionConflicts" && c.status.as_str() == want
            })
        }
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!("DEBUG conflicts={:?}", engine.conflicts("newyork", &same));
    eprintln!(
        "DEBUG status={:?}",
        nso_same.get("offloading").await.unwrap().status
    );
    let c = eventually("a ReflectionConflicts condition", WAIT, || conflict("True")).await;
    assert!(c.message.contains("Service/blocked"), "{}", c.message);
    remote_services
        .delete("blocked", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the conflict to clear", WAIT, || conflict("False")).await;
    eventually(
        "blocked reflected once the foreign object is gone",
        WAIT,
        || async {
            let s = remote_services.get_opt("blocked").await.ok()??;
            (s.spec?.ports?[0].port == 2).then_some(())
        },
    )
    .await;

    // --- DefaultName and SelectedName.
    let default = unique_name("dflt");
    apply_ns(&london, &default).await;
    offload(
        &london,
        &default,
        json!({"namespaceMappingStrategy": "DefaultName", "podOffloadingStrategy": "Local"}),
    )
    .await;
    wait_phase(&london, &default, OffloadingPhase::Ready).await;
    wait_twin(&newyork, &format!("{default}-london")).await;

    let selected = unique_name("sel");
    let custom = unique_name("custom-remote");
    apply_ns(&london, &selected).await;
    offload(&london, &selected, json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": custom, "podOffloadingStrategy": "Local"})).await;
    wait_phase(&london, &selected, OffloadingPhase::Ready).await;
    wait_twin(&newyork, &custom).await;

    // --- A cluster selector that matches no peer.
    let nomatch = unique_name("nomatch");
    apply_ns(&london, &nomatch).await;
    offload(
        &london,
        &nomatch,
        json!({"namespaceMappingStrategy": "EnforceSameName", "podOffloadingStrategy": "Local",
        "clusterSelector": {"matchLabels": {"region": "eu-west"}}}),
    )
    .await;
    wait_phase(&london, &nomatch, OffloadingPhase::NoClusterSelected).await;
    assert!(
        Api::<Namespace>::all(newyork.clone())
            .get_opt(&nomatch)
            .await
            .unwrap()
            .is_none()
    );

    // --- An unowned namespace with the same name is never adopted; offloading recovers once
    // it is gone.
    let taken = unique_name("taken");
    apply_ns(&london, &taken).await;
    apply_ns(&newyork, &taken).await;
    offload(
        &london,
        &taken,
        json!({"namespaceMappingStrategy": "EnforceSameName", "podOffloadingStrategy": "Local"}),
    )
    .await;
    let o = wait_phase(&london, &taken, OffloadingPhase::SomeFailed).await;
    let message = o.status.unwrap().message.unwrap_or_default();
    assert!(
        message.contains("already exists") && message.contains(&taken),
        "{message}"
    );
    let theirs = Api::<Namespace>::all(newyork.clone())
        .get(&taken)
        .await
        .unwrap();
    assert!(!owned_by_london(&theirs), "not adopted");
    Api::<Namespace>::all(newyork.clone())
        .delete(&taken, &DeleteParams::default())
        .await
        .unwrap();
    wait_phase(&london, &taken, OffloadingPhase::Ready).await;
    wait_twin(&newyork, &taken).await;

    // --- Only the Local pod offloading strategy is accepted.
    let remote_pods = unique_name("remotepods");
    apply_ns(&london, &remote_pods).await;
    offload(&london, &remote_pods, json!({"namespaceMappingStrategy": "EnforceSameName", "podOffloadingStrategy": "LocalAndRemote"})).await;
    let o = wait_phase(&london, &remote_pods, OffloadingPhase::AllFailed).await;
    assert!(
        o.status
            .unwrap()
            .message
            .unwrap_or_default()
            .contains("--pod-offloading-strategy Local")
    );
    assert!(
        Api::<Namespace>::all(newyork.clone())
            .get_opt(&remote_pods)
            .await
            .unwrap()
            .is_none()
    );

    // --- Steady state: with every object settled, the host writes nothing to either cluster
    // (statuses are only patched when they change, reflected objects only when their intent does).
    let before = metrics.total_writes();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(metrics.total_writes(), before, "no writes at steady state");

    // --- Unoffload: deleting the NamespaceOffloading removes the twin namespace (ours only).
    Api::<NamespaceOffloading>::namespaced(london.clone(), &same)
        .delete("offloading", &DeleteParams::default())
        .await
        .unwrap();
    let nso = Api::<NamespaceOffloading>::namespaced(london.clone(), &same);
    eventually("the NamespaceOffloading to be gone", WAIT, || async {
        nso.get_opt("offloading")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    // The NamespaceOffloading disappears only once its twin namespace is gone.
    assert!(
        Api::<Namespace>::all(newyork.clone())
            .get_opt(&same)
            .await
            .unwrap()
            .is_none(),
        "twin namespace gone before the NamespaceOffloading"
    );

    // --- Deleting the ForeignCluster removes the peer (finalizer handled by the host).
    fcs.delete("newyork", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the ForeignCluster to be gone", WAIT, || async {
        fcs.get_opt("newyork").await.ok()?.is_none().then_some(())
    })
    .await;
    let _ = stop.send(true);
}
