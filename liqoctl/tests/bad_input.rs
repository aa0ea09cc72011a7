//! Bad input, as one table: every row is one bad input given to the real binaries (liqoctl,
//! kubectl) against real control planes, london peered with newyork by the tutorial's commands
//! and both hosts running as processes.
//!
//! A refusal row asserts that the command fails with exactly one error line that names what is
//! wrong (never a panic, never the peering token), and that nothing changed in either cluster
//! (a snapshot of the objects liqo owns or reflects, and of the ClusterRoles accepting kinds
//! from consumers, taken before and after). An accept row is an input at a limit that must
//! still work (names of 63 characters, unicode annotation values, an object at the API server's
//! annotation size limit).
//!
//! The table is the single place bad inputs are counted: run with `--nocapture` to see the
//! count and one line per row; docs/reliability.md quotes the count.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Service};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{
    ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Client};
use serde_json::{Value, json};
mod common;

use common::{
    PeerArgs, expired_jwt, free_local_addr, parse_peer_command, run_liqoctl, scrape_metrics, sh,
    sh_ok, start_host, start_host_with,
};
use testsupport::{TestEnv, eventually, output_text as text};

const WAIT: Duration = Duration::from_secs(60);

/// The offloaded namespace the rows work in (london, and its twin in newyork).
const NS: &str = "bad-input";
/// A namespace of london, not offloaded, for NamespaceOffloadings applied with kubectl.
const SPARE_NS: &str = "bad-input-spare";
/// The Service that must keep reflecting whatever the other rows do.
const ANCHOR: &str = "anchor";
/// The label of the ClusterRoles that accept a kind from consumers (`liqoctl plugin accept`).
const AGGREGATE_TO_PEERING_LABEL: &str = "liqo.io/aggregate-to-peering";

/// What a row runs.
enum Act {
    /// `liqoctl ARGS --kubeconfig <cluster>`.
    Liqoctl(&'static str, Vec<String>),
    /// `liqoctl ARGS`, with no kubeconfig added (the rows give their own).
    LiqoctlBare(Vec<String>),
    /// `kubectl --kubeconfig <cluster> ARGS`.
    Kubectl(&'static str, Vec<String>),
    /// An input at a limit that must be accepted; checked by [`accept`].
    Accept(Limit),
}

/// The inputs at a limit that must work.
#[derive(Clone, Copy, Debug)]
enum Limit {
    /// A Service whose annotations are exactly at the API server's 256 KiB total.
    AnnotationTotalSize,
    /// A Service with a 63-character name.
    LongServiceName,
    /// A 63-character namespace offloaded with EnforceSameName.
    LongNamespace,
    /// Annotation values in several scripts, emoji and combining characters.
    UnicodeAnnotations,
    /// `plugin accept v1/Secret --allow-secrets` on the provider: accepted with a warning, then
    /// revoked.
    AllowSecrets,
}

struct Row {
    name: &'static str,
    act: Act,
    /// Substrings the error must contain (the object or flag, and the fix where there is one).
    expect: Vec<String>,
    /// Rows of `liqoctl peer` run before london is peered (once peered, a second peering with
    /// newyork's id is refused before any of the checks these rows are about).
    before_peering: bool,
}

fn refuse(name: &'static str, act: Act, expect: &[&str]) -> Row {
    Row {
        name,
        act,
        expect: expect.iter().map(|s| s.to_string()).collect(),
        before_peering: false,
    }
}

fn liqoctl(cluster: &'static str, args: &[&str]) -> Act {
    Act::Liqoctl(cluster, args.iter().map(|s| s.to_string()).collect())
}

fn bare(args: &[&str]) -> Act {
    Act::LiqoctlBare(args.iter().map(|s| s.to_string()).collect())
}

fn kubectl(cluster: &'static str, args: &[&str]) -> Act {
    Act::Kubectl(cluster, args.iter().map(|s| s.to_string()).collect())
}

fn accept(name: &'static str, limit: Limit) -> Row {
    Row {
        name,
        act: Act::Accept(limit),
        expect: vec![],
        before_peering: false,
    }
}

/// The test-only guest that misbehaves on request, built by liqo-host's build script next to
/// the built-in plugins.
fn misbehaving_wasm() -> PathBuf {
    let dir = std::env::var_os("LIQO_PLUGIN_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../wasm-plugins"));
    let path = dir.join("wasm32-wasip2/plugin/liqo_test_plugin_misbehaving.wasm");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p liqo-host` (its build script builds it)",
        path.display()
    );
    path
}

/// The built-in Service plugin with every `liqo:reflection/...@0.1.0` name rewritten to
/// `@0.9.0`: a valid component built against another version of the WIT package.
fn wrong_wit_version(bytes: &[u8]) -> Vec<u8> {
    let from = format!("@{}", liqo_host::plugin::WIT_VERSION);
    assert_eq!(from, "@0.1.0", "update the rewrite for the new WIT version");
    let mut out = bytes.to_vec();
    let package = b"liqo:reflection/";
    let mut replaced = 0;
    let mut i = 0;
    while let Some(p) = find(&out[i..], package) {
        let start = i + p + package.len();
        let end = start + out[start..].iter().take_while(|b| **b != b'@').count();
        if out[end..].starts_with(from.as_bytes()) {
            out[end..end + from.len()].copy_from_slice(b"@0.9.0");
            replaced += 1;
        }
        i = start;
    }
    assert!(
        replaced > 0,
        "no versioned name found in the Service plugin"
    );
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The objects a bad input could have changed, in both clusters: identity, uid, and the
/// user-visible content (spec, data, labels, annotations; never status or resourceVersion,
/// which the hosts update on their own).
async fn snapshot(ctx: &Ctx<'_>) -> BTreeMap<String, String> {
    let mut all = BTreeMap::new();
    for (cluster, client) in [("london", &ctx.london), ("newyork", &ctx.newyork)] {
        for (group, version, kind, plural, namespace, labels) in [
            (
                "core.liqo.io",
                "v1beta1",
                "ForeignCluster",
                "foreignclusters",
                None,
                None,
            ),
            (
                "offloading.liqo.io",
                "v1beta1",
                "NamespaceOffloading",
                "namespaceoffloadings",
                None,
                None,
            ),
            (
                "plugins.liqo.io",
                "v1alpha1",
                "ReflectionPlugin",
                "reflectionplugins",
                None,
                None,
            ),
            ("", "v1", "Namespace", "namespaces", None, None),
            ("", "v1", "Service", "services", None, None),
            ("", "v1", "ServiceAccount", "serviceaccounts", None, None),
            ("", "v1", "Secret", "secrets", Some("liqo"), None),
            ("", "v1", "ConfigMap", "configmaps", Some("liqo"), None),
            // The kinds the cluster accepts from consumers (`liqoctl plugin accept`).
            (
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRole",
                "clusterroles",
                None,
                Some(AGGREGATE_TO_PEERING_LABEL),
            ),
        ] {
            let gvk = GroupVersionKind::gvk(group, version, kind);
            let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
            let api: Api<DynamicObject> = match namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            let params = match labels {
                Some(selector) => ListParams::default().labels(selector),
                None => ListParams::default(),
            };
            let list = api
                .list(&params)
                .await
                .unwrap_or_else(|e| panic!("listing {plural} in {cluster}: {e}"));
            for item in list.items {
                let meta = &item.metadata;
                let key = format!(
                    "{cluster}/{plural}/{}/{}",
                    meta.namespace.as_deref().unwrap_or(""),
                    meta.name.as_deref().unwrap_or("")
                );
                let content = json!({
                    "uid": meta.uid,
                    "labels": meta.labels,
                    "annotations": meta.annotations,
                    "deleting": meta.deletion_timestamp.is_some(),
                    "spec": item.data.get("spec"),
                    "data": item.data.get("data"),
                    "rules": item.data.get("rules"),
                });
                all.insert(key, content.to_string());
            }
        }
    }
    all
}

fn differences(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in before {
        match after.get(key) {
            None => out.push(format!("removed: {key}")),
            Some(v) if v != value => out.push(format!("changed: {key}: {value} -> {v}")),
            Some(_) => {}
        }
    }
    for key in after.keys().filter(|k| !before.contains_key(*k)) {
        out.push(format!("added: {key}"));
    }
    out
}

/// The lines of `stderr` that state an error. liqoctl prints `Error: ...` once (anyhow's
/// context chain stays on that line or is indented below it). kubectl prints the API server's
/// refusal (`The Service "x" is invalid: ...`, `Error from server ...`) or its own `error: ...`,
/// possibly after `Warning:` lines, which are not errors, and followed by its causes as `* `
/// bullets (the API server adds "some validation rules were not checked" when the schema
/// already failed: detail of the same refusal).
fn error_lines(stderr: &str, kubectl: bool) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            if kubectl {
                !l.trim().is_empty() && !l.starts_with("Warning:") && !l.starts_with("* ")
            } else {
                l.starts_with("Error:")
            }
        })
        .collect()
}

fn run_kubectl(env: &TestEnv, cluster: &str, args: &[String]) -> Output {
    Command::new(env.kubectl_bin())
        .arg("--kubeconfig")
        .arg(env.kubeconfig_path(cluster))
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("running kubectl")
}

struct Ctx<'a> {
    env: &'a TestEnv,
    london: Client,
    newyork: Client,
    metrics: std::net::SocketAddr,
    secrets: Vec<String>,
}

#[tokio::test]
async fn bad_input_table() {
    let started = Instant::now();
    let env = TestEnv::shared();
    let london = env.client("london").await;
    let newyork = env.client("newyork").await;

    // As in the tutorial: liqo installed in both clusters, hosts as processes.
    sh_ok(env, "liqoctl install --cluster-id london --skip-deployment");
    sh_ok(
        env,
        "liqoctl install --cluster-id newyork --skip-deployment --kubeconfig \"$KUBECONFIG_NEWYORK\"",
    );
    let metrics = free_local_addr();
    let _london_host = start_host_with(env, "london", &metrics.to_string(), &[]);
    let _newyork_host = start_host(env, "newyork");
    let out = run_liqoctl(
        env,
        "newyork",
        &["generate", "peer-command", "--only-command"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let peer = parse_peer_command(&String::from_utf8_lossy(&out.stdout));

    // Secrets no output may ever contain: the peering token, and london's own credentials.
    let mut secrets = vec![peer.token.clone()];
    let kubeconfig: Value =
        serde_yaml_ng::from_slice(&std::fs::read(env.kubeconfig_path("london")).unwrap()).unwrap();
    for user in kubeconfig["users"].as_array().into_iter().flatten() {
        for field in ["token", "client-key-data"] {
            if let Some(v) = user["user"][field].as_str() {
                secrets.push(v.to_string());
            }
        }
    }

    let dir = env.dir().join("bad-input");
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, bytes: &[u8]| -> String {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    let bad_yaml = file(
        "bad.yaml",
        b"apiVersion: v1\nkind: Service\nmetadata: {name: s\n  labels: [\n",
    );
    let bad_json = file(
        "bad.json",
        b"{\"apiVersion\": \"v1\", \"kind\": \"Service\",\n",
    );
    let not_object = file("list.yaml", b"- 1\n- 2\n");
    let service_yaml = file(
        "service.yaml",
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: {NS}}}\nspec: {{ports: [{{port: 80}}]}}\n"
        )
        .as_bytes(),
    );
    let configmap_yaml = file(
        "configmap.yaml",
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: {NS}}}\ndata: {{a: b}}\n")
            .as_bytes(),
    );
    let service_wasm = file("service.wasm", liqo_host::plugin::builtin::SERVICE);
    let namespace_wasm = file("namespace.wasm", liqo_host::plugin::builtin::NAMESPACE);
    let junk_wasm = file("junk.wasm", b"hello, I am not WebAssembly\n");
    let core_wasm = file("core.wasm", b"\0asm\x01\0\0\0");
    let wrong_wit = file(
        "wrong-wit.wasm",
        &wrong_wit_version(liqo_host::plugin::builtin::SERVICE),
    );
    let misbehaving = misbehaving_wasm().display().to_string();
    let london_ca = kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .unwrap()
        .to_string();
    let expired = expired_jwt();
    let long63 = format!("ns-{}", "a".repeat(60));
    let long64 = format!("ns-{}", "a".repeat(61));
    let nso = |file_name: &str, name: &str, ns: &str, spec: Value| -> String {
        file(
            &format!("nso-{file_name}.yaml"),
            json!({
                "apiVersion": "offloading.liqo.io/v1beta1", "kind": "NamespaceOffloading",
                "metadata": {"name": name, "namespace": ns}, "spec": spec,
            })
            .to_string()
            .as_bytes(),
        )
    };
    let unknown_strategy = nso(
        "unknown-strategy",
        "offloading",
        SPARE_NS,
        json!({"namespaceMappingStrategy": "SameNameOrElse", "podOffloadingStrategy": "Local"}),
    );
    let unknown_pod_strategy = nso(
        "unknown-pod-strategy",
        "offloading",
        SPARE_NS,
        json!({"namespaceMappingStrategy": "DefaultName", "podOffloadingStrategy": "Everywhere"}),
    );
    let wrong_name = nso(
        "wrong-name",
        "second",
        SPARE_NS,
        json!({"namespaceMappingStrategy": "DefaultName", "podOffloadingStrategy": "Local"}),
    );
    let long_remote = nso(
        "long-remote",
        "offloading",
        SPARE_NS,
        json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": long64, "podOffloadingStrategy": "Local"}),
    );
    let selected_without_name = nso(
        "selected-without-name",
        "offloading",
        SPARE_NS,
        json!({"namespaceMappingStrategy": "SelectedName", "podOffloadingStrategy": "Local"}),
    );
    let changed_strategy = nso(
        "changed-strategy",
        "offloading",
        NS,
        json!({"namespaceMappingStrategy": "DefaultName", "podOffloadingStrategy": "Local"}),
    );
    let service_with = |name: &str, labels: Value, annotations: Value| -> String {
        file(
            &format!("svc-{name}.json"),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": NS, "labels": labels, "annotations": annotations},
                "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}})
            .to_string()
            .as_bytes(),
        )
    };
    let unicode_label = service_with("unicode-label", json!({"city": "zürich"}), json!({}));
    let unicode_label_key = service_with("unicode-key", json!({"città": "rome"}), json!({}));
    let over_annotations = service_with(
        "over-annotations",
        json!({}),
        json!({"test.liqo.io/big": "x".repeat(256 * 1024)}),
    );
    let big_configmap = file(
        "big-configmap.json",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "big", "namespace": NS},
            "data": {"blob": "x".repeat(1536 * 1024)}})
        .to_string()
        .as_bytes(),
    );
    let long_service_name = service_with(&"s".repeat(64), json!({}), json!({}));
    let foreign_cluster = |name: &str, networking: Value| -> String {
        file(
            &format!("fc-{name}.json"),
            json!({"apiVersion": "core.liqo.io/v1beta1", "kind": "ForeignCluster",
                "metadata": {"name": name},
                "spec": {"clusterID": name, "networking": networking}})
            .to_string()
            .as_bytes(),
        )
    };
    let gateway_without_gateway =
        foreign_cluster("gateway-missing", json!({"addressTranslation": "Gateway"}));
    let gateway_bad_fingerprint = foreign_cluster(
        "gateway-bad-fingerprint",
        json!({"addressTranslation": "Gateway",
            "gateway": {"fingerprint": "z".repeat(64), "endpoint": "10.96.0.50:7901"}}),
    );

    // Peer command rows: the flags of the real command, one of them wrong.
    let peer_row = |name: &'static str, flag: &str, value: &str, expect: &[&str]| -> Row {
        let mut args = vec![
            "peer".to_string(),
            "out-of-band".into(),
            "newyork".into(),
            "--timeout".into(),
            "20s".into(),
        ];
        for (f, v) in [
            ("--api-server-url", peer.url.as_str()),
            ("--ca-data", peer.ca.as_str()),
            ("--cluster-id", "newyork"),
            ("--token", peer.token.as_str()),
        ] {
            args.push(f.into());
            args.push(if f == flag { value.into() } else { v.into() });
        }
        let mut row = refuse(name, Act::Liqoctl("london", args), expect);
        row.before_peering = true;
        row
    };
    // Gateway rows: the real command plus the gateway flags, one of them wrong or missing.
    let fingerprint = "0123456789abcdef".repeat(4);
    let gateway_row = |name: &'static str, gateway_args: &[&str], expect: &[&str]| -> Row {
        let mut row = peer_row(name, "", "", expect);
        if let Act::Liqoctl(_, args) = &mut row.act {
            args.extend(gateway_args.iter().map(|s| s.to_string()));
        }
        row
    };

    let mw = misbehaving.as_str();
    let rows: Vec<Row> = vec![
        // --- peer command
        peer_row(
            "peer: --ca-data not base64",
            "--ca-data",
            "%%%not-base64",
            &["--ca-data is not valid base64"],
        ),
        peer_row(
            "peer: wrong CA (london's)",
            "--ca-data",
            &london_ca,
            &["TLS handshake with", "--ca-data"],
        ),
        peer_row(
            "peer: unreachable URL",
            "--api-server-url",
            "https://127.0.0.1:1",
            &["cannot reach the provider's API server at https://127.0.0.1:1"],
        ),
        peer_row(
            "peer: malformed URL",
            "--api-server-url",
            "not a url",
            &["--api-server-url"],
        ),
        peer_row(
            "peer: own cluster id",
            "--cluster-id",
            "london",
            &["own id"],
        ),
        peer_row(
            "peer: expired token",
            "--token",
            &expired,
            &["--token expired at", "generate peer-command"],
        ),
        peer_row(
            "peer: token not a JWT",
            "--token",
            "garbage",
            &["not a ServiceAccount token"],
        ),
        gateway_row(
            "peer: --gateway-fingerprint not a fingerprint",
            &[
                "--gateway-fingerprint",
                "sha1:0123456789",
                "--gateway-endpoint",
                "10.96.0.50:7901",
            ],
            &[
                "--gateway-fingerprint \"sha1:0123456789\" is not a SHA-256 fingerprint",
                "64 hex digits",
                "generate peer-command",
            ],
        ),
        gateway_row(
            "peer: --gateway-fingerprint without --gateway-endpoint",
            &["--gateway-fingerprint", &fingerprint],
            &[
                "--gateway-fingerprint was given without --gateway-endpoint",
                "pass both",
            ],
        ),
        gateway_row(
            "peer: --gateway-endpoint a host name",
            &[
                "--gateway-fingerprint",
                &fingerprint,
                "--gateway-endpoint",
                "gateway.newyork:7901",
            ],
            &[
                "--gateway-endpoint \"gateway.newyork:7901\"",
                "host names are not accepted",
                "IP:PORT",
            ],
        ),
        refuse(
            "generate peer-command: --gateway-endpoint without a port",
            liqoctl(
                "newyork",
                &[
                    "generate",
                    "peer-command",
                    "--gateway-endpoint",
                    "10.96.0.50",
                ],
            ),
            &["--gateway-endpoint \"10.96.0.50\"", "IP:PORT"],
        ),
        // --- malformed files, to every command that reads one
        refuse(
            "--kubeconfig malformed YAML (info)",
            bare(&["info", "--kubeconfig", &bad_yaml]),
            &["reading kubeconfig", &bad_yaml, "line 4"],
        ),
        refuse(
            "--kubeconfig malformed JSON (offload)",
            bare(&["offload", "namespace", NS, "--kubeconfig", &bad_json]),
            &["reading kubeconfig", &bad_json],
        ),
        refuse(
            "plugin test -i malformed YAML",
            liqoctl(
                "london",
                &["plugin", "test", &service_wasm, "-i", &bad_yaml],
            ),
            &[&bad_yaml, "line 4"],
        ),
        refuse(
            "plugin test -i malformed JSON",
            liqoctl(
                "london",
                &["plugin", "test", &service_wasm, "-i", &bad_json],
            ),
            &[&bad_json, "invalid JSON at line 2"],
        ),
        refuse(
            "plugin test -i not an object",
            liqoctl(
                "london",
                &["plugin", "test", &service_wasm, "-i", &not_object],
            ),
            &[&not_object, "document 1", "not a Kubernetes object"],
        ),
        refuse(
            "plugin test -i missing file",
            liqoctl(
                "london",
                &[
                    "plugin",
                    "test",
                    &service_wasm,
                    "-i",
                    "/nonexistent/in.yaml",
                ],
            ),
            &["/nonexistent/in.yaml", "No such file"],
        ),
        refuse(
            "plugin test --objects malformed",
            liqoctl(
                "london",
                &[
                    "plugin",
                    "test",
                    &service_wasm,
                    "-i",
                    &service_yaml,
                    "--objects",
                    &bad_yaml,
                ],
            ),
            &[&bad_yaml, "line 4"],
        ),
        refuse(
            "plugin test --expect malformed",
            liqoctl(
                "london",
                &[
                    "plugin",
                    "test",
                    &service_wasm,
                    "-i",
                    &service_yaml,
                    "--expect",
                    &bad_json,
                ],
            ),
            &[&bad_json, "invalid JSON at line 2"],
        ),
        refuse(
            "plugin test --config malformed",
            liqoctl(
                "london",
                &[
                    "plugin",
                    "test",
                    &service_wasm,
                    "-i",
                    &service_yaml,
                    "--config",
                    &bad_yaml,
                ],
            ),
            &[&bad_yaml, "line 4"],
        ),
        refuse(
            "plugin test --config-inline malformed",
            liqoctl(
                "london",
                &[
                    "plugin",
                    "test",
                    &service_wasm,
                    "-i",
                    &service_yaml,
                    "--config-inline",
                    "{mode",
                ],
            ),
            &["--config-inline", "not valid JSON"],
        ),
        refuse(
            "plugin install --config malformed",
            liqoctl(
                "london",
                &[
                    "plugin",
                    "install",
                    &service_wasm,
                    "--name",
                    "bad-config",
                    "--config",
                    &bad_json,
                ],
            ),
            &[&bad_json, "invalid JSON at line 2"],
        ),
        refuse(
            "plugin install --config-inline malformed",
            liqoctl(
                "london",
                &[
                    "plugin",
                    "install",
                    &service_wasm,
                    "--name",
                    "bad-config",
                    "--config-inline",
                    "[1,",
                ],
            ),
            &["--config-inline", "not valid JSON"],
        ),
        refuse(
            "plugin diff --config malformed",
            liqoctl(
                "london",
                &[
                    "plugin",
                    "diff",
                    &service_wasm,
                    "--peer",
                    "newyork",
                    "-n",
                    NS,
                    "--config",
                    &bad_yaml,
                ],
            ),
            &[&bad_yaml, "line 4"],
        ),
        // --- plugins that are not what they claim
        refuse(
            "plugin test: not wasm",
            liqoctl(
                "london",
                &["plugin", "test", &junk_wasm, "-i", &service_yaml],
            ),
            &["not a WebAssembly component", "wasm32-wasip2"],
        ),
        refuse(
            "plugin test: core module, not a component",
            liqoctl(
                "london",
                &["plugin", "test", &core_wasm, "-i", &service_yaml],
            ),
            &["not a WebAssembly component", "wasm32-wasip2"],
        ),
        refuse(
            "plugin install: not wasm",
            liqoctl(
                "london",
                &["plugin", "install", &junk_wasm, "--name", "junk"],
            ),
            &["not a WebAssembly component"],
        ),
        refuse(
            "plugin test: wrong WIT version",
            liqoctl(
                "london",
                &["plugin", "test", &wrong_wit, "-i", &service_yaml],
            ),
            &["liqo:reflection@0.9.0", "liqo:reflection@0.1.0", "rebuild"],
        ),
        refuse(
            "plugin install: wrong WIT version",
            liqoctl(
                "london",
                &["plugin", "install", &wrong_wit, "--name", "wrong-wit"],
            ),
            &["liqo:reflection@0.9.0", "liqo:reflection@0.1.0"],
        ),
        refuse(
            "plugin install: namespace mapper, another world",
            liqoctl(
                "london",
                &["plugin", "install", &namespace_wasm, "--name", "mapper"],
            ),
            &["does not implement world kind-reflector"],
        ),
        refuse(
            "plugin test: manifest says ConfigMap, given a Service",
            liqoctl("london", &["plugin", "test", mw, "-i", &service_yaml]),
            &["misbehaving reflects only v1/ConfigMap", "Service"],
        ),
        refuse(
            "plugin test: manifest says ConfigMap, returns a Secret",
            liqoctl(
                "london",
                &[
                    "plugin",
                    "test",
                    mw,
                    "-i",
                    &configmap_yaml,
                    "--config-inline",
                    r#"{"mode":"wrong-kind"}"#,
                ],
            ),
            &[
                "failed on 1 of 1 objects",
                "plugin misbehaving returned an invalid object for ConfigMap bad-input/c: output has kind v1/Secret, expected v1/ConfigMap",
            ],
        ),
        refuse(
            "plugin test: returns garbage",
            liqoctl(
                "london",
                &[
                    "plugin",
                    "test",
                    mw,
                    "-i",
                    &configmap_yaml,
                    "--config-inline",
                    r#"{"mode":"garbage"}"#,
                ],
            ),
            &[
                "failed on 1 of 1 objects",
                "plugin misbehaving returned an invalid object for ConfigMap bad-input/c: output is not valid JSON",
            ],
        ),
        // --- namespace names
        refuse(
            "offload: namespace with uppercase and _",
            liqoctl("london", &["offload", "namespace", "Liqo_Demo"]),
            &[
                "namespace \"Liqo_Demo\" is not a valid namespace name",
                "lowercase",
            ],
        ),
        refuse(
            "offload: 64-character namespace",
            liqoctl("london", &["offload", "namespace", &long64]),
            &["64 characters long", "63"],
        ),
        refuse(
            "offload: 64-character --remote-namespace-name",
            liqoctl(
                "london",
                &[
                    "offload",
                    "namespace",
                    SPARE_NS,
                    "--namespace-mapping-strategy",
                    "SelectedName",
                    "--remote-namespace-name",
                    &long64,
                ],
            ),
            &["--remote-namespace-name", "64 characters long"],
        ),
        refuse(
            "offload: --remote-namespace-name with a dot",
            liqoctl(
                "london",
                &[
                    "offload",
                    "namespace",
                    SPARE_NS,
                    "--namespace-mapping-strategy",
                    "SelectedName",
                    "--remote-namespace-name",
                    "a.b",
                ],
            ),
            &["--remote-namespace-name \"a.b\"", "'.'"],
        ),
        refuse(
            "unoffload: invalid namespace",
            liqoctl("london", &["unoffload", "namespace", "demo-"]),
            &["\"demo-\"", "starts or ends with '-'"],
        ),
        // --- NamespaceOffloadings applied with kubectl
        refuse(
            "kubectl: unknown namespaceMappingStrategy",
            kubectl("london", &["apply", "-f", &unknown_strategy]),
            &[
                "spec.namespaceMappingStrategy",
                "SameNameOrElse",
                "EnforceSameName",
            ],
        ),
        refuse(
            "kubectl: unknown podOffloadingStrategy",
            kubectl("london", &["apply", "-f", &unknown_pod_strategy]),
            &["spec.podOffloadingStrategy", "Everywhere", "Local"],
        ),
        refuse(
            "kubectl: NamespaceOffloading not named offloading",
            kubectl("london", &["apply", "-f", &wrong_name]),
            &["metadata.name must be 'offloading'"],
        ),
        refuse(
            "kubectl: SelectedName without remoteNamespaceName",
            kubectl("london", &["apply", "-f", &selected_without_name]),
            &["remoteNamespaceName is required"],
        ),
        refuse(
            "kubectl: 64-character remoteNamespaceName",
            kubectl("london", &["apply", "-f", &long_remote]),
            &["spec.remoteNamespaceName", "63"],
        ),
        refuse(
            "kubectl: change the immutable strategy",
            kubectl("london", &["apply", "-f", &changed_strategy]),
            &[
                "namespaceMappingStrategy is immutable",
                "liqoctl unoffload namespace",
            ],
        ),
        refuse(
            "kubectl: set the immutable remoteNamespaceName",
            kubectl(
                "london",
                &[
                    "patch",
                    "namespaceoffloading",
                    "offloading",
                    "-n",
                    NS,
                    "--type",
                    "merge",
                    "-p",
                    r#"{"spec":{"remoteNamespaceName":"elsewhere"}}"#,
                ],
            ),
            &["remoteNamespaceName is immutable"],
        ),
        refuse(
            "liqoctl: change the immutable strategy",
            liqoctl(
                "london",
                &[
                    "offload",
                    "namespace",
                    NS,
                    "--namespace-mapping-strategy",
                    "DefaultName",
                ],
            ),
            &["namespaceMappingStrategy is immutable"],
        ),
        // --- sizes, names and unicode at london
        refuse(
            "kubectl: 1.5 MiB ConfigMap",
            kubectl("london", &["create", "-f", &big_configmap]),
            &[
                "ConfigMap \"big\" is invalid",
                "may not be more than 1048576 bytes",
            ],
        ),
        refuse(
            "kubectl: Service annotations over 256 KiB",
            kubectl("london", &["create", "-f", &over_annotations]),
            &["metadata.annotations", "Too long", "262144"],
        ),
        refuse(
            "kubectl: 64-character Service name",
            kubectl("london", &["create", "-f", &long_service_name]),
            &["metadata.name", "63"],
        ),
        refuse(
            "kubectl: unicode label value",
            kubectl("london", &["create", "-f", &unicode_label]),
            &["metadata.labels", "zürich", "alphanumeric"],
        ),
        refuse(
            "kubectl: unicode label key",
            kubectl("london", &["create", "-f", &unicode_label_key]),
            &["metadata.labels", "città"],
        ),
        // --- ForeignClusters written by hand
        refuse(
            "kubectl: ForeignCluster in Gateway mode without gateway",
            kubectl("london", &["create", "-f", &gateway_without_gateway]),
            &[
                "gateway (the peer gateway's fingerprint and endpoint) is required when addressTranslation is Gateway",
                "liqoctl generate peer-command",
            ],
        ),
        refuse(
            "kubectl: ForeignCluster gateway fingerprint not hex",
            kubectl("london", &["create", "-f", &gateway_bad_fingerprint]),
            &["spec.networking.gateway.fingerprint", "[0-9a-fA-F]{64}"],
        ),
        // --- kinds a provider must not accept from consumers (newyork is london's provider)
        refuse(
            "plugin accept: v1/Pod",
            liqoctl("newyork", &["plugin", "accept", "v1/Pod"]),
            &[
                "v1/Pod is refused: a consumer that can create Pods runs code on this cluster's nodes",
            ],
        ),
        refuse(
            "plugin accept: RoleBinding",
            liqoctl(
                "newyork",
                &[
                    "plugin",
                    "accept",
                    "rbac.authorization.k8s.io/v1/RoleBinding",
                ],
            ),
            &[
                "rbac.authorization.k8s.io/v1/RoleBinding is refused",
                "grant permissions on this cluster",
            ],
        ),
        refuse(
            "plugin accept: v1/Secret without --allow-secrets",
            liqoctl("newyork", &["plugin", "accept", "v1/Secret"]),
            &[
                "v1/Secret is refused",
                "kubernetes.io/service-account-token",
                "pass --allow-secrets",
            ],
        ),
        refuse(
            "plugin accept: ConfigMap with Pod, neither accepted",
            liqoctl("newyork", &["plugin", "accept", "v1/ConfigMap", "v1/Pod"]),
            &[
                "v1/Pod is refused",
                "nothing was accepted, not even v1/ConfigMap",
            ],
        ),
        accept(
            "Service annotations exactly at 256 KiB",
            Limit::AnnotationTotalSize,
        ),
        accept("63-character Service name reflects", Limit::LongServiceName),
        accept(
            "63-character namespace offloads and reflects",
            Limit::LongNamespace,
        ),
        accept(
            "unicode annotation values reflect byte-identical",
            Limit::UnicodeAnnotations,
        ),
        accept(
            "plugin accept v1/Secret --allow-secrets warns, then revokes",
            Limit::AllowSecrets,
        ),
    ];

    let ctx = Ctx {
        env,
        london: london.clone(),
        newyork: newyork.clone(),
        metrics,
        secrets,
    };
    println!("bad input: {} cases", rows.len());
    let mut peered = false;
    let mut failures = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if !row.before_peering && !peered {
            setup_after_peering(&ctx, &peer);
            peered = true;
        }
        let t = Instant::now();
        let result = match &row.act {
            Act::Accept(limit) => accept_limit(&ctx, *limit, &long63).await,
            Act::Liqoctl(cluster, args) => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let before = snapshot(&ctx).await;
                let out = run_liqoctl(env, cluster, &args);
                check_refusal(&ctx, row, &out, &before).await
            }
            Act::LiqoctlBare(args) => {
                let before = snapshot(&ctx).await;
                let out = Command::new(common::liqoctl_bin())
                    .args(args)
                    .env_remove("KUBECONFIG")
                    .stdin(Stdio::null())
                    .output()
                    .expect("running liqoctl");
                check_refusal(&ctx, row, &out, &before).await
            }
            Act::Kubectl(cluster, args) => {
                let before = snapshot(&ctx).await;
                let out = run_kubectl(env, cluster, args);
                check_refusal(&ctx, row, &out, &before).await
            }
        };
        match result {
            Ok(summary) => println!(
                "[{:2}/{}] ok   {} ({:.1?}): {summary}",
                i + 1,
                rows.len(),
                row.name,
                t.elapsed()
            ),
            Err(e) => {
                println!("[{:2}/{}] FAIL {}: {e}", i + 1, rows.len(), row.name);
                failures.push(format!("{}: {e}", row.name));
            }
        }
    }
    println!(
        "bad input: {} cases, {} failed, in {:.0?}",
        rows.len(),
        failures.len(),
        started.elapsed()
    );
    assert!(failures.is_empty(), "failed rows:\n{}", failures.join("\n"));
}

/// Peers london with newyork by running the printed command, then offloads [`NS`] with one
/// Service and creates [`SPARE_NS`], as the rows after the peering need.
fn setup_after_peering(ctx: &Ctx<'_>, peer: &PeerArgs) {
    let env = ctx.env;
    let out = sh(env, &format!("{} --timeout 60s", peer.command));
    assert!(out.status.success(), "the peer command: {}", text(&out));
    sh_ok(env, &format!("kubectl create namespace {NS}"));
    sh_ok(env, &format!("kubectl create namespace {SPARE_NS}"));
    sh_ok(
        env,
        &format!("kubectl create service clusterip {ANCHOR} -n {NS} --tcp 80:8080"),
    );
    sh_ok(
        env,
        &format!(
            "liqoctl offload namespace {NS} --namespace-mapping-strategy EnforceSameName --pod-offloading-strategy Local"
        ),
    );
    let deadline = Instant::now() + WAIT;
    while env
        .kubectl(
            "newyork",
            ["get", "service", ANCHOR, "-n", NS, "-o", "name"],
        )
        .status
        .code()
        != Some(0)
    {
        assert!(Instant::now() < deadline, "{ANCHOR} never reflected");
        std::thread::sleep(Duration::from_millis(250));
    }
    // The provider records its consumer on its own clock (its tenant pass binds the claimed id
    // to the tenant namespace, then shows london in `kubectl get foreignclusters`): wait for
    // both, or a row's snapshot would see that bookkeeping as a change the row made.
    while !provider_recorded_consumer(env) {
        assert!(
            Instant::now() < deadline,
            "newyork never recorded london as its consumer"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Whether newyork shows london as a consumer: a ForeignCluster and the tenant namespace
/// bound to its id.
fn provider_recorded_consumer(env: &TestEnv) -> bool {
    let shown = env
        .kubectl(
            "newyork",
            ["get", "foreignclusters", "london", "-o", "name"],
        )
        .status
        .success();
    let bound = env.kubectl(
        "newyork",
        [
            "get",
            "namespaces",
            "-l",
            "liqo.io/consumer-id=london",
            "-o",
            "name",
        ],
    );
    shown && bound.status.success() && !bound.stdout.is_empty()
}

/// One clear error, no panic, no secret, nothing changed.
async fn check_refusal(
    ctx: &Ctx<'_>,
    row: &Row,
    out: &Output,
    before: &BTreeMap<String, String>,
) -> Result<String, String> {
    let all = text(out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return Err(format!("succeeded:\n{all}"));
    }
    if all.contains("panicked") || all.contains("RUST_BACKTRACE") || all.contains("stack backtrace")
    {
        return Err(format!("panicked:\n{all}"));
    }
    if let Some(s) = ctx.secrets.iter().find(|s| all.contains(s.as_str())) {
        return Err(format!("printed a secret ({} characters)", s.len()));
    }
    let errors = error_lines(&stderr, matches!(row.act, Act::Kubectl(..)));
    if errors.len() != 1 {
        return Err(format!(
            "expected exactly one error line, got {}:\n{stderr}",
            errors.len()
        ));
    }
    // `plugin test` prints each object's error as an `error:` document on stdout, where its
    // summary on stderr points.
    if let Some(missing) = row.expect.iter().find(|e| !all.contains(e.as_str())) {
        return Err(format!("the error lacks {missing:?}:\n{all}"));
    }
    let after = snapshot(ctx).await;
    let diff = differences(before, &after);
    if !diff.is_empty() {
        return Err(format!("changed the clusters:\n{}", diff.join("\n")));
    }
    // The one error with its indented or bulleted detail, on one line.
    let error = stderr
        .lines()
        .filter(|l| !l.starts_with("Warning:") && !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    Ok(error.chars().take(200).collect())
}

/// Inputs at a limit: accepted and reflected as they are.
async fn accept_limit(ctx: &Ctx<'_>, limit: Limit, long63: &str) -> Result<String, String> {
    let local = Api::<Service>::namespaced(ctx.london.clone(), NS);
    let remote = Api::<Service>::namespaced(ctx.newyork.clone(), NS);
    let service = |name: &str, annotations: Value| -> Service {
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}))
        .unwrap()
    };
    match limit {
        Limit::LongServiceName => {
            let name = format!("svc-{}", "n".repeat(59));
            assert_eq!(name.len(), 63);
            local
                .create(&PostParams::default(), &service(&name, json!({})))
                .await
                .map_err(|e| format!("creating {name}: {e}"))?;
            eventually("the 63-character Service in newyork", WAIT, || async {
                remote.get_opt(&name).await.ok().flatten()
            })
            .await;
            Ok(format!("{name} reflected"))
        }
        Limit::UnicodeAnnotations => {
            let values = json!({
                "test.liqo.io/latin": "Zürich, Ærøskøbing, Łódź",
                "test.liqo.io/cjk": "東京 서울 北京",
                "test.liqo.io/rtl": "שלום مرحبا",
                "test.liqo.io/emoji": "🚀👩‍👩‍👧 flag 🇮🇹",
                "test.liqo.io/combining": "e\u{301} vs \u{e9}, zero\u{200b}width",
            });
            local
                .create(&PostParams::default(), &service("unicode", values.clone()))
                .await
                .map_err(|e| format!("creating unicode: {e}"))?;
            let copy = eventually("Service unicode in newyork", WAIT, || async {
                remote.get_opt("unicode").await.ok().flatten()
            })
            .await;
            let annotations = copy.metadata.annotations.unwrap_or_default();
            for (k, v) in values.as_object().unwrap() {
                let got = annotations.get(k).map(String::as_bytes);
                if got != Some(v.as_str().unwrap().as_bytes()) {
                    return Err(format!("{k}: {got:?} != {v}"));
                }
            }
            Ok("5 annotation values byte-identical in newyork".into())
        }
        Limit::LongNamespace => {
            assert_eq!(long63.len(), 63);
            sh_ok(ctx.env, &format!("kubectl create namespace {long63}"));
            sh_ok(
                ctx.env,
                &format!("kubectl create service clusterip long-ns -n {long63} --tcp 80:80"),
            );
            let out = sh(
                ctx.env,
                &format!(
                    "liqoctl offload namespace {long63} --namespace-mapping-strategy EnforceSameName --pod-offloading-strategy Local"
                ),
            );
            if !out.status.success() {
                return Err(format!("offload failed: {}", text(&out)));
            }
            let remote = Api::<Service>::namespaced(ctx.newyork.clone(), long63);
            eventually(
                "the Service of the 63-character namespace",
                WAIT,
                || async { remote.get_opt("long-ns").await.ok().flatten() },
            )
            .await;
            let out = sh(ctx.env, &format!("liqoctl unoffload namespace {long63}"));
            if !out.status.success() {
                return Err(format!("unoffload failed: {}", text(&out)));
            }
            sh_ok(
                ctx.env,
                &format!("kubectl delete namespace {long63} --wait=false"),
            );
            Ok("offloaded, reflected, unoffloaded".into())
        }
        Limit::AnnotationTotalSize => annotation_size_limit(ctx, &local, &remote).await,
        Limit::AllowSecrets => allow_secrets(ctx).await,
    }
}

/// Secrets, refused by `plugin accept` without the flag (a row above), are accepted with
/// `--allow-secrets` and a warning on stderr that says what it allows; `--revoke` removes them.
async fn allow_secrets(ctx: &Ctx<'_>) -> Result<String, String> {
    let roles = Api::<ClusterRole>::all(ctx.newyork.clone());
    let name = "liqo-peering-accept-secrets";
    let out = run_liqoctl(
        ctx.env,
        "newyork",
        &["plugin", "accept", "v1/Secret", "--allow-secrets"],
    );
    if !out.status.success() {
        return Err(format!("accept --allow-secrets failed: {}", text(&out)));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    for part in [
        "warning: consumers may now write Secrets in their twin namespaces",
        "kubernetes.io/service-account-token",
    ] {
        if !stderr.contains(part) {
            return Err(format!("the warning lacks {part:?}:\n{}", text(&out)));
        }
    }
    let role = roles
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no ClusterRole {name}"))?;
    let resources: Vec<String> = role
        .rules
        .unwrap_or_default()
        .into_iter()
        .flat_map(|r| r.resources.unwrap_or_default())
        .collect();
    if resources != ["secrets"] {
        return Err(format!("ClusterRole {name} grants {resources:?}"));
    }
    let out = run_liqoctl(
        ctx.env,
        "newyork",
        &["plugin", "accept", "v1/Secret", "--revoke"],
    );
    if !out.status.success() {
        return Err(format!("--revoke failed: {}", text(&out)));
    }
    if roles
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Err(format!("ClusterRole {name} still there after --revoke"));
    }
    Ok(format!(
        "accepted with the warning (ClusterRole {name}), then revoked"
    ))
}

/// A Service whose annotations total exactly 262144 bytes (the API server's limit): london
/// accepts it. In newyork it is either reflected intact, or — if the copy's extra metadata
/// would push it over — refused, reported once as a FailedReflection Event on the london
/// object, and retried with backoff (no hot loop) while other objects keep reflecting.
async fn annotation_size_limit(
    ctx: &Ctx<'_>,
    local: &Api<Service>,
    remote: &Api<Service>,
) -> Result<String, String> {
    let key = "test.liqo.io/big";
    let value = "x".repeat(256 * 1024 - key.len());
    let svc: Service = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "at-limit", "annotations": {key: value}},
        "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}))
    .unwrap();
    local
        .create(&PostParams::default(), &svc)
        .await
        .map_err(|e| format!("london refused a Service exactly at the limit: {e}"))?;
    let events = Api::<Event>::namespaced(ctx.london.clone(), NS);
    let failed_events = || async {
        events
            .list(&ListParams::default().fields("involvedObject.name=at-limit"))
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .filter(|e| e.reason.as_deref() == Some("FailedReflection"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let outcome = eventually("at-limit reflected or reported as failed", WAIT, || async {
        if let Ok(Some(copy)) = remote.get_opt("at-limit").await {
            return Some(Ok(copy));
        }
        let failed = failed_events().await;
        (!failed.is_empty()).then_some(Err(failed))
    })
    .await;
    let summary = match outcome {
        Ok(copy) => {
            let got = copy
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .map(String::len);
            if got != Some(value.len()) {
                return Err(format!("reflected, but the annotation is {got:?} bytes"));
            }
            "reflected intact".to_string()
        }
        Err(failed) => {
            let message = failed[0].message.clone().unwrap_or_default();
            if !message.contains("at-limit") && !message.contains("annotations") {
                return Err(format!("the FailedReflection Event is unclear: {message}"));
            }
            format!(
                "one FailedReflection Event: {}",
                message.chars().take(120).collect::<String>()
            )
        }
    };
    // Other objects keep reflecting: a change to the anchor reaches newyork.
    local
        .patch(
            ANCHOR,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"probe": "after-limit"}}})),
        )
        .await
        .map_err(|e| e.to_string())?;
    eventually("the anchor's change in newyork", WAIT, || async {
        let copy = remote.get_opt(ANCHOR).await.ok().flatten()?;
        (copy.metadata.labels?.get("probe").map(String::as_str) == Some("after-limit"))
            .then_some(())
    })
    .await;
    // No hot retry loop: over 10 s, london's host writes to newyork a handful of times at most.
    let writes = |s: &common::MetricsSample| {
        s.sum(
            "liqo_reflection_api_writes_total",
            &[("cluster", "newyork")],
        )
    };
    let first = scrape_metrics(ctx.metrics)
        .await
        .map_err(|e| format!("{e:#}"))?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let second = scrape_metrics(ctx.metrics)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let delta = writes(&second) - writes(&first);
    if delta > 10.0 {
        return Err(format!("{delta} writes in 10 s: a retry loop"));
    }
    let failed = failed_events().await;
    if failed.len() > 1 {
        return Err(format!(
            "{} FailedReflection Events, expected one",
            failed.len()
        ));
    }
    Ok(format!(
        "{summary}; anchor still reflects; {delta} writes in 10 s"
    ))
}
