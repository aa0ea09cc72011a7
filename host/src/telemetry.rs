//! Operations endpoints of the host (`/metrics`, `/healthz`, `/readyz`) and log setup.
//!
//! [`Telemetry`] holds what the endpoints report: the Prometheus registry every module
//! registered its metrics in, a readiness flag, and named readiness checks. It is cheap to
//! clone (everything is shared), so the caller keeps a clone to flip readiness while another
//! is consumed by [`Telemetry::serve`] or [`Telemetry::bind`].
//!
//! Endpoints (plain HTTP/1.1, no TLS: they are meant for the kubelet and an in-cluster
//! Prometheus, as in every Kubernetes controller):
//! - `GET /healthz`: `200 ok` as long as the process serves requests (liveness).
//! - `GET /readyz`: `200 ok` when the readiness flag is set and every check passes, else `503`
//!   listing each failing check as `[-]NAME failed`, one per line. `?verbose` lists passing
//!   checks too (`[+]NAME ok`), like kube-apiserver's `/readyz?verbose`.
//! - `GET /metrics`: the registry in the OpenMetrics text format.
//!
//! [`init_tracing`] installs the process-wide `tracing` subscriber.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Content type of `/metrics`: what `prometheus_client::encoding::text::encode` produces.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Name under which the flag set by [`Telemetry::set_ready`] appears in `/readyz`.
pub const READY_FLAG_CHECK: &str = "ready";

/// How long [`BoundTelemetry::serve`] waits, after the shutdown signal, for requests still in
/// flight, unless changed with [`Telemetry::with_shutdown_timeout`].
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A named readiness check: returns `true` when the part it watches is ready.
///
/// It runs on every `/readyz` request, on the async runtime, so it must be cheap and must not
/// block: read an atomic or a `watch` channel, don't call the API server.
pub type ReadinessCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// What the operations endpoints report. Clones share the same registry, flag and checks.
#[derive(Clone)]
pub struct Telemetry {
    // A mutex rather than a plain `Arc<Registry>` so metrics can still be registered after the
    // server started (`register_metrics`); encoding only holds it for the time of one scrape.
    registry: Arc<Mutex<Registry>>,
    ready: Arc<AtomicBool>,
    // Registration order is kept so `/readyz` lists checks in a stable, meaningful order.
    checks: Arc<RwLock<Vec<(String, ReadinessCheck)>>>,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("ready", &self.ready.load(Ordering::Relaxed))
            .field("checks", &self.check_names())
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Serves `registry` on `/metrics`. The readiness flag starts unset, so `/readyz` answers
    /// 503 until the host calls [`Telemetry::set_ready`]`(true)` (once its caches have synced):
    /// a replica is never reported ready before it can do its work.
    pub fn new(registry: Registry) -> Self {
        Telemetry {
            registry: Arc::new(Mutex::new(registry)),
            ready: Arc::new(AtomicBool::new(false)),
            checks: Arc::new(RwLock::new(Vec::new())),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }

    /// Bounds how long a graceful shutdown waits for requests in flight (default
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`]); a stuck client must not hold the process up.
    #[must_use]
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Sets the readiness flag, reported by `/readyz` as the check [`READY_FLAG_CHECK`].
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// The readiness flag last set with [`Telemetry::set_ready`].
    pub fn is_ready_flag_set(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Adds a named readiness check; `/readyz` fails while it returns `false`. A check with the
    /// same name is replaced, so registering again (e.g. after a restart of a component) is
    /// harmless.
    pub fn add_check(&self, name: impl Into<String>, check: ReadinessCheck) {
        let name = name.into();
        let mut checks = self.checks.write().unwrap_or_else(PoisonError::into_inner);
        match checks.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = check,
            None => checks.push((name, check)),
        }
    }

    /// Removes the named readiness check, if any.
    pub fn remove_check(&self, name: &str) {
        let mut checks = self.checks.write().unwrap_or_else(PoisonError::into_inner);
        checks.retain(|(n, _)| n != name);
    }

    /// Names of the registered checks, in registration order.
    pub fn check_names(&self) -> Vec<String> {
        let checks = self.checks.read().unwrap_or_else(PoisonError::into_inner);
        checks.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Registers more metrics in the served registry (e.g. from a component started after
    /// the server).
    pub fn register_metrics(&self, register: impl FnOnce(&mut Registry)) {
        let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        register(&mut registry);
    }

    /// Evaluates readiness now: `(ready, report)` with the body `/readyz` would return.
    pub fn readiness(&self, verbose: bool) -> (bool, String) {
        let mut results = vec![(READY_FLAG_CHECK.to_string(), self.is_ready_flag_set())];
        // Clone the checks out so no lock is held while user code runs.
        let checks: Vec<(String, ReadinessCheck)> = self
            .checks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        results.extend(checks.into_iter().map(|(name, check)| (name, check())));
        readiness_report(&results, verbose)
    }

    /// Binds the listening socket without serving yet. Bind port 0 to get an ephemeral port and
    /// read it with [`BoundTelemetry::local_addr`].
    pub async fn bind(self, addr: SocketAddr) -> io::Result<BoundTelemetry> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {addr} for /metrics, /healthz and /readyz: {e}"),
            )
        })?;
        Ok(BoundTelemetry {
            listener,
            telemetry: self,
        })
    }

    /// Binds `addr` and serves until `shutdown` completes, then stops gracefully (see
    /// [`BoundTelemetry::serve`]).
    pub async fn serve(
        self,
        addr: SocketAddr,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        self.bind(addr).await?.serve(shutdown).await
    }

    fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self.clone())
    }
}

/// A [`Telemetry`] whose socket is bound and not yet served.
#[derive(Debug)]
pub struct BoundTelemetry {
    listener: TcpListener,
    telemetry: Telemetry,
}

impl BoundTelemetry {
    /// The address actually bound (the real port when port 0 was asked for).
    ///
    /// # Panics
    /// Never in practice: a bound TCP listener always has a local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// Serves until `shutdown` completes. Then the listener is closed at once, idle
    /// connections are closed, and requests in flight get up to the shutdown timeout to
    /// finish; after that the function returns anyway (connections still open are left to end
    /// with the runtime).
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let addr = self.local_addr();
        let timeout = self.telemetry.shutdown_timeout;
        let router = self.telemetry.router();

        // Forward the signal so we also know when to start the drain deadline.
        let (signalled_tx, signalled_rx) = oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = signalled_tx.send(());
        };
        let server = axum::serve(self.listener, router).with_graceful_shutdown(signal);
        let drain_deadline = async move {
            match signalled_rx.await {
                Ok(()) => tokio::time::sleep(timeout).await,
                // The server ended on its own (the sender is dropped with it): the other
                // branch of the select below has already completed.
                Err(_) => std::future::pending().await,
            }
        };

        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
        tokio::select! {
            result = server.into_future() => result,
            () = drain_deadline => {
                tracing::warn!(
                    %addr,
                    ?timeout,
                    "telemetry server: requests still in flight after the shutdown timeout; not waiting"
                );
                Ok(())
            }
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(telemetry): State<Telemetry>, RawQuery(query): RawQuery) -> Response {
    let verbose = query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "verbose" || kv.starts_with("verbose="))
    });
    let (ready, body) = telemetry.readiness(verbose);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

async fn metrics(State(telemetry): State<Telemetry>) -> Response {
    let mut body = String::new();
    let encoded = {
        let registry = telemetry
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        prometheus_client::encoding::text::encode(&mut body, &registry)
    };
    match encoded {
        Ok(()) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            // Only a metric's own Encode implementation can fail; the scrape fails visibly.
            tracing::error!(error = %e, "encoding metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
                .into_response()
        }
    }
}

/// The `/readyz` body for check results `(name, passed)`, kube-apiserver style.
fn readiness_report(results: &[(String, bool)], verbose: bool) -> (bool, String) {
    let ready = results.iter().all(|(_, ok)| *ok);
    if ready && !verbose {
        return (true, "ok".to_string());
    }
    let mut body = String::new();
    for (name, ok) in results {
        if *ok && verbose {
            body.push_str(&format!("[+]{name} ok\n"));
        } else if !*ok {
            body.push_str(&format!("[-]{name} failed\n"));
        }
    }
    body.push_str(if ready {
        "readyz check passed\n"
    } else {
        "readyz check failed\n"
    });
    (ready, body)
}

/// Installs the process-wide `tracing` subscriber, writing to stderr.
///
/// The filter comes from `RUST_LOG` (e.g. `info,liqo_host=debug`), `info` when unset. An
/// invalid `RUST_LOG` falls back to `info` with a warning rather than failing the process.
/// With `json` each event is one JSON object per line, for log collectors; otherwise lines
/// are human-readable. Does nothing if a subscriber is already installed, so calling it twice
/// (e.g. from tests) is harmless.
pub fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;

    let (filter, bad_filter) = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(spec) if !spec.trim().is_empty() => match EnvFilter::try_new(&spec) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new("info"), Some((spec, e.to_string()))),
        },
        _ => (EnvFilter::new("info"), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    let installed = if json {
        builder.json().try_init().is_ok()
    } else {
        builder.try_init().is_ok()
    };
    if installed && let Some((spec, error)) = bad_filter {
        tracing::warn!(rust_log = %spec, %error, "invalid RUST_LOG; logging at info");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A response as seen on the wire.
    struct Reply {
        status: u16,
        headers: String,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.lines().find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
        }
    }

    /// A plain HTTP/1.1 GET over a fresh connection: no client dependency, and it shows
    /// exactly what a kubelet probe or a scraper gets.
    async fn http_get(addr: SocketAddr, path: &str) -> Reply {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw))
            .await
            .expect("response within 10s")
            .expect("read");
        let (head, body) = raw.split_once("\r\n\r\n").expect("header/body separator");
        let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        Reply {
            status,
            headers: headers.to_string(),
            body: body.to_string(),
        }
    }

    struct Running {
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<io::Result<()>>,
    }

    async fn start(telemetry: Telemetry) -> Running {
        let bound = telemetry
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .expect("bind");
        let addr = bound.local_addr();
        assert_ne!(addr.port(), 0, "port 0 must resolve to a real port");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(bound.serve(async move {
            let _ = stopped.await;
        }));
        Running { addr, stop, task }
    }

    #[tokio::test]
    async fn telemetry_metrics_exposes_registered_counter() {
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        registry.register(
            "liqo_test_events",
            "Events seen by the test",
            counter.clone(),
        );
        counter.inc_by(3);
        let running = start(Telemetry::new(registry)).await;

        let reply = http_get(running.addr, "/metrics").await;
        assert_eq!(reply.status, 200, "body: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some(METRICS_CONTENT_TYPE));
        assert!(
            reply.body.contains("# TYPE liqo_test_events counter"),
            "{}",
            reply.body
        );
        assert!(
            reply.body.contains("liqo_test_events_total 3\n"),
            "{}",
            reply.body
        );
        assert!(reply.body.ends_with("# EOF\n"), "{}", reply.body);

        // Values are read at scrape time, not at registration.
        counter.inc();
        let reply = http_get(running.addr, "/metrics").await;
        assert!(
            reply.body.contains("liqo_test_events_total 4\n"),
            "{}",
            reply.body
        );
        running.stop.send(()).unwrap();
        running.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn telemetry_metrics_registered_after_start_are_served() {
        let telemetry = Telemetry::new(Registry::default());
        let running = start(telemetry.clone()).await;
        let late = Counter::<u64>::default();
        telemetry
            .register_metrics(|r| r.register("liqo_test_late", "Registered late", late.clone()));
        late.inc();
        let reply = http_get(running.addr, "/metrics").await;
        assert!(
            reply.body.contains("liqo_test_late_total 1\n"),
            "{}",
            reply.body
        );
        running.stop.send(()).unwrap();
        running.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn telemetry_healthz_ok_while_serving_and_unknown_path_404() {
        let running = start(Telemetry::new(Registry::default())).await;
        let reply = http_get(running.addr, "/healthz").await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
        // Liveness does not depend on readiness: the flag is still unset here.
        assert_eq!(http_get(running.addr, "/readyz").await.status, 503);
        assert_eq!(http_get(running.addr, "/nope").await.status, 404);
        running.stop.send(()).unwrap();
        running.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn telemetry_readyz_follows_flag_and_checks() {
        let telemetry = Telemetry::new(Registry::default());
        let synced = Arc::new(AtomicBool::new(false));
        let flag = synced.clone();
        telemetry.add_check(
            "informer-sync",
            Arc::new(move || flag.load(Ordering::Relaxed)),
        );
        telemetry.add_check("plugins", Arc::new(|| true));
        let running = start(telemetry.clone()).await;

        // Flag unset and one check failing: both are named, one per line; passing ones are not.
        let reply = http_get(running.addr, "/readyz").await;
        assert_eq!(reply.status, 503);
        assert_eq!(
            reply.body,
            "[-]ready failed\n[-]informer-sync failed\nreadyz check failed\n"
        );

        telemetry.set_ready(true);
        let reply = http_get(running.addr, "/readyz").await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body, "[-]informer-sync failed\nreadyz check failed\n");
        let reply = http_get(running.addr, "/readyz?verbose").await;
        assert_eq!(
            reply.body,
            "[+]ready ok\n[-]informer-sync failed\n[+]plugins ok\nreadyz check failed\n"
        );

        // The check flips: ready.
        synced.store(true, Ordering::Relaxed);
        let reply = http_get(running.addr, "/readyz").await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
        let reply = http_get(running.addr, "/readyz?verbose=1").await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.body,
            "[+]ready ok\n[+]informer-sync ok\n[+]plugins ok\nreadyz check passed\n"
        );

        // Replacing and removing checks.
        telemetry.add_check("plugins", Arc::new(|| false));
        assert_eq!(telemetry.check_names(), ["informer-sync", "plugins"]);
        assert_eq!(http_get(running.addr, "/readyz").await.status, 503);
        telemetry.remove_check("plugins");
        assert_eq!(http_get(running.addr, "/readyz").await.status, 200);

        running.stop.send(()).unwrap();
        running.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn telemetry_shutdown_stops_the_server() {
        let running = start(Telemetry::new(Registry::default())).await;
        assert_eq!(http_get(running.addr, "/healthz").await.status, 200);

        running.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), running.task)
            .await
            .expect("serve returns after the shutdown signal")
            .unwrap()
            .unwrap();
        assert!(
            TcpStream::connect(running.addr).await.is_err(),
            "the listener must be closed after shutdown"
        );
    }

    #[tokio::test]
    async fn telemetry_shutdown_does_not_wait_forever_for_a_stuck_client() {
        let telemetry =
            Telemetry::new(Registry::default()).with_shutdown_timeout(Duration::from_millis(300));
        let running = start(telemetry).await;
        // A client that sends half a request and then stalls: hyper counts it as a request in
        // flight and would wait for it forever (checked: with a 3 s timeout this test takes 3 s).
        let mut stuck = TcpStream::connect(running.addr).await.unwrap();
        stuck
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;

        let started = Instant::now();
        running.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), running.task)
            .await
            .expect("serve returns despite the stuck client")
            .unwrap()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(stuck);
    }

    #[tokio::test]
    async fn telemetry_bind_error_names_the_address() {
        let first = Telemetry::new(Registry::default())
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let taken = first.local_addr();
        let err = Telemetry::new(Registry::default())
            .bind(taken)
            .await
            .expect_err("the port is taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(&taken.to_string()), "{err}");
    }

    #[test]
    fn telemetry_readiness_report_format() {
        let all_ok = [("a".to_string(), true), ("b".to_string(), true)];
        assert_eq!(readiness_report(&all_ok, false), (true, "ok".to_string()));
        let none: [(String, bool); 0] = [];
        assert_eq!(readiness_report(&none, false), (true, "ok".to_string()));
        let one_bad = [("a".to_string(), true), ("b".to_string(), false)];
        assert_eq!(
            readiness_report(&one_bad, false),
            (false, "[-]b failed\nreadyz check failed\n".to_string())
        );
    }
}
