//! Warm instances of one plugin, reused across calls, and the classification of failed calls.
//!
//! Instantiating a component costs far more than calling it, so each plugin keeps a few idle
//! instances. An instance whose call trapped or was interrupted is dropped, never returned:
//! wasmtime refuses to re-enter it, and its memory may be in any state.

use std::sync::Mutex;

use wasmtime::{Store, Trap};

use super::error::PluginError;
use super::limits::PluginLimits;
use super::store::StoreState;

/// One instance with its store and typed exports.
pub(crate) struct Pooled<B> {
    pub store: Store<StoreState>,
    pub bindings: B,
}

/// Idle instances of one plugin.
pub(crate) struct InstancePool<B> {
    idle: Mutex<Vec<Pooled<B>>>,
    max_idle: usize,
}

impl<B> InstancePool<B> {
    pub fn new(max_idle: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::with_capacity(max_idle)),
            max_idle,
        }
    }

    /// An idle instance, if any.
    pub fn take(&self) -> Option<Pooled<B>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Returns a healthy instance; beyond `max_idle` it is dropped.
    pub fn give(&self, instance: Pooled<B>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(instance);
        }
    }

    /// Number of idle instances (for tests).
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Epoch ticks that guarantee at least `limit` of run time before interruption.
pub(crate) fn deadline_ticks(limits: &PluginLimits, tick: std::time::Duration) -> u64 {
    let tick = tick.as_nanos().max(1);
    (limits.cpu_per_call.as_nanos().div_ceil(tick) as u64) + 1
}

/// Turns a wasmtime error from a guest call into the typed error users see.
pub(crate) fn classify(
    err: wasmtime::Error,
    store: &Store<StoreState>,
    plugin: &str,
    object: &str,
    limits: &PluginLimits,
) -> PluginError {
    if store.data().limiter.hit {
        return PluginError::MemoryLimit {
            plugin: plugin.to_string(),
            object: object.to_string(),
            limit_mib: limits.memory_mib(),
        };
    }
    if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return PluginError::CpuLimit {
            plugin: plugin.to_string(),
            object: object.to_string(),
            limit_ms: limits.cpu_ms(),
        };
    }
    let message = match err.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => err.root_cause().to_string(),
    };
    PluginError::Trap {
        plugin: plugin.to_string(),
        object: object.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn deadline_covers_the_whole_budget() {
        let l = PluginLimits::new(100, 64);
        assert_eq!(deadline_ticks(&l, Duration::from_millis(5)), 21);
        assert_eq!(deadline_ticks(&l, Duration::from_millis(30)), 5);
    }
}
