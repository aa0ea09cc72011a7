//! Builds the built-in reflection plugins for `wasm32-wasip2` and places the components in
//! `OUT_DIR`, so `cargo build` on a fresh clone produces a host with its plugins embedded and no
//! `.wasm` file is ever committed.
//!
//! The plugins are built by a nested `cargo build` with its own target directory: sharing the
//! outer build's target directory would deadlock on Cargo's build lock.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (package name, artifact file stem, name in OUT_DIR). The last entry is a test-only guest
/// that misbehaves on request; it is never embedded in the binary, only its path is exported.
const PLUGINS: &[(&str, &str, &str)] = &[
    ("liqo-plugin-service", "liqo_plugin_service", "service.wasm"),
    (
        "liqo-plugin-endpointslice",
        "liqo_plugin_endpointslice",
        "endpointslice.wasm",
    ),
    (
        "liqo-plugin-namespace",
        "liqo_plugin_namespace",
        "namespace.wasm",
    ),
    (
        "liqo-test-plugin-misbehaving",
        "liqo_test_plugin_misbehaving",
        "misbehaving.wasm",
    ),
];

const WASM_TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("host/ has a parent")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));

    for watched in ["plugins", "wit", "Cargo.lock", "Cargo.toml"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=LIQO_PLUGIN_TARGET_DIR");

    let target_dir = plugin_target_dir(&workspace);
    build_plugins(&workspace, &target_dir);

    let artifacts = target_dir.join(WASM_TARGET).join(PROFILE);
    for (package, stem, out_name) in PLUGINS {
        let built = artifacts.join(format!("{stem}.wasm"));
        let dest = out_dir.join(out_name);
        std::fs::copy(&built, &dest).unwrap_or_else(|err| {
            panic!(
                "plugin {package} was built but {} could not be copied: {err}",
                built.display()
            )
        });
    }
    println!(
        "cargo:rustc-env=LIQO_TEST_PLUGIN_MISBEHAVING={}",
        out_dir.join("misbehaving.wasm").display()
    );
}

/// The nested build's target directory: `$LIQO_PLUGIN_TARGET_DIR`, else `wasm-plugins/` inside
/// the outer target directory (so `CARGO_TARGET_DIR` caching in CI also caches plugin builds).
fn plugin_target_dir(workspace: &Path) -> PathBuf {
    if let Ok(dir) = env::var("LIQO_PLUGIN_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let outer = env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace.join("target"));
    outer.join("wasm-plugins")
}

fn build_plugins(workspace: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .arg("build")
        .arg("--locked")
        .arg("--target")
        .arg(WASM_TARGET)
        .arg("--profile")
        .arg(PROFILE)
        .arg("--target-dir")
        .arg(target_dir);
    for (package, _, _) in PLUGINS {
        cmd.arg("-p").arg(package);
    }
    // The outer build's compiler settings (clippy's wrapper, coverage flags, a host-only
    // `--target`) must not leak into the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let output = cmd
        .output()
        .unwrap_or_else(|err| panic!("could not run cargo to build the plugins: {err}"));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("may not be installed")
            || stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `core`")
            || stderr.contains("can't find crate for `std`")
        {
            "\nhint: the wasm32-wasip2 target is missing; run `rustup target add wasm32-wasip2`"
        } else {
            ""
        };
        panic!("building the built-in plugins for {WASM_TARGET} failed:\n{stderr}{hint}");
    }
}
