//! Watched caches: a kube-runtime watcher feeding a reflector store, with a readiness flag and
//! a callback per change. The engine never acts on a cache that has not completed its first
//! list: an unsynced local cache would look like "every object was deleted".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::StreamExt;
use kube::api::Api;
use kube::discovery::ApiResource;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::watcher::{self, Event};
use tokio::task::AbortHandle;

use super::cached::CachedObject;

/// What a watch reports to the engine.
#[derive(Debug, Clone)]
pub(crate) enum Signal<'a> {
    /// An object was added, changed or deleted.
    Object {
        namespace: &'a str,
        name: &'a str,
        /// Part of a (re)list: every object of the cache is reported, so consumers need not
        /// fan out to dependents (they are listed too, or re-evaluated at `Synced`).
        listing: bool,
    },
    /// A (re)list completed: objects may have vanished without a delete event.
    Synced,
    /// A cache that has never listed started failing (its first error since it started).
    /// Passes that found it merely not ready before the error learn nothing else until the
    /// watch recovers, which for a kind the peer refuses may be never.
    Failing,
}

/// Source of [`WatchedCache::id`].
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

/// A cache kept current by a background watch; dropping it stops the watch.
pub(crate) struct WatchedCache {
    /// Unique for the life of the process, so that a reader can tell a new cache from the one it
    /// saw before (an address could be reused).
    id: u64,
    pub store: Store<CachedObject>,
    resource: ApiResource,
    ready: Arc<AtomicBool>,
    /// Bumped on every change the watch reports, so that readers deriving something from the
    /// whole cache can tell whether it may have changed without scanning it.
    changes: Arc<AtomicU64>,
    /// Since when the watch has been failing (no successful (re)list since), and its last
    /// error.
    last_error: Arc<std::sync::Mutex<Option<(std::time::Instant, String)>>>,
    task: AbortHandle,
}

impl Drop for WatchedCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WatchedCache {
    /// Starts watching `api` (objects of `resource`), calling `on_signal` for every change.
    pub fn start(
        api: Api<CachedObject>,
        resource: ApiResource,
        label: String,
        on_signal: impl Fn(Signal<'_>) + Send + Sync + 'static,
    ) -> Self {
        let writer = Writer::new(resource.clone());
        let store = writer.as_reader();
        let ready = Arc::new(AtomicBool::new(false));
        let ready_flag = ready.clone();
        let changes = Arc::new(AtomicU64::new(0));
        let change_counter = changes.clone();
        let last_error: Arc<std::sync::Mutex<Option<(std::time::Instant, String)>>> =
            Arc::default();
        let error_slot = last_error.clone();
        // Objects arrive in their compact cached form (no managedFields, body as JSON text):
        // see `cached`.
        let stream = reflector::reflector(
            writer,
            watcher::watcher(api, watcher::Config::default()).default_backoff(),
        );
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if event.is_ok() {
                    change_counter.fetch_add(1, Ordering::Release);
                }
                match event {
                    Ok(Event::Apply(o) | Event::Delete(o)) => {
                        let namespace = o.namespace().unwrap_or("");
                        let name = o.name();
                        on_signal(Signal::Object {
                            namespace,
                            name,
                            listing: false,
                        });
                    }
                    Ok(Event::InitApply(o)) => {
                        let namespace = o.namespace().unwrap_or("");
                        let name = o.name();
                        on_signal(Signal::Object {
                            namespace,
                            name,
                            listing: true,
                        });
                    }
                    Ok(Event::InitDone) => {
                        *error_slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        ready_flag.store(true, Ordering::Release);
                        on_signal(Signal::Synced);
                    }
                    Ok(Event::Init) => {}
                    Err(err) => {
                        tracing::warn!(watch = %label, %err, "watch failed; retrying with backoff");
                        let first = {
                            let mut slot = error_slot.lock().unwrap_or_else(|p| p.into_inner());
                            let first = slot.is_none();
                            let since = slot
                                .as_ref()
                                .map_or_else(std::time::Instant::now, |(since, _)| *since);
                            *slot = Some((since, err.to_string()));
                            first
                        };
                        // After the error is recorded, so that a pass the signal triggers sees
                        // it. Only a cache that never listed: a listed one keeps serving its
                        // last state, and its next (re)list says `Synced`.
                        if first && !ready_flag.load(Ordering::Acquire) {
                            on_signal(Signal::Failing);
                        }
                    }
                }
            }
        })
        .abort_handle();
        Self {
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            store,
            resource,
            ready,
            changes,
            last_error,
            task,
        }
    }

    /// The API resource this cache holds.
    pub fn store_resource(&self) -> ApiResource {
        self.resource.clone()
    }

    /// The last watch error, if the watch has been failing for at least `min` without a
    /// successful (re)list since.
    pub fn failing_for(&self, min: std::time::Duration) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(since, _)| since.elapsed() >= min)
            .map(|(_, error)| error.clone())
    }

    /// This cache's process-unique id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A counter that moves whenever the cache may have changed (it never moves otherwise).
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// True once the first list completed.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
