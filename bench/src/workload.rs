//! What the benchmark writes, and the paced writer that writes it.
//!
//! Every object carries the label `bench.liqo.io/phase` (the watches select on it) and the
//! annotation `bench.liqo.io/seq`, bumped by each update. The Service plugin copies both to
//! the remote copy, so an arrival in newyork is matched to the london write that caused it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::{Mutex, Semaphore};

/// Label on every benchmark object: the phase that wrote it.
pub const PHASE_LABEL: &str = "bench.liqo.io/phase";
/// Annotation on every benchmark object: its version, bumped by each update.
pub const SEQ_ANNOTATION: &str = "bench.liqo.io/seq";
/// `endpointslice.kubernetes.io/managed-by` of the slices the benchmark writes itself (not the
/// EndpointSlice controller's value, so that controller leaves them alone).
pub const SLICE_MANAGER: &str = "bench.liqo.io";

/// One API write.
#[derive(Debug, Clone)]
pub enum Action {
    /// Create a Service (selector-less unless `selector` is set, so no controller writes
    /// EndpointSlices for it).
    CreateService {
        /// Namespace.
        ns: String,
        /// Name.
        name: String,
        /// Initial `bench.liqo.io/seq`.
        seq: u64,
        /// Value of `bench.liqo.io/phase`.
        phase: String,
        /// `spec.selector = {app: VALUE}`.
        selector: Option<String>,
    },
    /// Set `bench.liqo.io/seq` of a Service (JSON merge patch).
    UpdateService {
        /// Namespace.
        ns: String,
        /// Name.
        name: String,
        /// New `bench.liqo.io/seq`.
        seq: u64,
    },
    /// Delete a Service.
    DeleteService {
        /// Namespace.
        ns: String,
        /// Name.
        name: String,
    },
    /// Create an EndpointSlice for Service `service` with one endpoint.
    CreateSlice {
        /// Namespace.
        ns: String,
        /// Name.
        name: String,
        /// Its Service (`kubernetes.io/service-name`).
        service: String,
        /// Initial `bench.liqo.io/seq`.
        seq: u64,
        /// Value of `bench.liqo.io/phase`.
        phase: String,
        /// The endpoint's address.
        ip: String,
    },
    /// Create a Pod labelled `app: APP` (the kubelet stand-in runs it and gives it an IP).
    CreatePod {
        /// Namespace.
        ns: String,
        /// Name.
        name: String,
        /// Value of the `app` label.
        app: String,
        /// Value of `bench.liqo.io/phase`.
        phase: String,
    },
    /// Delete a Pod (default grace period, as `kubectl delete pod` does).
    DeletePod {
        /// Namespace.
        ns: String,
        /// Name.
        name: String,
    },
}

impl Action {
    /// What the write should make arrive on a watch (without the cluster prefix):
    /// `svc:NS/NAME#SEQ`, `svc:NS/NAME#deleted`, `eps:NS/NAME#SEQ`, `pod:NS/NAME`.
    pub fn arrival_key(&self) -> String {
        match self {
            Self::CreateService { ns, name, seq, .. } | Self::UpdateService { ns, name, seq } => {
                format!("svc:{ns}/{name}#{seq}")
            }
            Self::DeleteService { ns, name } => format!("svc:{ns}/{name}#deleted"),
            Self::CreateSlice { ns, name, seq, .. } => format!("eps:{ns}/{name}#{seq}"),
            Self::CreatePod { ns, name, .. } | Self::DeletePod { ns, name } => {
                format!("pod:{ns}/{name}")
            }
        }
    }

    /// Performs the write.
    pub async fn perform(&self, client: &Client) -> Result<(), kube::Error> {
        let pp = PostParams::default();
        match self {
            Self::CreateService {
                ns,
                name,
                seq,
                phase,
                selector,
            } => {
                let mut spec = json!({"ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]});
                if let Some(app) = selector {
                    spec["selector"] = json!({"app": app});
                }
                let svc: Service = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name, "labels": {PHASE_LABEL: phase},
                                 "annotations": {SEQ_ANNOTATION: seq.to_string()}},
                    "spec": spec,
                }))
                .map_err(kube::Error::SerdeError)?;
                Api::<Service>::namespaced(client.clone(), ns)
                    .create(&pp, &svc)
                    .await
                    .map(drop)
            }
            Self::UpdateService { ns, name, seq } => Api::<Service>::namespaced(client.clone(), ns)
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(
                        json!({"metadata": {"annotations": {SEQ_ANNOTATION: seq.to_string()}}}),
                    ),
                )
                .await
                .map(drop),
            Self::DeleteService { ns, name } => Api::<Service>::namespaced(client.clone(), ns)
                .delete(name, &DeleteParams::default())
                .await
                .map(drop),
            Self::CreateSlice {
                ns,
                name,
                service,
                seq,
                phase,
                ip,
            } => {
                let slice: EndpointSlice = serde_json::from_value(json!({
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": name,
                                 "labels": {PHASE_LABEL: phase,
                                            "kubernetes.io/service-name": service,
                                            "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER},
                                 "annotations": {SEQ_ANNOTATION: seq.to_string()}},
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false}}],
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                }))
                .map_err(kube::Error::SerdeError)?;
                Api::<EndpointSlice>::namespaced(client.clone(), ns)
                    .create(&pp, &slice)
                    .await
                    .map(drop)
            }
            Self::CreatePod {
                ns,
                name,
                app,
                phase,
            } => {
                let pod: Pod = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "labels": {PHASE_LABEL: phase, "app": app}},
                    "spec": {"containers": [{"name": "app", "image": "registry.example/bench:1",
                                             "ports": [{"containerPort": 8080}]}]},
                }))
                .map_err(kube::Error::SerdeError)?;
                Api::<Pod>::namespaced(client.clone(), ns)
                    .create(&pp, &pod)
                    .await
                    .map(drop)
            }
            Self::DeletePod { ns, name } => Api::<Pod>::namespaced(client.clone(), ns)
                .delete(name, &DeleteParams::default())
                .await
                .map(drop),
        }
    }
}

/// How a batch of writes is issued.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Writes per second, started on a fixed schedule (open loop); `None`: as fast as
    /// `in_flight` concurrent writers go (closed loop).
    pub rate: Option<f64>,
    /// Most writes in flight at once.
    pub in_flight: usize,
}

/// One write, timed.
#[derive(Debug, Clone)]
pub struct Timed {
    /// Its [`Action::arrival_key`].
    pub key: String,
    /// When the call started.
    pub start: Instant,
    /// When the call returned.
    pub end: Instant,
    /// Whether it succeeded.
    pub ok: bool,
}

/// The outcome of [`run`].
#[derive(Debug)]
pub struct Batch {
    /// Every write, in completion order.
    pub timed: Vec<Timed>,
    /// The first few errors.
    pub errors: Vec<String>,
    /// Number of failed writes.
    pub failed: usize,
    /// When the first write was due.
    pub started: Instant,
    /// When the last write returned.
    pub finished: Instant,
}

impl Batch {
    /// Writes that returned successfully per second, first start to last return.
    pub fn achieved_rate(&self) -> f64 {
        let ok = self.timed.iter().filter(|t| t.ok).count();
        let secs = self.finished.duration_since(self.started).as_secs_f64();
        if secs > 0.0 { ok as f64 / secs } else { 0.0 }
    }
}

/// Issues `actions` with `pace`; `done` (if given) counts successful writes as they return.
pub async fn run(
    client: &Client,
    actions: Vec<Action>,
    pace: Pace,
    done: Option<Arc<AtomicUsize>>,
) -> Batch {
    let sem = Arc::new(Semaphore::new(pace.in_flight.max(1)));
    let timed = Arc::new(Mutex::new(Vec::with_capacity(actions.len())));
    let errors = Arc::new(Mutex::new((0usize, Vec::<String>::new())));
    let started = Instant::now();
    for (i, action) in actions.into_iter().enumerate() {
        if let Some(rate) = pace.rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let Ok(permit) = sem.clone().acquire_owned().await else {
            break;
        };
        let (client, timed, errors, done) =
            (client.clone(), timed.clone(), errors.clone(), done.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            let result = action.perform(&client).await;
            let end = Instant::now();
            let ok = result.is_ok();
            if let Err(e) = result {
                let mut errs = errors.lock().await;
                errs.0 += 1;
                if errs.1.len() < 5 {
                    errs.1.push(format!("{}: {e}", action.arrival_key()));
                }
            } else if let Some(d) = &done {
                d.fetch_add(1, Ordering::Relaxed);
            }
            timed.lock().await.push(Timed {
                key: action.arrival_key(),
                start,
                end,
                ok,
            });
            drop(permit);
        });
    }
    let _ = sem.acquire_many(pace.in_flight.max(1) as u32).await;
    let finished = Instant::now();
    let timed = std::mem::take(&mut *timed.lock().await);
    let (failed, errors) = std::mem::take(&mut *errors.lock().await);
    Batch {
        finished: timed.iter().map(|t| t.end).max().unwrap_or(finished),
        timed,
        errors,
        failed,
        started,
    }
}
