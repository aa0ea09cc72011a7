//! `liqoctl offload namespace` and `liqoctl unoffload namespace` through the real binaries:
//! liqoctl against london, with `liqo-host run` as a local process peered with newyork.

use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::Api;
use kube::api::PostParams;
use liqo_host::api::namespace_offloading::NamespaceOffloading;
use serde_json::json;
mod common;

use common::{peered, run_liqoctl as run_on};
use testsupport::{TestEnv, eventually, output_text as text, unique_name};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn offload_and_unoffload_through_liqoctl() {
    let env = TestEnv::shared();
    let london = env.client("london").await;
    let newyork = env.client("newyork").await;
    let _host = peered(env, &london).await;

    let ns = env.unique_namespace("liqo-demo").await;
    let svc: Service = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "flights-service"},
        "spec": {"selector": {"run": "flights-service"}, "ports": [{"port": 7999, "protocol": "TCP"}]}}))
    .unwrap();
    Api::<Service>::namespaced(london.clone(), &ns)
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();

    // Bad input: one clear sentence, nothing created.
    let nso = Api::<NamespaceOffloading>::namespaced(london.clone(), &ns);
    for (args, expected) in [
        (
            vec!["--pod-offloading-strategy", "LocalAndRemote"],
            "--pod-offloading-strategy Local",
        ),
        (
            vec!["--namespace-mapping-strategy", "SelectedName"],
            "needs --remote-namespace-name",
        ),
        (
            vec!["--remote-namespace-name", "x"],
            "only with --namespace-mapping-strategy SelectedName",
        ),
    ] {
        let mut full = vec!["offload", "namespace", ns.as_str()];
        full.extend(args);
        let out = run_liqoctl(env, &full);
        assert!(!out.status.success(), "{full:?} succeeded");
        assert!(text(&out).contains(expected), "{full:?}: {}", text(&out));
        assert!(
            nso.get_opt("offloading").await.unwrap().is_none(),
            "nothing created"
        );
    }
    let out = run_liqoctl(env, &["offload", "namespace", "no-such-namespace"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("does not exist"), "{}", text(&out));

    // Liqo v1, for GitOps: -o yaml prints the NamespaceOffloading and applies nothing;
    // `kubectl apply -f -` of that output offloads the namespace.
    let out = run_liqoctl(
        env,
        &[
            "offload",
            "namespace",
            &ns,
            "--namespace-mapping-strategy",
            "EnforceSameName",
            "-o",
            "yaml",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let printed: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["kind"], "NamespaceOffloading");
    assert_eq!(printed["metadata"]["namespace"], ns.as_str());
    assert_eq!(
        printed["spec"]["namespaceMappingStrategy"],
        "EnforceSameName"
    );
    assert!(
        nso.get_opt("offloading").await.unwrap().is_none(),
        "-o yaml applied the NamespaceOffloading"
    );
    let mut apply = std::process::Command::new(env.kubectl_bin())
        .args(["apply", "-f", "-", "--kubeconfig"])
        .arg(env.kubeconfig_path("london"))
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    apply.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let applied = apply.wait_with_output().unwrap();
    assert!(
        applied.status.success(),
        "kubectl apply: {}",
        text(&applied)
    );
    eventually(
        "the applied NamespaceOffloading to be Ready",
        WAIT,
        || async {
            let o = nso.get_opt("offloading").await.ok()??;
            (o.status?.offloading_phase?
                == liqo_host::api::namespace_offloading::OffloadingPhase::Ready)
                .then_some(())
        },
    )
    .await;

    // The tutorial's command (on the namespace offloaded above: the same spec, idempotent).
    let out = run_liqoctl(
        env,
        &[
            "offload",
            "namespace",
            &ns,
            "--namespace-mapping-strategy",
            "EnforceSameName",
            "--pod-offloading-strategy",
            "Local",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("offloaded"), "{}", text(&out));
    let remote = Api::<Service>::namespaced(newyork.clone(), &ns);
    eventually("flights-service in newyork", WAIT, || async {
        remote.get_opt("flights-service").await.ok().flatten()
    })
    .await;

    // Re-running is idempotent.
    let out = run_liqoctl(
        env,
        &[
            "offload",
            "namespace",
            &ns,
            "--namespace-mapping-strategy",
            "EnforceSameName",
            "--pod-offloading-strategy",
            "Local",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let object = nso.get("offloading").await.unwrap();
    assert_eq!(
        object.status.and_then(|s| s.offloading_phase),
        Some(liqo_host::api::namespace_offloading::OffloadingPhase::Ready)
    );

    // The strategy cannot change once offloaded: the API server says so, liqoctl relays it.
    let out = run_liqoctl(
        env,
        &[
            "offload",
            "namespace",
            &ns,
            "--namespace-mapping-strategy",
            "DefaultName",
            "--pod-offloading-strategy",
            "Local",
        ],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("immutable"), "{}", text(&out));

    // Unoffload waits until the twin namespace is gone.
    let out = run_liqoctl(env, &["unoffload", "namespace", &ns]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Unoffloading completed successfully"),
        "{}",
        text(&out)
    );
    assert!(
        Api::<Namespace>::all(newyork.clone())
            .get_opt(&ns)
            .await
            .unwrap()
            .is_none(),
        "twin namespace gone when unoffload returns"
    );
    let out = run_liqoctl(env, &["unoffload", "namespace", &ns]);
    assert!(!out.status.success());
    assert!(text(&out).contains("is not offloaded"), "{}", text(&out));

    // DefaultName, from liqoctl.
    let other = unique_name("dflt");
    env.create_namespace("london", &other).await;
    let out = run_liqoctl(
        env,
        &[
            "offload",
            "namespace",
            &other,
            "--pod-offloading-strategy",
            "Local",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        Api::<Namespace>::all(newyork.clone())
            .get_opt(&format!("{other}-london"))
            .await
            .unwrap()
            .is_some()
    );
    let out = run_liqoctl(env, &["unoffload", "namespace", &other]);
    assert!(out.status.success(), "{}", text(&out));
}

fn run_liqoctl(env: &TestEnv, args: &[&str]) -> Output {
    run_on(env, "london", args)
}
