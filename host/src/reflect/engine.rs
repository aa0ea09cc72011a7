//! The engine: kinds, peers, twin namespaces, caches, the queue and its workers.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kube::Client;
use kube::api::GroupVersionKind;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;

use super::metrics::EngineMetrics;
use super::queue::{Backoff, WorkQueue};
use super::reconcile;
use super::stores::{Signal, WatchedCache};
use crate::plugin::{
    AddressTranslator, CallServices, ClusterIdentity, KindRef, ObjectReader, ReflectorPlugin,
};

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
    pub kind: usize,
    pub name: Arc<str>,
}

/// A reflected kind: its plugin and API resource.
pub(crate) struct KindSlot {
    pub plugin: Arc<ReflectorPlugin>,
    pub kind: KindRef,
    pub resource: ApiResource,
}

/// One offloaded namespace in one peer.
pub(crate) struct TwinNamespace {
    pub remote: String,
    /// Remote caches, by kind index.
    pub caches: Vec<WatchedCache>,
}

/// A peer cluster reflection writes to.
pub(crate) struct PeerState {
    pub identity: ClusterIdentity,
    pub client: Client,
    pub services: CallServices,
    pub twins: RwLock<HashMap<String, Arc<TwinNamespace>>>,
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
    pub kinds: Vec<KindSlot>,
    /// Local caches by `group/version/kind`, for reflected kinds and kinds plugins read.
    pub local: HashMap<String, WatchedCache>,
    /// Kind key → indices of kinds re-evaluated when it changes (manifest `triggers`).
    pub triggers: HashMap<String, Vec<usize>>,
    pub peers: RwLock<HashMap<String, Arc<PeerState>>>,
    pub queue: Arc<WorkQueue<ReflectKey>>,
    pub recorder: Recorder,
    pub metrics: EngineMetrics,
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
    caches: Arc<HashMap<String, Store>>,
}

type Store = (ApiResource, kube::runtime::reflector::Store<DynamicObject>);

impl ObjectReader for LocalReader {
    fn get(&self, kind: &KindRef, namespace: &str, name: &str) -> Result<Option<String>, String> {
        let key = kind_key(&kind.group, &kind.version, &kind.kind);
        let (resource, store) = self
            .caches
            .get(&key)
            .ok_or_else(|| format!("the host does not cache {kind}"))?;
        let reference = ObjectRef::new_with(name, resource.clone()).within(namespace);
        Ok(store
            .get(&reference)
            .map(|o| reconcile::object_json(&o, resource).to_string()))
    }
}

impl Engine {
    /// Builds the engine for `plugins` and starts the local watches. Call [`Engine::run`] to
    /// start the workers.
    pub fn start(
        local_client: Client,
        config: EngineConfig,
        plugins: Vec<Arc<ReflectorPlugin>>,
        metrics: EngineMetrics,
    ) -> Self {
        let mut kinds = Vec::new();
        for plugin in &plugins {
            for kind in &plugin.manifest().reflects {
                kinds.push(KindSlot {
                    plugin: plugin.clone(),
                    kind: kind.clone(),
                    resource: api_resource(kind),
                });
            }
        }
        let mut watched: HashMap<String, KindRef> = HashMap::new();
        let mut triggers: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, slot) in kinds.iter().enumerate() {
            let k = &slot.kind;
            watched.insert(kind_key(&k.group, &k.version, &k.kind), k.clone());
            for read in &slot.plugin.manifest().reads {
                watched.insert(
                    kind_key(&read.group, &read.version, &read.kind),
                    read.clone(),
                );
            }
            for t in &slot.plugin.manifest().triggers {
                watched.insert(kind_key(&t.group, &t.version, &t.kind), t.clone());
                triggers
                    .entry(kind_key(&t.group, &t.version, &t.kind))
                    .or_default()
                    .push(index);
            }
        }

        let reporter = Reporter {
            controller: "liqo-host".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let recorder = Recorder::new(local_client.clone(), reporter);
        let queue = WorkQueue::new(config.backoff);

        // The engine and the callbacks of its watches refer to each other; the callbacks hold
        // a weak reference that is set once the engine exists.
        let slot: Arc<std::sync::OnceLock<std::sync::Weak<Inner>>> = Arc::default();
        let mut local = HashMap::new();
        for (key, kind) in watched {
            let resource = api_resource(&kind);
            let api = Api::<DynamicObject>::all_with(local_client.clone(), &resource);
            let weak = slot.clone();
            let key_for_cb = key.clone();
            let cache = WatchedCache::start(api, resource, format!("local {key}"), move |signal| {
                if let Some(inner) = weak.get().and_then(std::sync::Weak::upgrade) {
                    Engine { inner }.on_local_signal(&key_for_cb, signal);
                }
            });
            local.insert(key, cache);
        }

        let inner = Arc::new(Inner {
            config,
            kinds,
            local,
            triggers,
            peers: RwLock::default(),
            queue,
            recorder,
            metrics,
            conflicts: Default::default(),
            conflict_listener: Default::default(),
        });
        let _ = slot.set(Arc::downgrade(&inner));
        Engine { inner }
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
            self.inner.metrics.set_queue_depth(self.inner.queue.len());
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

    /// Keys waiting or being processed; zero when the engine is idle.
    pub fn pending(&self) -> usize {
        self.inner.queue.pending()
    }

    /// True once every local cache has completed its first list.
    pub fn local_caches_ready(&self) -> bool {
        self.inner.local.values().all(WatchedCache::is_ready)
    }

    /// Adds (or replaces) a peer. Namespaces offloaded to a replaced peer must be offloaded
    /// again.
    pub fn add_peer(&self, peer: PeerHandle) {
        let caches: Arc<HashMap<String, Store>> = Arc::new(
            self.inner
                .local
                .iter()
                .map(|(k, c)| {
                    let resource = c.store_resource();
                    (k.clone(), (resource, c.store.clone()))
                })
                .collect(),
        );
        let state = Arc::new(PeerState {
            services: CallServices {
                reader: Arc::new(LocalReader { caches }),
                translator: peer.translator,
            },
            identity: peer.identity,
            client: peer.client,
            twins: RwLock::default(),
        });
        let id = state.identity.id.clone();
        self.inner
            .peers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, state);
    }

    /// Removes a peer and stops its watches. Remote objects stay: unpeering removes the twin
    /// namespaces.
    pub fn remove_peer(&self, peer_id: &str) {
        self.inner
            .peers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(peer_id);
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
        let mut caches = Vec::new();
        for (index, slot) in self.inner.kinds.iter().enumerate() {
            let api = Api::<DynamicObject>::namespaced_with(
                peer.client.clone(),
                remote_namespace,
                &slot.resource,
            );
            let weak = Arc::downgrade(&self.inner);
            let (peer_key, ns_key) = (peer_key.clone(), ns_key.clone());
            caches.push(WatchedCache::start(
                api,
                slot.resource.clone(),
                format!("{peer_id} {remote_namespace} {}", slot.kind.kind),
                move |signal| {
                    let Some(inner) = weak.upgrade() else { return };
                    let engine = Engine { inner };
                    match signal {
                        Signal::Object { name, .. } => engine.inner.queue.add(ReflectKey {
                            peer: peer_key.clone(),
                            namespace: ns_key.clone(),
                            kind: index,
                            name: Arc::from(name),
                        }),
                        Signal::Synced => engine.enqueue_namespace(&peer_key, &ns_key, Some(index)),
                    }
                },
            ));
        }
        peer.twins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                local_namespace.to_string(),
                Arc::new(TwinNamespace {
                    remote: remote_namespace.to_string(),
                    caches,
                }),
            );
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
    }

    /// Enqueues every local object (and every remote copy) of `namespace` for `peer`, for one
    /// kind or all.
    fn enqueue_namespace(&self, peer: &Arc<str>, namespace: &Arc<str>, only: Option<usize>) {
        let Some(state) = self.peer(peer) else { return };
        let twin = state
            .twins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(namespace.as_ref())
            .cloned();
        for (index, slot) in self.inner.kinds.iter().enumerate() {
            if only.is_some_and(|o| o != index) {
                continue;
            }
            let mut names: Vec<String> = Vec::new();
            if let Some(cache) = self.inner.local.get(&slot_key(slot)) {
                names.extend(
                    cache
                        .store
                        .state()
                        .iter()
                        .filter(|o| o.metadata.namespace.as_deref() == Some(namespace.as_ref()))
                        .filter_map(|o| o.metadata.name.clone()),
                );
            }
            if let Some(twin) = &twin {
                names.extend(
                    twin.caches[index]
                        .store
                        .state()
                        .iter()
                        .filter_map(|o| o.metadata.name.clone()),
                );
            }
            for name in names {
                self.inner.queue.add(ReflectKey {
                    peer: peer.clone(),
                    namespace: namespace.clone(),
                    kind: index,
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
                let ns: Arc<str> = Arc::from(namespace);
                for (peer, namespaces) in &peers {
                    if !namespaces.iter().any(|n| n == namespace) {
                        continue;
                    }
                    for (index, slot) in self.inner.kinds.iter().enumerate() {
                        if slot_key(slot) == key {
                            self.inner.queue.add(ReflectKey {
                                peer: peer.clone(),
                                namespace: ns.clone(),
                                kind: index,
                                name: Arc::from(name),
                            });
                        }
                    }
                    // A (re)list reports every dependent object too: fanning out per listed
                    // object would cost O(objects²) at startup.
                    if listing {
                        continue;
                    }
                    for &dependent in self.inner.triggers.get(key).into_iter().flatten() {
                        self.enqueue_namespace(peer, &ns, Some(dependent));
                    }
                }
            }
        }
    }
}

pub(crate) fn slot_key(slot: &KindSlot) -> String {
    kind_key(&slot.kind.group, &slot.kind.version, &slot.kind.kind)
}
