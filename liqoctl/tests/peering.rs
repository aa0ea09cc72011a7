//! Peering through the real binaries: `liqoctl generate peer-command` on newyork, the printed
//! command run by `bash` against london, both hosts running as processes, and the security of
//! the peering identity checked with its real token against newyork's API server.
//!
//! ForeignClusters are cluster-scoped and both clusters are shared by this binary's tests, so
//! the whole story runs in one test function, in order.

use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use liqo_host::api::foreign_cluster::ForeignCluster;
use liqo_host::api::namespace_offloading::NamespaceOffloading;
use liqo_host::api::wire;
use liqo_host::protocol::twin_requests;
use serde_json::json;
mod common;

use common::{
    PeerArgs, expired_jwt, liqo_host_bin as liqo_host, liqoctl_bin as liqoctl, parse_peer_command,
    run_liqoctl,
};
use testsupport::{KillOnDrop, TestEnv, eventually, output_text as text};

const WAIT: Duration = Duration::from_secs(60);

fn start_host(env: &TestEnv, cluster: &str) -> KillOnDrop {
    let log = std::fs::File::create(env.dir().join(format!("{cluster}-host.log"))).unwrap();
    KillOnDrop(
        Command::new(liqo_host())
            .args(["run", "--kubeconfig"])
            .arg(env.kubeconfig_path(cluster))
            .args([
                "--cluster-id",
                cluster,
                "--no-leader-election",
                "--metrics-addr",
                "127.0.0.1:0",
                "--peering-revocation-grace",
                "5s",
                "--plugin-cache-dir",
            ])
            .arg(env.dir().join("plugin-cache"))
            .env("RUST_LOG", "info")
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting liqo-host"),
    )
}

async fn token_client(args: &PeerArgs) -> Client {
    common::token_client(&args.url, &args.ca, &args.token).await
}

fn forbidden<T: std::fmt::Debug>(result: kube::Result<T>, expect: &str, what: &str) {
    match result {
        Ok(v) => panic!("{what}: allowed, expected a denial ({v:?})"),
        Err(kube::Error::Api(s)) => {
            assert!(
                s.code == 403 || s.code == 422,
                "{what}: unexpected code {s:?}"
            );
            assert!(
                s.message.contains(expect),
                "{what}: {:?} lacks {expect:?}",
                s.message
            );
        }
        Err(e) => panic!("{what}: unexpected error {e}"),
    }
}

fn labelled_ns(name: &str, origin: &str, destination: &str) -> Namespace {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name,
        "labels": {"offloading.liqo.io/origin": origin, "offloading.liqo.io/destination": destination},
    }}))
    .unwrap()
}

fn service(name: &str, labels: serde_json::Value) -> Service {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}))
    .unwrap()
}

/// Nothing of a failed peer attempt is left in london.
async fn nothing_created(london: &Client, what: &str) {
    let fcs = Api::<ForeignCluster>::all(london.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(fcs.items.is_empty(), "{what}: a ForeignCluster was left");
    let secrets = Api::<Secret>::namespaced(london.clone(), "liqo")
        .list(&ListParams::default().labels("liqo.io/peering-credentials=true"))
        .await
        .unwrap();
    assert!(
        secrets.items.is_empty(),
        "{what}: a credential Secret was left"
    );
}

fn row(env: &TestEnv, cluster: &str, name: &str) -> Vec<String> {
    let out = env.kubectl_ok(cluster, ["get", "foreignclusters"]);
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn peer_secure_and_unpeer() {
    let env = TestEnv::shared();
    let london = env.client("london").await;
    let newyork = env.client("newyork").await;
    common::install_liqo(&london, "london").await;
    common::install_liqo(&newyork, "newyork").await;
    let _london_host = start_host(env, "london");
    let _newyork_host = start_host(env, "newyork");

    // generate peer-command: a single line with --only-command, explanation and expiry without.
    let out = run_liqoctl(env, "newyork", &["generate", "peer-command", "--ttl", "5m"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--ttl"), "{}", text(&out));
    let out = run_liqoctl(env, "newyork", &["generate", "peer-command"]);
    assert!(out.status.success(), "{}", text(&out));
    let long = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(long.contains("can be used until"), "{long}");
    let unused = parse_peer_command(long.lines().last().unwrap());
    let out = run_liqoctl(
        env,
        "newyork",
        &["generate", "peer-command", "--only-command"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let command = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(command.trim().lines().count(), 1, "{command}");
    assert!(
        command.starts_with("liqoctl peer out-of-band newyork --api-server-url https://"),
        "{command}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&parse_peer_command(&command).token));
    // newyork's host runs no gateway: no gateway flags, and a note on stderr only.
    assert!(!command.contains("--gateway"), "{command}");
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(
        note.contains("liqo/liqo-gateway not found")
            && note.contains("address translation Identity"),
        "{note}"
    );
    let args = parse_peer_command(&command);
    assert_eq!(args.cluster_id, "newyork");

    // Bad input: one clear sentence each, nothing created.
    let london_ca = {
        let kc: serde_yaml_ng::Value =
            serde_yaml_ng::from_slice(&std::fs::read(env.kubeconfig_path("london")).unwrap())
                .unwrap();
        kc["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let expired = expired_jwt();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["newyork", "--ca-data", "%%%not-base64"],
            "--ca-data is not valid base64",
        ),
        (
            vec!["newyork", "--ca-data", &london_ca],
            "TLS handshake with",
        ),
        (
            vec!["newyork", "--api-server-url", "https://127.0.0.1:1"],
            "cannot reach the provider's API server at https://127.0.0.1:1",
        ),
        (
            vec!["newyork", "--api-server-url", "not a url"],
            "--api-server-url",
        ),
        (vec!["newyork", "--cluster-id", "london"], "own id"),
        (vec!["newyork", "--token", &expired], "--token expired at"),
        (
            vec!["newyork", "--token", "garbage"],
            "not a ServiceAccount token",
        ),
    ];
    for (overrides, expected) in cases {
        let mut flags = vec![
            ("--api-server-url", args.url.as_str()),
            ("--ca-data", args.ca.as_str()),
            ("--cluster-id", args.cluster_id.as_str()),
            ("--token", args.token.as_str()),
        ];
        let name = overrides[0];
        for pair in overrides[1..].chunks(2) {
            for f in flags.iter_mut() {
                if f.0 == pair[0] {
                    f.1 = pair[1];
                }
            }
        }
        let mut full = vec!["peer", "out-of-band", name, "--timeout", "20s"];
        for (k, v) in &flags {
            full.push(k);
            full.push(v);
        }
        let out = run_liqoctl(env, "london", &full);
        assert!(!out.status.success(), "{overrides:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{overrides:?}: {stderr}");
        assert!(!stderr.contains(&args.token), "the token is never printed");
        nothing_created(&london, &format!("{overrides:?}")).await;
    }

    // The printed command, run by bash against london.
    let bin_dir = liqoctl().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // `echo "$PEER" | bash`, as in the tutorial.
    let out = Command::new("bash")
        .arg("-c")
        .arg("echo \"$PEER\" | bash")
        .env("PEER", &command)
        .env("PATH", path)
        .env("KUBECONFIG", env.kubeconfig_path("london"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "bash: {}", text(&out));
    assert!(
        text(&out).contains("kubectl get foreignclusters"),
        "{}",
        text(&out)
    );
    assert_eq!(
        row(env, "london", "newyork")[..5],
        ["newyork", "Established", "None", "None", "Established"]
    );
    // The provider sees its consumer.
    eventually("newyork to show the incoming peering", WAIT, || async {
        let r = row(env, "newyork", "london");
        (r.len() >= 5 && r[..5] == ["london", "None", "Established", "None", "Established"])
            .then_some(())
    })
    .await;

    // Re-peering with a gateway's flags (what a provider running a gateway prints) pins that
    // gateway in the ForeignCluster; other values replace it; without the flags it is gone.
    let fcs = Api::<ForeignCluster>::all(london.clone());
    let gateway_fingerprint = "0123456789abcdef".repeat(4);
    // Given in upper case: liqoctl stores the canonical lowercase form.
    let given_fingerprint = gateway_fingerprint.to_uppercase();
    for (gateway, expected) in [
        (
            Some("10.97.0.50:7901"),
            Some(json!({"addressTranslation": "Gateway",
                "gateway": {"fingerprint": gateway_fingerprint, "endpoint": "10.97.0.50:7901"}})),
        ),
        (
            Some("[fd00::7]:31901"),
            Some(json!({"addressTranslation": "Gateway",
                "gateway": {"fingerprint": gateway_fingerprint, "endpoint": "[fd00::7]:31901"}})),
        ),
        (None, None),
    ] {
        let mut peer_args = vec![
            "peer",
            "out-of-band",
            "newyork",
            "--api-server-url",
            &args.url,
            "--ca-data",
            &args.ca,
            "--cluster-id",
            "newyork",
            "--token",
            &args.token,
        ];
        if let Some(endpoint) = gateway {
            peer_args.extend([
                "--gateway-fingerprint",
                &given_fingerprint,
                "--gateway-endpoint",
                endpoint,
            ]);
        }
        let out = run_liqoctl(env, "london", &peer_args);
        assert!(out.status.success(), "re-peer: {}", text(&out));
        let networking = fcs.get("newyork").await.unwrap().spec.networking;
        assert_eq!(
            networking.map(|n| serde_json::to_value(n).unwrap()),
            expected,
            "spec.networking after re-peering with {gateway:?}"
        );
    }

    // Duplicates: same name for another id, same id under another name.
    for (name, id, expected) in [
        ("newyork", "other", "already exists for cluster id newyork"),
        ("ny2", "newyork", "already peered as ForeignCluster newyork"),
    ] {
        let out = run_liqoctl(
            env,
            "london",
            &[
                "peer",
                "out-of-band",
                name,
                "--api-server-url",
                &args.url,
                "--ca-data",
                &args.ca,
                "--cluster-id",
                id,
                "--token",
                &args.token,
            ],
        );
        assert!(!out.status.success());
        assert!(text(&out).contains(expected), "{}", text(&out));
    }
    assert!(
        Api::<ForeignCluster>::all(london.clone())
            .get_opt("ny2")
            .await
            .unwrap()
            .is_none()
    );

    // The claimed identity's tenant namespace on newyork.
    let tenant_ns = {
        let sas = Api::<ServiceAccount>::all(newyork.clone())
            .list(
                &ListParams::default()
                    .fields(&format!("metadata.name={}", wire::CONSUMER_SERVICE_ACCOUNT)),
            )
            .await
            .unwrap();
        let review = Api::<Lease>::all(newyork.clone())
            .list(&ListParams::default().labels("liqo.io/peering-lease=true"))
            .await
            .unwrap();
        let claimed = review
            .items
            .iter()
            .find(|l| l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some("london"))
            .expect("a Lease claimed by london");
        assert!(sas.items.len() >= 2, "one identity per generated command");
        claimed.namespace().unwrap()
    };
    // london declared where its endpoints are (its node's pod range, at the claim); newyork
    // recorded it, and follows london's ForeignCluster when it switches to CidrRemap and back.
    let recorded = |expected: &'static str| {
        let namespaces = Api::<Namespace>::all(newyork.clone());
        let tenant_ns = tenant_ns.clone();
        async move {
            eventually(
                &format!("newyork to record london's endpoint ranges {expected}"),
                WAIT,
                || async {
                    let ns = namespaces.get(&tenant_ns).await.ok()?;
                    (ns.annotations()
                        .get(wire::RECORDED_RANGES_ANNOTATION)
                        .map(String::as_str)
                        == Some(expected))
                    .then_some(())
                },
            )
            .await
        }
    };
    recorded("10.200.0.0/16").await;
    let out = run_liqoctl(env, "newyork", &["info", "-o", "json"]);
    assert!(out.status.success(), "info: {}", text(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let london_entry = info["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["consumerID"] == "london")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        london_entry["endpointRanges"],
        json!(["10.200.0.0/16"]),
        "liqoctl info -o json on newyork: {london_entry}"
    );
    let remap = json!({"spec": {"networking": {"addressTranslation": "CidrRemap",
        "remapping": [{"localCIDR": "10.200.0.0/16", "remoteCIDR": "10.70.0.0/16"}]}}});
    fcs.patch("newyork", &PatchParams::default(), &Patch::Merge(&remap))
        .await
        .unwrap();
    recorded("10.70.0.0/16").await;
    fcs.patch(
        "newyork",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"networking": null}})),
    )
    .await
    .unwrap();
    recorded("10.200.0.0/16").await;

    // No cluster-scoped object is made for a peering identity.
    assert!(
        Api::<ClusterRoleBinding>::all(newyork.clone())
            .get_opt(&tenant_ns)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        Api::<ValidatingAdmissionPolicyBinding>::all(newyork.clone())
            .get_opt(&tenant_ns)
            .await
            .unwrap()
            .is_none()
    );

    // Neither the unused identity nor the claimed one may touch namespaces: twin namespaces are
    // asked of the provider's host.
    let unclaimed = token_client(&unused).await;
    forbidden(
        Api::<Namespace>::all(unclaimed)
            .create(
                &PostParams::default(),
                &labelled_ns("unclaimed-x", "london", "newyork"),
            )
            .await,
        "cannot create resource \"namespaces\"",
        "namespace create before the claim",
    );

    // With the real token: least privilege.
    let peer = token_client(&args).await;
    let forbidden_read = |r: kube::Result<_>, what: &str| match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403, got {:?}", other.map(|_: ()| ())),
    };
    forbidden_read(
        Api::<Secret>::namespaced(peer.clone(), "liqo")
            .list(&ListParams::default())
            .await
            .map(drop),
        "list secrets",
    );
    forbidden_read(
        Api::<Secret>::all(peer.clone())
            .list(&ListParams::default())
            .await
            .map(drop),
        "list secrets everywhere",
    );
    // The reflected kinds are readable only inside the consumer's own twin namespaces.
    forbidden_read(
        Api::<Service>::namespaced(peer.clone(), "default")
            .list(&ListParams::default())
            .await
            .map(drop),
        "list services in default",
    );
    forbidden_read(
        Api::<Service>::all(peer.clone())
            .list(&ListParams::default())
            .await
            .map(drop),
        "list services in every namespace",
    );
    forbidden_read(
        Api::<Pod>::namespaced(peer.clone(), "kube-system")
            .list(&ListParams::default())
            .await
            .map(drop),
        "list pods in kube-system",
    );
    let namespaces: Api<Namespace> = Api::all(peer.clone());
    forbidden(
        namespaces
            .create(
                &PostParams::default(),
                &labelled_ns("evil-origin", "london", "newyork"),
            )
            .await,
        "cannot create resource \"namespaces\"",
        "namespace create",
    );
    forbidden(
        namespaces
            .delete("kube-public", &DeleteParams::default())
            .await,
        "cannot delete resource \"namespaces\"",
        "namespace delete",
    );
    // A twin namespace, asked through the NamespaceMap: the provider reports it Accepted only
    // once the identity may write in it, so the first write there succeeds.
    let twin = "peering-twin-test";
    let accepted = eventually("newyork to accept the twin namespace", WAIT, || async {
        let answer = twin_requests::request_twin(&peer, &tenant_ns, "peering-twin-local", twin)
            .await
            .unwrap();
        answer.filter(|a| a.phase == liqo_host::api::namespace_map::MappingPhase::Accepted)
    })
    .await;
    assert_eq!(accepted.remote_namespace, twin);
    let twin_object = Api::<Namespace>::all(newyork.clone())
        .get(twin)
        .await
        .unwrap();
    assert_eq!(
        twin_object
            .labels()
            .get("offloading.liqo.io/origin")
            .map(String::as_str),
        Some("london")
    );
    assert_eq!(twin_object.labels().get("liqo.io/tenant"), Some(&tenant_ns));
    let own = service(
        "own",
        json!({"offloading.liqo.io/origin": "london", "offloading.liqo.io/destination": "newyork"}),
    );
    let peer_services = Api::<Service>::namespaced(peer.clone(), twin);
    peer_services
        .create(&PostParams::default(), &own)
        .await
        .expect("the first write in an Accepted twin namespace succeeds");
    // A Service the admin made in the twin namespace, without labels: not the peering's.
    Api::<Service>::namespaced(newyork.clone(), twin)
        .create(&PostParams::default(), &service("admins", json!({})))
        .await
        .unwrap();
    forbidden(
        Api::<Service>::namespaced(peer.clone(), twin)
            .delete("admins", &DeleteParams::default())
            .await,
        "may only change or delete objects it created",
        "delete a Service it did not create",
    );
    // Another consumer's reflected copy in the same namespace (labelled origin=paris): neither
    // changed nor deleted.
    Api::<Service>::namespaced(newyork.clone(), twin)
        .create(
            &PostParams::default(),
            &service(
                "paris-copy",
                json!({"offloading.liqo.io/origin": "paris", "offloading.liqo.io/destination": "newyork"}),
            ),
        )
        .await
        .unwrap();
    forbidden(
        Api::<Service>::namespaced(peer.clone(), twin)
            .patch(
                "paris-copy",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"ports": [{"port": 81, "protocol": "TCP"}]}})),
            )
            .await,
        "a peering may only write objects labelled offloading.liqo.io/origin=london",
        "change another consumer's copy",
    );
    forbidden(
        Api::<Service>::namespaced(peer.clone(), twin)
            .patch(
                "paris-copy",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"labels": {"offloading.liqo.io/origin": "london"}}}),
                ),
            )
            .await,
        "may only change or delete objects it created",
        "take over another consumer's copy by relabelling it",
    );
    forbidden(
        Api::<Service>::namespaced(peer.clone(), twin)
            .delete("paris-copy", &DeleteParams::default())
            .await,
        "may only change or delete objects it created",
        "delete another consumer's copy",
    );
    // No RBAC escalation: it can neither bind itself a role (even in its own twin namespace)
    // nor create roles.
    let escalate = |kind: &str, namespaced: bool| {
        let mut object = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
            "metadata": {"name": "peering-escalation"},
        });
        if kind.ends_with("Binding") {
            object["roleRef"] = json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"});
            object["subjects"] = json!([{"kind": "Group", "name": "system:authenticated", "apiGroup": "rbac.authorization.k8s.io"}]);
        } else {
            object["rules"] = json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]);
        }
        if namespaced {
            object["metadata"]["namespace"] = json!(twin);
        }
        object
    };
    for (kind, plural, namespaced) in [
        ("RoleBinding", "rolebindings", true),
        ("Role", "roles", true),
        ("ClusterRoleBinding", "clusterrolebindings", false),
        ("ClusterRole", "clusterroles", false),
    ] {
        let resource = kube::discovery::ApiResource {
            group: "rbac.authorization.k8s.io".into(),
            version: "v1".into(),
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        let api: Api<kube::api::DynamicObject> = if namespaced {
            Api::namespaced_with(peer.clone(), twin, &resource)
        } else {
            Api::all_with(peer.clone(), &resource)
        };
        let object: kube::api::DynamicObject =
            serde_json::from_value(escalate(kind, namespaced)).unwrap();
        forbidden(
            api.create(&PostParams::default(), &object).await,
            &format!("cannot create resource \"{plural}\""),
            &format!("create a {kind}"),
        );
    }
    // Not in a namespace the peering did not create, even with the right labels: RBAC grants
    // the reflected kinds only inside its twin namespaces (the admission policy would refuse
    // it too).
    forbidden(
        Api::<Service>::namespaced(peer.clone(), "default")
            .create(&PostParams::default(), &own)
            .await,
        "cannot create resource \"services\"",
        "Service in default",
    );
    // Its Lease's consumer is fixed, and its tokens are short-lived.
    forbidden(
        Api::<Lease>::namespaced(peer.clone(), &tenant_ns)
            .patch(
                wire::LEASE_NAME,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"holderIdentity": "paris"}})),
            )
            .await,
        "already claimed",
        "change the Lease's consumer",
    );
    // Its Lease's labels and annotations are the provider's, but for its gateway announcement
    // (two keys, short values).
    let leases = Api::<Lease>::namespaced(peer.clone(), &tenant_ns);
    let annotate = |annotations: serde_json::Value| {
        let leases = leases.clone();
        async move {
            leases
                .patch(
                    wire::LEASE_NAME,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
                )
                .await
        }
    };
    for (annotations, what) in [
        (json!({"example.com/note": "x"}), "add an annotation"),
        (
            json!({wire::TOKEN_EXPIRATION_ANNOTATION: null}),
            "remove the provider's annotation",
        ),
        (
            json!({"gateway.liqo.io/other": "x"}),
            "add another gateway.liqo.io/ key",
        ),
        (
            json!({"gateway.liqo.io/address": "1".repeat(129)}),
            "announce a 129-character address",
        ),
    ] {
        forbidden(annotate(annotations).await, "belong to the provider", what);
    }
    forbidden(
        leases
            .patch(
                wire::LEASE_NAME,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"example.com/x": "y"}}})),
            )
            .await,
        "belong to the provider",
        "label its Lease",
    );
    let announced = annotate(json!({"gateway.liqo.io/address": "172.30.0.10:7900"}))
        .await
        .expect("the consumer may announce its gateway");
    assert_eq!(
        announced
            .annotations()
            .get("gateway.liqo.io/address")
            .map(String::as_str),
        Some("172.30.0.10:7900")
    );
    annotate(json!({"gateway.liqo.io/address": null}))
        .await
        .expect("the consumer may withdraw its gateway");
    let long_token: TokenRequest = serde_json::from_value(
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 864000}}),
    )
    .unwrap();
    forbidden(
        Api::<ServiceAccount>::namespaced(peer.clone(), &tenant_ns)
            .create_subresource::<_, TokenRequest>(
                "token",
                wire::CONSUMER_SERVICE_ACCOUNT,
                &PostParams::default(),
                &long_token,
            )
            .await,
        "at most 48 hours",
        "a 10-day token",
    );
    Api::<Service>::namespaced(peer.clone(), twin)
        .delete("own", &DeleteParams::default())
        .await
        .unwrap();
    // Withdrawn from the NamespaceMap: the provider deletes the twin namespace.
    eventually("newyork to delete the withdrawn twin", WAIT, || async {
        let reported = twin_requests::withdraw_twin(&peer, &tenant_ns, "peering-twin-local")
            .await
            .unwrap();
        let gone = Api::<Namespace>::all(newyork.clone())
            .get_opt(twin)
            .await
            .unwrap()
            .is_none();
        (!reported && gone).then_some(())
    })
    .await;

    // Reflection works through the scoped identity.
    let ns = env.unique_namespace("peered-demo").await;
    Api::<Service>::namespaced(london.clone(), &ns)
        .create(&PostParams::default(), &service("flights", json!({})))
        .await
        .unwrap();
    let nso: NamespaceOffloading = serde_json::from_value(json!({
        "apiVersion": "offloading.liqo.io/v1beta1", "kind": "NamespaceOffloading",
        "metadata": {"name": "offloading"},
        "spec": {"namespaceMappingStrategy": "EnforceSameName", "podOffloadingStrategy": "Local"},
    }))
    .unwrap();
    Api::<NamespaceOffloading>::namespaced(london.clone(), &ns)
        .create(&PostParams::default(), &nso)
        .await
        .unwrap();
    let remote = Api::<Service>::namespaced(newyork.clone(), &ns);
    eventually(
        "flights reflected to newyork with the scoped token",
        WAIT,
        || async { remote.get_opt("flights").await.ok().flatten() },
    )
    .await;

    // Unpeer refuses while a namespace is offloaded to newyork...
    let out = run_liqoctl(env, "london", &["unpeer", "out-of-band", "newyork"]);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains(&format!("liqoctl unoffload namespace {ns}")),
        "{msg}"
    );
    assert!(
        Api::<ForeignCluster>::all(london.clone())
            .get_opt("newyork")
            .await
            .unwrap()
            .is_some()
    );
    // ...and with --force removes the peering on both sides.
    let out = run_liqoctl(
        env,
        "london",
        &["unpeer", "out-of-band", "newyork", "--force"],
    );
    assert!(out.status.success(), "{}", text(&out));
    nothing_created(&london, "after unpeer").await;
    eventually("newyork to revoke the identity", WAIT, || async {
        let ns_gone = Api::<Namespace>::all(newyork.clone())
            .get_opt(&tenant_ns)
            .await
            .ok()?
            .is_none_or(|n| n.metadata.deletion_timestamp.is_some());
        let twin_gone = Api::<Namespace>::all(newyork.clone())
            .get_opt(&ns)
            .await
            .ok()?
            .is_none_or(|n| n.metadata.deletion_timestamp.is_some());
        let fc_gone = Api::<ForeignCluster>::all(newyork.clone())
            .get_opt("london")
            .await
            .ok()?
            .is_none();
        (ns_gone && twin_gone && fc_gone).then_some(())
    })
    .await;
    // The token is dead: at once without permissions (403), and once the API server's token
    // cache (10 s) expires, not even authenticated (401).
    let dead = Api::<Namespace>::all(peer.clone());
    eventually("the revoked token to be rejected", WAIT, || async {
        match dead.get_opt(&ns).await {
            Err(kube::Error::Api(s)) if s.code == 401 => Some(()),
            Err(kube::Error::Api(s)) if s.code == 403 => None,
            other => panic!("the revoked token still works: {other:?}"),
        }
    })
    .await;
    let out = run_liqoctl(env, "london", &["unpeer", "out-of-band", "newyork"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("not found"), "{}", text(&out));
}
