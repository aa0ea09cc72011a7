//! Per-plugin metrics: calls, errors by reason, latency.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels identifying a plugin.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    /// Plugin name.
    pub plugin: String,
}

/// Labels of a failed call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginErrorLabels {
    /// Plugin name.
    pub plugin: String,
    /// [`PluginError::reason`](super::PluginError::reason).
    pub reason: String,
}

type LatencyFamily = Family<PluginLabels, Histogram, fn() -> Histogram>;

/// Metrics of every plugin of one runtime. Cheap to clone (shared handles).
#[derive(Clone)]
pub struct PluginMetrics {
    calls: Family<PluginLabels, Counter>,
    errors: Family<PluginErrorLabels, Counter>,
    latency: LatencyFamily,
}

impl std::fmt::Debug for PluginMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginMetrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 5 µs .. ~1.3 s: a warm call is tens of microseconds, a limit hit is ~100 ms.
    Histogram::new(exponential_buckets(5e-6, 4.0, 10))
}

impl Default for PluginMetrics {
    fn default() -> Self {
        Self {
            calls: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl PluginMetrics {
    /// Registers the metrics under `liqo_plugin_*`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "liqo_plugin_calls",
            "Plugin calls (reflect and map-namespace)",
            self.calls.clone(),
        );
        registry.register(
            "liqo_plugin_errors",
            "Failed plugin calls by reason",
            self.errors.clone(),
        );
        registry.register(
            "liqo_plugin_call_duration_seconds",
            "Duration of plugin calls",
            self.latency.clone(),
        );
    }

    pub(crate) fn record(&self, plugin: &str, elapsed: Duration, error: Option<&'static str>) {
        let labels = PluginLabels {
            plugin: plugin.to_string(),
        };
        self.calls.get_or_create(&labels).inc();
        self.latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if let Some(reason) = error {
            self.errors
                .get_or_create(&PluginErrorLabels {
                    plugin: plugin.to_string(),
                    reason: reason.to_string(),
                })
                .inc();
        }
    }

    /// Number of calls of `plugin` so far.
    pub fn calls(&self, plugin: &str) -> u64 {
        self.calls
            .get_or_create(&PluginLabels {
                plugin: plugin.to_string(),
            })
            .get()
    }

    /// Number of failed calls of `plugin` with `reason`.
    pub fn errors(&self, plugin: &str, reason: &str) -> u64 {
        self.errors
            .get_or_create(&PluginErrorLabels {
                plugin: plugin.to_string(),
                reason: reason.to_string(),
            })
            .get()
    }
}
