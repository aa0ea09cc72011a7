//! `liqoctl`: peer clusters and offload namespaces, with the verbs and flags Liqo users know.
//!
//! This is the command skeleton: every verb and flag of the seed tutorial is declared so
//! `--help` is accurate; verbs that are not implemented yet say so and exit with status 2.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Peer Kubernetes clusters and offload namespaces to them.
#[derive(Parser)]
#[command(name = "liqoctl", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command accepts.
#[derive(Args)]
struct GlobalArgs {
    /// Path to the kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, env = "KUBECONFIG")]
    kubeconfig: Option<String>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Install the liqo host and its API in a cluster.
    Install {
        /// This cluster's id (default: a generated name; a re-install keeps the existing id).
        #[arg(long)]
        cluster_id: Option<String>,
        /// Do not deploy the host (run it as a local process instead).
        #[arg(long)]
        skip_deployment: bool,
    },
    /// Generate commands and resources.
    Generate {
        #[command(subcommand)]
        what: GenerateCommand,
    },
    /// Peer with a provider cluster.
    Peer {
        #[command(subcommand)]
        mode: PeerCommand,
    },
    /// Remove a peering.
    Unpeer {
        #[command(subcommand)]
        mode: UnpeerCommand,
    },
    /// Offload a namespace to peered clusters.
    Offload {
        #[command(subcommand)]
        what: OffloadCommand,
    },
    /// Stop offloading a namespace.
    Unoffload {
        #[command(subcommand)]
        what: UnoffloadCommand,
    },
    /// Remove the liqo host from a cluster.
    Uninstall {
        /// Also remove the CRDs.
        #[arg(long)]
        purge: bool,
    },
    /// Show this cluster's identity and its peerings.
    Info {
        /// Output format.
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
}

#[derive(Subcommand)]
enum GenerateCommand {
    /// Print the command a consumer runs to peer with this (provider) cluster.
    PeerCommand {
        /// Print only the command, so `echo "$PEER" | bash` works.
        #[arg(long)]
        only_command: bool,
    },
}

#[derive(Subcommand)]
enum PeerCommand {
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

#[derive(Subcommand)]
enum UnpeerCommand {
    /// Remove an out-of-band peering.
    OutOfBand {
        /// Name of the provider cluster.
        name: String,
    },
}

#[derive(Subcommand)]
enum OffloadCommand {
    /// Offload a namespace.
    Namespace {
        /// The namespace to offload.
        namespace: String,
        /// How the remote namespace is named.
        #[arg(long, value_enum, default_value_t = MappingStrategy::DefaultName)]
        namespace_mapping_strategy: MappingStrategy,
        /// The remote namespace name (with SelectedName).
        #[arg(long)]
        remote_namespace_name: Option<String>,
        /// Where pods run; only Local is supported.
        #[arg(long, default_value = "LocalAndRemote")]
        pod_offloading_strategy: String,
    },
}

#[derive(Subcommand)]
enum UnoffloadCommand {
    /// Stop offloading a namespace.
    Namespace {
        /// The namespace.
        namespace: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
#[value(rename_all = "verbatim")]
#[allow(
    clippy::enum_variant_names,
    reason = "the variants are Liqo's flag values"
)]
enum MappingStrategy {
    EnforceSameName,
    DefaultName,
    SelectedName,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Yaml,
    Json,
}

fn main() {
    let cli = Cli::parse();
    let _ = (&cli.global.kubeconfig, &cli.global.context);
    let verb = match cli.command {
        Command::Install { .. } => "install",
        Command::Generate { .. } => "generate peer-command",
        Command::Peer { .. } => "peer out-of-band",
        Command::Unpeer { .. } => "unpeer out-of-band",
        Command::Offload { .. } => "offload namespace",
        Command::Unoffload { .. } => "unoffload namespace",
        Command::Uninstall { .. } => "uninstall",
        Command::Info { .. } => "info",
    };
    eprintln!("liqoctl {verb}: not implemented yet in this build");
    std::process::exit(2);
}
