//! Both hosts run with the RBAC we ship (`deploy/host/rbac.yaml`, applied by `liqoctl
//! install`): each authenticates as the ServiceAccount `liqo/liqo-host` with a bound token,
//! never as an admin. The tutorial then runs through the scoped peering identity: peer,
//! offload (the provider's host creates the twin namespace, its RoleBinding and ResourceQuota),
//! reflect, unoffload, unpeer (the provider revokes the identity). Any permission missing from
//! the shipped RBAC shows up as a step that never happens, or as a "forbidden" in a host's log.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

mod common;

use common::{liqo_host_bin, sh_ok};
use testsupport::{KillOnDrop, TestEnv, eventually};

const WAIT: Duration = Duration::from_secs(90);

/// A kubeconfig for `cluster` that authenticates as `liqo/liqo-host` with a fresh bound token.
async fn host_kubeconfig(env: &TestEnv, cluster: &str) -> PathBuf {
    let admin = env.client(cluster).await;
    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }))
    .unwrap();
    let token = Api::<ServiceAccount>::namespaced(admin, "liqo")
        .create_subresource::<_, TokenRequest>(
            "token",
            "liqo-host",
            &PostParams::default(),
            &request,
        )
        .await
        .expect("a token for liqo/liqo-host (made by liqoctl install)")
        .status
        .unwrap()
        .token;
    let admin_config: serde_yaml_ng::Value =
        serde_yaml_ng::from_slice(&std::fs::read(env.kubeconfig_path(cluster)).unwrap()).unwrap();
    let cluster_entry = &admin_config["clusters"][0]["cluster"];
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "server": cluster_entry["server"].as_str().unwrap(),
            "certificate-authority-data": cluster_entry["certificate-authority-data"].as_str().unwrap(),
        }}],
        "users": [{"name": "liqo-host", "user": {"token": token}}],
        "contexts": [{"name": "liqo-host", "context": {"cluster": cluster, "user": "liqo-host"}}],
        "current-context": "liqo-host",
    });
    let path = env.dir().join(format!("{cluster}-liqo-host.kubeconfig"));
    std::fs::write(&path, kubeconfig.to_string()).unwrap();
    path
}

fn log_path(env: &TestEnv, cluster: &str) -> PathBuf {
    env.dir().join(format!("{cluster}-host-rbac.log"))
}

fn start_host(env: &TestEnv, cluster: &str, kubeconfig: &PathBuf) -> KillOnDrop {
    let log = std::fs::File::create(log_path(env, cluster)).unwrap();
    KillOnDrop(
        Command::new(liqo_host_bin())
            .args(["run", "--kubeconfig"])
            .arg(kubeconfig)
            // Leader election on, as in the Deployment: the Lease liqo/liqo-host.
            .args([
                "--metrics-addr",
                "127.0.0.1:0",
                "--peering-revocation-grace",
                "5s",
            ])
            .arg("--plugin-cache-dir")
            .arg(env.dir().join("plugin-cache"))
            .env_remove("POD_NAME")
            .env_remove("KUBECONFIG")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting liqo-host"),
    )
}

#[tokio::test]
async fn tutorial_with_the_shipped_host_rbac() {
    let env = TestEnv::shared();
    sh_ok(env, "liqoctl install --cluster-id london --skip-deployment");
    sh_ok(
        env,
        "liqoctl install --cluster-id newyork --skip-deployment --kubeconfig \"$KUBECONFIG_NEWYORK\" \
         --peer-namespace-limit 5 --peer-quota count/services=50,services.loadbalancers=0",
    );
    let london_config = host_kubeconfig(env, "london").await;
    let newyork_config = host_kubeconfig(env, "newyork").await;
    let mut london_host = start_host(env, "london", &london_config);
    let mut newyork_host = start_host(env, "newyork", &newyork_config);
    let london = env.client("london").await;
    let newyork = env.client("newyork").await;

    sh_ok(
        env,
        r#"liqoctl generate peer-command --only-command --kubeconfig "$KUBECONFIG_NEWYORK" | bash"#,
    );
    sh_ok(env, "kubectl create namespace liqo-demo");
    sh_ok(
        env,
        "kubectl create service clusterip flights-service --tcp=7999:7999 -n liqo-demo",
    );
    sh_ok(
        env,
        "liqoctl offload namespace liqo-demo --namespace-mapping-strategy EnforceSameName --pod-offloading-strategy Local",
    );

    // The provider's host made the twin namespace, bound the identity in it and bounded it.
    let twin = eventually("the twin namespace in newyork", WAIT, || async {
        Api::<Namespace>::all(newyork.clone())
            .get_opt("liqo-demo")
            .await
            .ok()
            .flatten()
    })
    .await;
    let tenant = twin
        .labels()
        .get("liqo.io/tenant")
        .cloned()
        .expect("the twin namespace names its tenant");
    assert!(tenant.starts_with("liqo-tenant-"), "{tenant}");
    assert_eq!(
        twin.labels()
            .get("offloading.liqo.io/origin")
            .map(String::as_str),
        Some("london")
    );
    let bindings = Api::<RoleBinding>::namespaced(newyork.clone(), "liqo-demo")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        bindings.items.iter().any(|b| b
            .subjects
            .iter()
            .flatten()
            .any(|s| s.namespace.as_deref() == Some(tenant.as_str()))),
        "a RoleBinding of the reflected kinds to the tenant's identity"
    );
    let quota = Api::<ResourceQuota>::namespaced(newyork.clone(), "liqo-demo")
        .get("liqo-peering")
        .await
        .expect("the twin's ResourceQuota");
    // What `liqoctl install --peer-quota` set.
    let hard = quota.spec.unwrap().hard.unwrap();
    assert_eq!(hard["count/services"].0, "50");
    assert_eq!(hard["services.loadbalancers"].0, "0");
    let remote = eventually("flights-service reflected into newyork", WAIT, || async {
        Api::<Service>::namespaced(newyork.clone(), "liqo-demo")
            .get_opt("flights-service")
            .await
            .ok()
            .flatten()
    })
    .await;
    let local = Api::<Service>::namespaced(london.clone(), "liqo-demo")
        .get("flights-service")
        .await
        .unwrap();
    let ip = |s: &Service| s.spec.as_ref().and_then(|s| s.cluster_ip.clone());
    assert!(
        ip(&remote).is_some() && ip(&remote) != ip(&local),
        "newyork's own ClusterIP"
    );

    // The provider's admin sees the consumer, its twin namespace and the limits.
    let info: serde_json::Value = serde_json::from_str(&sh_ok(
        env,
        "liqoctl info -o json --kubeconfig \"$KUBECONFIG_NEWYORK\" 2>/dev/null",
    ))
    .unwrap();
    assert_eq!(info["peerLimits"]["maxNamespacesPerPeer"], 5, "{info}");
    let consumer = info["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tenant"] == tenant.as_str())
        .unwrap_or_else(|| panic!("tenant {tenant} in liqoctl info: {info}"));
    assert_eq!(consumer["consumerID"], "london");
    assert_eq!(consumer["twinNamespaces"], json!(["liqo-demo"]));

    // Teardown through the same identities.
    sh_ok(env, "liqoctl unoffload namespace liqo-demo");
    assert!(
        Api::<Namespace>::all(newyork.clone())
            .get_opt("liqo-demo")
            .await
            .unwrap()
            .is_none_or(|n| n.metadata.deletion_timestamp.is_some()),
        "unoffload returns once the twin namespace is deleted"
    );
    sh_ok(env, "liqoctl unpeer out-of-band newyork");
    eventually("newyork to revoke the identity", WAIT, || async {
        Api::<Namespace>::all(newyork.clone())
            .get_opt(&tenant)
            .await
            .ok()?
            .is_none_or(|n| n.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await;

    london_host.stop();
    newyork_host.stop();
    for cluster in ["london", "newyork"] {
        let log = std::fs::read_to_string(log_path(env, cluster)).unwrap();
        let refused: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("forbidden") || l.contains("Forbidden"))
            .collect();
        assert!(
            refused.is_empty(),
            "{cluster}'s host was refused something by the shipped RBAC:\n{}",
            refused.join("\n")
        );
    }
}
