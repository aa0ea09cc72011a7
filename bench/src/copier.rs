//! The whole-path floor: a minimal native Service copier, in-process.
//!
//! It does what the host does for a Service, with the cheapest code that does it: one watch on
//! a london namespace, a coalescing work queue, `workers` concurrent writers that write the
//! same-name Service in newyork's namespace of the same name with the admin client (`create`
//! when absent, `replace` with the last resourceVersion it wrote, `delete`). No plugin, no
//! server-side apply, no Events, no status, no ownership labels. Comparing the host with it
//! separates what the host adds from what the rig (both control planes on the same cores) costs
//! for a reflected object.
//!
//! It runs on its own thread and tokio runtime (as the host runs in its own process), so the
//! load generator does not delay it, and so its CPU can be read from its threads alone.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Config, ResourceExt};
use serde::Serialize;
use tokio::sync::Notify;

/// Annotation `kubectl apply` keeps on objects: describes the local object, never copied (the
/// Service plugin's rule).
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The only `clusterIP` copied: a headless Service stays headless.
const HEADLESS: &str = "None";

/// Waits between retries of a failed write (the key is re-queued, with its latest state).
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// How the copier writes newyork's copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CopierWrites {
    /// `create` (POST) when absent, `replace` (PUT) with the last resourceVersion it wrote: the
    /// cheapest writes the API server offers.
    Replace,
    /// Server-side apply with `force`, as the host (and Liqo) write: separates the cost of
    /// server-side apply from the rest of what the host does.
    Apply,
}

/// Field manager of the copier's server-side applies.
const COPIER_MANAGER: &str = "copier.bench.liqo.io";

/// The newyork Service for london Service `local`, by the Service plugin's rules (not its
/// code): name, labels and annotations (without `kubectl.kubernetes.io/last-applied-
/// configuration`); from `spec`: `type`, `selector`, `ipFamilyPolicy`, `externalName`,
/// `internalTrafficPolicy`, `allocateLoadBalancerNodePorts`, `loadBalancerSourceRanges`,
/// `publishNotReadyAddresses`, `sessionAffinity`, `externalTrafficPolicy` (NodePort and
/// LoadBalancer only), `clusterIP` only when `None` (headless), and the ports' `name`, `port`,
/// `targetPort`, `protocol` (TCP when absent) and `appProtocol`. Everything else (`clusterIP(s)`,
/// `ipFamilies`, node ports, status, uid, resourceVersion...) is left for newyork to allocate.
/// Empty values are omitted.
pub fn remote_service(local: &Service, namespace: &str) -> Service {
    let non_empty_map = |m: &Option<BTreeMap<String, String>>| m.clone().filter(|m| !m.is_empty());
    let non_empty_str = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let mut annotations = local.metadata.annotations.clone().unwrap_or_default();
    annotations.remove(LAST_APPLIED);
    let spec = local.spec.as_ref().map(|s| {
        let externally_accessible = matches!(s.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        let ports: Vec<ServicePort> = s
            .ports
            .iter()
            .flatten()
            .map(|p| ServicePort {
                name: non_empty_str(&p.name),
                port: p.port,
                target_port: p.target_port.clone(),
                protocol: Some(non_empty_str(&p.protocol).unwrap_or_else(|| "TCP".into())),
                app_protocol: non_empty_str(&p.app_protocol),
                node_port: None,
            })
            .collect();
        ServiceSpec {
            type_: non_empty_str(&s.type_),
            selector: non_empty_map(&s.selector),
            ip_family_policy: non_empty_str(&s.ip_family_policy),
            external_name: non_empty_str(&s.external_name),
            internal_traffic_policy: non_empty_str(&s.internal_traffic_policy),
            allocate_load_balancer_node_ports: s.allocate_load_balancer_node_ports,
            load_balancer_source_ranges: s
                .load_balancer_source_ranges
                .clone()
                .filter(|r| !r.is_empty()),
            publish_not_ready_addresses: s.publish_not_ready_addresses,
            session_affinity: non_empty_str(&s.session_affinity),
            external_traffic_policy: if externally_accessible {
                non_empty_str(&s.external_traffic_policy)
            } else {
                None
            },
            cluster_ip: (s.cluster_ip.as_deref() == Some(HEADLESS)).then(|| HEADLESS.into()),
            ports: (!ports.is_empty()).then_some(ports),
            ..ServiceSpec::default()
        }
    });
    Service {
        metadata: ObjectMeta {
            name: local.metadata.name.clone(),
            namespace: Some(namespace.to_string()),
            labels: non_empty_map(&local.metadata.labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// A work queue that coalesces by key, as a controller's: a key added while queued is queued
/// once; a key added while a worker holds it is queued again when that worker is done, so two
/// workers never hold the same key and the last change is always processed. It holds keys only:
/// the worker reads the key's latest state when it takes it.
#[derive(Debug, Default)]
pub struct WorkQueue {
    order: VecDeque<String>,
    queued: HashSet<String>,
    active: HashSet<String>,
    dirty: HashSet<String>,
}

impl WorkQueue {
    /// Queues `key`; false when it was coalesced with a pending entry (already queued, or held
    /// by a worker and already marked to run again).
    pub fn add(&mut self, key: &str) -> bool {
        if self.queued.contains(key) {
            return false;
        }
        if self.active.contains(key) {
            return self.dirty.insert(key.to_string());
        }
        self.queued.insert(key.to_string());
        self.order.push_back(key.to_string());
        true
    }

    /// Takes the oldest queued key; the caller holds it until [`WorkQueue::done`].
    pub fn next(&mut self) -> Option<String> {
        let key = self.order.pop_front()?;
        self.queued.remove(&key);
        self.active.insert(key.clone());
        Some(key)
    }

    /// Releases `key`; true when it changed meanwhile and was queued again.
    pub fn done(&mut self, key: &str) -> bool {
        self.active.remove(key);
        if self.dirty.remove(key) {
            self.queued.insert(key.to_string());
            self.order.push_back(key.to_string());
            true
        } else {
            false
        }
    }

    /// Changes not yet written: keys queued, keys held by a worker, and held keys changed
    /// again (the copier's backlog).
    pub fn depth(&self) -> usize {
        self.queued.len() + self.active.len() + self.dirty.len()
    }
}

/// What the copier did (JSON: `copier` in a phase's usage).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct CopierStats {
    /// `create` calls that succeeded.
    pub creates: u64,
    /// `replace` (PUT) calls that succeeded.
    pub replaces: u64,
    /// `delete` calls that succeeded (or found nothing to delete).
    pub deletes: u64,
    /// Changes whose newyork Service would not change (not written).
    pub unchanged: u64,
    /// Writes that found newyork not as the copier remembered it (conflict, already exists,
    /// not found) and were redone after a GET.
    pub conflicts: u64,
    /// Writes that failed and were retried.
    pub errors: u64,
    /// Watch events coalesced with a queued entry of the same key.
    pub coalesced: u64,
    /// CPU time of the copier's threads (watch, queue, writers), seconds.
    pub cpu_seconds: f64,
}

impl CopierStats {
    /// Adds `other` to `self` (several copiers in one phase).
    pub fn add(&mut self, other: &Self) {
        self.creates += other.creates;
        self.replaces += other.replaces;
        self.deletes += other.deletes;
        self.unchanged += other.unchanged;
        self.conflicts += other.conflicts;
        self.errors += other.errors;
        self.coalesced += other.coalesced;
        self.cpu_seconds += other.cpu_seconds;
    }
}

#[derive(Default)]
struct Counters {
    creates: AtomicU64,
    replaces: AtomicU64,
    deletes: AtomicU64,
    unchanged: AtomicU64,
    conflicts: AtomicU64,
    errors: AtomicU64,
    coalesced: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What the copier last wrote in newyork for a key.
#[derive(Clone)]
struct Written {
    resource_version: Option<String>,
    object: Service,
}

struct Shared {
    namespace: String,
    writes: CopierWrites,
    queue: Mutex<WorkQueue>,
    wake: Notify,
    /// Latest london state per name; `None`: deleted.
    desired: Mutex<HashMap<String, Option<Service>>>,
    /// What it wrote in newyork, per name. A key is held by one worker at a time, so an entry
    /// is only read and written by that worker.
    written: Mutex<HashMap<String, Written>>,
    depth: Arc<AtomicUsize>,
    counters: Counters,
    threads: Mutex<Vec<u32>>,
}

impl Shared {
    fn enqueue(&self, key: &str) {
        let added = {
            let Ok(mut q) = self.queue.lock() else {
                return;
            };
            let added = q.add(key);
            self.depth.store(q.depth(), Ordering::Relaxed);
            added
        };
        if added {
            self.wake.notify_one();
        } else {
            bump(&self.counters.coalesced);
        }
    }

    fn set_desired(&self, key: String, state: Option<Service>) {
        if let Ok(mut d) = self.desired.lock() {
            d.insert(key.clone(), state);
        }
        self.enqueue(&key);
    }

    async fn take(&self) -> String {
        loop {
            // The permit notify_one leaves when nobody waits covers an add between this check
            // and the wait.
            if let Ok(mut q) = self.queue.lock()
                && let Some(key) = q.next()
            {
                return key;
            }
            self.wake.notified().await;
        }
    }

    fn release(&self, key: &str) {
        let requeued = {
            let Ok(mut q) = self.queue.lock() else {
                return;
            };
            let requeued = q.done(key);
            self.depth.store(q.depth(), Ordering::Relaxed);
            requeued
        };
        if requeued {
            self.wake.notify_one();
        }
    }
}

/// A running copier; dropping it stops it.
pub struct Copier {
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Copier {
    /// Starts copying the Services of london's namespace `namespace` to newyork's namespace of
    /// the same name (which must exist) with `workers` concurrent writers. Returns once the
    /// watch has listed.
    pub fn start(
        london: Config,
        newyork: Config,
        namespace: &str,
        workers: usize,
        writes: CopierWrites,
    ) -> Result<Self> {
        let shared = Arc::new(Shared {
            namespace: namespace.to_string(),
            writes,
            queue: Mutex::default(),
            wake: Notify::new(),
            desired: Mutex::default(),
            written: Mutex::default(),
            depth: Arc::default(),
            counters: Counters::default(),
            threads: Mutex::default(),
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("copier-{namespace}"))
                .spawn(move || {
                    let recorder = shared.clone();
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .thread_name("copier")
                        .on_thread_start(move || {
                            if let Some(tid) = current_tid()
                                && let Ok(mut t) = recorder.threads.lock()
                            {
                                t.push(tid);
                            }
                        })
                        .enable_all()
                        .build();
                    let rt = match rt {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready_tx.send(Err(anyhow!("copier runtime: {e}")));
                            return;
                        }
                    };
                    if let Some(tid) = current_tid()
                        && let Ok(mut t) = shared.threads.lock()
                    {
                        t.push(tid);
                    }
                    rt.block_on(run(shared, london, newyork, workers, ready_tx, stop_rx));
                })
                .context("spawning the copier thread")?
        };
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| anyhow!("the copier's watch did not list within 60 s"))??;
        Ok(Self {
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Keys queued or being written: the backlog, for the throughput step's `queue max`.
    pub fn depth_gauge(&self) -> Arc<AtomicUsize> {
        self.shared.depth.clone()
    }

    /// What it did so far, with the CPU time of its threads.
    pub fn stats(&self) -> CopierStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let tids = self
            .shared
            .threads
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        CopierStats {
            creates: get(&c.creates),
            replaces: get(&c.replaces),
            deletes: get(&c.deletes),
            unchanged: get(&c.unchanged),
            conflicts: get(&c.conflicts),
            errors: get(&c.errors),
            coalesced: get(&c.coalesced),
            cpu_seconds: tids
                .iter()
                .filter_map(|t| crate::procstat::thread_cpu_seconds(*t).ok())
                .sum(),
        }
    }

    /// Stops it and returns what it did (CPU read before its threads exit).
    pub fn stop(mut self) -> CopierStats {
        let stats = self.stats();
        self.shutdown();
        stats
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Copier {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// This thread's id, from `/proc/thread-self` (`PID/task/TID`).
fn current_tid() -> Option<u32> {
    std::fs::read_link("/proc/thread-self")
        .ok()?
        .file_name()?
        .to_str()?
        .parse()
        .ok()
}

async fn run(
    shared: Arc<Shared>,
    london: Config,
    newyork: Config,
    workers: usize,
    ready: std::sync::mpsc::Sender<Result<()>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    // Clients are made here: their connection tasks then run on the copier's runtime.
    let clients = Client::try_from(london).and_then(|l| Ok((l, Client::try_from(newyork)?)));
    let (london, newyork) = match clients {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(anyhow!("copier clients: {e}")));
            return;
        }
    };
    let target: Api<Service> = Api::namespaced(newyork, &shared.namespace);
    for _ in 0..workers.max(1) {
        let (shared, target) = (shared.clone(), target.clone());
        tokio::spawn(async move {
            loop {
                let key = shared.take().await;
                let ok = write(&shared, &target, &key).await;
                shared.release(&key);
                if !ok {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(RETRY_AFTER).await;
                        shared.enqueue(&key);
                    });
                }
            }
        });
    }
    let source: Api<Service> = Api::namespaced(london, &shared.namespace);
    let stream = watcher::watcher(source, watcher::Config::default());
    let mut stream = std::pin::pin!(stream);
    let mut stop = stop;
    let mut ready = Some(ready);
    // Names listed since the last (re)list began: after a relist, what is gone was deleted.
    let mut listed: Option<HashSet<String>> = None;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            event = stream.next() => match event {
                None => break,
                Some(Err(e)) => eprintln!("liqo-bench: copier watch {}: {e} (retrying)", shared.namespace),
                Some(Ok(event)) => match event {
                    Event::Init => listed = Some(HashSet::new()),
                    Event::InitApply(o) => {
                        let name = o.name_any();
                        if let Some(l) = listed.as_mut() {
                            l.insert(name.clone());
                        }
                        shared.set_desired(name, Some(o));
                    }
                    Event::InitDone => {
                        let seen = listed.take().unwrap_or_default();
                        let gone: Vec<String> = shared
                            .desired
                            .lock()
                            .map(|d| {
                                d.iter()
                                    .filter(|(k, v)| v.is_some() && !seen.contains(*k))
                                    .map(|(k, _)| k.clone())
                                    .collect()
                            })
                            .unwrap_or_default();
                        for k in gone {
                            shared.set_desired(k, None);
                        }
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    Event::Apply(o) => shared.set_desired(o.name_any(), Some(o)),
                    Event::Delete(o) => shared.set_desired(o.name_any(), None),
                },
            }
        }
    }
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Makes newyork's `key` match its latest london state; false when it must be retried.
async fn write(shared: &Shared, target: &Api<Service>, key: &str) -> bool {
    let desired = shared
        .desired
        .lock()
        .ok()
        .and_then(|d| d.get(key).cloned())
        .flatten();
    let c = &shared.counters;
    let pp = PostParams::default();
    let Some(local) = desired else {
        return match target.delete(key, &DeleteParams::default()).await {
            // 404: never written, or already gone.
            Ok(_) => deleted(shared, key),
            Err(e) if status_code(&e) == Some(404) => deleted(shared, key),
            Err(e) => failed(shared, key, &e),
        };
    };
    let remote = remote_service(&local, &shared.namespace);
    let known = shared.written.lock().ok().and_then(|w| w.get(key).cloned());
    if known.as_ref().is_some_and(|k| k.object == remote) {
        bump(&c.unchanged);
        return true;
    }
    if shared.writes == CopierWrites::Apply {
        let params = PatchParams::apply(COPIER_MANAGER).force();
        return match target.patch(key, &params, &Patch::Apply(&remote)).await {
            Ok(written) => wrote(shared, key, written, remote, known.is_none()),
            Err(e) => failed(shared, key, &e),
        };
    }
    let first = match &known {
        Some(k) => {
            let mut obj = remote.clone();
            obj.metadata.resource_version = k.resource_version.clone();
            target.replace(key, &pp, &obj).await.map(|o| (o, false))
        }
        None => target.create(&pp, &remote).await.map(|o| (o, true)),
    };
    let result = match first {
        Ok(r) => Ok(r),
        // newyork's copy is not what the copier remembers (it restarted, or someone else
        // wrote it): read it, then write over it.
        Err(e) if matches!(status_code(&e), Some(404 | 409)) => {
            bump(&c.conflicts);
            match target.get_opt(key).await {
                Ok(Some(current)) => {
                    let mut obj = remote.clone();
                    obj.metadata.resource_version = current.metadata.resource_version;
                    target.replace(key, &pp, &obj).await.map(|o| (o, false))
                }
                Ok(None) => target.create(&pp, &remote).await.map(|o| (o, true)),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    match result {
        Ok((written, created)) => wrote(shared, key, written, remote, created),
        Err(e) => failed(shared, key, &e),
    }
}

/// Counts a successful write of `key` and remembers what newyork now holds.
fn wrote(shared: &Shared, key: &str, written: Service, remote: Service, created: bool) -> bool {
    let c = &shared.counters;
    bump(if created { &c.creates } else { &c.replaces });
    if let Ok(mut w) = shared.written.lock() {
        w.insert(
            key.to_string(),
            Written {
                resource_version: written.metadata.resource_version,
                object: remote,
            },
        );
    }
    true
}

fn failed(shared: &Shared, key: &str, e: &kube::Error) -> bool {
    if shared.counters.errors.fetch_add(1, Ordering::Relaxed) < 5 {
        eprintln!(
            "liqo-bench: copier {}/{key}: {e} (retrying)",
            shared.namespace
        );
    }
    false
}

/// Forgets a deleted key (its london state too, unless it came back meanwhile).
fn deleted(shared: &Shared, key: &str) -> bool {
    bump(&shared.counters.deletes);
    if let Ok(mut w) = shared.written.lock() {
        w.remove(key);
    }
    if let Ok(mut d) = shared.desired.lock()
        && d.get(key).is_some_and(Option::is_none)
    {
        d.remove(key);
    }
    true
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use serde_json::json;

    use super::*;

    fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn remote_service_keeps_what_the_service_plugin_keeps() {
        // (case, london Service, expected newyork Service)
        let cases = [
            (
                "bench Service: labels, seq annotation, ports kept; allocated fields dropped",
                json!({"metadata": {"name": "s", "namespace": "x", "uid": "u", "resourceVersion": "7",
                                    "labels": {"bench.liqo.io/phase": "p"},
                                    "annotations": {"bench.liqo.io/seq": "2",
                                                    LAST_APPLIED: "{}"}},
                       "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"],
                                "ipFamilies": ["IPv4"], "sessionAffinity": "None",
                                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
                       "status": {"loadBalancer": {}}}),
                json!({"metadata": {"name": "s", "namespace": "x",
                                    "labels": {"bench.liqo.io/phase": "p"},
                                    "annotations": {"bench.liqo.io/seq": "2"}},
                       "spec": {"type": "ClusterIP", "sessionAffinity": "None",
                                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}),
            ),
            (
                "headless stays headless; selector copied; protocol defaults to TCP",
                json!({"metadata": {"name": "h"},
                       "spec": {"clusterIP": "None", "selector": {"app": "a"}, "ports": [{"port": 53}]}}),
                json!({"metadata": {"name": "h", "namespace": "x"},
                       "spec": {"clusterIP": "None", "selector": {"app": "a"},
                                "ports": [{"port": 53, "protocol": "TCP"}]}}),
            ),
            (
                "node port and externalTrafficPolicy: the policy only for NodePort, never the port",
                json!({"metadata": {"name": "n"},
                       "spec": {"type": "NodePort", "externalTrafficPolicy": "Local",
                                "ports": [{"port": 80, "nodePort": 30080, "protocol": "UDP"}]}}),
                json!({"metadata": {"name": "n", "namespace": "x"},
                       "spec": {"type": "NodePort", "externalTrafficPolicy": "Local",
                                "ports": [{"port": 80, "protocol": "UDP"}]}}),
            ),
            (
                "ClusterIP with externalTrafficPolicy: dropped (newyork would reject it)",
                json!({"metadata": {"name": "c", "labels": {}, "annotations": {LAST_APPLIED: "{}"}},
                       "spec": {"type": "ClusterIP", "externalTrafficPolicy": "Cluster", "selector": {}}}),
                json!({"metadata": {"name": "c", "namespace": "x"}, "spec": {"type": "ClusterIP"}}),
            ),
        ];
        for (case, local, want) in cases {
            let got = remote_service(&service(local), "x");
            assert_eq!(got, service(want), "{case}");
        }
        let s = remote_service(
            &service(
                json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": "web"}]}}),
            ),
            "x",
        );
        assert_eq!(
            s.spec.unwrap().ports.unwrap()[0].target_port,
            Some(IntOrString::String("web".into())),
            "a named targetPort is kept"
        );
    }

    #[test]
    fn work_queue_coalesces_by_key() {
        // (case, operations, keys taken in order, depth at the end)
        // Operations: "+k" add, ">" take the next key, "-k" done with k.
        let cases: [(&str, &[&str], &[&str], usize); 5] = [
            (
                "each key once, in order",
                &["+a", "+b", ">", ">"],
                &["a", "b"],
                2,
            ),
            (
                "a key added twice while queued is taken once",
                &["+a", "+b", "+a", ">", ">", ">"],
                &["a", "b"],
                2,
            ),
            (
                "a key changed while held is taken again after done, not before",
                &["+a", ">", "+a", ">", "-a", ">"],
                &["a", "a"],
                1,
            ),
            (
                "changed twice while held: taken once more",
                &["+a", ">", "+a", "+a", "-a", ">", "-a", ">"],
                &["a", "a"],
                0,
            ),
            (
                "done without a change: nothing left",
                &["+a", ">", "-a", ">"],
                &["a"],
                0,
            ),
        ];
        for (case, ops, want, depth) in cases {
            let mut q = WorkQueue::default();
            let mut taken = Vec::new();
            for op in ops {
                match op.split_at(1) {
                    ("+", k) => {
                        q.add(k);
                    }
                    (">", _) => taken.extend(q.next()),
                    ("-", k) => {
                        q.done(k);
                    }
                    _ => unreachable!(),
                }
            }
            assert_eq!(taken, want, "{case}");
            assert_eq!(q.depth(), depth, "{case}: depth");
        }
    }

    #[test]
    fn add_says_whether_it_queued() {
        let mut q = WorkQueue::default();
        assert!(q.add("a"));
        assert!(!q.add("a"), "coalesced with the queued entry");
        assert_eq!(q.next().as_deref(), Some("a"));
        assert!(q.add("a"), "held: marked to run again");
        assert!(!q.add("a"), "already marked");
        assert!(q.done("a"), "queued again on done");
        assert!(!q.done("a"));
    }

    #[test]
    fn stats_add_up() {
        let mut a = CopierStats {
            creates: 1,
            cpu_seconds: 0.5,
            ..CopierStats::default()
        };
        a.add(&CopierStats {
            creates: 2,
            deletes: 3,
            cpu_seconds: 0.25,
            ..CopierStats::default()
        });
        assert_eq!((a.creates, a.deletes, a.cpu_seconds), (3, 3, 0.75));
    }

    #[test]
    fn this_thread_has_an_id_and_a_cpu_time() {
        let tid = current_tid().expect("a thread id from /proc/thread-self");
        let cpu = crate::procstat::thread_cpu_seconds(tid).expect("its /proc stat");
        assert!(cpu >= 0.0);
        assert!(
            crate::procstat::thread_cpu_seconds(u32::MAX).is_err(),
            "no such thread"
        );
    }
}
