//! Offloading to several providers chosen by labels, as in Liqo's "Offloading with policies"
//! tutorial: consumer `london`, providers `florence` (region center) and `naples` (region
//! south), installed with `--cluster-labels`, peered with `liqoctl peer --remote-kubeconfig`,
//! against three real control planes with the three hosts running.

use std::path::PathBuf;
use std::time::Duration;

mod common;

use common::{sh, sh_ok, start_host};
use serde_json::Value;
use testsupport::{TestEnv, eventually, output_text as text};

const WAIT: Duration = Duration::from_secs(90);
const REGION: &str = "topology.liqo.io/region";

fn repo() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("..")
}

/// Whether `cluster` has a Service `name` in namespace `ns`.
fn has_service(env: &TestEnv, cluster: &str, ns: &str, name: &str) -> bool {
    env.kubectl(cluster, ["get", "service", name, "-n", ns])
        .status
        .success()
}

/// Whether `cluster` has namespace `ns` (terminating counts as present).
fn has_namespace(env: &TestEnv, cluster: &str, ns: &str) -> bool {
    env.kubectl(cluster, ["get", "namespace", ns])
        .status
        .success()
}

/// The NamespaceOffloading of `ns` in london.
fn offloading(env: &TestEnv, ns: &str) -> Value {
    let out = env.kubectl_ok(
        "london",
        [
            "get",
            "namespaceoffloading",
            "offloading",
            "-n",
            ns,
            "-o",
            "json",
        ],
    );
    serde_json::from_str(&out).unwrap()
}

/// The `OffloadingRequired` condition of `peer` in the status of `o`.
fn required(o: &Value, peer: &str) -> Option<(String, String)> {
    o["status"]["remoteNamespacesConditions"][peer]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "OffloadingRequired")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// The names london's ForeignClusters matching label query `query`.
fn foreign_clusters(env: &TestEnv, query: &str) -> String {
    let out = env.kubectl_ok(
        "london",
        ["get", "foreignclusters", "-l", query, "-o", "name"],
    );
    let mut names: Vec<&str> = out
        .lines()
        .map(|l| l.trim_start_matches("foreigncluster.core.liqo.io/"))
        .collect();
    names.sort();
    names.join(",")
}

#[tokio::test]
async fn offloading_with_policies_across_three_clusters() {
    let env = TestEnv::start(&["london", "florence", "naples"]).expect("three clusters");
    let env = &env;

    // Bad labels are refused before anything is written.
    let out = sh(
        env,
        "liqoctl install --cluster-id florence --skip-deployment --kubeconfig \"$KUBECONFIG_FLORENCE\" --cluster-labels liqo.io/remote-cluster-id=x",
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("uses a prefix reserved to Liqo"),
        "{}",
        text(&out)
    );
    assert!(
        !env.kubectl("florence", ["get", "namespace", "liqo"])
            .status
            .success(),
        "a refused install changed florence"
    );

    sh_ok(env, "liqoctl install --cluster-id london --skip-deployment");
    let out = sh_ok(
        env,
        &format!(
            "liqoctl install --cluster-id florence --skip-deployment --kubeconfig \"$KUBECONFIG_FLORENCE\" --cluster-labels {REGION}=center"
        ),
    );
    assert!(
        out.contains(&format!("cluster labels: {REGION}=center")),
        "{out}"
    );
    sh_ok(
        env,
        &format!(
            "liqoctl install --cluster-id naples --skip-deployment --kubeconfig \"$KUBECONFIG_NAPLES\" --cluster-labels {REGION}=south"
        ),
    );
    let _hosts = [
        start_host(env, "london"),
        start_host(env, "florence"),
        start_host(env, "naples"),
    ];

    sh_ok(
        env,
        "liqoctl peer --remote-kubeconfig \"$KUBECONFIG_FLORENCE\"",
    );
    sh_ok(
        env,
        "liqoctl peer --remote-kubeconfig \"$KUBECONFIG_NAPLES\"",
    );
    // The providers' labels reach london's ForeignClusters, where selectors match them.
    eventually(
        "the providers' cluster labels on london's ForeignClusters",
        WAIT,
        || async {
            (foreign_clusters(env, &format!("{REGION}=south")) == "naples"
                && foreign_clusters(env, &format!("{REGION}=center")) == "florence")
                .then_some(())
        },
    )
    .await;

    // `liqoctl info peer` shows them too.
    let labels = sh_ok(env, "liqoctl info peer naples --get clusterLabels");
    assert_eq!(labels.trim(), format!("{REGION}: south"));
    sh_ok(env, "kubectl create namespace liqo-demo");
    let app = repo().join("examples/service-offloading/app.yaml");
    sh_ok(
        env,
        &format!("kubectl apply -f {} -n liqo-demo", app.display()),
    );

    // A malformed selector: one clear error naming the flag, nothing written.
    let out = sh(
        env,
        "liqoctl offload namespace liqo-demo --pod-offloading-strategy Local --selector 'region in south'",
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--selector") && text(&out).contains("the values go in parentheses"),
        "{}",
        text(&out)
    );
    assert!(
        !env.kubectl(
            "london",
            [
                "get",
                "namespaceoffloading",
                "-n",
                "liqo-demo",
                "offloading"
            ]
        )
        .status
        .success(),
        "a refused offload wrote a NamespaceOffloading"
    );

    // The tutorial's offload: the south only.
    let out = sh_ok(
        env,
        &format!(
            "liqoctl offload namespace liqo-demo --namespace-mapping-strategy EnforceSameName --pod-offloading-strategy Local --selector '{REGION}=south'"
        ),
    );
    assert!(
        out.contains("offloaded to its twin liqo-demo in naples"),
        "{out}"
    );
    eventually("flights-service in naples", WAIT, || async {
        has_service(env, "naples", "liqo-demo", "flights-service").then_some(())
    })
    .await;
    assert!(
        !has_namespace(env, "florence", "liqo-demo"),
        "florence (center) got the twin of a south-only offloading"
    );
    let o = offloading(env, "liqo-demo");
    let (status, message) = required(&o, "florence").expect("a condition for florence");
    assert_eq!(status, "False", "{o}");
    assert!(
        message.contains(&format!(
            "({REGION}=south) does not match this peer's labels ({REGION}=center)"
        )),
        "{message}"
    );
    assert_eq!(required(&o, "naples").unwrap().0, "True", "{o}");

    // Florence moves south (its admin re-runs install with other labels): it gets the twin.
    sh_ok(
        env,
        &format!(
            "liqoctl install --skip-deployment --kubeconfig \"$KUBECONFIG_FLORENCE\" --cluster-labels {REGION}=south"
        ),
    );
    eventually(
        "florence, now south, to get flights-service",
        WAIT,
        || async { has_service(env, "florence", "liqo-demo", "flights-service").then_some(()) },
    )
    .await;
    assert_eq!(
        foreign_clusters(env, &format!("{REGION}=south")),
        "florence,naples"
    );

    // Unpeering naples removes only naples' twin; florence keeps its copies. (unpeer refuses
    // while a namespace is offloaded to the peer, unless --force says the twin may go.)
    let out = sh(
        env,
        "liqoctl unpeer --remote-kubeconfig \"$KUBECONFIG_NAPLES\" --skip-confirm",
    );
    assert!(
        text(&out).contains("namespaces liqo-demo are offloaded to naples"),
        "{}",
        text(&out)
    );
    sh_ok(
        env,
        "liqoctl unpeer --remote-kubeconfig \"$KUBECONFIG_NAPLES\" --skip-confirm --force",
    );
    eventually("naples' twin namespace to go", WAIT, || async {
        (!has_namespace(env, "naples", "liqo-demo")).then_some(())
    })
    .await;
    assert!(has_service(env, "florence", "liqo-demo", "flights-service"));
    let slices = env.kubectl_ok(
        "florence",
        [
            "get",
            "endpointslices",
            "-n",
            "liqo-demo",
            "-l",
            "kubernetes.io/service-name=flights-service,endpointslice.kubernetes.io/managed-by=endpointslice.reflection.liqo.io",
            "-o",
            "name",
        ],
    );
    assert_eq!(
        slices.lines().count(),
        1,
        "florence lost its EndpointSlice: {slices}"
    );

    // Florence back to the center: its labels stop matching, it loses its twin, and the
    // offloading says no cluster is selected. It also publishes `tier=gold`, a key london's
    // admin set on that ForeignCluster first: the consumer's own label wins.
    sh_ok(env, "kubectl label foreigncluster florence tier=mine");
    sh_ok(
        env,
        &format!(
            "liqoctl install --skip-deployment --kubeconfig \"$KUBECONFIG_FLORENCE\" --cluster-labels {REGION}=center,tier=gold"
        ),
    );
    eventually(
        "florence, back in the center, to lose its twin",
        WAIT,
        || async { (!has_namespace(env, "florence", "liqo-demo")).then_some(()) },
    )
    .await;
    eventually("the phase NoClusterSelected", WAIT, || async {
        (offloading(env, "liqo-demo")["status"]["offloadingPhase"] == "NoClusterSelected")
            .then_some(())
    })
    .await;

    assert_eq!(
        foreign_clusters(env, &format!("{REGION}=center")),
        "florence"
    );
    assert_eq!(foreign_clusters(env, "tier=mine"), "florence");
    assert_eq!(foreign_clusters(env, "tier=gold"), "");

    // Nothing is offloaded to florence now: unpeering it is not refused (it has a condition,
    // OffloadingRequired False, but no twin). Peered again, its labels come back.
    sh_ok(
        env,
        "liqoctl unpeer --remote-kubeconfig \"$KUBECONFIG_FLORENCE\" --skip-confirm",
    );
    sh_ok(
        env,
        "liqoctl peer --remote-kubeconfig \"$KUBECONFIG_FLORENCE\"",
    );
    eventually("florence's labels after peering again", WAIT, || async {
        (foreign_clusters(env, &format!("{REGION}=center")) == "florence").then_some(())
    })
    .await;

    // A provider peered later that matches gets the twin: naples (south) peers again.
    sh_ok(
        env,
        "liqoctl peer --remote-kubeconfig \"$KUBECONFIG_NAPLES\"",
    );
    eventually(
        "naples, peered again, to get flights-service",
        WAIT,
        || async { has_service(env, "naples", "liqo-demo", "flights-service").then_some(()) },
    )
    .await;
    assert!(!has_namespace(env, "florence", "liqo-demo"));

    // Liqo's own manifest form (nodeSelectorTerms, ORed terms) applied with kubectl.
    sh_ok(env, "kubectl create namespace liqo-policies");
    sh_ok(
        env,
        &format!("kubectl apply -f {} -n liqo-policies", app.display()),
    );
    let manifest = format!(
        r#"apiVersion: offloading.liqo.io/v1beta1
kind: NamespaceOffloading
metadata:
  name: offloading
  namespace: liqo-policies
spec:
  namespaceMappingStrategy: EnforceSameName
  podOffloadingStrategy: Local
  clusterSelector:
    nodeSelectorTerms:
    - matchExpressions:
      - key: {REGION}
        operator: In
        values: [north]
    - matchExpressions:
      - key: {REGION}
        operator: In
        values: [center]
"#
    );
    let file = env.dir().join("liqo-policies.yaml");
    std::fs::write(&file, &manifest).unwrap();
    sh_ok(env, &format!("kubectl apply -f {}", file.display()));
    eventually(
        "flights-service of liqo-policies in florence",
        WAIT,
        || async { has_service(env, "florence", "liqo-policies", "flights-service").then_some(()) },
    )
    .await;

    // What the host could not evaluate is refused at admission, naming the field; the object
    // in place is unchanged.
    for (bad, said) in [
        (
            "    - matchFields:\n      - key: metadata.name\n        operator: In\n        values: [florence]\n",
            "matchFields is not supported",
        ),
        (
            "    - matchExpressions:\n      - key: cpus\n        operator: Gt\n        values: [many]\n",
            "exactly one integer",
        ),
        (
            "    - matchExpressions:\n      - key: region\n        operator: Like\n        values: [x]\n",
            "Unsupported value: \"Like\"",
        ),
    ] {
        let head = manifest.split("    nodeSelectorTerms:\n").next().unwrap();
        let broken = format!("{head}    nodeSelectorTerms:\n{bad}");
        std::fs::write(&file, &broken).unwrap();
        let out = sh(env, &format!("kubectl apply -f {}", file.display()));
        assert!(!out.status.success(), "accepted:\n{broken}");
        assert!(
            text(&out).contains("spec.clusterSelector.nodeSelectorTerms[0]")
                && text(&out).contains(said),
            "{}",
            text(&out)
        );
    }
    assert!(has_service(
        env,
        "florence",
        "liqo-policies",
        "flights-service"
    ));
    assert_eq!(
        offloading(env, "liqo-policies")["spec"]["clusterSelector"]["nodeSelectorTerms"][1]["matchExpressions"]
            [0]["values"][0],
        "center"
    );

    // -o yaml for several namespaces prints without applying (GitOps), one document each.
    let printed = sh_ok(
        env,
        &format!(
            "liqoctl offload namespace --namespace-selector kubernetes.io/metadata.name=liqo-demo -l '{REGION} in (south,center)' -o yaml"
        ),
    );
    assert!(
        printed.contains("operator: In") && printed.contains("- south"),
        "{printed}"
    );
    assert_eq!(
        offloading(env, "liqo-demo")["spec"]["clusterSelector"]["nodeSelectorTerms"][0]["matchExpressions"]
            [0]["values"],
        serde_json::json!(["south"]),
        "-o yaml changed the NamespaceOffloading"
    );

    // --namespace-selector (Liqo v1's --ns-selector): every matching namespace, default names.
    for ns in ["web-a", "web-b"] {
        sh_ok(env, &format!("kubectl create namespace {ns}"));
        sh_ok(env, &format!("kubectl label namespace {ns} team=web"));
    }
    let out = sh_ok(
        env,
        &format!(
            "liqoctl offload namespace --ns-selector team=web --pod-offloading-strategy Local -l {REGION}=center"
        ),
    );
    assert!(
        out.contains("Namespace web-a offloaded to its twin web-a-london in florence")
            && out.contains("Namespace web-b offloaded to its twin web-b-london in florence"),
        "{out}"
    );
    assert!(
        has_namespace(env, "florence", "web-a-london")
            && has_namespace(env, "florence", "web-b-london")
    );
    let out = sh(
        env,
        "liqoctl offload namespace --ns-selector 'team in web' --pod-offloading-strategy Local",
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--namespace-selector \"team in web\" is not a label query"),
        "{}",
        text(&out)
    );
    sh_ok(
        env,
        "liqoctl unoffload namespace --ns-selector team=web --skip-confirm",
    );
    assert!(
        !env.kubectl(
            "london",
            ["get", "namespaceoffloading", "-n", "web-a", "offloading"]
        )
        .status
        .success()
    );
    eventually("florence's web twins to go", WAIT, || async {
        (!has_namespace(env, "florence", "web-a-london")
            && !has_namespace(env, "florence", "web-b-london"))
        .then_some(())
    })
    .await;
    // The other offloadings are untouched.
    assert!(has_service(
        env,
        "florence",
        "liqo-policies",
        "flights-service"
    ));
}
