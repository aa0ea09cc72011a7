//! `liqoctl install`, `liqoctl uninstall [--purge]` and `liqoctl info` through the real binary
//! against testenv clusters.
//!
//! The scenarios that share london's cluster-scoped state (CRDs, namespace liqo) run in order in
//! one test; the full install with a Deployment uses newyork, so it runs alongside.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;
mod common;

use common::run_liqoctl as liqoctl;
use testsupport::TestEnv;

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs liqoctl and panics unless it succeeds; returns stdout.
fn liqoctl_ok(env: &TestEnv, cluster: &str, args: &[&str]) -> String {
    let out = liqoctl(env, cluster, args);
    assert!(
        out.status.success(),
        "liqoctl {args:?} failed: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs liqoctl and panics if it succeeds; returns stderr.
fn liqoctl_err(env: &TestEnv, cluster: &str, args: &[&str]) -> String {
    let out = liqoctl(env, cluster, args);
    assert!(
        !out.status.success(),
        "liqoctl {args:?} should fail: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn cluster_id(env: &TestEnv, cluster: &str) -> String {
    env.kubectl_ok(
        cluster,
        [
            "-n",
            "liqo",
            "get",
            "configmap",
            "liqo-clusterid-configmap",
            "-o",
            "jsonpath={.data.CLUSTER_ID}",
        ],
    )
}

fn exists(env: &TestEnv, cluster: &str, args: &[&str]) -> bool {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.push("--ignore-not-found");
    full.extend(["-o", "name"]);
    !env.kubectl_ok(cluster, &full).trim().is_empty()
}

const CRDS: [&str; 4] = [
    "foreignclusters.core.liqo.io",
    "namespaceoffloadings.offloading.liqo.io",
    "reflectionplugins.plugins.liqo.io",
    "namespacemaps.virtualkubelet.liqo.io",
];

fn info_json(env: &TestEnv, cluster: &str) -> Value {
    let out = liqoctl_ok(env, cluster, &["info", "-o", "json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("info -o json: {e}: {out}"))
}

#[test]
fn help_exits_zero() {
    for args in [
        &["--help"][..],
        &["install", "--help"],
        &["uninstall", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_liqoctl"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
}

#[test]
fn install_reinstall_info_uninstall_purge() {
    let env = TestEnv::shared();
    let c = "london";

    // Install without the Deployment, as development and the demo do.
    let out = liqoctl_ok(
        env,
        c,
        &["install", "--cluster-id", "london", "--skip-deployment"],
    );
    assert!(out.contains("cluster id:    london"), "{out}");
    assert!(
        out.contains("liqo-host run"),
        "the next step is shown: {out}"
    );
    for crd in CRDS {
        let status = env.kubectl_ok(
            c,
            [
                "get",
                "crd",
                crd,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
            ],
        );
        assert_eq!(status, "True", "{crd}");
    }
    assert_eq!(cluster_id(env, c), "london");
    assert!(exists(env, c, &["clusterrole", "liqo-host"]));
    assert!(exists(
        env,
        c,
        &["-n", "liqo", "serviceaccount", "liqo-host"]
    ));
    assert!(!exists(env, c, &["-n", "liqo", "deployment", "liqo-host"]));

    // A re-install keeps the id; a different one is refused and changes nothing.
    let out = liqoctl_ok(env, c, &["install", "--skip-deployment"]);
    assert!(out.contains("london (kept"), "{out}");
    assert_eq!(cluster_id(env, c), "london");
    let err = liqoctl_err(
        env,
        c,
        &["install", "--cluster-id", "paris", "--skip-deployment"],
    );
    assert!(
        err.contains("\"london\"") && err.contains("\"paris\"") && err.contains("uninstall"),
        "{err}"
    );
    assert_eq!(cluster_id(env, c), "london");
    let err = liqoctl_err(env, c, &["install", "--cluster-id", "Not_Valid"]);
    assert!(err.contains("--cluster-id"), "{err}");

    // info, human and JSON.
    let out = liqoctl_ok(env, c, &["info"]);
    assert!(out.contains("ID:    london"), "{out}");
    assert!(out.contains("Installed:  yes"), "{out}");
    let info = info_json(env, c);
    assert_eq!(info["clusterIdentity"]["clusterID"], "london", "{info}");
    assert_eq!(info["host"]["installed"], true, "{info}");
    assert_eq!(info["peerings"], Value::Array(vec![]), "{info}");
    let yaml = liqoctl_ok(env, c, &["info", "-o", "yaml"]);
    assert!(yaml.contains("clusterID: london"), "{yaml}");

    // A peering and an offloading block uninstall. The host is not running, so no finalizer
    // holds them.
    env.kubectl_ok(
        c,
        [
            "-n",
            "liqo",
            "create",
            "secret",
            "generic",
            "newyork-credentials",
            "--from-literal=token=very-secret-token",
            "--from-literal=server=https://127.0.0.1:1",
        ],
    );
    let manifest =
        std::env::temp_dir().join(format!("liqoctl-install-{}.yaml", std::process::id()));
    std::fs::write(
        &manifest,
        "apiVersion: core.liqo.io/v1beta1\nkind: ForeignCluster\nmetadata: {name: newyork}\n\
         spec:\n  clusterID: newyork\n  credentialsSecretRef: {name: newyork-credentials, namespace: liqo}\n\
         ---\napiVersion: v1\nkind: Namespace\nmetadata: {name: liqo-demo}\n---\n\
         apiVersion: offloading.liqo.io/v1beta1\nkind: NamespaceOffloading\n\
         metadata: {name: offloading, namespace: liqo-demo}\n\
         spec: {namespaceMappingStrategy: EnforceSameName, podOffloadingStrategy: Local}\n",
    )
    .unwrap();
    let manifest_path = PathBuf::from(&manifest);
    env.kubectl_ok(c, ["apply", "-f", manifest_path.to_str().unwrap()]);

    let out = liqoctl_ok(env, c, &["info"]);
    assert!(out.contains("newyork"), "{out}");
    assert!(out.contains("sha256:"), "a fingerprint is shown: {out}");
    assert!(
        !out.contains("very-secret-token"),
        "the token never is: {out}"
    );
    let info = info_json(env, c);
    let peering = &info["peerings"][0];
    assert_eq!(peering["name"], "newyork", "{info}");
    assert_eq!(peering["clusterID"], "newyork", "{info}");
    assert_eq!(peering["outgoingPeering"], "None", "{info}");
    assert_eq!(peering["health"], "inactive", "{info}");
    assert!(!info.to_string().contains("very-secret-token"));

    let err = liqoctl_err(env, c, &["uninstall"]);
    assert!(
        err.contains("liqoctl unoffload namespace liqo-demo"),
        "{err}"
    );
    assert!(err.contains("liqoctl unpeer out-of-band newyork"), "{err}");
    assert!(
        err.find("unoffload").unwrap() < err.find("unpeer").unwrap(),
        "unoffload first: {err}"
    );
    assert!(exists(env, c, &["namespace", "liqo"]), "nothing removed");
    assert_eq!(cluster_id(env, c), "london");

    env.kubectl_ok(
        c,
        [
            "-n",
            "liqo-demo",
            "delete",
            "namespaceoffloading",
            "offloading",
        ],
    );
    let err = liqoctl_err(env, c, &["uninstall"]);
    assert!(!err.contains("unoffload"), "{err}");
    assert!(err.contains("liqoctl unpeer out-of-band newyork"), "{err}");

    // An incoming peering (this cluster provides to newyork) is removed from newyork's side.
    env.kubectl_ok(
        c,
        [
            "patch",
            "foreigncluster",
            "newyork",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"role":"Consumer"}}"#,
        ],
    );
    let err = liqoctl_err(env, c, &["uninstall"]);
    assert!(
        err.contains("liqoctl unpeer out-of-band london   # against the consumer newyork"),
        "{err}"
    );

    // Without the peering, uninstall removes the host but keeps the CRDs.
    env.kubectl_ok(c, ["delete", "foreigncluster", "newyork"]);
    let out = liqoctl_ok(env, c, &["uninstall"]);
    assert!(out.contains("Namespace liqo"), "{out}");
    assert!(out.contains("ClusterRole liqo-host"), "{out}");
    assert!(out.contains("--purge"), "{out}");
    assert!(!exists(env, c, &["namespace", "liqo"]));
    assert!(!exists(env, c, &["clusterrole", "liqo-host"]));
    assert!(!exists(env, c, &["clusterrolebinding", "liqo-host"]));
    for crd in CRDS {
        assert!(exists(env, c, &["crd", crd]), "{crd} kept without --purge");
    }
    let info = info_json(env, c);
    assert_eq!(info["clusterIdentity"], Value::Null, "{info}");
    assert_eq!(info["host"]["installed"], false, "{info}");

    // A fresh install gets a generated id from the context name; --purge removes the CRDs and
    // tenant namespaces.
    liqoctl_ok(env, c, &["install", "--skip-deployment"]);
    let id = cluster_id(env, c);
    assert!(
        id.starts_with("london-") && id.len() == "london-".len() + 6,
        "{id}"
    );
    env.kubectl_ok(c, ["create", "namespace", "liqo-tenant-newyork"]);
    env.kubectl_ok(
        c,
        [
            "label",
            "namespace",
            "liqo-tenant-newyork",
            "liqo.io/tenant-namespace=true",
        ],
    );
    let out = liqoctl_ok(env, c, &["uninstall", "--purge"]);
    assert!(
        out.contains("CustomResourceDefinition foreignclusters.core.liqo.io"),
        "{out}"
    );
    assert!(out.contains("Namespace liqo-tenant-newyork"), "{out}");
    for crd in CRDS {
        assert!(!exists(env, c, &["crd", crd]), "{crd} removed by --purge");
    }
    assert!(!exists(env, c, &["namespace", "liqo-tenant-newyork"]));
    assert!(
        exists(env, c, &["namespace", "liqo-demo"]),
        "other namespaces stay"
    );

    // Uninstalling again is harmless.
    let out = liqoctl_ok(env, c, &["uninstall", "--purge"]);
    assert!(out.contains("nothing to remove"), "{out}");
    let _ = std::fs::remove_file(manifest);
}

#[test]
fn full_install_deploys_the_host() {
    let env = TestEnv::shared();
    let c = "newyork";
    let out = liqoctl_ok(
        env,
        c,
        &[
            "install",
            "--cluster-id",
            "newyork",
            "--image",
            "registry.example/liqo-host:test",
            "--timeout",
            "2m",
        ],
    );
    assert!(out.contains("Deployment liqo/liqo-host available"), "{out}");
    let image = env.kubectl_ok(
        c,
        [
            "-n",
            "liqo",
            "get",
            "deployment",
            "liqo-host",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    );
    assert_eq!(image, "registry.example/liqo-host:test");
    // testenv's kubelet stand-in reports the pod ready, so info sees the host running.
    let info = info_json(env, c);
    assert!(
        info["host"]["status"]
            .as_str()
            .unwrap()
            .starts_with("running in the cluster"),
        "{info}"
    );
    assert_eq!(info["host"]["deployment"]["available"], true, "{info}");

    // As a provider: a peer command creates a tenant (identity for a consumer, with no
    // cluster-scoped binding); --purge removes it and the shared peering policies.
    liqoctl_ok(env, c, &["generate", "peer-command", "--only-command"]);
    let tenants = env.kubectl_ok(
        c,
        [
            "get",
            "namespaces",
            "-l",
            "liqo.io/tenant-namespace=true",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    );
    let tenant = tenants
        .split_whitespace()
        .next()
        .expect("a tenant namespace");
    assert!(!exists(env, c, &["clusterrolebinding", tenant]));
    assert!(exists(
        env,
        c,
        &["namespacemap", "liqo-namespaces", "-n", tenant]
    ));

    let out = liqoctl_ok(env, c, &["uninstall", "--purge"]);
    assert!(out.contains("Deployment liqo/liqo-host"), "{out}");
    assert!(out.contains(&format!("Namespace {tenant}")), "{out}");
    assert!(!exists(env, c, &["namespace", "liqo"]));
    assert!(!exists(env, c, &["namespace", tenant]));
    assert!(!exists(env, c, &["clusterrolebinding", tenant]));
    assert!(!exists(env, c, &["clusterrole", "liqo-peering-consumer"]));
}
