//! `liqoctl install` and `liqoctl uninstall`.

use anyhow::{Result, bail};
use clap::Args;

use crate::context::GlobalArgs;

/// Flags of `liqoctl install`.
#[derive(Args, Debug)]
pub struct InstallArgs {
    /// This cluster's id (default: a generated name; a re-install keeps the existing id).
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// Do not deploy the host (run it as a local process instead).
    #[arg(long)]
    pub skip_deployment: bool,
}

/// Flags of `liqoctl uninstall`.
#[derive(Args, Debug)]
pub struct UninstallArgs {
    /// Also remove the CRDs.
    #[arg(long)]
    pub purge: bool,
}

/// Runs `liqoctl install`.
pub async fn install(_global: &GlobalArgs, _args: InstallArgs) -> Result<()> {
    bail!("liqoctl install is not implemented yet")
}

/// Runs `liqoctl uninstall`.
pub async fn uninstall(_global: &GlobalArgs, _args: UninstallArgs) -> Result<()> {
    bail!("liqoctl uninstall is not implemented yet")
}
