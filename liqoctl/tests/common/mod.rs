//! Helpers shared by liqoctl's integration tests: the binaries under test and how to run
//! liqoctl against one cluster of the test environment.

#![allow(dead_code, reason = "each test binary uses a subset")]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use testsupport::TestEnv;

/// The liqoctl binary under test.
pub fn liqoctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_liqoctl"))
}

/// The host binary, built by `cargo test --workspace` next to liqoctl.
pub fn liqo_host_bin() -> PathBuf {
    let path = liqoctl_bin().with_file_name("liqo-host");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p liqo-host` (make test does)",
        path.display()
    );
    path
}

/// Runs liqoctl with `args` against `cluster` (its kubeconfig, never the caller's $KUBECONFIG).
pub fn run_liqoctl(env: &TestEnv, cluster: &str, args: &[&str]) -> Output {
    Command::new(liqoctl_bin())
        .args(args)
        .arg("--kubeconfig")
        .arg(env.kubeconfig_path(cluster))
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("running liqoctl")
}
