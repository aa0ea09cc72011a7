//! The host's memory as plugins may use it: the container's memory limit, read from the
//! cgroup, and a ledger of the budgets of the plugins loaded now.
//!
//! Why a ledger: a plugin's linear memory is capped per instance, but a plugin has several
//! instances (the busy ones and the warm ones waiting in its pool), and the host runs several
//! plugins. Capping each memory alone lets them together grow past the Pod's limit, and then
//! the kernel kills the whole host (every kind, the leader Lease), not the plugin that grew.
//! So each plugin has one budget (`max_instances × memory per instance`, see
//! [`PluginLimits`]), and a plugin is loaded only if its budget fits in what the container
//! limit leaves after the host's own reserve and the budgets of the plugins already loaded.
//! A plugin that does not fit fails to load with [`LoadError::MemoryBudget`], which names the
//! plugin, the numbers and the fix; the other plugins keep serving.
//!
//! The budget is a bound, not a measurement: a plugin that never grows its memory holds much
//! less. The bound is what makes the guarantee hold whatever the plugins do.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::error::LoadError;
use super::limits::PluginLimits;

/// Memory kept for the host itself (caches of watched objects, clients, compiled code), not
/// given to plugins. The host measured about 130 MiB of RSS while reflecting 10 000 Services
/// (BENCHMARKS.md).
pub const DEFAULT_HOST_MEMORY_RESERVE: u64 = 192 << 20;

/// Limits at or above this are "no limit" (cgroup v1 writes a page-rounded `i64::MAX`).
const UNLIMITED_FROM: u64 = 1 << 60;

/// The memory limit of the container this process runs in, from its cgroup (v2
/// `memory.max`, v1 `memory.limit_in_bytes`); `None` when there is none (`max`, a huge
/// value, or no cgroup file to read, as on a developer's machine).
pub fn container_memory_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    limit_from_files(&candidate_files(&own), |p| std::fs::read_to_string(p).ok())
}

/// Files that may hold this process's memory limit: its own cgroup's (when the cgroup
/// namespace shows the full path) and the root of the mounted hierarchy (inside a container
/// with its own cgroup namespace, the container's cgroup).
fn candidate_files(proc_self_cgroup: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut files = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if id == "0" && controllers.is_empty() {
            files.push(root.join(path).join("memory.max"));
        } else if controllers.split(',').any(|c| c == "memory") {
            files.push(root.join("memory").join(path).join("memory.limit_in_bytes"));
        }
    }
    files.push(root.join("memory.max"));
    files.push(root.join("memory").join("memory.limit_in_bytes"));
    files.dedup();
    files
}

/// The smallest limit among the files that exist.
fn limit_from_files(files: &[PathBuf], read: impl Fn(&Path) -> Option<String>) -> Option<u64> {
    files
        .iter()
        .filter_map(|f| read(f))
        .filter_map(|text| parse_limit(&text))
        .min()
}

/// Parses a cgroup memory limit file: bytes, or `max`.
fn parse_limit(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    text.parse::<u64>().ok().filter(|&b| b < UNLIMITED_FROM)
}

/// What plugins may hold: the container limit less the host's reserve, shared by the budgets
/// of the plugins loaded now.
pub(crate) struct MemoryLedger {
    /// The container limit; `None`: no limit, every budget fits.
    limit: Option<u64>,
    reserve: u64,
    /// Budgets by source (`builtin:service`, `ReflectionPlugin NAME`), one entry per live
    /// version, with the id of its [`Reservation`].
    budgets: Mutex<Budgets>,
    next_id: AtomicU64,
}

/// Budgets by source: `(reservation id, bytes)` per live version.
type Budgets = HashMap<Arc<str>, Vec<(u64, u64)>>;

/// One loaded plugin's share of the ledger; released when the plugin is dropped.
pub(crate) struct Reservation {
    ledger: Arc<MemoryLedger>,
    source: Arc<str>,
    id: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut budgets = self.ledger.lock();
        if let Some(versions) = budgets.get_mut(&self.source) {
            versions.retain(|(id, _)| *id != self.id);
            if versions.is_empty() {
                budgets.remove(&self.source);
            }
        }
    }
}

const MIB: u64 = 1 << 20;

impl MemoryLedger {
    pub fn new(limit: Option<u64>, reserve: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            reserve,
            budgets: Mutex::default(),
            next_id: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Budgets> {
        self.budgets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves the budget of a plugin loaded from `source`, or says why it does not fit.
    ///
    /// Versions of one source (a ReflectionPlugin replaced by a new version, which loads
    /// while the old one still serves) count once, with the larger budget: the old version
    /// goes as soon as the new one serves.
    pub fn reserve(
        self: &Arc<Self>,
        source: &str,
        limits: &PluginLimits,
    ) -> Result<Reservation, LoadError> {
        let budget = limits.memory_budget_bytes();
        let mut budgets = self.lock();
        if let Some(limit) = self.limit {
            let mut others: Vec<(&str, u64)> = budgets
                .iter()
                .filter(|(s, _)| s.as_ref() != source)
                .map(|(s, v)| (s.as_ref(), v.iter().map(|(_, b)| *b).max().unwrap_or(0)))
                .collect();
            others.sort();
            let used: u64 = others.iter().map(|(_, b)| b).sum();
            let available = limit.saturating_sub(self.reserve).saturating_sub(used);
            if budget > available {
                let listed = if others.is_empty() {
                    "none".to_string()
                } else {
                    others
                        .iter()
                        .map(|(s, b)| format!("{s} {} MiB", b / MIB))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(LoadError::MemoryBudget {
                    plugin: source.to_string(),
                    budget_mib: budget / MIB,
                    max_instances: limits.max_instances,
                    memory_mib: limits.memory_mib(),
                    limit_mib: limit / MIB,
                    reserve_mib: self.reserve / MIB,
                    others_mib: used / MIB,
                    others: listed,
                    available_mib: available / MIB,
                });
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let source: Arc<str> = Arc::from(source);
        budgets
            .entry(source.clone())
            .or_default()
            .push((id, budget));
        Ok(Reservation {
            ledger: self.clone(),
            source,
            id,
        })
    }

    /// Bytes budgeted to the plugins loaded now (each source once).
    pub fn budgeted(&self) -> u64 {
        self.lock()
            .values()
            .map(|v| v.iter().map(|(_, b)| *b).max().unwrap_or(0))
            .sum()
    }

    /// The container limit the ledger checks against.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cgroup_limits() {
        assert_eq!(parse_limit("536870912\n"), Some(512 * MIB));
        assert_eq!(parse_limit("max\n"), None);
        // cgroup v1 without a limit.
        assert_eq!(parse_limit("9223372036854771712"), None);
        assert_eq!(parse_limit("garbage"), None);
    }

    #[test]
    fn finds_v2_and_v1_files() {
        let v2 = candidate_files("0::/kubepods/pod1/c1\n");
        assert_eq!(
            v2[0],
            PathBuf::from("/sys/fs/cgroup/kubepods/pod1/c1/memory.max")
        );
        assert!(v2.contains(&PathBuf::from("/sys/fs/cgroup/memory.max")));
        let v1 = candidate_files("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n");
        assert!(v1.contains(&PathBuf::from(
            "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes"
        )));
        assert!(v1.contains(&PathBuf::from(
            "/sys/fs/cgroup/memory/memory.limit_in_bytes"
        )));
        // The smallest limit found wins; missing files and "max" are ignored.
        let files = candidate_files("0::/c\n");
        let limit = limit_from_files(&files, |p| match p.to_str()? {
            "/sys/fs/cgroup/c/memory.max" => Some("max".into()),
            "/sys/fs/cgroup/memory.max" => Some("1073741824".into()),
            _ => None,
        });
        assert_eq!(limit, Some(1024 * MIB));
        assert_eq!(limit_from_files(&files, |_| None), None);
    }

    #[test]
    fn budgets_add_up_to_the_limit() {
        let ledger = MemoryLedger::new(Some(512 * MIB), 192 * MIB);
        let default = PluginLimits::default(); // 2 × 64 MiB
        let a = ledger.reserve("a", &default).unwrap();
        let _b = ledger.reserve("b", &default).unwrap();
        assert_eq!(ledger.budgeted(), 256 * MIB);
        // 512 - 192 - 256 = 64 MiB left: a third default plugin does not fit.
        let err = ledger.reserve("c", &default).err().unwrap();
        let msg = err.to_string();
        for part in [
            "plugin c",
            "128 MiB",
            "2 instances × 64 MiB",
            "512 MiB",
            "192 MiB",
            "a 128 MiB, b 128 MiB",
            "64 MiB are left",
            "maxInstances",
            "memoryMiB",
            "memory limit",
        ] {
            assert!(msg.contains(part), "{part:?} missing in: {msg}");
        }
        // One instance fits.
        let c = ledger
            .reserve("c", &default.with_max_instances(1))
            .expect("64 MiB fit");
        drop(c);
        // Dropping a plugin frees its budget.
        drop(a);
        assert_eq!(ledger.budgeted(), 128 * MIB);
        ledger.reserve("c", &default).expect("fits once a is gone");
    }

    #[test]
    fn versions_of_one_source_count_once() {
        let ledger = MemoryLedger::new(Some(512 * MIB), 192 * MIB);
        let limits = PluginLimits::new(100, 80).with_max_instances(2); // 160 MiB
        let old = ledger.reserve("ReflectionPlugin p", &limits).unwrap();
        // The new version loads while the old one serves: 160 + 160 > 320, but they are one.
        let new = ledger.reserve("ReflectionPlugin p", &limits).unwrap();
        assert_eq!(ledger.budgeted(), 160 * MIB);
        drop(old);
        assert_eq!(ledger.budgeted(), 160 * MIB);
        drop(new);
        assert_eq!(ledger.budgeted(), 0);
    }

    #[test]
    fn no_limit_no_check() {
        let ledger = MemoryLedger::new(None, DEFAULT_HOST_MEMORY_RESERVE);
        let big = PluginLimits::new(100, 512).with_max_instances(16);
        let _r = (0..10)
            .map(|i| ledger.reserve(&format!("p{i}"), &big).unwrap())
            .collect::<Vec<_>>();
    }
}
