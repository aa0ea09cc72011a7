//! The gateway: peer links, the export side (serving peers' streams) and the import side
//! (local listeners forwarding to peers: one per import rule, and the service listener).
//!
//! This file holds the types and the gateway's lifecycle (creation, the link listener,
//! shutdown); each concern is a submodule: [`links`] (the peers table and link liveness),
//! [`inbound`] and [`dial`] (the two directions of a link), [`exports`], [`imports`],
//! [`services`] (the service listener) and [`stream`] (one forwarded stream).

mod dial;
mod exports;
mod imports;
mod inbound;
mod links;
mod services;
mod stream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::identity::{Fingerprint, Identity};
use crate::metrics::Metrics;
use crate::target::{ExportTable, ImportRule, ServiceResolver};
use crate::tls::{PinSet, TlsConfigError, server_config};

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
        let task = Task::spawn(inbound::accept_links(inner, listener, acceptor));
        let old = lock(&self.inner.server).replace(task);
        if let Some(old) = old {
            old.stop().await;
        }
        tracing::info!(%local, fingerprint = %self.fingerprint(), "accepting peer links");
        Ok(local)
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
