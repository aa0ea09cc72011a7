//! Watches that timestamp what arrives, each on its own thread and tokio runtime so that the
//! load generators never delay an arrival's timestamp.
//!
//! Everything lands in a [`Book`] keyed by strings:
//! - `CLUSTER:svc:NS/NAME#SEQ` when a Service carrying annotation `bench.liqo.io/seq=SEQ` is
//!   seen, `...#deleted` when it is deleted (same for `eps` EndpointSlices);
//! - `CLUSTER:ip+:IP` / `CLUSTER:ip-:IP` when an endpoint address appears in / disappears from a
//!   watched EndpointSlice.
//!
//! Only the first arrival of a key is kept.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Config, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::workload::{PHASE_LABEL, SEQ_ANNOTATION};

/// `endpointslice.kubernetes.io/managed-by`, and its value on the EndpointSlice controller's
/// slices.
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const CONTROLLER: &str = "endpointslice-controller.k8s.io";

/// First arrival times, and the live endpoint addresses of watched slices.
#[derive(Default)]
pub struct Book {
    arrivals: Mutex<HashMap<String, Instant>>,
    slice_ips: Mutex<HashMap<String, BTreeSet<String>>>,
    pod_ips: Mutex<HashMap<String, String>>,
}

impl Book {
    /// Records `key` at `at` unless it was already recorded.
    pub fn record(&self, key: String, at: Instant) {
        if let Ok(mut a) = self.arrivals.lock() {
            a.entry(key).or_insert(at);
        }
    }

    /// When `key` first arrived.
    pub fn get(&self, key: &str) -> Option<Instant> {
        self.arrivals.lock().ok()?.get(key).copied()
    }

    /// How many of `keys` arrived, and the latest of their arrivals.
    pub fn arrived(&self, keys: &[String]) -> (usize, Option<Instant>) {
        let Ok(a) = self.arrivals.lock() else {
            return (0, None);
        };
        let mut n = 0;
        let mut last: Option<Instant> = None;
        for k in keys {
            if let Some(t) = a.get(k) {
                n += 1;
                last = Some(last.map_or(*t, |l| l.max(*t)));
            }
        }
        (n, last)
    }

    /// Forgets every key starting with `prefix` (to measure a key again).
    pub fn forget_prefix(&self, prefix: &str) {
        if let Ok(mut a) = self.arrivals.lock() {
            a.retain(|k, _| !k.starts_with(prefix));
        }
    }

    /// The IP of pod `NS/NAME` in london, once it has one.
    pub fn pod_ip(&self, namespace: &str, name: &str) -> Option<String> {
        self.pod_ips
            .lock()
            .ok()?
            .get(&format!("{namespace}/{name}"))
            .cloned()
    }

    fn slice_update(&self, cluster: &str, slice: &str, ips: BTreeSet<String>, at: Instant) {
        // london's slice and its reflection in newyork have the same namespace and name.
        let slice_key = format!("{cluster}:{slice}");
        let previous = match self.slice_ips.lock() {
            Ok(mut s) => {
                if ips.is_empty() {
                    s.remove(&slice_key).unwrap_or_default()
                } else {
                    s.insert(slice_key, ips.clone()).unwrap_or_default()
                }
            }
            Err(_) => return,
        };
        for ip in ips.difference(&previous) {
            self.record(format!("{cluster}:ip+:{ip}"), at);
        }
        for ip in previous.difference(&ips) {
            self.record(format!("{cluster}:ip-:{ip}"), at);
        }
    }
}

/// A running watch; dropping it stops the watch.
pub struct Watch {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Watches objects `K` carrying the bench label in every namespace of the cluster behind
/// `config`, calling `handle` with each event and the instant it arrived. Returns once the
/// initial list is done.
fn spawn<K, F>(config: Config, label: String, mut handle: F) -> Result<Watch>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
    F: FnMut(Event<K>, Instant) + Send + 'static,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("watch-{label}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow!("watch runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let client = match Client::try_from(config) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!("watch client: {e}")));
                        return;
                    }
                };
                let api: Api<K> = Api::all(client);
                let stream = watcher::watcher(api, watcher::Config::default().labels(PHASE_LABEL));
                let mut stream = std::pin::pin!(stream);
                let mut stop_rx = stop_rx;
                let mut ready = Some(ready_tx);
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        event = stream.next() => match event {
                            None => break,
                            Some(Ok(event)) => {
                                let at = Instant::now();
                                let done = matches!(event, Event::InitDone);
                                handle(event, at);
                                if done && let Some(tx) = ready.take() {
                                    let _ = tx.send(Ok(()));
                                }
                            }
                            Some(Err(e)) => eprintln!("liqo-bench: watch {label}: {e} (retrying)"),
                        }
                    }
                }
            });
        })
        .context("spawning a watch thread")?;
    ready_rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| anyhow!("a watch did not list within 60 s"))??;
    Ok(Watch {
        stop: Some(stop_tx),
    })
}

fn seq_of<K: ResourceExt>(o: &K) -> String {
    o.annotations()
        .get(SEQ_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| "-".to_string())
}

fn object_key<K: ResourceExt>(o: &K) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

/// Records Services of `cluster` as `CLUSTER:svc:NS/NAME#SEQ` and `...#deleted`.
pub fn services(book: Arc<Book>, cluster: &str, config: Config) -> Result<Watch> {
    let cluster = cluster.to_string();
    spawn::<Service, _>(
        config,
        format!("{cluster}-services"),
        move |event, at| match event {
            Event::Apply(o) | Event::InitApply(o) => {
                book.record(
                    format!("{cluster}:svc:{}#{}", object_key(&o), seq_of(&o)),
                    at,
                );
            }
            Event::Delete(o) => {
                book.record(format!("{cluster}:svc:{}#deleted", object_key(&o)), at)
            }
            Event::Init | Event::InitDone => {}
        },
    )
}

/// Records EndpointSlices of `cluster` (in newyork all but the EndpointSlice controller's) as `CLUSTER:eps:NS/NAME#SEQ` and `...#deleted`, and their addresses as
/// `CLUSTER:ip+:IP` / `CLUSTER:ip-:IP`.
pub fn endpoint_slices(book: Arc<Book>, cluster: &str, config: Config) -> Result<Watch> {
    let cluster = cluster.to_string();
    let in_newyork = cluster == "newyork";
    spawn::<EndpointSlice, _>(config, format!("{cluster}-slices"), move |event, at| {
        let (o, deleted) = match event {
            Event::Apply(o) | Event::InitApply(o) => (o, false),
            Event::Delete(o) => (o, true),
            Event::Init | Event::InitDone => return,
        };
        // newyork's own EndpointSlice controller also keeps a (empty) slice for a reflected
        // Service with a selector: only the host's copies, and slices the benchmark writes
        // there directly, count.
        let manager = o.labels().get(MANAGED_BY).map(String::as_str);
        if in_newyork && manager == Some(CONTROLLER) {
            return;
        }
        let key = object_key(&o);
        let ips: BTreeSet<String> = if deleted {
            BTreeSet::new()
        } else {
            o.endpoints
                .iter()
                .flat_map(|e| e.addresses.iter().cloned())
                .collect()
        };
        book.slice_update(&cluster, &key, ips, at);
        let suffix = if deleted {
            "deleted".to_string()
        } else {
            seq_of(&o)
        };
        book.record(format!("{cluster}:eps:{key}#{suffix}"), at);
    })
}

/// Records the IPs of london's bench pods.
pub fn pods(book: Arc<Book>, config: Config) -> Result<Watch> {
    spawn::<Pod, _>(config, "london-pods".to_string(), move |event, _at| {
        if let Event::Apply(o) | Event::InitApply(o) = event
            && let Some(ip) = o.status.as_ref().and_then(|s| s.pod_ip.clone())
            && let Ok(mut ips) = book.pod_ips.lock()
        {
            ips.insert(object_key(&o), ip);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_arrival_wins_and_ip_changes_are_recorded() {
        let book = Book::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(5);
        book.record("k".into(), t0);
        book.record("k".into(), t1);
        assert_eq!(book.get("k"), Some(t0));

        let ips = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        book.slice_update("london", "ns/s", ips(&["10.0.0.1"]), t0);
        assert_eq!(book.get("newyork:ip+:10.0.0.1"), None);
        book.slice_update("newyork", "ns/s", ips(&["10.0.0.1"]), t0);
        book.slice_update("newyork", "ns/s", ips(&["10.0.0.2"]), t1);
        assert_eq!(book.get("newyork:ip+:10.0.0.1"), Some(t0));
        assert_eq!(book.get("newyork:ip-:10.0.0.1"), Some(t1));
        assert_eq!(book.get("newyork:ip+:10.0.0.2"), Some(t1));
        let (n, last) = book.arrived(&["k".into(), "newyork:ip+:10.0.0.2".into(), "x".into()]);
        assert_eq!((n, last), (2, Some(t1)));
        book.forget_prefix("newyork:ip");
        assert_eq!(book.get("newyork:ip+:10.0.0.2"), None);
    }
}
