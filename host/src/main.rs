//! `liqo-host`: the host runtime binary.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use liqo_host::plugin::{PluginLimits, PluginMetrics, PluginRuntime, RuntimeConfig, builtin};

mod cmd;

/// The liqo host runtime: reflects offloaded namespaces to peered clusters through WASM plugins.
#[derive(Parser)]
#[command(name = "liqo-host", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the host: watches ForeignClusters and NamespaceOffloadings and reflects offloaded
    /// namespaces to peers. Serves /metrics, /healthz and /readyz.
    Run(Box<cmd::run::RunArgs>),
    /// Lists the built-in plugins with their manifests (loaded through the real runtime).
    Plugins {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Prints the CustomResourceDefinitions as multi-document YAML, or writes one file per CRD.
    Crd {
        /// Write `<plural>.<group>.yaml` files into this directory (for example `deploy/crds`)
        /// instead of printing to stdout.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Yaml,
    Json,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")?
            .block_on(cmd::run::run(*args)),
        Command::Plugins { output } => {
            liqo_host::telemetry::init_tracing(false);
            list_plugins(output)
        }
        Command::Crd { out_dir } => write_crds(out_dir.as_deref()),
    }
}

fn write_crds(out_dir: Option<&Path>) -> Result<()> {
    let crds = liqo_host::api::crds();
    let Some(dir) = out_dir else {
        for crd in &crds {
            print!("---\n{}", liqo_host::api::crd_yaml(crd));
        }
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for crd in &crds {
        let path = dir.join(liqo_host::api::crd_file_name(crd));
        std::fs::write(&path, liqo_host::api::crd_yaml(crd))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn list_plugins(format: Format) -> Result<()> {
    let runtime = PluginRuntime::new(RuntimeConfig::default(), PluginMetrics::default())
        .context("starting the plugin runtime")?;
    let mut rows = Vec::new();
    for (source, bytes) in builtin::REFLECTORS {
        let plugin = runtime
            .load_reflector(source, bytes, PluginLimits::builtin(), "{}")
            .with_context(|| format!("loading {source}"))?;
        rows.push(serde_json::json!({
            "source": source,
            "digest": plugin.digest(),
            "sizeBytes": bytes.len(),
            "manifest": plugin.manifest(),
        }));
    }
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Yaml => print!("{}", serde_yaml_ng::to_string(&rows)?),
        Format::Table => {
            println!(
                "{:<24} {:<16} {:<10} {:<32} SIZE",
                "SOURCE", "NAME", "VERSION", "REFLECTS"
            );
            for row in &rows {
                let m = &row["manifest"];
                let kinds: Vec<String> = m["reflects"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|k| k["kind"].as_str().unwrap_or("?").to_string())
                    .collect();
                println!(
                    "{:<24} {:<16} {:<10} {:<32} {}",
                    row["source"].as_str().unwrap_or(""),
                    m["name"].as_str().unwrap_or(""),
                    m["version"].as_str().unwrap_or(""),
                    kinds.join(","),
                    row["sizeBytes"]
                );
            }
        }
    }
    Ok(())
}
