//! `liqo-bench`: reflection latency, throughput, scale and memory against the physical floor
//! of direct API writes, on two real clusters (testenv) with the hosts running as processes.
//!
//! `make bench-short` (CI-sized, under 2 minutes) or `make bench` (full, with the plugin call
//! benchmark). Output: a table on stdout, `OUT/reflection.json`, `OUT/latency.svg`, host logs
//! in `OUT/logs/`. BENCHMARKS.md describes the method.

mod common;
mod copier;
mod lab;
mod phases;
mod procstat;
mod report;
mod stats;
mod watch;
mod workload;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, ValueEnum};

use crate::copier::{CopierStats, CopierWrites};
use crate::lab::{Bins, HostSettings, Lab};
use crate::phases::{PhaseUsage, Plan, Results};
use crate::procstat::Sampler;
use crate::report::{Machine, Report};
use crate::watch::Book;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Small sizes: proves every measurement works (CI), under 2 minutes.
    Short,
    /// Rates 50/200/500, throughput search, 1 000 and 10 000 Services.
    Full,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Phase {
    /// Direct writes in newyork.
    Floor,
    /// Writes in london at fixed rates, seen in newyork.
    Propagation,
    /// Highest sustained rate.
    Throughput,
    /// The propagation workload through a native copier (the whole-path floor).
    CopierPropagation,
    /// The throughput search through a native copier (the whole-path floor).
    CopierThroughput,
    /// Endpoints via pods.
    Pods,
    /// Initial sync, memory and idle CPU with many Services.
    Scale,
}

/// Reflection benchmarks against the physical floor.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Sizes and durations.
    #[arg(long, value_enum, default_value_t = Mode::Short)]
    mode: Mode,
    /// Measurements to run (comma-separated; default all).
    #[arg(long, value_enum, value_delimiter = ',')]
    phases: Vec<Phase>,
    /// The host's --workers, and the concurrency of the floor's writers.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Output directory (default: `bench` in the cargo target directory).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Directory holding liqoctl and liqo-host (default: this executable's).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The plugin call benchmark's JSON (default: OUT/plugin_calls.json).
    #[arg(long)]
    plugins_json: Option<PathBuf>,
    /// Override the scale sizes (comma-separated Service counts).
    #[arg(long, value_delimiter = ',')]
    scale: Vec<usize>,
    /// Override the fixed rates (comma-separated objects/s).
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// Do not touch the ForeignCluster after restarting the host in the scale measurement:
    /// shows the restarted host waiting for its 5-minute offloading requeue.
    #[arg(long)]
    no_nudge: bool,
    /// How the whole-path floor's copier writes: `replace` (create, then replace: the cheapest
    /// writes) or `apply` (server-side apply, as the host writes: shows what apply costs).
    #[arg(long, value_enum, default_value_t = CopierWrites::Replace)]
    copier_writes: CopierWrites,
}

fn default_out() -> Result<PathBuf> {
    // target/<profile>/liqo-bench -> target/bench
    let exe = std::env::current_exe().context("locating liqo-bench")?;
    Ok(exe
        .parent()
        .and_then(|p| p.parent())
        .context("liqo-bench is not in a cargo target directory: pass --out")?
        .join("bench"))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async {
        tokio::select! {
            result = run(args) => result,
            _ = common::interrupted() => bail!("interrupted: hosts and clusters stopped"),
        }
    })
}

/// Measures one phase's CPU and memory, by process, and the london host's counters.
struct PhaseClock<'a> {
    sampler: &'a Sampler,
    name: String,
    from: Instant,
    busy: f64,
    metrics: Option<(SocketAddr, BTreeMap<String, f64>)>,
}

fn counters(addr: SocketAddr) -> Option<BTreeMap<String, f64>> {
    procstat::scrape(addr)
        .ok()
        .map(|m| procstat::host_counters(&m))
}

impl<'a> PhaseClock<'a> {
    fn start(sampler: &'a Sampler, name: &str, host_metrics: Option<SocketAddr>) -> Self {
        Self {
            sampler,
            name: name.to_string(),
            from: Instant::now(),
            busy: procstat::machine_busy_seconds().unwrap_or(0.0),
            metrics: host_metrics.and_then(|a| Some((a, counters(a)?))),
        }
    }

    fn stop(self, results: &mut Results) {
        self.stop_with(results, None);
    }

    /// Stops, recording what the native copier did over the phase.
    fn stop_with(self, results: &mut Results, copier: Option<CopierStats>) {
        let to = Instant::now();
        let secs = to.duration_since(self.from).as_secs_f64();
        let busy = procstat::machine_busy_seconds().unwrap_or(0.0) - self.busy;
        let processes = [
            "london-host",
            "newyork-host",
            "london-cluster",
            "newyork-cluster",
            "bench",
        ]
        .iter()
        .filter_map(|n| Some((n.to_string(), self.sampler.usage(n, self.from, to)?)))
        .collect();
        let host_counters = self
            .metrics
            .and_then(|(addr, before)| Some(procstat::delta(&before, &counters(addr)?)))
            .unwrap_or_default();
        results.usage.push(PhaseUsage {
            phase: self.name,
            seconds: secs,
            machine_cores: if secs > 0.0 { busy / secs } else { 0.0 },
            processes,
            host_counters,
            copier,
        });
    }
}

fn watch_lab(sampler: &Sampler, lab: &Lab) {
    if let Some(h) = &lab.london_host {
        sampler.watch("london-host", h.pid);
    }
    if let Some(h) = &lab.newyork_host {
        sampler.watch("newyork-host", h.pid);
    }
    for (name, pid) in lab.cluster_pids() {
        sampler.watch(&format!("{name}-cluster"), pid);
    }
}

async fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut plan = match args.mode {
        Mode::Short => Plan::short(args.workers),
        Mode::Full => Plan::full(args.workers),
    };
    if !args.scale.is_empty() {
        plan.scale_sizes = args.scale.clone();
    }
    if !args.rates.is_empty() {
        plan.rates = args.rates.clone();
    }
    plan.nudge = !args.no_nudge;
    plan.copier_writes = args.copier_writes;
    let phases = if args.phases.is_empty() {
        vec![
            Phase::Floor,
            Phase::Propagation,
            Phase::Throughput,
            Phase::CopierPropagation,
            Phase::CopierThroughput,
            Phase::Pods,
            Phase::Scale,
        ]
    } else {
        args.phases.clone()
    };
    let out = match &args.out {
        Some(o) => o.clone(),
        None => default_out()?,
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let bins = Bins::locate(args.bin_dir.as_deref())?;
    let mut machine = Machine::detect(&bins.host);
    let settings = HostSettings {
        workers: plan.workers,
        log_dir: out.join("logs"),
    };
    let _ = std::fs::remove_dir_all(&settings.log_dir);
    eprintln!(
        "liqo-bench: {} mode, phases {:?}, host {}, output in {}",
        plan.mode,
        phases,
        bins.host.display(),
        out.display()
    );

    let sampler = Sampler::start(Duration::from_millis(200));
    // The load generator, the watches and, in the copier phases, the native copier.
    sampler.watch("bench", std::process::id());
    let mut results = Results::default();
    let mut setup: Vec<(String, f64)> = Vec::new();

    let reflection_phases = [
        Phase::Floor,
        Phase::Propagation,
        Phase::Throughput,
        Phase::CopierPropagation,
        Phase::CopierThroughput,
        Phase::Pods,
    ];
    if phases.iter().any(|p| reflection_phases.contains(p)) {
        let lab = Lab::up("latency", bins.clone(), settings.clone()).await?;
        setup.extend(
            lab.setup
                .iter()
                .map(|(n, d)| (format!("latency env: {n}"), d.as_secs_f64())),
        );
        watch_lab(&sampler, &lab);
        let metrics = lab.london_host.as_ref().map(|h| h.metrics);
        let book = Arc::new(Book::default());
        let _watches = [
            watch::services(book.clone(), "newyork", lab.newyork_config.clone())?,
            watch::services(book.clone(), "london", lab.london_config.clone())?,
            watch::endpoint_slices(book.clone(), "newyork", lab.newyork_config.clone())?,
            watch::endpoint_slices(book.clone(), "london", lab.london_config.clone())?,
            watch::pods(book.clone(), lab.london_config.clone())?,
        ];
        if phases.contains(&Phase::Floor) {
            let clock = PhaseClock::start(&sampler, "floor", metrics);
            results.floor = Some(phases::floor(&lab, &book, &plan).await?);
            clock.stop(&mut results);
        }
        if phases.contains(&Phase::Propagation) {
            let clock = PhaseClock::start(&sampler, "propagation", metrics);
            results.propagation = phases::propagation(&lab, &book, &plan).await?;
            clock.stop(&mut results);
        }
        if phases.contains(&Phase::Throughput) {
            let floor_rate = results.floor.as_ref().map_or(250.0, |f| f.max.rate);
            let clock = PhaseClock::start(&sampler, "throughput", metrics);
            let report = phases::throughput(&lab, &book, &plan, floor_rate).await?;
            clock.stop(&mut results);
            setup.push((
                "latency env: throughput cleanup between steps".into(),
                report.cleanup_seconds,
            ));
            results.throughput = Some(report);
        }
        if phases.contains(&Phase::CopierPropagation) {
            let clock = PhaseClock::start(&sampler, "copier-propagation", metrics);
            let (rates, stats) = phases::copier_propagation(&lab, &book, &plan).await?;
            clock.stop_with(&mut results, Some(stats));
            results.copier_propagation = rates;
        }
        if phases.contains(&Phase::CopierThroughput) {
            let floor_rate = results.floor.as_ref().map_or(250.0, |f| f.max.rate);
            let clock = PhaseClock::start(&sampler, "copier-throughput", metrics);
            let (report, copier) =
                phases::copier_throughput(&lab, &book, &plan, floor_rate).await?;
            clock.stop_with(&mut results, Some(copier.stats()));
            setup.push((
                "latency env: copier throughput cleanup between steps".into(),
                report.cleanup_seconds,
            ));
            drop(copier);
            results.copier_throughput = Some(report);
        }
        if phases.contains(&Phase::Pods) {
            let clock = PhaseClock::start(&sampler, "pods", metrics);
            results.pods = Some(phases::pods(&lab, &book, &plan).await?);
            clock.stop(&mut results);
        }
        drop(_watches);
        let t = Instant::now();
        drop(lab);
        setup.push(("latency env: down".into(), t.elapsed().as_secs_f64()));
    }

    if phases.contains(&Phase::Scale) {
        for &services in &plan.scale_sizes {
            // The floor on its own environment, then the host on a fresh one.
            let direct = {
                let lab = Lab::up(
                    &format!("scale-{services}-direct"),
                    bins.clone(),
                    settings.clone(),
                )
                .await?;
                setup.extend(
                    lab.setup.iter().map(|(n, d)| {
                        (format!("scale {services} direct env: {n}"), d.as_secs_f64())
                    }),
                );
                watch_lab(&sampler, &lab);
                let book = Arc::new(Book::default());
                let _watches = [
                    watch::services(book.clone(), "newyork", lab.newyork_config.clone())?,
                    watch::endpoint_slices(book.clone(), "newyork", lab.newyork_config.clone())?,
                ];
                let clock = PhaseClock::start(&sampler, &format!("scale {services} direct"), None);
                let direct = phases::scale_direct(&lab, &book, &plan, services).await?;
                clock.stop(&mut results);
                direct
            };
            let mut lab =
                Lab::up(&format!("scale-{services}"), bins.clone(), settings.clone()).await?;
            setup.extend(
                lab.setup
                    .iter()
                    .map(|(n, d)| (format!("scale {services} env: {n}"), d.as_secs_f64())),
            );
            watch_lab(&sampler, &lab);
            let book = Arc::new(Book::default());
            let _watches = [
                watch::services(book.clone(), "newyork", lab.newyork_config.clone())?,
                watch::endpoint_slices(book.clone(), "newyork", lab.newyork_config.clone())?,
            ];
            let clock = PhaseClock::start(&sampler, &format!("scale {services}"), None);
            let r = phases::scale(&mut lab, &book, &sampler, &plan, services, direct).await?;
            clock.stop(&mut results);
            results.scale.push(r);
            drop(_watches);
            let t = Instant::now();
            drop(lab);
            setup.push((
                format!("scale {services} env: down"),
                t.elapsed().as_secs_f64(),
            ));
        }
    }

    let plugins_path = args
        .plugins_json
        .clone()
        .unwrap_or_else(|| out.join("plugin_calls.json"));
    let plugins = match std::fs::read_to_string(&plugins_path) {
        Ok(text) => Some(
            serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", plugins_path.display()))?,
        ),
        Err(_) => None,
    };

    machine.load_after = report::load_average();
    let targets = report::targets(&results);
    let whole_path = report::whole_path_targets(&results);
    let report = Report {
        version: 1,
        started_unix,
        duration_seconds: started.elapsed().as_secs_f64(),
        machine,
        plan,
        setup,
        results,
        plugins,
        targets,
        whole_path,
    };
    print!("{}", report::table(&report));
    let json_path = out.join("reflection.json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&report).context("serializing the report")?,
    )
    .with_context(|| format!("writing {}", json_path.display()))?;
    let svg_path = out.join("latency.svg");
    if report.results.propagation.is_empty()
        && report.results.copier_propagation.is_empty()
        && report.results.floor.is_none()
    {
        println!("\nwrote {}", json_path.display());
    } else {
        report::chart(&report, &svg_path)?;
        println!("\nwrote {} and {}", json_path.display(), svg_path.display());
    }
    let r = &report.results;
    if r.floor.is_none()
        && r.propagation.is_empty()
        && r.throughput.is_none()
        && r.copier_propagation.is_empty()
        && r.copier_throughput.is_none()
        && r.pods.is_none()
        && r.scale.is_empty()
    {
        bail!("nothing was measured");
    }
    Ok(())
}
