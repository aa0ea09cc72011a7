//! Per-plugin resource limits.

use std::time::Duration;

/// Limits applied to every call of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Wall-clock CPU budget of one call, enforced with epoch interruption. A call that runs
    /// longer is stopped with [`PluginError::CpuLimit`](super::PluginError::CpuLimit).
    pub cpu_per_call: Duration,
    /// Maximum size of the plugin's linear memory in bytes. Growth beyond it stops the call
    /// with [`PluginError::MemoryLimit`](super::PluginError::MemoryLimit).
    pub memory_bytes: usize,
}

impl PluginLimits {
    /// Largest memory cap a plugin may ask for; the pooling allocator reserves this much
    /// address space per memory slot.
    pub const MAX_MEMORY_BYTES: usize = 512 << 20;
    /// Largest CPU budget a plugin may ask for per call.
    pub const MAX_CPU_PER_CALL: Duration = Duration::from_secs(10);

    /// Limits with a CPU budget in milliseconds and a memory cap in MiB, clamped to the
    /// runtime's maxima.
    pub fn new(cpu_ms: u64, memory_mib: usize) -> Self {
        Self {
            cpu_per_call: Duration::from_millis(cpu_ms).min(Self::MAX_CPU_PER_CALL),
            memory_bytes: (memory_mib << 20).min(Self::MAX_MEMORY_BYTES),
        }
    }

    /// The memory cap in MiB, for messages.
    pub fn memory_mib(&self) -> usize {
        self.memory_bytes >> 20
    }

    /// The CPU budget in milliseconds, for messages.
    pub fn cpu_ms(&self) -> u128 {
        self.cpu_per_call.as_millis()
    }
}

impl Default for PluginLimits {
    /// 100 ms of CPU per call and 64 MiB of linear memory.
    fn default() -> Self {
        Self::new(100, 64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_100ms_and_64mib() {
        let l = PluginLimits::default();
        assert_eq!(l.cpu_ms(), 100);
        assert_eq!(l.memory_mib(), 64);
    }

    #[test]
    fn clamps_to_maxima() {
        let l = PluginLimits::new(60_000, 4096);
        assert_eq!(l.cpu_per_call, PluginLimits::MAX_CPU_PER_CALL);
        assert_eq!(l.memory_bytes, PluginLimits::MAX_MEMORY_BYTES);
    }
}
