//! `liqo-gateway`: runs a cross-cluster gateway from a configuration file, or manages its
//! identity. See the `liqo_gateway` crate documentation for the protocol and
//! `liqo_gateway::config` for the file format.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use clap::{Parser, Subcommand};
use liqo_gateway::config::Config;
use liqo_gateway::{Gateway, Identity, Options};
use prometheus_client::registry::Registry;

#[derive(Parser)]
#[command(
    name = "liqo-gateway",
    about = "Cross-cluster gateway of liqo-wasm",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway from a configuration file; peers, exports and imports are reloaded on
    /// SIGHUP and when the file changes.
    Run {
        /// Configuration file (YAML or JSON).
        #[arg(long, short, env = "LIQO_GATEWAY_CONFIG")]
        config: PathBuf,
        /// How often to check the file for changes (0 disables polling; SIGHUP still works).
        #[arg(long, default_value = "2s", value_parser = liqo_gateway::duration::parse_duration)]
        watch_interval: Duration,
    },
    /// Manage the gateway's TLS identity.
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
}

#[derive(Subcommand)]
enum IdentityCommand {
    /// Generate a key and self-signed certificate into DIR (tls.crt, tls.key) and print the
    /// fingerprint peers must pin.
    Generate {
        /// This cluster's name.
        #[arg(long)]
        cluster: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the fingerprint of a certificate file.
    Fingerprint {
        /// Certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Matching private key (PEM).
        #[arg(long)]
        key: PathBuf,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Identity {
            command: IdentityCommand::Generate { cluster, out },
        } => {
            let identity = Identity::generate(&cluster).context("generating the identity")?;
            identity
                .write_dir(&out)
                .with_context(|| format!("writing the identity to {}", out.display()))?;
            println!("{}", identity.fingerprint());
            Ok(())
        }
        Command::Identity {
            command: IdentityCommand::Fingerprint { cert, key },
        } => {
            let identity = Identity::load(&cert, &key).context("reading the identity")?;
            println!("{}", identity.fingerprint());
            Ok(())
        }
        Command::Run {
            config,
            watch_interval,
        } => {
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            tokio::runtime::Runtime::new()
                .context("starting the async runtime")?
                .block_on(run(&config, watch_interval))
        }
    }
}

async fn run(path: &Path, watch_interval: Duration) -> Result<()> {
    let config = Config::load(path)?;
    let identity = Identity::load(&config.identity.cert_file, &config.identity.key_file)
        .context("reading the gateway identity")?;
    let mut registry = Registry::default();
    let gateway = Gateway::new(identity, Options::default(), &mut registry)
        .context("creating the gateway")?;
    tracing::info!(fingerprint = %gateway.fingerprint(), "gateway identity");
    if let Some(addr) = config.metrics_listen {
        serve_metrics(addr, registry).await?;
    }
    apply(&gateway, &config).await?;
    if let Some(addr) = config.listen {
        gateway
            .listen(addr)
            .await
            .context("listening for peer links")?;
    }

    let mut current = config;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut last_modified = modified(path);
    let poll = if watch_interval.is_zero() {
        Duration::from_secs(3600)
    } else {
        watch_interval
    };
    loop {
        let forced = tokio::select! {
            _ = hangup.recv() => true,
            _ = tokio::time::sleep(poll) => false,
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        if !forced {
            let now = modified(path);
            if watch_interval.is_zero() || now == last_modified {
                continue;
            }
            last_modified = now;
        }
        match Config::load(path) {
            Ok(new) if new == current && !forced => {}
            Ok(new) => {
                if new.identity != current.identity
                    || new.listen != current.listen
                    || new.metrics_listen != current.metrics_listen
                {
                    tracing::warn!("identity, listen and metricsListen changes need a restart");
                }
                match apply(&gateway, &new).await {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "configuration reloaded");
                        current = new;
                    }
                    Err(e) => tracing::error!(
                        error = format!("{e:#}"),
                        "reload failed; keeping the previous tables"
                    ),
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reload failed; keeping the previous configuration")
            }
        }
    }
    tracing::info!("shutting down");
    gateway.shutdown().await;
    Ok(())
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

async fn apply(gateway: &Gateway, config: &Config) -> Result<()> {
    gateway
        .set_peers(config.peer_configs())
        .context("applying peers")?;
    gateway.set_exports(config.export_table()?);
    gateway
        .set_imports(config.import_rules()?)
        .await
        .context("applying imports")?;
    Ok(())
}

async fn serve_metrics(addr: SocketAddr, registry: Registry) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr} for /metrics"))?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(Arc::new(Mutex::new(registry)));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server failed");
        }
    });
    Ok(())
}

async fn metrics(State(registry): State<Arc<Mutex<Registry>>>) -> impl IntoResponse {
    let mut body = String::new();
    let registry = registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &registry) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
