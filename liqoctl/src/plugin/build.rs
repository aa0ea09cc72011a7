//! `liqoctl plugin build [DIR]`: `cargo build --release --target wasm32-wasip2`, then the
//! component is loaded with the host's runtime and described.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use liqo_host::plugin::{Manifest, PluginLimits};
use serde::Serialize;
use serde_json::Value;

use crate::output::{self, OutputFormat};

/// The target plugins are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Flags of `liqoctl plugin build`.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The plugin crate: a directory with a Cargo.toml (created by `liqoctl plugin new`).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Passed to cargo: fail instead of updating Cargo.lock.
    #[arg(long)]
    pub locked: bool,
    /// Passed to cargo: use only crates already downloaded.
    #[arg(long)]
    pub offline: bool,
    /// Print the result as YAML or JSON (path, size, digest, manifest) instead of a summary.
    #[arg(short, long, value_enum)]
    pub output: Option<OutputFormat>,
}

/// What `plugin build` reports (the `-o json|yaml` document).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct BuildReport {
    /// Path of the component.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// `sha256:<hex>`, as in `ReflectionPlugin.status.digest`.
    pub digest: String,
    /// The manifest read by the host runtime.
    pub manifest: Manifest,
}

/// Runs `liqoctl plugin build`.
pub fn run(args: BuildArgs) -> Result<()> {
    let manifest_path = args.dir.join("Cargo.toml");
    if !manifest_path.is_file() {
        bail!(
            "{} has no Cargo.toml: run liqoctl plugin build in a plugin crate, or pass its \
             directory (create one with liqoctl plugin new NAME --kind GROUP/VERSION/KIND)",
            args.dir.display()
        );
    }
    ensure_target(&args.dir)?;
    let wasm = cargo_build(&args.dir, args.locked, args.offline)?;

    let bytes = super::read_component(&wasm)?;
    let runtime = super::runtime()?;
    let plugin = super::load(&runtime, &wasm, &bytes, PluginLimits::default(), "{}")
        .with_context(|| format!("{} was built, but the host would refuse it", wasm.display()))?;
    let report = BuildReport {
        path: wasm,
        size: bytes.len() as u64,
        digest: super::digest(&bytes),
        manifest: plugin.manifest().clone(),
    };
    match args.output {
        Some(format) => output::print(&report, format)?,
        None => print_summary(&report),
    }
    Ok(())
}

fn print_summary(report: &BuildReport) {
    let m = &report.manifest;
    let kinds = |kinds: &[liqo_host::plugin::KindRef]| {
        if kinds.is_empty() {
            "-".to_string()
        } else {
            kinds
                .iter()
                .map(|k| format!("{k} ({})", k.plural))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    println!("plugin:   {} {}", m.name, m.version);
    println!("wasm:     {}", report.path.display());
    println!(
        "size:     {} bytes ({})",
        report.size,
        human_size(report.size)
    );
    println!("digest:   {}", report.digest);
    println!("reflects: {}", kinds(&m.reflects));
    if !m.triggers.is_empty() {
        println!("triggers: {}", kinds(&m.triggers));
    }
    if !m.reads.is_empty() {
        println!("reads:    {}", kinds(&m.reads));
    }
    if m.reflect_status {
        println!("status:   reflected");
    }
    if !m.description.is_empty() {
        println!("about:    {}", m.description);
    }
}

/// `123.4 KiB`, `1.2 MiB`.
pub fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    if b < 1024.0 {
        format!("{bytes} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    }
}

/// Makes sure the Rust toolchain used in `dir` can build for wasm32-wasip2: with rustup, the
/// target is added when missing; without rustup, rustc's sysroot must already have it.
fn ensure_target(dir: &Path) -> Result<()> {
    let listed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output();
    match listed {
        Ok(out) if out.status.success() => {
            let installed = String::from_utf8_lossy(&out.stdout);
            if installed.lines().any(|l| l.trim() == WASM_TARGET) {
                return Ok(());
            }
            eprintln!("Installing the {WASM_TARGET} target: rustup target add {WASM_TARGET}");
            let status = Command::new("rustup")
                .args(["target", "add", WASM_TARGET])
                .current_dir(dir)
                .stdin(Stdio::null())
                .status()
                .context("running rustup target add")?;
            if !status.success() {
                bail!(
                    "rustup target add {WASM_TARGET} failed (see above); install the target \
                     and run liqoctl plugin build again"
                );
            }
            Ok(())
        }
        Ok(out) => bail!(
            "rustup target list --installed failed in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            // No rustup: a distribution toolchain may still ship the target's standard library.
            let libdir = Command::new("rustc")
                .args(["--print", "target-libdir", "--target", WASM_TARGET])
                .current_dir(dir)
                .stdin(Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
            match libdir {
                Some(path) if path.is_dir() => Ok(()),
                _ => bail!(
                    "rustup is not installed and this Rust toolchain has no {WASM_TARGET} \
                     standard library: install Rust with rustup (https://rustup.rs), then run \
                     rustup target add {WASM_TARGET} (or install your distribution's \
                     {WASM_TARGET} Rust package)"
                ),
            }
        }
        Err(err) => Err(err).context("running rustup"),
    }
}

/// Runs cargo, streaming its progress and errors to stderr, and returns the component it built.
fn cargo_build(dir: &Path, locked: bool, offline: bool) -> Result<PathBuf> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(dir)
        .args(["build", "--release", "--target", WASM_TARGET])
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if locked {
        cmd.arg("--locked");
    }
    if offline {
        cmd.arg("--offline");
    }
    eprintln!(
        "Running cargo build --release --target {WASM_TARGET} in {}",
        dir.display()
    );
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!("cargo is not installed: install Rust with rustup (https://rustup.rs)")
        } else {
            anyhow::Error::new(e).context("running cargo")
        }
    })?;
    let mut components = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.context("reading cargo's output")?;
            components.extend(wasm_artifacts(&line));
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("cargo build failed in {} (errors above)", dir.display());
    }
    // With several cdylibs (a workspace), the last one built is the crate in DIR: cargo builds
    // dependencies first.
    components.pop().ok_or_else(|| {
        anyhow::anyhow!(
            "cargo built no wasm component in {}: the crate needs crate-type = [\"cdylib\", ...] \
             in its [lib] section",
            dir.display()
        )
    })
}

/// The `.wasm` files of a cdylib in one line of cargo's JSON messages.
fn wasm_artifacts(line: &str) -> Vec<PathBuf> {
    let Ok(message) = serde_json::from_str::<Value>(line) else {
        return Vec::new();
    };
    if message["reason"] != "compiler-artifact" {
        return Vec::new();
    }
    let is_cdylib = message["target"]["kind"]
        .as_array()
        .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"));
    if !is_cdylib {
        return Vec::new();
    }
    message["filenames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|f| f.ends_with(".wasm"))
        .map(PathBuf::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_component_in_cargo_messages() {
        let artifact = r#"{"reason":"compiler-artifact","target":{"kind":["cdylib","rlib"],"name":"x"},"filenames":["/t/wasm32-wasip2/release/x.wasm","/t/wasm32-wasip2/release/libx.rlib"]}"#;
        assert_eq!(
            wasm_artifacts(artifact),
            [PathBuf::from("/t/wasm32-wasip2/release/x.wasm")]
        );
        let lib = r#"{"reason":"compiler-artifact","target":{"kind":["lib"]},"filenames":["/t/libserde.rlib"]}"#;
        assert!(wasm_artifacts(lib).is_empty());
        assert!(wasm_artifacts(r#"{"reason":"build-finished","success":true}"#).is_empty());
        assert!(wasm_artifacts("not json").is_empty());
    }

    #[test]
    fn sizes_for_humans() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(2048), "2.0 KiB");
        assert_eq!(human_size(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}
