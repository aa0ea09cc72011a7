//! `liqo-host`: the host runtime binary.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use liqo_host::plugin::{PluginLimits, PluginMetrics, PluginRuntime, RuntimeConfig, builtin};

/// The liqo host runtime: reflects offloaded namespaces to peered clusters through WASM plugins.
#[derive(Parser)]
#[command(name = "liqo-host", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lists the built-in plugins with their manifests (loaded through the real runtime).
    Plugins {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Yaml,
    Json,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Plugins { output } => list_plugins(output),
    }
}

fn list_plugins(format: Format) -> Result<()> {
    let runtime = PluginRuntime::new(RuntimeConfig::default(), PluginMetrics::default())
        .context("starting the plugin runtime")?;
    let mut rows = Vec::new();
    for (source, bytes) in builtin::REFLECTORS {
        let plugin = runtime
            .load_reflector(source, bytes, PluginLimits::default(), "{}")
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
        Format::Yaml => print!("{}", serde_yaml::to_string(&rows)?),
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
