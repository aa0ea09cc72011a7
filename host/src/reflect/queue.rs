//! A deduplicating work queue with per-key exponential backoff.
//!
//! Semantics follow client-go's workqueue, which every Kubernetes controller author knows:
//! a key is queued at most once; a key added while it is being processed is processed again
//! after the current pass (never concurrently); failures retry with exponential backoff per key.
//! Keys are served first in, first out: there are no priorities and no per-peer fairness.
//!
//! What it does, precisely: [`WorkQueue::add`] dedups a waiting key and marks a key in process
//! dirty (queued again by [`WorkQueue::done`]); any number of workers pull with
//! [`WorkQueue::next`]; [`WorkQueue::retry`] counts the key's failures and re-adds it after its
//! [`Backoff`] (by default 50 ms doubling to 30 s), [`WorkQueue::forget`] resets the count;
//! [`WorkQueue::add_after`] keeps one timer per key (the earliest wins); [`WorkQueue::pending`]
//! counts waiting plus in-process keys (the engine's idle test) and
//! [`WorkQueue::observe_depth`] feeds the depth gauge on every change; [`WorkQueue::shutdown`]
//! lets the workers drain the queue and stop.
//!
//! Why not kube-runtime's building blocks (kube-runtime 5):
//! - `kube_runtime::Controller` reconciles `ObjectRef`s of one root kind and calls the
//!   reconciler only for objects found in its own store (otherwise `ObjectNotFound`). A
//!   reflection key is (peer, local namespace, kind, name), one per peer for the same local
//!   object, over kinds and peers that come and go at run time, and a pass must also run when
//!   the local object is gone (to delete the remote copy) or when only a remote copy exists
//!   (an orphan found by the twin watch). Its `error_policy` returns an `Action` per error but
//!   keeps no failure count, so the per-key backoff would be ours anyway.
//! - `kube_runtime::scheduler` dedups requests and emits each at its earliest `run_at`, and can
//!   hold messages back (`hold_unless`), but it is one `Stream` for one consumer: it has no
//!   failure count or backoff, no "done" that re-queues a key added during its pass (that logic
//!   lives in the controller's private runner), and no count of keys in process.
//! - `kube_runtime::reflector` is a cache, not a queue: the engine's caches use it
//!   (`stores.rs`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// Backoff settings of a queue.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay after the first failure.
    pub base: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(50),
            max: Duration::from_secs(30),
        }
    }
}

struct State<K> {
    queue: VecDeque<K>,
    queued: HashSet<K>,
    processing: HashSet<K>,
    dirty: HashSet<K>,
    failures: HashMap<K, u32>,
    /// Keys with a delayed add pending, and when it is due. One timer per key: without this,
    /// every failure of a key that keeps changing started its own retry chain, and the chains
    /// multiplied (a refused object retried ~3 times a second at the 30 s cap).
    delayed: HashMap<K, tokio::time::Instant>,
    shutdown: bool,
}

/// The queue. Clone the `Arc` to share it between producers and workers.
pub struct WorkQueue<K> {
    state: Mutex<State<K>>,
    notify: Notify,
    backoff: Backoff,
    /// Told the number of waiting keys whenever it changes (the depth gauge): sampling it when a
    /// worker takes a key lagged the real backlog while every worker was busy.
    depth_observer: std::sync::OnceLock<DepthObserver>,
}

/// See [`WorkQueue::observe_depth`].
type DepthObserver = Box<dyn Fn(usize) + Send + Sync>;

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    /// An empty queue.
    pub fn new(backoff: Backoff) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued: HashSet::new(),
                processing: HashSet::new(),
                dirty: HashSet::new(),
                failures: HashMap::new(),
                delayed: HashMap::new(),
                shutdown: false,
            }),
            notify: Notify::new(),
            backoff,
            depth_observer: std::sync::OnceLock::new(),
        })
    }

    /// Calls `observer` with the number of waiting keys each time it changes. Set once;
    /// later calls are ignored.
    pub fn observe_depth(&self, observer: impl Fn(usize) + Send + Sync + 'static) {
        let _ = self.depth_observer.set(Box::new(observer));
    }

    fn report_depth(&self, depth: usize) {
        if let Some(observer) = self.depth_observer.get() {
            observer(depth);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `key` unless it is already queued; if it is being processed, it is queued again
    /// when that pass finishes.
    pub fn add(&self, key: K) {
        let mut s = self.lock();
        if s.shutdown || s.queued.contains(&key) {
            return;
        }
        if s.processing.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        s.queued.insert(key.clone());
        s.queue.push_back(key);
        let depth = s.queue.len();
        drop(s);
        self.report_depth(depth);
        self.notify.notify_one();
    }

    /// Queues `key` after `delay` (from a background task). A key already due sooner is left
    /// alone; a key due later is brought forward (the later timer then does nothing).
    pub fn add_after(self: &Arc<Self>, key: K, delay: Duration) {
        let due = tokio::time::Instant::now() + delay;
        {
            let mut s = self.lock();
            match s.delayed.get(&key) {
                Some(existing) if *existing <= due => return,
                _ => {
                    s.delayed.insert(key.clone(), due);
                }
            }
        }
        let queue = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            {
                let mut s = queue.lock();
                if s.delayed.get(&key) != Some(&due) {
                    // Superseded by an earlier timer, which already fired or will.
                    return;
                }
                s.delayed.remove(&key);
            }
            queue.add(key);
        });
    }

    /// Records a failure of `key` and queues it again after its backoff delay.
    pub fn retry(self: &Arc<Self>, key: K) -> Duration {
        let delay = {
            let mut s = self.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            backoff_delay(self.backoff, *n)
        };
        self.add_after(key, delay);
        delay
    }

    /// Clears the failure count of `key` (after a success).
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// Waits for the next key; `None` once the queue is shut down and drained.
    pub async fn next(&self) -> Option<K> {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.lock();
                if let Some(key) = s.queue.pop_front() {
                    s.queued.remove(&key);
                    s.processing.insert(key.clone());
                    let depth = s.queue.len();
                    drop(s);
                    if depth > 0 {
                        // Wake another worker: there is more to do.
                        self.notify.notify_one();
                    }
                    self.report_depth(depth);
                    return Some(key);
                }
                if s.shutdown {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Marks the pass over `key` finished; re-queues it if it was added meanwhile.
    pub fn done(&self, key: &K) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.remove(key) && !s.shutdown {
            s.queued.insert(key.clone());
            s.queue.push_back(key.clone());
            let depth = s.queue.len();
            drop(s);
            self.report_depth(depth);
            self.notify.notify_one();
        }
    }

    /// Keys waiting (not counting those being processed).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// True when no key waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys waiting or being processed: zero means the queue is idle.
    pub fn pending(&self) -> usize {
        let s = self.lock();
        s.queue.len() + s.processing.len()
    }

    /// Stops handing out keys; workers' `next` returns `None`.
    pub fn shutdown(&self) {
        self.lock().shutdown = true;
        self.notify.notify_waiters();
    }
}

fn backoff_delay(b: Backoff, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    b.base.saturating_mul(1u32 << exp).min(b.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deduplicates_queued_keys() {
        let q = WorkQueue::new(Backoff::default());
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(q.next().await, Some("b"));
    }

    #[tokio::test]
    async fn a_key_added_while_processing_is_processed_again_after() {
        let q = WorkQueue::new(Backoff::default());
        q.add("a");
        let k = q.next().await.unwrap();
        q.add("a");
        assert_eq!(q.len(), 0, "never handed out twice concurrently");
        q.done(&k);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, Some("a"));
    }

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let b = Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(100),
        };
        let d: Vec<_> = (1..=6).map(|n| backoff_delay(b, n).as_millis()).collect();
        assert_eq!(d, vec![10, 20, 40, 80, 100, 100]);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_requeues_after_the_delay_and_forget_resets() {
        let q = WorkQueue::new(Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_secs(1),
        });
        assert_eq!(q.retry("a"), Duration::from_millis(10));
        assert_eq!(q.retry("a"), Duration::from_millis(20));
        tokio::time::sleep(Duration::from_millis(25)).await;
        assert_eq!(q.next().await, Some("a"));
        q.forget(&"a");
        assert_eq!(q.retry("a"), Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn one_retry_timer_per_key_however_many_failures() {
        let q = WorkQueue::new(Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(40),
        });
        // A key that fails on every change: many failures while a retry is already pending.
        for _ in 0..50 {
            q.retry("a");
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
        assert_eq!(q.next().await, Some("a"));
        q.done(&"a");
        // Every other timer was dropped: nothing else comes, even long after.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(q.len(), 0);
        // An earlier deadline replaces a later one.
        q.add_after("b", Duration::from_secs(10));
        q.add_after("b", Duration::from_millis(5));
        tokio::time::sleep(Duration::from_millis(6)).await;
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, Some("b"));
        q.done(&"b");
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(q.len(), 0, "the superseded timer does nothing");
    }

    #[tokio::test]
    async fn the_depth_observer_sees_every_change_of_the_backlog() {
        let q: Arc<WorkQueue<&str>> = WorkQueue::new(Backoff::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        q.observe_depth(move |depth| sink.lock().unwrap().push(depth));
        q.add("a");
        q.add("b");
        q.add("a"); // already queued: no change
        let first = q.next().await.unwrap();
        q.add(first); // being processed: queued again when done
        q.done(&first);
        assert_eq!(*seen.lock().unwrap(), [1, 2, 1, 2]);
    }

    #[tokio::test]
    async fn shutdown_releases_waiting_workers() {
        let q: Arc<WorkQueue<&str>> = WorkQueue::new(Backoff::default());
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.next().await })
        };
        tokio::task::yield_now().await;
        q.shutdown();
        assert_eq!(waiter.await.unwrap(), None);
    }
}
