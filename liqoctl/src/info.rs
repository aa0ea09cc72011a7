//! `liqoctl info`.

use anyhow::{Result, bail};
use clap::Args;

use crate::context::GlobalArgs;
use crate::output::OutputFormat;

/// Flags of `liqoctl info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Output format (default: a human summary).
    #[arg(short, long, value_enum)]
    pub output: Option<OutputFormat>,
}

/// Runs `liqoctl info`.
pub async fn info(_global: &GlobalArgs, _args: InfoArgs) -> Result<()> {
    bail!("liqoctl info is not implemented yet")
}
