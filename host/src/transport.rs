//! Transport: the host drives an in-process [`liqo_gateway::Gateway`] so that a provider's
//! clients reach the consumer's Services (docs/transport.md).
//!
//! - **As a consumer (exporting side)** the gateway accepts the link of every provider whose
//!   ForeignCluster is in `Gateway` mode (pinning the fingerprint of its peer command), and
//!   exports the Services of the namespaces offloaded to it, under the names they have there
//!   (`SERVICE.REMOTE-NAMESPACE:PORT` → local ClusterIP:port). The address and fingerprint of
//!   this gateway reach the provider as annotations of the peering Lease
//!   ([`wire::LEASE_ADDRESS_ANNOTATION`], [`wire::LEASE_FINGERPRINT_ANNOTATION`]), written
//!   through the peering credential, so the provider trusts them as much as the credential
//!   (see [`crate::protocol::networking`]).
//! - **As a provider (importing side)** it dials every consumer whose fresh Lease carries those
//!   annotations, and serves the *service listener*: the consumer's reflected EndpointSlices
//!   point at it (the endpoint the peer command announced), kube-proxy sends it the
//!   connections made to a reflected Service's ClusterIP, and the original destination of each
//!   connection names the Service ([`ReflectedServices`]).
//!
//! Link state drives the `NETWORKING` column on both sides and endpoint readiness: the
//! consumer marks its reflected endpoints not ready while the link is down
//! ([`crate::reflect::Engine::set_data_path`]); the provider does the same for a consumer that
//! cannot do it any more (its host is down), see [`crate::tenant`].

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use liqo_gateway::{
    ExportTable, Fingerprint, Gateway, Identity, LinkState, Options, PeerConfig, ServiceResolver,
    ServiceRoute, Target,
};
use prometheus_client::registry::Registry;
use serde_json::json;

use crate::api::gateway::{
    GATEWAY_CONFIGMAP, GATEWAY_CONFIGMAP_ENDPOINT_KEY, GATEWAY_CONFIGMAP_FINGERPRINT_KEY,
    GATEWAY_IDENTITY_CERT_KEY, GATEWAY_IDENTITY_KEY_KEY, GATEWAY_IDENTITY_SECRET,
};
use crate::api::identity::CLUSTER_IDENTITY_NAMESPACE as GATEWAY_NAMESPACE;
use crate::api::wire;
use crate::api::wire::PUBLISHED_LINK_ADDRESS_KEY;
use crate::plugin::ClusterIdentity;
use crate::protocol::networking::ImportPeer;
use crate::reflect::Engine;

/// How long a link may be down before endpoints are marked not ready: a restart of either
/// host, or a redial, must not flap every reflected endpoint.
pub const LINK_DOWN_GRACE: Duration = Duration::from_secs(5);
/// How often link states and the export table are brought up to date.
const SYNC_INTERVAL: Duration = Duration::from_millis(500);

/// Where the gateway listens and what it announces.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Listener for peer links (TLS).
    pub link_listen: SocketAddr,
    /// `HOST:PORT` peers dial to reach [`TransportConfig::link_listen`].
    pub link_advertise: String,
    /// Listener for connections kube-proxy sends to reflected Services.
    pub service_listen: SocketAddr,
    /// `IP:PORT` inside this cluster where that listener is reached (what peers' reflected
    /// EndpointSlices point at).
    pub service_endpoint: SocketAddr,
}

/// Errors starting the transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The identity Secret is missing or unusable.
    #[error("gateway identity Secret {GATEWAY_NAMESPACE}/{GATEWAY_IDENTITY_SECRET}: {0}")]
    Identity(String),
    /// The gateway could not start.
    #[error("gateway: {0}")]
    Gateway(#[from] liqo_gateway::GatewayError),
    /// An API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The error.
        source: kube::Error,
    },
}

/// Reads the gateway identity from its Secret.
pub async fn load_identity(client: &Client) -> Result<Identity, TransportError> {
    let secret = Api::<Secret>::namespaced(client.clone(), GATEWAY_NAMESPACE)
        .get_opt(GATEWAY_IDENTITY_SECRET)
        .await
        .map_err(|e| TransportError::Identity(e.to_string()))?
        .ok_or_else(|| {
            TransportError::Identity(
                "not found: run `liqoctl install` (it creates the identity) or start without \
                 --gateway-listen"
                    .into(),
            )
        })?;
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| {
        data.get(key)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .ok_or_else(|| TransportError::Identity(format!("has no key {key}")))
    };
    Identity::from_pem(
        &text(GATEWAY_IDENTITY_CERT_KEY)?,
        &text(GATEWAY_IDENTITY_KEY_KEY)?,
    )
    .map_err(|e| TransportError::Identity(e.to_string()))
}

/// A provider this cluster exports to: it dials us.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ExportPeer {
    fingerprint: Fingerprint,
    foreign_cluster: String,
}

struct Inner {
    gateway: Gateway,
    config: TransportConfig,
    export_peers: Mutex<BTreeMap<String, ExportPeer>>,
    import_peers: Mutex<BTreeMap<String, ImportPeer>>,
    /// Per peer: since when its link has been down (`None` while up).
    down_since: Mutex<HashMap<String, Instant>>,
    started: Instant,
}

/// The host's gateway. Cheap to clone.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Transport {
    /// Builds the gateway (registering its metrics in `registry`); nothing listens yet.
    pub fn new(
        identity: Identity,
        config: TransportConfig,
        registry: &mut Registry,
    ) -> Result<Self, TransportError> {
        let gateway = Gateway::new(identity, Options::default(), registry)?;
        Ok(Transport {
            inner: Arc::new(Inner {
                gateway,
                config,
                export_peers: Mutex::default(),
                import_peers: Mutex::default(),
                down_since: Mutex::default(),
                started: Instant::now(),
            }),
        })
    }

    /// This gateway's certificate fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.inner.gateway.fingerprint()
    }

    /// The address reflected EndpointSlices point at: this gateway's service listener.
    pub fn service_endpoint(&self) -> SocketAddr {
        self.inner.config.service_endpoint
    }

    /// `HOST:PORT` peers dial.
    pub fn link_advertise(&self) -> &str {
        &self.inner.config.link_advertise
    }

    /// Starts the listeners, publishes [`GATEWAY_CONFIGMAP`] and runs the background work
    /// (reflected-Service index, exports, link states) until `shutdown` resolves.
    pub async fn run(
        self,
        client: Client,
        local: ClusterIdentity,
        engine: Engine,
        link_changes: tokio::sync::mpsc::UnboundedSender<String>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), TransportError> {
        let (store, writer) = reflector::store::<Service>();
        let services = ReflectedServices {
            store,
            transport: Arc::downgrade(&self.inner),
        };
        let link = self
            .inner
            .gateway
            .listen(self.inner.config.link_listen)
            .await?;
        let service = self
            .inner
            .gateway
            .listen_services(self.inner.config.service_listen, Arc::new(services))
            .await?;
        tracing::info!(%link, %service, endpoint = %self.inner.config.service_endpoint,
            advertise = %self.inner.config.link_advertise, "gateway listening");
        self.publish(&client).await?;

        let selector = format!("{}={}", wire::DESTINATION, local.id);
        let watch = watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default().labels(&selector),
        )
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .for_each(|_| futures::future::ready(()));
        // Its own task: the index lives as long as the transport, whatever the loop below does.
        let watch = AbortOnDrop(tokio::spawn(watch));
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(SYNC_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_exports: HashMap<String, ExportTable> = HashMap::new();
        let mut export_inputs = ExportInputs::default();
        let mut last_paths: HashMap<String, bool> = HashMap::new();
        let mut last_states: HashMap<String, bool> = HashMap::new();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
            }
            if let Some(exports) = self.compute_exports(&engine, &mut export_inputs)
                && exports != last_exports
            {
                let targets: usize = exports.values().map(HashMap::len).sum();
                tracing::info!(peers = exports.len(), targets, "gateway exports updated");
                self.inner.gateway.set_peer_exports(exports.clone());
                last_exports = exports;
            }
            for (peer, state) in self.inner.gateway.link_states() {
                let up = state.is_up();
                {
                    let mut down = lock(&self.inner.down_since);
                    if up {
                        down.remove(&peer);
                    } else {
                        down.entry(peer.clone()).or_insert_with(Instant::now);
                    }
                }
                if last_states.insert(peer.clone(), up) != Some(up) {
                    match &state {
                        LinkState::Up { rtt } => {
                            tracing::info!(%peer, rtt_ms = rtt.as_secs_f64() * 1000.0, "gateway link up")
                        }
                        LinkState::Down { reason } => {
                            tracing::warn!(%peer, %reason, "gateway link down")
                        }
                    }
                    let _ = link_changes.send(peer.clone());
                }
                let path = self.data_path_up(&peer);
                if lock(&self.inner.export_peers).contains_key(&peer) {
                    // Every tick (it is idempotent): a peer re-registered with the engine (a
                    // new token) starts over as up, and must not stay so while the link is down.
                    engine.set_data_path(&peer, path);
                }
                // The end of the grace changes NETWORKING (Pending -> Error) too.
                if last_paths.insert(peer.clone(), path) != Some(path) {
                    let _ = link_changes.send(peer.clone());
                }
            }
        }
        drop(watch);
        Ok(())
    }

    async fn publish(&self, client: &Client) -> Result<(), TransportError> {
        Api::<ConfigMap>::namespaced(client.clone(), GATEWAY_NAMESPACE)
            .patch(
                GATEWAY_CONFIGMAP,
                &PatchParams::apply(wire::REFLECTION_FIELD_MANAGER).force(),
                &Patch::Apply(json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": GATEWAY_CONFIGMAP, "namespace": GATEWAY_NAMESPACE,
                        "labels": {"app.kubernetes.io/part-of": "liqo"}},
                    "data": {
                        GATEWAY_CONFIGMAP_FINGERPRINT_KEY: self.fingerprint().to_string(),
                        GATEWAY_CONFIGMAP_ENDPOINT_KEY: self.inner.config.service_endpoint.to_string(),
                        PUBLISHED_LINK_ADDRESS_KEY: self.inner.config.link_advertise,
                    },
                })),
            )
            .await
            .map_err(|source| TransportError::Kube {
                action: format!(
                    "publishing ConfigMap {GATEWAY_NAMESPACE}/{GATEWAY_CONFIGMAP}"
                ),
                source,
            })?;
        Ok(())
    }

    /// Accepts the link of provider `peer` (ForeignCluster `foreign_cluster`), pinned to
    /// `fingerprint`; `None` forgets the peer.
    pub fn set_export_peer(&self, peer: &str, entry: Option<(Fingerprint, String)>) {
        let changed = {
            let mut peers = lock(&self.inner.export_peers);
            let new = entry.map(|(fingerprint, foreign_cluster)| ExportPeer {
                fingerprint,
                foreign_cluster,
            });
            let old = match &new {
                Some(n) => peers.insert(peer.to_string(), n.clone()),
                None => peers.remove(peer),
            };
            old != new
        };
        if changed {
            self.apply_peers();
        }
    }

    /// Replaces the consumers this cluster dials (from their fresh peering Leases).
    pub fn set_import_peers(&self, peers: BTreeMap<String, ImportPeer>) {
        let changed = {
            let mut current = lock(&self.inner.import_peers);
            let changed = *current != peers;
            *current = peers;
            changed
        };
        if changed {
            self.apply_peers();
        }
    }

    fn apply_peers(&self) {
        let exports = lock(&self.inner.export_peers).clone();
        let imports = lock(&self.inner.import_peers).clone();
        let mut configs: BTreeMap<String, PeerConfig> = BTreeMap::new();
        for (name, p) in exports {
            configs.insert(
                name.clone(),
                PeerConfig {
                    name,
                    fingerprint: p.fingerprint,
                    address: None,
                },
            );
        }
        // A peer that is both provider and consumer of this cluster: the link we dial is the
        // one our imports use; it also accepts the link the peer dials (same pin).
        for (name, p) in imports {
            configs.insert(
                name.clone(),
                PeerConfig {
                    name,
                    fingerprint: p.fingerprint,
                    address: Some(p.address),
                },
            );
        }
        // A fingerprint is public: a consumer announcing another peer's must not take over
        // (or freeze) the others. Its entry is dropped; providers' pins win, then names' order.
        let mut owners: HashMap<Fingerprint, String> = HashMap::new();
        let mut peers = Vec::with_capacity(configs.len());
        let exported: Vec<String> = lock(&self.inner.export_peers).keys().cloned().collect();
        let (first, rest): (Vec<_>, Vec<_>) = configs
            .into_values()
            .partition(|c| exported.contains(&c.name));
        for config in first.into_iter().chain(rest) {
            if let Some(owner) = owners.get(&config.fingerprint) {
                tracing::warn!(peer = %config.name, %owner,
                    "gateway fingerprint already pinned for another peer: this peer's gateway is ignored");
                continue;
            }
            owners.insert(config.fingerprint, config.name.clone());
            peers.push(config);
        }
        let names: Vec<String> = peers.iter().map(|p| p.name.clone()).collect();
        lock(&self.inner.down_since).retain(|peer, _| names.contains(peer));
        if let Err(err) = self.inner.gateway.set_peers(peers) {
            tracing::warn!(%err, "gateway peers not updated");
        }
    }

    /// The state of the link to `peer`, if it is a peer of the gateway.
    pub fn link_state(&self, peer: &str) -> Option<LinkState> {
        self.inner
            .gateway
            .link_state(peer)
            .map(|rx| rx.borrow().clone())
    }

    /// The ForeignCluster of provider `peer`, if it is in gateway mode.
    pub fn foreign_cluster_of(&self, peer: &str) -> Option<String> {
        lock(&self.inner.export_peers)
            .get(peer)
            .map(|p| p.foreign_cluster.clone())
    }

    /// Whether traffic to `peer` should be sent: the link is up, or has been down for less
    /// than [`LINK_DOWN_GRACE`] (since it went down, or since this host started).
    pub fn data_path_up(&self, peer: &str) -> bool {
        let mut down = lock(&self.inner.down_since);
        if self.link_state(peer).is_some_and(|s| s.is_up()) {
            down.remove(peer);
            return true;
        }
        // A peer first seen now (just configured) gets the whole grace to connect.
        let since = *down.entry(peer.to_string()).or_insert_with(Instant::now);
        since.max(self.inner.started).elapsed() < LINK_DOWN_GRACE
    }

    /// Exports, per gateway-mode provider: every Service with a ClusterIP in a namespace
    /// offloaded to it, under its name there. A provider reaches only what was offloaded to it.
    /// None when nothing they derive from changed since `inputs` was recorded: the tables are
    /// rebuilt only after a change of the Service cache or of the offloaded namespaces, not on
    /// every tick.
    fn compute_exports(
        &self,
        engine: &Engine,
        inputs: &mut ExportInputs,
    ) -> Option<HashMap<String, ExportTable>> {
        let peers: Vec<String> = lock(&self.inner.export_peers).keys().cloned().collect();
        let cache = engine.local_cache(crate::reflect::SERVICE_KIND_KEY);
        let mut offloaded: Vec<(String, String, String)> = Vec::new();
        for peer in &peers {
            for (local, remote) in engine.twin_namespaces(peer) {
                offloaded.push((local, peer.clone(), remote));
            }
        }
        offloaded.sort();
        if cache.as_ref().is_some_and(|c| !c.is_ready()) {
            // A cache still listing looks empty: keep the current exports until it is whole.
            return None;
        }
        let now = ExportInputs {
            cache: cache.as_ref().map(|c| (c.id(), c.changes())),
            offloaded,
        };
        if *inputs == now && inputs.cache.is_some() {
            return None;
        }
        let mut tables: HashMap<String, ExportTable> = HashMap::new();
        let Some(cache) = cache else {
            *inputs = now;
            return Some(tables);
        };
        // Local namespace -> (provider, remote namespace) for each provider it is offloaded to.
        let mut twins: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
        for (local, peer, remote) in &now.offloaded {
            twins.entry(local).or_default().push((peer, remote));
        }
        for service in cache.store.state() {
            let Some(remotes) = service.namespace().and_then(|ns| twins.get(ns)) else {
                continue;
            };
            // Only the ClusterIP and ports are read: serde skips the rest of the text without
            // building it.
            let Ok(exported) = serde_json::from_str::<ExportedService>(service.text()) else {
                continue;
            };
            let Some(ip) = exported
                .spec
                .cluster_ip
                .as_deref()
                .and_then(|s| IpAddr::from_str(s).ok())
            else {
                continue;
            };
            for port in &exported.spec.ports {
                if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                    continue;
                }
                let Some(number) = port
                    .port
                    .as_ref()
                    .and_then(serde_json::Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                else {
                    continue;
                };
                for (peer, remote) in remotes {
                    if let Ok(target) = Target::new(remote.to_string(), service.name(), number) {
                        tables
                            .entry(peer.to_string())
                            .or_default()
                            .insert(target, SocketAddr::new(ip, number));
                    }
                }
            }
        }
        *inputs = now;
        Some(tables)
    }
}

/// The fields of a cached Service the export tables read.
#[derive(Debug, Default, serde::Deserialize)]
struct ExportedService {
    #[serde(default)]
    spec: ExportedSpec,
}

#[derive(Debug, Default, serde::Deserialize)]
struct ExportedSpec {
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(default)]
    ports: Vec<ExportedPort>,
}

#[derive(Debug, serde::Deserialize)]
struct ExportedPort {
    port: Option<serde_json::Value>,
    protocol: Option<String>,
}

/// What the export tables are derived from: the local Service cache (its process-unique id,
/// and its change counter) and the offloaded namespaces of gateway-mode providers (local namespace,
/// provider, remote namespace; sorted).
#[derive(Debug, Default, PartialEq)]
struct ExportInputs {
    cache: Option<(u64, u64)>,
    offloaded: Vec<(String, String, String)>,
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The index the service listener resolves connections with: Services reflected into this
/// cluster (labelled with this cluster as destination), by ClusterIP and port.
struct ReflectedServices {
    store: Store<Service>,
    transport: std::sync::Weak<Inner>,
}

impl ServiceResolver for ReflectedServices {
    fn resolve(&self, destination: SocketAddr) -> Option<ServiceRoute> {
        let inner = self.transport.upgrade()?;
        let ip = destination.ip().to_string();
        let service = self.store.find(|s| {
            s.spec.as_ref().is_some_and(|spec| {
                spec.cluster_ip.as_deref() == Some(ip.as_str())
                    || spec.cluster_ips.iter().flatten().any(|c| *c == ip)
            })
        })?;
        let port = service.spec.as_ref()?.ports.iter().flatten().find(|p| {
            p.port == i32::from(destination.port())
                && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
        })?;
        let origin = service.labels().get(wire::ORIGIN)?.clone();
        if !lock(&inner.import_peers).contains_key(&origin) {
            return None;
        }
        let target = Target::new(
            service.namespace()?,
            service.name_any(),
            u16::try_from(port.port).ok()?,
        )
        .ok()?;
        Some(ServiceRoute {
            peer: origin,
            target,
        })
    }
}

impl crate::peers::DataPath for Transport {
    fn fingerprint(&self) -> Fingerprint {
        Transport::fingerprint(self)
    }
    fn link_advertise(&self) -> &str {
        Transport::link_advertise(self)
    }
    fn set_export_peer(&self, peer: &str, entry: Option<(Fingerprint, String)>) {
        Transport::set_export_peer(self, peer, entry);
    }
    fn set_import_peers(&self, peers: BTreeMap<String, ImportPeer>) {
        Transport::set_import_peers(self, peers);
    }
    fn link_state(&self, peer: &str) -> Option<LinkState> {
        Transport::link_state(self, peer)
    }
    fn foreign_cluster_of(&self, peer: &str) -> Option<String> {
        Transport::foreign_cluster_of(self, peer)
    }
    fn data_path_up(&self, peer: &str) -> bool {
        Transport::data_path_up(self, peer)
    }
}
