//! `liqo-bench-transport`: the cluster data path through the gateways against the same
//! kube-proxy hop without them, on two testenv clusters in network mode (root only).
//!
//! `make bench-transport` (or `liqo-bench-transport run`) sets up london and newyork as
//! `liqoctl/tests/transport.rs` does, deploys this binary's echo server (`serve`) as a pod
//! in london behind a ClusterIP Service, offloads it, and measures with this binary's
//! `client`, run inside a cluster's network namespace:
//! - direct: london -> london ClusterIP -> pod (kube-proxy only: the baseline);
//! - gateway: newyork -> newyork ClusterIP -> newyork gateway -> TLS 1.3 + HTTP/2 link ->
//!   london gateway -> london ClusterIP -> pod.
//!
//! Prints a table and writes JSON (default `target/bench/transport.json`). BENCHMARKS.md
//! describes the method and the recorded numbers.

#[path = "../transport/cluster.rs"]
mod cluster;
#[path = "../common.rs"]
mod common;
#[path = "../transport/echo.rs"]
mod echo;
#[path = "../transport/report.rs"]
mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde::de::DeserializeOwned;

use crate::cluster::{Bins, Clusters};
use crate::echo::{BulkResult, SmallResult};
use crate::report::{BulkRuns, Machine, Pair, Ratios, Report, Settings};

/// Transport benchmark: the gateway data path vs a direct ClusterIP connection. Without a
/// command: `run` with its defaults.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Echo server (the pod's process): per request, an 8-byte big-endian length N in, N
    /// bytes out.
    Serve {
        /// TCP port to listen on (all addresses). testenv sets PORT to the first
        /// containerPort.
        #[arg(long, env = "PORT", default_value_t = 7999)]
        port: u16,
    },
    /// One measurement against a server; prints one JSON line.
    Client {
        /// The server (a ClusterIP:port, say).
        #[arg(long)]
        addr: SocketAddr,
        /// small: round trips of SIZE bytes (default 64); bulk: one answer of SIZE bytes
        /// (default 100 MiB).
        #[arg(long, value_enum)]
        mode: ClientMode,
        /// Round trips (small).
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Bytes per answer.
        #[arg(long)]
        size: Option<u64>,
        /// A new TCP connection per round trip (small; connect time included).
        #[arg(long)]
        new_connection: bool,
    },
    /// Sets up the clusters, measures both paths, prints a table and writes JSON (as root).
    Run(RunArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ClientMode {
    /// Request/response round trips.
    Small,
    /// One large answer.
    Bulk,
}

#[derive(clap::Args, Debug, Clone)]
struct RunArgs {
    /// Round trips on one kept connection, per path.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Round trips with a new connection each, per path.
    #[arg(long, default_value_t = 500)]
    new_connection_requests: usize,
    /// Size of the bulk answer, MiB.
    #[arg(long, default_value_t = 100)]
    bulk_mib: u64,
    /// Bulk transfers per path (the best is reported, all are in the JSON).
    #[arg(long, default_value_t = 3)]
    bulk_runs: usize,
    /// Output JSON (default: `bench/transport.json` in the cargo target directory).
    #[arg(long)]
    out: Option<PathBuf>,
}

impl Default for RunArgs {
    fn default() -> Self {
        // The same defaults as the flags: parse an empty command line.
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            run: RunArgs,
        }
        Only::parse_from(["run"]).run
    }
}

/// Size of the small answers.
const SMALL_SIZE: u64 = 64;
/// Unrecorded round trips per path before measuring: connections, kube-proxy conntrack
/// entries and the gateway's link are warm, as they are for a long-running client.
const WARMUP_REQUESTS: usize = 200;

fn main() -> Result<()> {
    match Args::parse().command {
        Some(Cmd::Serve { port }) => serve(port),
        Some(Cmd::Client {
            addr,
            mode,
            requests,
            size,
            new_connection,
        }) => {
            let line = match mode {
                ClientMode::Small => serde_json::to_string(&echo::small(
                    addr,
                    requests,
                    size.unwrap_or(SMALL_SIZE),
                    new_connection,
                )?)?,
                ClientMode::Bulk => {
                    serde_json::to_string(&echo::bulk(addr, size.unwrap_or(100 << 20))?)?
                }
            };
            println!("{line}");
            Ok(())
        }
        Some(Cmd::Run(args)) => run(args),
        None => run(RunArgs::default()),
    }
}

fn serve(port: u16) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
            .await
            .with_context(|| format!("listening on port {port}"))?;
        eprintln!(
            "liqo-bench-transport: serving on {}",
            listener.local_addr()?
        );
        echo::serve(listener).await
    })
}

/// `target/<profile>/liqo-bench-transport` -> `target/bench/transport.json`.
fn default_out() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating liqo-bench-transport")?;
    Ok(exe
        .parent()
        .and_then(Path::parent)
        .context("liqo-bench-transport is not in a cargo target directory: pass --out")?
        .join("bench")
        .join("transport.json"))
}

fn run(args: RunArgs) -> Result<()> {
    if !testsupport::is_root() {
        bail!(
            "liqo-bench-transport run needs root: testenv's network mode creates network \
             namespaces and kube-proxy's iptables rules (run `sudo make bench-transport`)"
        );
    }
    if args.requests == 0 || args.new_connection_requests == 0 || args.bulk_runs == 0 {
        bail!("--requests, --new-connection-requests and --bulk-runs must be at least 1");
    }
    let started = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let out = match &args.out {
        Some(o) => o.clone(),
        None => default_out()?,
    };
    let out_dir = out
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let log_dir = out_dir.join("transport-logs");
    let bins = Bins::locate()?;
    eprintln!(
        "liqo-bench-transport: {} build ({}), host logs in {}",
        bins.profile(),
        bins.host.display(),
        log_dir.display()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    // Ctrl-C or SIGTERM during setup: return, so that the hosts and clusters are dropped
    // (stopped) instead of left behind.
    let clusters = runtime.block_on(async {
        tokio::select! {
            c = Clusters::up(&bins, &log_dir) => c,
            _ = common::interrupted() => bail!("interrupted during setup: hosts and clusters stopped"),
        }
    })?;

    let mut machine = Machine {
        nproc: std::thread::available_parallelism().map_or(0, usize::from),
        cpu: cpu_model(),
        load_before: report::load_average(),
        load_after: 0.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        commit: git_describe(),
        profile: bins.profile(),
    };
    let measured = measure(&clusters, &bins.bench, &args);
    machine.load_after = report::load_average();
    let setup = clusters.setup.clone();
    let settings = Settings {
        requests: args.requests,
        new_connection_requests: args.new_connection_requests,
        small_size: SMALL_SIZE,
        bulk_mib: args.bulk_mib,
        bulk_runs: args.bulk_runs,
        warmup_requests: WARMUP_REQUESTS,
        london_service: clusters.london_service.to_string(),
        newyork_service: clusters.newyork_service.to_string(),
        newyork_gateway: clusters.newyork_gateway.to_string(),
    };
    let down = clusters.down();
    let (small_kept, small_new_connection, bulk) = measured?;
    down.context("tearing down the clusters")?;

    let ratios = Ratios::of(&small_kept, &small_new_connection, &bulk);
    let report = Report {
        version: 1,
        date: report::rfc3339(started_unix),
        duration_seconds: started.elapsed().as_secs_f64(),
        machine,
        settings,
        setup,
        small_kept,
        small_new_connection,
        bulk,
        ratios,
    };
    print!("{}", report::table(&report));
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&report).context("serializing the report")?,
    )
    .with_context(|| format!("writing {}", out.display()))?;
    println!("\nwrote {}", out.display());
    Ok(())
}

type Measured = (Pair<SmallResult>, Pair<SmallResult>, Pair<BulkRuns>);

/// Every measurement, direct then gateway for each kind, so that both paths of a pair are
/// measured under the same conditions.
fn measure(clusters: &Clusters, bench: &Path, args: &RunArgs) -> Result<Measured> {
    let paths = [
        ("london", clusters.london_service),
        ("newyork", clusters.newyork_service),
    ];
    let client = |(cluster, addr): (&str, SocketAddr), extra: &[String]| -> Result<String> {
        let addr = addr.to_string();
        let mut argv = vec!["client".to_string(), "--addr".into(), addr.clone()];
        argv.extend_from_slice(extra);
        let out = clusters.env.exec_in(cluster, bench, &argv);
        if !out.status.success() {
            bail!(
                "`{} {}` in {cluster}'s namespace failed ({}): {}",
                bench.display(),
                argv.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    fn parse<T: DeserializeOwned>(stdout: &str) -> Result<T> {
        let line = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line).with_context(|| format!("parsing the client's output {line:?}"))
    }
    let small_args = |requests: usize, new_connection: bool| {
        let mut a = vec![
            "--mode".to_string(),
            "small".into(),
            "--requests".into(),
            requests.to_string(),
            "--size".into(),
            SMALL_SIZE.to_string(),
        ];
        if new_connection {
            a.push("--new-connection".into());
        }
        a
    };

    for path in paths {
        client(path, &small_args(WARMUP_REQUESTS, false)).context("warm-up")?;
    }
    let small_pair = |requests: usize, new_connection: bool| -> Result<Pair<SmallResult>> {
        let mut results = Vec::new();
        for path in paths {
            eprintln!(
                "liqo-bench-transport: {requests} round trips ({}) from {}",
                if new_connection {
                    "new connection each"
                } else {
                    "kept connection"
                },
                path.0
            );
            results.push(parse::<SmallResult>(&client(
                path,
                &small_args(requests, new_connection),
            )?)?);
        }
        let gateway = results.pop().context("no gateway result")?;
        let direct = results.pop().context("no direct result")?;
        Ok(Pair { direct, gateway })
    };
    let kept = small_pair(args.requests, false)?;
    let new_connection = small_pair(args.new_connection_requests, true)?;

    let size = (args.bulk_mib << 20).to_string();
    let mut runs: [Vec<BulkResult>; 2] = [Vec::new(), Vec::new()];
    // Alternate the paths run by run: a burst of other load then hits both alike.
    for run in 1..=args.bulk_runs {
        for (i, path) in paths.into_iter().enumerate() {
            eprintln!(
                "liqo-bench-transport: {} MiB from {} (run {run} of {})",
                args.bulk_mib, path.0, args.bulk_runs
            );
            let extra = [
                "--mode".to_string(),
                "bulk".into(),
                "--size".into(),
                size.clone(),
            ];
            runs[i].push(parse::<BulkResult>(&client(path, &extra)?)?);
        }
    }
    let [direct, gateway] = runs;
    let bulk = Pair {
        direct: BulkRuns::of(direct),
        gateway: BulkRuns::of(gateway),
    };
    Ok((kept, new_connection, bulk))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default()
}

fn git_describe() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_command_means_run_with_the_flag_defaults() {
        assert!(Args::parse_from(["liqo-bench-transport"]).command.is_none());
        let d = RunArgs::default();
        assert_eq!(
            (
                d.requests,
                d.new_connection_requests,
                d.bulk_mib,
                d.bulk_runs
            ),
            (2000, 500, 100, 3)
        );
        assert!(d.out.is_none());
    }

    #[test]
    fn the_pod_command_line_parses() {
        // As the Deployment in cluster.rs runs it.
        let args = Args::parse_from(["liqo-bench-transport", "serve", "--port", "7999"]);
        assert!(matches!(args.command, Some(Cmd::Serve { port: 7999 })));
    }
}
