//! Process CPU and memory from `/proc`, and the host's Prometheus metrics.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// CPU time and resident memory of a process at one moment.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// When it was read.
    pub at: Instant,
    /// User + system CPU time since the process started, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// Reads `/proc/<pid>/stat` (utime, stime) and `/proc/<pid>/status` (VmRSS).
pub fn read_proc(pid: u32) -> Result<ProcSample> {
    let at = Instant::now();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let cpu_seconds = parse_stat_cpu(&stat)? / CLK_TCK;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rss_bytes = parse_status_rss(&status)?;
    Ok(ProcSample {
        at,
        cpu_seconds,
        rss_bytes,
    })
}

/// CPU time (user + system) of thread `tid` of this process, seconds.
pub fn thread_cpu_seconds(tid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
        .with_context(|| format!("reading /proc/self/task/{tid}/stat"))?;
    Ok(parse_stat_cpu(&stat)? / CLK_TCK)
}

/// utime + stime in clock ticks. The command name (field 2) may contain spaces and parentheses,
/// so fields are counted after its closing parenthesis.
fn parse_stat_cpu(stat: &str) -> Result<f64> {
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("no command name in /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15 (1-based in proc(5)).
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

fn parse_status_rss(status: &str) -> Result<u64> {
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            let kb: u64 = v
                .split_whitespace()
                .next()
                .context("empty VmRSS")?
                .parse()?;
            return Ok(kb * 1024);
        }
    }
    bail!("no VmRSS line")
}

/// Total CPU time of the whole machine (all cores, busy), in seconds, from `/proc/stat`.
pub fn machine_busy_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait.
    let busy: f64 = v
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, x)| x)
        .sum();
    Ok(busy / CLK_TCK)
}

/// Samples named processes every `period` in a background thread until dropped.
pub struct Sampler {
    samples: Arc<Mutex<BTreeMap<String, Vec<ProcSample>>>>,
    pids: Arc<Mutex<BTreeMap<String, u32>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Sampler {
    /// Starts sampling (no processes yet: see [`Sampler::watch`]).
    pub fn start(period: Duration) -> Self {
        let samples: Arc<Mutex<BTreeMap<String, Vec<ProcSample>>>> = Arc::default();
        let pids: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let (samples, pids, stop) = (samples.clone(), pids.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let current: Vec<(String, u32)> = pids
                        .lock()
                        .map(|p| p.iter().map(|(k, v)| (k.clone(), *v)).collect())
                        .unwrap_or_default();
                    for (name, pid) in current {
                        if let Ok(s) = read_proc(pid)
                            && let Ok(mut all) = samples.lock()
                        {
                            all.entry(name).or_default().push(s);
                        }
                    }
                    std::thread::sleep(period);
                }
            });
        }
        Self {
            samples,
            pids,
            stop,
        }
    }

    /// Samples process `pid` under `name` from now on (replacing an earlier pid of that name;
    /// earlier samples are dropped).
    pub fn watch(&self, name: &str, pid: u32) {
        if let Ok(mut p) = self.pids.lock() {
            p.insert(name.to_string(), pid);
        }
        if let Ok(mut s) = self.samples.lock() {
            s.remove(name);
        }
    }

    /// Stops sampling `name`.
    pub fn unwatch(&self, name: &str) {
        if let Ok(mut p) = self.pids.lock() {
            p.remove(name);
        }
    }

    /// Usage of `name` between `from` and `to`: average CPU (cores), peak and last RSS.
    pub fn usage(&self, name: &str, from: Instant, to: Instant) -> Option<Usage> {
        let all = self.samples.lock().ok()?;
        let s: Vec<&ProcSample> = all
            .get(name)?
            .iter()
            .filter(|s| s.at >= from && s.at <= to)
            .collect();
        let (first, last) = (s.first()?, s.last()?);
        let secs = last.at.duration_since(first.at).as_secs_f64();
        Some(Usage {
            seconds: secs,
            cpu_cores: if secs > 0.0 {
                (last.cpu_seconds - first.cpu_seconds) / secs
            } else {
                0.0
            },
            cpu_seconds: last.cpu_seconds - first.cpu_seconds,
            peak_rss_mb: s.iter().map(|x| x.rss_bytes).max().unwrap_or(0) as f64 / 1048576.0,
            last_rss_mb: last.rss_bytes as f64 / 1048576.0,
        })
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A process's resource use over an interval.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Usage {
    /// Length of the interval covered by samples.
    pub seconds: f64,
    /// Average CPU use in cores (1.0 = one core busy).
    pub cpu_cores: f64,
    /// CPU time used in the interval.
    pub cpu_seconds: f64,
    /// Largest RSS seen, MiB.
    pub peak_rss_mb: f64,
    /// RSS at the end, MiB.
    pub last_rss_mb: f64,
}

/// One Prometheus sample: name, labels as written (`k="v",...`), value.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Metric name (with `_total` etc. suffixes).
    pub name: String,
    /// Labels, sorted by key.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// Parses the Prometheus text exposition format (comments skipped).
pub fn parse_metrics(text: &str) -> Vec<Metric> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (head, ""),
        };
        let mut map = BTreeMap::new();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            if let Some((k, v)) = pair.split_once('=') {
                map.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
            }
        }
        out.push(Metric {
            name: name.to_string(),
            labels: map,
            value,
        });
    }
    out
}

/// GET `http://addr/metrics` (HTTP/1.1, connection closed after the answer).
pub fn scrape(addr: SocketAddr) -> Result<Vec<Metric>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    stream
        .read_to_string(&mut body)
        .with_context(|| format!("reading /metrics from {addr}"))?;
    let Some((head, body)) = body.split_once("\r\n\r\n") else {
        bail!("no HTTP answer from {addr}");
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "GET /metrics on {addr}: {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(parse_metrics(body))
}

/// Sum of the values of `name` whose labels include every `(key, value)` of `filter`.
pub fn sum(metrics: &[Metric], name: &str, filter: &[(&str, &str)]) -> f64 {
    metrics
        .iter()
        .filter(|m| m.name == name)
        .filter(|m| {
            filter
                .iter()
                .all(|(k, v)| m.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|m| m.value)
        .sum()
}

/// The host's reflection counters as `writes CLUSTER/VERB` and `passes KIND/RESULT`.
pub fn host_counters(metrics: &[Metric]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let label = |m: &Metric, k: &str| m.labels.get(k).cloned().unwrap_or_default();
    for m in metrics {
        let key = match m.name.as_str() {
            "liqo_reflection_api_writes_total" => {
                format!("writes {}/{}", label(m, "cluster"), label(m, "verb"))
            }
            "liqo_reflection_passes_total" => {
                format!("passes {}/{}", label(m, "kind"), label(m, "result"))
            }
            "liqo_reflection_pass_duration_seconds_sum" => "pass seconds (sum)".to_string(),
            "liqo_reflection_pass_duration_seconds_count" => "pass count".to_string(),
            _ => continue,
        };
        *out.entry(key).or_insert(0.0) += m.value;
    }
    out
}

/// `after - before`, per key, without the zeros.
pub fn delta(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v != 0.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_spaces() {
        let stat = "42 (liqo host) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1000 1 1";
        assert_eq!(parse_stat_cpu(stat).unwrap(), 300.0);
    }

    #[test]
    fn rss_from_status() {
        let status = "Name:\tliqo-host\nVmPeak:\t 9 kB\nVmRSS:\t   20480 kB\nThreads: 9\n";
        assert_eq!(parse_status_rss(status).unwrap(), 20480 * 1024);
    }

    #[test]
    fn own_process_is_readable() {
        let s = read_proc(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0);
    }

    #[test]
    fn prometheus_text() {
        let text = "# HELP x y\n# TYPE liqo_reflection_queue_depth gauge\nliqo_reflection_queue_depth 3\n\
                    liqo_reflection_passes_total{kind=\"Service\",result=\"applied\"} 10\n\
                    liqo_reflection_passes_total{kind=\"Service\",result=\"unchanged\"} 5\n\
                    liqo_reflection_passes_total{kind=\"EndpointSlice\",result=\"applied\"} 1\n";
        let m = parse_metrics(text);
        assert_eq!(sum(&m, "liqo_reflection_queue_depth", &[]), 3.0);
        assert_eq!(
            sum(&m, "liqo_reflection_passes_total", &[("kind", "Service")]),
            15.0
        );
        assert_eq!(
            sum(
                &m,
                "liqo_reflection_passes_total",
                &[("kind", "EndpointSlice"), ("result", "applied")]
            ),
            1.0
        );
    }
}
