//! Where plugin calls run, and how many at once.
//!
//! Why not on the async workers: a guest call is synchronous CPU work that only the epoch
//! deadline stops, up to [`PluginLimits::MAX_CPU_PER_CALL`](super::PluginLimits) (10 s). Run
//! on a tokio worker thread, it holds that worker for the whole call: with the Deployment's
//! single CPU the runtime may have one worker, and then nothing else runs meanwhile: not the
//! leader Lease renewal (a 10 s stall is most of the 15 s term), not the watches, not the
//! passes of other kinds, not `/healthz`. So a call runs on tokio's blocking pool
//! ([`tokio::task::spawn_blocking`]) and the async side awaits its result; the OS scheduler
//! then shares the CPU between the spinning guest and the async workers, which get their
//! turn within a scheduler slice instead of after the call.
//!
//! Why bounded, twice:
//! - per plugin, by its [`CallSlot`]s: a plugin runs at most `max_instances` calls at once
//!   (one instance each), which is also what bounds its memory (see
//!   [`MemoryLedger`](super::memory::MemoryLedger)). A plugin stuck at its CPU limit
//!   therefore occupies at most that many threads; callers that find it busy can defer their
//!   work ([`ReflectorPlugin::try_call_slot`](super::ReflectorPlugin::try_call_slot)) instead
//!   of queueing behind it;
//! - for the whole runtime, by a semaphore of `max_concurrent_calls` permits, so plugins
//!   together never take more than that many blocking threads (the blocking pool is shared
//!   with file reads and compiles, and grows up to 512 threads). A plugin never gets more
//!   than `max_concurrent_calls - 1` slots, so one plugin alone cannot take every permit.
//!
//! Waiting for a slot or a permit is asynchronous: a waiting pass holds no thread.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::PluginError;

/// The right to run one call of one plugin (and so to use one of its instances). Take one
/// with [`ReflectorPlugin::try_call_slot`](super::ReflectorPlugin::try_call_slot) or
/// [`call_slot`](super::ReflectorPlugin::call_slot); it is released when dropped.
#[derive(Debug)]
pub struct CallSlot {
    permit: OwnedSemaphorePermit,
}

/// The slots of one plugin.
pub(crate) struct PluginSlots {
    slots: Arc<Semaphore>,
}

impl PluginSlots {
    pub fn new(n: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(n.max(1))),
        }
    }

    /// A free slot, if any, without waiting.
    pub fn try_take(&self) -> Option<CallSlot> {
        self.slots
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|permit| CallSlot { permit })
    }

    /// Waits for a slot.
    pub async fn take(&self) -> CallSlot {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("plugin slots are never closed");
        CallSlot { permit }
    }

    /// Waits for a slot, blocking the thread: for synchronous callers (tests, `liqoctl plugin
    /// test`), never from async code.
    pub fn take_blocking(&self) -> CallSlot {
        self.try_take()
            .unwrap_or_else(|| futures::executor::block_on(self.take()))
    }

    /// True when `slot` is one of these slots.
    pub fn owns(&self, slot: &CallSlot) -> bool {
        Arc::ptr_eq(slot.permit.semaphore(), &self.slots)
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }
}

/// Runs `call` on the blocking pool under one of the runtime's `permits`, and awaits it.
///
/// The permit is moved into the blocking task, so it is released when the call ends, even if
/// the awaiting future was dropped meanwhile (a call cannot be cancelled; the CPU limit bounds
/// it). `plugin` and `object` name the call in the error returned if the task cannot run or
/// panicked.
pub(crate) async fn run_blocking<T, F>(
    permits: &Arc<Semaphore>,
    plugin: &str,
    object: &str,
    call: F,
) -> Result<T, PluginError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, PluginError> + Send + 'static,
{
    let unavailable = |message: String| PluginError::Unavailable {
        plugin: plugin.to_string(),
        object: object.to_string(),
        message,
    };
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| unavailable("the plugin runtime is shutting down".into()))?;
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        call()
    });
    match task.await {
        Ok(result) => result,
        Err(err) if err.is_panic() => Err(unavailable(format!(
            "the host panicked during the call: {}",
            panic_message(err.into_panic())
        ))),
        Err(_) => Err(unavailable(
            "the call was cancelled (the host is shutting down)".into(),
        )),
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn slots_bound_calls_and_belong_to_their_plugin() {
        let a = PluginSlots::new(2);
        let b = PluginSlots::new(1);
        let s1 = a.try_take().unwrap();
        let s2 = a.try_take().unwrap();
        assert!(a.try_take().is_none(), "only two");
        assert!(a.owns(&s1) && !b.owns(&s1));
        drop(s1);
        assert_eq!(a.available(), 1);
        let _s3 = a.take_blocking();
        drop(s2);
    }

    /// The whole point: a blocking call does not stop the (single) async worker.
    #[tokio::test(flavor = "current_thread")]
    async fn a_blocking_call_leaves_the_async_worker_free() {
        let permits = Arc::new(Semaphore::new(2));
        let started = Instant::now();
        let call = run_blocking(&permits, "p", "o", || {
            std::thread::sleep(Duration::from_millis(300));
            Ok(7)
        });
        let ticker = async {
            let mut worst = Duration::ZERO;
            for _ in 0..10 {
                let t = Instant::now();
                tokio::time::sleep(Duration::from_millis(10)).await;
                worst = worst.max(t.elapsed());
            }
            worst
        };
        let (result, worst) = tokio::join!(call, ticker);
        assert_eq!(result.unwrap(), 7);
        assert!(
            worst < Duration::from_millis(150),
            "the timer was held up {worst:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(permits.available_permits(), 2, "permit released");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn permits_bound_concurrent_calls_and_panics_are_errors() {
        let permits = Arc::new(Semaphore::new(1));
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let calls = (0..4).map(|_| {
            let (running, peak) = (running.clone(), peak.clone());
            run_blocking(&permits, "p", "o", move || {
                use std::sync::atomic::Ordering::SeqCst;
                let now = running.fetch_add(1, SeqCst) + 1;
                peak.fetch_max(now, SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                running.fetch_sub(1, SeqCst);
                Ok(())
            })
        });
        for r in futures::future::join_all(calls).await {
            r.unwrap();
        }
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 1);

        let err = run_blocking::<(), _>(&permits, "p", "ConfigMap ns/x", || panic!("boom"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, PluginError::Unavailable { .. }) && err.to_string().contains("boom"),
            "{err}"
        );
        assert_eq!(permits.available_permits(), 1);
    }
}
