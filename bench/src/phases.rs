//! The measurements: floor, propagation, throughput, the same two through a native copier
//! (the whole-path floor), endpoints via pods, scale.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use kube::Client;
use serde::Serialize;

use crate::copier::{Copier, CopierStats, CopierWrites};
use crate::lab::Lab;
use crate::procstat::{self, Sampler, Usage};
use crate::stats::{self, Summary};
use crate::watch::Book;
use crate::workload::{self, Action, Batch, Pace};

/// Writers of the workload in london (the user, not the host) may have this many writes in
/// flight, so that the offered rate does not depend on london's latency.
pub const LOAD_IN_FLIGHT: usize = 64;

/// Sizes and durations of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// `short` or `full`.
    pub mode: String,
    /// The host's `--workers`, and the concurrency of the floor's writers.
    pub workers: usize,
    /// Fixed rates (objects/s) of the floor and propagation measurements.
    pub rates: Vec<f64>,
    /// Seconds of writes per operation (create, update, delete) at each rate.
    pub op_seconds: f64,
    /// Objects of the closed-loop floor rate measurement.
    pub floor_max_objects: usize,
    /// Seconds per throughput step.
    pub step_seconds: f64,
    /// Most throughput steps.
    pub max_steps: usize,
    /// Whether to bisect between the highest sustained and the lowest failed rate (else the
    /// search stops once it has both).
    pub bisect: bool,
    /// Pods created (then deleted) in the endpoints-via-pods measurement.
    pub pods: usize,
    /// Their rate (pods/s).
    pub pod_rate: f64,
    /// Service counts of the scale measurement (each with one EndpointSlice).
    pub scale_sizes: Vec<usize>,
    /// Namespaces the scale objects are spread across.
    pub scale_namespaces: usize,
    /// Seconds of idle measurement after the initial sync.
    pub idle_seconds: f64,
    /// Whether to touch the ForeignCluster once the restarted host has its peer, so that it
    /// re-evaluates the NamespaceOffloadings at once instead of after its 5-minute requeue.
    pub nudge: bool,
    /// How the whole-path floor's copier writes newyork's copies.
    pub copier_writes: CopierWrites,
}

impl Plan {
    /// The CI-sized plan: proves every measurement works in well under 2 minutes.
    pub fn short(workers: usize) -> Self {
        Self {
            mode: "short".into(),
            workers,
            rates: vec![50.0, 200.0],
            op_seconds: 1.5,
            floor_max_objects: 300,
            step_seconds: 2.0,
            max_steps: 3,
            bisect: false,
            pods: 10,
            pod_rate: 10.0,
            scale_sizes: vec![200],
            scale_namespaces: 10,
            idle_seconds: 3.0,
            nudge: true,
            copier_writes: CopierWrites::Replace,
        }
    }

    /// The full plan recorded in BENCHMARKS.md.
    pub fn full(workers: usize) -> Self {
        Self {
            mode: "full".into(),
            workers,
            rates: vec![50.0, 200.0, 500.0],
            op_seconds: 6.0,
            floor_max_objects: 3000,
            step_seconds: 8.0,
            max_steps: 9,
            bisect: true,
            pods: 100,
            pod_rate: 10.0,
            scale_sizes: vec![1000, 10000],
            scale_namespaces: 100,
            idle_seconds: 20.0,
            nudge: true,
            copier_writes: CopierWrites::Replace,
        }
    }
}

/// Latencies of one kind of write at one rate.
#[derive(Debug, Clone, Serialize)]
pub struct OpResult {
    /// `create`, `update` or `delete`.
    pub op: String,
    /// Writes issued.
    pub writes: usize,
    /// Writes that failed.
    pub failed: usize,
    /// Successful writes whose change never arrived (within the drain timeout).
    pub missing: usize,
    /// Successful writes per second actually achieved.
    pub achieved_rate: f64,
    /// Latencies (see [`RateResult::measured_from`]).
    pub latency: Option<Summary>,
    /// The same, measured from the start of the write call.
    pub latency_from_call: Option<Summary>,
    /// Propagation only: london write returned → the change on a london watch (the first leg
    /// of the host's path: how late the host can at best learn of it).
    pub london_watch: Option<Summary>,
}

/// Create, update and delete at one offered rate.
#[derive(Debug, Clone, Serialize)]
pub struct RateResult {
    /// Offered rate, objects/s.
    pub rate: f64,
    /// What the latency is measured from: `call` (floor) or `return` (propagation).
    pub measured_from: String,
    /// Per operation.
    pub ops: Vec<OpResult>,
    /// All operations together.
    pub all: Option<Summary>,
}

/// The closed-loop maximum create rate.
#[derive(Debug, Clone, Serialize)]
pub struct MaxRate {
    /// Services created.
    pub objects: usize,
    /// Concurrent writers (= host workers).
    pub concurrency: usize,
    /// Objects per second, first call to last arrival on the watch.
    pub rate: f64,
    /// Latency from call to arrival, at that rate.
    pub latency: Option<Summary>,
}

/// Floor: Services written directly in newyork, seen on a newyork watch.
#[derive(Debug, Clone, Serialize)]
pub struct FloorReport {
    /// At the fixed rates (at most `workers` writes in flight).
    pub rates: Vec<RateResult>,
    /// As fast as `workers` writers go.
    pub max: MaxRate,
}

/// One step of the throughput search.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Offered create rate, Services/s.
    pub rate: f64,
    /// Creates per second london actually accepted.
    pub write_rate: f64,
    /// Arrivals per second in newyork (first write to last arrival).
    pub arrival_rate: f64,
    /// Backlog (written in london, not yet in newyork) growth while writing, objects/s.
    pub backlog_slope: f64,
    /// Largest backlog seen.
    pub max_backlog: usize,
    /// Last arrival after the last write returned, seconds.
    pub drain_seconds: f64,
    /// Largest `liqo_reflection_queue_depth` scraped.
    pub max_queue_depth: f64,
    /// Latency percentiles of the step.
    pub latency: Option<Summary>,
    /// Whether the host kept up.
    pub sustained: bool,
    /// Why not, or what limited the step.
    pub note: String,
}

/// Throughput: the highest create rate the host sustains.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputReport {
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// Highest sustained rate (0 if none).
    pub sustained_rate: f64,
    /// True if that rate was limited by london accepting writes, not by the host.
    pub writer_bound: bool,
    /// Seconds spent between steps deleting each step's Services (not measured).
    pub cleanup_seconds: f64,
}

/// Latency split of endpoint changes driven by pods.
#[derive(Debug, Clone, Serialize)]
pub struct PodSplit {
    /// Pods.
    pub pods: usize,
    /// Pod write returned → address in (or out of) newyork's reflected slice.
    pub end_to_end: Option<Summary>,
    /// Pod write returned → address in london's slice (kubelet stand-in + EndpointSlice
    /// controller).
    pub london_controllers: Option<Summary>,
    /// london's slice → newyork's slice: the host's share.
    pub host: Option<Summary>,
    /// Pods whose address never arrived in newyork.
    pub missing: usize,
}

/// Endpoints via pods.
#[derive(Debug, Clone, Serialize)]
pub struct PodsReport {
    /// Services the pods are spread across.
    pub services: usize,
    /// Pods/s of creates and of deletes.
    pub rate: f64,
    /// Pod creates: the address appears.
    pub create: PodSplit,
    /// Pod deletes: the address disappears.
    pub delete: PodSplit,
}

/// One scale measurement.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    /// Services (each with one EndpointSlice).
    pub services: usize,
    /// Namespaces.
    pub namespaces: usize,
    /// Writing the same Services and slices directly in newyork (`workers` writers), first
    /// call to last arrival on the watch, seconds.
    pub direct_write_seconds: f64,
    /// Writing them in london (setup, host stopped), seconds.
    pub london_write_seconds: f64,
    /// Host start → last Service and slice in newyork, seconds.
    pub initial_sync_seconds: f64,
    /// Host start → last Service in newyork, seconds.
    pub services_synced_seconds: f64,
    /// Host start → the benchmark touched the ForeignCluster (after the host logged its peer
    /// established), seconds; `None` without `nudge`.
    pub nudged_at_seconds: Option<f64>,
    /// initial_sync / direct_write.
    pub ratio: f64,
    /// The host during the sync.
    pub host_during_sync: Option<Usage>,
    /// The host at steady state after the sync.
    pub host_idle: Option<Usage>,
    /// API writes of the host during the idle period.
    pub idle_writes: f64,
    /// Those writes by `CLUSTER/VERB` (which cluster, and apply, delete, status, event...), to
    /// tell where writes at rest come from.
    pub idle_writes_by: BTreeMap<String, f64>,
    /// Reflection passes during the idle period.
    pub idle_passes: f64,
    /// Services updated after the sync to measure fan-out.
    pub probe_updates: usize,
    /// EndpointSlice passes per Service update (triggers fan-out).
    pub slice_passes_per_service_update: f64,
    /// Latency of those updates.
    pub probe_latency: Option<Summary>,
    /// newyork's host (the provider) over the whole measurement, direct writes included.
    pub provider_host: Option<Usage>,
}

/// Everything one run measured.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    /// Floor.
    pub floor: Option<FloorReport>,
    /// Propagation at the fixed rates.
    pub propagation: Vec<RateResult>,
    /// Throughput search.
    pub throughput: Option<ThroughputReport>,
    /// The whole-path floor: the propagation workload through the native copier
    /// ([`crate::copier`]) instead of the host, at the same rates.
    pub copier_propagation: Vec<RateResult>,
    /// The whole-path floor: the throughput search through the native copier.
    pub copier_throughput: Option<ThroughputReport>,
    /// Endpoints via pods.
    pub pods: Option<PodsReport>,
    /// Scale.
    pub scale: Vec<ScaleReport>,
    /// Resource use of each process over each phase.
    pub usage: Vec<PhaseUsage>,
}

/// CPU and memory of the processes over one phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseUsage {
    /// Phase name.
    pub phase: String,
    /// Seconds.
    pub seconds: f64,
    /// Whole machine busy CPU, cores (of the machine's cores).
    pub machine_cores: f64,
    /// Per process (`london-host`, `newyork-host`, `london-cluster`, `newyork-cluster`).
    pub processes: Vec<(String, Usage)>,
    /// london host's counters over the phase: `writes CLUSTER/VERB`, `passes KIND/RESULT`
    /// (empty when the host restarted during the phase).
    pub host_counters: std::collections::BTreeMap<String, f64>,
    /// Copier phases: what the native copier did, and the CPU time of its threads (part of the
    /// `bench` process's).
    pub copier: Option<CopierStats>,
}

/// Latencies of `batch`'s successful writes against the arrivals in `book` under
/// `cluster:`, from the call's return (or start).
pub fn latencies(
    batch: &Batch,
    book: &Book,
    cluster: &str,
    from_start: bool,
) -> (Vec<Duration>, usize) {
    let mut out = Vec::with_capacity(batch.timed.len());
    let mut missing = 0;
    for t in batch.timed.iter().filter(|t| t.ok) {
        match book.get(&format!("{cluster}:{}", t.key)) {
            Some(at) => {
                let from = if from_start { t.start } else { t.end };
                out.push(at.saturating_duration_since(from));
            }
            None => missing += 1,
        }
    }
    (out, missing)
}

/// Waits until every successful write of `batch` arrived under `cluster:`, or `timeout`.
/// Returns the latest arrival.
pub async fn drain(
    batch: &Batch,
    book: &Book,
    cluster: &str,
    timeout: Duration,
) -> Option<Instant> {
    let keys: Vec<String> = batch
        .timed
        .iter()
        .filter(|t| t.ok)
        .map(|t| format!("{cluster}:{}", t.key))
        .collect();
    wait_keys(book, &keys, timeout).await.1
}

/// Waits until every key arrived, or `timeout`; returns how many did and the latest arrival.
pub async fn wait_keys(
    book: &Book,
    keys: &[String],
    timeout: Duration,
) -> (usize, Option<Instant>) {
    let deadline = Instant::now() + timeout;
    loop {
        let (n, last) = book.arrived(keys);
        if n == keys.len() || Instant::now() > deadline {
            return (n, last);
        }
        // Each poll looks every key up: poll large sets less often (the latest arrival is
        // timestamped by the watch, not by this loop).
        let pause = if keys.len() > 2000 { 200 } else { 20 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

fn drain_timeout(objects: usize, rate: f64) -> Duration {
    Duration::from_secs_f64((objects as f64 / rate.max(1.0)) * 3.0 + 30.0)
}

/// Creates `n` Services, updates each, deletes each, at `rate`, written by `writer` in `ns`;
/// arrivals are looked up under `cluster:`.
#[allow(clippy::too_many_arguments)]
pub async fn ops_at_rate(
    writer: &Client,
    book: &Book,
    cluster: &str,
    ns: &str,
    phase: &str,
    rate: f64,
    n: usize,
    in_flight: usize,
    from_start: bool,
) -> RateResult {
    let name = |i: usize| format!("s{}-{i}", rate as u64);
    let creates: Vec<Action> = (0..n)
        .map(|i| Action::CreateService {
            ns: ns.into(),
            name: name(i),
            seq: 1,
            phase: phase.into(),
            selector: None,
        })
        .collect();
    let updates: Vec<Action> = (0..n)
        .map(|i| Action::UpdateService {
            ns: ns.into(),
            name: name(i),
            seq: 2,
        })
        .collect();
    let deletes: Vec<Action> = (0..n)
        .map(|i| Action::DeleteService {
            ns: ns.into(),
            name: name(i),
        })
        .collect();
    let mut ops = Vec::new();
    let mut all = Vec::new();
    for (op, actions) in [
        ("create", creates),
        ("update", updates),
        ("delete", deletes),
    ] {
        let pace = Pace {
            rate: Some(rate),
            in_flight,
        };
        let batch = workload::run(writer, actions, pace, None).await;
        drain(&batch, book, cluster, drain_timeout(n, rate)).await;
        let (lat, missing) = latencies(&batch, book, cluster, from_start);
        let (from_call, _) = latencies(&batch, book, cluster, true);
        let london_watch = if from_start {
            None
        } else {
            Summary::of(&latencies(&batch, book, "london", false).0)
        };
        for e in &batch.errors {
            eprintln!("liqo-bench: {op} in {ns}: {e}");
        }
        all.extend_from_slice(&lat);
        ops.push(OpResult {
            op: op.into(),
            writes: batch.timed.len(),
            failed: batch.failed,
            missing,
            achieved_rate: batch.achieved_rate(),
            latency: Summary::of(&lat),
            latency_from_call: Summary::of(&from_call),
            london_watch,
        });
    }
    RateResult {
        rate,
        measured_from: if from_start { "call" } else { "return" }.into(),
        ops,
        all: Summary::of(&all),
    }
}

/// Offloads `ns` (created in london) and waits until a first Service reaches newyork, so the
/// provider's RoleBinding is in place before anything is measured.
pub async fn offloaded_namespace(lab: &Lab, book: &Book, ns: &str) -> Result<()> {
    lab.create_namespace("london", ns).await?;
    lab.offload(ns)?;
    warm_up(lab, book, ns, "").await
}

/// Creates a first Service in london's `ns` and waits (at most 60 s) until it reaches newyork,
/// so that whatever reflects `ns` (`through`, for the error) has its connections and grants in
/// place before anything is measured.
async fn warm_up(lab: &Lab, book: &Book, ns: &str, through: &str) -> Result<()> {
    let warm = Action::CreateService {
        ns: ns.into(),
        name: "warm-up".into(),
        seq: 1,
        phase: "warm-up".into(),
        selector: None,
    };
    warm.perform(&lab.london)
        .await
        .with_context(|| format!("creating the warm-up Service in {ns}"))?;
    let key = format!("newyork:{}", warm.arrival_key());
    let (n, _) = wait_keys(book, std::slice::from_ref(&key), Duration::from_secs(60)).await;
    if n == 0 {
        bail!("the warm-up Service of {ns} did not reach newyork{through} within 60 s");
    }
    Ok(())
}

/// Floor at the fixed rates and the closed-loop maximum.
pub async fn floor(lab: &Lab, book: &Book, plan: &Plan) -> Result<FloorReport> {
    let mut rates = Vec::new();
    for &rate in &plan.rates {
        let ns = format!("floor-{}", rate as u64);
        lab.create_namespace("newyork", &ns).await?;
        let n = (rate * plan.op_seconds).round() as usize;
        let r = ops_at_rate(
            &lab.newyork,
            book,
            "newyork",
            &ns,
            "floor",
            rate,
            n,
            plan.workers,
            true,
        )
        .await;
        eprintln!(
            "liqo-bench: floor at {rate}/s: p50 {:.1} ms p99 {:.1} ms",
            r.all.map_or(f64::NAN, |s| s.p50_ms),
            r.all.map_or(f64::NAN, |s| s.p99_ms)
        );
        rates.push(r);
    }
    let ns = "floor-max";
    lab.create_namespace("newyork", ns).await?;
    let actions: Vec<Action> = (0..plan.floor_max_objects)
        .map(|i| Action::CreateService {
            ns: ns.into(),
            name: format!("m-{i}"),
            seq: 1,
            phase: "floor".into(),
            selector: None,
        })
        .collect();
    let batch = workload::run(
        &lab.newyork,
        actions,
        Pace {
            rate: None,
            in_flight: plan.workers,
        },
        None,
    )
    .await;
    let last = drain(&batch, book, "newyork", Duration::from_secs(120)).await;
    let (lat, _) = latencies(&batch, book, "newyork", true);
    let secs = last
        .unwrap_or(batch.finished)
        .duration_since(batch.started)
        .as_secs_f64();
    let max = MaxRate {
        objects: plan.floor_max_objects,
        concurrency: plan.workers,
        rate: lat.len() as f64 / secs.max(1e-9),
        latency: Summary::of(&lat),
    };
    eprintln!(
        "liqo-bench: floor max create rate with {} writers: {:.0}/s",
        plan.workers, max.rate
    );
    // Leave newyork as it was: the API server's cost per Service grows with the Services it
    // holds, and the propagation measurements come next.
    let deletes: Vec<Action> = (0..plan.floor_max_objects)
        .map(|i| Action::DeleteService {
            ns: ns.into(),
            name: format!("m-{i}"),
        })
        .collect();
    let cleanup = workload::run(
        &lab.newyork,
        deletes,
        Pace {
            rate: None,
            in_flight: plan.workers,
        },
        None,
    )
    .await;
    drain(&cleanup, book, "newyork", Duration::from_secs(120)).await;
    Ok(FloorReport { rates, max })
}

/// Propagation at the fixed rates, through the host.
pub async fn propagation(lab: &Lab, book: &Book, plan: &Plan) -> Result<Vec<RateResult>> {
    let mut out = Vec::new();
    for &rate in &plan.rates {
        let ns = format!("prop-{}", rate as u64);
        offloaded_namespace(lab, book, &ns).await?;
        let n = (rate * plan.op_seconds).round() as usize;
        let r = ops_at_rate(
            &lab.london,
            book,
            "newyork",
            &ns,
            "propagation",
            rate,
            n,
            LOAD_IN_FLIGHT,
            false,
        )
        .await;
        eprintln!(
            "liqo-bench: propagation at {rate}/s: p50 {:.1} ms p99 {:.1} ms",
            r.all.map_or(f64::NAN, |s| s.p50_ms),
            r.all.map_or(f64::NAN, |s| s.p99_ms)
        );
        out.push(r);
    }
    Ok(out)
}

/// Where a throughput step reads the reflector's backlog (`queue max`).
#[derive(Clone)]
pub enum QueueDepth {
    /// `liqo_reflection_queue_depth` scraped from the host's `/metrics` every 500 ms.
    Host(SocketAddr),
    /// The native copier's work queue, read every 100 ms.
    Copier(Arc<AtomicUsize>),
    /// Not available.
    None,
}

/// Name of the `i`th Service of throughput step `index`.
fn step_object(index: usize, i: usize) -> String {
    format!("t{index}-{i}")
}

/// Services of a throughput step at `rate` for `seconds`.
fn step_objects(rate: f64, seconds: f64) -> usize {
    (rate * seconds).round() as usize
}

#[allow(clippy::too_many_arguments)]
async fn throughput_step(
    lab: &Lab,
    book: &Arc<Book>,
    ns: &str,
    phase: &str,
    depth: &QueueDepth,
    index: usize,
    rate: f64,
    seconds: f64,
) -> Step {
    let n = step_objects(rate, seconds);
    let actions: Vec<Action> = (0..n)
        .map(|i| Action::CreateService {
            ns: ns.into(),
            name: step_object(index, i),
            seq: 1,
            phase: phase.into(),
            selector: None,
        })
        .collect();
    let keys: Vec<String> = actions
        .iter()
        .map(|a| format!("newyork:{}", a.arrival_key()))
        .collect();
    let written = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let monitor = {
        let (book, written, stop, keys) = (book.clone(), written.clone(), stop.clone(), keys);
        let depth = depth.clone();
        tokio::spawn(async move {
            let mut samples: Vec<(f64, f64)> = Vec::new();
            let mut max_depth: f64 = 0.0;
            let mut tick = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let w = written.load(Ordering::Relaxed);
                let (a, _) = book.arrived(&keys);
                samples.push((started.elapsed().as_secs_f64(), w.saturating_sub(a) as f64));
                match &depth {
                    QueueDepth::Host(addr) => {
                        let addr = *addr;
                        if tick.is_multiple_of(5)
                            && let Ok(Ok(m)) =
                                tokio::task::spawn_blocking(move || procstat::scrape(addr)).await
                        {
                            max_depth = max_depth.max(procstat::sum(
                                &m,
                                "liqo_reflection_queue_depth",
                                &[],
                            ));
                        }
                    }
                    QueueDepth::Copier(gauge) => {
                        max_depth = max_depth.max(gauge.load(Ordering::Relaxed) as f64);
                    }
                    QueueDepth::None => {}
                }
                tick += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (samples, max_depth)
        })
    };
    let batch = workload::run(
        &lab.london,
        actions,
        Pace {
            rate: Some(rate),
            in_flight: LOAD_IN_FLIGHT,
        },
        Some(written),
    )
    .await;
    let last = drain(
        &batch,
        book,
        "newyork",
        Duration::from_secs_f64(seconds * 3.0 + 20.0),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let (samples, max_depth) = monitor.await.unwrap_or_default();
    let (lat, missing) = latencies(&batch, book, "newyork", false);
    let write_secs = batch.finished.duration_since(batch.started).as_secs_f64();
    let (xs, ys): (Vec<f64>, Vec<f64>) = samples
        .iter()
        .filter(|(t, _)| *t >= 1.0 && *t <= write_secs)
        .copied()
        .unzip();
    let slope = stats::slope(&xs, &ys);
    let max_backlog = samples.iter().map(|s| s.1 as usize).max().unwrap_or(0);
    let drain_seconds = last
        .map(|l| l.saturating_duration_since(batch.finished).as_secs_f64())
        .unwrap_or(f64::INFINITY);
    let arrival_rate = last.map_or(0.0, |l| {
        lat.len() as f64 / l.duration_since(batch.started).as_secs_f64().max(1e-9)
    });
    let write_rate = batch.achieved_rate();
    let mut notes = Vec::new();
    if write_rate < 0.9 * rate {
        notes.push(format!("london accepted only {write_rate:.0}/s"));
    }
    if slope > (0.05 * rate).max(2.0) {
        notes.push(format!("backlog grew {slope:.0}/s"));
    }
    if drain_seconds > 2.0 {
        notes.push(format!("drained {drain_seconds:.1}s after the last write"));
    }
    if missing > 0 || batch.failed > 0 {
        notes.push(format!("{missing} missing, {} failed writes", batch.failed));
    }
    let sustained = notes.is_empty()
        || (notes.len() == 1 && write_rate < 0.9 * rate && notes[0].starts_with("london"));
    let step = Step {
        rate,
        write_rate,
        arrival_rate,
        backlog_slope: slope,
        max_backlog,
        drain_seconds,
        max_queue_depth: max_depth,
        latency: Summary::of(&lat),
        sustained,
        note: notes.join("; "),
    };
    eprintln!(
        "liqo-bench: {phase} step {rate:.0}/s: writes {write_rate:.0}/s arrivals {arrival_rate:.0}/s \
         backlog slope {slope:.1}/s drain {drain_seconds:.2}s -> {}",
        if step.sustained {
            "sustained"
        } else {
            "NOT sustained"
        }
    );
    step
}

/// Searches the highest create rate the host sustains: starts near 40% of the floor rate,
/// grows by 25% per sustained step (shrinks by 40% per failed one) until it has a sustained and
/// a failed rate, then bisects between them (full mode) while steps remain.
pub async fn throughput(
    lab: &Lab,
    book: &Arc<Book>,
    plan: &Plan,
    floor_rate: f64,
) -> Result<ThroughputReport> {
    let ns = THROUGHPUT_NS;
    offloaded_namespace(lab, book, ns).await?;
    let depth = lab
        .london_host
        .as_ref()
        .map_or(QueueDepth::None, |h| QueueDepth::Host(h.metrics));
    Ok(throughput_search(lab, book, plan, floor_rate, ns, "throughput", &depth).await)
}

/// london namespace of the throughput search through the host.
pub const THROUGHPUT_NS: &str = "tput";
/// london (and newyork) namespace of the throughput search through the copier.
pub const COPIER_THROUGHPUT_NS: &str = "copy-tput";

/// The step search of [`throughput`], writing in london's `ns` (already reflected by
/// something), objects labelled `phase`, the backlog read from `depth`.
async fn throughput_search(
    lab: &Lab,
    book: &Arc<Book>,
    plan: &Plan,
    floor_rate: f64,
    ns: &str,
    phase: &str,
    depth: &QueueDepth,
) -> ThroughputReport {
    let round = |r: f64| ((r / 10.0).round() * 10.0).max(10.0);
    let mut rate = round(floor_rate * 0.4);
    let mut steps: Vec<Step> = Vec::new();
    let mut best: Option<Step> = None;
    let mut lowest_failed: Option<f64> = None;
    let mut cleanup_seconds = 0.0;
    for i in 0..plan.max_steps {
        let step = throughput_step(lab, book, ns, phase, depth, i, rate, plan.step_seconds).await;
        // Every step starts from the same clusters: the API server's cost per Service grows
        // with the Services it holds, which would otherwise charge earlier steps' objects to
        // later (higher) rates.
        cleanup_seconds += clean_steps(lab, book, ns, &[(i, rate)], plan.step_seconds).await;
        let writer_bound = step.write_rate < 0.9 * rate;
        steps.push(step.clone());
        if step.sustained {
            // Compared by what was achieved: a step london could not feed at its nominal rate
            // does not beat a lower one that was fully sustained.
            let achieved = |s: &Step| s.write_rate.min(s.rate);
            if best.as_ref().is_none_or(|b| achieved(b) < achieved(&step)) {
                best = Some(step);
            }
            if writer_bound {
                break;
            }
        } else {
            lowest_failed = Some(lowest_failed.map_or(rate, |f: f64| f.min(rate)));
        }
        let next = match (&best, lowest_failed) {
            (_, None) => round(rate * 1.25),
            (None, Some(f)) => round(f * 0.6),
            (Some(b), Some(f)) => {
                if !plan.bisect {
                    break;
                }
                let mid = round((b.rate + f) / 2.0);
                if mid <= b.rate || mid >= f {
                    break;
                }
                mid
            }
        };
        if next == rate {
            break;
        }
        rate = next;
    }
    ThroughputReport {
        sustained_rate: best.as_ref().map_or(0.0, |b| b.write_rate.min(b.rate)),
        writer_bound: best.as_ref().is_some_and(|b| b.write_rate < 0.9 * b.rate),
        steps,
        cleanup_seconds,
    }
}

/// Deletes the Services of throughput steps `(index, rate)` in london's `ns` and waits (at most
/// 10 min) until their deletion reached newyork. Not part of any measurement. Returns the
/// seconds it took.
async fn clean_steps(
    lab: &Lab,
    book: &Book,
    ns: &str,
    steps: &[(usize, f64)],
    step_seconds: f64,
) -> f64 {
    let started = Instant::now();
    let deletes: Vec<Action> = steps
        .iter()
        .flat_map(|&(index, rate)| {
            (0..step_objects(rate, step_seconds)).map(move |i| Action::DeleteService {
                ns: ns.into(),
                name: step_object(index, i),
            })
        })
        .collect();
    let batch = workload::run(
        &lab.london,
        deletes,
        Pace {
            rate: None,
            in_flight: LOAD_IN_FLIGHT,
        },
        None,
    )
    .await;
    // Deletes of objects whose create failed fail too (404): `drain` waits for the others.
    drain(&batch, book, "newyork", Duration::from_secs(600)).await;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "liqo-bench: removed {} throughput Services of {ns} in {secs:.1}s (not measured)",
        batch.timed.len() - batch.failed
    );
    secs
}

/// Creates namespace `ns` in both clusters (not offloaded: the host leaves it alone), starts a
/// copier on it with `workers` writers, and waits until a first Service crossed, so that
/// connections are open before anything is measured (as [`offloaded_namespace`] does for the
/// host).
pub async fn copied_namespace(
    lab: &Lab,
    book: &Book,
    ns: &str,
    workers: usize,
    writes: CopierWrites,
) -> Result<Copier> {
    lab.create_namespace("london", ns).await?;
    lab.create_namespace("newyork", ns).await?;
    let (london, newyork, owned) = (
        lab.london_config.clone(),
        lab.newyork_config.clone(),
        ns.to_string(),
    );
    let copier = tokio::task::spawn_blocking(move || {
        Copier::start(london, newyork, &owned, workers, writes)
    })
    .await
    .context("copier start task")??;
    warm_up(lab, book, ns, " through the copier").await?;
    Ok(copier)
}

/// The propagation workload at the fixed rates through the native copier (namespaces
/// `copy-RATE`), with what the copiers did over the phase.
pub async fn copier_propagation(
    lab: &Lab,
    book: &Book,
    plan: &Plan,
) -> Result<(Vec<RateResult>, CopierStats)> {
    let mut out = Vec::new();
    let mut stats = CopierStats::default();
    for &rate in &plan.rates {
        let ns = format!("copy-{}", rate as u64);
        let copier = copied_namespace(lab, book, &ns, plan.workers, plan.copier_writes).await?;
        let n = (rate * plan.op_seconds).round() as usize;
        let r = ops_at_rate(
            &lab.london,
            book,
            "newyork",
            &ns,
            "copier-propagation",
            rate,
            n,
            LOAD_IN_FLIGHT,
            false,
        )
        .await;
        stats.add(&copier.stop());
        eprintln!(
            "liqo-bench: copier propagation at {rate}/s: p50 {:.1} ms p99 {:.1} ms",
            r.all.map_or(f64::NAN, |s| s.p50_ms),
            r.all.map_or(f64::NAN, |s| s.p99_ms)
        );
        out.push(r);
    }
    Ok((out, stats))
}

/// The throughput search through the native copier (namespace `copy-tput`). Returns the
/// copier still running: the caller reads its stats, then removes the objects with
/// [`clean_throughput`] (the copier reflects the deletes), then drops it.
pub async fn copier_throughput(
    lab: &Lab,
    book: &Arc<Book>,
    plan: &Plan,
    floor_rate: f64,
) -> Result<(ThroughputReport, Copier)> {
    let ns = COPIER_THROUGHPUT_NS;
    let copier = copied_namespace(lab, book, ns, plan.workers, plan.copier_writes).await?;
    let depth = QueueDepth::Copier(copier.depth_gauge());
    let report =
        throughput_search(lab, book, plan, floor_rate, ns, "copier-throughput", &depth).await;
    Ok((report, copier))
}

/// Endpoints via pods: Services with selectors, pods created then deleted at `pod_rate`; the
/// kubelet stand-in gives them addresses and london's EndpointSlice controller publishes them.
pub async fn pods(lab: &Lab, book: &Arc<Book>, plan: &Plan) -> Result<PodsReport> {
    let ns = "pods";
    offloaded_namespace(lab, book, ns).await?;
    let services = 5usize;
    let svc_actions: Vec<Action> = (0..services)
        .map(|j| Action::CreateService {
            ns: ns.into(),
            name: format!("app-{j}"),
            seq: 1,
            phase: "pods".into(),
            selector: Some(format!("app-{j}")),
        })
        .collect();
    let batch = workload::run(
        &lab.london,
        svc_actions,
        Pace {
            rate: None,
            in_flight: 4,
        },
        None,
    )
    .await;
    drain(&batch, book, "newyork", Duration::from_secs(60)).await;

    let names: Vec<String> = (0..plan.pods).map(|i| format!("pod-{i}")).collect();
    let creates: Vec<Action> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Action::CreatePod {
            ns: ns.into(),
            name: name.clone(),
            app: format!("app-{}", i % services),
            phase: "pods".into(),
        })
        .collect();
    let pace = Pace {
        rate: Some(plan.pod_rate),
        in_flight: LOAD_IN_FLIGHT,
    };
    let batch = workload::run(&lab.london, creates, pace, None).await;
    // Every pod's address in newyork (pods get their address a moment after the create).
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut ips: Vec<Option<String>> = vec![None; names.len()];
    loop {
        for (i, n) in names.iter().enumerate() {
            if ips[i].is_none() {
                ips[i] = book.pod_ip(ns, n);
            }
        }
        let keys: Vec<String> = ips
            .iter()
            .flatten()
            .map(|ip| format!("newyork:ip+:{ip}"))
            .collect();
        let (arrived, _) = book.arrived(&keys);
        if (arrived == names.len() && keys.len() == names.len()) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let create = split(&batch, book, ns, &names, &ips, "+");

    let deletes: Vec<Action> = names
        .iter()
        .map(|name| Action::DeletePod {
            ns: ns.into(),
            name: name.clone(),
        })
        .collect();
    book.forget_prefix("london:ip-:");
    book.forget_prefix("newyork:ip-:");
    let batch = workload::run(&lab.london, deletes, pace, None).await;
    let keys: Vec<String> = ips
        .iter()
        .flatten()
        .map(|ip| format!("newyork:ip-:{ip}"))
        .collect();
    wait_keys(book, &keys, Duration::from_secs(90)).await;
    let delete = split(&batch, book, ns, &names, &ips, "-");
    Ok(PodsReport {
        services,
        rate: plan.pod_rate,
        create,
        delete,
    })
}

fn split(
    batch: &Batch,
    book: &Book,
    ns: &str,
    names: &[String],
    ips: &[Option<String>],
    sign: &str,
) -> PodSplit {
    let (mut e2e, mut london, mut host) = (Vec::new(), Vec::new(), Vec::new());
    let mut missing = 0;
    for (i, name) in names.iter().enumerate() {
        let key = format!("pod:{ns}/{name}");
        let Some(t) = batch.timed.iter().find(|t| t.key == key && t.ok) else {
            missing += 1;
            continue;
        };
        let Some(ip) = &ips[i] else {
            missing += 1;
            continue;
        };
        let ny = book.get(&format!("newyork:ip{sign}:{ip}"));
        let ldn = book.get(&format!("london:ip{sign}:{ip}"));
        match ny {
            Some(ny) => e2e.push(ny.saturating_duration_since(t.end)),
            None => missing += 1,
        }
        if let Some(l) = ldn {
            london.push(l.saturating_duration_since(t.end));
            if let Some(ny) = ny {
                host.push(ny.saturating_duration_since(l));
            }
        }
    }
    PodSplit {
        pods: names.len(),
        end_to_end: Summary::of(&e2e),
        london_controllers: Summary::of(&london),
        host: Summary::of(&host),
        missing,
    }
}

fn scale_actions(prefix: &str, services: usize, namespaces: usize, phase: &str) -> Vec<Action> {
    let mut out = Vec::with_capacity(services * 2);
    for i in 0..services {
        let ns = format!("{prefix}-{}", i % namespaces);
        let name = format!("svc-{}", i / namespaces);
        out.push(Action::CreateService {
            ns: ns.clone(),
            name: name.clone(),
            seq: 1,
            phase: phase.into(),
            selector: None,
        });
        out.push(Action::CreateSlice {
            ns,
            name: format!("{name}-1"),
            service: name,
            seq: 1,
            phase: phase.into(),
            ip: format!("10.200.{}.{}", (i / 250) % 250, i % 250 + 1),
        });
    }
    out
}

/// The floor of the scale measurement: the same Services and slices written directly in
/// newyork by `workers` writers, first call to last arrival on the watch, seconds. Run on a
/// fresh environment: the API server's cost per Service grows with the Services it holds, so
/// the host must then start from the same empty cluster.
pub async fn scale_direct(
    lab: &Lab,
    book: &Arc<Book>,
    plan: &Plan,
    services: usize,
) -> Result<f64> {
    let namespaces = plan.scale_namespaces.min(services).max(1);
    for i in 0..namespaces {
        lab.create_namespace("newyork", &format!("direct-{i}"))
            .await?;
    }
    let direct = workload::run(
        &lab.newyork,
        scale_actions("direct", services, namespaces, "direct"),
        Pace {
            rate: None,
            in_flight: plan.workers,
        },
        None,
    )
    .await;
    if direct.failed > 0 {
        bail!(
            "{} direct writes failed, e.g. {:?}",
            direct.failed,
            direct.errors
        );
    }
    let last = drain(&direct, book, "newyork", Duration::from_secs(1200)).await;
    let seconds = last
        .unwrap_or(direct.finished)
        .duration_since(direct.started)
        .as_secs_f64();
    eprintln!("liqo-bench: scale {services}: direct write in newyork {seconds:.1}s");
    Ok(seconds)
}

/// Scale: `services` Services and as many EndpointSlices in `namespaces` namespaces, written
/// in london with the host stopped; then the host starts and reflects them all. Compared with
/// `direct_write_seconds` from [`scale_direct`].
pub async fn scale(
    lab: &mut Lab,
    book: &Arc<Book>,
    sampler: &Sampler,
    plan: &Plan,
    services: usize,
    direct_write_seconds: f64,
) -> Result<ScaleReport> {
    let namespaces = plan.scale_namespaces.min(services).max(1);
    let measurement_started = Instant::now();
    // 2. The host stops; everything is written in london and offloaded.
    if let Some(mut h) = lab.london_host.take() {
        h.stop();
    }
    sampler.unwatch("london-host");
    for i in 0..namespaces {
        let ns = format!("scale-{i}");
        lab.create_namespace("london", &ns).await?;
    }
    let actions = scale_actions("scale", services, namespaces, "scale");
    let expected: Vec<String> = actions
        .iter()
        .map(|a| format!("newyork:{}", a.arrival_key()))
        .collect();
    let expected_services: Vec<String> = expected
        .iter()
        .filter(|k| k.starts_with("newyork:svc:"))
        .cloned()
        .collect();
    let london_batch = workload::run(
        &lab.london,
        actions,
        Pace {
            rate: None,
            in_flight: 16,
        },
        None,
    )
    .await;
    if london_batch.failed > 0 {
        bail!(
            "{} london writes failed, e.g. {:?}",
            london_batch.failed,
            london_batch.errors
        );
    }
    let london_write_seconds = london_batch
        .finished
        .duration_since(london_batch.started)
        .as_secs_f64();
    for i in 0..namespaces {
        lab.apply_offloading(&format!("scale-{i}")).await?;
    }

    // 3. The host starts with everything present.
    let host = lab.start_host("london")?;
    let (started, pid, metrics) = (host.started, host.pid, host.metrics);
    sampler.watch("london-host", pid);
    let log = host.log.clone();
    lab.london_host = Some(host);
    let nudged_at_seconds = if plan.nudge {
        let at = Lab::wait_peer_established(&log, Duration::from_secs(120)).await?;
        lab.touch_foreign_cluster().await?;
        Some(at.duration_since(started).as_secs_f64())
    } else {
        None
    };
    let (n, last) = wait_keys(book, &expected, Duration::from_secs(900)).await;
    let synced = Instant::now();
    if n < expected.len() {
        bail!(
            "initial sync incomplete after 15 min: {n} of {} objects in newyork",
            expected.len()
        );
    }
    let (_, last_service) = book.arrived(&expected_services);
    let initial_sync_seconds = last.map_or(f64::NAN, |l| l.duration_since(started).as_secs_f64());
    let services_synced_seconds =
        last_service.map_or(f64::NAN, |l| l.duration_since(started).as_secs_f64());
    let host_during_sync = sampler.usage("london-host", started, synced);
    eprintln!(
        "liqo-bench: scale {services}: initial sync {initial_sync_seconds:.1}s (direct {direct_write_seconds:.1}s)"
    );

    // 4. Steady state: no work, no writes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m0 = tokio::task::spawn_blocking(move || procstat::scrape(metrics)).await??;
    let idle_from = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(plan.idle_seconds)).await;
    let idle_to = Instant::now();
    let m1 = tokio::task::spawn_blocking(move || procstat::scrape(metrics)).await??;
    let host_idle = sampler.usage("london-host", idle_from, idle_to);
    let writes = |m: &[procstat::Metric]| procstat::sum(m, "liqo_reflection_api_writes_total", &[]);
    let passes = |m: &[procstat::Metric], kind: &str| {
        procstat::sum(m, "liqo_reflection_passes_total", &[("kind", kind)])
    };
    let idle_writes = writes(&m1) - writes(&m0);
    let idle_writes_by: BTreeMap<String, f64> =
        procstat::delta(&procstat::host_counters(&m0), &procstat::host_counters(&m1))
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("writes ")?.to_string(), v)))
            .collect();
    let idle_passes = passes(&m1, "Service") + passes(&m1, "EndpointSlice")
        - passes(&m0, "Service")
        - passes(&m0, "EndpointSlice");

    // 5. Fan-out probe: one Service update per namespace, one at a time.
    let probes = namespaces.min(10);
    let mut probe_lat = Vec::new();
    for i in 0..probes {
        let action = Action::UpdateService {
            ns: format!("scale-{i}"),
            name: "svc-0".into(),
            seq: 2,
        };
        let b = workload::run(
            &lab.london,
            vec![action],
            Pace {
                rate: None,
                in_flight: 1,
            },
            None,
        )
        .await;
        drain(&b, book, "newyork", Duration::from_secs(30)).await;
        // Let the triggered EndpointSlice passes finish before the next probe.
        tokio::time::sleep(Duration::from_millis(300)).await;
        probe_lat.extend(latencies(&b, book, "newyork", false).0);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let m2 = tokio::task::spawn_blocking(move || procstat::scrape(metrics)).await??;
    let slice_passes = passes(&m2, "EndpointSlice") - passes(&m1, "EndpointSlice");
    Ok(ScaleReport {
        services,
        namespaces,
        direct_write_seconds,
        london_write_seconds,
        initial_sync_seconds,
        services_synced_seconds,
        nudged_at_seconds,
        ratio: initial_sync_seconds / direct_write_seconds,
        host_during_sync,
        host_idle,
        idle_writes,
        idle_writes_by,
        idle_passes,
        probe_updates: probes,
        slice_passes_per_service_update: slice_passes / probes.max(1) as f64,
        probe_latency: Summary::of(&probe_lat),
        provider_host: sampler.usage("newyork-host", measurement_started, Instant::now()),
    })
}
