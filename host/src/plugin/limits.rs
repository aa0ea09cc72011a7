//! Per-plugin resource limits.

use std::time::Duration;

/// Limits of one plugin: of each call, and of all its instances together.
///
/// A plugin has at most [`max_instances`](Self::max_instances) instances (each one a wasmtime
/// store with its own linear memory), and never runs more calls at once than it has
/// instances. So everything the plugin can make the host hold, warm instances in its pool
/// included, is bounded by its [memory budget](Self::memory_budget_bytes):
/// `max_instances × memory_bytes`. The runtime checks that budget against the host's
/// container memory limit when the plugin is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Wall-clock CPU budget of one call, enforced with epoch interruption. A call that runs
    /// longer is stopped with [`PluginError::CpuLimit`](super::PluginError::CpuLimit).
    pub cpu_per_call: Duration,
    /// Maximum size of the linear memory of one instance in bytes. Growth beyond it stops the
    /// call with [`PluginError::MemoryLimit`](super::PluginError::MemoryLimit).
    pub memory_bytes: usize,
    /// Instances the plugin may have at once, idle (warm) or busy; also the number of its
    /// calls that may run at once.
    pub max_instances: usize,
}

impl PluginLimits {
    /// Largest memory cap a plugin may ask for; the pooling allocator reserves this much
    /// address space per memory slot.
    pub const MAX_MEMORY_BYTES: usize = 512 << 20;
    /// Largest CPU budget a plugin may ask for per call.
    pub const MAX_CPU_PER_CALL: Duration = Duration::from_secs(10);
    /// Largest number of instances (concurrent calls) a plugin may ask for.
    pub const MAX_INSTANCES: usize = 16;
    /// Instances of a plugin that does not say: two calls of one plugin may run at once.
    pub const DEFAULT_MAX_INSTANCES: usize = 2;

    /// Limits with a CPU budget in milliseconds and a memory cap in MiB per instance, clamped
    /// to the runtime's maxima, and [`DEFAULT_MAX_INSTANCES`](Self::DEFAULT_MAX_INSTANCES).
    pub fn new(cpu_ms: u64, memory_mib: usize) -> Self {
        Self {
            cpu_per_call: Duration::from_millis(cpu_ms).min(Self::MAX_CPU_PER_CALL),
            memory_bytes: memory_mib
                .saturating_mul(1 << 20)
                .min(Self::MAX_MEMORY_BYTES),
            max_instances: Self::DEFAULT_MAX_INSTANCES,
        }
    }

    /// The same limits with at most `n` instances (clamped to 1..=[`MAX_INSTANCES`](Self::MAX_INSTANCES)).
    pub fn with_max_instances(self, n: usize) -> Self {
        Self {
            max_instances: n.clamp(1, Self::MAX_INSTANCES),
            ..self
        }
    }

    /// The limits of the built-in plugins. They are ours, but a pathological object can still
    /// make them grow their memory, so they are budgeted like any plugin: 32 MiB per instance
    /// (the largest Service or EndpointSlice the API server stores needs a few MiB) and two
    /// instances each (their calls take tens of microseconds, so two rarely wait), which
    /// leaves room for user plugins in the Deployment's 512 MiB.
    pub fn builtin() -> Self {
        Self::new(100, 32).with_max_instances(2)
    }

    /// All the linear memory the plugin's instances may hold together: `max_instances ×
    /// memory_bytes`.
    pub fn memory_budget_bytes(&self) -> u64 {
        self.max_instances as u64 * self.memory_bytes as u64
    }

    /// The memory cap of one instance in MiB, for messages.
    pub fn memory_mib(&self) -> usize {
        self.memory_bytes >> 20
    }

    /// The memory budget in MiB, for messages.
    pub fn memory_budget_mib(&self) -> u64 {
        self.memory_budget_bytes() >> 20
    }

    /// The CPU budget in milliseconds, for messages.
    pub fn cpu_ms(&self) -> u128 {
        self.cpu_per_call.as_millis()
    }
}

impl Default for PluginLimits {
    /// 100 ms of CPU per call, 64 MiB of linear memory per instance, 2 instances (a budget of
    /// 128 MiB).
    fn default() -> Self {
        Self::new(100, 64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_100ms_64mib_and_two_instances() {
        let l = PluginLimits::default();
        assert_eq!(l.cpu_ms(), 100);
        assert_eq!(l.memory_mib(), 64);
        assert_eq!(l.max_instances, 2);
        assert_eq!(l.memory_budget_mib(), 128);
    }

    #[test]
    fn clamps_to_maxima() {
        let l = PluginLimits::new(60_000, 4096).with_max_instances(100);
        assert_eq!(l.cpu_per_call, PluginLimits::MAX_CPU_PER_CALL);
        assert_eq!(l.memory_bytes, PluginLimits::MAX_MEMORY_BYTES);
        assert_eq!(l.max_instances, PluginLimits::MAX_INSTANCES);
        assert_eq!(
            PluginLimits::default().with_max_instances(0).max_instances,
            1
        );
        // No overflow on absurd inputs.
        assert_eq!(
            PluginLimits::new(1, usize::MAX).memory_bytes,
            PluginLimits::MAX_MEMORY_BYTES
        );
    }

    #[test]
    fn the_budget_covers_every_instance() {
        let l = PluginLimits::new(100, 48).with_max_instances(3);
        assert_eq!(l.memory_budget_bytes(), 3 * 48 * 1024 * 1024);
        assert_eq!(PluginLimits::builtin().memory_budget_mib(), 64);
    }
}
