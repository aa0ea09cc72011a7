//! Peering: ForeignCluster objects become peers of the reflection engine.
//!
//! For each ForeignCluster the controller builds a client from the credential Secret it
//! references, checks that the peer's API server answers, registers the peer with the engine
//! and keeps the ForeignCluster's conditions (the `kubectl get foreignclusters` columns) honest.
//! A finalizer removes the peer from the engine when the ForeignCluster is deleted.
//!
//! With a credential made by `liqoctl peer out-of-band` (it names the tenant namespace on the
//! provider, see [`crate::tenant`]) the controller also keeps the consumer's Lease on the
//! provider fresh, replaces the bound token before it expires, and releases the Lease when the
//! ForeignCluster is deleted so that the provider revokes the identity at once. A ForeignCluster
//! without a credential is an incoming-only peer (created on a provider for its consumer): no
//! outgoing peering, nothing to connect to.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::conditions::now;
use crate::api::foreign_cluster::{
    AddressTranslation, CREDENTIALS_KEY_KUBECONFIG, CREDENTIALS_KEY_TOKEN, ForeignCluster,
    ForeignClusterStatus, PeeringCondition, PeeringConditionStatus, PeeringConditionType,
    PeeringRole,
};
use crate::api::wire;
use crate::api::wire::PEERING_FINALIZER;
use crate::peers::{DataPath, Peer, Peers};
use crate::plugin::{AddressTranslator, ClusterIdentity};
use crate::protocol::networking::{gateway_of, translator};
use crate::protocol::{cluster_labels, endpoint_ranges, identity, lease};
use crate::reflect::{Engine, EngineMetrics, PeerHandle};
use liqo_gateway::LinkState;

/// How often a peer's API server is probed.
// Also the Lease renewal period: 9 renewals per 90 s Lease, so a few lost requests never make a
// provider think this cluster is gone, and an outage shows on the ForeignCluster within 10 s.
const PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// Errors of the peering controller; messages name the ForeignCluster and the fix.
#[derive(Debug, thiserror::Error)]
pub enum PeeringError {
    /// The ForeignCluster has no credential reference.
    #[error("ForeignCluster {0} has no spec.credentialsSecretRef; peer again with liqoctl peer")]
    NoCredential(String),
    /// The credential Secret is missing or unusable.
    #[error("ForeignCluster {name}: credential Secret {secret}: {reason}")]
    Credential {
        /// ForeignCluster name.
        name: String,
        /// `namespace/name` of the Secret.
        secret: String,
        /// What is wrong.
        reason: String,
    },
    /// The translation rules are invalid.
    #[error("ForeignCluster {name}: spec.networking: {reason}")]
    Networking {
        /// ForeignCluster name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing the status or the finalizer failed.
    #[error("ForeignCluster {name}: {source}")]
    Kube {
        /// ForeignCluster name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
}

struct Context {
    client: Client,
    engine: Engine,
    peers: Peers,
    metrics: EngineMetrics,
    /// This cluster's identity: the holder of the Leases kept on providers. `None` keeps no Lease.
    local: Option<ClusterIdentity>,
    /// Per peer id, the client and tenant namespace of a Lease to release on unpeer.
    leases: Mutex<HashMap<String, (Client, String)>>,
    /// This cluster's gateway, when it runs one.
    transport: Option<Arc<dyn DataPath>>,
    /// This cluster's pod ranges as last read, and when: declared to providers with address
    /// translation Identity (see [`crate::protocol::endpoint_ranges`]).
    pod_ranges: tokio::sync::Mutex<Option<(std::time::Instant, Vec<String>)>>,
}

/// How long the pod ranges read from the Nodes are reused (Leases are renewed every `PROBE_INTERVAL`, 10 s).
const POD_RANGES_TTL: Duration = Duration::from_secs(60);

impl Context {
    /// This cluster's pod ranges, read at most every [`POD_RANGES_TTL`]; the last known ones
    /// when the Nodes cannot be read (`None` when never read: the declaration is then left as
    /// it is on the Lease rather than emptied by a transient error).
    async fn pod_ranges(&self) -> Option<Vec<String>> {
        let mut cached = self.pod_ranges.lock().await;
        if let Some((at, ranges)) = cached.as_ref()
            && at.elapsed() < POD_RANGES_TTL
        {
            return Some(ranges.clone());
        }
        match endpoint_ranges::local_pod_ranges(&self.client).await {
            Ok(ranges) => {
                *cached = Some((std::time::Instant::now(), ranges.clone()));
                Some(ranges)
            }
            Err(err) => {
                tracing::warn!(%err, "cannot read this cluster's Nodes for its pod ranges");
                cached.as_ref().map(|(_, r)| r.clone())
            }
        }
    }
}

/// What the peering controller runs with.
pub struct PeeringConfig {
    /// This cluster's client.
    pub client: Client,
    /// The reflection engine, told about every peer that is established or goes.
    pub engine: Engine,
    /// Where the established peers are published (read by the offloading controller).
    pub peers: Peers,
    /// Counts of the controller's API writes.
    pub metrics: EngineMetrics,
    /// This cluster's identity: the holder of the Leases kept on providers whose credential
    /// names a tenant namespace. `None` keeps no Lease (an admin credential, as in tests).
    pub local: Option<ClusterIdentity>,
    /// This cluster's gateway and the names of the peers whose link changed (see
    /// [`Transport::run`]): gateway-mode ForeignClusters pin their peer's gateway, the Lease
    /// announces this cluster's, and `NETWORKING` follows the link. `None`: no gateway.
    pub transport: Option<(
        Arc<dyn DataPath>,
        tokio::sync::mpsc::UnboundedReceiver<String>,
    )>,
}

/// Runs the peering controller until `shutdown` resolves.
pub async fn run(
    config: PeeringConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let PeeringConfig {
        client,
        engine,
        peers,
        metrics,
        local,
        transport,
    } = config;
    let api: Api<ForeignCluster> = Api::all(client.clone());
    let (transport, link_changes) = match transport {
        Some((t, rx)) => (Some(t), Some(rx)),
        None => (None, None),
    };
    let ctx = Arc::new(Context {
        client,
        engine,
        peers,
        metrics,
        local,
        leases: Mutex::new(HashMap::new()),
        transport,
        pod_ranges: tokio::sync::Mutex::new(None),
    });
    // A link change re-evaluates every ForeignCluster (there are few): NETWORKING follows it.
    let link_changed = futures::stream::unfold(link_changes, |rx| async move {
        let mut rx = rx?;
        rx.recv().await?;
        Some(((), Some(rx)))
    });
    Controller::new(api, watcher::Config::default())
        .reconcile_all_on(link_changed)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(%err, "peering reconcile");
            }
        })
        .await;
}

fn error_policy(
    fc: Arc<ForeignCluster>,
    err: &finalizer::Error<PeeringError>,
    _: Arc<Context>,
) -> Action {
    tracing::warn!(foreign_cluster = %fc.name_any(), "{err}");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(
    fc: Arc<ForeignCluster>,
    ctx: Arc<Context>,
) -> Result<Action, finalizer::Error<PeeringError>> {
    let api: Api<ForeignCluster> = Api::all(ctx.client.clone());
    finalizer::finalizer(&api, PEERING_FINALIZER, fc, |event| async {
        match event {
            FinalizerEvent::Apply(fc) => apply(&fc, &ctx).await,
            FinalizerEvent::Cleanup(fc) => {
                let id = fc.spec.cluster_id.clone();
                ctx.engine.remove_peer(&id);
                ctx.peers.remove(&id);
                if let Some(transport) = &ctx.transport {
                    transport.set_export_peer(&id, None);
                }
                let lease = ctx
                    .leases
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                if let Some((client, tenant)) = lease {
                    // Best effort: if the provider is unreachable its Lease expires on its own.
                    match lease::release_lease(&client, &tenant).await {
                        Ok(_) => tracing::info!(peer = %id, %tenant, "peering Lease released"),
                        Err(err) => {
                            tracing::warn!(peer = %id, %tenant, %err, "cannot release the peering Lease")
                        }
                    }
                }
                tracing::info!(peer = %id, "peer removed");
                Ok(Action::await_change())
            }
        }
    })
    .await
}

/// Reconciles one ForeignCluster: pins its gateway, connects to the peer and keeps the
/// peering, then records the outcome in the status.
async fn apply(fc: &ForeignCluster, ctx: &Context) -> Result<Action, PeeringError> {
    let status = fc.status.clone().unwrap_or_default();
    pin_gateway(fc, ctx);
    if fc.spec.credentials_secret_ref.is_none() {
        return incoming_only(fc, status, ctx).await;
    }
    let established = match connect(fc, ctx).await {
        Ok(conn) => establish(fc, conn, ctx).await,
        Err(err) => Err(Failure::credential(err.to_string())),
    };
    record_outgoing(fc, status, &established, ctx).await
}

/// Pins the provider's gateway (from its peer command) before anything else, so its link is
/// accepted even while its API server is unreachable.
fn pin_gateway(fc: &ForeignCluster, ctx: &Context) {
    if let Some(transport) = &ctx.transport {
        transport.set_export_peer(
            &fc.spec.cluster_id,
            gateway_of(fc)
                .ok()
                .flatten()
                .map(|(fingerprint, _)| (fingerprint, fc.name_any())),
        );
    }
}

/// Probes the peer through the connection and keeps the Lease; once both succeed, the peer is
/// handed to the engine and published in `peers`.
async fn establish(fc: &ForeignCluster, conn: Connection, ctx: &Context) -> Result<(), Failure> {
    let labelled = probe(fc, &conn, ctx).await?;
    // The labels just written (the provider's cluster labels) count at once:
    // the ForeignCluster in hand predates them, and a negative selector must
    // not select this peer meanwhile.
    let labels = labelled.unwrap_or_else(|| fc.labels().clone());
    let id = fc.spec.cluster_id.clone();
    if ctx.peers.fingerprint(&id).as_deref() != Some(conn.fingerprint.as_str()) {
        add_peer(fc, conn, &labels, ctx);
    }
    ctx.peers.set_labels(&id, &labels);
    Ok(())
}

/// Asks the peer's API server for its version, then renews the Lease; returns the labels the
/// renewal wrote on the ForeignCluster, if any.
async fn probe(
    fc: &ForeignCluster,
    conn: &Connection,
    ctx: &Context,
) -> Result<Option<BTreeMap<String, String>>, Failure> {
    let name = fc.name_any();
    match conn.client.apiserver_version().await {
        Ok(_) => match keep_lease(fc, &conn.client, conn.tenant.as_ref(), ctx).await {
            Ok(labelled) => Ok(labelled),
            Err(message) => Err(Failure::credential(message)),
        },
        Err(kube::Error::Api(s)) if s.code == 401 || s.code == 403 => {
            Err(Failure::credential(format!(
                "{name} refuses the peering credential: {}; generate a new peer command on {name} and peer again",
                s.message
            )))
        }
        Err(err) => Err(Failure::unreachable(format!(
            "the API server of {name} does not answer: {err}"
        ))),
    }
}

/// Hands a new (or re-credentialed) peer to the engine and publishes it in `peers`.
fn add_peer(
    fc: &ForeignCluster,
    conn: Connection,
    labels: &BTreeMap<String, String>,
    ctx: &Context,
) {
    let Connection {
        client,
        fingerprint,
        translator,
        tenant,
    } = conn;
    let name = fc.name_any();
    let id = fc.spec.cluster_id.clone();
    let identity = ClusterIdentity {
        id: id.clone(),
        name: fc.spec.cluster_name.clone().unwrap_or_else(|| name.clone()),
    };
    ctx.engine.add_peer(PeerHandle {
        identity: identity.clone(),
        client: client.clone(),
        translator,
    });
    if let Some(transport) = &ctx.transport
        && transport.foreign_cluster_of(&id).is_some()
    {
        ctx.engine.set_data_path(&id, transport.data_path_up(&id));
    }
    ctx.peers.insert(
        Peer {
            identity,
            client,
            labels: labels.clone(),
            foreign_cluster: name,
            tenant: tenant.as_ref().map(|t| t.namespace.clone()),
        },
        fingerprint,
    );
    tracing::info!(peer = %id, "peer established");
}

/// Sets the OUTGOING PEERING, API server and authentication conditions from the outcome, and
/// writes the status.
async fn record_outgoing(
    fc: &ForeignCluster,
    mut status: ForeignClusterStatus,
    established: &Result<(), Failure>,
    ctx: &Context,
) -> Result<Action, PeeringError> {
    let t = now();
    status.ensure_all_conditions(t.clone());
    let (peering, api) = match established {
        Ok(()) => (
            PeeringCondition::new(
                PeeringConditionType::OutgoingPeering,
                PeeringConditionStatus::Established,
            )
            .with_reason(
                "PeeringEstablished",
                "reflection towards this cluster is running",
            ),
            PeeringCondition::new(
                PeeringConditionType::ApiServerStatus,
                PeeringConditionStatus::Established,
            )
            .with_reason("APIServerReady", "the API server answers"),
        ),
        Err(Failure { message, .. }) => (
            PeeringCondition::new(
                PeeringConditionType::OutgoingPeering,
                PeeringConditionStatus::Error,
            )
            .with_reason("PeeringFailed", message.clone()),
            PeeringCondition::new(
                PeeringConditionType::ApiServerStatus,
                PeeringConditionStatus::Error,
            )
            .with_reason("APIServerUnreachable", message.clone()),
        ),
    };
    status.set_condition(peering, t.clone());
    status.set_condition(api, t.clone());
    let auth = if established.is_ok() {
        PeeringCondition::new(
            PeeringConditionType::AuthenticationStatus,
            PeeringConditionStatus::Established,
        )
        .with_reason("CredentialAccepted", "the peering credential is accepted")
    } else {
        PeeringCondition::new(
            PeeringConditionType::AuthenticationStatus,
            PeeringConditionStatus::Error,
        )
        .with_reason("CredentialRejected", "see OutgoingPeering for the error")
    };
    // An unreachable API server says nothing about the credential: AUTHENTICATION keeps what
    // the last answer proved.
    if !matches!(established, Err(f) if !f.credential) {
        status.set_condition(auth, t.clone());
    }
    finish(fc, status, t, ctx).await
}

/// Why a peer is not established.
struct Failure {
    message: String,
    /// The peer answered and refused the credential, or the credential itself is unusable;
    /// false when the peer could not be reached at all.
    credential: bool,
}

impl Failure {
    fn credential(message: String) -> Self {
        Self {
            message,
            credential: true,
        }
    }

    fn unreachable(message: String) -> Self {
        Self {
            message,
            credential: false,
        }
    }
}

/// A ForeignCluster without a credential: this cluster does not reflect to it (the provider side
/// of a peering, see [`crate::tenant::run_provider`], owns the incoming columns).
async fn incoming_only(
    fc: &ForeignCluster,
    mut status: ForeignClusterStatus,
    ctx: &Context,
) -> Result<Action, PeeringError> {
    let id = fc.spec.cluster_id.clone();
    ctx.engine.remove_peer(&id);
    ctx.peers.remove(&id);
    let t = now();
    status.ensure_all_conditions(t.clone());
    for type_ in [
        PeeringConditionType::OutgoingPeering,
        PeeringConditionType::ApiServerStatus,
    ] {
        status.set_condition(
            PeeringCondition::new(type_, PeeringConditionStatus::None).with_reason(
                "NoCredential",
                "this cluster has no credential for the peer: it does not reflect objects to it",
            ),
            t.clone(),
        );
    }
    finish(fc, status, t, ctx).await
}

/// Common end of both paths: NETWORKING follows the gateway link ([`network_condition`]:
/// `None` without a gateway peering), the role follows the conditions, and the status is
/// written if it changed. The peer is probed again after [`PROBE_INTERVAL`].
async fn finish(
    fc: &ForeignCluster,
    mut status: ForeignClusterStatus,
    t: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    ctx: &Context,
) -> Result<Action, PeeringError> {
    status.set_condition(network_condition(fc, ctx.transport.as_deref()), t);
    status.role = PeeringRole::of(&status);
    status.observed_generation = fc.metadata.generation;
    write_status(fc, status, ctx).await?;
    Ok(Action::requeue(PROBE_INTERVAL))
}

/// `NETWORKING`: `Established` only while the gateway link with the peer is up, in either
/// direction (this cluster's providers dial it; it dials its consumers); `None` when no
/// gateway data path is configured for the peer.
fn network_condition(fc: &ForeignCluster, transport: Option<&dyn DataPath>) -> PeeringCondition {
    let id = &fc.spec.cluster_id;
    let condition = |status, reason: &str, message: String| {
        PeeringCondition::new(PeeringConditionType::NetworkStatus, status)
            .with_reason(reason, message)
    };
    let gateway = gateway_of(fc);
    match (transport.and_then(|t| t.link_state(id)), &gateway) {
        // No RTT here: it changes at every PING, and the status would be rewritten at every
        // reconcile (the liqo_gateway link RTT metric has it).
        (Some(LinkState::Up { .. }), _) => condition(
            PeeringConditionStatus::Established,
            "GatewayLinkUp",
            format!("the gateway link with {id} is up"),
        ),
        // Within the grace a link is being set up (or redialed): endpoints are still served.
        (Some(LinkState::Down { reason }), _) if transport.is_some_and(|t| t.data_path_up(id)) => {
            condition(
                PeeringConditionStatus::Pending,
                "GatewayConnecting",
                format!("the gateway link with {id} is not up yet: {reason}"),
            )
        }
        (Some(LinkState::Down { reason }), _) => condition(
            PeeringConditionStatus::Error,
            "GatewayLinkDown",
            format!("the gateway link with {id} is down: {reason}"),
        ),
        (None, Err(reason)) => condition(
            PeeringConditionStatus::Error,
            "InvalidGateway",
            reason.clone(),
        ),
        (None, Ok(Some(_))) if transport.is_none() => condition(
            PeeringConditionStatus::Error,
            "NoLocalGateway",
            format!(
                "{id} sends this cluster's Services traffic through gateways, but this cluster \
                 runs none: start liqo-host with --gateway-listen"
            ),
        ),
        (None, Ok(Some(_))) => condition(
            PeeringConditionStatus::Pending,
            "GatewayConnecting",
            format!("waiting for the gateway of {id} to connect"),
        ),
        (None, Ok(None)) => condition(
            PeeringConditionStatus::None,
            "NoDataPath",
            "no cross-cluster data path is configured".into(),
        ),
    }
}

/// Puts the provider's cluster labels, as it publishes them on the tenant's NamespaceMap, on
/// its ForeignCluster here (see [`crate::protocol::cluster_labels`]). Best effort: a failure is logged and
/// tried again at the next renewal; the labels in place stay meanwhile. Returns the
/// ForeignCluster's labels after a write, `None` when nothing was written.
async fn sync_cluster_labels(
    fc: &ForeignCluster,
    peer: &Client,
    tenant: &str,
    ctx: &Context,
) -> Option<BTreeMap<String, String>> {
    use crate::api::namespace_map::{NAMESPACE_MAP_NAME, NamespaceMap};
    let name = fc.name_any();
    let map = Api::<NamespaceMap>::namespaced(peer.clone(), tenant)
        .get(NAMESPACE_MAP_NAME)
        .await;
    let published = match map {
        Ok(map) => map.status.and_then(|s| s.cluster_labels),
        Err(err) => {
            tracing::debug!(foreign_cluster = %name, %err, "cannot read the provider's cluster labels");
            return None;
        }
    };
    // A provider that publishes nothing (older than cluster labels) leaves the labels alone.
    let published = published?;
    let labels = cluster_labels::accepted(&published, fc);
    if cluster_labels::in_place(fc, &labels) {
        return None;
    }
    if labels.len() != published.len() {
        tracing::warn!(foreign_cluster = %name,
            "some cluster labels of this provider are not valid labels, use a prefix reserved \
             to Liqo, or are set on the ForeignCluster by someone else; they are ignored");
    }
    ctx.metrics.write("local", "apply");
    match cluster_labels::apply(&ctx.client, &name, &labels).await {
        Ok(applied) => {
            tracing::info!(foreign_cluster = %name,
                labels = %cluster_labels::render(&labels), "cluster labels of the provider applied");
            Some(applied.labels().clone())
        }
        Err(err) => {
            tracing::warn!(foreign_cluster = %name, %err,
                "cannot put the provider's cluster labels on its ForeignCluster");
            None
        }
    }
}

/// Renews the consumer's Lease on the provider, puts the provider's cluster labels on its
/// ForeignCluster, and replaces the token past half its lifetime. Returns the ForeignCluster's
/// labels when they were just written. An error is the sentence for the OutgoingPeering
/// condition.
async fn keep_lease(
    fc: &ForeignCluster,
    peer: &Client,
    tenant: Option<&TenantCredential>,
    ctx: &Context,
) -> Result<Option<BTreeMap<String, String>>, String> {
    let (Some(local), Some(cred)) = (&ctx.local, tenant) else {
        return Ok(None);
    };
    let name = fc.name_any();
    let id = fc.spec.cluster_id.clone();
    // Only a gateway-mode peering announces this cluster's gateway: the provider would dial
    // it, and gate endpoints while a link this cluster never accepts is down.
    let announce = ctx
        .transport
        .as_ref()
        .filter(|_| matches!(gateway_of(fc), Ok(Some(_))))
        .map(|t| (t.link_advertise(), t.fingerprint()));
    let mut announcements = crate::protocol::networking::lease_annotations(announce);
    // The ranges this cluster's endpoints use there (nothing through the gateways): the
    // provider lets its EndpointSlices point nowhere else.
    let networking = fc.spec.networking.as_ref();
    let translation = networking
        .map(|n| n.address_translation)
        .unwrap_or_default();
    let pod_ranges = match translation {
        AddressTranslation::Identity => ctx.pod_ranges().await,
        _ => Some(Vec::new()),
    };
    if let Some(pods) = pod_ranges {
        let declared = endpoint_ranges::declaration(networking, &pods);
        match declared {
            // The provider would refuse the whole renewal: keep the last declaration there.
            Some(d) if d.len() > endpoint_ranges::MAX_DECLARATION_LEN => {
                tracing::warn!(peer = %id, length = d.len(),
                    "this cluster's endpoint ranges do not fit the {} characters a provider \
                     accepts; the provider keeps the last declaration it accepted",
                    endpoint_ranges::MAX_DECLARATION_LEN)
            }
            declared => merge_annotations(
                &mut announcements,
                endpoint_ranges::lease_annotation(declared.as_deref()),
            ),
        }
    }
    let renewed =
        lease::renew_lease_announcing(peer, &cred.namespace, &local.id, announcements).await;
    let renewed = match renewed {
        // A provider whose tenant policy predates these announcements refuses them: keep the
        // peering alive without them (its NETWORKING may stay down, with the reason in logs).
        Err(kube::Error::Api(s))
            if s.code == 422 && s.message.contains(lease::LEASE_ANNOTATIONS_REFUSED) =>
        {
            tracing::warn!(peer = %id, reason = %s.message,
                "the provider refused this cluster's announcements on the peering Lease \
                 (gateway, endpoint ranges; its tenant policy may be older than this host: run \
                 liqoctl generate peer-command on it to update the policy); renewing without them");
            lease::renew_lease(peer, &cred.namespace, &local.id).await
        }
        other => other,
    };
    renewed.map_err(|err| {
        format!(
            "{name} refused to renew this cluster's peering Lease in {}: {err}; the identity \
                 may have been revoked: generate a new peer command on {name} and peer again",
            cred.namespace
        )
    })?;
    ctx.leases
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), (peer.clone(), cred.namespace.clone()));
    let labelled = sync_cluster_labels(fc, peer, &cred.namespace, ctx).await;
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let due =
        identity::token_times(&cred.token).is_some_and(|t| identity::token_needs_refresh(t, now));
    if due {
        let token = identity::request_token(peer, &cred.namespace, identity::TOKEN_REFRESH_SECONDS)
            .await
            .map_err(|err| format!("cannot replace the peering token on {name}: {err}"))?;
        let secret = Api::<Secret>::namespaced(ctx.client.clone(), &cred.secret_namespace);
        ctx.metrics.write("local", "apply");
        secret
            .patch(
                &cred.secret_name,
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {CREDENTIALS_KEY_TOKEN: token}})),
            )
            .await
            .map_err(|err| {
                format!(
                    "cannot store the new peering token in Secret {}/{}: {err}",
                    cred.secret_namespace, cred.secret_name
                )
            })?;
        tracing::info!(peer = %fc.spec.cluster_id, "peering token replaced");
    }
    Ok(labelled)
}

/// Adds the keys of `extra` (a JSON object) to `into` (a JSON object).
fn merge_annotations(into: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(into), serde_json::Value::Object(extra)) = (into.as_object_mut(), extra) {
        into.extend(extra);
    }
}

/// Writes `status` unless it equals the current one but for transition times.
async fn write_status(
    fc: &ForeignCluster,
    status: ForeignClusterStatus,
    ctx: &Context,
) -> Result<(), PeeringError> {
    let unchanged = fc
        .status
        .as_ref()
        .is_some_and(|old| same_status(old, &status));
    if unchanged {
        return Ok(());
    }
    let api: Api<ForeignCluster> = Api::all(ctx.client.clone());
    ctx.metrics.write("local", "status");
    crate::api::conditions::apply_status(&api, &fc.name_any(), &status)
        .await
        .map_err(|source| PeeringError::Kube {
            name: fc.name_any(),
            source,
        })
}

/// Status equality ignoring transition times (kept when statuses do not change).
fn same_status(a: &ForeignClusterStatus, b: &ForeignClusterStatus) -> bool {
    let strip = |s: &ForeignClusterStatus| {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        if let Some(conds) = v
            .get_mut("peeringConditions")
            .and_then(|c| c.as_array_mut())
        {
            for c in conds {
                if let Some(o) = c.as_object_mut() {
                    o.remove("lastTransitionTime");
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}

/// A credential from `liqoctl peer out-of-band`: its tenant on the provider and its token.
struct TenantCredential {
    namespace: String,
    token: String,
    secret_namespace: String,
    secret_name: String,
}

struct Connection {
    client: Client,
    fingerprint: String,
    translator: Arc<dyn AddressTranslator>,
    tenant: Option<TenantCredential>,
}

async fn connect(fc: &ForeignCluster, ctx: &Context) -> Result<Connection, PeeringError> {
    let name = fc.name_any();
    let reference = fc
        .spec
        .credentials_secret_ref
        .as_ref()
        .ok_or_else(|| PeeringError::NoCredential(name.clone()))?;
    let secret_name = format!("{}/{}", reference.namespace, reference.name);
    let cred_err = |reason: String| PeeringError::Credential {
        name: name.clone(),
        secret: secret_name.clone(),
        reason,
    };
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &reference.namespace)
        .get_opt(&reference.name)
        .await
        .map_err(|e| cred_err(e.to_string()))?
        .ok_or_else(|| cred_err("not found".into()))?;
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| {
        data.get(key)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    let tenant = match (
        text(wire::CREDENTIALS_KEY_TENANT),
        text(CREDENTIALS_KEY_TOKEN),
    ) {
        (Some(namespace), Some(token)) if text(CREDENTIALS_KEY_KUBECONFIG).is_none() => {
            Some(TenantCredential {
                namespace: namespace.trim().to_string(),
                token: token.trim().to_string(),
                secret_namespace: reference.namespace.clone(),
                secret_name: reference.name.clone(),
            })
        }
        _ => None,
    };
    let kubeconfig_yaml =
        crate::api::foreign_cluster::credential_kubeconfig(&data).map_err(cred_err)?;
    let kubeconfig = Kubeconfig::from_yaml(&kubeconfig_yaml)
        .map_err(|e| cred_err(format!("invalid kubeconfig: {e}")))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| cred_err(format!("invalid kubeconfig: {e}")))?;
    let client = Client::try_from(config).map_err(|e| cred_err(e.to_string()))?;
    let translator = translator(fc).map_err(|reason| PeeringError::Networking {
        name: name.clone(),
        reason,
    })?;
    // Re-register the peer when the credential or the networking spec changes.
    let fingerprint = format!(
        "{}/{}",
        secret.metadata.resource_version.unwrap_or_default(),
        fc.metadata.generation.unwrap_or_default()
    );
    Ok(Connection {
        client,
        fingerprint,
        translator,
        tenant,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::protocol::networking::foreign_cluster_with as foreign_cluster;

    #[test]
    fn networking_column_without_a_local_gateway() {
        let fp = "ab".repeat(32);
        let cases = [
            (json!(null), PeeringConditionStatus::None, "NoDataPath"),
            (
                json!({"addressTranslation": "Identity"}),
                PeeringConditionStatus::None,
                "NoDataPath",
            ),
            (
                json!({"addressTranslation": "Gateway",
                       "gateway": {"fingerprint": fp, "endpoint": "10.0.0.5:7901"}}),
                PeeringConditionStatus::Error,
                "NoLocalGateway",
            ),
            (
                json!({"addressTranslation": "Gateway",
                       "gateway": {"fingerprint": fp, "endpoint": "gateway:7901"}}),
                PeeringConditionStatus::Error,
                "InvalidGateway",
            ),
            (
                json!({"addressTranslation": "Gateway"}),
                PeeringConditionStatus::Error,
                "InvalidGateway",
            ),
        ];
        for (networking, status, reason) in cases {
            let fc = foreign_cluster(networking.clone());
            let condition = network_condition(&fc, None);
            assert_eq!(condition.status, status, "{networking}");
            assert_eq!(condition.reason, reason, "{networking}");
        }
    }
}
