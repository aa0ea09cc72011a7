//! Metrics of the reflection engine.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A write made to an API server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `local` or the peer's cluster id.
    pub cluster: String,
    /// `apply`, `delete`, `create`, `event`, `status`.
    pub verb: String,
}

/// The result of one reflection pass.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReflectionLabels {
    /// Kind of the object.
    pub kind: String,
    /// `applied`, `unchanged`, `deleted`, `skipped`, `conflict`, `error`.
    pub result: String,
}

/// Engine metrics. Cheap to clone.
#[derive(Clone)]
pub struct EngineMetrics {
    writes: Family<WriteLabels, Counter>,
    reflections: Family<ReflectionLabels, Counter>,
    queue_depth: Gauge,
    pass_duration: Histogram,
    events_dropped: Counter,
    total_writes: Arc<AtomicU64>,
}

impl std::fmt::Debug for EngineMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineMetrics").finish_non_exhaustive()
    }
}

impl Default for EngineMetrics {
    fn default() -> Self {
        Self {
            writes: Family::default(),
            reflections: Family::default(),
            queue_depth: Gauge::default(),
            pass_duration: Histogram::new(exponential_buckets(1e-4, 3.0, 12)),
            events_dropped: Counter::default(),
            total_writes: Arc::default(),
        }
    }
}

impl EngineMetrics {
    /// Registers the metrics under `liqo_reflection_*`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "liqo_reflection_api_writes",
            "Writes made to API servers (apply, delete, create, event, status)",
            self.writes.clone(),
        );
        registry.register(
            "liqo_reflection_passes",
            "Reflection passes by kind and result",
            self.reflections.clone(),
        );
        registry.register(
            "liqo_reflection_queue_depth",
            "Keys waiting in the reflection queue",
            self.queue_depth.clone(),
        );
        registry.register(
            "liqo_reflection_pass_duration_seconds",
            "Duration of one reflection pass (plugin call and API requests)",
            self.pass_duration.clone(),
        );
        registry.register(
            "liqo_reflection_events_dropped",
            "Events not written: Normal Events over the rate budget, or any Event with the backlog full",
            self.events_dropped.clone(),
        );
    }

    pub(crate) fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    pub(crate) fn write(&self, cluster: &str, verb: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                cluster: cluster.to_string(),
                verb: verb.to_string(),
            })
            .inc();
        self.total_writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn pass(&self, kind: &str, result: &str, seconds: f64) {
        self.reflections
            .get_or_create(&ReflectionLabels {
                kind: kind.to_string(),
                result: result.to_string(),
            })
            .inc();
        self.pass_duration.observe(seconds);
    }

    pub(crate) fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.set(depth as i64);
    }

    /// Total writes to any API server since start (for steady-state checks).
    pub fn total_writes(&self) -> u64 {
        self.total_writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Passes of `kind` that ended with `result`.
    pub fn passes(&self, kind: &str, result: &str) -> u64 {
        self.reflections
            .get_or_create(&ReflectionLabels {
                kind: kind.to_string(),
                result: result.to_string(),
            })
            .get()
    }
}
