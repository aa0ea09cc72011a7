//! The transport benchmark's results: a table for people, JSON for machines.

use std::fmt::Write as _;

use serde::Serialize;

use super::echo::{BulkResult, SmallResult};

/// One measurement on both paths.
#[derive(Debug, Clone, Serialize)]
pub struct Pair<T> {
    /// london client -> london ClusterIP (kube-proxy) -> london pod.
    pub direct: T,
    /// newyork client -> newyork ClusterIP (kube-proxy) -> newyork gateway -> TLS link ->
    /// london gateway -> london ClusterIP (kube-proxy) -> london pod.
    pub gateway: T,
}

/// Bulk transfers: every run, and the best of them (least disturbed by other load).
#[derive(Debug, Clone, Serialize)]
pub struct BulkRuns {
    /// Each run, in order.
    pub runs: Vec<BulkResult>,
    /// The fastest run, MiB/s.
    pub best_mib_per_s: f64,
}

impl BulkRuns {
    /// Collects `runs` (at least one).
    pub fn of(runs: Vec<BulkResult>) -> Self {
        let best_mib_per_s = runs.iter().map(|r| r.mib_per_s).fold(0.0, f64::max);
        Self {
            runs,
            best_mib_per_s,
        }
    }
}

/// gateway / direct for the numbers of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// p50 round trip, kept connection (> 1: the gateway path is slower).
    pub kept_p50: f64,
    /// p99 round trip, kept connection.
    pub kept_p99: f64,
    /// p50 round trip, new connection per request.
    pub new_connection_p50: f64,
    /// p99 round trip, new connection per request.
    pub new_connection_p99: f64,
    /// Best bulk throughput (< 1: the gateway path is slower).
    pub bulk_mib_per_s: f64,
}

/// What describes the machine and the build.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub nproc: usize,
    /// CPU model.
    pub cpu: String,
    /// 1-minute load average before the measurements.
    pub load_before: f64,
    /// 1-minute load average after them.
    pub load_after: f64,
    /// Kernel release.
    pub kernel: String,
    /// `git describe --always --dirty` of the work tree, if any.
    pub commit: String,
    /// Cargo profile of liqo-host and this binary (`debug` or `release`).
    pub profile: String,
}

/// What was run.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Requests on one kept connection.
    pub requests: usize,
    /// Requests with a new connection each.
    pub new_connection_requests: usize,
    /// Size of each small answer, bytes.
    pub small_size: u64,
    /// Size of each bulk answer, MiB.
    pub bulk_mib: u64,
    /// Bulk runs per path (best reported).
    pub bulk_runs: usize,
    /// Unrecorded warm-up requests per path before measuring.
    pub warmup_requests: usize,
    /// london's ClusterIP:port of the echo Service.
    pub london_service: String,
    /// newyork's ClusterIP:port of the reflected Service.
    pub newyork_service: String,
    /// newyork's gateway service listener (the reflected Service's endpoint).
    pub newyork_gateway: String,
}

/// The whole report, written as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Format version.
    pub version: u32,
    /// Start of the run, UTC (RFC 3339).
    pub date: String,
    /// Whole run, seconds (setup and teardown included).
    pub duration_seconds: f64,
    /// Machine and build.
    pub machine: Machine,
    /// What was run.
    pub settings: Settings,
    /// Setup steps and their durations, seconds.
    pub setup: Vec<(String, f64)>,
    /// Round trips on one kept connection.
    pub small_kept: Pair<SmallResult>,
    /// Round trips with a new connection each.
    pub small_new_connection: Pair<SmallResult>,
    /// Bulk transfers.
    pub bulk: Pair<BulkRuns>,
    /// gateway / direct.
    pub ratios: Ratios,
}

impl Ratios {
    /// The ratios of `report`'s measurements.
    pub fn of(
        kept: &Pair<SmallResult>,
        new_connection: &Pair<SmallResult>,
        bulk: &Pair<BulkRuns>,
    ) -> Self {
        Self {
            kept_p50: kept.gateway.p50_us / kept.direct.p50_us,
            kept_p99: kept.gateway.p99_us / kept.direct.p99_us,
            new_connection_p50: new_connection.gateway.p50_us / new_connection.direct.p50_us,
            new_connection_p99: new_connection.gateway.p99_us / new_connection.direct.p99_us,
            bulk_mib_per_s: bulk.gateway.best_mib_per_s / bulk.direct.best_mib_per_s,
        }
    }
}

/// The table printed at the end of a run.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\ntransport: {} build, {} CPUs, load {:.2} -> {:.2}, {}",
        r.machine.profile, r.machine.nproc, r.machine.load_before, r.machine.load_after, r.date
    );
    let _ = writeln!(
        out,
        "{:<34} {:<8} {:>10} {:>10} {:>10}   gateway/direct",
        "measurement", "path", "p50 µs", "p99 µs", "MiB/s"
    );
    let small = |out: &mut String, title: &str, pair: &Pair<SmallResult>| {
        let _ = writeln!(
            out,
            "{:<34} {:<8} {:>10.1} {:>10.1} {:>10}",
            title, "direct", pair.direct.p50_us, pair.direct.p99_us, "-"
        );
        let _ = writeln!(
            out,
            "{:<34} {:<8} {:>10.1} {:>10.1} {:>10}   p50 {:.2}x (+{:.0} µs), p99 {:.2}x",
            "",
            "gateway",
            pair.gateway.p50_us,
            pair.gateway.p99_us,
            "-",
            pair.gateway.p50_us / pair.direct.p50_us,
            pair.gateway.p50_us - pair.direct.p50_us,
            pair.gateway.p99_us / pair.direct.p99_us,
        );
    };
    small(
        &mut out,
        &format!(
            "{} B round trip, kept conn ({})",
            r.settings.small_size, r.settings.requests
        ),
        &r.small_kept,
    );
    small(
        &mut out,
        &format!(
            "{} B round trip, new conn ({})",
            r.settings.small_size, r.settings.new_connection_requests
        ),
        &r.small_new_connection,
    );
    let title = format!(
        "{} MiB download (best of {})",
        r.settings.bulk_mib, r.settings.bulk_runs
    );
    let _ = writeln!(
        out,
        "{:<34} {:<8} {:>10} {:>10} {:>10.0}",
        title, "direct", "-", "-", r.bulk.direct.best_mib_per_s
    );
    let _ = writeln!(
        out,
        "{:<34} {:<8} {:>10} {:>10} {:>10.0}   {:.2}x",
        "", "gateway", "-", "-", r.bulk.gateway.best_mib_per_s, r.ratios.bulk_mib_per_s
    );
    out
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Seconds since the Unix epoch as an RFC 3339 UTC timestamp (no time zone database needed).
pub fn rfc3339(unix: u64) -> String {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(p50: f64, p99: f64) -> SmallResult {
        SmallResult {
            mode: "small".into(),
            new_connection: false,
            size: 64,
            count: 10,
            p50_us: p50,
            p90_us: p99,
            p99_us: p99,
            max_us: p99,
            mean_us: p50,
        }
    }

    fn bulk(mib_per_s: f64) -> BulkResult {
        BulkResult {
            mode: "bulk".into(),
            bytes: 1 << 20,
            seconds: 1.0 / mib_per_s,
            mib_per_s,
        }
    }

    #[test]
    fn ratios_are_gateway_over_direct_and_bulk_takes_the_best_run() {
        let kept = Pair {
            direct: small(50.0, 100.0),
            gateway: small(150.0, 400.0),
        };
        let new_connection = Pair {
            direct: small(100.0, 200.0),
            gateway: small(300.0, 500.0),
        };
        let b = Pair {
            direct: BulkRuns::of(vec![bulk(800.0), bulk(1000.0), bulk(900.0)]),
            gateway: BulkRuns::of(vec![bulk(250.0), bulk(200.0)]),
        };
        assert_eq!(b.direct.best_mib_per_s, 1000.0);
        let r = Ratios::of(&kept, &new_connection, &b);
        assert_eq!(r.kept_p50, 3.0);
        assert_eq!(r.kept_p99, 4.0);
        assert_eq!(r.new_connection_p50, 3.0);
        assert_eq!(r.new_connection_p99, 2.5);
        assert_eq!(r.bulk_mib_per_s, 0.25);
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_712_461), "2026-11-26T17:01:01Z");
    }
}
