//! Helpers both benchmark binaries (`liqo-bench`, `liqo-bench-transport`) use.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use testsupport::TestEnv;

/// Runs a command line with bash, `liqoctl` (from `liqoctl`'s directory) and kubectl on PATH
/// and KUBECONFIG set to london, as the tutorial's user has it (the peer command runs so).
pub fn shell_london(env: &TestEnv, liqoctl: &Path, line: &str) -> Result<()> {
    let mut path: Vec<PathBuf> = [liqoctl.parent(), env.kubectl_bin().parent()]
        .into_iter()
        .flatten()
        .map(Path::to_path_buf)
        .collect();
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let out = Command::new("bash")
        .arg("-c")
        .arg(line)
        .env("PATH", std::env::join_paths(path).context("PATH")?)
        .env("KUBECONFIG", env.kubeconfig_path("london"))
        .stdin(Stdio::null())
        .output()
        .context("running bash")?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM (never, if the SIGTERM handler cannot be installed).
pub async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
