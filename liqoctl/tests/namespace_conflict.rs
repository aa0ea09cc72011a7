//! Two consumers, one provider, one namespace name: london and paris both peer with newyork
//! (the tutorial's `liqoctl generate peer-command | bash`) and both offload `liqo-demo` with
//! EnforceSameName. The first wins; the second gets a clear conflict naming the first, and
//! never overwrites or deletes the first's twin namespace or its objects — not while offloading,
//! not while its host retries, not when it unoffloads.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::Api;
use liqo_host::api::ConditionStatus;
use liqo_host::api::namespace_offloading::{NamespaceOffloading, RemoteNamespaceConditionType};
use liqo_host::offloading::REASON_NAMESPACE_CONFLICT;
mod common;

use common::{liqoctl_bin, run_liqoctl, start_host};
use testsupport::{TestEnv, eventually, output_text as text};

const WAIT: Duration = Duration::from_secs(60);
const NS: &str = "liqo-demo";
const ORIGIN: &str = "offloading.liqo.io/origin";

/// Runs a shell line with liqoctl and kubectl on PATH, KUBECONFIG set to `consumer` and
/// KUBECONFIG_NEWYORK to the provider, as the tutorial's user has them.
fn sh(env: &TestEnv, consumer: &str, line: &str) -> Output {
    let path = format!(
        "{}:{}:{}",
        liqoctl_bin().parent().unwrap().display(),
        env.kubectl_bin().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .arg("-c")
        .arg(line)
        .env("PATH", path)
        .env("KUBECONFIG", env.kubeconfig_path(consumer))
        .env("KUBECONFIG_NEWYORK", env.kubeconfig_path("newyork"))
        .stdin(Stdio::null())
        .output()
        .expect("running bash")
}

fn sh_ok(env: &TestEnv, consumer: &str, line: &str) -> String {
    let out = sh(env, consumer, line);
    assert!(
        out.status.success(),
        "`{line}` against {consumer} failed:\n{}",
        text(&out)
    );
    text(&out)
}

/// newyork's `liqo-demo` and its Service: still london's, untouched.
async fn assert_london_owns_twin(newyork: &kube::Client, when: &str) {
    let ns = Api::<Namespace>::all(newyork.clone())
        .get(NS)
        .await
        .unwrap_or_else(|e| panic!("{when}: newyork's {NS} is gone: {e}"));
    assert!(
        ns.metadata.deletion_timestamp.is_none(),
        "{when}: newyork's {NS} is being deleted"
    );
    let labels = ns.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get(ORIGIN).map(String::as_str),
        Some("london"),
        "{when}: the twin namespace's origin"
    );
    let services = Api::<Service>::namespaced(newyork.clone(), NS);
    let svc = services
        .get("flights-service")
        .await
        .unwrap_or_else(|e| panic!("{when}: london's flights-service is gone in newyork: {e}"));
    assert_eq!(
        svc.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ORIGIN))
            .map(String::as_str),
        Some("london"),
        "{when}: flights-service's origin"
    );
    let ports: Vec<i32> = svc
        .spec
        .unwrap()
        .ports
        .unwrap_or_default()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [7999], "{when}: flights-service keeps london's port");
    assert!(
        services.get_opt("hotels-service").await.unwrap().is_none(),
        "{when}: paris's hotels-service was written into london's twin namespace"
    );
}

#[tokio::test]
async fn second_consumer_with_the_same_namespace_gets_a_clear_conflict() {
    let started = Instant::now();
    let env = tokio::task::spawn_blocking(|| TestEnv::start(&["london", "paris", "newyork"]))
        .await
        .unwrap()
        .expect("testenv up london,paris,newyork");
    let newyork = env.client("newyork").await;
    let paris = env.client("paris").await;

    for cluster in ["london", "paris", "newyork"] {
        let out = run_liqoctl(
            &env,
            cluster,
            &["install", "--cluster-id", cluster, "--skip-deployment"],
        );
        assert!(out.status.success(), "install {cluster}: {}", text(&out));
    }
    let _hosts: Vec<_> = ["london", "paris", "newyork"]
        .into_iter()
        .map(|c| start_host(&env, c))
        .collect();
    // Each consumer runs its own command (a generated command peers one consumer only).
    for consumer in ["london", "paris"] {
        sh_ok(
            &env,
            consumer,
            r#"liqoctl generate peer-command --only-command --kubeconfig "$KUBECONFIG_NEWYORK" | bash"#,
        );
    }

    // Both create liqo-demo with a Service of their own.
    sh_ok(&env, "london", &format!("kubectl create namespace {NS}"));
    sh_ok(
        &env,
        "london",
        &format!("kubectl create service clusterip flights-service -n {NS} --tcp 7999:7999"),
    );
    sh_ok(&env, "paris", &format!("kubectl create namespace {NS}"));
    sh_ok(
        &env,
        "paris",
        &format!("kubectl create service clusterip hotels-service -n {NS} --tcp 8080:8080"),
    );

    // London first: it wins.
    let offload = format!(
        "liqoctl offload namespace {NS} --namespace-mapping-strategy EnforceSameName --pod-offloading-strategy Local"
    );
    sh_ok(&env, "london", &offload);
    let remote = Api::<Service>::namespaced(newyork.clone(), NS);
    eventually("london's flights-service in newyork", WAIT, || async {
        remote.get_opt("flights-service").await.ok().flatten()
    })
    .await;
    assert_london_owns_twin(&newyork, "after london offloads").await;

    // Paris second: one clear conflict, naming the namespace, the provider and the owner.
    let out = sh(&env, "paris", &format!("{offload} --timeout 60s"));
    let msg = text(&out);
    assert!(!out.status.success(), "paris's offload succeeded:\n{msg}");
    for expected in [
        "conflict",
        "namespace liqo-demo already exists in cluster newyork",
        "belongs to another consumer, cluster london",
        "--namespace-mapping-strategy DefaultName",
    ] {
        assert!(msg.contains(expected), "lacks {expected:?}:\n{msg}");
    }
    assert!(!msg.contains("Forbidden"), "a bare Forbidden:\n{msg}");
    // Another consumer's namespace is not paris's to remove: the fix offered is another name.
    assert!(!msg.contains("remove it"), "{msg}");
    assert!(!msg.contains("panicked"), "{msg}");
    println!("paris's liqoctl offload says:\n{msg}");

    // The NamespaceOffloading says the same: per-peer condition, phase and message.
    let nso = Api::<NamespaceOffloading>::namespaced(paris.clone(), NS)
        .get("offloading")
        .await
        .unwrap();
    let status = nso.status.clone().unwrap();
    let ready = status
        .remote_namespaces_conditions
        .get("newyork")
        .and_then(|c| {
            c.iter()
                .find(|c| c.type_ == RemoteNamespaceConditionType::Ready)
        })
        .cloned()
        .expect("a Ready condition for newyork");
    assert_eq!(ready.status, ConditionStatus::False);
    assert_eq!(ready.reason, REASON_NAMESPACE_CONFLICT);
    assert!(
        ready.message.contains("cluster london"),
        "{}",
        ready.message
    );
    let table = sh_ok(
        &env,
        "paris",
        &format!("kubectl get namespaceoffloadings -n {NS} -o wide"),
    );
    println!("{table}");
    assert!(
        table.contains("belongs to another consumer, cluster london"),
        "`kubectl get namespaceoffloadings -o wide` shows the conflict:\n{table}"
    );

    // Paris's host keeps retrying (every few seconds): give it time to do damage, then check.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_london_owns_twin(&newyork, "while paris's host retries").await;

    // Unoffloading paris removes only paris's request, never london's namespace.
    let out = sh(&env, "paris", &format!("liqoctl unoffload namespace {NS}"));
    assert!(out.status.success(), "paris's unoffload: {}", text(&out));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_london_owns_twin(&newyork, "after paris unoffloads").await;
    let out = sh(
        &env,
        "london",
        &format!(
            "kubectl get namespaceoffloading offloading -n {NS} -o jsonpath={{.status.offloadingPhase}}"
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Ready",
        "{}",
        text(&out)
    );
    println!("namespace conflict: checked in {:.0?}", started.elapsed());
}
