//! Helpers shared by liqoctl's integration tests: the binaries under test and how to run
//! liqoctl against one cluster of the test environment.

#![allow(dead_code, reason = "each test binary uses a subset")]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use liqo_host::api::foreign_cluster::{ForeignCluster, PeeringConditionType};
use serde_json::json;
use testsupport::{KillOnDrop, TestEnv, eventually, output_text as text};

/// The liqoctl binary under test.
pub fn liqoctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_liqoctl"))
}

/// The host binary, built by `cargo test --workspace` next to liqoctl.
pub fn liqo_host_bin() -> PathBuf {
    let path = liqoctl_bin().with_file_name("liqo-host");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p liqo-host` (make test does)",
        path.display()
    );
    path
}

/// Runs liqoctl with `args` against `cluster` (its kubeconfig, never the caller's $KUBECONFIG).
pub fn run_liqoctl(env: &TestEnv, cluster: &str, args: &[&str]) -> Output {
    Command::new(liqoctl_bin())
        .args(args)
        .arg("--kubeconfig")
        .arg(env.kubeconfig_path(cluster))
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("running liqoctl")
}

/// Runs a shell command line with liqoctl and kubectl on PATH, KUBECONFIG set to london, and
/// `$KUBECONFIG_<CLUSTER>` (`$KUBECONFIG_NEWYORK`, ...) for every other cluster of `env`, as
/// the tutorial's user has it.
pub fn sh(env: &TestEnv, line: &str) -> Output {
    let bin_dir = env.kubectl_bin().parent().unwrap().to_path_buf();
    let liqoctl_dir = liqoctl_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}:{}",
        liqoctl_dir.display(),
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(line)
        .env("PATH", path)
        .env("KUBECONFIG", env.kubeconfig_path("london"));
    for cluster in env.clusters() {
        command.env(
            format!("KUBECONFIG_{}", cluster.name.to_uppercase()),
            &cluster.kubeconfig,
        );
    }
    command.stdin(Stdio::null()).output().expect("running bash")
}

/// [`sh`], asserting success; returns stdout and stderr.
pub fn sh_ok(env: &TestEnv, line: &str) -> String {
    let out = sh(env, line);
    assert!(out.status.success(), "`{line}` failed:\n{}", text(&out));
    text(&out)
}

/// The hosts of london and newyork, run next to the clusters, as in `make demo`; killed when the test ends.
pub struct Hosts(pub Vec<KillOnDrop>);

impl Hosts {
    pub fn stop(&mut self) {
        for host in &mut self.0 {
            host.stop();
        }
    }
}

pub fn start_hosts(env: &TestEnv) -> Hosts {
    Hosts(vec![start_host(env, "london"), start_host(env, "newyork")])
}

/// Starts the host of `cluster` as a local process (log appended to DIR/CLUSTER-host.log).
pub fn start_host(env: &TestEnv, cluster: &str) -> KillOnDrop {
    start_host_with(env, cluster, "127.0.0.1:0", &[])
}

/// Like [`start_host`], serving /metrics on `metrics_addr` (for example one from
/// [`free_local_addr`]) and with `extra_args` appended to `liqo-host run`.
pub fn start_host_with(
    env: &TestEnv,
    cluster: &str,
    metrics_addr: &str,
    extra_args: &[&str],
) -> KillOnDrop {
    spawn_host(
        env,
        cluster,
        &host_log(env, cluster),
        metrics_addr,
        extra_args,
    )
}

/// Starts `liqo-host run` for `cluster`, its stderr appended to `log`.
fn spawn_host(
    env: &TestEnv,
    cluster: &str,
    log: &std::path::Path,
    metrics_addr: &str,
    extra_args: &[&str],
) -> KillOnDrop {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(liqo_host_bin())
        .args(["run", "--kubeconfig"])
        .arg(env.kubeconfig_path(cluster))
        .args(["--metrics-addr", metrics_addr, "--plugin-cache-dir"])
        .arg(env.dir().join("plugin-cache"))
        .args(extra_args)
        // The leader election identity defaults to $POD_NAME: never inherit one.
        .env_remove("POD_NAME")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(KillOnDrop)
        .expect("starting liqo-host")
}

/// The log file of `cluster`'s host started by [`start_host`] or [`start_host_with`].
pub fn host_log(env: &TestEnv, cluster: &str) -> PathBuf {
    env.dir().join(format!("{cluster}-host.log"))
}

/// A loopback address with a port free at the time of the call, for a host's `--metrics-addr`.
pub fn free_local_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free loopback port")
}

/// One sample of a host's `/metrics`: each series (`name{labels}`) with its value.
#[derive(Debug, Clone, Default)]
pub struct MetricsSample(pub Vec<(String, f64)>);

impl MetricsSample {
    /// Sum of the series of metric `name` whose labels include every `label="value"` of
    /// `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
                metric == name
                    && filter
                        .iter()
                        .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")))
            })
            .map(|(_, v)| v)
            .sum::<f64>()
            + 0.0 // an empty sum is -0.0
    }

    /// The series of metric `name` summed by the value of `label` (e.g. passes by `result`).
    pub fn by_label(&self, name: &str, label: &str) -> std::collections::BTreeMap<String, f64> {
        let mut out = std::collections::BTreeMap::new();
        for (series, value) in &self.0 {
            let Some((metric, labels)) = series.split_once('{') else {
                continue;
            };
            if metric != name {
                continue;
            }
            let key = format!("{label}=\"");
            if let Some(rest) = labels.split(',').find_map(|l| l.trim().strip_prefix(&key)) {
                let v = rest.trim_end_matches('}').trim_end_matches('"').to_string();
                *out.entry(v).or_insert(0.0) += value;
            }
        }
        out
    }
}

/// GET `http://addr/metrics` (the host's Prometheus text), parsed into series and values.
pub async fn scrape_metrics(addr: std::net::SocketAddr) -> anyhow::Result<MetricsSample> {
    use anyhow::Context as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .with_context(|| format!("GET /metrics on {addr}: timed out"))?
        .with_context(|| format!("GET /metrics on {addr}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET /metrics on {addr}: no HTTP body"))?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "GET /metrics on {addr}: {}",
        head.lines().next().unwrap_or_default()
    );
    let series = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.trim().parse().ok()?))
        })
        .collect();
    Ok(MetricsSample(series))
}

/// Rows of a kubectl table as whitespace-split columns, header excluded.
pub fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The CRDs and namespace `liqo`.
async fn crds_and_liqo_namespace(client: &Client) {
    testsupport::apply_crds(client, liqo_host::api::crds()).await;
    Api::<Namespace>::all(client.clone())
        .patch(
            "liqo",
            &PatchParams::apply("liqo-test"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "liqo"}}),
            ),
        )
        .await
        .unwrap();
}

/// CRDs, namespace liqo and the identity ConfigMap of cluster `id`: what `liqoctl install
/// --skip-deployment` leaves behind that the host needs.
pub async fn install_liqo(client: &Client, id: &str) {
    crds_and_liqo_namespace(client).await;
    let cm = liqo_host::api::identity::ClusterIdentityConfig {
        cluster_id: id.into(),
        cluster_name: id.into(),
    }
    .to_config_map();
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), "liqo")
        .patch(
            "liqo-clusterid-configmap",
            &PatchParams::apply("liqo-test").force(),
            &Patch::Apply(&cm),
        )
        .await
        .unwrap();
}

/// Peers london with newyork the way `liqoctl peer` does, and starts london's host.
pub async fn peered(env: &TestEnv, london: &Client) -> KillOnDrop {
    crds_and_liqo_namespace(london).await;
    let kubeconfig = std::fs::read(env.kubeconfig_path("newyork")).unwrap();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("newyork-credentials".into()),
            ..Default::default()
        },
        data: Some([("kubeconfig".to_string(), ByteString(kubeconfig))].into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(london.clone(), "liqo")
        .patch(
            "newyork-credentials",
            &PatchParams::apply("liqo-test").force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
    let fc: ForeignCluster = serde_json::from_value(json!({
        "apiVersion": "core.liqo.io/v1beta1", "kind": "ForeignCluster",
        "metadata": {"name": "newyork"},
        "spec": {"clusterID": "newyork", "credentialsSecretRef": {"name": "newyork-credentials", "namespace": "liqo"}}
    }))
    .unwrap();
    Api::<ForeignCluster>::all(london.clone())
        .create(&PostParams::default(), &fc)
        .await
        .unwrap();
    let log = std::fs::File::create(env.dir().join("london-host.log")).unwrap();
    let host = KillOnDrop(
        Command::new(liqo_host_bin())
            .args(["run", "--kubeconfig"])
            .arg(env.kubeconfig_path("london"))
            .args([
                "--cluster-id",
                "london",
                "--no-leader-election",
                "--metrics-addr",
                "127.0.0.1:0",
                "--plugin-cache-dir",
            ])
            .arg(env.dir().join("plugin-cache"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting liqo-host"),
    );
    let fcs = Api::<ForeignCluster>::all(london.clone());
    eventually(
        "the host to establish the peering",
        Duration::from_secs(60),
        || async {
            let status = fcs.get("newyork").await.ok()?.status?;
            (status
                .condition_status(PeeringConditionType::OutgoingPeering)
                .as_str()
                == "Established")
                .then_some(())
        },
    )
    .await;
    host
}

/// The tutorial up to the offloading, as the user types it: liqo installed in both clusters
/// (hosts as local processes), london peered with newyork, namespace liqo-demo created (with
/// `app`, a YAML file of objects to apply in it, if given) and offloaded with EnforceSameName.
/// Returns the hosts of london and newyork.
pub fn tutorial_until_offload(
    env: &TestEnv,
    app: Option<&std::path::Path>,
) -> (KillOnDrop, KillOnDrop) {
    sh_ok(env, "liqoctl install --cluster-id london --skip-deployment");
    sh_ok(
        env,
        "liqoctl install --cluster-id newyork --skip-deployment --kubeconfig \"$KUBECONFIG_NEWYORK\"",
    );
    let london = start_host(env, "london");
    let newyork = start_host(env, "newyork");
    sh_ok(
        env,
        r#"liqoctl generate peer-command --only-command --kubeconfig "$KUBECONFIG_NEWYORK" | bash"#,
    );
    sh_ok(env, "kubectl create namespace liqo-demo");
    if let Some(app) = app {
        sh_ok(
            env,
            &format!("kubectl apply -n liqo-demo -f {}", app.display()),
        );
    }
    sh_ok(
        env,
        "liqoctl offload namespace liqo-demo --namespace-mapping-strategy EnforceSameName --pod-offloading-strategy Local",
    );
    (london, newyork)
}

/// Like [`start_host_with`], for one of several replicas of `cluster`'s host: its log goes to
/// DIR/CLUSTER-host-REPLICA.log (see [`replica_log`]) so the replicas' logs stay apart.
pub fn start_host_replica(
    env: &TestEnv,
    cluster: &str,
    replica: &str,
    metrics_addr: &str,
    extra_args: &[&str],
) -> KillOnDrop {
    spawn_host(
        env,
        cluster,
        &replica_log(env, cluster, replica),
        metrics_addr,
        extra_args,
    )
}

/// The log file of replica `replica` of `cluster`'s host started by [`start_host_replica`].
pub fn replica_log(env: &TestEnv, cluster: &str, replica: &str) -> PathBuf {
    env.dir().join(format!("{cluster}-host-{replica}.log"))
}

/// The flags of a printed peer command (`liqoctl generate peer-command`), by name.
pub struct PeerArgs {
    /// The whole command line.
    pub command: String,
    pub url: String,
    pub ca: String,
    pub cluster_id: String,
    pub token: String,
}

/// Parses a printed peer command.
pub fn parse_peer_command(command: &str) -> PeerArgs {
    let words: Vec<&str> = command.split_whitespace().collect();
    let flag = |name: &str| {
        let i = words
            .iter()
            .position(|w| *w == name)
            .unwrap_or_else(|| panic!("{name} missing from the peer command {command:?}"));
        words[i + 1].trim_matches('\'').to_string()
    };
    PeerArgs {
        command: command.trim().to_string(),
        url: flag("--api-server-url"),
        ca: flag("--ca-data"),
        cluster_id: flag("--cluster-id"),
        token: flag("--token"),
    }
}

/// A JWT whose `exp` is in the past (unsigned: liqoctl must refuse it before any request).
pub fn expired_jwt() -> String {
    use base64::Engine as _;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.c2ln",
        e.encode(br#"{"alg":"RS256","kid":"x"}"#),
        e.encode(br#"{"exp":1000000000,"iat":999999000,"sub":"system:serviceaccount:x:y"}"#)
    )
}

/// A client of the API server at `url` (CA `ca`, base64) authenticated with `token` only:
/// what a peer command's holder has.
pub async fn token_client(url: &str, ca: &str, token: &str) -> Client {
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "p", "cluster": {"server": url, "certificate-authority-data": ca}}],
        "users": [{"name": "p", "user": {"token": token}}],
        "contexts": [{"name": "p", "context": {"cluster": "p", "user": "p"}}],
        "current-context": "p",
    });
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&kubeconfig.to_string()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    Client::try_from(config).unwrap()
}
