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
    /// Do not ask before destructive changes (unpeer, unoffload, uninstall). Without a terminal
    /// on stdin nothing is asked anyway, so scripts never block.
    #[arg(long, global = true)]
    pub skip_confirm: bool,
}

/// Asks `question` on the terminal before a destructive change, unless `--skip-confirm` or
/// stdin is not a terminal. Anything but `y`/`yes` aborts with nothing changed.
pub fn confirm(global: &GlobalArgs, question: &str) -> Result<()> {
    use std::io::IsTerminal as _;
    if global.skip_confirm || !std::io::stdin().is_terminal() {
        return Ok(());
    }
    eprint!("{question} [y/N]: ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("reading the confirmation")?;
    confirmed(&answer)
}

/// Whether `answer` (a line typed at the prompt) confirms.
fn confirmed(answer: &str) -> Result<()> {
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => anyhow::bail!("aborted: nothing was changed (pass --skip-confirm to not be asked)"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_confirms() {
        for yes in ["y\n", "Y", " yes \n", "YES"] {
            assert!(confirmed(yes).is_ok(), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yep", "sure"] {
            let err = confirmed(no).unwrap_err().to_string();
            assert!(err.contains("nothing was changed"), "{no:?}: {err}");
        }
    }
}
