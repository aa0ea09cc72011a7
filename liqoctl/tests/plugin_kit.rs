//! `liqoctl plugin new | build | test` through the real binary, as a plugin author uses them:
//! a crate is scaffolded, its own tests pass, it builds into a component that the host's
//! runtime loads, and `plugin test` prints what the host would write and checks golden files.
//!
//! The generated crates are built with `CARGO_TARGET_DIR=<target>/plugin-kit`, shared across
//! runs: the first run compiles wit-bindgen (about a minute on 2 cores), later runs only the
//! crate itself. Their Cargo.lock is resolved from the local registry cache when possible
//! (`--offline`), else from crates.io.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
mod common;

use common::liqoctl_bin;
use testsupport::output_text as text;

/// `<cargo target dir>/plugin-kit`: the target directory of the generated crates.
fn kit_target_dir() -> PathBuf {
    // target/debug/liqoctl -> target
    let target = liqoctl_bin()
        .parent()
        .and_then(Path::parent)
        .expect("liqoctl is in <target>/<profile>/")
        .to_path_buf();
    target.join("plugin-kit")
}

/// A fresh, empty work directory for one test (fixed name, so that repeated runs reuse the
/// build cache instead of piling up copies).
fn work_dir(name: &str) -> PathBuf {
    let dir = kit_target_dir().join("work").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A command with the outer build's compiler settings removed (as host/build.rs does for its
/// nested build) and the shared target directory.
fn command(program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir)
        .env("CARGO_TARGET_DIR", kit_target_dir())
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null());
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CLIPPY_ARGS",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn liqoctl(dir: &Path, args: &[&str]) -> Output {
    command(liqoctl_bin(), dir)
        .args(args)
        .output()
        .expect("running liqoctl")
}

fn liqoctl_ok(dir: &Path, args: &[&str]) -> String {
    let out = liqoctl(dir, args);
    assert!(out.status.success(), "liqoctl {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs liqoctl, expects a failure, and returns stderr.
fn liqoctl_err(dir: &Path, args: &[&str]) -> String {
    let out = liqoctl(dir, args);
    assert!(
        !out.status.success(),
        "liqoctl {args:?} should fail: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn cargo(dir: &Path, args: &[&str]) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    command(cargo, dir)
        .args(args)
        .output()
        .expect("running cargo")
}

/// Resolves the crate's Cargo.lock, from the local registry cache if it has everything.
fn lockfile(dir: &Path) {
    if cargo(dir, &["generate-lockfile", "--offline"])
        .status
        .success()
    {
        return;
    }
    let out = cargo(dir, &["generate-lockfile"]);
    assert!(
        out.status.success(),
        "cargo generate-lockfile: {}",
        text(&out)
    );
}

/// Every file and directory under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(base).unwrap().display().to_string());
            if path.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn help_teaches_every_subcommand() {
    let dir = std::env::temp_dir();
    let out = liqoctl_ok(&dir, &["plugin", "--help"]);
    for sub in [
        "new",
        "build",
        "test",
        "diff",
        "install",
        "uninstall",
        "list",
    ] {
        assert!(
            out.contains(&format!("\n  {sub} ")),
            "plugin --help lists {sub}: {out}"
        );
        let help = liqoctl_ok(&dir, &["plugin", sub, "--help"]);
        assert!(
            help.contains("Example"),
            "plugin {sub} --help has examples: {help}"
        );
    }
    let new = liqoctl_ok(&dir, &["plugin", "new", "--help"]);
    assert!(
        new.contains("v1/ConfigMap") && new.contains("--plural"),
        "{new}"
    );
}

#[test]
fn new_refuses_bad_input_and_writes_nothing() {
    let dir = work_dir("refusals");
    let cases: [(&[&str], &str); 5] = [
        (
            &["Config_Map", "--kind", "v1/ConfigMap"],
            "plugin name \"Config_Map\" is not valid",
        ),
        (
            &["cm", "--kind", "ConfigMap"],
            "--kind \"ConfigMap\" is not a kind",
        ),
        (
            &["cm", "--kind", "v1/Namespace"],
            "v1/Namespace is cluster-scoped",
        ),
        (
            &["cm", "--kind", "rbac.authorization.k8s.io/v1/ClusterRole"],
            "choose a namespaced kind",
        ),
        (
            &["cm", "--kind", "v1/ConfigMap", "--plural", "Maps"],
            "--plural \"Maps\"",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["plugin", "new"];
        full.extend_from_slice(args);
        let err = liqoctl_err(&dir, &full);
        assert!(err.contains(expected), "{full:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
        assert!(tree(&dir).is_empty(), "{full:?} wrote {:?}", tree(&dir));
    }

    // A non-empty directory is never touched.
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let err = liqoctl_err(
        &dir,
        &[
            "plugin",
            "new",
            "cm",
            "--kind",
            "v1/ConfigMap",
            "--dir",
            ".",
        ],
    );
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(tree(&dir), ["notes.txt"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "mine"
    );
}

/// What `plugin test` prints for `testdata/basic.input.json` of a ConfigMap plugin named
/// `kit-configmap`, with `--local-cluster london --remote-cluster newyork`.
const BASIC_YAML: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: example
  namespace: default
  labels:
    app: example
    offloading.liqo.io/destination: newyork
    offloading.liqo.io/origin: london
  annotations:
    team: payments
data:
  greeting: hello
";

// The crates built here have names no real plugin uses: cargo may take a crate for another of
// the same name built in the same target directory from another path (examples/plugins/...).
#[test]
fn scaffold_build_and_test_a_plugin() {
    let work = work_dir("kit-configmap");
    let crate_dir = work.join("kit-configmap");

    // plugin new: the crate, with the core group written with a leading slash.
    let out = liqoctl_ok(
        &work,
        &["plugin", "new", "kit-configmap", "--kind", "/v1/ConfigMap"],
    );
    assert!(
        out.contains("Created plugin kit-configmap in kit-configmap (crate liqo-plugin-kit-configmap, reflects v1/ConfigMap, plural configmaps)"),
        "{out}"
    );
    for file in [
        "Cargo.toml",
        "Makefile",
        "README.md",
        ".gitignore",
        "wit/reflection.wit",
        "src/lib.rs",
        "src/transform.rs",
        "tests/golden.rs",
        "testdata/basic.input.json",
        "testdata/basic.expected.json",
        "testdata/skip-annotated.expected.json",
    ] {
        assert!(crate_dir.join(file).is_file(), "{file} is missing");
    }
    let wit = std::fs::read_to_string(crate_dir.join("wit/reflection.wit")).unwrap();
    let host_wit = std::fs::read_to_string(
        std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
        )
        .join("../wit/reflection.wit"),
    )
    .unwrap();
    assert_eq!(wit, host_wit, "the crate carries the host's contract");
    // Refused the second time: the directory is not empty any more.
    let err = liqoctl_err(
        &work,
        &["plugin", "new", "kit-configmap", "--kind", "v1/ConfigMap"],
    );
    assert!(err.contains("is not empty"), "{err}");

    // The generated crate's own tests pass natively.
    lockfile(&crate_dir);
    let started = std::time::Instant::now();
    let out = cargo(&crate_dir, &["test", "--locked"]);
    assert!(
        out.status.success(),
        "cargo test in the new crate: {}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("test golden_cases ... ok"), "{stdout}");
    assert!(
        stdout.contains("test transform::tests::decisions ... ok"),
        "{stdout}"
    );
    eprintln!(
        "cargo test in the generated crate: {:.1?}",
        started.elapsed()
    );

    // plugin build: the component, its size and digest, the manifest read by the runtime.
    let started = std::time::Instant::now();
    let out = liqoctl_ok(&crate_dir, &["plugin", "build", "--locked"]);
    eprintln!("plugin build: {:.1?}", started.elapsed());
    let wasm = kit_target_dir().join("wasm32-wasip2/release/liqo_plugin_kit_configmap.wasm");
    let bytes = std::fs::read(&wasm).unwrap();
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    assert!(
        out.contains(&format!("wasm:     {}\n", wasm.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("size:     {} bytes (", bytes.len())),
        "{out}"
    );
    assert!(out.contains(&format!("digest:   {digest}\n")), "{out}");
    assert!(out.contains("plugin:   kit-configmap 0.1.0\n"), "{out}");
    assert!(
        out.contains("reflects: v1/ConfigMap (configmaps)\n"),
        "{out}"
    );
    let report: Value =
        serde_json::from_str(&liqoctl_ok(&crate_dir, &["plugin", "build", "-o", "json"])).unwrap();
    assert_eq!(report["digest"], json!(digest));
    assert_eq!(report["size"], json!(bytes.len()));
    assert_eq!(report["manifest"]["name"], "kit-configmap");
    assert_eq!(report["manifest"]["reflects"][0]["plural"], "configmaps");
    assert_eq!(report["manifest"]["reflects"][0]["namespaced"], true);
    let wasm_arg = wasm.to_str().unwrap();

    // plugin test: what the host would write, in kubectl's key order.
    let clusters = ["--local-cluster", "london", "--remote-cluster", "newyork"];
    let mut args = vec![
        "plugin",
        "test",
        wasm_arg,
        "--input",
        "testdata/basic.input.json",
    ];
    args.extend(clusters);
    assert_eq!(liqoctl_ok(&crate_dir, &args), BASIC_YAML);

    // --expect: the right golden passes, a wrong one fails with a field-level diff.
    std::fs::write(work.join("right.yaml"), BASIC_YAML).unwrap();
    std::fs::write(
        work.join("wrong.yaml"),
        BASIC_YAML
            .replace("greeting: hello", "greeting: bonjour")
            .replace("team: payments", "team: billing"),
    )
    .unwrap();
    let mut right = args.clone();
    right.extend(["--expect", "../right.yaml"]);
    let out = liqoctl_ok(&crate_dir, &right);
    assert!(out.contains("✔ 1 object match ../right.yaml"), "{out}");
    let mut wrong = args.clone();
    wrong.extend(["--expect", "../wrong.yaml"]);
    let out = liqoctl(&crate_dir, &wrong);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("object 1 (ConfigMap default/example): 2 differences\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  .data.greeting: \"bonjour\" -> \"hello\"\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  .metadata.annotations.team: \"billing\" -> \"payments\"\n"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the output differs from ../wrong.yaml: 2 fields in 1 of 1 objects"),
        "{stderr}"
    );

    // Several documents, a skip, a twin namespace, configuration; JSON output.
    std::fs::write(
        work.join("objects.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: liqo-demo\ndata:\n  k: v\n\
         ---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: liqo-demo\n  \
         annotations:\n    liqo.io/skip-reflection: \"true\"\n---\n",
    )
    .unwrap();
    let out = liqoctl_ok(
        &crate_dir,
        &[
            "plugin",
            "test",
            wasm_arg,
            "--input",
            "../objects.yaml",
            "--remote-namespace",
            "liqo-demo-london",
            "--config-inline",
            r#"{"extraLabels":{"reflected":"yes"}}"#,
            "-o",
            "json",
        ],
    );
    let results: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        results,
        json!([
            {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"},
             "metadata": {"name": "a", "namespace": "liqo-demo-london", "labels": {
                "reflected": "yes",
                "offloading.liqo.io/origin": "local-cluster",
                "offloading.liqo.io/destination": "remote-cluster"}}},
            {"skip": "the ConfigMap is annotated liqo.io/skip-reflection"}
        ])
    );
    // That output is a valid golden file for the same run.
    std::fs::write(work.join("objects.golden.json"), &out).unwrap();
    let out = liqoctl_ok(
        &crate_dir,
        &[
            "plugin",
            "test",
            wasm_arg,
            "--input",
            "../objects.yaml",
            "--remote-namespace",
            "liqo-demo-london",
            "--config-inline",
            r#"{"extraLabels":{"reflected":"yes"}}"#,
            "--expect",
            "../objects.golden.json",
        ],
    );
    assert!(out.contains("✔ 2 objects match"), "{out}");

    // A configuration the plugin rejects: the error is the result, and the status is 1.
    let out = liqoctl(
        &crate_dir,
        &[
            "plugin",
            "test",
            wasm_arg,
            "--input",
            "../objects.yaml",
            "--config-inline",
            r#"{"nope":1}"#,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(
            "plugin kit-configmap rejected ConfigMap liqo-demo/a: unknown configuration key"
        ),
        "{}",
        text(&out)
    );

    // Malformed YAML: one sentence naming the file and the line; nothing else printed.
    std::fs::write(
        work.join("broken.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels: {a: b\ndata: {}\n",
    )
    .unwrap();
    let out = liqoctl(
        &crate_dir,
        &["plugin", "test", wasm_arg, "--input", "../broken.yaml"],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("Error: ../broken.yaml: invalid YAML at line 6, column"),
        "{stderr}"
    );

    // Objects of another kind are refused before the plugin runs.
    std::fs::write(
        work.join("secret.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n",
    )
    .unwrap();
    let err = liqoctl_err(
        &crate_dir,
        &["plugin", "test", wasm_arg, "--input", "../secret.yaml"],
    );
    assert!(
        err.contains("is a v1/Secret, but plugin kit-configmap reflects only v1/ConfigMap"),
        "{err}"
    );

    // Not a component: the host runtime's own error.
    std::fs::write(work.join("not.wasm"), "not wasm").unwrap();
    let err = liqoctl_err(
        &crate_dir,
        &[
            "plugin",
            "test",
            "../not.wasm",
            "--input",
            "testdata/basic.input.json",
        ],
    );
    assert!(err.contains("not a WebAssembly component"), "{err}");
}

/// A new Widget plugin crate named `name` in `work`, with its Cargo.lock. Each variant gets
/// its own name: crates of the same name in different directories must not share a target
/// directory (cargo would take one for the other).
fn widget_crate(work: &Path, name: &str) -> PathBuf {
    liqoctl_ok(
        work,
        &[
            "plugin",
            "new",
            name,
            "--kind",
            "example.com/v1alpha1/Widget",
        ],
    );
    let dir = work.join(name);
    lockfile(&dir);
    dir
}

/// Replaces `from` with `to` in a file of a crate; `from` must be there.
fn edit(file: &Path, from: &str, to: &str) {
    let source = std::fs::read_to_string(file).unwrap();
    assert!(source.contains(from), "{} has no {from:?}", file.display());
    std::fs::write(file, source.replace(from, to)).unwrap();
}

#[test]
fn build_fails_on_compile_errors_and_components_the_host_refuses() {
    let work = work_dir("broken");

    // A compile error: cargo's own message, then liqoctl's.
    let broken = widget_crate(&work, "compile-error");
    edit(
        &broken.join("src/transform.rs"),
        "pub fn manifest() -> Manifest {",
        "pub fn manifest() -> Manifest { let _x: u8 = \"s\";",
    );
    let err = liqoctl_err(&broken, &["plugin", "build"]);
    assert!(
        err.contains("error[E0308]: mismatched types"),
        "cargo's error is shown: {err}"
    );
    assert!(err.contains("src/transform.rs"), "{err}");
    assert!(err.contains("Error: cargo build failed in ."), "{err}");

    // A manifest the host rejects (a cluster-scoped kind): refused at build time.
    let scoped = widget_crate(&work, "cluster-scoped");
    edit(
        &scoped.join("src/transform.rs"),
        "namespaced: true,",
        "namespaced: false,",
    );
    let err = liqoctl_err(&scoped, &["plugin", "build"]);
    assert!(
        err.contains("was built, but the host would refuse it"),
        "{err}"
    );
    assert!(
        err.contains("invalid manifest: reflects cluster-scoped kind example.com/v1alpha1/Widget"),
        "{err}"
    );

    // A component built against another version of the contract.
    let other = widget_crate(&work, "other-wit");
    edit(
        &other.join("wit/reflection.wit"),
        "package liqo:reflection@0.1.0;",
        "package liqo:reflection@0.2.0;",
    );
    let err = liqoctl_err(&other, &["plugin", "build"]);
    assert!(
        err.contains(
            "built against liqo:reflection@0.2.0, but this host implements liqo:reflection@0.1.0"
        ),
        "{err}"
    );

    // Not a crate at all.
    let err = liqoctl_err(&work, &["plugin", "build", "nowhere"]);
    assert!(err.contains("nowhere has no Cargo.toml"), "{err}");
}
