//! Convergence: does newyork hold exactly the reflected set that london implies?
//!
//! The truth is what london's API server holds now (not what the churn believes it did). For
//! every Service and EndpointSlice in london's offloaded namespaces, newyork must hold one
//! remote copy that is ours (labels `offloading.liqo.io/origin=london`,
//! `offloading.liqo.io/destination=newyork`; slices also
//! `endpointslice.kubernetes.io/managed-by=endpointslice.reflection.liqo.io`) in the twin
//! namespace, with the fields the built-in plugins derive. Every object of ours in newyork
//! must have a source in london.
//!
//! - **missing**: a london object without its copy in newyork;
//! - **stale**: a copy whose fields differ from what the plugin derives from the london object
//!   now (Services: labels, annotations, type, selector, ports, and a ClusterIP from newyork's
//!   own range; slices: labels, address type, endpoints, ports);
//! - **orphaned**: a copy of ours whose london source is gone;
//! - **duplicated**: a second copy of one london object (same name, in a newyork namespace
//!   that is not its twin).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::Value;

pub const ORIGIN: &str = "offloading.liqo.io/origin";
pub const DESTINATION: &str = "offloading.liqo.io/destination";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGED_BY_REFLECTION: &str = "endpointslice.reflection.liqo.io";
const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Added by the host to every applied object.
const INTENT_HASH: &str = "reflection.liqo.io/intent-hash";
/// Never reflected by the Service plugin.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// How long a clean comparison waits for london's own EndpointSlice controller to catch up.
pub const LONDON_PENDING_GRACE: Duration = Duration::from_secs(3);

/// Who and what to compare.
pub struct Checker {
    pub london: Client,
    pub newyork: Client,
    /// Offloaded london namespaces and their twins in newyork.
    pub twins: BTreeMap<String, String>,
    /// newyork as testenv describes it: reflected ClusterIPs come from its Service CIDR.
    pub newyork_info: testsupport::ClusterInfo,
}

/// One comparison of both sides.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Check {
    /// Services in london's offloaded namespaces.
    pub london_services: usize,
    /// EndpointSlices in london's offloaded namespaces.
    pub london_slices: usize,
    /// Services of ours in newyork (any namespace).
    pub newyork_services: usize,
    /// EndpointSlices of ours in newyork (any namespace).
    pub newyork_slices: usize,
    pub missing: usize,
    pub stale: usize,
    pub orphaned: usize,
    pub duplicated: usize,
    /// london Services with a selector for which london's own EndpointSlice controller has not
    /// published a slice yet (not the host's business, but the comparison waits for it: a
    /// restarted controller-manager catches up after its API server).
    pub london_pending: usize,
    /// A few examples of each problem, for the failure message.
    #[serde(skip)]
    pub examples: Vec<String>,
}

impl Check {
    /// Objects checked: london objects compared with their copies, plus newyork objects checked
    /// for a source.
    pub fn checked(&self) -> usize {
        self.london_services + self.london_slices + self.newyork_services + self.newyork_slices
    }

    pub fn problems(&self) -> usize {
        self.missing + self.stale + self.orphaned + self.duplicated
    }

    /// Keeps `problem` as an example, four of each category at most.
    fn note(&mut self, problem: String) {
        let category = problem.split(':').next().unwrap_or_default();
        let same = self
            .examples
            .iter()
            .filter(|e| e.split(':').next() == Some(category))
            .count();
        if same < 4 {
            self.examples.push(problem);
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} objects checked (london: {} Services, {} EndpointSlices; newyork: {} + {} copies): \
             missing {}, stale {}, orphaned {}, duplicated {}",
            self.checked(),
            self.london_services,
            self.london_slices,
            self.newyork_services,
            self.newyork_slices,
            self.missing,
            self.stale,
            self.orphaned,
            self.duplicated
        )?;
        if self.london_pending > 0 {
            write!(
                f,
                " ({} london Services still without their own EndpointSlice)",
                self.london_pending
            )?;
        }
        for e in &self.examples {
            write!(f, "\n    {e}")?;
        }
        Ok(())
    }
}

impl Checker {
    /// Compares both sides once. `Err` when an API server does not answer.
    pub async fn check(&self) -> Result<Check, kube::Error> {
        let mut local_services = BTreeMap::new();
        let mut local_slices = BTreeMap::new();
        for namespace in self.twins.keys() {
            for s in Api::<Service>::namespaced(self.london.clone(), namespace)
                .list(&ListParams::default())
                .await?
            {
                local_services.insert((namespace.clone(), s.name_any()), s);
            }
            for s in Api::<EndpointSlice>::namespaced(self.london.clone(), namespace)
                .list(&ListParams::default())
                .await?
            {
                local_slices.insert((namespace.clone(), s.name_any()), s);
            }
        }
        let ours = format!("{ORIGIN}=london,{DESTINATION}=newyork");
        let remote_services = Api::<Service>::all(self.newyork.clone())
            .list(&ListParams::default().labels(&ours))
            .await?
            .items;
        let remote_slices = Api::<EndpointSlice>::all(self.newyork.clone())
            .list(
                &ListParams::default()
                    .labels(&format!("{ours},{MANAGED_BY}={MANAGED_BY_REFLECTION}")),
            )
            .await?
            .items;

        let with_slice: BTreeSet<(&str, &str)> = local_slices
            .iter()
            .filter_map(|((ns, _), s)| Some((ns.as_str(), s.labels().get(SERVICE_NAME)?.as_str())))
            .collect();
        let london_pending = local_services
            .iter()
            .filter(|((ns, name), s)| {
                s.spec.as_ref().is_some_and(|spec| spec.selector.is_some())
                    && !with_slice.contains(&(ns.as_str(), name.as_str()))
            })
            .count();
        let mut check = Check {
            london_pending,
            london_services: local_services.len(),
            london_slices: local_slices.len(),
            newyork_services: remote_services.len(),
            newyork_slices: remote_slices.len(),
            ..Check::default()
        };
        self.compare(
            &mut check,
            "Service",
            &local_services,
            &remote_services,
            |l, r| service_diff(l, r, &self.newyork_info),
        );
        self.compare(
            &mut check,
            "EndpointSlice",
            &local_slices,
            &remote_slices,
            slice_diff,
        );
        Ok(check)
    }

    fn compare<K: Resource + ResourceExt>(
        &self,
        check: &mut Check,
        kind: &str,
        local: &BTreeMap<(String, String), K>,
        remote: &[K],
        diff: impl Fn(&K, &K) -> Option<String>,
    ) {
        let twin_of: BTreeMap<&str, &str> = self
            .twins
            .iter()
            .map(|(l, r)| (r.as_str(), l.as_str()))
            .collect();
        let local_names: BTreeSet<&str> = local.keys().map(|(_, n)| n.as_str()).collect();
        let mut copies: BTreeMap<(String, String), &K> = BTreeMap::new();
        for r in remote {
            let namespace = r.namespace().unwrap_or_default();
            let name = r.name_any();
            match twin_of.get(namespace.as_str()) {
                Some(local_ns) if local.contains_key(&(local_ns.to_string(), name.clone())) => {
                    copies.insert((local_ns.to_string(), name), r);
                }
                Some(_) => {
                    check.orphaned += 1;
                    check.note(format!(
                        "orphaned: {kind} {namespace}/{name} in newyork has no source in london"
                    ));
                }
                None if local_names.contains(name.as_str()) => {
                    check.duplicated += 1;
                    check.note(format!(
                        "duplicated: {kind} {namespace}/{name} in newyork, outside the twin namespaces"
                    ));
                }
                None => {
                    check.orphaned += 1;
                    check.note(format!(
                        "orphaned: {kind} {namespace}/{name} in newyork, outside the twin namespaces"
                    ));
                }
            }
        }
        for (key, l) in local {
            match copies.get(key) {
                None => {
                    check.missing += 1;
                    check.note(format!("missing: {kind} {}/{} in newyork", key.0, key.1));
                }
                Some(r) => {
                    if let Some(why) = diff(l, r) {
                        check.stale += 1;
                        check.note(format!("stale: {kind} {}/{}: {why}", key.0, key.1));
                    }
                }
            }
        }
    }

    /// Polls [`Checker::check`] until two checks in a row find nothing wrong, or `timeout`.
    /// `Ok` has the clean check and the time until the first of the two; `Err` the last check
    /// (or why none could be made).
    ///
    /// While london's own EndpointSlice controller still owes slices (`london_pending`), a clean
    /// comparison is not final: polling goes on, for [`LONDON_PENDING_GRACE`] at most (that
    /// controller lags under churn and after a restart, at times by minutes for one Service;
    /// what it publishes later is one more change to reflect, not a fault of the host).
    pub async fn converge(&self, timeout: Duration) -> Result<(Check, Duration), String> {
        let started = Instant::now();
        let mut clean_since: Option<Duration> = None;
        let mut last = String::from("no check could be made: API servers did not answer");
        loop {
            match self.check().await {
                Ok(check) if check.problems() == 0 => {
                    let second = clean_since.is_some();
                    let first = *clean_since.get_or_insert(started.elapsed());
                    if second
                        && (check.london_pending == 0
                            || started.elapsed() >= first + LONDON_PENDING_GRACE)
                    {
                        return Ok((check, first));
                    }
                    last = check.to_string();
                }
                Ok(check) => {
                    clean_since = None;
                    last = check.to_string();
                }
                Err(err) => {
                    clean_since = None;
                    last = format!("{last}\n    (last attempt: {err})");
                }
            }
            if started.elapsed() >= timeout {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The value at `pointer`, with absent, `null`, `{}` and `[]` all meaning "unset".
fn field(v: &Value, pointer: &str) -> Value {
    match v.pointer(pointer) {
        None | Some(Value::Null) => Value::Null,
        Some(Value::Object(m)) if m.is_empty() => Value::Null,
        Some(Value::Array(a)) if a.is_empty() => Value::Null,
        Some(other) => other.clone(),
    }
}

/// What the Service plugin derives from `local`, compared with the copy `remote`.
fn service_diff(
    local: &Service,
    remote: &Service,
    newyork: &testsupport::ClusterInfo,
) -> Option<String> {
    let cidr = &newyork.service_cidr;
    let (l, r) = (json(local), json(remote));
    let mut want_labels = local.labels().clone();
    want_labels.insert(ORIGIN.into(), "london".into());
    want_labels.insert(DESTINATION.into(), "newyork".into());
    if &want_labels != remote.labels() {
        return Some(format!(
            "labels {:?}, want {want_labels:?}",
            remote.labels()
        ));
    }
    let mut want_annotations = local.annotations().clone();
    want_annotations.remove(LAST_APPLIED);
    let mut have_annotations = remote.annotations().clone();
    have_annotations.remove(INTENT_HASH);
    if want_annotations != have_annotations {
        return Some(format!(
            "annotations {have_annotations:?}, want {want_annotations:?}"
        ));
    }
    for pointer in ["/spec/type", "/spec/selector"] {
        if field(&l, pointer) != field(&r, pointer) {
            return Some(format!(
                "{pointer} is {}, want {}",
                field(&r, pointer),
                field(&l, pointer)
            ));
        }
    }
    let ports = |v: &Value| -> Vec<Value> {
        v.pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|ports| {
                ports
                    .iter()
                    .map(|p| {
                        serde_json::json!([
                            field(p, "/name"),
                            field(p, "/port"),
                            field(p, "/targetPort"),
                            field(p, "/protocol"),
                        ])
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    if ports(&l) != ports(&r) {
        return Some(format!("ports {:?}, want {:?}", ports(&r), ports(&l)));
    }
    let ip = remote
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .unwrap_or_default();
    if ip != "None"
        && !ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| cidr.contains(&ip))
    {
        return Some(format!(
            "clusterIP {ip:?} is not from newyork's range {cidr}"
        ));
    }
    None
}

/// What the EndpointSlice plugin derives from `local` (identity address translation),
/// compared with the copy `remote`.
fn slice_diff(local: &EndpointSlice, remote: &EndpointSlice) -> Option<String> {
    let (l, r) = (json(local), json(remote));
    let service = local.labels().get(SERVICE_NAME);
    if remote.labels().get(SERVICE_NAME) != service {
        return Some(format!(
            "{SERVICE_NAME} is {:?}, want {service:?}",
            remote.labels().get(SERVICE_NAME)
        ));
    }
    if local.address_type != remote.address_type {
        return Some(format!(
            "addressType {}, want {}",
            remote.address_type, local.address_type
        ));
    }
    let endpoints = |v: &Value| -> Vec<Value> {
        v.pointer("/endpoints")
            .and_then(Value::as_array)
            .map(|eps| {
                eps.iter()
                    .map(|e| {
                        serde_json::json!([
                            field(e, "/addresses"),
                            field(e, "/conditions/ready"),
                            field(e, "/conditions/serving"),
                            field(e, "/conditions/terminating"),
                        ])
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    if endpoints(&l) != endpoints(&r) {
        return Some(format!(
            "endpoints {:?}, want {:?}",
            endpoints(&r),
            endpoints(&l)
        ));
    }
    if field(&l, "/ports") != field(&r, "/ports") {
        return Some(format!(
            "ports {}, want {}",
            field(&r, "/ports"),
            field(&l, "/ports")
        ));
    }
    None
}
