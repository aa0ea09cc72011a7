//! Two real clusters with liqo installed and peered, the hosts running as local processes,
//! exactly as `make demo` and liqoctl's end-to-end tests set them up: `liqoctl install
//! --skip-deployment` in both, `liqo-host run` for each, then `liqoctl generate peer-command`
//! on newyork piped into a shell against london.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::{Client, Config};
use serde_json::json;
use testsupport::TestEnv;

/// The binaries under test.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `liqoctl`.
    pub liqoctl: PathBuf,
    /// `liqo-host`.
    pub host: PathBuf,
}

impl Bins {
    /// `liqoctl` and `liqo-host` in `dir`, by default the directory of this executable (cargo
    /// builds every binary of the workspace into the same `target/<profile>`).
    pub fn locate(dir: Option<&Path>) -> Result<Self> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => std::env::current_exe()
                .context("locating the liqo-bench executable")?
                .parent()
                .context("the executable has no directory")?
                .to_path_buf(),
        };
        let bins = Self {
            liqoctl: dir.join("liqoctl"),
            host: dir.join("liqo-host"),
        };
        for b in [&bins.liqoctl, &bins.host] {
            if !b.is_file() {
                bail!(
                    "{} not found: build it first (`cargo build -p liqoctl -p liqo-host` with the \
                     same profile as liqo-bench; `make bench` does)",
                    b.display()
                );
            }
        }
        Ok(bins)
    }
}

/// A `liqo-host run` process.
pub struct Host {
    child: Child,
    /// Its pid.
    pub pid: u32,
    /// Where it serves `/metrics`.
    pub metrics: SocketAddr,
    /// When it was spawned.
    pub started: Instant,
    /// Its log (stderr).
    pub log: PathBuf,
}

impl Host {
    /// SIGTERM (a clean shutdown), then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Settings of the hosts the lab starts.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// `--workers`.
    pub workers: usize,
    /// Directory of host logs (`<cluster>-host-<n>.log`).
    pub log_dir: PathBuf,
}

/// Two peered clusters with their hosts.
pub struct Lab {
    /// The clusters (stopped when dropped).
    pub env: TestEnv,
    /// Binaries in use.
    pub bins: Bins,
    /// Host settings.
    pub settings: HostSettings,
    /// Admin configs, by cluster.
    pub london_config: Config,
    /// Admin config of newyork.
    pub newyork_config: Config,
    /// Admin client of london.
    pub london: Client,
    /// Admin client of newyork.
    pub newyork: Client,
    /// london's host (the one that reflects); `None` while stopped.
    pub london_host: Option<Host>,
    /// newyork's host (the provider: RoleBindings in twin namespaces).
    pub newyork_host: Option<Host>,
    host_starts: usize,
    /// Name of this lab (prefix of its host logs).
    pub name: String,
    /// Time spent in `up`, by step.
    pub setup: Vec<(String, Duration)>,
}

/// `offloading.liqo.io/v1beta1` NamespaceOffloading.
fn namespace_offloading() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("offloading.liqo.io", "v1beta1", "NamespaceOffloading"),
        "namespaceoffloadings",
    )
}

fn foreign_cluster() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("core.liqo.io", "v1beta1", "ForeignCluster"),
        "foreignclusters",
    )
}

fn free_port() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").context("picking a free port")?;
    l.local_addr().context("local address")
}

impl Lab {
    /// Starts london and newyork, installs liqo in both, starts both hosts and peers london
    /// (consumer) with newyork (provider).
    pub async fn up(name: &str, bins: Bins, settings: HostSettings) -> Result<Self> {
        let mut setup = Vec::new();
        let t = Instant::now();
        let env = tokio::task::spawn_blocking(|| TestEnv::start(&["london", "newyork"]))
            .await
            .context("testenv task")?
            .context("starting testenv (london, newyork)")?;
        setup.push(("testenv up".to_string(), t.elapsed()));
        let london_config = env.kube_config("london").await?;
        let newyork_config = env.kube_config("newyork").await?;
        let london = Client::try_from(london_config.clone()).context("london client")?;
        let newyork = Client::try_from(newyork_config.clone()).context("newyork client")?;
        let mut lab = Self {
            env,
            bins,
            settings,
            london_config,
            newyork_config,
            london,
            newyork,
            london_host: None,
            newyork_host: None,
            host_starts: 0,
            name: name.to_string(),
            setup,
        };

        let t = Instant::now();
        lab.liqoctl(
            "london",
            &["install", "--cluster-id", "london", "--skip-deployment"],
        )?;
        // The provider's bounds on its consumer are lifted: the scale phase offloads up to 100
        // namespaces and the throughput search writes thousands of Services into one, and a
        // ResourceQuota adds a status write per created object that the floor and the copier
        // (writing into namespaces without quota) would not pay.
        lab.liqoctl(
            "newyork",
            &[
                "install",
                "--cluster-id",
                "newyork",
                "--skip-deployment",
                "--peer-namespace-limit",
                "100000",
                "--peer-quota",
                "none",
            ],
        )?;
        lab.setup
            .push(("liqoctl install (x2)".to_string(), t.elapsed()));

        lab.newyork_host = Some(lab.start_host("newyork")?);
        lab.london_host = Some(lab.start_host("london")?);

        let t = Instant::now();
        let peer_command =
            lab.liqoctl("newyork", &["generate", "peer-command", "--only-command"])?;
        lab.shell_london(peer_command.trim())
            .context("running the peer command against london")?;
        lab.wait_established().await?;
        lab.setup.push(("peering".to_string(), t.elapsed()));
        Ok(lab)
    }

    /// Runs liqoctl against `cluster` and returns its stdout.
    pub fn liqoctl(&self, cluster: &str, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bins.liqoctl)
            .args(args)
            .arg("--kubeconfig")
            .arg(self.env.kubeconfig_path(cluster))
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.bins.liqoctl.display()))?;
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

    /// Runs a command line as london's user (see [`crate::common::shell_london`]).
    fn shell_london(&self, line: &str) -> Result<()> {
        crate::common::shell_london(&self.env, &self.bins.liqoctl, line)
    }

    /// Starts `liqo-host run` for `cluster` (no leader election: one replica).
    pub fn start_host(&mut self, cluster: &str) -> Result<Host> {
        self.host_starts += 1;
        let metrics = free_port()?;
        std::fs::create_dir_all(&self.settings.log_dir)
            .with_context(|| format!("creating {}", self.settings.log_dir.display()))?;
        let log_path = self.settings.log_dir.join(format!(
            "{}-{cluster}-host-{}.log",
            self.name, self.host_starts
        ));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let started = Instant::now();
        let child = Command::new(&self.bins.host)
            .arg("run")
            .arg("--kubeconfig")
            .arg(self.env.kubeconfig_path(cluster))
            .arg("--metrics-addr")
            .arg(metrics.to_string())
            .arg("--workers")
            .arg(self.settings.workers.to_string())
            .arg("--no-leader-election")
            .arg("--plugin-cache-dir")
            .arg(self.env.dir().join("plugin-cache"))
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bins.host.display()))?;
        let pid = child.id();
        Ok(Host {
            child,
            pid,
            metrics,
            started,
            log: log_path,
        })
    }

    async fn wait_established(&self) -> Result<()> {
        let api: Api<DynamicObject> = Api::all_with(self.london.clone(), &foreign_cluster());
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(fc)) = api.get_opt("newyork").await {
                let established = fc.data["status"]["peeringConditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "OutgoingPeering" && c["status"] == "Established");
                if established {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("london's host did not establish the peering with newyork within 90 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `host`'s log says the peer is established (at most `timeout`).
    pub async fn wait_peer_established(host_log: &Path, timeout: Duration) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(host_log).unwrap_or_default();
            if text.contains("peer established") {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} does not say \"peer established\" after {timeout:?}",
                    host_log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Annotates london's ForeignCluster `newyork`: any change to it makes the host
    /// re-evaluate every NamespaceOffloading (see BENCHMARKS.md: after a restart the host
    /// otherwise waits for its 5-minute requeue).
    pub async fn touch_foreign_cluster(&self) -> Result<()> {
        let api: Api<DynamicObject> = Api::all_with(self.london.clone(), &foreign_cluster());
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        api.patch(
            "newyork",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"bench.liqo.io/touched": stamp.to_string()}}}),
            ),
        )
        .await
        .context("annotating ForeignCluster newyork")?;
        Ok(())
    }

    /// Creates namespace `name` in `cluster` with the bench label.
    pub async fn create_namespace(&self, cluster: &str, name: &str) -> Result<()> {
        let client = self.client(cluster);
        let ns: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {crate::workload::PHASE_LABEL: "ns"}},
        }))?;
        Api::<Namespace>::all(client)
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name} in {cluster}"))?;
        Ok(())
    }

    /// The admin client of `cluster`.
    pub fn client(&self, cluster: &str) -> Client {
        if cluster == "london" {
            self.london.clone()
        } else {
            self.newyork.clone()
        }
    }

    /// `liqoctl offload namespace NS --namespace-mapping-strategy EnforceSameName` (waits until
    /// the twin namespace exists in newyork).
    pub fn offload(&self, namespace: &str) -> Result<()> {
        self.liqoctl(
            "london",
            &[
                "offload",
                "namespace",
                namespace,
                "--namespace-mapping-strategy",
                "EnforceSameName",
                "--pod-offloading-strategy",
                "Local",
            ],
        )
        .map(drop)
    }

    /// Writes the NamespaceOffloading that `liqoctl offload namespace NS
    /// --namespace-mapping-strategy EnforceSameName` writes, without waiting for a host.
    pub async fn apply_offloading(&self, namespace: &str) -> Result<()> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.london.clone(), namespace, &namespace_offloading());
        api.patch(
            "offloading",
            &PatchParams::apply("liqoctl"),
            &Patch::Apply(json!({
                "apiVersion": "offloading.liqo.io/v1beta1",
                "kind": "NamespaceOffloading",
                "metadata": {"name": "offloading", "namespace": namespace},
                "spec": {"namespaceMappingStrategy": "EnforceSameName", "podOffloadingStrategy": "Local"},
            })),
        )
        .await
        .with_context(|| format!("applying the NamespaceOffloading of {namespace}"))?;
        Ok(())
    }

    /// The testenv cluster processes (etcd + API server + controller-manager + kubelet), by
    /// cluster name, from `state.json`.
    pub fn cluster_pids(&self) -> Vec<(String, u32)> {
        let path = self.env.dir().join("state.json");
        let Ok(text) = std::fs::read_to_string(path) else {
            return Vec::new();
        };
        let Ok(state) = serde_json::from_str::<serde_json::Value>(&text) else {
            return Vec::new();
        };
        state["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c["name"].as_str()?.to_string(), c["pid"].as_u64()? as u32)))
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut h) = self.london_host.take() {
            h.stop();
        }
        if let Some(mut h) = self.newyork_host.take() {
            h.stop();
        }
    }
}
