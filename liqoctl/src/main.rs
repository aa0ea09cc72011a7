//! `liqoctl`: peer clusters and offload namespaces, with the verbs and flags Liqo users know.
//!
//! Each verb lives in its own module with its flags (`clap` derive) and its `run` function;
//! this file only wires them. Shared plumbing: [`context`] (kubeconfig and context flags, the
//! Kubernetes client), [`output`] (`-o yaml|json`), [`progress`] (spinners for long waits).

use anyhow::Result;
use clap::{Parser, Subcommand};

mod context;
mod info;
mod install;
mod offload;
mod output;
mod peer;
mod plugin;
mod progress;

/// Peer Kubernetes clusters and offload namespaces to them.
///
/// A typical session, as in Liqo's "Offloading a Service" tutorial:
///
///   PEER=$(liqoctl generate peer-command --only-command --kubeconfig $KUBECONFIG_NEWYORK)
///   echo "$PEER" | bash
///   liqoctl offload namespace liqo-demo --namespace-mapping-strategy EnforceSameName \
///       --pod-offloading-strategy Local
///
/// or, in Liqo v1's form, with both kubeconfigs at hand:
///
///   liqoctl peer --remote-kubeconfig "$KUBECONFIG_NEWYORK"
///   liqoctl offload namespace liqo-demo ...
///   liqoctl unpeer --remote-kubeconfig "$KUBECONFIG_NEWYORK" --skip-confirm
#[derive(Parser)]
#[command(name = "liqoctl", version, about, verbatim_doc_comment)]
struct Cli {
    #[command(flatten)]
    global: context::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the liqo host and its API in a cluster.
    Install(install::InstallArgs),
    /// Remove the liqo host from a cluster.
    Uninstall(install::UninstallArgs),
    /// Generate commands and resources.
    #[command(subcommand)]
    Generate(peer::GenerateCommand),
    /// Peer with a provider cluster.
    ///
    /// Liqo v1's form, with admin kubeconfigs of both clusters:
    ///
    ///   liqoctl peer --remote-kubeconfig "$KUBECONFIG_NEWYORK"
    ///
    /// makes the least-privilege identity on the provider (as `generate peer-command`) and peers
    /// with it here (as `peer out-of-band`). Without access to the provider's kubeconfig, its
    /// admin runs `liqoctl generate peer-command` and you run the printed `peer out-of-band`.
    #[command(verbatim_doc_comment)]
    Peer(peer::PeerArgs),
    /// Remove a peering: `--remote-kubeconfig` (Liqo v1; both sides) or `out-of-band NAME`.
    Unpeer(peer::UnpeerArgs),
    /// Offload a namespace to peered clusters.
    #[command(subcommand)]
    Offload(offload::OffloadCommand),
    /// Stop offloading a namespace.
    #[command(subcommand)]
    Unoffload(offload::UnoffloadCommand),
    /// Show this cluster's identity and its peerings.
    Info(info::InfoArgs),
    /// Write, build, test, compare and install reflection plugins (WebAssembly components).
    ///
    /// The authoring loop:
    ///
    ///   liqoctl plugin new configmap --kind v1/ConfigMap    # a Rust crate, tests included
    ///   cd configmap && make test                            # native tests and golden files
    ///   liqoctl plugin build                                 # wasm component, checked by the host runtime
    ///   liqoctl plugin test target/wasm32-wasip2/release/liqo_plugin_configmap.wasm --input cm.yaml
    ///   liqoctl plugin diff PLUGIN.wasm --peer newyork --namespace liqo-demo
    ///   liqoctl plugin install PLUGIN.wasm                   # ConfigMap + ReflectionPlugin
    #[command(subcommand, verbatim_doc_comment)]
    Plugin(plugin::PluginCommand),
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("Error: cannot start the async runtime: {err}");
            std::process::exit(1);
        }
    };
    let result: Result<()> = runtime.block_on(async move {
        let global = cli.global;
        match cli.command {
            Command::Install(args) => install::install(&global, args).await,
            Command::Uninstall(args) => install::uninstall(&global, args).await,
            Command::Generate(cmd) => peer::generate(&global, cmd).await,
            Command::Peer(cmd) => peer::peer(&global, cmd).await,
            Command::Unpeer(cmd) => peer::unpeer(&global, cmd).await,
            Command::Offload(cmd) => offload::offload(&global, cmd).await,
            Command::Unoffload(cmd) => offload::unoffload(&global, cmd).await,
            Command::Info(args) => info::info(&global, args).await,
            Command::Plugin(cmd) => plugin::run(&global, cmd).await,
        }
    });
    if let Err(err) = result {
        // `--exit-code` style results: the status says it all, the output was printed.
        if let Some(plugin::diff::ExitStatus(code)) = err.downcast_ref() {
            std::process::exit(*code);
        }
        // One clear sentence per cause, outermost first, like kubectl.
        eprintln!("Error: {err:#}");
        std::process::exit(1);
    }
}
