//! The two clusters of the transport benchmark, set up as `liqoctl/tests/transport.rs` does:
//! testenv network mode (one network namespace per cluster, real kube-proxy), `liqoctl
//! install` in both, each host (with its gateway) started inside its cluster's namespace,
//! peering by newyork's peer command, then the echo server deployed in london and its
//! namespace offloaded. Root only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use testsupport::{KillOnDrop, TestEnv, pod_binaries_dir};

/// Port of the gateway link (TLS 1.3 + HTTP/2 between the gateways).
const LINK_PORT: u16 = 7900;
/// Port of the gateway's service listener: every reflected Service's endpoint.
const SERVICE_PORT: u16 = 7901;
/// Namespace of the echo server in london (offloaded to newyork under the same name).
pub const NAMESPACE: &str = "liqo-bench";
/// Name of the echo Deployment and Service.
pub const SERVICE: &str = "bench-echo";
/// Port of the echo Service and of its pod.
pub const ECHO_PORT: u16 = 7999;
/// How long each setup step may take.
const WAIT: Duration = Duration::from_secs(120);

/// Binaries the benchmark drives: liqoctl and liqo-host next to this executable (cargo builds
/// every binary of the workspace into the same `target/<profile>`), and this executable, which
/// is also the pod's echo server.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `liqoctl`.
    pub liqoctl: PathBuf,
    /// `liqo-host`.
    pub host: PathBuf,
    /// `liqo-bench-transport` itself.
    pub bench: PathBuf,
}

impl Bins {
    /// Finds the binaries next to this executable.
    pub fn locate() -> Result<Self> {
        let bench = std::env::current_exe().context("locating liqo-bench-transport")?;
        let dir = bench
            .parent()
            .context("the executable has no directory")?
            .to_path_buf();
        let bins = Self {
            liqoctl: dir.join("liqoctl"),
            host: dir.join("liqo-host"),
            bench,
        };
        for b in [&bins.liqoctl, &bins.host] {
            if !b.is_file() {
                bail!(
                    "{} not found: build it with the same profile as liqo-bench-transport \
                     (`cargo build -p liqoctl -p liqo-host -p liqo-bench`; `make bench-transport` does)",
                    b.display()
                );
            }
        }
        Ok(bins)
    }

    /// `debug` or `release`: the directory the binaries are in.
    pub fn profile(&self) -> String {
        self.host
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// The running setup. Dropping it stops the hosts and (through [`TestEnv`]) the clusters.
pub struct Clusters {
    /// Hosts (killed on drop), dropped before the environment.
    hosts: Vec<KillOnDrop>,
    /// The environment.
    pub env: TestEnv,
    /// The directory linked as `--pod-binaries` (removed on drop).
    pod_bins: PathBuf,
    /// london's ClusterIP:port of the echo Service.
    pub london_service: SocketAddr,
    /// newyork's ClusterIP:port of the reflected Service.
    pub newyork_service: SocketAddr,
    /// newyork's gateway service listener (the reflected Service's one endpoint).
    pub newyork_gateway: SocketAddr,
    /// Setup steps and their durations, seconds.
    pub setup: Vec<(String, f64)>,
}

impl Drop for Clusters {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            host.stop();
        }
        let _ = std::fs::remove_dir_all(&self.pod_bins);
    }
}

/// A step timer for [`Clusters::setup`].
struct Steps {
    at: Instant,
    done: Vec<(String, f64)>,
}

impl Steps {
    fn step(&mut self, name: &str) {
        let now = Instant::now();
        self.done
            .push((name.to_string(), now.duration_since(self.at).as_secs_f64()));
        eprintln!(
            "liqo-bench-transport: {name} ({:.1} s)",
            now.duration_since(self.at).as_secs_f64()
        );
        self.at = now;
    }
}

/// Polls `check` every 200 ms until it returns `Some`, failing after [`WAIT`] with `what`.
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs liqoctl against `cluster` and returns its stdout.
fn liqoctl(env: &TestEnv, bins: &Bins, cluster: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(&bins.liqoctl)
        .args(args)
        .arg("--kubeconfig")
        .arg(env.kubeconfig_path(cluster))
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", bins.liqoctl.display()))?;
    if !out.status.success() {
        bail!(
            "liqoctl {} against {cluster} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command line (the peer command) as london's user, see [`crate::common::shell_london`].
fn shell_london(env: &TestEnv, bins: &Bins, line: &str) -> Result<()> {
    crate::common::shell_london(env, &bins.liqoctl, line)
}

/// Starts `cluster`'s host inside its network namespace with its gateway on the cluster's WAN
/// address, stderr to `log_dir/CLUSTER-host.log`.
fn start_host(
    env: &TestEnv,
    bins: &Bins,
    cluster: &str,
    wan: &str,
    log_dir: &Path,
) -> Result<KillOnDrop> {
    let log = log_dir.join(format!("{cluster}-host.log"));
    // Through bash for the redirection: `testenv exec` passes its own stderr on.
    let line = format!(
        "exec '{host}' run --kubeconfig '{kubeconfig}' --metrics-addr 127.0.0.1:0 \
         --plugin-cache-dir '{cache}' --gateway-listen {wan}:{LINK_PORT} \
         --gateway-endpoint {wan}:{SERVICE_PORT} 2>'{log}'",
        host = bins.host.display(),
        kubeconfig = env.kubeconfig_path(cluster).display(),
        cache = env.dir().join("plugin-cache").display(),
        log = log.display(),
    );
    env.spawn_in(cluster, "bash", ["-c", &line], &[])
        .with_context(|| format!("starting {cluster}'s host"))
}

/// The echo server's Deployment and Service in london.
async fn deploy_echo(london: &Client) -> Result<()> {
    let namespace: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE},
    }))?;
    Api::<Namespace>::all(london.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .context("creating the namespace in london")?;
    let labels = json!({"app": SERVICE});
    // The container command names this binary: testenv runs it as a process with the pod's
    // IP (the pod-binaries directory holds a link to it).
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": SERVICE, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{
                    "name": "echo",
                    "image": "liqo-bench-transport",
                    "command": ["liqo-bench-transport", "serve", "--port", ECHO_PORT.to_string()],
                    "ports": [{"containerPort": ECHO_PORT, "name": "echo"}],
                }]},
            },
        },
    }))?;
    Api::<Deployment>::namespaced(london.clone(), NAMESPACE)
        .create(&PostParams::default(), &deployment)
        .await
        .context("creating the echo Deployment in london")?;
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": SERVICE, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "selector": labels,
            "ports": [{"name": "echo", "port": ECHO_PORT, "targetPort": "echo", "protocol": "TCP"}],
        },
    }))?;
    Api::<Service>::namespaced(london.clone(), NAMESPACE)
        .create(&PostParams::default(), &service)
        .await
        .context("creating the echo Service in london")?;
    Ok(())
}

/// Whether a pod of the echo Deployment is ready in london.
async fn echo_pod_ready(london: &Client) -> bool {
    let pods: Api<Pod> = Api::namespaced(london.clone(), NAMESPACE);
    let Ok(list) = pods
        .list(&ListParams::default().labels(&format!("app={SERVICE}")))
        .await
    else {
        return false;
    };
    list.items.iter().any(|p| {
        p.metadata.deletion_timestamp.is_none()
            && p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
}

/// The ClusterIP:port of the echo Service in `client`'s cluster, once it has one.
async fn service_address(client: &Client) -> Option<SocketAddr> {
    let svc = Api::<Service>::namespaced(client.clone(), NAMESPACE)
        .get_opt(SERVICE)
        .await
        .ok()??;
    let ip = svc.spec?.cluster_ip?.parse().ok()?;
    Some(SocketAddr::new(ip, ECHO_PORT))
}

/// Whether `cluster`'s kube-proxy (iptables mode) sends `service` (ClusterIP:port) to endpoints:
/// the nat table's KUBE-SERVICES chain jumps to the Service's chain (a Service without ready
/// endpoints has no such rule, only a REJECT in the filter table).
fn kube_proxy_serves(env: &TestEnv, cluster: &str, service: SocketAddr) -> bool {
    let out = env.exec_in(cluster, "iptables", ["-t", "nat", "-S", "KUBE-SERVICES"]);
    let destination = format!("-d {}/32 ", service.ip());
    let port = format!("--dport {} ", service.port());
    out.status.success()
        && String::from_utf8_lossy(&out.stdout).lines().any(|rule| {
            rule.contains(&destination) && rule.contains(&port) && rule.contains("-j KUBE-SVC-")
        })
}

/// Whether newyork's reflected EndpointSlices have `gateway` as a ready endpoint on its port.
async fn gateway_endpoint_ready(newyork: &Client, gateway: SocketAddr) -> bool {
    let slices: Api<EndpointSlice> = Api::namespaced(newyork.clone(), NAMESPACE);
    let Ok(list) = slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={SERVICE}")))
        .await
    else {
        return false;
    };
    list.items.iter().any(|slice| {
        let port = slice
            .ports
            .iter()
            .flatten()
            .any(|p| p.port == Some(i32::from(gateway.port())));
        port && slice.endpoints.iter().any(|e| {
            e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
                && e.addresses.iter().any(|a| *a == gateway.ip().to_string())
        })
    })
}

impl Clusters {
    /// Sets everything up and waits until the echo server answers from newyork through the
    /// gateways. Host logs go to `log_dir`.
    pub async fn up(bins: &Bins, log_dir: &Path) -> Result<Self> {
        let mut steps = Steps {
            at: Instant::now(),
            done: Vec::new(),
        };
        std::fs::create_dir_all(log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        let pod_bins = pod_binaries_dir(&[&bins.bench])?;
        let env = {
            let pod_bins = pod_bins.clone();
            tokio::task::spawn_blocking(move || {
                TestEnv::start_network(&["london", "newyork"], &pod_bins, &[])
            })
            .await
            .context("testenv task")?
        };
        let env = match env {
            Ok(env) => env,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&pod_bins);
                return Err(e.context("starting testenv in network mode (london, newyork)"));
            }
        };
        // From here on, dropping `clusters` cleans up whatever step fails.
        let mut clusters = Self {
            hosts: Vec::new(),
            env,
            pod_bins,
            london_service: SocketAddr::from(([0, 0, 0, 0], 0)),
            newyork_service: SocketAddr::from(([0, 0, 0, 0], 0)),
            newyork_gateway: SocketAddr::from(([0, 0, 0, 0], 0)),
            setup: Vec::new(),
        };
        steps.step("testenv up --network");
        let env = &clusters.env;
        let net = env.network()?;
        let wan = |c: &str| {
            net.clusters
                .get(c)
                .map(|n| n.wan_address.to_string())
                .with_context(|| format!("no network details for {c}"))
        };
        let (london_wan, newyork_wan) = (wan("london")?, wan("newyork")?);
        let lon = Client::try_from(env.kube_config("london").await?).context("london client")?;
        let ny = Client::try_from(env.kube_config("newyork").await?).context("newyork client")?;

        liqoctl(
            env,
            bins,
            "london",
            &["install", "--cluster-id", "london", "--skip-deployment"],
        )?;
        liqoctl(
            env,
            bins,
            "newyork",
            &["install", "--cluster-id", "newyork", "--skip-deployment"],
        )?;
        steps.step("liqoctl install (x2)");

        let london_host = start_host(env, bins, "london", &london_wan, log_dir)?;
        let newyork_host = start_host(env, bins, "newyork", &newyork_wan, log_dir)?;
        wait_for(
            "newyork's host to publish its gateway (configmap liqo/liqo-gateway)",
            || async {
                env.kubectl(
                    "newyork",
                    ["get", "configmap", "-n", "liqo", "liqo-gateway"],
                )
                .status
                .success()
                .then_some(())
            },
        )
        .await?;
        let command = liqoctl(
            env,
            bins,
            "newyork",
            &["generate", "peer-command", "--only-command"],
        )?;
        shell_london(env, bins, command.trim())
            .context("running newyork's peer command against london")?;
        steps.step("hosts started, peered");

        deploy_echo(&lon).await?;
        wait_for("a ready echo pod in london", || async {
            echo_pod_ready(&lon).await.then_some(())
        })
        .await?;
        let london_service = wait_for("the echo Service's ClusterIP in london", || {
            service_address(&lon)
        })
        .await?;
        steps.step("echo server deployed in london");

        liqoctl(
            env,
            bins,
            "london",
            &[
                "offload",
                "namespace",
                NAMESPACE,
                "--namespace-mapping-strategy",
                "EnforceSameName",
                "--pod-offloading-strategy",
                "Local",
            ],
        )?;
        let newyork_service = wait_for("the reflected echo Service in newyork", || {
            service_address(&ny)
        })
        .await?;
        let newyork_gateway = SocketAddr::new(newyork_wan.parse()?, SERVICE_PORT);
        wait_for(
            "newyork's gateway as the ready endpoint of the reflected Service",
            || async {
                gateway_endpoint_ready(&ny, newyork_gateway)
                    .await
                    .then_some(())
            },
        )
        .await?;
        steps.step("offloaded, reflected");

        // newyork's kube-proxy programs the reflected Service at its next sync (at most one a
        // second: its minSyncPeriod), a little after the EndpointSlice changed. A connection
        // attempted before is
        // not translated and stays so (its retransmitted SYNs keep the conntrack entry of the
        // first, which is not NATed): the client hangs until its 30 s timeout. That was the
        // 30.4 s "first answer" of one run; wait for the rule instead.
        wait_for(
            "newyork's kube-proxy to program the reflected echo Service",
            || async { kube_proxy_serves(env, "newyork", newyork_service).then_some(()) },
        )
        .await?;
        steps.step("newyork's kube-proxy has the reflected Service");

        // The path answers once the link is up: probe it with the client itself until one
        // request succeeds.
        let bench = bins.bench.clone();
        let probe = newyork_service.to_string();
        wait_for("an answer from newyork through the gateways", || {
            let ok = env
                .exec_in(
                    "newyork",
                    &bench,
                    [
                        "client",
                        "--addr",
                        &probe,
                        "--mode",
                        "small",
                        "--requests",
                        "1",
                    ],
                )
                .status
                .success();
            async move { ok.then_some(()) }
        })
        .await?;
        steps.step("first answer through the gateways");

        clusters.hosts = vec![london_host, newyork_host];
        clusters.london_service = london_service;
        clusters.newyork_service = newyork_service;
        clusters.newyork_gateway = newyork_gateway;
        clusters.setup = steps.done;
        Ok(clusters)
    }

    /// Stops the hosts, then the clusters (`testenv down`), reporting a failing `down`.
    pub fn down(mut self) -> Result<()> {
        for host in &mut self.hosts {
            host.stop();
        }
        self.env.down()
    }
}
