//! `-o yaml|json`, as kubectl users expect.

use anyhow::Result;
use clap::ValueEnum;
use serde::Serialize;

/// Output formats of commands that print objects.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OutputFormat {
    /// YAML, like `kubectl get -o yaml`.
    Yaml,
    /// JSON, like `kubectl get -o json`.
    Json,
}

/// Prints `value` in `format`.
pub fn print<T: Serialize>(value: &T, format: OutputFormat) -> Result<()> {
    match format {
        OutputFormat::Yaml => print!("{}", serde_yaml::to_string(value)?),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(value)?),
    }
    Ok(())
}
