//! The gateway: peer links, the export side (serving peers' streams) and the import side
//! (local listeners forwarding to peers: one per import rule, and the service listener).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use h2::server::SendResponse;
use h2::{Ping, PingPong, RecvStream};
use http::{Method, Request, Response, StatusCode};
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::identity::{Fingerprint, Identity};
use crate::metrics::{ByteLabels, Metrics, PeerLabels};
use crate::original_dst::original_destination;
use crate::pump::{Counters, abort, splice};
use crate::target::{ExportTable, ImportRule, ServiceResolver, ServiceRoute, Target};
use crate::tls::{PinError, PinSet, TlsConfigError, client_config, server_config};

/// Largest HTTP/2 frame either side accepts: large frames mean fewer frame headers and
/// wakeups per byte on bulk transfers (TLS still splits them into 16 KiB records).
const MAX_FRAME_SIZE: u32 = 256 * 1024;

/// Header carrying a human-readable reason on refused streams (also sent as the body).
pub const REASON_HEADER: &str = "x-liqo-gateway-reason";

/// Timeouts, keepalive and reconnection settings. The defaults suit real clusters; tests
/// shorten them.
#[derive(Debug, Clone)]
pub struct Options {
    /// Budget for TCP connect + TLS handshake + HTTP/2 handshake of the link.
    pub link_handshake_timeout: Duration,
    /// How long an import waits for the peer to accept a stream (CONNECT response).
    pub stream_open_timeout: Duration,
    /// How long the export side waits to connect to the local target.
    pub target_connect_timeout: Duration,
    /// Interval between HTTP/2 PINGs on an up link (RTT measurement and liveness).
    pub ping_interval: Duration,
    /// A PING unanswered for this long declares the link down (and resets its streams).
    pub ping_timeout: Duration,
    /// First delay before redialing a peer after a failure.
    pub backoff_initial: Duration,
    /// Upper bound of the (doubling) redial delay.
    pub backoff_max: Duration,
    /// HTTP/2 per-stream receive window: bounds the memory one stream can use and, with the
    /// link RTT, its throughput.
    pub stream_window: u32,
    /// HTTP/2 connection receive window (shared by all streams of the link).
    pub connection_window: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            link_handshake_timeout: Duration::from_secs(10),
            stream_open_timeout: Duration::from_secs(10),
            target_connect_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(15),
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            stream_window: 2 * 1024 * 1024,
            connection_window: 16 * 1024 * 1024,
        }
    }
}

/// A peer gateway: who it is (pinned fingerprint) and, on the side that dials, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer cluster's name (used in logs, errors and metric labels).
    pub name: String,
    /// SHA-256 fingerprint of the peer gateway's certificate: the only certificate accepted.
    pub fingerprint: Fingerprint,
    /// `HOST:PORT` of the peer's link listener. Set on the side that imports from the peer
    /// (HTTP/2 streams are opened by the dialing side); `None` to only accept the peer's link.
    pub address: Option<String>,
}

/// State of the link to a peer: for a peer with an address, the link this gateway dials (the
/// one its imports use); for a peer without, the link the peer dials to us.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkState {
    /// No usable link; streams to the peer are refused.
    Down {
        /// Why: the last dial or handshake error, or how the link ended.
        reason: String,
    },
    /// The link is up: the peer answered an HTTP/2 PING on it.
    Up {
        /// Round-trip time of the last PING.
        rtt: Duration,
    },
}

impl LinkState {
    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        matches!(self, LinkState::Up { .. })
    }
}

/// Gateway errors (configuration and binding; link failures are reported as [`LinkState`]).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The TLS configuration could not be built from the identity.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// An import names a peer that is not configured.
    #[error("import on {listen} names unknown peer {peer:?}")]
    UnknownPeer {
        /// The import's listen address.
        listen: SocketAddr,
        /// The peer name.
        peer: String,
    },
    /// An import names a peer without an address: streams are opened by the dialing side.
    #[error(
        "import on {listen} names peer {peer:?}, which has no address: importing from a peer requires dialing it"
    )]
    PeerWithoutAddress {
        /// The import's listen address.
        listen: SocketAddr,
        /// The peer name.
        peer: String,
    },
    /// Two imports use the same listen address.
    #[error("two imports listen on {0}")]
    DuplicateListen(SocketAddr),
    /// Two peers have the same name or the same fingerprint.
    #[error("duplicate peer name or fingerprint: {0}")]
    DuplicatePeer(String),
}

/// Aborts its task when dropped.
struct Task(Option<JoinHandle<()>>);

impl Task {
    fn spawn(future: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        Task(Some(tokio::spawn(future)))
    }

    fn is_finished(&self) -> bool {
        self.0.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Aborts the task and waits until its future (and so every socket it owned) is dropped.
    async fn stop(mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
            let _ = handle.await;
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// Where the current link's request sender is published for imports (`None` while down).
type SenderSlot = watch::Sender<Option<SendRequest<Bytes>>>;

struct Peer {
    config: PeerConfig,
    state: Arc<watch::Sender<LinkState>>,
    sender: Arc<SenderSlot>,
    dial: Option<Task>,
    /// The current inbound link: its generation and the sender whose drop ends it.
    inbound: Option<(u64, oneshot::Sender<()>)>,
}

struct ImportListener {
    rule: watch::Sender<ImportRule>,
    local_addr: SocketAddr,
    task: Task,
}

/// The service listener: one socket for every reflected Service, routed by original destination.
struct ServiceListener {
    /// The address it was asked to bind (may have port 0).
    requested: SocketAddr,
    local_addr: SocketAddr,
    resolver: watch::Sender<Arc<dyn ServiceResolver>>,
    task: Task,
}

struct Inner {
    identity: Identity,
    options: Options,
    metrics: Metrics,
    pins: PinSet,
    peers: Mutex<HashMap<String, Peer>>,
    exports: RwLock<Arc<ExportTable>>,
    /// Exports for one peer only, by peer name (looked up with the name the link was
    /// authenticated as, after the shared table).
    peer_exports: RwLock<Arc<HashMap<String, ExportTable>>>,
    imports: tokio::sync::Mutex<HashMap<SocketAddr, ImportListener>>,
    services: tokio::sync::Mutex<Option<ServiceListener>>,
    server: Mutex<Option<Task>>,
    /// Inbound link connections, so shutdown can close them.
    connections: Mutex<Vec<Task>>,
    inbound_generation: std::sync::atomic::AtomicU64,
    last_inbound_error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A cross-cluster gateway. See the crate documentation for the protocol.
///
/// Dropping it stops every task it started (listeners, links); [`Gateway::shutdown`] does the
/// same and also waits until their sockets are closed.
pub struct Gateway {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("identity", &self.inner.identity)
            .finish_non_exhaustive()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Dropping the tasks aborts them; their futures hold `Arc<Inner>`, so this also breaks
        // the reference cycle.
        lock(&self.inner.server).take();
        lock(&self.inner.connections).clear();
        lock(&self.inner.peers).clear();
        // Nothing can hold these locks here: their holders borrow `self`.
        if let Ok(mut imports) = self.inner.imports.try_lock() {
            imports.clear();
        }
        if let Ok(mut services) = self.inner.services.try_lock() {
            services.take();
        }
    }
}

impl Gateway {
    /// A gateway with `identity`, registering its metrics in `registry`. It has no peers,
    /// exports or imports yet, and does not listen for peers until [`Gateway::listen`].
    pub fn new(
        identity: Identity,
        options: Options,
        registry: &mut Registry,
    ) -> Result<Self, GatewayError> {
        // Fail early on an unusable identity rather than at the first link.
        server_config(&identity, PinSet::default())?;
        Ok(Gateway {
            inner: Arc::new(Inner {
                identity,
                options,
                metrics: Metrics::new(registry),
                pins: PinSet::default(),
                peers: Mutex::new(HashMap::new()),
                exports: RwLock::new(Arc::new(ExportTable::new())),
                peer_exports: RwLock::new(Arc::new(HashMap::new())),
                imports: tokio::sync::Mutex::new(HashMap::new()),
                services: tokio::sync::Mutex::new(None),
                server: Mutex::new(None),
                connections: Mutex::new(Vec::new()),
                inbound_generation: std::sync::atomic::AtomicU64::new(0),
                last_inbound_error: Mutex::new(None),
            }),
        })
    }

    /// This gateway's certificate fingerprint (what peers must pin).
    pub fn fingerprint(&self) -> Fingerprint {
        self.inner.identity.fingerprint()
    }

    /// Starts accepting peer links on `addr`; returns the bound address. Calling it again
    /// replaces the previous listener (established links stay up).
    pub async fn listen(&self, addr: SocketAddr) -> Result<SocketAddr, GatewayError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let acceptor = TlsAcceptor::from(Arc::new(server_config(
            &self.inner.identity,
            self.inner.pins.clone(),
        )?));
        let inner = self.inner.clone();
        let task = Task::spawn(accept_links(inner, listener, acceptor));
        let old = lock(&self.inner.server).replace(task);
        if let Some(old) = old {
            old.stop().await;
        }
        tracing::info!(%local, fingerprint = %self.fingerprint(), "accepting peer links");
        Ok(local)
    }

    /// Replaces the set of peers. New peers with an address are dialed; removed peers' links
    /// are closed; a peer whose fingerprint or address changed is reconnected.
    pub fn set_peers(&self, peers: Vec<PeerConfig>) -> Result<(), GatewayError> {
        let mut names = HashSet::new();
        let mut pins = HashMap::new();
        for p in &peers {
            if !names.insert(p.name.clone()) {
                return Err(GatewayError::DuplicatePeer(p.name.clone()));
            }
            if pins.insert(p.fingerprint, p.name.clone()).is_some() {
                return Err(GatewayError::DuplicatePeer(p.fingerprint.to_string()));
            }
        }
        let mut current = lock(&self.inner.peers);
        current.retain(|name, peer| {
            let keep = names.contains(name);
            if !keep {
                tracing::info!(peer = %name, "peer removed: closing its link");
                peer.state.send_replace(LinkState::Down {
                    reason: "peer removed from the configuration".into(),
                });
                self.inner
                    .metrics
                    .link_up
                    .remove(&PeerLabels { peer: name.clone() });
            }
            keep
        });
        self.inner.pins.replace(pins);
        for config in peers {
            let dial = |state: &Arc<watch::Sender<LinkState>>, sender: &Arc<SenderSlot>| {
                config.address.clone().map(|address| {
                    Task::spawn(dial_loop(
                        self.inner.clone(),
                        config.clone(),
                        address,
                        state.clone(),
                        sender.clone(),
                    ))
                })
            };
            match current.get_mut(&config.name) {
                Some(peer) if peer.config == config => {}
                Some(peer) => {
                    // Changed pin or address: drop our link and start over, and drop an
                    // inbound link if it was authenticated with the old pin. The state channel
                    // is kept, so watchers of `link_state` keep following this peer.
                    tracing::info!(peer = %config.name, "peer changed: reconnecting");
                    peer.dial = None;
                    if peer.config.fingerprint != config.fingerprint {
                        peer.inbound = None;
                    }
                    peer.sender.send_replace(None);
                    peer.state.send_replace(LinkState::Down {
                        reason: "peer configuration changed: reconnecting".into(),
                    });
                    peer.dial = dial(&peer.state, &peer.sender);
                    peer.config = config;
                }
                None => {
                    let state = Arc::new(watch::Sender::new(LinkState::Down {
                        reason: match config.address {
                            Some(_) => "not connected yet".into(),
                            None => "waiting for the peer to connect".into(),
                        },
                    }));
                    let sender = Arc::new(watch::Sender::new(None));
                    self.inner
                        .metrics
                        .link_up
                        .get_or_create(&PeerLabels {
                            peer: config.name.clone(),
                        })
                        .set(0);
                    let dial = dial(&state, &sender);
                    current.insert(
                        config.name.clone(),
                        Peer {
                            config,
                            state,
                            sender,
                            dial,
                            inbound: None,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Atomically replaces the per-peer export tables: a target in `exports[peer]` can be
    /// reached by `peer` only (a host exports to each provider the Services offloaded to it,
    /// under that provider's names). Streams already open are not affected.
    pub fn set_peer_exports(&self, exports: HashMap<String, ExportTable>) {
        *self
            .inner
            .peer_exports
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(exports);
    }

    /// Atomically replaces the export table shared by every peer. Streams already open are not
    /// affected.
    pub fn set_exports(&self, exports: ExportTable) {
        *self
            .inner
            .exports
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(exports);
    }

    /// Replaces the import table: listeners for new rules are bound, listeners for removed
    /// rules closed (connections they accepted keep running), listeners whose rule changed keep
    /// their socket and use the new rule for the next connection. Returns the bound address of
    /// each rule, in order. On error nothing changes.
    pub async fn set_imports(
        &self,
        rules: Vec<ImportRule>,
    ) -> Result<Vec<SocketAddr>, GatewayError> {
        {
            let peers = lock(&self.inner.peers);
            let mut seen = HashSet::new();
            for rule in &rules {
                if !seen.insert(rule.listen) {
                    return Err(GatewayError::DuplicateListen(rule.listen));
                }
                match peers.get(&rule.peer) {
                    None => {
                        return Err(GatewayError::UnknownPeer {
                            listen: rule.listen,
                            peer: rule.peer.clone(),
                        });
                    }
                    Some(p) if p.config.address.is_none() => {
                        return Err(GatewayError::PeerWithoutAddress {
                            listen: rule.listen,
                            peer: rule.peer.clone(),
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        let mut imports = self.inner.imports.lock().await;
        // Bind every new listener first so a bind failure leaves the table unchanged.
        let mut bound = HashMap::new();
        for rule in &rules {
            if imports.contains_key(&rule.listen) {
                continue;
            }
            let listener =
                TcpListener::bind(rule.listen)
                    .await
                    .map_err(|source| GatewayError::Bind {
                        addr: rule.listen,
                        source,
                    })?;
            bound.insert(rule.listen, listener);
        }
        let wanted: HashSet<SocketAddr> = rules.iter().map(|r| r.listen).collect();
        let removed: Vec<SocketAddr> = imports
            .keys()
            .filter(|a| !wanted.contains(a))
            .copied()
            .collect();
        for addr in removed {
            if let Some(old) = imports.remove(&addr) {
                tracing::info!(listen = %old.local_addr, "import removed: closing its listener");
                old.task.stop().await;
            }
        }
        let mut addrs = Vec::with_capacity(rules.len());
        for rule in rules {
            if let Some(existing) = imports.get(&rule.listen) {
                existing.rule.send_if_modified(|r| {
                    let changed = *r != rule;
                    *r = rule.clone();
                    changed
                });
                addrs.push(existing.local_addr);
                continue;
            }
            let listener = bound.remove(&rule.listen).expect("bound above");
            let local_addr = listener.local_addr().map_err(|source| GatewayError::Bind {
                addr: rule.listen,
                source,
            })?;
            tracing::info!(listen = %local_addr, peer = %rule.peer, target = %rule.target, "import added");
            let (tx, rx) = watch::channel(rule.clone());
            let task = Task::spawn(accept_imports(self.inner.clone(), listener, rx));
            imports.insert(
                rule.listen,
                ImportListener {
                    rule: tx,
                    local_addr,
                    task,
                },
            );
            addrs.push(local_addr);
        }
        Ok(addrs)
    }

    /// Starts (or replaces) the service listener on `addr`; returns the bound address.
    ///
    /// Every connection it accepts is routed by its original destination (the Service
    /// ClusterIP:port or NodeIP:nodePort the client dialed before kube-proxy's DNAT, see
    /// [`crate::original_destination`]): `resolver` names the peer and target, and the
    /// connection is forwarded exactly like one accepted by an import rule (metrics with role
    /// `import`). A destination the resolver does not know, or a route to a peer that is not
    /// configured, has no address or whose link is down, resets the connection at once.
    ///
    /// Called again with the same `addr` (as requested, or as bound) it keeps the socket and
    /// only replaces the resolver, for the next connections. With another address it binds the
    /// new one first, then closes the old listener; on error the old listener stays. Either way
    /// connections already accepted continue. Dropping the gateway or [`Gateway::shutdown`]
    /// closes the listener.
    pub async fn listen_services(
        &self,
        addr: SocketAddr,
        resolver: Arc<dyn ServiceResolver>,
    ) -> Result<SocketAddr, GatewayError> {
        let mut current = self.inner.services.lock().await;
        if let Some(existing) = current.as_ref()
            && (existing.requested == addr || existing.local_addr == addr)
        {
            existing.resolver.send_replace(resolver);
            tracing::info!(listen = %existing.local_addr, "service listener: resolver replaced");
            return Ok(existing.local_addr);
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let (tx, rx) = watch::channel(resolver);
        let task = Task::spawn(accept_services(self.inner.clone(), listener, rx));
        let old = current.replace(ServiceListener {
            requested: addr,
            local_addr,
            resolver: tx,
            task,
        });
        if let Some(old) = old {
            tracing::info!(listen = %old.local_addr, "service listener moved: closing the old one");
            old.task.stop().await;
        }
        tracing::info!(listen = %local_addr, "service listener: accepting connections to reflected Services");
        Ok(local_addr)
    }

    /// Watches the link to `peer`; `None` if the peer is not configured.
    pub fn link_state(&self, peer: &str) -> Option<watch::Receiver<LinkState>> {
        lock(&self.inner.peers)
            .get(peer)
            .map(|p| p.state.subscribe())
    }

    /// The current state of every peer's link.
    pub fn link_states(&self) -> HashMap<String, LinkState> {
        lock(&self.inner.peers)
            .iter()
            .map(|(name, p)| (name.clone(), p.state.borrow().clone()))
            .collect()
    }

    /// The last error of an inbound link attempt that could not be attributed to a peer (for
    /// example a certificate pinned for no peer), for diagnostics.
    pub fn last_inbound_error(&self) -> Option<String> {
        lock(&self.inner.last_inbound_error).clone()
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Stops everything and waits until every listener and link socket is closed. Streams in
    /// flight are reset.
    pub async fn shutdown(self) {
        let server = lock(&self.inner.server).take();
        if let Some(server) = server {
            server.stop().await;
        }
        let dials: Vec<Task> = lock(&self.inner.peers)
            .drain()
            .filter_map(|(_, p)| p.dial)
            .collect();
        for task in dials {
            task.stop().await;
        }
        let connections: Vec<Task> = lock(&self.inner.connections).drain(..).collect();
        for task in connections {
            task.stop().await;
        }
        let imports: Vec<ImportListener> = self
            .inner
            .imports
            .lock()
            .await
            .drain()
            .map(|(_, l)| l)
            .collect();
        for import in imports {
            import.task.stop().await;
        }
        let services = self.inner.services.lock().await.take();
        if let Some(services) = services {
            services.task.stop().await;
        }
    }
}

/// Export side: accepts TLS links from peers.
async fn accept_links(inner: Arc<Inner>, listener: TcpListener, acceptor: TlsAcceptor) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accepting a peer link failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let task = Task::spawn(serve_link(inner.clone(), tcp, remote, acceptor.clone()));
        let mut connections = lock(&inner.connections);
        connections.retain(|t| !t.is_finished());
        connections.push(task);
    }
}

fn record_inbound_error(inner: &Inner, remote: SocketAddr, error: String) {
    tracing::warn!(%remote, %error, "refused a peer link");
    *lock(&inner.last_inbound_error) = Some(format!("link from {remote}: {error}"));
}

/// Serves one inbound link: authenticates the peer, then serves its streams until the link ends.
async fn serve_link(inner: Arc<Inner>, tcp: TcpStream, remote: SocketAddr, acceptor: TlsAcceptor) {
    let opts = &inner.options;
    let tls = match timeout(opts.link_handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            return record_inbound_error(
                &inner,
                remote,
                format!("TLS handshake: {}", describe_tls_error(&e)),
            );
        }
        Err(_) => return record_inbound_error(&inner, remote, "TLS handshake timed out".into()),
    };
    // The verifier accepted the certificate, so it is pinned for a peer: find which.
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| inner.pins.peer_of(&Fingerprint::of_der(cert)));
    let Some(peer) = peer else {
        // The peer was removed between the handshake and now.
        return record_inbound_error(&inner, remote, "certificate no longer pinned".into());
    };
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(opts.stream_window)
        .initial_connection_window_size(opts.connection_window)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_concurrent_streams(10_000);
    let mut conn = match timeout(opts.link_handshake_timeout, builder.handshake(tls)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            return record_inbound_error(&inner, remote, format!("HTTP/2 handshake: {e}"));
        }
        Err(_) => return record_inbound_error(&inner, remote, "HTTP/2 handshake timed out".into()),
    };
    let generation = inner
        .inbound_generation
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (kill_tx, mut kill_rx) = oneshot::channel::<()>();
    let (state, reports) = {
        let mut peers = lock(&inner.peers);
        let Some(p) = peers.get_mut(&peer) else {
            return;
        };
        // Newest link wins: after a restart the old connection may linger until its PINGs time
        // out, and the peer only uses the new one.
        p.inbound = Some((generation, kill_tx));
        // A peer we dial has its state (and link metrics) from that outbound link, the one our
        // imports use; an inbound link reports only for peers we do not dial.
        (p.state.clone(), p.config.address.is_none())
    };
    if reports {
        inner
            .metrics
            .link_connects
            .get_or_create(&PeerLabels { peer: peer.clone() })
            .inc();
    }
    tracing::info!(%peer, %remote, "peer link accepted");
    let ping_pong = conn.ping_pong().expect("ping_pong is taken once");
    let mut pinger = pin!(ping_loop(
        inner.clone(),
        peer.clone(),
        ping_pong,
        reports.then(|| state.clone()),
        None
    ));
    let reason = loop {
        tokio::select! {
            accepted = conn.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    let inner = inner.clone();
                    let peer = peer.clone();
                    tokio::spawn(async move { serve_export(&inner, &peer, request, respond).await });
                }
                Some(Err(e)) => break explain_link_error(&format!("link error: {e}")),
                None => break "the peer closed the link".to_string(),
            },
            reason = &mut pinger => break reason,
            _ = &mut kill_rx => break "replaced by a newer link, or the peer was removed".to_string(),
        }
    };
    tracing::info!(%peer, %remote, %reason, "peer link ended");
    let mut peers = lock(&inner.peers);
    if let Some(p) = peers.get_mut(&peer)
        && p.inbound.as_ref().is_some_and(|(g, _)| *g == generation)
    {
        p.inbound = None;
        if !reports {
            return;
        }
        p.state.send_replace(LinkState::Down { reason });
        inner
            .metrics
            .link_up
            .get_or_create(&PeerLabels { peer })
            .set(0);
    }
}

fn refusal(status: StatusCode, reason: &str) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(reason) {
        response.headers_mut().insert(REASON_HEADER, value);
    }
    response
}

fn refuse_stream(mut respond: SendResponse<Bytes>, status: StatusCode, reason: String) {
    if let Ok(mut body) = respond.send_response(refusal(status, &reason), false) {
        let _ = body.send_data(Bytes::from(reason), true);
    }
}

/// Export side: one stream from `peer`, to a target that must be in the export table.
async fn serve_export(
    inner: &Inner,
    peer: &str,
    request: Request<RecvStream>,
    respond: SendResponse<Bytes>,
) {
    let metrics = &inner.metrics;
    if request.method() != Method::CONNECT {
        metrics.refused(peer, "export", "bad_request");
        return refuse_stream(
            respond,
            StatusCode::METHOD_NOT_ALLOWED,
            "only CONNECT is supported".into(),
        );
    }
    let authority = request.uri().authority().map(|a| a.as_str()).unwrap_or("");
    let target: Target = match authority.parse() {
        Ok(target) => target,
        Err(e) => {
            metrics.refused(peer, "export", "bad_target");
            return refuse_stream(respond, StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let shared = inner
        .exports
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&target)
        .copied();
    let addr = shared.or_else(|| {
        inner
            .peer_exports
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(peer)
            .and_then(|table| table.get(&target))
            .copied()
    });
    let Some(addr) = addr else {
        metrics.refused(peer, "export", "not_exported");
        tracing::info!(%peer, %target, "refused a stream: target not exported");
        return refuse_stream(
            respond,
            StatusCode::NOT_FOUND,
            format!("{target} is not exported to this peer"),
        );
    };
    let tcp = match timeout(
        inner.options.target_connect_timeout,
        TcpStream::connect(addr),
    )
    .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            metrics.refused(peer, "export", "target_unreachable");
            return refuse_stream(
                respond,
                StatusCode::BAD_GATEWAY,
                format!("cannot connect to {target} at {addr}: {e}"),
            );
        }
        Err(_) => {
            metrics.refused(peer, "export", "target_unreachable");
            return refuse_stream(
                respond,
                StatusCode::GATEWAY_TIMEOUT,
                format!("connecting to {target} at {addr} timed out"),
            );
        }
    };
    let _ = tcp.set_nodelay(true);
    let mut respond = respond;
    let send = match respond.send_response(Response::new(()), false) {
        Ok(send) => send,
        Err(e) => {
            tracing::debug!(%peer, %target, error = %e, "stream gone before it was accepted");
            return abort(tcp);
        }
    };
    run_stream(
        inner,
        peer,
        &target,
        "export",
        tcp,
        send,
        request.into_body(),
    )
    .await;
}

/// Runs one stream with its metrics.
async fn run_stream(
    inner: &Inner,
    peer: &str,
    target: &Target,
    role: &'static str,
    tcp: TcpStream,
    send: h2::SendStream<Bytes>,
    recv: RecvStream,
) {
    let metrics = &inner.metrics;
    let labels = Metrics::stream_labels(peer, target, role);
    let bytes = |direction| {
        metrics
            .bytes
            .get_or_create(&ByteLabels {
                peer: labels.peer.clone(),
                service: labels.service.clone(),
                role,
                direction,
            })
            .clone()
    };
    let counters = Counters {
        sent: bytes("sent"),
        received: bytes("received"),
    };
    metrics.streams_total.get_or_create(&labels).inc();
    let open = metrics.streams_open.get_or_create(&labels).clone();
    open.inc();
    // Decrement even if the task is aborted mid-stream.
    struct OpenGuard(prometheus_client::metrics::gauge::Gauge);
    impl Drop for OpenGuard {
        fn drop(&mut self) {
            self.0.dec();
        }
    }
    let _guard = OpenGuard(open);
    if let Err(e) = splice(tcp, send, recv, counters).await {
        metrics.streams_reset.get_or_create(&labels).inc();
        tracing::debug!(%peer, %target, role, error = %e, "stream reset");
    }
}

/// Import side: accepts local connections for one rule and forwards each as a stream.
async fn accept_imports(
    inner: Arc<Inner>,
    listener: TcpListener,
    rule: watch::Receiver<ImportRule>,
) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "accepting an import connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let rule = rule.borrow().clone();
        let sender = lock(&inner.peers)
            .get(&rule.peer)
            .and_then(|p| p.sender.borrow().clone());
        let Some(sender) = sender else {
            // Refuse at once rather than leave the client hanging: it can retry or fail over.
            inner.metrics.refused(&rule.peer, "import", "link_down");
            tracing::debug!(peer = %rule.peer, target = %rule.target, "link down: resetting a new connection");
            abort(tcp);
            continue;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            forward_import(&inner, &rule.peer, &rule.target, None, sender, tcp).await;
        });
    }
}

/// Service listener: accepts local connections for every reflected Service, routes each by its
/// original destination and forwards it as an import rule would.
async fn accept_services(
    inner: Arc<Inner>,
    listener: TcpListener,
    resolver: watch::Receiver<Arc<dyn ServiceResolver>>,
) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a service connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        // The peer is unknown in both refusals below, so their series has an empty `peer`
        // (a destination as label value would be unbounded).
        let destination = match original_destination(&tcp) {
            Ok(destination) => destination,
            Err(e) => {
                inner.metrics.refused("", "import", "unknown_destination");
                tracing::debug!(error = %e, "cannot read a connection's original destination: resetting it");
                abort(tcp);
                continue;
            }
        };
        // Clone the resolver out of the channel: `resolve` must not run under its lock.
        let resolver = resolver.borrow().clone();
        let Some(ServiceRoute { peer, target }) = route_of(resolver.as_ref(), destination) else {
            inner.metrics.refused("", "import", "unknown_destination");
            tracing::debug!(%destination, "no Service at the original destination: resetting the connection");
            abort(tcp);
            continue;
        };
        let sender = {
            let peers = lock(&inner.peers);
            match peers.get(&peer) {
                None => Err("unknown_peer"),
                Some(p) if p.config.address.is_none() => Err("peer_without_address"),
                Some(p) => p.sender.borrow().clone().ok_or("link_down"),
            }
        };
        let sender = match sender {
            Ok(sender) => sender,
            Err(reason) => {
                // Refuse at once rather than leave the client hanging: it can retry or fail over.
                inner.metrics.refused(&peer, "import", reason);
                tracing::debug!(%destination, %peer, %target, reason, "cannot forward a service connection: resetting it");
                abort(tcp);
                continue;
            }
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            forward_import(&inner, &peer, &target, Some(destination), sender, tcp).await;
        });
    }
}

/// Asks `resolver`; a panicking resolver refuses the connection instead of killing the listener
/// (which would cut every reflected Service at once).
fn route_of(resolver: &dyn ServiceResolver, destination: SocketAddr) -> Option<ServiceRoute> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        resolver.resolve(destination)
    }))
    .unwrap_or_else(|_| {
        tracing::error!(%destination, "the service resolver panicked: resetting the connection");
        None
    })
}

#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error("{0}")]
    H2(#[from] h2::Error),
    #[error("the peer refused the stream ({status}): {reason}")]
    Refused { status: StatusCode, reason: String },
    #[error("the peer did not accept the stream in time")]
    Timeout,
}

async fn open_stream(
    sender: SendRequest<Bytes>,
    target: &Target,
) -> Result<(h2::SendStream<Bytes>, RecvStream), OpenError> {
    let mut sender = sender.ready().await?;
    let request = Request::builder()
        .method(Method::CONNECT)
        .uri(target.authority())
        .body(())
        .expect("a valid authority always builds a request");
    let (response, send) = sender.send_request(request, false)?;
    let response = response.await?;
    let status = response.status();
    if status == StatusCode::OK {
        return Ok((send, response.into_body()));
    }
    let reason = response
        .headers()
        .get(REASON_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no reason given")
        .to_string();
    Err(OpenError::Refused { status, reason })
}

/// Forwards one local connection to `target` at `peer`. `destination` is the original
/// destination of a service listener's connection (`None` for an import rule's).
async fn forward_import(
    inner: &Inner,
    peer: &str,
    target: &Target,
    destination: Option<SocketAddr>,
    sender: SendRequest<Bytes>,
    tcp: TcpStream,
) {
    let opened = timeout(
        inner.options.stream_open_timeout,
        open_stream(sender, target),
    )
    .await
    .unwrap_or(Err(OpenError::Timeout));
    match opened {
        Ok((send, recv)) => {
            run_stream(inner, peer, target, "import", tcp, send, recv).await;
        }
        Err(e) => {
            let reason = match &e {
                OpenError::Refused { status, .. } if *status == StatusCode::NOT_FOUND => {
                    "not_exported"
                }
                OpenError::Refused { .. } => "refused_by_peer",
                OpenError::Timeout => "timeout",
                OpenError::H2(_) => "link_error",
            };
            inner.metrics.refused(peer, "import", reason);
            match destination {
                // The service listener carries every reflected Service: per-connection logs
                // there stay at debug (the refused metric counts them).
                Some(destination) => {
                    tracing::debug!(%destination, %peer, %target, error = %e, "cannot open a stream: resetting the connection");
                }
                None => {
                    tracing::info!(%peer, %target, error = %e, "cannot open a stream: resetting the connection");
                }
            }
            abort(tcp);
        }
    }
}

/// Pings every `ping_interval`; returns the reason the link must be considered down. Each answer
/// updates `state` and the link metrics, when given (the link reports for the peer). The first
/// answer publishes `sender` for imports: a link counts as up only once the peer has answered
/// on it (with TLS 1.3 the client finishes its handshake before the server has checked the
/// client certificate, so a finished handshake alone proves nothing).
async fn ping_loop(
    inner: Arc<Inner>,
    peer: String,
    mut ping_pong: PingPong,
    state: Option<Arc<watch::Sender<LinkState>>>,
    mut publish: Option<(SendRequest<Bytes>, Arc<SenderSlot>)>,
) -> String {
    let labels = PeerLabels { peer };
    loop {
        let start = Instant::now();
        match timeout(inner.options.ping_timeout, ping_pong.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => {
                let rtt = start.elapsed();
                if let Some((sender, slot)) = publish.take() {
                    slot.send_replace(Some(sender));
                    tracing::info!(peer = %labels.peer, ?rtt, "link up");
                }
                if let Some(state) = &state {
                    state.send_replace(LinkState::Up { rtt });
                    inner
                        .metrics
                        .link_rtt
                        .get_or_create(&labels)
                        .set(rtt.as_secs_f64());
                    inner.metrics.link_up.get_or_create(&labels).set(1);
                }
            }
            Ok(Err(e)) => return format!("link error: {e}"),
            Err(_) => {
                return format!("no answer to PING within {:?}", inner.options.ping_timeout);
            }
        }
        tokio::time::sleep(inner.options.ping_interval).await;
    }
}

/// Import side: keeps a link to `peer` up, redialing with exponential backoff.
async fn dial_loop(
    inner: Arc<Inner>,
    peer: PeerConfig,
    address: String,
    state: Arc<watch::Sender<LinkState>>,
    sender: Arc<SenderSlot>,
) {
    let config = match client_config(&inner.identity, &peer.name, peer.fingerprint) {
        Ok(config) => Arc::new(config),
        Err(e) => {
            state.send_replace(LinkState::Down {
                reason: e.to_string(),
            });
            return;
        }
    };
    let connector = TlsConnector::from(config);
    let labels = PeerLabels {
        peer: peer.name.clone(),
    };
    let mut delay = inner.options.backoff_initial;
    loop {
        let reason = match timeout(
            inner.options.link_handshake_timeout,
            dial(&inner, &peer.name, &address, &connector),
        )
        .await
        {
            Ok(Ok((send_request, mut conn))) => {
                let ping_pong = conn.ping_pong().expect("ping_pong is taken once");
                let pinger = ping_loop(
                    inner.clone(),
                    peer.name.clone(),
                    ping_pong,
                    Some(state.clone()),
                    Some((send_request, sender.clone())),
                );
                inner.metrics.link_connects.get_or_create(&labels).inc();
                let was_up = state.subscribe();
                let reason = tokio::select! {
                    ended = conn => match ended {
                        Ok(()) => "the peer closed the link".to_string(),
                        Err(e) => explain_link_error(&e.to_string()),
                    },
                    reason = pinger => reason,
                };
                // A link that was up restarts the backoff; one that never got up (the peer
                // refused our certificate after the handshake) keeps backing off.
                if was_up.borrow().is_up() {
                    delay = inner.options.backoff_initial;
                }
                reason
            }
            Ok(Err(e)) => e,
            Err(_) => format!(
                "dialing {address} timed out after {:?}",
                inner.options.link_handshake_timeout
            ),
        };
        // Forget the link before announcing Down: no new stream may start on it.
        sender.send_replace(None);
        inner.metrics.link_up.get_or_create(&labels).set(0);
        tracing::warn!(peer = %peer.name, %address, %reason, retry_in = ?delay, "link down");
        state.send_replace(LinkState::Down { reason });
        tokio::time::sleep(jitter(delay)).await;
        delay = (delay * 2).min(inner.options.backoff_max);
    }
}

/// Adds up to 20% random jitter so gateways that lost their links together do not redial in
/// lockstep.
fn jitter(delay: Duration) -> Duration {
    let random = RandomState::new().hash_one(Instant::now());
    let fraction = (random % 1000) as f64 / 5000.0;
    delay.mul_f64(1.0 + fraction)
}

/// The message of a TLS I/O error, showing our own [`PinError`] as itself rather than through
/// rustls' `Debug` of the wrapped error.
fn describe_tls_error(e: &std::io::Error) -> String {
    let pin_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|tls| match tls {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
                other.0.downcast_ref::<PinError>()
            }
            _ => None,
        });
    match pin_error {
        Some(pin) => pin.to_string(),
        None => e.to_string(),
    }
}

/// Adds a hint to the opaque error a refused client certificate produces.
fn explain_link_error(error: &str) -> String {
    if error.contains("close_notify") {
        // rustls' message for a plain TCP close ends in a documentation URL; say what happened.
        "the peer closed the link (TCP connection ended without TLS close_notify)".to_string()
    } else if error.contains("BadCertificate") || error.contains("CertificateUnknown") {
        format!(
            "{error}: the peer refused this gateway's certificate (is our fingerprint pinned there?)"
        )
    } else {
        error.to_string()
    }
}

type ClientConnection = h2::client::Connection<tokio_rustls::client::TlsStream<TcpStream>, Bytes>;

async fn dial(
    inner: &Inner,
    peer: &str,
    address: &str,
    connector: &TlsConnector,
) -> Result<(SendRequest<Bytes>, ClientConnection), String> {
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| format!("cannot connect to peer {peer:?} at {address}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    // The name is not checked (the certificate is pinned); it only has to be syntactically valid.
    let name = rustls::pki_types::ServerName::try_from(peer.to_string()).unwrap_or_else(|_| {
        rustls::pki_types::ServerName::try_from("liqo-gateway").expect("valid")
    });
    let tls = connector.connect(name, tcp).await.map_err(|e| {
        explain_link_error(&format!(
            "TLS handshake with peer {peer:?} at {address}: {}",
            describe_tls_error(&e)
        ))
    })?;
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(inner.options.stream_window)
        .initial_connection_window_size(inner.options.connection_window)
        .max_frame_size(MAX_FRAME_SIZE);
    builder
        .handshake(tls)
        .await
        .map_err(|e| explain_link_error(&format!("HTTP/2 handshake with peer {peer:?}: {e}")))
}
