//! The Kustomize base in `deploy/` against a real API server: every manifest is accepted
//! (server-side apply validates fields strictly, so a typo in a field name fails here), the
//! CRD list is complete, and the host's ServiceAccount gets what it needs and no more.
//!
//! The Deployment's pods never run a container here (testenv's kubelet stand-in only reports
//! them Running); the test checks what the API accepted and what RBAC grants.

use std::path::PathBuf;

use testsupport::TestEnv;

/// The cluster this test installs into (cluster-scoped objects: nobody else in this test
/// binary touches them).
const CLUSTER: &str = "london";
const SA: &str = "system:serviceaccount:liqo:liqo-host";

fn deploy_dir() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("../deploy")
}

/// `kubectl auth can-i VERB RESOURCE --as the host` ("yes"/"no").
fn host_can(env: &TestEnv, args: &[&str]) -> bool {
    let mut full = vec!["auth", "can-i", "--as", SA];
    full.extend_from_slice(args);
    let out = env.kubectl(CLUSTER, &full);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

#[test]
fn the_kustomization_lists_every_generated_crd() {
    let text = std::fs::read_to_string(deploy_dir().join("kustomization.yaml")).unwrap();
    let mut listed: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- crds/"))
        .map(str::to_string)
        .collect();
    listed.sort();
    let mut generated: Vec<String> = liqo_host::api::crds()
        .iter()
        .map(liqo_host::api::crd_file_name)
        .collect();
    generated.sort();
    assert_eq!(
        listed, generated,
        "deploy/kustomization.yaml must list every file of deploy/crds"
    );
}

#[test]
fn every_manifest_is_accepted_and_rbac_is_least_privilege() {
    let env = TestEnv::shared();
    let deploy = deploy_dir();
    let deploy = deploy.to_str().unwrap();

    // Namespace and CRDs must exist before a server-side dry run of what lives in them, so
    // apply for real first, then dry-run again (a no-op that must still pass validation).
    env.kubectl_ok(CLUSTER, ["apply", "--server-side", "-k", deploy]);
    env.kubectl_ok(
        CLUSTER,
        ["apply", "--server-side", "--dry-run=server", "-k", deploy],
    );
    env.kubectl_ok(
        CLUSTER,
        [
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/foreignclusters.core.liqo.io",
            "crd/namespaceoffloadings.offloading.liqo.io",
            "crd/reflectionplugins.plugins.liqo.io",
        ],
    );
    let deployment = env.kubectl_ok(
        CLUSTER,
        [
            "-n",
            "liqo",
            "get",
            "deployment",
            "liqo-host",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].args}",
        ],
    );
    assert!(deployment.contains("--plugin-cache-dir"), "{deployment}");

    // What the host does (host/src: reflection, peering, offloading, leader election).
    for grant in [
        vec!["list", "services", "--all-namespaces"],
        vec![
            "watch",
            "endpointslices.discovery.k8s.io",
            "--all-namespaces",
        ],
        vec!["create", "events.events.k8s.io", "-n", "default"],
        vec!["patch", "foreignclusters.core.liqo.io"],
        vec![
            "patch",
            "foreignclusters.core.liqo.io",
            "--subresource=status",
        ],
        vec![
            "patch",
            "namespaceoffloadings.offloading.liqo.io",
            "-n",
            "default",
        ],
        vec![
            "update",
            "namespaceoffloadings.offloading.liqo.io",
            "--subresource=status",
            "-n",
            "default",
        ],
        vec!["watch", "reflectionplugins.plugins.liqo.io"],
        vec!["patch", "reflectionplugins.plugins.liqo.io"],
        vec![
            "update",
            "reflectionplugins.plugins.liqo.io",
            "--subresource=finalizers",
        ],
        vec!["get", "configmaps/liqo-plugin-configmap", "-n", "liqo"],
        vec!["get", "secrets", "-n", "liqo"],
        vec!["get", "configmaps/liqo-clusterid-configmap", "-n", "liqo"],
        // Watched by name for its cluster labels (and nothing else listable: see below).
        vec!["watch", "configmaps/liqo-clusterid-configmap", "-n", "liqo"],
        vec!["create", "leases.coordination.k8s.io", "-n", "liqo"],
        vec!["update", "leases.coordination.k8s.io", "-n", "liqo"],
        // Provider side of peering: consumers' ForeignClusters, Leases and revocation.
        vec!["delete", "foreignclusters.core.liqo.io"],
        vec!["list", "leases.coordination.k8s.io", "--all-namespaces"],
        vec!["delete", "serviceaccounts", "-n", "liqo-tenant-x"],
        vec!["delete", "namespaces"],
        vec!["patch", "secrets", "-n", "liqo"],
        vec!["create", "rolebindings", "-n", "liqo-demo"],
        vec!["bind", "clusterroles/liqo-peering-reflected-kinds"],
        // Twin namespaces, made on a consumer's request (NamespaceMap), bounded by a quota.
        vec!["create", "namespaces"],
        vec!["watch", "namespaces"],
        vec![
            "watch",
            "namespacemaps.virtualkubelet.liqo.io",
            "--all-namespaces",
        ],
        vec![
            "patch",
            "namespacemaps.virtualkubelet.liqo.io",
            "--subresource=status",
            "-n",
            "liqo-tenant-x",
        ],
        vec!["create", "resourcequotas", "-n", "liqo-demo"],
        vec!["list", "servicecidrs.networking.k8s.io"],
        vec!["list", "nodes"],
        vec![
            "patch",
            "endpointslices.discovery.k8s.io",
            "-n",
            "liqo-demo",
        ],
    ] {
        assert!(
            host_can(env, &grant),
            "the host should be allowed to {grant:?}"
        );
    }
    // And what it must not do.
    for denied in [
        vec!["get", "secrets", "-n", "default"],
        vec!["list", "secrets", "-n", "liqo"],
        vec!["create", "services", "-n", "default"],
        vec!["create", "endpointslices.discovery.k8s.io", "-n", "default"],
        vec!["delete", "endpointslices.discovery.k8s.io", "-n", "default"],
        vec![
            "create",
            "namespaceoffloadings.offloading.liqo.io",
            "-n",
            "default",
        ],
        vec!["get", "configmaps/other", "-n", "default"],
        vec!["list", "configmaps", "-n", "liqo"],
        vec!["create", "leases.coordination.k8s.io", "-n", "default"],
        vec!["create", "pods", "-n", "liqo"],
        vec!["patch", "secrets", "-n", "default"],
        vec!["update", "leases.coordination.k8s.io", "-n", "default"],
        vec!["bind", "clusterroles/cluster-admin"],
        // Requests are the consumer's and liqoctl's to write; quotas are never removed.
        vec![
            "create",
            "namespacemaps.virtualkubelet.liqo.io",
            "-n",
            "liqo-tenant-x",
        ],
        vec![
            "update",
            "namespacemaps.virtualkubelet.liqo.io",
            "-n",
            "liqo-tenant-x",
        ],
        vec!["delete", "resourcequotas", "-n", "default"],
        vec!["update", "namespaces"],
        vec!["delete", "rolebindings", "-n", "default"],
    ] {
        assert!(
            !host_can(env, &denied),
            "the host must not be allowed to {denied:?}"
        );
    }

    // Clean up for whoever runs next in this process.
    env.kubectl_ok(CLUSTER, ["delete", "-k", deploy, "--wait=false"]);
}
