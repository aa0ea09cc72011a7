//! Network mode (`testenv up --network`): each cluster has its own network namespace with a
//! real kube-proxy, pods whose command names a provided binary run as processes with their pod
//! IPs, and the cluster namespaces are linked by a "WAN" bridge. Everything here needs root.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, bail};
use ipnet::IpNet;
use serde::Deserialize;

use crate::{KillOnDrop, TestEnv, unique_name};

/// Network-mode details of one cluster, from `DIR/state.json`.
#[derive(Debug, Clone)]
pub struct ClusterNetwork {
    /// The cluster's network namespace (`ip netns` name): the "node".
    pub netns: String,
    /// The namespace's address on the WAN (also the Node's InternalIP).
    pub wan_address: Ipv4Addr,
}

/// Network-mode details of an environment, from `DIR/state.json`.
#[derive(Debug, Clone)]
pub struct NetworkInfo {
    /// Prefix of every network namespace of the environment (`lt-<hash>-`).
    pub prefix: String,
    /// The namespace holding the WAN bridge.
    pub wan_namespace: String,
    /// The network between the clusters.
    pub wan_cidr: IpNet,
    /// Per cluster, by name.
    pub clusters: BTreeMap<String, ClusterNetwork>,
}

#[derive(Deserialize)]
struct StateFile {
    network: Option<StateNetwork>,
    clusters: Vec<StateCluster>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateNetwork {
    prefix: String,
    wan_namespace: String,
    #[serde(rename = "wanCIDR")]
    wan_cidr: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateCluster {
    name: String,
    #[serde(default)]
    netns: String,
    #[serde(default)]
    wan_address: String,
}

/// Whether this process runs as root (effective uid 0), which network mode needs.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
            .unwrap_or(false)
    })
}

/// A fresh directory holding a link to each of `binaries`, for `testenv up --pod-binaries`:
/// the kubelet stand-ins run exactly these (by file name) as pod processes.
pub fn pod_binaries_dir(binaries: &[&Path]) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(unique_name(&format!(
        "liqo-pod-binaries-{}",
        std::process::id()
    )));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for bin in binaries {
        let name = bin
            .file_name()
            .with_context(|| format!("{} has no file name", bin.display()))?;
        let target = bin
            .canonicalize()
            .with_context(|| format!("{} (build it first)", bin.display()))?;
        std::os::unix::fs::symlink(&target, dir.join(name))
            .with_context(|| format!("linking {} into {}", target.display(), dir.display()))?;
    }
    Ok(dir)
}

/// The network namespaces (`/run/netns`) whose names start with `prefix`.
pub fn network_namespaces(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

impl TestEnv {
    /// Starts an environment in network mode (`testenv up --network --pod-binaries DIR`), where
    /// `pod_binaries` is a directory such as [`pod_binaries_dir`] makes. Fails at once, saying
    /// so, when not run as root.
    pub fn start_network(
        clusters: &[&str],
        pod_binaries: &Path,
        extra_args: &[&str],
    ) -> anyhow::Result<TestEnv> {
        if !is_root() {
            bail!(
                "network mode (testenv up --network) needs root: it creates network namespaces \
                 and iptables rules; run this test as root (CI does)"
            );
        }
        let dir = pod_binaries
            .to_str()
            .with_context(|| format!("{} is not UTF-8", pod_binaries.display()))?;
        let mut args = vec!["--network", "--pod-binaries", dir];
        args.extend_from_slice(extra_args);
        Self::start_with_args(clusters, &args)
    }

    /// The environment's network-mode details.
    ///
    /// # Errors
    /// If `state.json` cannot be read or the environment is not in network mode.
    pub fn network(&self) -> anyhow::Result<NetworkInfo> {
        let path = self.dir.join("state.json");
        let data = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let state: StateFile =
            serde_json::from_slice(&data).with_context(|| format!("parsing {}", path.display()))?;
        let Some(net) = state.network else {
            bail!(
                "the environment in {} is not in network mode",
                self.dir.display()
            );
        };
        let mut clusters = BTreeMap::new();
        for c in state.clusters {
            let wan_address = c
                .wan_address
                .parse()
                .with_context(|| format!("wanAddress {:?} of {}", c.wan_address, c.name))?;
            clusters.insert(
                c.name,
                ClusterNetwork {
                    netns: c.netns,
                    wan_address,
                },
            );
        }
        Ok(NetworkInfo {
            prefix: net.prefix,
            wan_namespace: net.wan_namespace,
            wan_cidr: net
                .wan_cidr
                .parse()
                .with_context(|| format!("wanCIDR {:?}", net.wan_cidr))?,
            clusters,
        })
    }

    fn exec_command<I, S>(&self, cluster: &str, program: &OsStr, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.testenv_bin);
        cmd.arg("exec")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--cluster")
            .arg(cluster)
            .arg("--")
            .arg(program)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `program ARGS...` inside the named cluster's network namespace (`testenv exec`)
    /// and returns its output. The kubeconfigs work there too (the API server is forwarded).
    ///
    /// # Panics
    /// If `testenv` cannot be run.
    pub fn exec_in<I, S>(&self, cluster: &str, program: impl AsRef<OsStr>, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.exec_command(cluster, program.as_ref(), args)
            .output()
            .unwrap_or_else(|e| panic!("running {} exec: {e}", self.testenv_bin.display()))
    }

    /// Starts `program ARGS...` with extra environment variables inside the named cluster's
    /// network namespace, in the background; killed when the guard is dropped. Its output goes
    /// to the test's stderr.
    ///
    /// # Errors
    /// If the process cannot be started.
    pub fn spawn_in<I, S>(
        &self,
        cluster: &str,
        program: impl AsRef<OsStr>,
        args: I,
        envs: &[(&str, &str)],
    ) -> anyhow::Result<KillOnDrop>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.exec_command(cluster, program.as_ref(), args);
        cmd.envs(envs.iter().copied()).stdout(Stdio::null());
        let child = cmd
            .spawn()
            .with_context(|| format!("running {} exec", self.testenv_bin.display()))?;
        Ok(KillOnDrop(child))
    }

    /// `GET url` from inside the named cluster's network namespace (`testenv http-get`);
    /// the body of a 2xx answer.
    ///
    /// # Errors
    /// If the connection fails or the status is not 2xx (the message says which).
    pub fn http_get_in(&self, cluster: &str, url: &str) -> anyhow::Result<String> {
        self.testenv("http-get", ["--cluster", cluster, "--timeout", "5s", url])
    }
}
