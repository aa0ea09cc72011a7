//! `liqoctl plugin new NAME --kind GROUP/VERSION/KIND`: scaffolds a plugin crate.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use super::kind::{KindSpec, is_dns_label};
use super::templates::Scaffold;

/// Flags of `liqoctl plugin new`.
#[derive(Args, Debug)]
pub struct NewArgs {
    /// The plugin's name: a DNS-1123 label (lower-case letters, digits and '-', at most 63),
    /// for example `configmap`. It is the name in the plugin's manifest and the default name
    /// of its ReflectionPlugin; the crate is called liqo-plugin-NAME.
    pub name: String,
    /// The kind the plugin reflects, as GROUP/VERSION/KIND: `apps/v1/Deployment`,
    /// `example.com/v1alpha1/Widget`, and for the core group `v1/ConfigMap` (or
    /// `/v1/ConfigMap`). Namespaced kinds only.
    #[arg(long, value_name = "GROUP/VERSION/KIND")]
    pub kind: String,
    /// The kind's plural resource name, as in URLs and RBAC rules (default: derived from the
    /// kind as Kubernetes does: configmaps, networkpolicies, ingresses). Set it when your
    /// CRD declares another one.
    #[arg(long)]
    pub plural: Option<String>,
    /// The directory to create (default: ./NAME). It must not exist, or be empty.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Checks the arguments; nothing is written when they are wrong.
pub fn validate(args: &NewArgs) -> Result<(Scaffold, PathBuf)> {
    if !is_dns_label(&args.name) {
        bail!(
            "plugin name {:?} is not valid: use at most 63 lower-case letters, digits and '-', \
             starting and ending with a letter or digit (for example configmap)",
            args.name
        );
    }
    let kind = KindSpec::parse(&args.kind).map_err(|e| anyhow::anyhow!("--kind {e}"))?;
    if let Some(reason) = kind.cluster_scoped_reason() {
        bail!("--kind {reason}; choose a namespaced kind");
    }
    let plural = match &args.plural {
        Some(plural) => {
            if !is_dns_label(plural) {
                bail!(
                    "--plural {plural:?} is not a resource name: use lower-case letters, digits \
                     and '-' (for example {})",
                    kind.default_plural()
                );
            }
            plural.clone()
        }
        None => kind.default_plural(),
    };
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    check_target_dir(&dir)?;
    Ok((
        Scaffold {
            name: args.name.clone(),
            kind,
            plural,
        },
        dir,
    ))
}

/// Refuses a file, or a directory with anything in it.
fn check_target_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        bail!(
            "{} exists and is not a directory: choose another --dir",
            dir.display()
        );
    }
    let mut entries =
        std::fs::read_dir(dir).with_context(|| format!("reading directory {}", dir.display()))?;
    if entries.next().is_some() {
        bail!(
            "{} is not empty: liqoctl plugin new never overwrites files; choose another --dir \
             or remove it",
            dir.display()
        );
    }
    Ok(())
}

/// Runs `liqoctl plugin new`.
pub fn run(args: NewArgs) -> Result<()> {
    let (scaffold, dir) = validate(&args)?;
    let existed = dir.exists();
    if let Err(err) = write_files(&scaffold, &dir) {
        // Leave nothing half-written behind.
        if existed {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let _ = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return Err(err);
    }

    let wasm = format!("target/wasm32-wasip2/release/{}.wasm", scaffold.lib_name());
    println!(
        "Created plugin {} in {} (crate {}, reflects {}, plural {})",
        scaffold.name,
        dir.display(),
        scaffold.crate_name(),
        scaffold.kind,
        scaffold.plural
    );
    for (path, _) in scaffold.files() {
        println!("  {path}");
    }
    println!();
    println!("Next steps:");
    println!("  cd {}", dir.display());
    println!("  make test                # table tests and golden files, natively");
    println!("  liqoctl plugin build     # the wasm component, checked by the host's runtime");
    println!("  liqoctl plugin test {wasm} --input testdata/basic.input.json");
    println!("  liqoctl plugin install {wasm}");
    Ok(())
}

fn write_files(scaffold: &Scaffold, dir: &Path) -> Result<()> {
    for (path, content) in scaffold.files() {
        let full = dir.join(&path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating directory {}", parent.display()))?;
        }
        std::fs::write(&full, content).with_context(|| format!("writing {}", full.display()))?;
    }
    format_sources(scaffold, dir);
    Ok(())
}

/// Formats the Rust files with rustfmt when it is installed, so that `cargo fmt --check` passes
/// whatever the lengths of the names filled in. Best effort: without rustfmt the files are
/// still valid, only some lines may be longer than rustfmt likes.
fn format_sources(scaffold: &Scaffold, dir: &Path) {
    let sources: Vec<PathBuf> = scaffold
        .files()
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| path.ends_with(".rs"))
        .map(|path| dir.join(path))
        .collect();
    let _ = std::process::Command::new("rustfmt")
        .args(["--edition", "2024"])
        .args(&sources)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str, kind: &str) -> NewArgs {
        NewArgs {
            name: name.into(),
            kind: kind.into(),
            plural: None,
            dir: Some(PathBuf::from("/nonexistent/liqoctl-test/dir")),
        }
    }

    fn err(args: NewArgs) -> String {
        format!("{:#}", validate(&args).unwrap_err())
    }

    #[test]
    fn validates_name_kind_and_plural() {
        let (scaffold, _) = validate(&args("configmap", "/v1/ConfigMap")).unwrap();
        assert_eq!(scaffold.kind.to_string(), "v1/ConfigMap");
        assert_eq!(scaffold.plural, "configmaps");

        assert!(err(args("Config_Map", "v1/ConfigMap")).contains("plugin name \"Config_Map\""));
        assert!(err(args("configmap", "ConfigMap")).starts_with("--kind \"ConfigMap\""));
        let e = err(args("ns", "v1/Namespace"));
        assert!(
            e.contains("cluster-scoped") && e.contains("namespaced kind"),
            "{e}"
        );
        let mut bad_plural = args("widgets", "example.com/v1/Widget");
        bad_plural.plural = Some("Widgets".into());
        assert!(err(bad_plural).contains("--plural \"Widgets\""));
    }

    #[test]
    fn refuses_non_empty_directories_and_files() {
        let dir = std::env::temp_dir().join(format!("liqoctl-new-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut a = args("configmap", "v1/ConfigMap");
        a.dir = Some(dir.clone());
        assert!(validate(&a).is_ok(), "an empty directory is fine");
        std::fs::write(dir.join("keep.txt"), "mine").unwrap();
        assert!(
            err(NewArgs {
                dir: Some(dir.clone()),
                ..args("configmap", "v1/ConfigMap")
            })
            .contains("is not empty")
        );
        a.dir = Some(dir.join("keep.txt"));
        assert!(err(a).contains("is not a directory"));
        assert_eq!(
            std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
            "mine"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
