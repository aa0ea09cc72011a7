//! Liqo v1's "Offloading a Service" tutorial as its page writes it: `liqoctl peer
//! --remote-kubeconfig`, the ROLE of each peer, the offloading, and `liqoctl unpeer
//! --remote-kubeconfig --skip-confirm`, against two real clusters with both hosts running. The
//! v0 form (`generate peer-command | bash`) is `seed_scenario.rs`; both must keep working.

use std::path::PathBuf;
use std::time::Duration;

mod common;

use common::{rows, sh, sh_ok, start_hosts};
use testsupport::{TestEnv, eventually, output_text as text};

const WAIT: Duration = Duration::from_secs(90);

fn repo() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("..")
}

/// The value of column `column` in the row of `name` of a `kubectl get -o wide` table: the
/// word at the header's offset (headers hold spaces, values of these columns do not).
fn cell(table: &str, name: &str, column: &str) -> Option<String> {
    let start = table.lines().next()?.find(column)?;
    let row = table
        .lines()
        .skip(1)
        .find(|l| l.split_whitespace().next() == Some(name))?;
    row.get(start..)?
        .split_whitespace()
        .next()
        .map(String::from)
}

#[tokio::test]
async fn offloading_a_service_with_liqo_v1_commands() {
    let env = TestEnv::shared();
    sh_ok(env, "liqoctl install --cluster-id london --skip-deployment");
    sh_ok(
        env,
        "liqoctl install --cluster-id newyork --skip-deployment --kubeconfig \"$KUBECONFIG_NEWYORK\"",
    );
    let mut hosts = start_hosts(env);

    // Bad input first: one clear error each, nothing created.
    let out = sh(env, "liqoctl peer");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("pass --remote-kubeconfig PATH"),
        "{}",
        text(&out)
    );
    let out = sh(env, "liqoctl peer --remote-kubeconfig \"$KUBECONFIG\"");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--remote-kubeconfig points at this same cluster (london)"),
        "{}",
        text(&out)
    );
    let out = sh(
        env,
        "liqoctl peer --remote-kubeconfig /nonexistent/kubeconfig",
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--remote-kubeconfig /nonexistent/kubeconfig"),
        "{}",
        text(&out)
    );
    let tenants = || {
        env.kubectl_ok(
            "newyork",
            [
                "get",
                "namespaces",
                "-l",
                "liqo.io/tenant-namespace=true",
                "-o",
                "name",
            ],
        )
    };
    assert_eq!(tenants().trim(), "", "a refused peer left an identity");

    // The tutorial's peering command.
    let out = sh_ok(
        env,
        "liqoctl peer --remote-kubeconfig \"$KUBECONFIG_NEWYORK\" --gw-server-service-type NodePort",
    );
    assert!(out.contains("Peered with newyork"), "{out}");
    assert!(
        !out.contains("eyJ"),
        "the peering token is never printed by the v1 form:\n{out}"
    );
    // The identity on newyork is bound to london: no other cluster can claim it.
    let bound = env.kubectl_ok(
        "newyork",
        [
            "get",
            "namespaces",
            "-l",
            "liqo.io/tenant-namespace=true,liqo.io/consumer-id=london",
            "-o",
            "name",
        ],
    );
    assert_eq!(bound.lines().count(), 1, "{bound}");
    // Peering again is a no-op that says so.
    let again = sh_ok(
        env,
        "liqoctl peer --remote-kubeconfig \"$KUBECONFIG_NEWYORK\"",
    );
    assert!(
        again.contains("Already peered with cluster newyork"),
        "{again}"
    );
    assert_eq!(tenants().lines().count(), 1, "a second identity was made");

    // `kubectl get foreignclusters`: v0's columns, and ROLE with -o wide.
    let table = sh_ok(env, "kubectl get foreignclusters");
    assert_eq!(
        &rows(&table)[0][..5],
        ["newyork", "Established", "None", "None", "Established"],
        "{table}"
    );
    let wide = sh_ok(env, "kubectl get foreignclusters -o wide");
    assert_eq!(
        cell(&wide, "newyork", "ROLE").as_deref(),
        Some("Provider"),
        "{wide}"
    );
    eventually("newyork to show london as its consumer", WAIT, || async {
        let wide = env.kubectl_ok("newyork", ["get", "foreignclusters", "-o", "wide"]);
        (cell(&wide, "london", "ROLE").as_deref() == Some("Consumer")).then_some(())
    })
    .await;

    // The app and the offloading, as in the tutorial.
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
    eventually("flights-service in newyork", WAIT, || async {
        let out = sh(
            env,
            "kubectl get services --namespace liqo-demo --kubeconfig \"$KUBECONFIG_NEWYORK\"",
        );
        text(&out).contains("flights-service").then_some(())
    })
    .await;

    // `liqoctl info peer`: the report of each side, and one field of it.
    let report = eventually("info peer to count the reflected copies", WAIT, || async {
        let out = sh_ok(env, "liqoctl info peer newyork -o json");
        let reports: serde_json::Value = serde_json::from_str(&out).unwrap();
        let r = reports[0].clone();
        eprintln!("info peer newyork: {r}");
        (r["reflected"]["Service"] == 1 && r["reflected"]["EndpointSlice"] == 1).then_some(r)
    })
    .await;
    assert_eq!(report["role"], "Provider", "{report}");
    assert_eq!(report["health"], "healthy", "{report}");
    assert_eq!(report["addressTranslation"], "Identity", "{report}");
    assert_eq!(
        report["offloadedNamespaces"],
        serde_json::json!([{"namespace": "liqo-demo", "remoteNamespace": "liqo-demo", "ready": "True"}]),
        "{report}"
    );
    assert_eq!(
        sh_ok(env, "liqoctl info peer newyork --get role").trim(),
        "Provider"
    );
    let here = sh_ok(
        env,
        "liqoctl info peer london --get reflectedHere --kubeconfig \"$KUBECONFIG_NEWYORK\"",
    );
    assert!(
        here.contains("Service: 1") && here.contains("EndpointSlice: 1"),
        "{here}"
    );
    let human = sh_ok(env, "liqoctl info peer");
    assert!(
        human.contains("role: Provider")
            && human.contains("offloaded namespaces: liqo-demo -> liqo-demo (Ready True)")
            && human.contains("reflected there: 1 EndpointSlice, 1 Service"),
        "{human}"
    );
    let out = sh(env, "liqoctl info peer newyork --get reflected.Pod");
    assert!(!out.status.success());
    assert!(
        text(&out)
            .contains("no field \"Pod\" under reflected (fields there: EndpointSlice, Service)"),
        "{}",
        text(&out)
    );
    let out = sh(env, "liqoctl info peer paris");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("ForeignCluster paris not found"),
        "{}",
        text(&out)
    );

    // Teardown as the v1 page writes it (no terminal here, so nothing would be asked anyway;
    // --skip-confirm is accepted everywhere).
    sh_ok(env, "liqoctl unoffload namespace liqo-demo --skip-confirm");
    let out = sh_ok(
        env,
        "liqoctl unpeer --remote-kubeconfig \"$KUBECONFIG_NEWYORK\" --skip-confirm",
    );
    assert!(
        out.contains("Unpeered from newyork on both clusters"),
        "{out}"
    );
    // Both sides are clean when the command returns: no waiting for the provider's host.
    assert_eq!(
        sh_ok(env, "kubectl get foreignclusters -o name").trim(),
        "",
        "london still has a ForeignCluster"
    );
    assert_eq!(tenants().trim(), "", "newyork still has london's identity");
    assert_eq!(
        env.kubectl_ok("newyork", ["get", "foreignclusters", "-o", "name"])
            .trim(),
        "",
        "newyork still shows london"
    );
    let out = sh(
        env,
        "kubectl get namespace liqo-demo --kubeconfig \"$KUBECONFIG_NEWYORK\"",
    );
    assert!(text(&out).contains("NotFound"), "{}", text(&out));
    // Unpeering what is not peered is an error that says so.
    let out = sh(
        env,
        "liqoctl unpeer --remote-kubeconfig \"$KUBECONFIG_NEWYORK\" --skip-confirm",
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is not peered with cluster newyork"),
        "{}",
        text(&out)
    );

    // A peering user (Liqo v1): newyork's admin prints a kubeconfig for london's identity,
    // london's admin peers with it, holding no other credential of newyork.
    let user_file = env.dir().join("peering-user.yaml");
    let out = sh(
        env,
        &format!(
            "liqoctl generate peering-user --consumer-cluster-id london --kubeconfig \"$KUBECONFIG_NEWYORK\" > {}",
            user_file.display()
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("share it only with london's administrator"),
        "{}",
        text(&out)
    );
    let user = user_file.display().to_string();
    // It can do what the peer command's token can, and no more.
    for (verb, expected) in [
        ("patch leases/liqo-peering", "yes"),
        (
            "create serviceaccounts/liqo-consumer --subresource token",
            "yes",
        ),
        ("create namespaces", "no"),
        ("delete namespace/kube-system", "no"),
        ("get secrets --all-namespaces", "no"),
        ("create clusterrolebindings", "no"),
        ("create services -n default", "no"),
    ] {
        let out = sh(
            env,
            &format!("kubectl auth can-i {verb} --kubeconfig {user}"),
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            expected,
            "the peering user: can-i {verb}: {}",
            text(&out)
        );
    }
    // Made for london: another cluster cannot use it (newyork plays that cluster here).
    let out = sh(
        env,
        &format!("liqoctl peer --remote-kubeconfig {user} --kubeconfig \"$KUBECONFIG_NEWYORK\""),
    );
    assert!(!out.status.success());
    assert!(
        text(&out)
            .contains("is the peering user of consumer london, not of this cluster (newyork)"),
        "{}",
        text(&out)
    );
    let out = sh_ok(env, &format!("liqoctl peer --remote-kubeconfig {user}"));
    assert!(out.contains("Peered with newyork"), "{out}");
    assert_eq!(
        &rows(&sh_ok(env, "kubectl get foreignclusters"))[0][..5],
        ["newyork", "Established", "None", "None", "Established"]
    );
    let out = sh_ok(
        env,
        &format!("liqoctl unpeer --remote-kubeconfig {user} --skip-confirm"),
    );
    assert!(
        out.contains("newyork revokes the peering identity"),
        "{out}"
    );
    eventually("newyork to revoke the peering user", WAIT, || async {
        tenants().trim().is_empty().then_some(())
    })
    .await;

    sh_ok(env, "liqoctl uninstall --skip-confirm");
    sh_ok(
        env,
        "liqoctl uninstall --skip-confirm --kubeconfig \"$KUBECONFIG_NEWYORK\"",
    );
    hosts.stop();
}
