//! The engine: kinds, peers, twin namespaces, caches, the queue and its workers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use kube::Client;
use kube::api::Api;
use kube::api::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;

use super::cached::CachedObject;
use super::event_budget::EventBudget;
use super::kind_rules::KindRules;
use super::metrics::EngineMetrics;
use super::queue::{Backoff, WorkQueue};
use super::reads::ReadIndex;
use super::reconcile;
use super::stores::{Signal, WatchedCache};
use crate::plugin::{
    AddressTranslator, CallServices, ClusterIdentity, KindRef, ObjectReader, ReflectorPlugin,
};

/// Events waiting to be published; beyond this, new ones are dropped (Events are best effort,
/// reflection is not).
const EVENT_BACKLOG: usize = 4096;
/// Normal Events written at once, then per second (see `event_budget`); Warnings are never
/// limited.
const EVENT_BURST: u32 = 100;
const EVENT_RATE: u32 = 10;

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This cluster's identity (written in `offloading.liqo.io/origin`).
    pub local: ClusterIdentity,
    /// Concurrent reflection passes.
    pub workers: usize,
    /// Retry backoff of failed passes.
    pub backoff: Backoff,
}

/// Key of one unit of work: one object of one kind in one namespace, towards one peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ReflectKey {
    pub peer: Arc<str>,
    pub namespace: Arc<str>,
    /// `group/version/kind` of the object.
    pub kind: Arc<str>,
    pub name: Arc<str>,
}

/// What happens to an object whose plugin call fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailureMode {
    /// The remote copy keeps its last state, a Warning Event names the plugin and the error,
    /// and the object is retried with backoff.
    #[default]
    KeepAndRetry,
    /// The object is treated as skipped: its remote copy is removed (Warning Event), no retry
    /// until the object changes.
    Skip,
}

/// A reflected kind and who serves it. Immutable: a new plugin version or a retirement
/// replaces the whole slot, so a pass that started with the old slot finishes with it (the
/// "clean point" of a hot swap is the end of each pass).
pub(crate) struct KindSlot {
    pub key: Arc<str>,
    pub kind: KindRef,
    pub resource: ApiResource,
    /// `None` while the kind is being retired: passes remove remote copies.
    pub plugin: Option<Arc<ReflectorPlugin>>,
    pub failure: FailureMode,
    /// The user plugin serving the kind; `None` for a built-in plugin.
    pub owner: Option<Arc<str>>,
}

/// The kinds the engine reflects, the built-in plugins they fall back to, and the trigger map.
#[derive(Default)]
pub(crate) struct Registry {
    pub slots: HashMap<Arc<str>, Arc<KindSlot>>,
    /// The built-in plugin of each kind, restored when a user plugin that replaced it goes.
    builtin: HashMap<Arc<str>, Arc<ReflectorPlugin>>,
    /// Keys of the kinds some plugin declares as a trigger (manifest `triggers`): a change of
    /// such an object re-evaluates the objects that read it (see `reads`).
    pub triggers: HashSet<String>,
}

impl Registry {
    fn rebuild_triggers(&mut self) {
        self.triggers = self
            .slots
            .values()
            .filter_map(|slot| slot.plugin.as_ref())
            .flat_map(|plugin| plugin.manifest().triggers.iter())
            .map(|t| kind_key(&t.group, &t.version, &t.kind))
            .collect();
    }

    /// Every local kind some slot needs watched: reflected, read or triggering.
    fn needed_local_kinds(&self) -> HashMap<String, KindRef> {
        let mut needed = HashMap::new();
        for slot in self.slots.values() {
            needed.insert(slot.key.to_string(), slot.kind.clone());
            let Some(plugin) = &slot.plugin else { continue };
            let manifest = plugin.manifest();
            for k in manifest.reads.iter().chain(&manifest.triggers) {
                needed.insert(kind_key(&k.group, &k.version, &k.kind), k.clone());
            }
        }
        needed
    }
}

/// Why a user plugin cannot serve its kinds.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Another user plugin already serves the kind.
    #[error(
        "{kind} is already reflected by plugin {owner}; remove that ReflectionPlugin first (one user plugin per kind)"
    )]
    KindTaken {
        /// The kind.
        kind: String,
        /// The ReflectionPlugin serving it.
        owner: String,
    },
    /// The engine only reflects namespaced kinds into twin namespaces.
    #[error(
        "{kind} is cluster-scoped; reflection plugins reflect namespaced kinds only (objects travel into the twin namespace)"
    )]
    ClusterScoped {
        /// The kind.
        kind: String,
    },
}

/// Progress of removing a user plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Its kinds are served by built-in plugins again or no longer reflected, and no remote
    /// copy of a kind it alone reflected is left.
    Done,
    /// Remote copies of its kinds are still being removed.
    Pending {
        /// Remote copies left, over every peer and twin namespace.
        remote_copies: usize,
    },
}

/// One offloaded namespace in one peer.
pub(crate) struct TwinNamespace {
    pub remote: String,
    /// Remote caches, by kind key.
    pub caches: RwLock<HashMap<Arc<str>, Arc<WatchedCache>>>,
}

impl TwinNamespace {
    pub fn cache(&self, kind: &str) -> Option<Arc<WatchedCache>> {
        self.caches
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(kind)
            .cloned()
    }
}

/// A peer cluster reflection writes to.
pub(crate) struct PeerState {
    pub identity: ClusterIdentity,
    pub client: Client,
    pub services: CallServices,
    pub twins: RwLock<HashMap<String, Arc<TwinNamespace>>>,
    /// Whether the data path to the peer carries traffic (always, without a gateway). While
    /// it does not, reflected EndpointSlices say that no endpoint is ready: clients in the
    /// peer must not be sent to a path that drops them.
    pub data_path_up: std::sync::atomic::AtomicBool,
}

/// What the caller supplies to add a peer.
pub struct PeerHandle {
    /// The peer's identity.
    pub identity: ClusterIdentity,
    /// A client authenticated with the peering credential.
    pub client: Client,
    /// The peering's address mapping.
    pub translator: Arc<dyn AddressTranslator>,
}

pub(crate) struct Inner {
    pub config: EngineConfig,
    local_client: Client,
    pub registry: RwLock<Registry>,
    /// Local caches by `group/version/kind`, for reflected kinds and kinds plugins read.
    pub local: Arc<RwLock<HashMap<String, Arc<WatchedCache>>>>,
    /// Kinds of the built-in plugins: readiness waits for their caches only (a user plugin's
    /// kind may not even exist yet).
    essential: Vec<String>,
    pub peers: RwLock<HashMap<String, Arc<PeerState>>>,
    pub queue: Arc<WorkQueue<ReflectKey>>,
    /// Events on local objects, published by a background task so a pass never waits for
    /// them (Liqo emits one per successful pass: on the critical path that doubled the
    /// latency of every reflection).
    pub events: tokio::sync::mpsc::Sender<(
        kube::runtime::events::Event,
        k8s_openapi::api::core::v1::ObjectReference,
    )>,
    pub metrics: EngineMetrics,
    /// What each key's latest pass read: a change re-evaluates exactly its readers.
    pub reads: Arc<ReadIndex>,
    /// Local objects that cannot be reflected because a foreign object holds their name in the
    /// peer, by (peer id, local namespace), as `Kind/name`.
    pub conflicts: std::sync::Mutex<HashMap<(String, String), std::collections::BTreeSet<String>>>,
    /// Told the local namespace whenever its conflict set changes.
    pub conflict_listener: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedSender<String>>>,
}

/// The reflection engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) fn kind_key(group: &str, version: &str, kind: &str) -> String {
    format!("{group}/{version}/{kind}")
}

fn api_resource(k: &KindRef) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&k.group, &k.version, &k.kind),
        &k.plural,
    )
}

/// Plugins read the origin cluster through the engine's local caches.
struct LocalReader {
    caches: Arc<RwLock<HashMap<String, Arc<WatchedCache>>>>,
}

impl ObjectReader for LocalReader {
    fn get(&self, kind: &KindRef, namespace: &str, name: &str) -> Result<Option<String>, String> {
        let key = kind_key(&kind.group, &kind.version, &kind.kind);
        let cache = self
            .caches
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned()
            .ok_or_else(|| format!("the host does not cache {kind}"))?;
        let resource = cache.store_resource();
        let reference = ObjectRef::new_with(name, resource.clone()).within(namespace);
        Ok(cache.store.get(&reference).map(|o| o.json(&resource)))
    }
}

impl Engine {
    /// Builds the engine with the built-in `plugins` and starts the local watches. Call
    /// [`Engine::run`] to start the workers.
    pub fn start(
        local_client: Client,
        config: EngineConfig,
        plugins: Vec<Arc<ReflectorPlugin>>,
        metrics: EngineMetrics,
    ) -> Self {
        let mut registry = Registry::default();
        for plugin in &plugins {
            for kind in &plugin.manifest().reflects {
                let key: Arc<str> = Arc::from(kind_key(&kind.group, &kind.version, &kind.kind));
                registry.builtin.insert(key.clone(), plugin.clone());
                registry.slots.insert(
                    key.clone(),
                    Arc::new(KindSlot {
                        key,
                        kind: kind.clone(),
                        resource: api_resource(kind),
                        plugin: Some(plugin.clone()),
                        failure: FailureMode::default(),
                        owner: None,
                    }),
                );
            }
        }
        registry.rebuild_triggers();
        let essential = registry.needed_local_kinds().into_keys().collect();

        let reporter = Reporter {
            controller: "liqo-host".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let recorder = Recorder::new(local_client.clone(), reporter);
        let (events, mut pending_events) = tokio::sync::mpsc::channel::<(
            kube::runtime::events::Event,
            k8s_openapi::api::core::v1::ObjectReference,
        )>(EVENT_BACKLOG);
        let event_metrics = metrics.clone();
        tokio::spawn(async move {
            let mut budget = EventBudget::new(EVENT_BURST, EVENT_RATE);
            while let Some((event, reference)) = pending_events.recv().await {
                if event.type_ == EventType::Normal && !budget.take(std::time::Instant::now()) {
                    event_metrics.event_dropped();
                    continue;
                }
                // Counted here, where the write happens: an event dropped because the backlog
                // is full is not a write.
                event_metrics.write("local", "event");
                if let Err(err) = recorder.publish(&event, &reference).await {
                    tracing::debug!(%err, "could not publish event");
                }
            }
        });
        let queue = WorkQueue::new(config.backoff);
        {
            let metrics = metrics.clone();
            queue.observe_depth(move |depth| metrics.set_queue_depth(depth));
        }
        let inner = Arc::new(Inner {
            config,
            local_client,
            registry: RwLock::new(registry),
            local: Arc::default(),
            essential,
            peers: RwLock::default(),
            queue,
            events,
            metrics,
            reads: Default::default(),
            conflicts: Default::default(),
            conflict_listener: Default::default(),
        });
        let engine = Engine { inner };
        engine.sync_local_caches();
        engine
    }

    /// Starts a local watch for every kind the registry needs and stops the ones it no longer
    /// needs. Nothing is watched while no namespace is offloaded: a cluster that is only a
    /// provider would otherwise cache every Service and EndpointSlice it holds, for nothing.
    fn sync_local_caches(&self) {
        let needed = if self.has_twins() {
            self.registry().needed_local_kinds()
        } else {
            HashMap::new()
        };
        let mut local = self.inner.local.write().unwrap_or_else(|p| p.into_inner());
        local.retain(|key, _| needed.contains_key(key));
        for (key, kind) in needed {
            if local.contains_key(&key) {
                continue;
            }
            let resource = api_resource(&kind);
            let api = Api::<CachedObject>::all_with(self.inner.local_client.clone(), &resource);
            let weak = Arc::downgrade(&self.inner);
            let key_for_cb = key.clone();
            let cache = WatchedCache::start(api, resource, format!("local {key}"), move |signal| {
                if let Some(inner) = weak.upgrade() {
                    Engine { inner }.on_local_signal(&key_for_cb, signal);
                }
            });
            local.insert(key, Arc::new(cache));
        }
    }

    fn has_twins(&self) -> bool {
        self.inner
            .peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|p| !p.twins.read().unwrap_or_else(|p| p.into_inner()).is_empty())
    }

    fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.inner
            .registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn slot(&self, kind: &str) -> Option<Arc<KindSlot>> {
        self.registry().slots.get(kind).cloned()
    }

    pub(crate) fn local_cache(&self, kind: &str) -> Option<Arc<WatchedCache>> {
        self.inner
            .local
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(kind)
            .cloned()
    }

    /// The kinds reflected now, with the plugin serving each (`group/version/kind` → plugin
    /// name; retiring kinds are left out).
    pub fn kinds(&self) -> Vec<(String, String)> {
        let mut kinds: Vec<(String, String)> = self
            .registry()
            .slots
            .values()
            .filter_map(|s| {
                let plugin = s.plugin.as_ref()?;
                Some((s.key.to_string(), plugin.name().to_string()))
            })
            .collect();
        kinds.sort();
        kinds
    }

    /// Makes the user plugin `owner` (a ReflectionPlugin name) serve the kinds its manifest
    /// declares, replacing a built-in plugin or an earlier version of itself. Passes in flight
    /// finish with the plugin they started with; then every object of those kinds is
    /// re-evaluated with `plugin`. Kinds the previous version served and this one does not are
    /// released as by [`Engine::release_plugin`].
    pub fn install_plugin(
        &self,
        owner: &str,
        plugin: Arc<ReflectorPlugin>,
        failure: FailureMode,
    ) -> Result<Vec<String>, InstallError> {
        let owner: Arc<str> = Arc::from(owner);
        let mut changed = Vec::new();
        {
            let mut registry = self
                .inner
                .registry
                .write()
                .unwrap_or_else(|p| p.into_inner());
            for kind in &plugin.manifest().reflects {
                if !kind.namespaced {
                    return Err(InstallError::ClusterScoped {
                        kind: kind.to_string(),
                    });
                }
                let key = kind_key(&kind.group, &kind.version, &kind.kind);
                if let Some(slot) = registry.slots.get(key.as_str())
                    && let Some(other) = &slot.owner
                    && *other != owner
                    && slot.plugin.is_some()
                {
                    return Err(InstallError::KindTaken {
                        kind: kind.to_string(),
                        owner: other.to_string(),
                    });
                }
            }
            let mut served = Vec::new();
            for kind in &plugin.manifest().reflects {
                let key: Arc<str> = Arc::from(kind_key(&kind.group, &kind.version, &kind.kind));
                served.push(key.clone());
                registry.slots.insert(
                    key.clone(),
                    Arc::new(KindSlot {
                        key: key.clone(),
                        kind: kind.clone(),
                        resource: api_resource(kind),
                        plugin: Some(plugin.clone()),
                        failure,
                        owner: Some(owner.clone()),
                    }),
                );
                changed.push(key);
            }
            // Kinds an earlier version served that this one dropped.
            let dropped: Vec<Arc<str>> = registry
                .slots
                .values()
                .filter(|s| s.owner.as_ref() == Some(&owner) && !served.contains(&s.key))
                .map(|s| s.key.clone())
                .collect();
            for key in dropped {
                release_slot(&mut registry, &key);
                changed.push(key);
            }
            registry.rebuild_triggers();
        }
        self.after_registry_change(&changed);
        Ok(changed.iter().map(|k| k.to_string()).collect())
    }

    /// Removes the user plugin `owner`: each of its kinds goes back to its built-in plugin, or,
    /// without one, stops being reflected and its remote copies are deleted. Call again until
    /// it returns [`Release::Done`]; the kinds' watches stop once their copies are gone.
    pub fn release_plugin(&self, owner: &str) -> Release {
        let mut changed = Vec::new();
        {
            let mut registry = self
                .inner
                .registry
                .write()
                .unwrap_or_else(|p| p.into_inner());
            let keys: Vec<Arc<str>> = registry
                .slots
                .values()
                .filter(|s| s.owner.as_deref() == Some(owner) && s.plugin.is_some())
                .map(|s| s.key.clone())
                .collect();
            for key in keys {
                release_slot(&mut registry, &key);
                changed.push(key);
            }
            registry.rebuild_triggers();
        }
        if !changed.is_empty() {
            self.after_registry_change(&changed);
        }
        let retiring: Vec<Arc<str>> = self
            .registry()
            .slots
            .values()
            .filter(|s| s.owner.as_deref() == Some(owner) && s.plugin.is_none())
            .map(|s| s.key.clone())
            .collect();
        let remote_copies: usize = retiring.iter().map(|k| self.owned_remote_copies(k)).sum();
        if remote_copies > 0 || !changed.is_empty() {
            return Release::Pending { remote_copies };
        }
        if !retiring.is_empty() {
            let mut registry = self
                .inner
                .registry
                .write()
                .unwrap_or_else(|p| p.into_inner());
            for key in &retiring {
                registry.slots.remove(key);
            }
            registry.rebuild_triggers();
            drop(registry);
            self.after_registry_change(&[]);
        }
        Release::Done
    }

    /// Remote copies of `kind` this engine owns, over every peer and twin namespace. A twin
    /// whose remote watch has not synced yet counts as one (unknown is not zero).
    fn owned_remote_copies(&self, kind: &str) -> usize {
        let local_id = self.inner.config.local.id.clone();
        let rules = KindRules::of(kind);
        let peers: Vec<Arc<PeerState>> = self
            .inner
            .peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut count = 0;
        for peer in peers {
            let twins: Vec<Arc<TwinNamespace>> = peer
                .twins
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect();
            for twin in twins {
                let Some(cache) = twin.cache(kind) else {
                    continue;
                };
                if !cache.is_ready() {
                    count += 1;
                    continue;
                }
                count += cache
                    .store
                    .state()
                    .iter()
                    .filter(|o| o.is_owned(rules, &local_id, &peer.identity.id))
                    .count();
            }
        }
        count
    }

    /// After slots changed: start or stop watches, then re-evaluate every object of the
    /// changed kinds in every twin namespace.
    fn after_registry_change(&self, changed: &[Arc<str>]) {
        self.sync_local_caches();
        let peers: Vec<(Arc<str>, Arc<PeerState>)> = self
            .inner
            .peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, p)| (Arc::from(id.as_str()), p.clone()))
            .collect();
        for (peer_key, peer) in peers {
            let twins: Vec<(String, Arc<TwinNamespace>)> = peer
                .twins
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(ns, t)| (ns.clone(), t.clone()))
                .collect();
            for (namespace, twin) in twins {
                let ns_key: Arc<str> = Arc::from(namespace.as_str());
                self.sync_twin_caches(&peer_key, &peer, &ns_key, &twin);
                for kind in changed {
                    self.enqueue_namespace(&peer_key, &ns_key, Some(kind));
                }
            }
        }
    }

    /// Starts a remote watch in `twin` for every registered kind and stops the others.
    fn sync_twin_caches(
        &self,
        peer_key: &Arc<str>,
        peer: &PeerState,
        ns_key: &Arc<str>,
        twin: &TwinNamespace,
    ) {
        let slots: Vec<Arc<KindSlot>> = self.registry().slots.values().cloned().collect();
        let mut caches = twin.caches.write().unwrap_or_else(|p| p.into_inner());
        caches.retain(|key, _| slots.iter().any(|s| s.key == *key));
        for slot in slots {
            if caches.contains_key(&slot.key) {
                continue;
            }
            let api = Api::<CachedObject>::namespaced_with(
                peer.client.clone(),
                &twin.remote,
                &slot.resource,
            );
            let weak = Arc::downgrade(&self.inner);
            let (peer_key, ns_key, kind) = (peer_key.clone(), ns_key.clone(), slot.key.clone());
            let cache = WatchedCache::start(
                api,
                slot.resource.clone(),
                format!("{peer_key} {} {}", twin.remote, slot.kind.kind),
                move |signal| {
                    let Some(inner) = weak.upgrade() else { return };
                    let engine = Engine { inner };
                    match signal {
                        Signal::Object { name, .. } => engine.inner.queue.add(ReflectKey {
                            peer: peer_key.clone(),
                            namespace: ns_key.clone(),
                            kind: kind.clone(),
                            name: Arc::from(name),
                        }),
                        // A remote watch that fails before its first list (the peer does not
                        // let this peering read the kind) sends nothing more until it
                        // recovers: every object of the kind is looked at again now, so that
                        // passes that found the cache merely not ready report the failure.
                        Signal::Synced | Signal::Failing => {
                            engine.enqueue_namespace(&peer_key, &ns_key, Some(&kind))
                        }
                    }
                },
            );
            caches.insert(slot.key.clone(), Arc::new(cache));
        }
    }

    /// Runs the workers until `shutdown` resolves, then stops handing out work and waits for
    /// passes in flight to finish.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        let mut workers = Vec::new();
        for _ in 0..self.inner.config.workers.max(1) {
            let engine = self.clone();
            workers.push(tokio::spawn(async move { engine.worker().await }));
        }
        shutdown.await;
        self.inner.queue.shutdown();
        for w in workers {
            let _ = w.await;
        }
    }

    async fn worker(&self) {
        while let Some(key) = self.inner.queue.next().await {
            reconcile::process(self, &key).await;
            self.inner.queue.done(&key);
        }
    }

    /// Local objects of `namespace` that cannot be reflected to `peer_id` because a foreign
    /// object holds their name there, as `Kind/name`, sorted.
    pub fn conflicts(&self, peer_id: &str, namespace: &str) -> Vec<String> {
        self.inner
            .conflicts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(peer_id.to_string(), namespace.to_string()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A stream of local namespaces whose conflicts changed (one receiver; a new call replaces
    /// the previous one).
    pub fn conflict_changes(&self) -> tokio::sync::mpsc::UnboundedReceiver<String> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        *self
            .inner
            .conflict_listener
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(tx);
        rx
    }

    /// Records whether `kind/name` in `namespace` is blocked by a foreign object in `peer_id`.
    pub(crate) fn set_conflict(
        &self,
        peer_id: &str,
        namespace: &str,
        object: String,
        blocked: bool,
    ) {
        let changed = {
            let mut all = self
                .inner
                .conflicts
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let key = (peer_id.to_string(), namespace.to_string());
            if blocked {
                all.entry(key).or_default().insert(object)
            } else if let Some(set) = all.get_mut(&key) {
                let removed = set.remove(&object);
                if set.is_empty() {
                    all.remove(&key);
                }
                removed
            } else {
                false
            }
        };
        if changed
            && let Some(tx) = self
                .inner
                .conflict_listener
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
        {
            let _ = tx.send(namespace.to_string());
        }
    }

    /// The engine's metrics.
    pub fn metrics(&self) -> &EngineMetrics {
        &self.inner.metrics
    }

    /// Keys waiting or being processed, plus Events waiting to be published; zero when the
    /// engine is idle.
    pub fn pending(&self) -> usize {
        let events = &self.inner.events;
        self.inner.queue.pending() + (events.max_capacity() - events.capacity())
    }

    /// True once every local cache has completed its first list.
    pub fn local_caches_ready(&self) -> bool {
        !self.has_twins()
            || self
                .inner
                .essential
                .iter()
                .all(|key| self.local_cache(key).is_some_and(|cache| cache.is_ready()))
    }

    /// Adds (or replaces) a peer. Namespaces offloaded to a replaced peer must be offloaded
    /// again.
    pub fn add_peer(&self, peer: PeerHandle) {
        let state = Arc::new(PeerState {
            services: CallServices {
                reader: Arc::new(LocalReader {
                    caches: self.inner.local.clone(),
                }),
                translator: peer.translator,
            },
            identity: peer.identity,
            client: peer.client,
            twins: RwLock::default(),
            data_path_up: std::sync::atomic::AtomicBool::new(true),
        });
        let id = state.identity.id.clone();
        self.inner
            .peers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, state);
    }

    /// The namespaces offloaded to `peer_id`, as (local, remote) names.
    pub fn twin_namespaces(&self, peer_id: &str) -> Vec<(String, String)> {
        self.peer(peer_id)
            .map(|peer| {
                peer.twins
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .map(|(local, twin)| (local.clone(), twin.remote.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records whether the data path to `peer_id` carries traffic (the gateway link is up).
    /// A change re-evaluates the peer's reflected EndpointSlices, whose endpoints are marked
    /// not ready while the path is down. Unknown peers are ignored. Returns whether it changed.
    pub fn set_data_path(&self, peer_id: &str, up: bool) -> bool {
        let Some(peer) = self.peer(peer_id) else {
            return false;
        };
        let was = peer
            .data_path_up
            .swap(up, std::sync::atomic::Ordering::SeqCst);
        if was == up {
            return false;
        }
        // The kinds whose endpoints follow the data path (see `kind_rules`).
        let following: Vec<Arc<str>> = self
            .registry()
            .slots
            .keys()
            .filter(|k| KindRules::of(k).readiness_follows_data_path)
            .cloned()
            .collect();
        if following.is_empty() {
            return true;
        }
        let peer_key: Arc<str> = Arc::from(peer_id);
        let namespaces: Vec<String> = peer
            .twins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for ns in namespaces {
            for kind in &following {
                self.enqueue_namespace(&peer_key, &Arc::from(ns.as_str()), Some(kind));
            }
        }
        true
    }

    /// Removes a peer and stops its watches. Remote objects stay: unpeering removes the twin
    /// namespaces.
    pub fn remove_peer(&self, peer_id: &str) {
        self.inner
            .peers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(peer_id);
        self.sync_local_caches();
    }

    pub(crate) fn peer(&self, id: &str) -> Option<Arc<PeerState>> {
        self.inner
            .peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Starts reflecting `local_namespace` into `remote_namespace` of `peer_id` (which must
    /// exist there). Idempotent.
    pub fn offload(&self, peer_id: &str, local_namespace: &str, remote_namespace: &str) -> bool {
        let Some(peer) = self.peer(peer_id) else {
            return false;
        };
        {
            let twins = peer.twins.read().unwrap_or_else(|p| p.into_inner());
            if twins
                .get(local_namespace)
                .is_some_and(|t| t.remote == remote_namespace)
            {
                return true;
            }
        }
        let peer_key: Arc<str> = Arc::from(peer_id);
        let ns_key: Arc<str> = Arc::from(local_namespace);
        let twin = Arc::new(TwinNamespace {
            remote: remote_namespace.to_string(),
            caches: RwLock::default(),
        });
        self.sync_twin_caches(&peer_key, &peer, &ns_key, &twin);
        peer.twins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(local_namespace.to_string(), twin);
        self.sync_local_caches();
        self.enqueue_namespace(&peer_key, &ns_key, None);
        true
    }

    /// Stops reflecting `local_namespace` to `peer_id`. Remote objects are left as they are.
    pub fn unoffload(&self, peer_id: &str, local_namespace: &str) {
        if let Some(peer) = self.peer(peer_id) {
            peer.twins
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(local_namespace);
        }
        self.sync_local_caches();
    }

    /// Enqueues every local object (and every remote copy) of `namespace` for `peer`, for one
    /// kind or all.
    fn enqueue_namespace(&self, peer: &Arc<str>, namespace: &Arc<str>, only: Option<&Arc<str>>) {
        let Some(state) = self.peer(peer) else { return };
        let twin = state
            .twins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(namespace.as_ref())
            .cloned();
        let kinds: Vec<Arc<str>> = match only {
            Some(kind) => vec![kind.clone()],
            None => self.registry().slots.keys().cloned().collect(),
        };
        for kind in kinds {
            let mut names: Vec<String> = Vec::new();
            if let Some(cache) = self.local_cache(&kind) {
                names.extend(
                    cache
                        .store
                        .state()
                        .iter()
                        .filter(|o| o.namespace() == Some(namespace.as_ref()))
                        .map(|o| o.name().to_owned()),
                );
            }
            if let Some(cache) = twin.as_ref().and_then(|t| t.cache(&kind)) {
                names.extend(cache.store.state().iter().map(|o| o.name().to_owned()));
            }
            for name in names {
                self.inner.queue.add(ReflectKey {
                    peer: peer.clone(),
                    namespace: namespace.clone(),
                    kind: kind.clone(),
                    name: Arc::from(name.as_str()),
                });
            }
        }
    }

    fn on_local_signal(&self, key: &str, signal: Signal<'_>) {
        let peers: Vec<(Arc<str>, Vec<String>)> = self
            .inner
            .peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, p)| {
                let twins = p.twins.read().unwrap_or_else(|p| p.into_inner());
                (Arc::from(id.as_str()), twins.keys().cloned().collect())
            })
            .collect();
        match signal {
            // A local cache that is not ready makes passes end as not ready; its first list
            // (`Synced`) enqueues them again.
            Signal::Failing => {}
            Signal::Synced => {
                for (peer, namespaces) in &peers {
                    for ns in namespaces {
                        self.enqueue_namespace(peer, &Arc::from(ns.as_str()), None);
                    }
                }
            }
            Signal::Object {
                namespace,
                name,
                listing,
            } => {
                let (reflected, is_trigger) = {
                    let registry = self.registry();
                    let reflected = registry.slots.get(key).map(|s| s.key.clone());
                    (reflected, registry.triggers.contains(key))
                };
                let ns: Arc<str> = Arc::from(namespace);
                // A (re)list reports every dependent object too: fanning out per listed object
                // would cost O(objects²) at startup.
                let readers = if listing || !is_trigger {
                    Vec::new()
                } else {
                    self.inner.reads.readers_of(key, namespace, name)
                };
                for (peer, namespaces) in &peers {
                    if !namespaces.iter().any(|n| n == namespace) {
                        continue;
                    }
                    if let Some(kind) = &reflected {
                        self.inner.queue.add(ReflectKey {
                            peer: peer.clone(),
                            namespace: ns.clone(),
                            kind: kind.clone(),
                            name: Arc::from(name),
                        });
                    }
                    // Only the objects whose last pass read this one can change (plugins are
                    // pure): see `reads`. Objects never evaluated yet get their own pass.
                    for reader in &readers {
                        if reader.peer == *peer {
                            self.inner.queue.add(reader.clone());
                        }
                    }
                }
            }
        }
    }
}

/// Takes `key` away from its user plugin: back to the built-in plugin if there is one,
/// otherwise retiring (passes delete the remote copies).
fn release_slot(registry: &mut Registry, key: &Arc<str>) {
    let Some(slot) = registry.slots.get(key).cloned() else {
        return;
    };
    let replacement = match registry.builtin.get(key) {
        Some(builtin) => KindSlot {
            key: key.clone(),
            kind: slot.kind.clone(),
            resource: slot.resource.clone(),
            plugin: Some(builtin.clone()),
            failure: FailureMode::default(),
            owner: None,
        },
        None => KindSlot {
            key: key.clone(),
            kind: slot.kind.clone(),
            resource: slot.resource.clone(),
            plugin: None,
            failure: slot.failure,
            owner: slot.owner.clone(),
        },
    };
    registry.slots.insert(key.clone(), Arc::new(replacement));
}
