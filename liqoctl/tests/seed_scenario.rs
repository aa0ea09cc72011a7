//! The seed scenario, Liqo's "Offloading a Service" tutorial, exactly as a user types it: real
//! `liqoctl`, real `kubectl`, two real clusters, both hosts as local processes. The assertions
//! are what the user checks at each step, and after each teardown step that what it created is
//! gone on both sides.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

mod common;

use common::{rows, sh, sh_ok, start_hosts};
use testsupport::{TestEnv, eventually, output_text as text};

const WAIT: Duration = Duration::from_secs(90);

fn repo() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("..")
}

fn gone(env: &TestEnv, cluster: &str, args: &[&str]) -> bool {
    let out = env.kubectl(cluster, args);
    !out.status.success() && text(&out).contains("NotFound")
}

#[tokio::test]
async fn offloading_a_service_tutorial() {
    let env = TestEnv::shared();

    sh_ok(env, "liqoctl install --cluster-id london --skip-deployment");
    sh_ok(
        env,
        "liqoctl install --cluster-id newyork --skip-deployment --kubeconfig \"$KUBECONFIG_NEWYORK\"",
    );
    let mut hosts = start_hosts(env);

    // Peering.
    sh_ok(
        env,
        r#"PEER_NEW_YORK=$(liqoctl generate peer-command --only-command --kubeconfig "$KUBECONFIG_NEWYORK") && echo "$PEER_NEW_YORK" | bash"#,
    );
    let table = sh_ok(env, "kubectl get foreignclusters");
    let row = &rows(&table)[0];
    assert_eq!(
        &row[..5],
        ["newyork", "Established", "None", "None", "Established"],
        "{table}"
    );
    // newyork sees london as an incoming peering.
    let provider_view = eventually("london as a consumer on newyork", WAIT, || async {
        let table = env.kubectl_ok("newyork", ["get", "foreignclusters"]);
        rows(&table)
            .into_iter()
            // Until the host writes the status, the columns are empty (fewer fields).
            .find(|r| r.len() >= 6 && r[0] == "london" && r[2] == "Established")
    })
    .await;
    assert_eq!(provider_view[1], "None", "no outgoing peering from newyork");

    // The app, and the offloading.
    sh_ok(env, "kubectl create namespace liqo-demo");
    let app = repo().join("examples/service-offloading/app.yaml");
    sh_ok(
        env,
        &format!("kubectl apply -f {} -n liqo-demo", app.display()),
    );
    sh_ok(
        env,
        "liqoctl offload namespace liqo-demo --namespace-mapping-strategy EnforceSameName --pod-offloading-strategy Local",
    );

    // What the user checks in newyork.
    let london_services = sh_ok(env, "kubectl get services --namespace liqo-demo -o wide");
    let newyork_services = eventually("flights-service in newyork", WAIT, || async {
        let out = sh(
            env,
            "kubectl get services --namespace liqo-demo --kubeconfig \"$KUBECONFIG_NEWYORK\" -o wide",
        );
        let t = text(&out);
        t.contains("flights-service").then_some(t)
    })
    .await;
    let (local, remote) = (&rows(&london_services)[0], &rows(&newyork_services)[0]);
    assert_eq!(remote[0], "flights-service");
    assert_eq!(remote[1], "ClusterIP");
    let remote_ip: IpAddr = remote[2].parse().unwrap();
    assert!(
        env.cluster("newyork").service_cidr.contains(&remote_ip),
        "{remote_ip} allocated by newyork"
    );
    assert_ne!(
        remote[2], local[2],
        "each cluster allocates its own ClusterIP"
    );
    assert_eq!(remote[4], "7999/TCP");
    assert_eq!(remote[6], "run=flights-service", "{newyork_services}");
    let pods = sh_ok(
        env,
        "kubectl get pods --namespace liqo-demo --kubeconfig \"$KUBECONFIG_NEWYORK\"",
    );
    assert_eq!(pods.trim(), "No resources found in liqo-demo namespace.");

    // The EndpointSlice carries london's pod address (identity translation by default).
    let london_pod_ip = eventually("the flights pod Ready in london", WAIT, || async {
        let ip = env.kubectl_ok(
            "london",
            [
                "get",
                "pods",
                "-n",
                "liqo-demo",
                "-l",
                "run=flights-service",
                "-o",
                "jsonpath={.items[0].status.podIP}",
            ],
        );
        (!ip.is_empty()).then_some(ip)
    })
    .await;
    eventually("the reflected EndpointSlice with the pod address", WAIT, || async {
        let addresses = env.kubectl_ok(
            "newyork",
            [
                "get",
                "endpointslices",
                "-n",
                "liqo-demo",
                "-l",
                "endpointslice.kubernetes.io/managed-by=endpointslice.reflection.liqo.io,kubernetes.io/service-name=flights-service",
                "-o",
                "jsonpath={.items[*].endpoints[*].addresses[*]}",
            ],
        );
        (addresses.trim() == london_pod_ip).then_some(())
    })
    .await;

    // Teardown, step by step.
    let out = sh_ok(env, "liqoctl unoffload namespace liqo-demo");
    assert!(out.contains("Unoffloading completed successfully"), "{out}");
    assert!(gone(env, "newyork", &["get", "namespace", "liqo-demo"]));
    assert!(
        !gone(env, "london", &["get", "namespace", "liqo-demo"]),
        "the local namespace stays"
    );

    sh_ok(env, "liqoctl unpeer out-of-band newyork");
    assert!(gone(env, "london", &["get", "foreigncluster", "newyork"]));
    // The provider revokes the identity it gave: tenant namespace, its RBAC, london's entry.
    eventually("newyork to revoke london's identity", WAIT, || async {
        let tenants = env.kubectl_ok(
            "newyork",
            [
                "get",
                "namespaces",
                "-l",
                "liqo.io/tenant-namespace=true",
                "-o",
                "name",
            ],
        );
        let bindings = env.kubectl_ok("newyork", ["get", "clusterrolebindings", "-o", "name"]);
        let fcs = env.kubectl_ok("newyork", ["get", "foreignclusters", "-o", "name"]);
        (tenants.trim().is_empty() && !bindings.contains("liqo-tenant-") && fcs.trim().is_empty())
            .then_some(())
    })
    .await;

    sh_ok(env, "liqoctl uninstall");
    sh_ok(
        env,
        "liqoctl uninstall --kubeconfig \"$KUBECONFIG_NEWYORK\"",
    );
    for cluster in ["london", "newyork"] {
        assert!(
            gone(env, cluster, &["get", "namespace", "liqo"]),
            "{cluster}"
        );
        assert!(
            !gone(
                env,
                cluster,
                &["get", "crd", "foreignclusters.core.liqo.io"]
            ),
            "CRDs stay without --purge ({cluster})"
        );
    }
    hosts.stop();
    sh_ok(env, "liqoctl uninstall --purge");
    sh_ok(
        env,
        "liqoctl uninstall --kubeconfig \"$KUBECONFIG_NEWYORK\" --purge",
    );
    for cluster in ["london", "newyork"] {
        for crd in [
            "foreignclusters.core.liqo.io",
            "namespaceoffloadings.offloading.liqo.io",
            "reflectionplugins.plugins.liqo.io",
        ] {
            assert!(
                gone(env, cluster, &["get", "crd", crd]),
                "{crd} in {cluster}"
            );
        }
    }
    let policies = env.kubectl_ok(
        "newyork",
        ["get", "validatingadmissionpolicies", "-o", "name"],
    );
    assert!(!policies.contains("liqo-peering"), "{policies}");
}
