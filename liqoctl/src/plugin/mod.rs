//! `liqoctl plugin ...`: the kit for writing, checking and installing reflection plugins.
//!
//! - `new`: scaffolds a standalone Rust crate for one kind ([`new`], templates in `templates/`);
//! - `build`: `cargo build --release --target wasm32-wasip2`, then loads the component with the
//!   host's runtime and prints its path, size, digest and manifest ([`build`]);
//! - `test`: runs the component on objects from a file, through the same runtime, limits and
//!   invariants as the host, and compares with a golden file ([`test`]);
//! - `diff`: what the plugin would change in a peer, object by object ([`diff`]);
//! - `install`, `uninstall`, `list`: ReflectionPlugin objects backed by a ConfigMap ([`install`]).
//!
//! Every command that reads a component loads it with [`liqo_host::plugin::PluginRuntime`], so a
//! component the host would refuse is refused here first, with the host's message.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use liqo_host::plugin::{
    PluginLimits, PluginMetrics, PluginRuntime, ReflectorPlugin, RuntimeConfig,
};
use serde_json::Value;

use crate::context::GlobalArgs;

pub mod accept;
pub mod build;
pub mod diff;
pub mod docs;
pub mod fielddiff;
pub mod install;
pub mod kind;
pub mod new;
pub mod templates;
pub mod test;

/// `liqoctl plugin ...`.
#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Create a new reflection plugin crate for one kind.
    ///
    /// The crate is standalone (its own empty [workspace], so it builds anywhere) and holds:
    /// src/transform.rs (the decision, plain Rust over serde_json, with table tests),
    /// src/lib.rs (the wasm export, wit-bindgen), wit/reflection.wit (this host's contract),
    /// tests/golden.rs with testdata/*.input.json -> *.expected.json, a Makefile and a README.
    /// The default transform copies name, labels, annotations and content (spec, data, ...)
    /// and skips objects annotated liqo.io/skip-reflection.
    ///
    /// Examples:
    ///   liqoctl plugin new configmap --kind v1/ConfigMap
    ///   liqoctl plugin new widgets --kind example.com/v1alpha1/Widget --dir plugins/widgets
    #[command(verbatim_doc_comment)]
    New(new::NewArgs),
    /// Build a plugin crate into a wasm component and check it with the host runtime.
    ///
    /// Runs `cargo build --release --target wasm32-wasip2` in DIR (installing the rustup target
    /// if needed), then loads the component exactly as the host would and prints its path,
    /// size, sha256 digest and manifest. A component the host would refuse (wrong WIT
    /// version, invalid manifest) fails here.
    ///
    /// Examples:
    ///   liqoctl plugin build
    ///   liqoctl plugin build plugins/widgets -o json
    #[command(verbatim_doc_comment)]
    Build(build::BuildArgs),
    /// Run a plugin on objects from a file, as the host would, and print the result.
    ///
    /// Each document of --input is reflected in turn through the host's runtime (same limits,
    /// same invariants: twin namespace, ownership labels, no server-owned fields). The result
    /// is the remote object the host would apply, or `skip: <reason>`, or `error: <message>`.
    /// With --expect, the result is compared field by field with a golden file: differences
    /// are printed and the exit status is 1.
    ///
    /// Examples:
    ///   liqoctl plugin test plugin.wasm --input configmap.yaml
    ///   liqoctl plugin test plugin.wasm --input configmap.yaml --expect configmap.golden.yaml
    ///   kubectl get configmap app -o yaml | liqoctl plugin test plugin.wasm --input -
    #[command(verbatim_doc_comment)]
    Test(test::TestArgs),
    /// Show what a plugin would change in a peer, for the live objects of a namespace.
    ///
    /// For every object of the plugin's kinds in the offloaded namespace, computes what the
    /// host would write (plugin + invariants), reads the remote copy from the peer with the
    /// peering credential, and prints the differences in the fields the plugin sets (plus
    /// labels and annotations). Nothing is written.
    ///
    /// Example:
    ///   liqoctl plugin diff configmap.wasm --peer newyork --namespace liqo-demo
    #[command(verbatim_doc_comment)]
    Diff(diff::DiffArgs),
    /// Install or update a plugin in this cluster (a ConfigMap and a ReflectionPlugin).
    ///
    /// The component is checked locally first (loaded with the host's runtime); then the
    /// ConfigMap liqo-plugin-NAME (binaryData plugin.wasm) and the ReflectionPlugin NAME are
    /// applied (server-side apply, field manager liqoctl). By default liqoctl waits until the
    /// host reports the plugin Loaded with the same digest.
    ///
    /// Examples:
    ///   liqoctl plugin install target/wasm32-wasip2/release/liqo_plugin_configmap.wasm
    ///   liqoctl plugin install plugin.wasm --name configmaps --config-inline '{"extraLabels":{"a":"b"}}'
    #[command(verbatim_doc_comment)]
    Install(install::InstallArgs),
    /// Remove a plugin: its ReflectionPlugin, then its ConfigMap.
    ///
    /// Example:
    ///   liqoctl plugin uninstall configmap
    #[command(verbatim_doc_comment)]
    Uninstall(install::UninstallArgs),
    /// List the installed plugins and whether the host loaded them.
    ///
    /// Example:
    ///   liqoctl plugin list -o wide
    #[command(verbatim_doc_comment)]
    List(install::ListArgs),
    /// On a provider: let consumers reflect a kind into this cluster.
    ///
    /// Peering identities write only the kinds this cluster accepts (Services and
    /// EndpointSlices always), only inside the twin namespaces their consumer created, and only
    /// objects carrying their own origin labels. Accepting a kind adds a ClusterRole labelled
    /// liqo.io/aggregate-to-peering=true, aggregated into liqo-peering-reflected-kinds.
    ///
    /// Kinds that grant power over this cluster are refused (Pods and workloads, RBAC,
    /// ServiceAccounts, quotas, Endpoints, the cluster's control groups, liqo's own kinds,
    /// cluster-scoped kinds; see KIND below), and then nothing is written. Secrets are refused
    /// unless --allow-secrets is given, which prints a warning saying what it allows.
    ///
    /// Examples:
    ///   liqoctl plugin accept v1/ConfigMap
    ///   liqoctl plugin accept example.com/v1alpha1/Widget
    ///   liqoctl plugin accept v1/Secret --allow-secrets
    ///   liqoctl plugin accept v1/ConfigMap --revoke
    #[command(verbatim_doc_comment)]
    Accept(accept::AcceptArgs),
}

/// Runs `liqoctl plugin ...`.
pub async fn run(global: &GlobalArgs, cmd: PluginCommand) -> Result<()> {
    match cmd {
        PluginCommand::New(args) => new::run(args),
        PluginCommand::Build(args) => build::run(args),
        PluginCommand::Test(args) => test::run(args),
        PluginCommand::Diff(args) => diff::run(global, args).await,
        PluginCommand::Install(args) => install::install(global, args).await,
        PluginCommand::Uninstall(args) => install::uninstall(global, args).await,
        PluginCommand::List(args) => install::list(global, args).await,
        PluginCommand::Accept(args) => accept::run(global, args).await,
    }
}

/// `--config FILE` / `--config-inline JSON`: the plugin configuration, a JSON object.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// The plugin configuration: a file with one JSON (or YAML) object. What it may contain
    /// is documented by the plugin.
    #[arg(long, value_name = "FILE", conflicts_with = "config_inline")]
    pub config: Option<PathBuf>,
    /// The plugin configuration as inline JSON, for example '{"extraLabels":{"a":"b"}}'.
    #[arg(long, value_name = "JSON")]
    pub config_inline: Option<String>,
}

impl ConfigArgs {
    /// The configuration as a JSON object (`{}` when none was given). Errors name the file.
    pub fn value(&self) -> Result<Option<Value>> {
        let (value, origin) = match (&self.config, &self.config_inline) {
            (Some(path), _) => {
                let docs = docs::read_documents(path)?;
                let [doc] = <[Value; 1]>::try_from(docs).map_err(|docs| {
                    anyhow::anyhow!(
                        "{}: expected one JSON object, found {} documents",
                        path.display(),
                        docs.len()
                    )
                })?;
                (doc, path.display().to_string())
            }
            (None, Some(text)) => {
                let value: Value = serde_json::from_str(text)
                    .with_context(|| format!("--config-inline {text:?} is not valid JSON"))?;
                (value, "--config-inline".to_string())
            }
            (None, None) => return Ok(None),
        };
        if !value.is_object() {
            bail!("{origin}: the plugin configuration must be a JSON object ({{...}})");
        }
        Ok(Some(value))
    }

    /// The configuration as JSON text for the runtime (`{}` when none was given).
    pub fn json(&self) -> Result<String> {
        Ok(self
            .value()?
            .map(|v| v.to_string())
            .unwrap_or_else(|| "{}".into()))
    }
}

/// A runtime like the host's, with a single warm instance per plugin (one call at a time) and
/// the host's on-disk compile cache, so repeated runs on the same component start fast.
pub fn runtime() -> Result<PluginRuntime> {
    let config = RuntimeConfig {
        max_idle_instances: 1,
        // Memory budgets are the host's business (its container limit, its other plugins):
        // a local run checks the plugin, not this machine's memory.
        container_memory_limit: None,
        ..RuntimeConfig::default()
    };
    PluginRuntime::new(config, PluginMetrics::default())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("starting the plugin runtime")
}

/// Reads a component file. The error names the file.
pub fn read_component(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading plugin {}", path.display()))
}

/// Loads a reflector component exactly as the host does. The error is the host's (it names the
/// file, and for example the WIT versions or the manifest problem).
pub fn load(
    runtime: &PluginRuntime,
    path: &Path,
    bytes: &[u8],
    limits: PluginLimits,
    config: &str,
) -> Result<Arc<ReflectorPlugin>> {
    runtime
        .load_reflector(&path.display().to_string(), bytes, limits, config)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// `sha256:<hex>` of component bytes, as in `ReflectionPlugin.status.digest`.
pub fn digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The kinds a manifest reflects, as `apiVersion/Kind` (`v1/ConfigMap`, `apps/v1/Deployment`).
pub fn kinds_of(plugin: &ReflectorPlugin) -> Vec<String> {
    plugin
        .manifest()
        .reflects
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_prefixed_sha256() {
        assert_eq!(
            digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn config_inline_must_be_an_object() {
        let args = ConfigArgs {
            config: None,
            config_inline: Some("[1]".into()),
        };
        let err = format!("{:#}", args.json().unwrap_err());
        assert!(err.contains("must be a JSON object"), "{err}");
        let args = ConfigArgs {
            config: None,
            config_inline: Some("{nope".into()),
        };
        let err = format!("{:#}", args.json().unwrap_err());
        assert!(err.contains("not valid JSON"), "{err}");
        assert_eq!(ConfigArgs::default().json().unwrap(), "{}");
    }
}
