//! Configuration file of the `liqo-gateway` binary (YAML, or JSON which is valid YAML).
//!
//! ```yaml
//! identity:
//!   certFile: /etc/liqo-gateway/tls.crt
//!   keyFile: /etc/liqo-gateway/tls.key
//! listen: 0.0.0.0:7443          # peer link listener (optional: only the dialing side needs none)
//! metricsListen: 0.0.0.0:9090   # /metrics and /healthz (optional)
//! peers:
//!   - name: london
//!     fingerprint: 3f7a...      # SHA-256 of london's gateway certificate
//!     address: 192.0.2.10:7443  # set on the side that imports from london
//! exports:
//!   - { namespace: liqo-demo, service: flights-service, port: 7999, target: 10.96.0.12:7999 }
//! imports:
//!   - { listen: 0.0.0.0:31000, peer: london, namespace: liqo-demo, service: flights-service, port: 7999 }
//! ```
//!
//! `peers`, `exports` and `imports` are reloaded live; `identity`, `listen` and
//! `metricsListen` are read at start only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::gateway::PeerConfig;
use crate::identity::Fingerprint;
use crate::target::{ExportTable, ImportRule, InvalidTarget, Target};

/// Why a configuration file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid YAML/JSON of the expected shape.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The error.
        source: serde_yaml_ng::Error,
    },
    /// A target has invalid names or port.
    #[error(transparent)]
    Target(#[from] InvalidTarget),
    /// The same target is exported twice.
    #[error("{0} is exported twice")]
    DuplicateExport(Target),
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Certificate and key of this gateway.
    pub identity: IdentityFiles,
    /// Where to accept peer links.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Where to serve `/metrics` and `/healthz`.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Pinned peers.
    #[serde(default)]
    pub peers: Vec<PeerEntry>,
    /// Targets peers may reach.
    #[serde(default)]
    pub exports: Vec<ExportEntry>,
    /// Local listeners forwarding to peers.
    #[serde(default)]
    pub imports: Vec<ImportEntry>,
}

/// Identity files (PEM).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityFiles {
    /// Certificate file.
    pub cert_file: PathBuf,
    /// Private key file.
    pub key_file: PathBuf,
}

/// A peer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerEntry {
    /// Cluster name.
    pub name: String,
    /// Pinned certificate fingerprint.
    pub fingerprint: Fingerprint,
    /// `HOST:PORT` to dial (on the importing side).
    #[serde(default)]
    pub address: Option<String>,
}

/// An exported Service port.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportEntry {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub service: String,
    /// Port of the Service.
    pub port: u16,
    /// Local address serving it (the ClusterIP and port).
    pub target: SocketAddr,
}

/// An imported Service port.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportEntry {
    /// Local address to listen on.
    pub listen: SocketAddr,
    /// Peer serving the Service.
    pub peer: String,
    /// Namespace of the Service in the peer cluster.
    pub namespace: String,
    /// Name of the Service in the peer cluster.
    pub service: String,
    /// Port of the Service.
    pub port: u16,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Config =
            serde_yaml_ng::from_str(&text).map_err(|source| ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        config.export_table()?;
        config.import_rules()?;
        Ok(config)
    }

    /// The peers, for [`crate::Gateway::set_peers`].
    pub fn peer_configs(&self) -> Vec<PeerConfig> {
        self.peers
            .iter()
            .map(|p| PeerConfig {
                name: p.name.clone(),
                fingerprint: p.fingerprint,
                address: p.address.clone(),
            })
            .collect()
    }

    /// The export table, for [`crate::Gateway::set_exports`].
    pub fn export_table(&self) -> Result<ExportTable, ConfigError> {
        let mut table = ExportTable::new();
        for e in &self.exports {
            let target = Target::new(&e.namespace, &e.service, e.port)?;
            if table.insert(target.clone(), e.target).is_some() {
                return Err(ConfigError::DuplicateExport(target));
            }
        }
        Ok(table)
    }

    /// The import rules, for [`crate::Gateway::set_imports`].
    pub fn import_rules(&self) -> Result<Vec<ImportRule>, ConfigError> {
        self.imports
            .iter()
            .map(|i| {
                Ok(ImportRule {
                    listen: i.listen,
                    peer: i.peer.clone(),
                    target: Target::new(&i.namespace, &i.service, i.port)?,
                })
            })
            .collect()
    }
}
