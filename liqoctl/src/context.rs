//! The flags every command accepts and the Kubernetes client they select.

use anyhow::{Context as _, Result};
use clap::Args;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Flags every command accepts.
#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, env = "KUBECONFIG")]
    pub kubeconfig: Option<String>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
}

impl GlobalArgs {
    /// The client configuration selected by `--kubeconfig` and `--context`.
    pub async fn config(&self) -> Result<kube::Config> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {path}"))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .with_context(|| format!("loading kubeconfig {path}"))
            }
            None => kube::Config::from_kubeconfig(&options)
                .await
                .context("no kubeconfig found: pass --kubeconfig or set KUBECONFIG"),
        }
    }

    /// A client for the selected cluster.
    pub async fn client(&self) -> Result<Client> {
        Client::try_from(self.config().await?).context("creating the Kubernetes client")
    }
}
