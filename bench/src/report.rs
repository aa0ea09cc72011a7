//! The report: targets, a table on stdout, JSON, and an SVG chart of latency by rate.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use plotters::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::copier::{CopierStats, CopierWrites};
use crate::phases::{
    FloorReport, PhaseUsage, Plan, PodsReport, RateResult, Results, ScaleReport, ThroughputReport,
};
use crate::stats::Summary;

/// The machine and the build the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// 1-minute load average before the run.
    pub load_before: f64,
    /// 1-minute load average after the run.
    pub load_after: f64,
    /// Kernel release.
    pub kernel: String,
    /// `git describe --always --dirty` of the work tree.
    pub commit: String,
    /// Profile the host binary was built with (`release` or `debug`, from its directory).
    pub host_profile: String,
}

impl Machine {
    /// Reads what describes this machine (load after: filled in at the end).
    pub fn detect(host_bin: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default();
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1048576.0);
        let commit = std::process::Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        Self {
            cpu,
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            memory_gib,
            load_before: load_average(),
            load_after: 0.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            commit,
            host_profile: host_bin
                .parent()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// One target of the issue, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is checked.
    pub name: String,
    /// The target, as a sentence.
    pub target: String,
    /// What was measured.
    pub measured: String,
    /// Met, missed, or not measured in this run (`None`).
    pub met: Option<bool>,
}

/// The whole report, as written to JSON.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Format version of this JSON.
    pub version: u32,
    /// Seconds since the Unix epoch at the start.
    pub started_unix: u64,
    /// Wall time of the run, seconds.
    pub duration_seconds: f64,
    /// Machine and build.
    pub machine: Machine,
    /// What was run.
    pub plan: Plan,
    /// Setup steps and their durations (seconds), per environment.
    pub setup: Vec<(String, f64)>,
    /// Measurements.
    pub results: Results,
    /// The plugin call benchmark's JSON (`make bench-plugins`), if present.
    pub plugins: Option<Value>,
    /// Targets, checked.
    pub targets: Vec<Target>,
    /// A second comparison, not the issue's targets: the same latency and throughput
    /// thresholds against the whole-path floor (the native copier) instead of direct writes.
    pub whole_path: Vec<Target>,
}

fn at_rate(rates: &[RateResult], rate: f64) -> Option<&RateResult> {
    rates.iter().find(|r| (r.rate - rate).abs() < 1e-9)
}

/// The latency thresholds (p50 ≤ 1.5×, p99 ≤ 2×) of `propagation` against `baseline` (named
/// `name`), at 200/s, or at 50/s when 200/s was not measured in both.
fn latency_targets(
    out: &mut Vec<Target>,
    baseline: &[RateResult],
    name: &str,
    propagation: &[RateResult],
) {
    let rate = [200.0, 50.0]
        .into_iter()
        .find(|r| at_rate(baseline, *r).is_some() && at_rate(propagation, *r).is_some());
    let pair =
        rate.and_then(|r| Some((r, at_rate(baseline, r)?.all?, at_rate(propagation, r)?.all?)));
    for (label, bound, pick) in [
        ("p50", 1.5, (|s: &Summary| s.p50_ms) as fn(&Summary) -> f64),
        ("p99", 2.0, |s: &Summary| s.p99_ms),
    ] {
        let (measured, met) = match pair {
            Some((r, b, p)) => {
                let ratio = pick(&p) / pick(&b);
                (
                    format!(
                        "{:.1} ms vs {name} {:.1} ms at {r}/s: {ratio:.2}x",
                        pick(&p),
                        pick(&b)
                    ),
                    Some(ratio <= bound),
                )
            }
            None => ("not measured".into(), None),
        };
        out.push(Target {
            name: format!("propagation {label}"),
            target: format!("<= {bound}x the {name}'s {label} at 200 objects/s"),
            measured,
            met,
        });
    }
}

/// Checks the issue's targets against `results`.
pub fn targets(results: &Results) -> Vec<Target> {
    let mut out = Vec::new();
    let floor = results.floor.as_ref();
    let floor_rates = floor.map_or(&[][..], |f| f.rates.as_slice());
    latency_targets(&mut out, floor_rates, "floor", &results.propagation);
    let (measured, met) = match (floor, &results.throughput) {
        (Some(f), Some(t)) => {
            let ratio = t.sustained_rate / f.max.rate;
            (
                format!(
                    "{:.0}/s vs floor {:.0}/s: {ratio:.2}x{}",
                    t.sustained_rate,
                    f.max.rate,
                    if t.writer_bound {
                        " (limited by london accepting writes)"
                    } else {
                        ""
                    }
                ),
                Some(ratio >= 0.8),
            )
        }
        _ => ("not measured".into(), None),
    };
    out.push(Target {
        name: "throughput".into(),
        target: ">= 0.8x the floor's create rate".into(),
        measured,
        met,
    });
    let largest = results.scale.iter().max_by_key(|s| s.services);
    let note = |services: usize| {
        if services < 10_000 {
            format!(" ({services} Services: the target is for 10 000)")
        } else {
            String::new()
        }
    };
    out.push(match largest {
        Some(s) => Target {
            name: "initial sync".into(),
            target: "10 000 Services: <= 1.25x the time to write them directly".into(),
            measured: format!(
                "{:.1} s vs {:.1} s direct: {:.2}x{}",
                s.initial_sync_seconds,
                s.direct_write_seconds,
                s.ratio,
                note(s.services)
            ),
            met: Some(s.ratio <= 1.25),
        },
        None => Target {
            name: "initial sync".into(),
            target: "10 000 Services: <= 1.25x the time to write them directly".into(),
            measured: "not measured".into(),
            met: None,
        },
    });
    let rss = largest.map(|s| {
        let peak = [s.host_during_sync, s.host_idle]
            .iter()
            .flatten()
            .map(|u| u.peak_rss_mb)
            .fold(0.0, f64::max);
        (s.services, peak)
    });
    out.push(Target {
        name: "host RSS".into(),
        target: "<= 150 MB with 10 000 Services".into(),
        measured: rss.map_or("not measured".into(), |(n, p)| {
            format!("peak {p:.0} MiB{}", note(n))
        }),
        met: rss.map(|(_, p)| p <= 150.0),
    });
    let idle = largest.and_then(|s| Some((s.services, s.host_idle?, s.idle_writes)));
    out.push(Target {
        name: "idle CPU".into(),
        target: "~0 at steady state".into(),
        measured: idle.map_or("not measured".into(), |(n, u, w)| {
            format!(
                "{:.2}% of a core over {:.0} s, {w:.0} writes{}",
                u.cpu_cores * 100.0,
                u.seconds,
                note(n)
            )
        }),
        met: idle.map(|(_, u, w)| u.cpu_cores <= 0.01 && w == 0.0),
    });
    out
}

/// The issue's latency and throughput thresholds, applied against the whole-path floor (the
/// native copier: same path, cheapest code) instead of the direct floor. Informational: it
/// separates what the host adds from what the rig costs a reflected object.
pub fn whole_path_targets(results: &Results) -> Vec<Target> {
    let mut out = Vec::new();
    latency_targets(
        &mut out,
        &results.copier_propagation,
        "copier",
        &results.propagation,
    );
    let (measured, met) = match (&results.throughput, &results.copier_throughput) {
        (Some(t), Some(c)) if c.sustained_rate > 0.0 => {
            let ratio = t.sustained_rate / c.sustained_rate;
            (
                format!(
                    "{:.0}/s vs copier {:.0}/s: {ratio:.2}x{}",
                    t.sustained_rate,
                    c.sustained_rate,
                    if c.writer_bound {
                        " (the copier's limited by london accepting writes)"
                    } else {
                        ""
                    }
                ),
                Some(ratio >= 0.8),
            )
        }
        _ => ("not measured".into(), None),
    };
    out.push(Target {
        name: "throughput".into(),
        target: ">= 0.8x the copier's sustained create rate".into(),
        measured,
        met,
    });
    out
}

fn ms(s: Option<Summary>) -> [String; 4] {
    match s {
        Some(s) => [
            format!("{:.1}", s.p50_ms),
            format!("{:.1}", s.p90_ms),
            format!("{:.1}", s.p99_ms),
            format!("{:.1}", s.max_ms),
        ],
        None => ["-".into(), "-".into(), "-".into(), "-".into()],
    }
}

/// The human-readable report.
pub fn table(report: &Report) -> String {
    let mut o = String::new();
    header_line(&mut o, report);
    let r = &report.results;
    if let Some(f) = &r.floor {
        floor_section(&mut o, f, report.plan.workers);
    }
    let floor_rates: &[RateResult] = r.floor.as_ref().map_or(&[], |f| &f.rates);
    let copier_rates = (!r.copier_propagation.is_empty()).then_some(&r.copier_propagation[..]);
    if !r.propagation.is_empty() {
        propagation_section(&mut o, &r.propagation, floor_rates, copier_rates);
    }
    if let Some(t) = &r.throughput {
        throughput_section(&mut o, t, r);
    }
    if !r.copier_propagation.is_empty() || r.copier_throughput.is_some() {
        copier_section(&mut o, report, floor_rates);
    }
    if let Some(p) = &r.pods {
        pods_section(&mut o, p);
    }
    if !r.scale.is_empty() {
        scale_section(&mut o, &r.scale);
    }
    plugins_section(&mut o, report.plugins.as_ref());
    if !r.usage.is_empty() {
        cpu_section(&mut o, &r.usage, report.machine.cpus);
    }
    targets_section(&mut o, &report.targets);
    if report.whole_path.iter().any(|t| t.met.is_some()) {
        whole_path_section(&mut o, &report.whole_path);
    }
    o
}

/// The first line: the mode, the machine, the build, the load and the run's duration.
fn header_line(o: &mut String, report: &Report) {
    let m = &report.machine;
    let _ = writeln!(
        o,
        "\nliqo-bench ({} mode) on {} x {} ({:.0} GiB), kernel {}, {} host build, commit {}; load {:.2} before, {:.2} after; {:.0} s",
        report.plan.mode,
        m.cpus,
        m.cpu,
        m.memory_gib,
        m.kernel,
        m.host_profile,
        m.commit,
        m.load_before,
        m.load_after,
        report.duration_seconds
    );
}

/// Section 1: the floor, Services written directly in newyork.
fn floor_section(o: &mut String, f: &FloorReport, workers: usize) {
    let _ = writeln!(
        o,
        "\n1. Floor: Services written directly in newyork (<= {} in flight), call -> newyork watch [ms]",
        workers
    );
    let _ = writeln!(
        o,
        "{:>8} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8}",
        "rate/s", "op", "achieved", "p50", "p90", "p99", "max"
    );
    for rr in &f.rates {
        rate_rows(o, rr);
    }
    let _ = writeln!(
        o,
        "  max sustained create rate with {} writers: {:.0}/s ({} Services; p50 {} ms, p99 {} ms at that rate)",
        f.max.concurrency,
        f.max.rate,
        f.max.objects,
        ms(f.max.latency)[0],
        ms(f.max.latency)[2]
    );
}

/// Section 2: propagation through the host at the fixed rates.
fn propagation_section(
    o: &mut String,
    propagation: &[RateResult],
    floor_rates: &[RateResult],
    copier_rates: Option<&[RateResult]>,
) {
    let _ = writeln!(
        o,
        "\n2. Propagation: london write returned -> change on a newyork watch [ms]{}",
        if copier_rates.is_some() {
            "; x/copier: against the whole-path floor below"
        } else {
            ""
        }
    );
    propagation_rows(o, propagation, floor_rates, copier_rates);
}

/// Section 3: the throughput search through the host, against the floor and the copier.
fn throughput_section(o: &mut String, t: &ThroughputReport, r: &Results) {
    let _ = writeln!(
        o,
        "\n3. Throughput: Service creates in london at increasing rates"
    );
    step_rows(o, t);
    let floor_rate = r.floor.as_ref().map_or(f64::NAN, |f| f.max.rate);
    let _ = writeln!(
        o,
        "  highest sustained: {:.0}/s = {:.2}x the floor's {:.0}/s{}",
        t.sustained_rate,
        t.sustained_rate / floor_rate,
        floor_rate,
        if t.writer_bound {
            " (limited by london accepting the writes)"
        } else {
            ""
        }
    );
    if let Some(c) = &r.copier_throughput {
        let _ = writeln!(
            o,
            "  against the whole-path floor: {:.0}/s = {:.2}x the native copier's {:.0}/s{}",
            t.sustained_rate,
            t.sustained_rate / c.sustained_rate,
            c.sustained_rate,
            if c.writer_bound {
                " (the copier's limited by london accepting the writes)"
            } else {
                ""
            }
        );
    }
}

/// Section 3w: the whole-path floor, the same workloads through the native copier.
fn copier_section(o: &mut String, report: &Report, floor_rates: &[RateResult]) {
    let r = &report.results;
    let _ = writeln!(
        o,
        "\n3w. Whole-path floor: a native copier (watch london, write newyork, same {} workers)",
        report.plan.workers
    );
    let writes = match report.plan.copier_writes {
        CopierWrites::Replace => "create/replace/delete with the admin client; no plugin, no apply",
        CopierWrites::Apply => "server-side apply (force)/delete with the admin client; no plugin",
    };
    let _ = writeln!(
        o,
        "   in-process: one watch, a coalescing queue, {writes}, no Events"
    );
    if !r.copier_propagation.is_empty() {
        let _ = writeln!(
            o,
            "   london write returned -> change on a newyork watch [ms]; x/floor: against the direct floor"
        );
        propagation_rows(o, &r.copier_propagation, floor_rates, None);
    }
    if let Some(c) = &r.copier_throughput {
        copier_throughput_rows(o, c, r);
    }
    for u in r.usage.iter() {
        if let Some(c) = &u.copier {
            copier_usage_line(o, u, c);
        }
    }
}

/// The throughput search through the copier, against the floor.
fn copier_throughput_rows(o: &mut String, c: &ThroughputReport, r: &Results) {
    let _ = writeln!(
        o,
        "   Service creates in london at increasing rates, through the copier (queue max: its work queue)"
    );
    step_rows(o, c);
    let floor_rate = r.floor.as_ref().map_or(f64::NAN, |f| f.max.rate);
    let _ = writeln!(
        o,
        "  highest sustained through the copier: {:.0}/s = {:.2}x the floor's {:.0}/s{}",
        c.sustained_rate,
        c.sustained_rate / floor_rate,
        floor_rate,
        if c.writer_bound {
            " (limited by london accepting the writes)"
        } else {
            ""
        }
    );
}

/// What the copier wrote in one phase, and the CPU its threads used.
fn copier_usage_line(o: &mut String, u: &PhaseUsage, c: &CopierStats) {
    let _ = writeln!(
        o,
        "  {}: copier wrote {} creates, {} replaces, {} deletes ({} unchanged, {} conflicts redone, {} errors retried, {} events coalesced); its threads {:.2} s CPU = {:.3} cores",
        u.phase,
        c.creates,
        c.replaces,
        c.deletes,
        c.unchanged,
        c.conflicts,
        c.errors,
        c.coalesced,
        c.cpu_seconds,
        if u.seconds > 0.0 {
            c.cpu_seconds / u.seconds
        } else {
            0.0
        }
    );
}

/// Endpoints via pods: pod write -> address in or out of newyork's slice, split by part.
fn pods_section(o: &mut String, p: &PodsReport) {
    let _ = writeln!(
        o,
        "\n   Endpoints via pods: {} pods over {} Services at {}/s; pod write returned -> address in/out of newyork's slice [ms]",
        p.create.pods, p.services, p.rate
    );
    let _ = writeln!(
        o,
        "{:>8} {:>22} {:>8} {:>8} {:>8} {:>8}",
        "op", "part", "p50", "p90", "p99", "max"
    );
    for (op, s) in [("create", &p.create), ("delete", &p.delete)] {
        for (part, sum) in [
            ("end to end", s.end_to_end),
            ("kubelet+controller", s.london_controllers),
            ("host (london->newyork)", s.host),
        ] {
            let [p50, p90, p99, max] = ms(sum);
            let _ = writeln!(
                o,
                "{op:>8} {part:>22} {p50:>8} {p90:>8} {p99:>8} {max:>8}{}",
                if part == "end to end" {
                    missing_note(s.missing, 0)
                } else {
                    String::new()
                }
            );
        }
    }
}

/// Section 4: scale, one row per size, then the notes on idle writes and the provider.
fn scale_section(o: &mut String, scale: &[ScaleReport]) {
    let _ = writeln!(
        o,
        "\n4. Scale: Services + one EndpointSlice each, the host started with everything present"
    );
    let _ = writeln!(
        o,
        "{:>8} {:>4} {:>9} {:>8} {:>8} {:>6} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9}",
        "services",
        "ns",
        "direct s",
        "sync s",
        "svc s",
        "ratio",
        "sync cpu",
        "peak MiB",
        "idle cpu",
        "idle MiB",
        "idle wr",
        "eps/upd"
    );
    for s in scale {
        scale_row(o, s);
    }
    let _ = writeln!(
        o,
        "  (cpu in cores; eps/upd: EndpointSlice reflection passes caused by one Service update)"
    );
    scale_notes(o, scale);
}

/// One size of the scale table.
fn scale_row(o: &mut String, s: &ScaleReport) {
    let d = s.host_during_sync;
    let i = s.host_idle;
    let _ = writeln!(
        o,
        "{:>8} {:>4} {:>9.1} {:>8.1} {:>8.1} {:>5.2}x {:>9} {:>9} {:>9} {:>9} {:>8.0} {:>9.1}",
        s.services,
        s.namespaces,
        s.direct_write_seconds,
        s.initial_sync_seconds,
        s.services_synced_seconds,
        s.ratio,
        d.map_or("-".into(), |u| format!("{:.2}", u.cpu_cores)),
        d.map_or("-".into(), |u| format!("{:.0}", u.peak_rss_mb)),
        i.map_or("-".into(), |u| format!("{:.3}", u.cpu_cores)),
        i.map_or("-".into(), |u| format!("{:.0}", u.last_rss_mb)),
        s.idle_writes,
        s.slice_passes_per_service_update,
    );
}

/// Under the scale table: who wrote while idle, and the provider host's peak memory.
fn scale_notes(o: &mut String, scale: &[ScaleReport]) {
    for s in scale.iter().filter(|s| !s.idle_writes_by.is_empty()) {
        let by: Vec<String> = s
            .idle_writes_by
            .iter()
            .map(|(k, v)| format!("{k} {v:.0}"))
            .collect();
        let _ = writeln!(
            o,
            "  {} Services: writes while idle by cluster/verb: {}",
            s.services,
            by.join(", ")
        );
    }
    for s in scale {
        if let Some(p) = s.provider_host {
            let _ = writeln!(
                o,
                "  {} Services: newyork's host (provider, reflects nothing) peaked at {:.0} MiB",
                s.services, p.peak_rss_mb
            );
        }
    }
}

/// Section 5: the plugin call benchmark's cases, or how to produce them.
fn plugins_section(o: &mut String, plugins: Option<&Value>) {
    let Some(cases) = plugins.and_then(|p| p["cases"].as_array()) else {
        let _ = writeln!(
            o,
            "\n5. Plugin call cost: no plugin_calls.json (run `make bench-plugins`)"
        );
        return;
    };
    let _ = writeln!(
        o,
        "\n5. Plugin call cost (make bench-plugins; warm instance, host invariants included) [us]"
    );
    let _ = writeln!(
        o,
        "{:>40} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "case", "native p50", "native p99", "wasm p50", "wasm p99", "ratio"
    );
    for c in cases {
        let us = |v: &Value| v.as_f64().map_or("-".into(), |n| format!("{:.1}", n / 1e3));
        let _ = writeln!(
            o,
            "{:>40} {:>10} {:>10} {:>10} {:>10} {:>7.2}x",
            c["case"].as_str().unwrap_or(""),
            us(&c["nativeNs"]["p50"]),
            us(&c["nativeNs"]["p99"]),
            us(&c["wasmNs"]["p50"]),
            us(&c["wasmNs"]["p99"]),
            c["ratioP50"].as_f64().unwrap_or(f64::NAN)
        );
    }
}

/// CPU by phase: per process, then the london host's pass and write counters.
fn cpu_section(o: &mut String, usage: &[PhaseUsage], cpus: usize) {
    let _ = writeln!(o, "\nCPU by phase (cores; the machine has {} cores)", cpus);
    for u in usage {
        phase_cpu_line(o, u);
        host_counter_lines(o, u);
    }
}

/// One phase's CPU: the machine, each process, and the copier's threads if any.
fn phase_cpu_line(o: &mut String, u: &PhaseUsage) {
    let procs: Vec<String> = u
        .processes
        .iter()
        .map(|(n, x)| format!("{n} {:.2}", x.cpu_cores))
        .collect();
    let copier = u.copier.map_or(String::new(), |c| {
        format!(
            " (copier threads {:.2})",
            if u.seconds > 0.0 {
                c.cpu_seconds / u.seconds
            } else {
                0.0
            }
        )
    });
    let _ = writeln!(
        o,
        "  {:<22} {:>6.1}s  machine {:.2}  {}{copier}",
        u.phase,
        u.seconds,
        u.machine_cores,
        procs.join(", ")
    );
}

/// One phase's london host counters: the mean pass time, the writes and the passes.
fn host_counter_lines(o: &mut String, u: &PhaseUsage) {
    let (sum, count) = (
        u.host_counters.get("pass seconds (sum)"),
        u.host_counters.get("pass count"),
    );
    if let (Some(sum), Some(count)) = (sum, count)
        && *count > 0.0
    {
        let _ = writeln!(
            o,
            "  {:<22} london host: mean pass {:.1} ms over {count:.0} passes",
            "",
            sum / count * 1e3
        );
    }
    if !u.host_counters.is_empty() {
        let c: Vec<String> = u
            .host_counters
            .iter()
            .filter(|(k, _)| k.starts_with("writes") || k.starts_with("passes"))
            .map(|(k, v)| format!("{k} {v:.0}"))
            .collect();
        let _ = writeln!(o, "  {:<22} london host: {}", "", c.join(", "));
    }
}

/// The issue's targets, each met, missed or not measured.
fn targets_section(o: &mut String, targets: &[Target]) {
    let _ = writeln!(o, "\nTargets");
    for t in targets {
        let _ = writeln!(
            o,
            "  [{}] {:<18} {:<58} {}",
            match t.met {
                Some(true) => "met ",
                Some(false) => "MISS",
                None => " -- ",
            },
            t.name,
            t.target,
            t.measured
        );
    }
}

/// The same thresholds against the whole-path floor (the native copier).
fn whole_path_section(o: &mut String, whole_path: &[Target]) {
    let _ = writeln!(
        o,
        "\nHost vs whole-path floor (a second comparison, not the issue's targets: the same thresholds against the native copier)"
    );
    for t in whole_path {
        let _ = writeln!(
            o,
            "  [{}] {:<18} {:<58} {}",
            match t.met {
                Some(true) => "within",
                Some(false) => " over ",
                None => "  --  ",
            },
            t.name,
            t.target,
            t.measured
        );
    }
}

fn missing_note(missing: usize, failed: usize) -> String {
    match (missing, failed) {
        (0, 0) => String::new(),
        _ => format!("  ({missing} never arrived, {failed} writes failed)"),
    }
}

fn rate_rows(o: &mut String, rr: &RateResult) {
    for op in &rr.ops {
        let [p50, p90, p99, max] = ms(op.latency);
        let _ = writeln!(
            o,
            "{:>8} {:>7} {:>9.0} {:>8} {:>8} {:>8} {:>8}{}",
            rr.rate,
            op.op,
            op.achieved_rate,
            p50,
            p90,
            p99,
            max,
            missing_note(op.missing, op.failed)
        );
    }
    let [p50, p90, p99, max] = ms(rr.all);
    let _ = writeln!(
        o,
        "{:>8} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8}",
        rr.rate, "all", "", p50, p90, p99, max
    );
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

/// One line of a propagation table.
struct Row {
    op: String,
    achieved: String,
    latency: Option<Summary>,
    floor: Option<Summary>,
    copier: Option<Summary>,
    london_watch: String,
    note: String,
}

/// Rows of a propagation table: per operation and all together at each rate, with the ratios
/// to the direct floor and, when `copier` is given, to the whole-path floor at the same rate.
fn propagation_rows(
    o: &mut String,
    rates: &[RateResult],
    floor: &[RateResult],
    copier: Option<&[RateResult]>,
) {
    let _ = write!(
        o,
        "{:>8} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>13}",
        "rate/s",
        "op",
        "achieved",
        "p50",
        "p90",
        "p99",
        "max",
        "p50/floor",
        "p99/floor",
        "ldn watch p50"
    );
    if copier.is_some() {
        let _ = write!(o, " {:>11} {:>11}", "p50/copier", "p99/copier");
    }
    let _ = writeln!(o);
    let p50 = |s: Option<Summary>| s.map(|s| s.p50_ms);
    let p99 = |s: Option<Summary>| s.map(|s| s.p99_ms);
    for rr in rates {
        let fl = at_rate(floor, rr.rate);
        let cp = copier.and_then(|c| at_rate(c, rr.rate));
        let mut rows: Vec<Row> = Vec::new();
        for (i, op) in rr.ops.iter().enumerate() {
            rows.push(Row {
                op: op.op.clone(),
                achieved: format!("{:.0}", op.achieved_rate),
                latency: op.latency,
                floor: fl.and_then(|f| f.ops.get(i)).and_then(|x| x.latency),
                copier: cp.and_then(|c| c.ops.get(i)).and_then(|x| x.latency),
                london_watch: op
                    .london_watch
                    .map_or("-".into(), |s| format!("{:.1}", s.p50_ms)),
                note: missing_note(op.missing, op.failed),
            });
        }
        rows.push(Row {
            op: "all".into(),
            achieved: String::new(),
            latency: rr.all,
            floor: fl.and_then(|f| f.all),
            copier: cp.and_then(|c| c.all),
            london_watch: String::new(),
            note: String::new(),
        });
        for Row {
            op,
            achieved,
            latency: lat,
            floor: f,
            copier: c,
            london_watch: ldn,
            note,
        } in rows
        {
            let [a, b, cc, d] = ms(lat);
            let _ = write!(
                o,
                "{:>8} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>13}",
                rr.rate,
                op,
                achieved,
                a,
                b,
                cc,
                d,
                ratio(p50(lat), p50(f)),
                ratio(p99(lat), p99(f)),
                ldn
            );
            if copier.is_some() {
                let _ = write!(
                    o,
                    " {:>11} {:>11}",
                    ratio(p50(lat), p50(c)),
                    ratio(p99(lat), p99(c))
                );
            }
            let _ = writeln!(o, "{note}");
        }
    }
}

/// Rows of a throughput search.
fn step_rows(o: &mut String, t: &ThroughputReport) {
    let _ = writeln!(
        o,
        "{:>8} {:>8} {:>9} {:>9} {:>8} {:>8} {:>9} {:>8}  verdict",
        "rate/s", "writes/s", "arrive/s", "backlog/s", "max bl", "drain s", "queue max", "p99 ms"
    );
    for s in &t.steps {
        let _ = writeln!(
            o,
            "{:>8.0} {:>8.0} {:>9.0} {:>9.1} {:>8} {:>8.2} {:>9.0} {:>8}  {}{}",
            s.rate,
            s.write_rate,
            s.arrival_rate,
            s.backlog_slope,
            s.max_backlog,
            s.drain_seconds,
            s.max_queue_depth,
            ms(s.latency)[2],
            if s.sustained {
                "sustained"
            } else {
                "NOT sustained"
            },
            if s.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", s.note)
            }
        );
    }
}

/// Draws latency percentiles (all operations) by offered rate, through the host, through the
/// native copier and for the floor, with a logarithmic latency axis.
pub fn chart(report: &Report, path: &Path) -> Result<()> {
    let r = &report.results;
    let series = |rates: &[RateResult], pick: fn(&Summary) -> f64| -> Vec<(f64, f64)> {
        rates
            .iter()
            .filter_map(|x| Some((x.rate, pick(&x.all?))))
            .collect()
    };
    let floor_rates: &[RateResult] = r.floor.as_ref().map_or(&[], |f| &f.rates);
    type Pick = (&'static str, fn(&Summary) -> f64, RGBColor);
    let picks: [Pick; 3] = [
        ("p50", |s| s.p50_ms, RGBColor(31, 119, 180)),
        ("p90", |s| s.p90_ms, RGBColor(44, 160, 44)),
        ("p99", |s| s.p99_ms, RGBColor(214, 39, 40)),
    ];
    let all_points: Vec<(f64, f64)> = picks
        .iter()
        .flat_map(|(_, p, _)| {
            let mut v = series(&r.propagation, *p);
            v.extend(series(floor_rates, *p));
            v.extend(series(&r.copier_propagation, *p));
            v
        })
        .collect();
    let max_rate = all_points.iter().map(|p| p.0).fold(0.0, f64::max).max(1.0);
    let max_ms = all_points.iter().map(|p| p.1).fold(1.0, f64::max);
    let min_ms = all_points
        .iter()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .clamp(0.1, 1.0);

    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let title = format!(
        "Service reflection latency by rate ({} mode, {} cores, {} host)",
        report.plan.mode, report.machine.cpus, report.machine.host_profile
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            0.0..max_rate * 1.08,
            (min_ms * 0.8..max_ms * 1.5).log_scale(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(240, 240, 240))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if *y >= 1.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .x_desc("offered rate (objects/s); solid: host, dotted: native copier (london write returned -> newyork watch); dashed: floor (direct write, call -> watch)")
        .y_desc("latency (ms, log scale)")
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (name, pick, color) in picks {
        let prop = series(&r.propagation, pick);
        chart
            .draw_series(LineSeries::new(prop.clone(), color.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(format!("through the host, {name}"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(prop.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let fl = series(floor_rates, pick);
        chart
            .draw_series(DashedLineSeries::new(
                fl.clone(),
                6,
                4,
                color.stroke_width(1),
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(format!("floor (direct write), {name}"))
            .legend(move |(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 6, y), (x + 10, y), (x + 16, y)],
                    color.stroke_width(1),
                )
            });
        chart
            .draw_series(fl.iter().map(|p| Cross::new(*p, 4, color.stroke_width(1))))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let cp = series(&r.copier_propagation, pick);
        if !cp.is_empty() {
            chart
                .draw_series(DashedLineSeries::new(
                    cp.clone(),
                    2,
                    3,
                    color.stroke_width(2),
                ))
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .label(format!("native copier (whole-path floor), {name}"))
                .legend(move |(x, y)| {
                    PathElement::new(
                        vec![
                            (x, y),
                            (x + 2, y),
                            (x + 5, y),
                            (x + 7, y),
                            (x + 10, y),
                            (x + 12, y),
                        ],
                        color.stroke_width(2),
                    )
                });
            chart
                .draw_series(
                    cp.iter()
                        .map(|p| TriangleMarker::new(*p, 4, color.stroke_width(1))),
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phases::{OpResult, Step};

    fn summary(p50: f64, p99: f64) -> Summary {
        Summary {
            count: 10,
            p50_ms: p50,
            p90_ms: p99,
            p99_ms: p99,
            max_ms: p99,
            mean_ms: p50,
        }
    }

    fn at(rate: f64, p50: f64, p99: f64) -> RateResult {
        RateResult {
            rate,
            measured_from: "return".into(),
            ops: vec![OpResult {
                op: "create".into(),
                writes: 10,
                failed: 0,
                missing: 0,
                achieved_rate: rate,
                latency: Some(summary(p50, p99)),
                latency_from_call: None,
                london_watch: None,
            }],
            all: Some(summary(p50, p99)),
        }
    }

    fn search(sustained_rate: f64) -> ThroughputReport {
        ThroughputReport {
            steps: vec![Step {
                rate: sustained_rate,
                write_rate: sustained_rate,
                arrival_rate: sustained_rate,
                backlog_slope: 0.0,
                max_backlog: 1,
                drain_seconds: 0.1,
                max_queue_depth: 1.0,
                latency: Some(summary(5.0, 9.0)),
                sustained: true,
                note: String::new(),
            }],
            sustained_rate,
            writer_bound: false,
            cleanup_seconds: 0.0,
        }
    }

    #[test]
    fn whole_path_comparison_uses_the_copier_and_the_issue_thresholds() {
        // (case, host p50/p99 at 200/s, copier p50/p99 at 200/s, host and copier rates,
        //  expected verdicts p50, p99, throughput)
        let cases = [
            (
                "within all",
                (12.0, 30.0),
                (10.0, 20.0),
                (80.0, 90.0),
                [true, true, true],
            ),
            (
                "p50 over 1.5x",
                (16.0, 30.0),
                (10.0, 20.0),
                (80.0, 90.0),
                [false, true, true],
            ),
            (
                "p99 over 2x",
                (12.0, 41.0),
                (10.0, 20.0),
                (80.0, 90.0),
                [true, false, true],
            ),
            (
                "throughput under 0.8x",
                (12.0, 30.0),
                (10.0, 20.0),
                (70.0, 90.0),
                [true, true, false],
            ),
        ];
        for (case, host, copier, rates, want) in cases {
            let results = Results {
                propagation: vec![at(200.0, host.0, host.1)],
                copier_propagation: vec![at(200.0, copier.0, copier.1)],
                throughput: Some(search(rates.0)),
                copier_throughput: Some(search(rates.1)),
                ..Results::default()
            };
            let got: Vec<Option<bool>> =
                whole_path_targets(&results).iter().map(|t| t.met).collect();
            assert_eq!(got, want.map(Some), "{case}");
        }
        let none = whole_path_targets(&Results::default());
        assert!(none.iter().all(|t| t.met.is_none()), "nothing measured");
    }

    #[test]
    fn propagation_rows_show_the_copier_ratio_only_with_a_copier() {
        let mut with = String::new();
        propagation_rows(
            &mut with,
            &[at(50.0, 20.0, 60.0)],
            &[at(50.0, 5.0, 10.0)],
            Some(&[at(50.0, 10.0, 20.0)]),
        );
        assert!(with.contains("p50/copier"), "{with}");
        // create row and all row: p50 4x the floor, 2x the copier; p99 6x, 3x.
        let create = with.lines().find(|l| l.contains("create")).unwrap();
        let cells: Vec<&str> = create.split_whitespace().collect();
        assert_eq!(
            &cells[cells.len() - 5..],
            ["4.00x", "6.00x", "-", "2.00x", "3.00x"],
            "{create}"
        );
        let mut without = String::new();
        propagation_rows(&mut without, &[at(50.0, 20.0, 60.0)], &[], None);
        assert!(!without.contains("copier"), "{without}");
    }
}
