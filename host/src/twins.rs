//! Provider side of twin namespaces: the only way a consumer gets a namespace here.
//!
//! A consumer's peering identity holds no cluster-scoped permission (see `docs/security.md`):
//! it asks for twin namespaces by writing `spec.desiredMapping` of the [`NamespaceMap`] in its
//! tenant namespace. This controller watches those objects and, at once:
//!
//! - refuses names that are invalid, reserved (this cluster's system and liqo namespaces),
//!   taken by a namespace the tenant did not get from this controller, or over the tenant's cap;
//! - creates the twin namespace with the labels the admission policy trusts (tenant, origin =
//!   the consumer's claimed id, destination = this cluster) and the content rules of this
//!   cluster (allowed Service types, allowed EndpointSlice addresses) as annotations, then the
//!   RoleBinding that lets the identity reflect into it and a ResourceQuota that bounds it, and
//!   only then reports it `Accepted` (so the consumer's first watch there is never refused);
//! - deletes twin namespaces whose entry the consumer removed, reporting them `Terminating`
//!   until they are gone.
//!
//! Only tenant namespaces that `liqoctl generate peer-command` made are served: they carry
//! [`crate::api::wire::TENANT_NAMESPACE_LABEL`], which neither a peer nor a namespace admin can set
//! (namespaces are cluster-scoped). Twin namespaces are recognised by
//! [`crate::api::wire::TENANT_LABEL`], set here and nowhere else.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::namespace_map::{
    MappingPhase, NAMESPACE_MAP_NAME, NamespaceMap, NamespaceMapStatus, RemoteNamespaceStatus,
    reasons,
};
use crate::api::wire;
use crate::api::wire::DENIED_RANGES_ANNOTATION;
use crate::api::wire::ENDPOINT_RANGES_ANNOTATION;
use crate::api::wire::LIMITS_CONFIGMAP;
use crate::api::wire::LIMITS_KEY_QUOTA;
use crate::api::wire::QUOTA_ANNOTATION;
use crate::api::wire::REFLECTED_KINDS_CLUSTER_ROLE;
use crate::api::wire::SERVICE_TYPES_ANNOTATION;
use crate::api::wire::TWIN_OBJECT_NAME;
use crate::plugin::ClusterIdentity;
use crate::protocol::endpoint_ranges;
use crate::protocol::identity::{is_tenant_namespace, tenant_labels};
use crate::protocol::limits::PeerLimits;

/// Why `name` can never be a twin namespace here, if it cannot.
pub fn refused_name(name: &str) -> Option<(&'static str, String)> {
    if crate::api::names::validate_dns1123_label(name).is_err() {
        return Some((
            reasons::INVALID,
            format!(
                "{name:?} is not a valid namespace name (a DNS label of at most 63 characters)"
            ),
        ));
    }
    let reserved = name == "default"
        || name == crate::api::identity::CLUSTER_IDENTITY_NAMESPACE
        || name.starts_with("kube-")
        || name.starts_with(crate::api::wire::TENANT_NAMESPACE_PREFIX)
        || name.starts_with("openshift");
    reserved.then(|| {
        (
            reasons::RESERVED,
            format!(
                "namespace {name} is reserved in this cluster (default, kube-*, liqo, liqo-tenant-* \
                 and openshift* are never twin namespaces): offload with another name \
                 (--namespace-mapping-strategy DefaultName or SelectedName)"
            ),
        )
    })
}

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum TwinError {
    /// An API request failed.
    #[error("NamespaceMap {tenant}/{NAMESPACE_MAP_NAME}: {action}: {source}")]
    Kube {
        /// The tenant namespace.
        tenant: String,
        /// What was being done.
        action: String,
        /// The API error.
        source: kube::Error,
    },
}

/// What the controller needs.
pub struct TwinContext {
    /// This cluster's client (the host's own identity).
    pub client: Client,
    /// This cluster's identity.
    pub local: ClusterIdentity,
    /// This cluster's gateway, when it runs one: a consumer that announces its own gateway
    /// reflects endpoints that point at this one only.
    pub gateway: Option<std::net::IpAddr>,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    ctx: TwinContext,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let maps: Api<NamespaceMap> = Api::all(ctx.client.clone());
    let twins: Api<Namespace> = Api::all(ctx.client.clone());
    // The announcements last seen on each tenant's Lease.
    let seen: std::sync::Mutex<BTreeMap<String, BTreeMap<String, String>>> = Default::default();
    let controller = Controller::new(maps, watcher::Config::default());
    let store = controller.store();
    controller
        // This cluster's labels (`liqoctl install --cluster-labels`) are published to every
        // tenant at once.
        .watches(
            Api::<ConfigMap>::namespaced(
                ctx.client.clone(),
                crate::api::identity::CLUSTER_IDENTITY_NAMESPACE,
            ),
            watcher::Config::default().fields(&format!(
                "metadata.name={}",
                crate::api::identity::CLUSTER_IDENTITY_CONFIGMAP
            )),
            move |_| {
                store
                    .state()
                    .iter()
                    .map(|m| ObjectRef::from_obj(m.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        // A twin namespace that finishes terminating (or is deleted by someone else) updates
        // its tenant's status at once.
        .watches(
            twins,
            watcher::Config::default().labels(wire::TENANT_LABEL),
            |ns: Namespace| {
                ns.labels()
                    .get(wire::TENANT_LABEL)
                    .map(|t| ObjectRef::new(NAMESPACE_MAP_NAME).within(t))
            },
        )
        // A consumer's declaration or gateway announcement changes its twins' rules: answered
        // at once. Renewals (every 10 s) change neither and are not reconciled.
        .watches(
            Api::<Lease>::all(ctx.client.clone()),
            watcher::Config::default().labels(&format!("{}=true", wire::PEERING_LEASE_LABEL)),
            move |lease: Lease| {
                // Only tenant namespaces are served (and remembered).
                let tenant = lease
                    .namespace()
                    .filter(|ns| ns.starts_with(wire::TENANT_NAMESPACE_PREFIX))?;
                let announced = lease_announcements(&lease);
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                (seen.insert(tenant.clone(), announced.clone()) != Some(announced))
                    .then(|| ObjectRef::new(NAMESPACE_MAP_NAME).within(&tenant))
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(%err, "twin namespaces reconcile");
            }
        })
        .await;
}

/// What a consumer announces on its Lease that decides its twins' rules: its endpoint ranges
/// and its gateway.
fn lease_announcements(lease: &Lease) -> BTreeMap<String, String> {
    lease
        .annotations()
        .iter()
        .filter(|(k, _)| {
            k.as_str() == wire::DECLARED_RANGES_ANNOTATION
                || k.as_str() == crate::api::wire::LEASE_ADDRESS_ANNOTATION
                || k.as_str() == crate::api::wire::LEASE_FINGERPRINT_ANNOTATION
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn error_policy(_: Arc<NamespaceMap>, err: &TwinError, _: Arc<TwinContext>) -> Action {
    tracing::warn!("{err}");
    Action::requeue(Duration::from_secs(2))
}

/// The `TwinError` of a failed API call during `tenant`'s pass, saying what was being done.
fn kube_err(tenant: &str, action: &str) -> impl FnOnce(kube::Error) -> TwinError {
    let (tenant, action) = (tenant.to_string(), action.to_string());
    move |source| TwinError::Kube {
        tenant,
        action,
        source,
    }
}

/// What one pass knows of the tenant whose NamespaceMap it serves.
struct TenantView {
    /// The tenant namespace's name.
    name: String,
    /// The tenant namespace (its annotations hold the peer command's gateway and the range
    /// record).
    object: Namespace,
    /// Whether the tenant namespace is being deleted (revocation): every twin goes.
    terminating: bool,
    /// The peering Lease, when it exists.
    lease: Option<Lease>,
}

impl TenantView {
    /// The tenant serving `map`, `None` when `map` is not a request this host serves (not the
    /// tenant's one NamespaceMap, or not in a tenant namespace `liqoctl` made).
    async fn load(map: &NamespaceMap, client: &Client) -> Result<Option<Self>, TwinError> {
        let Some(name) = map.namespace() else {
            return Ok(None);
        };
        if map.name_any() != NAMESPACE_MAP_NAME {
            return Ok(None);
        }
        let object = Api::<Namespace>::all(client.clone())
            .get_opt(&name)
            .await
            .map_err(kube_err(&name, "reading the tenant namespace"))?;
        let Some(object) = object else {
            return Ok(None);
        };
        if !is_tenant_namespace(&object) {
            // A NamespaceMap anywhere else is nobody's request: a namespace admin cannot forge one.
            tracing::debug!(namespace = %name, "NamespaceMap outside a tenant namespace ignored");
            return Ok(None);
        }
        let lease = Api::<Lease>::namespaced(client.clone(), &name)
            .get_opt(wire::LEASE_NAME)
            .await
            .map_err(kube_err(&name, "reading the peering Lease"))?;
        Ok(Some(Self {
            terminating: object.metadata.deletion_timestamp.is_some(),
            name,
            object,
            lease,
        }))
    }

    /// The consumer id that claimed the Lease (empty while unclaimed).
    fn consumer(&self) -> String {
        self.lease
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default()
    }

    /// An annotation of the Lease (what the consumer announced).
    fn announced(&self, key: &str) -> Option<&str> {
        self.lease
            .as_ref()
            .and_then(|l| l.annotations().get(key))
            .map(String::as_str)
    }
}

async fn reconcile(map: Arc<NamespaceMap>, ctx: Arc<TwinContext>) -> Result<Action, TwinError> {
    let client = &ctx.client;
    let Some(tenant) = TenantView::load(&map, client).await? else {
        return Ok(Action::await_change());
    };
    let limits = read_limits(client).await;
    let rules = tenant_rules(&map, &tenant, &limits, &ctx).await?;
    let consumer = tenant.consumer();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ours: Vec<Namespace> = namespaces
        .list(&ListParams::default().labels(&format!("{}={}", wire::TENANT_LABEL, tenant.name)))
        .await
        .map_err(kube_err(&tenant.name, "listing twin namespaces"))?
        .items;
    let desired: BTreeMap<String, String> = if tenant.terminating || consumer.is_empty() {
        BTreeMap::new()
    } else {
        map.spec.desired_mapping.clone()
    };

    let mut status = NamespaceMapStatus {
        cluster_labels: published_labels(&map, &tenant.name, client).await,
        ..NamespaceMapStatus::default()
    };
    let mut pending = withdraw_unwanted(&tenant.name, &ours, &desired, &mut status, client).await?;
    let twins = Twins {
        map: &map,
        tenant: &tenant.name,
        consumer: &consumer,
        ours: &ours,
        rules: &rules,
        limits: &limits,
        ctx: &ctx,
    };
    pending |= twins.serve(&desired, &mut status).await?;
    if map.status.as_ref() != Some(&status) && !tenant.terminating {
        write_status(&map, &tenant.name, &status, client).await?;
    }
    let refused = status
        .current_mapping
        .values()
        .any(|e| e.phase == MappingPhase::CreationLoopBackOff);
    Ok(if pending {
        Action::requeue(Duration::from_secs(1))
    } else if refused {
        // A name taken or over the cap may clear (the other namespace goes, the limit rises).
        Action::requeue(Duration::from_secs(5))
    } else {
        // Catches changes of the limits and of the gateway mode.
        Action::requeue(Duration::from_secs(60))
    })
}

/// The rules of `tenant`'s twins: its gateway mode, the endpoint ranges it declared as this
/// cluster reviewed them (the review is recorded on the tenant namespace, which the consumer
/// cannot write, with a Warning Event when some are refused), and the limits.
async fn tenant_rules(
    map: &NamespaceMap,
    tenant: &TenantView,
    limits: &PeerLimits,
    ctx: &TwinContext,
) -> Result<TwinRules, TwinError> {
    let client = &ctx.client;
    // Endpoints through the gateways point at this cluster's gateway only: a consumer that
    // announces its gateway (and this cluster running one) is held to that.
    // The gateway address the peer command announced (liqoctl generate --gateway-endpoint may
    // override the host's own), else this host's.
    let gateway = tenant
        .object
        .annotations()
        .get(wire::GATEWAY_ENDPOINT_ANNOTATION)
        .and_then(|e| e.parse::<std::net::SocketAddr>().ok())
        .map(|e| e.ip())
        .or(ctx.gateway);
    let gateway_mode = gateway.is_some()
        && tenant
            .lease
            .as_ref()
            .and_then(|l| crate::protocol::networking::import_peer_of(l.annotations()))
            .is_some();
    // Unreadable own ranges fail the pass (retried): the twins keep the rules they have.
    let own_ranges = endpoint_ranges::provider_ranges(client)
        .await
        .map_err(kube_err(
            &tenant.name,
            "reading this cluster's own address ranges",
        ))?;
    let declared = tenant
        .announced(wire::DECLARED_RANGES_ANNOTATION)
        .unwrap_or("");
    let review = endpoint_ranges::review(declared, &own_ranges);
    if !tenant.terminating && !review.recorded_in(tenant.object.annotations()) {
        Api::<Namespace>::all(client.clone())
            .patch(
                &tenant.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": review.record()}})),
            )
            .await
            .map_err(kube_err(
                &tenant.name,
                "recording the declared endpoint ranges",
            ))?;
        if review.refused.is_empty() {
            tracing::info!(tenant = %tenant.name, accepted = %review.accepted.join(","),
                "declared endpoint ranges recorded");
        } else {
            let message = format!(
                "declared endpoint ranges refused (the consumer's EndpointSlices may not point \
                 there): {}",
                review.refused.join("; ")
            );
            tracing::warn!(tenant = %tenant.name, "{message}");
            warn_event(client, map, reasons::RANGES_REFUSED, &message).await;
        }
    }
    Ok(TwinRules::new(
        limits,
        gateway_mode,
        gateway,
        &own_ranges,
        &review.accepted,
    ))
}

/// This cluster's labels, for the consumer's ForeignCluster. Unreadable ones keep what the
/// consumer was last told (never an empty set that would deselect this cluster).
async fn published_labels(
    map: &NamespaceMap,
    tenant: &str,
    client: &Client,
) -> Option<BTreeMap<String, String>> {
    match crate::protocol::cluster_labels::read_own(client).await {
        Ok(labels) => Some(labels),
        Err(e) => {
            tracing::warn!(%tenant, "{e}");
            map.status.as_ref().and_then(|s| s.cluster_labels.clone())
        }
    }
}

/// Deletes the twin namespaces of `tenant` no longer asked for, reporting them `Terminating`
/// until they are gone. Returns whether any is still there.
async fn withdraw_unwanted(
    tenant: &str,
    ours: &[Namespace],
    desired: &BTreeMap<String, String>,
    status: &mut NamespaceMapStatus,
    client: &Client,
) -> Result<bool, TwinError> {
    let wanted: BTreeSet<&str> = desired.values().map(String::as_str).collect();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut pending = false;
    for ns in ours {
        let name = ns.name_any();
        if wanted.contains(name.as_str()) {
            continue;
        }
        pending = true;
        if ns.metadata.deletion_timestamp.is_none() {
            match namespaces.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::info!(%tenant, namespace = %name, "twin namespace deleted")
                }
                Err(kube::Error::Api(s)) if s.code == 404 => continue,
                Err(e) => {
                    return Err(kube_err(tenant, &format!("deleting twin namespace {name}"))(e));
                }
            }
        }
        let local = ns
            .annotations()
            .get(wire::REMOTE_NAMESPACE_ORIGIN_NAME)
            .cloned()
            .unwrap_or_else(|| name.clone());
        status.current_mapping.insert(
            local,
            entry(
                &name,
                MappingPhase::Terminating,
                reasons::TERMINATING,
                "being deleted",
            ),
        );
    }
    Ok(pending)
}

/// Serving the twin namespaces a tenant asks for, in one pass.
struct Twins<'a> {
    map: &'a NamespaceMap,
    tenant: &'a str,
    consumer: &'a str,
    /// The tenant's twin namespaces as listed at the start of the pass.
    ours: &'a [Namespace],
    rules: &'a TwinRules,
    limits: &'a PeerLimits,
    ctx: &'a TwinContext,
}

impl Twins<'_> {
    /// Makes every `desired` twin exist with this pass's rules, or reports why not, in
    /// `status`. Returns whether one is still terminating (looked at again soon).
    async fn serve(
        &self,
        desired: &BTreeMap<String, String>,
        status: &mut NamespaceMapStatus,
    ) -> Result<bool, TwinError> {
        let wanted: BTreeSet<&str> = desired.values().map(String::as_str).collect();
        let mut pending = false;
        let mut alive = self
            .ours
            .iter()
            .filter(|ns| {
                ns.metadata.deletion_timestamp.is_none() && wanted.contains(ns.name_any().as_str())
            })
            .count();
        let mut claimed: BTreeSet<&str> = BTreeSet::new();
        for (local, remote) in desired {
            let answer = if !claimed.insert(remote.as_str()) {
                entry(
                    remote,
                    MappingPhase::CreationLoopBackOff,
                    reasons::CONFLICT,
                    &format!("{remote} is already asked for by another namespace of this consumer"),
                )
            } else if let Some(existing) = self.ours.iter().find(|ns| &ns.name_any() == remote) {
                if existing.metadata.deletion_timestamp.is_some() {
                    pending = true;
                    entry(
                        remote,
                        MappingPhase::Terminating,
                        reasons::TERMINATING,
                        "still terminating; created again once gone",
                    )
                } else {
                    self.prepare(remote, Some(existing)).await?
                }
            } else if let Some((reason, message)) = refused_name(remote) {
                entry(remote, MappingPhase::CreationLoopBackOff, reason, &message)
            } else if alive >= self.limits.max_namespaces {
                self.over_the_cap(alive, remote).await
            } else {
                let (answer, created) = self.create(local, remote).await?;
                alive += usize::from(created);
                answer
            };
            status.current_mapping.insert(local.clone(), answer);
        }
        Ok(pending)
    }

    /// Labels, binds and bounds the twin `remote` (see [`prepare_twin`]).
    async fn prepare(
        &self,
        remote: &str,
        existing: Option<&Namespace>,
    ) -> Result<RemoteNamespaceStatus, TwinError> {
        prepare_twin(&self.ctx.client, self.tenant, remote, existing, self.rules)
            .await
            .map_err(kube_err(
                self.tenant,
                &format!("preparing twin namespace {remote}"),
            ))
    }

    /// The refusal of a twin over `maxNamespacesPerPeer`, with a Warning Event.
    async fn over_the_cap(&self, alive: usize, remote: &str) -> RemoteNamespaceStatus {
        let message = format!(
            "this consumer already has {alive} twin namespaces here, the most this cluster \
             allows (maxNamespacesPerPeer {}); unoffload a namespace, or ask the provider's \
             admin to raise it (liqoctl install --peer-namespace-limit)",
            self.limits.max_namespaces
        );
        tracing::warn!(tenant = %self.tenant, consumer = %self.consumer, namespace = %remote, "{message}");
        warn_event(&self.ctx.client, self.map, reasons::LIMIT, &message).await;
        entry(
            remote,
            MappingPhase::CreationLoopBackOff,
            reasons::LIMIT,
            &message,
        )
    }

    /// Creates the twin `remote` of `local` and prepares it; a name taken meanwhile (409) is a
    /// conflict naming its owner. Returns the answer and whether a namespace was created.
    async fn create(
        &self,
        local: &str,
        remote: &str,
    ) -> Result<(RemoteNamespaceStatus, bool), TwinError> {
        let ctx = self.ctx;
        let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
        let namespace = twin_namespace(
            remote,
            local,
            self.tenant,
            self.consumer,
            &ctx.local.id,
            self.rules,
        );
        match namespaces.create(&PostParams::default(), &namespace).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = namespaces.get_opt(remote).await.ok().flatten();
                let origin = existing
                    .as_ref()
                    .filter(|ns| ns.labels().contains_key(wire::TENANT_LABEL))
                    .and_then(|ns| ns.labels().get(wire::ORIGIN));
                let message = crate::protocol::twin_requests::conflict_message(
                    remote,
                    origin.map(String::as_str),
                    &ctx.local.name,
                );
                let answer = entry(
                    remote,
                    MappingPhase::CreationLoopBackOff,
                    reasons::CONFLICT,
                    &message,
                );
                return Ok((answer, false));
            }
            Err(e) => {
                return Err(kube_err(
                    self.tenant,
                    &format!("creating twin namespace {remote}"),
                )(e));
            }
        }
        tracing::info!(tenant = %self.tenant, consumer = %self.consumer, namespace = %remote,
            "twin namespace created");
        Ok((self.prepare(remote, None).await?, true))
    }
}

/// Writes `status` on the tenant's NamespaceMap with one merge patch (entries and labels that
/// went are set to null).
///
/// Not [`crate::api::conditions::apply_status`]: this status has always been written by
/// merge patch, whose fields belong to an update manager. A server-side apply that leaves an
/// entry out removes it only when the apply's own manager is its sole owner, so entries
/// written by earlier merge patches would stay: it would write something else.
async fn write_status(
    map: &NamespaceMap,
    tenant: &str,
    status: &NamespaceMapStatus,
    client: &Client,
) -> Result<(), TwinError> {
    let mut current = serde_json::Map::new();
    for local in map.status.iter().flat_map(|s| s.current_mapping.keys()) {
        current.insert(local.clone(), serde_json::Value::Null);
    }
    for (local, e) in &status.current_mapping {
        current.insert(local.clone(), serde_json::to_value(e).unwrap_or_default());
    }
    let mut labels = serde_json::Map::new();
    for key in map
        .status
        .iter()
        .flat_map(|s| s.cluster_labels.iter().flatten())
        .map(|(k, _)| k)
    {
        labels.insert(key.clone(), serde_json::Value::Null);
    }
    for (key, value) in status.cluster_labels.iter().flatten() {
        labels.insert(key.clone(), json!(value));
    }
    Api::<NamespaceMap>::namespaced(client.clone(), tenant)
        .patch_status(
            NAMESPACE_MAP_NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "currentMapping": current,
                "clusterLabels": labels,
            }})),
        )
        .await
        .map_err(kube_err(tenant, "writing the status"))?;
    Ok(())
}

/// A Warning Event on the tenant's NamespaceMap (the provider's admin sees refusals with
/// `kubectl get events -n liqo-tenant-...`; repeats are counted by the recorder).
async fn warn_event(client: &Client, map: &NamespaceMap, reason: &str, note: &str) {
    use kube::Resource;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "liqo-host".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let event = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "CreateTwinNamespace".into(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, &map.object_ref(&())).await {
        tracing::debug!(%err, "could not publish event");
    }
}

fn entry(remote: &str, phase: MappingPhase, reason: &str, message: &str) -> RemoteNamespaceStatus {
    RemoteNamespaceStatus {
        remote_namespace: remote.to_string(),
        phase,
        reason: reason.to_string(),
        message: message.to_string(),
    }
}

async fn read_limits(client: &Client) -> PeerLimits {
    let cm = Api::<ConfigMap>::namespaced(
        client.clone(),
        crate::api::identity::CLUSTER_IDENTITY_NAMESPACE,
    )
    .get_opt(LIMITS_CONFIGMAP)
    .await;
    match cm {
        Ok(cm) => PeerLimits::from_data(cm.and_then(|c| c.data).as_ref()).unwrap_or_else(|e| {
            tracing::warn!("ConfigMap liqo/{LIMITS_CONFIGMAP}: {e}; using the defaults");
            PeerLimits::default()
        }),
        Err(e) => {
            tracing::warn!(%e, "cannot read ConfigMap liqo/{LIMITS_CONFIGMAP}; using the defaults");
            PeerLimits::default()
        }
    }
}

/// What this cluster applies to every twin namespace of one tenant, computed once per pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinRules {
    /// The annotations the admission policy reads (and [`QUOTA_ANNOTATION`]).
    pub annotations: BTreeMap<String, String>,
    /// `spec.hard` of the twin's ResourceQuota; empty: no quota.
    pub quota: BTreeMap<String, String>,
}

impl TwinRules {
    /// The rules for a tenant: `gateway_mode` when its consumer reflects through the gateways
    /// (endpoints may then point at `gateway` only), else the `declared` ranges the provider
    /// accepted (see [`crate::protocol::endpoint_ranges`]), never inside the always denied ranges and
    /// `own_ranges` (those can grow after the review).
    pub fn new(
        limits: &PeerLimits,
        gateway_mode: bool,
        gateway: Option<std::net::IpAddr>,
        own_ranges: &[String],
        declared: &[String],
    ) -> Self {
        let (allowed, denied) = match (gateway_mode, gateway) {
            // Endpoints through the gateways point at this cluster's gateway and nowhere else.
            (true, Some(ip)) => (
                format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 }),
                String::new(),
            ),
            _ => (
                declared.join(","),
                endpoint_ranges::ALWAYS_DENIED_RANGES
                    .iter()
                    .map(|r| r.to_string())
                    .chain(own_ranges.iter().cloned())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        };
        let data = limits.to_data();
        Self {
            annotations: BTreeMap::from([
                (
                    SERVICE_TYPES_ANNOTATION.to_string(),
                    limits.service_types.join(","),
                ),
                (ENDPOINT_RANGES_ANNOTATION.to_string(), allowed),
                (DENIED_RANGES_ANNOTATION.to_string(), denied),
                (QUOTA_ANNOTATION.to_string(), data[LIMITS_KEY_QUOTA].clone()),
            ]),
            quota: limits.quota.clone(),
        }
    }

    /// Whether `ns` carries these rules already.
    fn applied_to(&self, ns: &Namespace) -> bool {
        self.annotations
            .iter()
            .all(|(k, v)| ns.annotations().get(k) == Some(v))
    }
}

/// The twin namespace object: only the labels the policy trusts and the rules it reads.
fn twin_namespace(
    remote: &str,
    local: &str,
    tenant_ns: &str,
    consumer: &str,
    local_id: &str,
    rules: &TwinRules,
) -> Namespace {
    let mut annotations = rules.annotations.clone();
    annotations.insert(
        wire::REMOTE_NAMESPACE_ORIGIN_NAME.to_string(),
        local.to_string(),
    );
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {
            "name": remote,
            "labels": {
                wire::TENANT_LABEL: tenant_ns,
                wire::ORIGIN: consumer,
                wire::DESTINATION: local_id,
            },
            "annotations": annotations,
        },
    }))
    .expect("a valid Namespace")
}

/// Makes the twin namespace `twin` ready for its consumer and returns its `Accepted` entry:
/// the ResourceQuota, the RoleBinding of the reflected kinds, then the rule annotations (last,
/// so a failure before is retried). `existing` is the namespace as listed: one that carries
/// the current rules already is left alone (a steady pass writes nothing); `None` for one just
/// created, which always gets its quota and binding.
async fn prepare_twin(
    client: &Client,
    tenant_ns: &str,
    twin: &str,
    existing: Option<&Namespace>,
    rules: &TwinRules,
) -> kube::Result<RemoteNamespaceStatus> {
    let accepted = entry(twin, MappingPhase::Accepted, reasons::CREATED, "ready");
    if existing.is_some_and(|ns| rules.applied_to(ns)) {
        return Ok(accepted);
    }
    let pp = PatchParams::apply(wire::PEERING_FIELD_MANAGER).force();
    if !rules.quota.is_empty() {
        let quota = json!({
            "apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": TWIN_OBJECT_NAME, "namespace": twin,
                         "labels": tenant_labels(tenant_ns)},
            "spec": {"hard": rules.quota},
        });
        Api::<ResourceQuota>::namespaced(client.clone(), twin)
            .patch(TWIN_OBJECT_NAME, &pp, &Patch::Apply(&quota))
            .await?;
    }
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": TWIN_OBJECT_NAME, "namespace": twin,
                     "labels": tenant_labels(tenant_ns)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": REFLECTED_KINDS_CLUSTER_ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": wire::CONSUMER_SERVICE_ACCOUNT,
                      "namespace": tenant_ns}],
    });
    Api::<RoleBinding>::namespaced(client.clone(), twin)
        .patch(TWIN_OBJECT_NAME, &pp, &Patch::Apply(&binding))
        .await?;
    if existing.is_some() {
        Api::<Namespace>::all(client.clone())
            .patch(
                twin,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": rules.annotations}})),
            )
            .await?;
    }
    Ok(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_and_invalid_names() {
        for name in [
            "kube-system",
            "kube-public",
            "default",
            "liqo",
            "liqo-tenant-x",
            "openshift-etcd",
        ] {
            assert_eq!(refused_name(name).unwrap().0, reasons::RESERVED, "{name}");
        }
        for name in ["", "UPPER", "-x", "a_b", &"a".repeat(64)] {
            assert_eq!(refused_name(name).unwrap().0, reasons::INVALID, "{name:?}");
        }
        // The tutorial's namespace, with EnforceSameName, stays usable.
        for name in ["liqo-demo", "liqo-demo-london", "app", "kubefoo"] {
            assert!(refused_name(name).is_none(), "{name}");
        }
    }

    #[test]
    fn gateway_mode_allows_only_the_gateway() {
        let ip: std::net::IpAddr = "10.0.0.7".parse().unwrap();
        let own = ["10.96.0.0/16".to_string()];
        let declared = ["10.200.0.0/16".to_string()];
        let a = TwinRules::new(&PeerLimits::default(), true, Some(ip), &own, &declared).annotations;
        assert_eq!(a[ENDPOINT_RANGES_ANNOTATION], "10.0.0.7/32");
        assert_eq!(a[DENIED_RANGES_ANNOTATION], "");
        let a =
            TwinRules::new(&PeerLimits::default(), false, Some(ip), &own, &declared).annotations;
        assert_eq!(a[ENDPOINT_RANGES_ANNOTATION], "10.200.0.0/16");
        assert!(a[DENIED_RANGES_ANNOTATION].contains("169.254.0.0/16"));
        assert!(a[DENIED_RANGES_ANNOTATION].ends_with(",10.96.0.0/16"));
        assert_eq!(
            a[SERVICE_TYPES_ANNOTATION],
            "ClusterIP,NodePort,ExternalName"
        );
        // Nothing declared (or all refused): endpoints may point nowhere.
        let a = TwinRules::new(&PeerLimits::default(), false, None, &own, &[]).annotations;
        assert_eq!(a[ENDPOINT_RANGES_ANNOTATION], "");
    }
}
