//! The user-plugin workflow end to end, as docs/plugins.md tells it: real liqoctl, real hosts,
//! two real clusters. The example plugins (examples/plugins/configmap and widget) are built
//! with `liqoctl plugin build`, accepted by the provider, installed on a live peering,
//! upgraded in place (hot swap: the host keeps running) and removed.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

mod common;

use common::{sh, sh_ok, tutorial_until_offload};
use testsupport::{TestEnv, eventually, output_text as text};

const WAIT: Duration = Duration::from_secs(90);

fn repo() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("..")
}

/// Builds the plugin crate in `dir` with `liqoctl plugin build`, into its own target directory
/// under `target/tmp` (kept between runs, so later runs take seconds). Returns the wasm path.
fn build(env: &TestEnv, dir: &Path, target: &str) -> PathBuf {
    let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(target);
    let out = sh(
        env,
        &format!(
            "CARGO_TARGET_DIR={} liqoctl plugin build {} -o json",
            target_dir.display(),
            dir.display()
        ),
    );
    assert!(
        out.status.success(),
        "building {}: {}",
        dir.display(),
        text(&out)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("plugin build -o json prints JSON");
    PathBuf::from(report["path"].as_str().expect("the wasm path"))
}

fn newyork(env: &TestEnv, args: &[&str]) -> Output {
    env.kubectl("newyork", args)
}

fn newyork_json(env: &TestEnv, args: &[&str]) -> Option<serde_json::Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = newyork(env, &all);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn label<'a>(object: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    object["metadata"]["labels"][key].as_str()
}

#[tokio::test]
async fn example_plugins_install_upgrade_and_remove_on_a_live_peering() {
    let env = TestEnv::shared();
    // The examples carry a copy of the contract (a plugin crate builds on its own): it must be
    // this host's.
    let wit = std::fs::read_to_string(repo().join("wit/reflection.wit")).unwrap();
    for example in ["configmap", "widget"] {
        let copy = repo().join(format!("examples/plugins/{example}/wit/reflection.wit"));
        assert_eq!(
            std::fs::read_to_string(&copy).unwrap(),
            wit,
            "{} is stale: copy wit/reflection.wit over it",
            copy.display()
        );
    }

    // Build first: the host must not wait for the compiler.
    let configmap_v1 = build(env, &repo().join("examples/plugins/configmap"), "examples");
    let widget = build(env, &repo().join("examples/plugins/widget"), "examples");

    // The tutorial's setup: peered, liqo-demo offloaded.
    let (mut london_host, _newyork_host) = tutorial_until_offload(env, None);
    sh_ok(
        env,
        "kubectl -n liqo-demo create configmap settings --from-literal=endpoint=http://flights-service:7999 --from-literal=db.password=hunter2",
    );
    sh_ok(
        env,
        "kubectl -n liqo-demo create configmap local-only --from-literal=a=b && kubectl -n liqo-demo annotate configmap local-only liqo.io/skip-reflection=true",
    );

    // Installed before newyork accepts ConfigMaps: the peering identity may not write them.
    let installed = std::time::Instant::now();
    sh_ok(
        env,
        &format!(
            "liqoctl plugin install {} --config-inline '{{\"dropKeys\":[\"*.password\"]}}'",
            configmap_v1.display()
        ),
    );
    let refused = eventually("a FailedReflection event on settings", WAIT, || async {
        let out = sh_ok(
            env,
            "kubectl -n liqo-demo get events --field-selector involvedObject.name=settings,reason=FailedReflection -o jsonpath='{.items[*].message}'",
        );
        (!out.trim().is_empty()).then_some(out)
    })
    .await;
    assert!(refused.contains("forbidden"), "{refused}");
    // The host reports a refused watch after 5 s of grace (a new twin namespace gets its
    // RoleBinding shortly after it is created), whichever of the local list and the refusal
    // comes first.
    println!(
        "plugin_examples: FailedReflection on settings {:.1} s after the install: {}",
        installed.elapsed().as_secs_f64(),
        refused.trim()
    );
    assert!(
        !newyork(env, &["-n", "liqo-demo", "get", "configmap", "settings"])
            .status
            .success()
    );

    // newyork accepts ConfigMaps: reflection follows, as the plugin decides.
    sh_ok(
        env,
        "liqoctl plugin accept v1/ConfigMap --kubeconfig \"$KUBECONFIG_NEWYORK\"",
    );
    let settings = eventually("settings reflected to newyork", WAIT, || async {
        newyork_json(env, &["-n", "liqo-demo", "get", "configmap", "settings"])
    })
    .await;
    assert_eq!(
        settings["data"],
        serde_json::json!({"endpoint": "http://flights-service:7999"}),
        "db.password stays in london"
    );
    assert_eq!(
        label(&settings, "offloading.liqo.io/origin"),
        Some("london")
    );
    assert!(
        !newyork(env, &["-n", "liqo-demo", "get", "configmap", "local-only"])
            .status
            .success()
    );
    let root_ca = newyork_json(
        env,
        &["-n", "liqo-demo", "get", "configmap", "kube-root-ca.crt"],
    )
    .expect("newyork's own CA bundle");
    assert_eq!(
        label(&root_ca, "offloading.liqo.io/origin"),
        None,
        "newyork's kube-root-ca.crt is never replaced"
    );
    let list = sh_ok(env, "liqoctl plugin list");
    assert!(
        list.contains("configmap") && list.contains("True"),
        "{list}"
    );

    // Version 2 adds a label: built from a copy, installed over version 1 while the host runs.
    let v2_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("configmap-v2-src");
    let _ = std::fs::remove_dir_all(&v2_dir);
    sh_ok(
        env,
        &format!(
            "cp -r {} {} && rm -rf {}/target",
            repo().join("examples/plugins/configmap").display(),
            v2_dir.display(),
            v2_dir.display()
        ),
    );
    let cargo_toml = v2_dir.join("Cargo.toml");
    let manifest = std::fs::read_to_string(&cargo_toml).unwrap();
    assert!(manifest.contains("version = \"0.1.0\""));
    std::fs::write(
        &cargo_toml,
        manifest.replacen("version = \"0.1.0\"", "version = \"0.2.0\"", 1),
    )
    .unwrap();
    let transform = v2_dir.join("src/transform.rs");
    let source = std::fs::read_to_string(&transform).unwrap();
    let hook = "    labels.extend(config.extra_labels);\n";
    assert!(source.contains(hook), "the example's transform changed");
    std::fs::write(
        &transform,
        source.replacen(
            hook,
            &format!(
                "{hook}    labels.insert(\"example.liqo.io/plugin-version\".to_owned(), Value::String(env!(\"CARGO_PKG_VERSION\").to_owned()));\n"
            ),
            1,
        ),
    )
    .unwrap();
    let configmap_v2 = build(env, &v2_dir, "examples-v2");
    sh_ok(
        env,
        &format!(
            "liqoctl plugin install {} --name configmap --config-inline '{{\"dropKeys\":[\"*.password\"]}}'",
            configmap_v2.display()
        ),
    );
    let upgraded = eventually("settings relabelled by version 2", WAIT, || async {
        newyork_json(env, &["-n", "liqo-demo", "get", "configmap", "settings"])
            .filter(|c| label(c, "example.liqo.io/plugin-version") == Some("0.2.0"))
    })
    .await;
    assert_eq!(
        upgraded["data"],
        serde_json::json!({"endpoint": "http://flights-service:7999"})
    );
    assert!(
        london_host.0.try_wait().unwrap().is_none(),
        "the host kept running through the upgrade"
    );
    let version = sh_ok(
        env,
        "kubectl get reflectionplugin configmap -o jsonpath='{.status.pluginVersion}'",
    );
    assert_eq!(version.trim(), "0.2.0");
    // New objects follow version 2 too, and nothing is left to change.
    sh_ok(
        env,
        "kubectl -n liqo-demo create configmap later --from-literal=x=y",
    );
    let later = eventually("later reflected", WAIT, || async {
        newyork_json(env, &["-n", "liqo-demo", "get", "configmap", "later"])
    })
    .await;
    assert_eq!(
        label(&later, "example.liqo.io/plugin-version"),
        Some("0.2.0")
    );
    let diff = sh(
        env,
        &format!(
            "liqoctl plugin diff {} --peer newyork --namespace liqo-demo --config-inline '{{\"dropKeys\":[\"*.password\"]}}' --exit-code",
            configmap_v2.display()
        ),
    );
    assert!(diff.status.success(), "{}", text(&diff));

    // A custom resource kind: the CRD in both clusters, accepted by newyork.
    let crd = repo().join("examples/plugins/widget/crd.yaml");
    sh_ok(
        env,
        &format!(
            "kubectl apply -f {crd} && kubectl apply -f {crd} --kubeconfig \"$KUBECONFIG_NEWYORK\" && \
             kubectl wait --for=condition=Established crd/widgets.example.com && \
             kubectl wait --for=condition=Established crd/widgets.example.com --kubeconfig \"$KUBECONFIG_NEWYORK\"",
            crd = crd.display()
        ),
    );
    sh_ok(
        env,
        "liqoctl plugin accept example.com/v1alpha1/Widget --kubeconfig \"$KUBECONFIG_NEWYORK\"",
    );
    sh_ok(env, &format!("liqoctl plugin install {}", widget.display()));
    sh_ok(
        env,
        r#"printf '%s' '{"apiVersion":"example.com/v1alpha1","kind":"Widget","metadata":{"name":"gear"},"spec":{"size":3,"color":"blue","credentialsSecret":"gear-creds"}}' | kubectl -n liqo-demo apply -f -"#,
    );
    let gear = eventually("the Widget reflected to newyork", WAIT, || async {
        newyork_json(
            env,
            &["-n", "liqo-demo", "get", "widgets.example.com", "gear"],
        )
    })
    .await;
    assert_eq!(
        gear["spec"],
        serde_json::json!({"size": 3, "color": "blue"}),
        "credentialsSecret stays in london"
    );

    // Removing the ConfigMap plugin removes the copies it made, nothing else.
    sh_ok(env, "liqoctl plugin uninstall configmap");
    for name in ["settings", "later"] {
        assert!(
            !newyork(env, &["-n", "liqo-demo", "get", "configmap", name])
                .status
                .success(),
            "{name} removed from newyork"
        );
    }
    assert!(
        newyork(
            env,
            &["-n", "liqo-demo", "get", "configmap", "kube-root-ca.crt"]
        )
        .status
        .success()
    );
    sh_ok(
        env,
        "kubectl -n liqo-demo get configmap settings later local-only",
    );
    // The Widget plugin keeps working.
    sh_ok(
        env,
        r#"kubectl -n liqo-demo patch widget gear --type=merge -p '{"spec":{"size":5}}'"#,
    );
    eventually("the Widget update reflected", WAIT, || async {
        newyork_json(
            env,
            &["-n", "liqo-demo", "get", "widgets.example.com", "gear"],
        )
        .filter(|w| w["spec"]["size"] == 5)
    })
    .await;
    // Uninstalling liqo asks to remove the plugin first (its remote copies need the host).
    let refused = sh(env, "liqoctl uninstall");
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("liqoctl plugin uninstall widget"),
        "{}",
        text(&refused)
    );
    sh_ok(env, "liqoctl plugin uninstall widget");
    assert!(
        !newyork(
            env,
            &["-n", "liqo-demo", "get", "widgets.example.com", "gear"]
        )
        .status
        .success()
    );
}
