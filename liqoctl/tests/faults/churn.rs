//! Churn: Services created, updated and deleted in london at a steady rate, through the API
//! server, whatever happens to it meanwhile.
//!
//! A pool of Service names is spread over the offloaded namespaces. Each operation picks a name:
//! an absent one is created, a present one is updated (its generation annotation and port
//! change, so a stale remote copy is visible) or deleted, half and half. Each name belongs to
//! one worker, so operations on one name never overlap. Errors (the API server is down, a
//! request timed out) are counted and the generator goes on: the convergence check compares
//! with what london really holds, not with what the generator believes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Error};
use serde_json::json;
use tokio::task::JoinHandle;

/// Annotation the generator bumps on every update; the Service plugin copies annotations.
pub const GENERATION_ANNOTATION: &str = "faults.liqo.io/generation";
/// Label on every churned Service.
pub const POOL_LABEL: &str = "faults.liqo.io/pool";
/// Concurrent workers (each owns `pool / WORKERS` names).
const WORKERS: usize = 8;
/// A request that takes longer counts as an error (the API server went away mid-request).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the churn has done so far.
#[derive(Debug, Default)]
pub struct Counters {
    pub creates: AtomicU64,
    pub updates: AtomicU64,
    pub deletes: AtomicU64,
    pub errors: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Totals {
    pub creates: u64,
    pub updates: u64,
    pub deletes: u64,
    pub errors: u64,
}

impl Totals {
    /// Successful operations (create, update, delete).
    pub fn ops(&self) -> u64 {
        self.creates + self.updates + self.deletes
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Totals) -> Totals {
        Totals {
            creates: self.creates - earlier.creates,
            updates: self.updates - earlier.updates,
            deletes: self.deletes - earlier.deletes,
            errors: self.errors - earlier.errors,
        }
    }
}

impl Counters {
    pub fn totals(&self) -> Totals {
        Totals {
            creates: self.creates.load(Ordering::Relaxed),
            updates: self.updates.load(Ordering::Relaxed),
            deletes: self.deletes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// Settings of the churn.
#[derive(Debug, Clone)]
pub struct ChurnConfig {
    /// Namespaces in london (offloaded) the pool is spread over.
    pub namespaces: Vec<String>,
    /// Number of Service names.
    pub pool: usize,
    /// Target operations per second, over all workers.
    pub rate: f64,
}

/// The generation of the next operation, unique across every churn of the process (so a value
/// seen in newyork always names one write in london).
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The generator's state, shared by its workers.
struct Shared {
    client: Client,
    config: ChurnConfig,
    running: AtomicBool,
    counters: Arc<Counters>,
}

/// A running churn; [`Churn::stop`] ends it.
pub struct Churn {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

/// Name of pool member `i` and its namespace.
pub fn member(config: &ChurnConfig, i: usize) -> (String, String) {
    (
        config.namespaces[i % config.namespaces.len()].clone(),
        format!("churn-{i:03}"),
    )
}

/// The Service the generator writes for `name` at `generation`.
pub fn service(namespace: &str, name: &str, generation: u64) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {POOL_LABEL: "true", "app.kubernetes.io/name": name},
            "annotations": {GENERATION_ANNOTATION: generation.to_string()},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": port(generation), "targetPort": 8080, "protocol": "TCP"}],
        }
    }))
    .expect("a valid Service")
}

/// The port of generation `g`: it changes with every update.
fn port(generation: u64) -> u64 {
    8000 + generation % 1000
}

impl Churn {
    /// Starts the workers (on the current runtime).
    pub fn start(client: Client, config: ChurnConfig) -> Churn {
        let shared = Arc::new(Shared {
            client,
            config,
            running: AtomicBool::new(true),
            counters: Arc::default(),
        });
        let workers = (0..WORKERS)
            .map(|w| {
                let shared = shared.clone();
                tokio::spawn(async move { shared.work(w).await })
            })
            .collect();
        Churn { shared, workers }
    }

    /// The counters (live).
    pub fn totals(&self) -> Totals {
        self.shared.counters.totals()
    }

    /// Stops every worker once its current request ends; returns the totals.
    pub async fn stop(self) -> Totals {
        self.shared.running.store(false, Ordering::Relaxed);
        for worker in self.workers {
            let _ = worker.await;
        }
        self.shared.counters.totals()
    }
}

impl Shared {
    async fn work(&self, worker: usize) {
        let config = &self.config;
        let mine: Vec<usize> = (worker..config.pool).step_by(WORKERS).collect();
        if mine.is_empty() {
            return;
        }
        // What this worker believes exists (corrected by AlreadyExists / NotFound answers).
        let mut present: BTreeMap<usize, bool> = mine.iter().map(|&i| (i, false)).collect();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ ((worker as u64 + 1) * 0x1234_5678_9abc));
        let period = Duration::from_secs_f64(WORKERS as f64 / config.rate);
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while self.running.load(Ordering::Relaxed) {
            ticks.tick().await;
            let i = mine[rng.below(mine.len())];
            let (namespace, name) = member(config, i);
            let api: Api<Service> = Api::namespaced(self.client.clone(), &namespace);
            let exists = present[&i];
            let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
            let outcome = if !exists {
                let svc = service(&namespace, &name, generation);
                match timed(api.create(&PostParams::default(), &svc)).await {
                    Ok(_) => Op::Created,
                    Err(Some(Error::Api(s))) if s.code == 409 => Op::WasPresent,
                    Err(_) => Op::Failed,
                }
            } else if rng.below(2) == 0 {
                let patch = json!({
                    "metadata": {"annotations": {GENERATION_ANNOTATION: generation.to_string()}},
                    "spec": {"ports": [{"name": "http", "port": port(generation), "targetPort": 8080, "protocol": "TCP"}]},
                });
                match timed(api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))).await
                {
                    Ok(_) => Op::Updated,
                    Err(Some(Error::Api(s))) if s.code == 404 => Op::WasAbsent,
                    Err(_) => Op::Failed,
                }
            } else {
                match timed(api.delete(&name, &DeleteParams::default())).await {
                    Ok(_) => Op::Deleted,
                    Err(Some(Error::Api(s))) if s.code == 404 => Op::WasAbsent,
                    Err(_) => Op::Failed,
                }
            };
            let c = &self.counters;
            match outcome {
                Op::Created => {
                    c.creates.fetch_add(1, Ordering::Relaxed);
                    present.insert(i, true);
                }
                Op::Updated => {
                    c.updates.fetch_add(1, Ordering::Relaxed);
                }
                Op::Deleted => {
                    c.deletes.fetch_add(1, Ordering::Relaxed);
                    present.insert(i, false);
                }
                Op::WasPresent => {
                    present.insert(i, true);
                }
                Op::WasAbsent => {
                    present.insert(i, false);
                }
                Op::Failed => {
                    c.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

enum Op {
    Created,
    Updated,
    Deleted,
    WasPresent,
    WasAbsent,
    Failed,
}

/// A request bounded by [`REQUEST_TIMEOUT`]; `Err(None)` when it timed out.
async fn timed<T>(
    request: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Option<Error>> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}

/// A small deterministic generator (no dependency needed for picking names).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
