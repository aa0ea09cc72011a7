//! Real Kubernetes control planes for tests.
//!
//! [`TestEnv::shared`] starts `bin/testenv up --clusters london,newyork` once per test binary
//! (the first call blocks for a few seconds; later calls return at once) and stops it when the
//! process exits. Tests isolate themselves by namespace: [`TestEnv::unique_namespace`].
//! A test that disrupts a cluster (stop/start) starts its own environment with
//! [`TestEnv::start`] instead; it is torn down when the value is dropped.
//!
//! The environment never outlives the test process:
//! - on a normal exit an `atexit` handler runs `testenv down` for every environment still up
//!   (statics are not dropped, so a destructor alone would not do);
//! - if the process dies otherwise (killed, aborted), the clusters notice: `up` is given
//!   `--owner-pid`, and each cluster stops and deletes its data once that pid is gone.
//!
//! If the environment cannot start, the test panics with the error and the tail of the cluster
//! logs. It never skips. When `bin/testenv` is missing the panic says to run `make testenv`.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Deserialize;

mod network;
pub use network::{ClusterNetwork, NetworkInfo, is_root, network_namespaces, pod_binaries_dir};

/// The clusters of the shared environment, in order. The first one is where
/// [`TestEnv::unique_namespace`] creates namespaces.
pub const SHARED_CLUSTERS: [&str; 2] = ["london", "newyork"];

/// Environment variable naming the `testenv` binary (default: `bin/testenv` at the repository
/// root). `kubectl` is taken from the same directory.
pub const BIN_ENV: &str = "LIQO_TESTENV_BIN";

/// One cluster of an environment, as `testenv up` describes it in `DIR/state.json`.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    /// Cluster name; also the kubeconfig's context, cluster and user name.
    pub name: String,
    /// `https://127.0.0.1:PORT`.
    pub api_server_url: String,
    /// Admin kubeconfig (system:masters).
    pub kubeconfig: PathBuf,
    /// Range the kubelet stand-in takes pod IPs from.
    pub pod_cidr: IpNet,
    /// The API server's `--service-cluster-ip-range`: ClusterIPs come from here.
    pub service_cidr: IpNet,
    /// Name of the single (fake) Node.
    pub node_name: String,
    /// Log of the API server, controller-manager and kubelet stand-in.
    pub log_file: PathBuf,
}

#[derive(Deserialize)]
struct StateFile {
    clusters: Vec<StateCluster>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateCluster {
    name: String,
    #[serde(rename = "apiServerURL")]
    api_server_url: String,
    kubeconfig: PathBuf,
    #[serde(rename = "podCIDR")]
    pod_cidr: String,
    #[serde(rename = "serviceCIDR")]
    service_cidr: String,
    node_name: String,
    log_file: PathBuf,
}

/// A running test environment: one or more real clusters on 127.0.0.1.
pub struct TestEnv {
    dir: PathBuf,
    testenv_bin: PathBuf,
    kubectl_bin: PathBuf,
    clusters: Vec<ClusterInfo>,
}

impl TestEnv {
    /// The environment shared by every test of this test binary: clusters `london` and
    /// `newyork`, started on first use and stopped when the process exits.
    ///
    /// # Panics
    /// If the environment cannot start (the message has the error and the end of the logs).
    pub fn shared() -> &'static TestEnv {
        static SHARED: OnceLock<Result<TestEnv, String>> = OnceLock::new();
        let env =
            SHARED.get_or_init(|| TestEnv::start(&SHARED_CLUSTERS).map_err(|e| format!("{e:#}")));
        match env {
            Ok(env) => env,
            Err(e) => panic!("the shared test environment (testenv up) failed to start:\n{e}"),
        }
    }

    /// Starts a new environment with the given clusters, owned by the caller: dropping it runs
    /// `testenv down`. Cluster `i` gets the Service CIDR `10.(96+i).0.0/16` and the pod CIDR
    /// `10.(200+i).0.0/16`.
    pub fn start(clusters: &[&str]) -> anyhow::Result<TestEnv> {
        Self::start_with_args(clusters, &[])
    }

    /// Like [`TestEnv::start`], with extra `testenv up` flags such as
    /// `["--pod-cidr", "newyork=10.200.0.0/16"]`.
    ///
    /// `testenv up` picks free loopback ports and hands them to the API servers a moment later;
    /// another environment starting at the same time (two test binaries, or a test's private
    /// environment beside the shared one) can take a port in between. That failure says
    /// "address already in use" and is retried with fresh ports, twice at most.
    pub fn start_with_args(clusters: &[&str], extra_args: &[&str]) -> anyhow::Result<TestEnv> {
        let mut attempt = 1;
        loop {
            match Self::start_once(clusters, extra_args) {
                Err(err)
                    if attempt < 3 && format!("{err:#}").contains("address already in use") =>
                {
                    eprintln!("testsupport: a port was taken meanwhile; starting again ({err:#})");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn start_once(clusters: &[&str], extra_args: &[&str]) -> anyhow::Result<TestEnv> {
        let testenv_bin = testenv_bin()?;
        let kubectl_bin = testenv_bin.with_file_name("kubectl");
        if !kubectl_bin.exists() {
            bail!(
                "{} not found next to {}: run `make testenv`",
                kubectl_bin.display(),
                testenv_bin.display()
            );
        }
        let dir = unique_dir();
        let _ = std::fs::remove_dir_all(&dir);
        register_for_teardown(&testenv_bin, &dir);

        let mut cmd = Command::new(&testenv_bin);
        cmd.arg("up")
            .arg("--dir")
            .arg(&dir)
            .arg("--clusters")
            .arg(clusters.join(","))
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            .args(extra_args)
            .stdin(Stdio::null());
        let started = Instant::now();
        let out = cmd
            .output()
            .with_context(|| format!("running {}", testenv_bin.display()))?;
        if !out.status.success() {
            // testenv's own message ends with a short log tail; ours below is longer.
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stderr = stderr.split("\nlast lines of ").next().unwrap_or_default();
            let mut msg = format!(
                "`{} up --dir {} --clusters {}` failed after {:.1?} ({}):\n{}",
                testenv_bin.display(),
                dir.display(),
                clusters.join(","),
                started.elapsed(),
                out.status,
                stderr.trim_end()
            );
            msg.push_str(&log_tails(&dir, clusters));
            teardown(&testenv_bin, &dir);
            let _ = std::fs::remove_dir_all(&dir);
            bail!(msg);
        }
        let clusters = read_state(&dir).inspect_err(|_| teardown(&testenv_bin, &dir))?;
        Ok(TestEnv {
            dir,
            testenv_bin,
            kubectl_bin,
            clusters,
        })
    }

    /// The environment directory (`testenv --dir`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `testenv` binary in use.
    pub fn testenv_bin(&self) -> &Path {
        &self.testenv_bin
    }

    /// The `kubectl` binary in use (a link to `testenv`).
    pub fn kubectl_bin(&self) -> &Path {
        &self.kubectl_bin
    }

    /// Every cluster, in `--clusters` order.
    pub fn clusters(&self) -> &[ClusterInfo] {
        &self.clusters
    }

    /// The named cluster.
    ///
    /// # Panics
    /// If the environment has no such cluster.
    pub fn cluster(&self, name: &str) -> &ClusterInfo {
        self.clusters
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| {
                let names: Vec<_> = self.clusters.iter().map(|c| c.name.as_str()).collect();
                panic!("no cluster {name:?} in the test environment (clusters: {names:?})")
            })
    }

    /// Path of the named cluster's admin kubeconfig.
    pub fn kubeconfig_path(&self, cluster: &str) -> &Path {
        &self.cluster(cluster).kubeconfig
    }

    /// A `kube::Config` for the named cluster, read from its kubeconfig.
    pub async fn kube_config(&self, cluster: &str) -> anyhow::Result<kube::Config> {
        let path = self.kubeconfig_path(cluster);
        let kubeconfig =
            Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
        let options = KubeConfigOptions {
            context: Some(cluster.to_string()),
            ..Default::default()
        };
        kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .with_context(|| format!("loading {}", path.display()))
    }

    /// A new admin client for the named cluster. Build clients inside the test that uses them:
    /// a client is tied to the tokio runtime it was created in, and every `#[tokio::test]` has
    /// its own.
    ///
    /// # Panics
    /// If the kubeconfig cannot be loaded.
    pub async fn client(&self, cluster: &str) -> kube::Client {
        let config = self
            .kube_config(cluster)
            .await
            .unwrap_or_else(|e| panic!("kube config for {cluster}: {e:#}"));
        kube::Client::try_from(config)
            .unwrap_or_else(|e| panic!("kube client for {cluster}: {e:#}"))
    }

    /// Runs `bin/kubectl --kubeconfig <cluster's kubeconfig> ARGS...` and returns its output
    /// (blocking; kubectl answers in well under a second).
    pub fn kubectl<I, S>(&self, cluster: &str, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let kubeconfig = self.kubeconfig_path(cluster);
        Command::new(&self.kubectl_bin)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.kubectl_bin.display()))
    }

    /// Like [`TestEnv::kubectl`], but panics unless kubectl succeeds, and returns its stdout.
    pub fn kubectl_ok<I, S>(&self, cluster: &str, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let out = self.kubectl(cluster, &args);
        if !out.status.success() {
            panic!(
                "kubectl {:?} against {cluster} failed ({}):\nstdout: {}\nstderr: {}",
                args,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `bin/testenv COMMAND --dir DIR ARGS...` for this environment.
    pub fn testenv<I, S>(&self, command: &str, args: I) -> anyhow::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = Command::new(&self.testenv_bin)
            .arg(command)
            .arg("--dir")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.testenv_bin.display()))?;
        if !out.status.success() {
            bail!(
                "testenv {command} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops the named cluster (its API server and everything else), keeping its data.
    pub fn stop_cluster(&self, cluster: &str) -> anyhow::Result<()> {
        self.testenv("stop", ["--cluster", cluster]).map(drop)
    }

    /// Starts a stopped cluster again (same URL, certificates and data) and waits until it is
    /// ready.
    pub fn start_cluster(&self, cluster: &str) -> anyhow::Result<()> {
        self.testenv("start", ["--cluster", cluster]).map(drop)
    }

    /// A fresh namespace, created in the first cluster (`london` in the shared environment).
    /// Create it in other clusters with [`TestEnv::create_namespace`].
    pub async fn unique_namespace(&self, prefix: &str) -> String {
        let name = unique_name(prefix);
        self.create_namespace(&self.clusters[0].name, &name).await;
        name
    }

    /// Creates namespace `name` in the named cluster.
    ///
    /// # Panics
    /// If the namespace cannot be created.
    pub async fn create_namespace(&self, cluster: &str, name: &str) {
        let client = self.client(cluster).await;
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client)
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name} in {cluster}: {e}"));
    }

    /// Stops every cluster and deletes the environment directory. Also what dropping does.
    pub fn down(&self) -> anyhow::Result<()> {
        self.testenv("down", std::iter::empty::<&str>())?;
        unregister(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Err(e) = self.down() {
            eprintln!("testsupport: {e:#}");
        }
    }
}

/// A name for a test object: `prefix` (lowercased, made DNS-safe) plus a suffix unique in this
/// process, at most 63 characters.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut clean: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    clean.truncate(40);
    let clean = clean.trim_matches('-');
    let clean = if clean.is_empty() { "test" } else { clean };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{clean}-{n}-{:x}", nanos & 0xfffff)
}

/// Polls `check` every 100 ms until it returns `Some`, and returns that value.
///
/// # Panics
/// After `timeout`, naming `what` we were waiting for.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `$LIQO_TESTENV_BIN`, else `bin/testenv` at the repository root.
fn testenv_bin() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os(BIN_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repository_root()?.join("bin/testenv"),
    };
    if !path.is_file() {
        return Err(anyhow!(
            "{} not found: run `make testenv` to build it (or set {BIN_ENV})",
            path.display()
        ));
    }
    Ok(path.canonicalize().unwrap_or(path))
}

/// The workspace root, found at run time from the test's working directory (cargo runs tests
/// in their package's directory). Not `env!("CARGO_MANIFEST_DIR")`: a compiled copy of this
/// crate can be reused from a shared target directory by a checkout at another path.
fn repository_root() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    cwd.ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|manifest| manifest.contains("[workspace]"))
        })
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            anyhow!(
                "no workspace Cargo.toml above {}: run the tests with cargo from the repository (or set {BIN_ENV})",
                cwd.display()
            )
        })
}

fn unique_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "liqo-testenv-{}-{}-{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos
    ))
}

fn read_state(dir: &Path) -> anyhow::Result<Vec<ClusterInfo>> {
    let path = dir.join("state.json");
    let data = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let state: StateFile =
        serde_json::from_slice(&data).with_context(|| format!("parsing {}", path.display()))?;
    state
        .clusters
        .into_iter()
        .map(|c| {
            Ok(ClusterInfo {
                pod_cidr: c
                    .pod_cidr
                    .parse()
                    .with_context(|| format!("podCIDR of {}", c.name))?,
                service_cidr: c
                    .service_cidr
                    .parse()
                    .with_context(|| format!("serviceCIDR of {}", c.name))?,
                name: c.name,
                api_server_url: c.api_server_url,
                kubeconfig: c.kubeconfig,
                node_name: c.node_name,
                log_file: c.log_file,
            })
        })
        .collect()
}

/// The last lines of each cluster's logs, for failure messages.
fn log_tails(dir: &Path, clusters: &[&str]) -> String {
    let mut out = String::new();
    for name in clusters {
        for file in ["cluster.log", "etcd.log"] {
            let path = dir.join(name).join(file);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(25)..];
            let _ = write!(out, "\n--- last lines of {}:", path.display());
            for line in tail {
                let _ = write!(out, "\n  {line}");
            }
        }
    }
    out
}

// ---- teardown at process exit ----------------------------------------------------------------

/// Environments still up, as (testenv binary, dir): `down` runs for each at exit.
static LIVE: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

extern "C" fn teardown_at_exit() {
    let envs = match LIVE.lock() {
        Ok(mut live) => std::mem::take(&mut *live),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    // Stop every environment at once: each `down` waits for its clusters to exit.
    let children: Vec<_> = envs
        .iter()
        .filter_map(|(bin, dir)| down_command(bin, dir).spawn().ok())
        .collect();
    for mut child in children {
        let _ = child.wait();
    }
    for (_, dir) in envs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn register_for_teardown(bin: &Path, dir: &Path) {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: atexit only stores the function pointer; teardown_at_exit neither panics
        // (every error is ignored) nor unwinds across the C boundary.
        let rc = unsafe { atexit(teardown_at_exit) };
        if rc != 0 {
            eprintln!("testsupport: atexit failed; clusters rely on --owner-pid to stop");
        }
    });
    if let Ok(mut live) = LIVE.lock() {
        live.push((bin.to_path_buf(), dir.to_path_buf()));
    }
}

fn unregister(dir: &Path) {
    if let Ok(mut live) = LIVE.lock() {
        live.retain(|(_, d)| d != dir);
    }
}

fn down_command(bin: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("down")
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn teardown(bin: &Path, dir: &Path) {
    let _ = down_command(bin, dir).status();
    unregister(dir);
}

/// Applies `crds` with server-side apply (field manager `liqo-test`) and waits until each is
/// Established, so tests can create their objects right away.
///
/// # Panics
/// If a CRD cannot be applied or is not established within a minute.
pub async fn apply_crds(
    client: &kube::Client,
    crds: Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply("liqo-test").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        eventually(
            &format!("CRD {name} established"),
            Duration::from_secs(60),
            || async {
                api.get(&name)
                    .await
                    .ok()?
                    .status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            },
        )
        .await;
    }
}

/// A command's stdout and stderr together, for assertions on what a user reads.
pub fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A child process (a host started by a test) killed when the guard is dropped, whatever
/// happens to the test.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    /// Kills and reaps the process now.
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}
