//! `liqoctl plugin install | list | uninstall | diff` through the real binary against testenv
//! clusters. The component is the host's built-in Service plugin (embedded in liqo-host), so
//! these tests need no wasm build of their own.
//!
//! No host controller loads ReflectionPlugins in these tests: `install` runs with
//! `--wait=false`, and the wait is exercised by writing the status the host would write.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use liqo_host::api::identity::ClusterIdentityConfig;
use liqo_host::api::reflection_plugin::{FailurePolicy, PluginSource, ReflectionPlugin};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
mod common;

use common::{peered, run_liqoctl};
use testsupport::{TestEnv, eventually, output_text as text, unique_name};

const WAIT: Duration = Duration::from_secs(60);

fn liqoctl(env: &TestEnv, args: &[&str]) -> Output {
    run_liqoctl(env, "london", args)
}

fn liqoctl_ok(env: &TestEnv, args: &[&str]) -> String {
    let out = liqoctl(env, args);
    assert!(out.status.success(), "liqoctl {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn liqoctl_err(env: &TestEnv, args: &[&str]) -> String {
    let out = liqoctl(env, args);
    assert!(
        !out.status.success(),
        "liqoctl {args:?} should fail: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes `bytes` to a file in the environment's directory.
fn file(env: &TestEnv, name: &str, bytes: &[u8]) -> String {
    let path: PathBuf = env.dir().join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `bytes` with a custom section of `size` bytes appended: still a valid component.
fn with_custom_section(bytes: &[u8], size: usize) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"padding";
    let mut body = Vec::new();
    leb128(name.len(), &mut body);
    body.extend_from_slice(name);
    body.resize(body.len() + size, 0);
    let mut out = bytes.to_vec();
    out.push(0);
    leb128(body.len(), &mut out);
    out.extend(body);
    out
}

async fn liqo_namespace(client: &Client) {
    Api::<Namespace>::all(client.clone())
        .patch(
            "liqo",
            &PatchParams::apply("liqo-test"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "liqo"}}),
            ),
        )
        .await
        .unwrap();
}

/// Writes the status the host's controller would write.
async fn set_status(
    api: &Api<ReflectionPlugin>,
    name: &str,
    loaded: &str,
    digest: &str,
    message: &str,
) {
    let generation = api
        .get(name)
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap_or(1);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "conditions": [{"type": "Loaded", "status": loaded,
                "reason": if loaded == "True" { "Loaded" } else { "InvalidPlugin" },
                "message": message, "observedGeneration": generation,
                "lastTransitionTime": "2024-01-01T00:00:00Z"}],
            "digest": digest,
            "pluginName": "service",
            "pluginVersion": "0.1.0",
            "kinds": ["v1/Service"],
        }})),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn install_list_uninstall() {
    let env = TestEnv::shared();
    let london = env.client("london").await;
    testsupport::apply_crds(&london, liqo_host::api::crds()).await;
    liqo_namespace(&london).await;
    let plugins: Api<ReflectionPlugin> = Api::all(london.clone());
    let config_maps: Api<ConfigMap> = Api::namespaced(london.clone(), "liqo");
    let name = unique_name("svc-plugin");
    let cm_name = format!("liqo-plugin-{name}");
    let wasm_bytes = liqo_host::plugin::builtin::SERVICE;
    let wasm = file(env, "service.wasm", wasm_bytes);

    let nothing_written = || async {
        assert!(
            plugins.get_opt(&name).await.unwrap().is_none(),
            "no ReflectionPlugin"
        );
        assert!(
            config_maps.get_opt(&cm_name).await.unwrap().is_none(),
            "no ConfigMap"
        );
    };

    // Refused locally, nothing written: not a component, a core module, too large, bad flags.
    let garbage = file(env, "garbage.wasm", b"this is not wasm");
    let err = liqoctl_err(
        env,
        &[
            "plugin",
            "install",
            &garbage,
            "--name",
            &name,
            "--wait=false",
        ],
    );
    assert!(err.contains("not a WebAssembly component"), "{err}");
    let core_module = file(env, "core.wasm", b"\0asm\x01\0\0\0");
    let err = liqoctl_err(env, &["plugin", "install", &core_module, "--name", &name]);
    assert!(err.contains("not a WebAssembly component"), "{err}");
    let large = file(env, "large.wasm", &with_custom_section(wasm_bytes, 1 << 20));
    let err = liqoctl_err(env, &["plugin", "install", &large, "--name", &name]);
    assert!(
        err.contains("too large for a ConfigMap") && err.contains("spec.source.url"),
        "{err}"
    );
    for (flags, expected) in [
        (
            vec!["--config-inline", "{nope"],
            "--config-inline \"{nope\" is not valid JSON",
        ),
        (
            vec!["--reads", "Secret"],
            "--reads \"Secret\" is not a kind",
        ),
        (
            vec!["--name", "Bad_Name"],
            "--name \"Bad_Name\" is not valid",
        ),
        (
            vec!["--namespace", "no-such-namespace"],
            "namespace no-such-namespace does not exist",
        ),
    ] {
        let mut args = vec!["plugin", "install", &wasm, "--wait=false"];
        if !flags.contains(&"--name") {
            args.extend(["--name", &name]);
        }
        args.extend(flags);
        let err = liqoctl_err(env, &args);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    nothing_written().await;

    // Install: the ConfigMap with the bytes, the ReflectionPlugin with every flag.
    let out = liqoctl_ok(
        env,
        &[
            "plugin",
            "install",
            &wasm,
            "--name",
            &name,
            "--wait=false",
            "--config-inline",
            r#"{"reflectionPolicy":"AllowList"}"#,
            "--cpu-ms",
            "250",
            "--memory-mib",
            "128",
            "--failure-policy",
            "Ignore",
            "--reads",
            "v1/Secret,apps/v1/Deployment",
        ],
    );
    let want_digest = digest(wasm_bytes);
    assert!(
        out.contains(&format!(
            "ReflectionPlugin {name} applied: plugin service 0.1.0 (v1/Service)"
        )) && out.contains(&want_digest),
        "{out}"
    );
    let cm = config_maps.get(&cm_name).await.unwrap();
    assert_eq!(
        cm.binary_data.as_ref().unwrap()["plugin.wasm"].0,
        wasm_bytes
    );
    assert_eq!(cm.labels()["app.kubernetes.io/managed-by"], "liqoctl");
    assert_eq!(cm.annotations()["plugins.liqo.io/digest"], want_digest);
    let rp = plugins.get(&name).await.unwrap();
    match &rp.spec.source {
        PluginSource::ConfigMap(source) => {
            assert_eq!(
                (source.name.as_str(), source.namespace.as_str()),
                (cm_name.as_str(), "liqo")
            );
            assert_eq!(source.key, "plugin.wasm");
        }
        other => panic!("source {other:?}"),
    }
    assert_eq!(
        rp.spec.config,
        Some(json!({"reflectionPolicy": "AllowList"}))
    );
    assert_eq!(rp.spec.limits.cpu_millis_per_call, 250);
    assert_eq!(rp.spec.limits.memory_mib, 128);
    assert_eq!(rp.spec.failure_policy, FailurePolicy::Ignore);
    let reads: Vec<String> = rp
        .spec
        .reads
        .iter()
        .map(|k| format!("{}/{}/{}", k.group, k.version, k.kind))
        .collect();
    assert_eq!(reads, ["/v1/Secret", "apps/v1/Deployment"]);
    let managers: Vec<String> = rp
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["liqoctl"], "server-side apply as liqoctl");

    // Installing again with fewer flags is an update: what is not asked for any more goes.
    liqoctl_ok(
        env,
        &["plugin", "install", &wasm, "--name", &name, "--wait=false"],
    );
    let rp = plugins.get(&name).await.unwrap();
    assert_eq!(rp.spec.config, None);
    assert!(rp.spec.reads.is_empty());
    assert_eq!(rp.spec.limits.cpu_millis_per_call, 100);
    assert_eq!(rp.spec.failure_policy, FailurePolicy::Fail);

    // list: nothing loaded yet.
    let out = liqoctl_ok(env, &["plugin", "list"]);
    let header = out.lines().next().unwrap();
    assert!(
        header.split_whitespace().collect::<Vec<_>>()
            == [
                "NAME", "PLUGIN", "VERSION", "KINDS", "LOADED", "DIGEST", "AGE"
            ],
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("{out}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[1..6],
        ["<none>", "<none>", "<none>", "Unknown", "<none>"],
        "{out}"
    );

    // The host reports it loaded: list shows it, and install --wait returns at once.
    set_status(&plugins, &name, "True", &want_digest, "loaded").await;
    let out = liqoctl_ok(env, &["plugin", "list"]);
    let row = out
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("{out}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[1..6],
        [
            "service",
            "0.1.0",
            "v1/Service",
            "True",
            &want_digest[.."sha256:".len() + 12]
        ],
        "{out}"
    );
    let out = liqoctl_ok(env, &["plugin", "list", "-o", "wide"]);
    assert!(
        out.contains(&format!("configMap:liqo/{cm_name}")) && out.contains(&want_digest),
        "{out}"
    );
    let listed: Value =
        serde_json::from_str(&liqoctl_ok(env, &["plugin", "list", "-o", "json"])).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["metadata"]["name"] == json!(name)),
        "{listed}"
    );
    let out = liqoctl(
        env,
        &[
            "plugin",
            "install",
            &wasm,
            "--name",
            &name,
            "--timeout",
            "20s",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("Plugin {name} loaded by the host (v1/Service")),
        "{}",
        text(&out)
    );

    // The host refuses it: install --wait fails with the host's message.
    set_status(
        &plugins,
        &name,
        "False",
        &want_digest,
        "the manifest is broken",
    )
    .await;
    let err = liqoctl_err(
        env,
        &[
            "plugin",
            "install",
            &wasm,
            "--name",
            &name,
            "--timeout",
            "20s",
        ],
    );
    assert!(
        err.contains(&format!(
            "the host could not load plugin {name}: InvalidPlugin: the manifest is broken"
        )),
        "{err}"
    );

    // uninstall: the ReflectionPlugin, then the ConfigMap; a second time says so.
    let out = liqoctl(env, &["plugin", "uninstall", &name]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("ConfigMap liqo/{cm_name} deleted")),
        "{}",
        text(&out)
    );
    nothing_written().await;
    let err = liqoctl_err(env, &["plugin", "uninstall", &name]);
    assert!(
        err.contains(&format!("plugin {name} is not installed")),
        "{err}"
    );
}

fn service(name: &str, annotations: Value) -> Service {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name}, "annotations": annotations},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}}))
    .unwrap()
}

#[tokio::test]
async fn diff_against_a_peer() {
    let env = TestEnv::shared();
    let london = env.client("london").await;
    let newyork = env.client("newyork").await;
    let mut host = peered(env, &london).await;
    Api::<ConfigMap>::namespaced(london.clone(), "liqo")
        .patch(
            "liqo-clusterid-configmap",
            &PatchParams::apply("liqo-test").force(),
            &Patch::Apply(
                ClusterIdentityConfig {
                    cluster_id: "london".into(),
                    cluster_name: "london".into(),
                }
                .to_config_map(),
            ),
        )
        .await
        .unwrap();
    let wasm = file(
        env,
        "service-diff.wasm",
        liqo_host::plugin::builtin::SERVICE,
    );

    let ns = env.unique_namespace("plugin-diff").await;
    let local = Api::<Service>::namespaced(london.clone(), &ns);
    for svc in [
        service("web", json!({})),
        service("old", json!({})),
        service("gone", json!({})),
        service("skip-me", json!({"liqo.io/skip-reflection": "true"})),
    ] {
        local.create(&PostParams::default(), &svc).await.unwrap();
    }
    // Not offloaded yet: diff says what to do.
    let err = liqoctl_err(
        env,
        &[
            "plugin",
            "diff",
            &wasm,
            "--peer",
            "newyork",
            "--namespace",
            &ns,
        ],
    );
    assert!(
        err.contains(&format!("namespace {ns} is not offloaded")),
        "{err}"
    );

    let out = liqoctl(
        env,
        &[
            "offload",
            "namespace",
            &ns,
            "--namespace-mapping-strategy",
            "EnforceSameName",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let remote = Api::<Service>::namespaced(newyork.clone(), &ns);
    for name in ["web", "old", "gone"] {
        eventually(&format!("{name} in newyork"), WAIT, || async {
            remote.get_opt(name).await.ok().flatten()
        })
        .await;
    }

    // What the host wrote is what the plugin would write: nothing to change, exit code 0.
    let out = liqoctl(
        env,
        &[
            "plugin",
            "diff",
            &wasm,
            "--peer",
            "newyork",
            "--namespace",
            &ns,
            "--exit-code",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        format!("Service {ns}/web: up to date\n"),
        format!("Service {ns}/old: up to date\n"),
        format!("Service {ns}/skip-me: not reflected (skip: "),
        "4 objects, 0 would change, 0 would be created, 0 would be deleted\n".to_string(),
    ] {
        assert!(stdout.contains(&line), "{line:?} in:\n{stdout}");
    }

    // With the host's ReflectionPlugin controller running, install waits until the plugin is
    // loaded (here the Service plugin again, as a user plugin), and uninstall until the host
    // has released it.
    let out = liqoctl(
        env,
        &[
            "plugin",
            "install",
            &wasm,
            "--name",
            "user-service",
            "--timeout",
            "60s",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Plugin user-service loaded by the host (v1/Service"),
        "{}",
        text(&out)
    );
    let listed = liqoctl_ok(env, &["plugin", "list"]);
    let row = listed
        .lines()
        .find(|l| l.starts_with("user-service "))
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>()[1..5],
        ["service", "0.1.0", "v1/Service", "True"],
        "{listed}"
    );
    let out = liqoctl(env, &["plugin", "uninstall", "user-service"]);
    assert!(out.status.success(), "{}", text(&out));
    let plugins: Api<ReflectionPlugin> = Api::all(london.clone());
    assert!(plugins.get_opt("user-service").await.unwrap().is_none());

    // With the host stopped, local changes pile up; diff shows them.
    host.stop();
    let patch = |v: Value| Patch::Merge(v);
    local
        .patch(
            "web",
            &PatchParams::default(),
            &patch(json!({
                "metadata": {"labels": {"tier": "front"}},
                "spec": {"ports": [{"port": 8080, "protocol": "TCP", "targetPort": 80}]}
            })),
        )
        .await
        .unwrap();
    local
        .patch(
            "old",
            &PatchParams::default(),
            &patch(json!({
                "metadata": {"annotations": {"liqo.io/skip-reflection": "true"}}
            })),
        )
        .await
        .unwrap();
    local
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    local
        .create(&PostParams::default(), &service("new-svc", json!({})))
        .await
        .unwrap();

    let args = [
        "plugin",
        "diff",
        &wasm,
        "--peer",
        "newyork",
        "--namespace",
        &ns,
    ];
    let out = liqoctl_ok(env, &args);
    eprintln!("liqoctl plugin diff:\n{out}");
    for line in [
        format!("Service {ns}/web: would change ("),
        "+ .metadata.labels.tier: \"front\"\n".to_string(),
        "  .spec.ports[0].port: 80 -> 8080\n".to_string(),
        format!("Service {ns}/new-svc: would be created\n"),
        format!("Service {ns}/old: would be deleted (skip: "),
        format!("Service {ns}/gone: would be deleted (no local object)\n"),
        "5 objects, 1 would change, 1 would be created, 2 would be deleted\n".to_string(),
    ] {
        assert!(out.contains(&line), "{line:?} in:\n{out}");
    }
    let mut exit_code = args.to_vec();
    exit_code.push("--exit-code");
    let out = liqoctl(env, &exit_code);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        out.stderr.is_empty(),
        "--exit-code adds no error message: {}",
        text(&out)
    );
    let mut json_args = args.to_vec();
    json_args.extend(["-o", "json"]);
    let report: Value = serde_json::from_str(&liqoctl_ok(env, &json_args)).unwrap();
    assert_eq!(
        report["summary"],
        json!({"objects": 5, "changed": 1, "created": 1, "deleted": 2, "conflicts": 0, "failed": 0})
    );
    assert_eq!(report["remoteNamespace"], json!(ns));

    // Nothing was written: the remote copies are as the host left them.
    assert!(remote.get_opt("new-svc").await.unwrap().is_none());
    assert!(remote.get_opt("gone").await.unwrap().is_some());
    assert!(
        remote
            .get("web")
            .await
            .unwrap()
            .labels()
            .get("tier")
            .is_none()
    );

    let err = liqoctl_err(
        env,
        &[
            "plugin",
            "diff",
            &wasm,
            "--peer",
            "nowhere",
            "--namespace",
            &ns,
        ],
    );
    assert!(err.contains("ForeignCluster nowhere not found"), "{err}");
}
