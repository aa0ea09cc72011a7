//! `liqoctl generate peer-command`, `liqoctl peer out-of-band`, `liqoctl unpeer out-of-band`.

use anyhow::{Result, bail};
use clap::Subcommand;

use crate::context::GlobalArgs;

/// `liqoctl generate ...`.
#[derive(Subcommand, Debug)]
pub enum GenerateCommand {
    /// Print the command a consumer runs to peer with this (provider) cluster.
    PeerCommand {
        /// Print only the command, so `echo "$PEER" | bash` works.
        #[arg(long)]
        only_command: bool,
    },
}

/// `liqoctl peer ...`.
#[derive(Subcommand, Debug)]
pub enum PeerCommand {
    /// Peer using the credentials printed by `liqoctl generate peer-command`.
    OutOfBand {
        /// Name of the provider cluster.
        name: String,
        /// URL of the provider's API server.
        #[arg(long)]
        api_server_url: String,
        /// Base64 CA bundle of the provider's API server.
        #[arg(long)]
        ca_data: String,
        /// The provider's cluster id.
        #[arg(long)]
        cluster_id: String,
        /// The peering token.
        #[arg(long)]
        token: String,
    },
}

/// `liqoctl unpeer ...`.
#[derive(Subcommand, Debug)]
pub enum UnpeerCommand {
    /// Remove an out-of-band peering.
    OutOfBand {
        /// Name of the provider cluster.
        name: String,
    },
}

/// Runs `liqoctl generate ...`.
pub async fn generate(_global: &GlobalArgs, _cmd: GenerateCommand) -> Result<()> {
    bail!("liqoctl generate peer-command is not implemented yet")
}

/// Runs `liqoctl peer ...`.
pub async fn peer(_global: &GlobalArgs, _cmd: PeerCommand) -> Result<()> {
    bail!("liqoctl peer out-of-band is not implemented yet")
}

/// Runs `liqoctl unpeer ...`.
pub async fn unpeer(_global: &GlobalArgs, _cmd: UnpeerCommand) -> Result<()> {
    bail!("liqoctl unpeer out-of-band is not implemented yet")
}
