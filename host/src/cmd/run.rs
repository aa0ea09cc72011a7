//! `liqo-host run`: the host as a process (in a Deployment or on a developer's machine).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use liqo_host::api::identity::{
    CLUSTER_IDENTITY_CONFIGMAP, CLUSTER_IDENTITY_NAMESPACE, ClusterIdentityConfig,
};
use liqo_host::leader::{self, LeaderConfig};
use liqo_host::offloading::{self, OffloadingContext};
use liqo_host::peering::{self, PeeringConfig};
use liqo_host::peers::{DataPath, Peers};
use liqo_host::plugin::{
    ClusterIdentity, PluginLimits, PluginMetrics, PluginRuntime, RuntimeConfig, builtin,
};
use liqo_host::reflect::{Engine, EngineConfig, EngineMetrics};
use liqo_host::telemetry::Telemetry;
use liqo_host::transport::{self, Transport, TransportConfig};
use liqo_host::user_plugins::{self, UserPluginsContext};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Flags of `liqo-host run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Kubeconfig of this cluster (default: in-cluster config, then $KUBECONFIG, then
    /// ~/.kube/config).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long)]
    context: Option<String>,
    /// This cluster's id; default: the liqo/liqo-clusterid-configmap written by `liqoctl install`.
    #[arg(long)]
    cluster_id: Option<String>,
    /// This cluster's name (default: the id).
    #[arg(long)]
    cluster_name: Option<String>,
    /// Concurrent reflection passes.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:8080")]
    metrics_addr: SocketAddr,
    /// Disable leader election (only with a single replica).
    #[arg(long)]
    no_leader_election: bool,
    /// Namespace of the leader election Lease.
    #[arg(long, default_value = "liqo")]
    leader_election_namespace: String,
    /// This replica's identity in the Lease (`holderIdentity`); must differ per replica
    /// (default: $POD_NAME, else HOSTNAME-PID).
    #[arg(long, env = "POD_NAME")]
    leader_election_identity: Option<String>,
    /// How long the Lease stays valid after the last renewal: a crashed leader is replaced
    /// about this long after its last renewal. Whole seconds, e.g. `15s`.
    #[arg(long, default_value = "15s", value_parser = liqo_gateway::duration::parse_duration)]
    leader_election_lease_duration: std::time::Duration,
    /// How long before the term ends the leader renews the Lease (shorter than the lease
    /// duration). Whole seconds, e.g. `5s`.
    #[arg(long, default_value = "5s", value_parser = liqo_gateway::duration::parse_duration)]
    leader_election_renew_grace: std::time::Duration,
    /// Reflection policy of the built-in plugins: DenyList reflects everything without
    /// `liqo.io/skip-reflection`; AllowList only what has `liqo.io/allow-reflection`.
    #[arg(long, value_enum, default_value_t = Policy::DenyList)]
    reflection_policy: Policy,
    /// Directory of the compiled-plugin cache (default: ~/.cache/liqo/components).
    #[arg(long)]
    plugin_cache_dir: Option<PathBuf>,
    /// MiB of the container's memory limit kept for the host itself; plugins' memory budgets
    /// (maxInstances × memoryMiB each) share the rest, and a plugin whose budget does not fit
    /// is not loaded. The limit is read from the cgroup; without one, budgets are not checked.
    #[arg(long, default_value_t = liqo_host::plugin::DEFAULT_HOST_MEMORY_RESERVE >> 20)]
    host_memory_reserve_mib: u64,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// As a provider: how long after a consumer's peering Lease expired its identity is revoked
    /// (ServiceAccount, bindings, tenant namespace and the twin namespaces it created), e.g.
    /// `90s`, `5m`, `1h`. A released Lease (`liqoctl unpeer`) is revoked at once.
    #[arg(long, default_value = "5m", value_parser = liqo_gateway::duration::parse_duration)]
    peering_revocation_grace: std::time::Duration,
    /// Run the cross-cluster gateway, accepting peer links (TLS) on this address, e.g.
    /// `0.0.0.0:7900`. Needs the identity Secret liqo/liqo-gateway-identity that `liqoctl
    /// install` creates. Without it no data path is set up and NETWORKING stays None.
    #[arg(long, help_heading = "Gateway")]
    gateway_listen: Option<SocketAddr>,
    /// `HOST:PORT` where peers reach the link listener (a NodePort or LoadBalancer address in
    /// a real cluster). Default: --gateway-listen when it names a specific IP.
    #[arg(long, help_heading = "Gateway")]
    gateway_advertise: Option<String>,
    /// Where connections to Services reflected into this cluster arrive (kube-proxy sends
    /// them to the endpoint below).
    #[arg(long, default_value = "0.0.0.0:7901", help_heading = "Gateway")]
    gateway_service_listen: SocketAddr,
    /// `IP:PORT` inside this cluster at which the service listener is reached: what the
    /// EndpointSlices consumers reflect here point at. Default: $POD_IP and the port of
    /// --gateway-service-listen.
    #[arg(long, help_heading = "Gateway")]
    gateway_endpoint: Option<SocketAddr>,
}

impl RunArgs {
    /// The gateway settings, or `None` without --gateway-listen.
    fn transport_config(&self) -> Result<Option<TransportConfig>> {
        let Some(link_listen) = self.gateway_listen else {
            return Ok(None);
        };
        let link_advertise = match (&self.gateway_advertise, link_listen.ip().is_unspecified()) {
            (Some(a), _) => a.clone(),
            (None, false) => link_listen.to_string(),
            (None, true) => bail!(
                "--gateway-listen {link_listen} does not say where peers reach it: pass \
                 --gateway-advertise HOST:PORT"
            ),
        };
        let service_endpoint = match self.gateway_endpoint {
            Some(e) => e,
            None => {
                let ip = match std::env::var("POD_IP") {
                    Ok(ip) => ip
                        .parse()
                        .with_context(|| format!("$POD_IP {ip:?} is not an IP"))?,
                    Err(_) if !self.gateway_service_listen.ip().is_unspecified() => {
                        self.gateway_service_listen.ip()
                    }
                    Err(_) => bail!(
                        "cannot tell the gateway's address inside this cluster: pass \
                         --gateway-endpoint IP:PORT (or set $POD_IP)"
                    ),
                };
                SocketAddr::new(ip, self.gateway_service_listen.port())
            }
        };
        Ok(Some(TransportConfig {
            link_listen,
            link_advertise,
            service_listen: self.gateway_service_listen,
            service_endpoint,
        }))
    }
}

/// The plugin runtime and the built-in plugins: the reflectors (configured with the reflection
/// policy) and the namespace mapper.
fn load_plugins(
    args: &RunArgs,
    plugin_metrics: PluginMetrics,
) -> Result<(
    PluginRuntime,
    Vec<Arc<liqo_host::plugin::ReflectorPlugin>>,
    Arc<liqo_host::plugin::NamespaceMapperPlugin>,
)> {
    let runtime = PluginRuntime::new(
        RuntimeConfig {
            cache_dir: args
                .plugin_cache_dir
                .clone()
                .or_else(liqo_host::plugin::default_cache_dir),
            max_idle_instances: args.workers,
            // At most one plugin call per reflection worker runs at once (plus one for the
            // namespace mapper), each on a blocking thread, never on an async worker.
            max_concurrent_calls: args.workers.max(1) + 1,
            host_memory_reserve: args.host_memory_reserve_mib << 20,
            ..RuntimeConfig::default()
        },
        plugin_metrics,
    )?;
    match runtime.memory_limit() {
        Some(limit) => tracing::info!(
            container_memory_limit_mib = limit >> 20,
            host_reserve_mib = args.host_memory_reserve_mib,
            "plugin memory budgets are checked against the container memory limit"
        ),
        None => {
            tracing::info!("no container memory limit found: plugin memory budgets are not checked")
        }
    }
    let config = format!(r#"{{"reflectionPolicy":"{:?}"}}"#, args.reflection_policy);
    let plugins = builtin::REFLECTORS
        .iter()
        .map(|(source, bytes)| {
            runtime.load_reflector(source, bytes, PluginLimits::builtin(), &config)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The mapper runs once per offloaded namespace and peer: one instance is plenty.
    let mapper = runtime.load_namespace_mapper(
        builtin::NAMESPACE_SOURCE,
        builtin::NAMESPACE,
        PluginLimits::builtin().with_max_instances(1),
    )?;
    Ok((runtime, plugins, mapper))
}

/// Waits until this replica leads (at once with `--no-leader-election`), then watches the
/// leadership: losing it stops the host, so that only the new leader writes. `Ok(None)` when
/// stopped before leading; `Ok(Some(None))` without leader election.
async fn lead(
    args: &RunArgs,
    client: &kube::Client,
    leader_gauge: &Gauge<i64, std::sync::atomic::AtomicI64>,
    stop_tx: &watch::Sender<bool>,
    stopped: impl std::future::Future<Output = ()>,
) -> Result<Option<Option<leader::Leadership>>> {
    let leadership = if args.no_leader_election {
        leader_gauge.set(1);
        None
    } else {
        let config = LeaderConfig {
            namespace: args.leader_election_namespace.clone(),
            identity: args
                .leader_election_identity
                .clone()
                .unwrap_or_else(leader::default_identity),
            lease_duration: args.leader_election_lease_duration,
            grace: args.leader_election_renew_grace,
            ..LeaderConfig::default()
        };
        let mut leadership = leader::elect(client.clone(), config).await?;
        tracing::info!("waiting for leadership");
        tokio::select! {
            won = leadership.wait_until_leader() => won?,
            _ = stopped => { return Ok(None); }
        }
        tracing::info!("leading: reflection starts");
        leader_gauge.set(1);
        let mut changes = leadership.subscribe();
        let stop_tx = stop_tx.clone();
        let leader_gauge = leader_gauge.clone();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                if !*changes.borrow() {
                    leader_gauge.set(0);
                    tracing::error!("leadership lost: stopping so that only the new leader writes");
                    let _ = stop_tx.send(true);
                    break;
                }
            }
        });
        Some(leadership)
    };
    Ok(Some(leadership))
}

#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "verbatim")]
enum Policy {
    DenyList,
    AllowList,
}

async fn client(args: &RunArgs) -> Result<Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            let options = KubeConfigOptions {
                context: args.context.clone(),
                ..KubeConfigOptions::default()
            };
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .with_context(|| format!("loading kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig: pass --kubeconfig, set KUBECONFIG, or run in a cluster")?,
    };
    Client::try_from(config).context("creating the Kubernetes client")
}

async fn identity(args: &RunArgs, client: &Client) -> Result<ClusterIdentity> {
    if let Some(id) = &args.cluster_id {
        return Ok(ClusterIdentity {
            id: id.clone(),
            name: args.cluster_name.clone().unwrap_or_else(|| id.clone()),
        });
    }
    let cm = Api::<ConfigMap>::namespaced(client.clone(), CLUSTER_IDENTITY_NAMESPACE)
        .get_opt(CLUSTER_IDENTITY_CONFIGMAP)
        .await
        .with_context(|| {
            format!("reading ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{CLUSTER_IDENTITY_CONFIGMAP}")
        })?;
    let Some(cm) = cm else {
        bail!(
            "ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{CLUSTER_IDENTITY_CONFIGMAP} not found: run \
             `liqoctl install` on this cluster, or pass --cluster-id"
        );
    };
    let config = ClusterIdentityConfig::from_config_map(&cm)?;
    Ok(ClusterIdentity {
        id: config.cluster_id,
        name: config.cluster_name,
    })
}

/// Runs the host until SIGINT/SIGTERM, or until leadership is lost.
pub async fn run(args: RunArgs) -> Result<()> {
    liqo_host::telemetry::init_tracing(args.log_json);
    let client = client(&args).await?;
    let local = identity(&args, &client).await?;
    tracing::info!(cluster_id = %local.id, cluster_name = %local.name, "starting liqo-host");
    let transport_config = args.transport_config()?;

    let HostMetrics {
        mut registry,
        plugin: plugin_metrics,
        engine: engine_metrics,
        leader: leader_gauge,
    } = HostMetrics::new();
    let transport = match transport_config {
        Some(config) => {
            let identity = transport::load_identity(&client).await?;
            Some(Transport::new(identity, config, &mut registry)?)
        }
        None => None,
    };

    let (runtime, plugins, mapper) = load_plugins(&args, plugin_metrics)?;

    let telemetry = Telemetry::new(registry);
    let stop = Stop::new();
    let server = serve(&args, &telemetry, &stop).await?;

    // Nothing is written before this replica leads.
    let Some(leadership) = lead(&args, &client, &leader_gauge, &stop.tx, stop.stopped()).await?
    else {
        return Ok(());
    };

    let tasks = start_controllers(
        &args,
        HostParts {
            client,
            local,
            runtime,
            plugins,
            mapper,
            engine_metrics,
            transport,
        },
        &telemetry,
        &stop,
    )
    .await;
    telemetry.set_ready(true);

    tasks.join().await;
    if let Some(leadership) = leadership
        && let Err(err) = leadership.release().await
    {
        tracing::warn!(%err, "could not release the leader Lease");
    }
    let _ = server.await;
    Ok(())
}

/// The host's metrics and the registry /metrics serves them from.
struct HostMetrics {
    registry: Registry,
    plugin: PluginMetrics,
    engine: EngineMetrics,
    /// `liqo_leader`: whether this replica leads.
    leader: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl HostMetrics {
    /// Registers the plugin, engine and leader metrics.
    fn new() -> Self {
        let plugin = PluginMetrics::default();
        let engine = EngineMetrics::default();
        let mut registry = Registry::default();
        plugin.register(&mut registry);
        engine.register(&mut registry);
        // 1 while this replica is the one that writes (always, without leader election), so an
        // operator running two replicas can tell which one leads from /metrics alone.
        let leader = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "liqo_leader",
            "1 while this replica leads (writes), 0 while it waits for the leader Lease",
            leader.clone(),
        );
        Self {
            registry,
            plugin,
            engine,
            leader,
        }
    }
}

/// The host's stop switch: a signal, a lost leadership or a failed gateway turns it on, and
/// every task watches it.
struct Stop {
    tx: watch::Sender<bool>,
    rx: watch::Receiver<bool>,
}

impl Stop {
    /// A switch that is off.
    fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Self { tx, rx }
    }

    /// Resolves once the switch is on.
    fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

/// Binds /metrics, /healthz and /readyz and serves them until the host stops; SIGINT/SIGTERM
/// stop the host from then on.
async fn serve(
    args: &RunArgs,
    telemetry: &Telemetry,
    stop: &Stop,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let bound = telemetry
        .clone()
        .bind(args.metrics_addr)
        .await
        .with_context(|| format!("listening on {} for metrics and probes", args.metrics_addr))?;
    tracing::info!(addr = %bound.local_addr(), "serving /metrics, /healthz, /readyz");
    let server = tokio::spawn(bound.serve(stop.stopped()));
    {
        let stop_tx = stop.tx.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });
    }
    Ok(server)
}

/// What the controllers start from once this replica leads.
struct HostParts {
    client: Client,
    local: ClusterIdentity,
    runtime: PluginRuntime,
    plugins: Vec<Arc<liqo_host::plugin::ReflectorPlugin>>,
    mapper: Arc<liqo_host::plugin::NamespaceMapperPlugin>,
    engine_metrics: EngineMetrics,
    transport: Option<Transport>,
}

/// The running controllers, awaited at shutdown.
struct Tasks {
    transport: Option<tokio::task::JoinHandle<()>>,
    engine: tokio::task::JoinHandle<()>,
    peering: tokio::task::JoinHandle<()>,
    offloading: tokio::task::JoinHandle<()>,
    provider: tokio::task::JoinHandle<()>,
    twins: tokio::task::JoinHandle<()>,
    user_plugins: tokio::task::JoinHandle<()>,
}

impl Tasks {
    /// Waits until every controller has stopped.
    async fn join(self) {
        if let Some(task) = self.transport {
            let _ = task.await;
        }
        let _ = tokio::join!(
            self.engine,
            self.peering,
            self.offloading,
            self.provider,
            self.twins,
            self.user_plugins
        );
    }
}

/// Starts the reflection engine (with the user plugins in place), the twins and provider
/// controllers, the gateway, and the peering and offloading controllers.
async fn start_controllers(
    args: &RunArgs,
    parts: HostParts,
    telemetry: &Telemetry,
    stop: &Stop,
) -> Tasks {
    let HostParts {
        client,
        local,
        runtime,
        plugins,
        mapper,
        engine_metrics,
        transport,
    } = parts;
    let start = Start {
        args,
        client: &client,
        local: &local,
        stop,
    };
    let (engine, user_plugins_task, engine_task) =
        start_reflection(&start, runtime, plugins, &engine_metrics, telemetry).await;
    let peers = Peers::default();
    // One handle on the gateway for the controllers that drive it.
    let data_path = transport.clone().map(|t| Arc::new(t) as Arc<dyn DataPath>);
    let (twins_task, provider_task) =
        start_provider_side(&start, transport.as_ref(), data_path.clone());
    let (transport_task, peering_transport) = match (transport, data_path) {
        (Some(transport), Some(data_path)) => {
            let (task, links) = start_gateway(&start, transport, &engine);
            (Some(task), Some((data_path, links)))
        }
        _ => (None, None),
    };
    let peering_task = tokio::spawn(peering::run(
        PeeringConfig {
            client: client.clone(),
            engine: engine.clone(),
            peers: peers.clone(),
            metrics: engine_metrics.clone(),
            local: Some(local.clone()),
            transport: peering_transport,
        },
        stop.stopped(),
    ));
    let offloading_task = tokio::spawn(offloading::run(
        OffloadingContext {
            client,
            local,
            engine,
            peers,
            mapper,
            metrics: engine_metrics,
        },
        stop.stopped(),
    ));
    Tasks {
        transport: transport_task,
        engine: engine_task,
        peering: peering_task,
        offloading: offloading_task,
        provider: provider_task,
        twins: twins_task,
        user_plugins: user_plugins_task,
    }
}

/// What every controller starts with: the flags, this cluster's client and identity, and the
/// stop switch.
struct Start<'a> {
    args: &'a RunArgs,
    client: &'a Client,
    local: &'a ClusterIdentity,
    stop: &'a Stop,
}

/// Starts the reflection engine with the user plugins already in place, and its readiness
/// check; returns the engine and the tasks of the user plugins controller and of the engine.
async fn start_reflection(
    start: &Start<'_>,
    runtime: PluginRuntime,
    plugins: Vec<Arc<liqo_host::plugin::ReflectorPlugin>>,
    engine_metrics: &EngineMetrics,
    telemetry: &Telemetry,
) -> (
    Engine,
    tokio::task::JoinHandle<()>,
    tokio::task::JoinHandle<()>,
) {
    let engine = Engine::start(
        start.client.clone(),
        EngineConfig {
            local: start.local.clone(),
            workers: start.args.workers,
            backoff: Default::default(),
        },
        plugins,
        engine_metrics.clone(),
    );
    // User plugins are in place before the first pass, so a plugin that replaces a built-in one
    // does not see its objects rewritten by the built-in one at every restart.
    let user_plugins = Arc::new(UserPluginsContext::new(
        start.client.clone(),
        runtime.clone(),
        engine.clone(),
    ));
    user_plugins::load_existing(&user_plugins).await;
    let user_plugins_task = tokio::spawn(user_plugins::run(user_plugins, start.stop.stopped()));
    {
        let engine = engine.clone();
        telemetry.add_check(
            "local-caches",
            Arc::new(move || engine.local_caches_ready()),
        );
    }
    let engine_task = tokio::spawn({
        let engine = engine.clone();
        let stop = start.stop.stopped();
        async move { engine.run(stop).await }
    });
    (engine, user_plugins_task, engine_task)
}

/// Starts the provider's controllers: the twins (NamespaceMaps of the tenants) and the
/// provider loop (claims, health, revocation).
fn start_provider_side(
    start: &Start<'_>,
    transport: Option<&Transport>,
    data_path: Option<Arc<dyn DataPath>>,
) -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
    let twins_task = tokio::spawn(liqo_host::twins::run(
        liqo_host::twins::TwinContext {
            client: start.client.clone(),
            local: start.local.clone(),
            gateway: transport.map(|t| t.service_endpoint().ip()),
        },
        start.stop.stopped(),
    ));
    let provider_task = tokio::spawn(liqo_host::tenant::run_provider(
        start.client.clone(),
        start.local.clone(),
        start.args.peering_revocation_grace,
        data_path,
        start.stop.stopped(),
    ));
    (twins_task, provider_task)
}

/// Starts the gateway; its failure stops the host. The gateway tells the peering controller
/// which links changed through the returned receiver.
fn start_gateway(
    start: &Start<'_>,
    transport: Transport,
    engine: &Engine,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (links_tx, links_rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn({
        let client = start.client.clone();
        let local = start.local.clone();
        let engine = engine.clone();
        let stop_signal = start.stop.stopped();
        let stop_tx = start.stop.tx.clone();
        async move {
            if let Err(err) = transport
                .run(client, local, engine, links_tx, stop_signal)
                .await
            {
                tracing::error!("{err}: stopping");
                let _ = stop_tx.send(true);
            }
        }
    });
    (task, links_rx)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
