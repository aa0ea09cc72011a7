//! Peering identities ("tenants"): what a provider grants a consumer, and how it is kept alive
//! and revoked.
//!
//! `liqoctl generate peer-command`, run against the provider, creates for each future consumer a
//! *tenant namespace* `liqo-tenant-<suffix>` holding a ServiceAccount ([`CONSUMER_SERVICE_ACCOUNT`])
//! and a Lease ([`LEASE_NAME`]). The ServiceAccount's permissions come from the ClusterRole and
//! the ValidatingAdmissionPolicies in `deploy/peering/`: RBAC allows the reflected kinds, the
//! policies narrow that to objects labelled with the consumer's origin, in namespaces the
//! consumer created. The Lease is the *parameter* of the consumer's policy binding:
//!
//! - `spec.holderIdentity` is the consumer's cluster id. It is empty until `liqoctl peer
//!   out-of-band` claims the identity (trust on first use; the policy forbids changing it once
//!   set), so the peer command itself need not name the consumer.
//! - `spec.renewTime` is kept fresh by the consumer's host ([`renew_lease`]). The provider's host
//!   ([`run_provider`]) shows the peering as `IncomingPeering Established` while it is fresh and
//!   revokes the identity when it has been stale for longer than a grace period, or at once when
//!   the consumer released it ([`release_lease`], on `liqoctl unpeer`).
//!
//! The bound token of the peer command expires (`--ttl`); the consumer's host replaces it with a
//! fresh token before it does ([`request_token`]), so a peering lives as long as its Lease.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::conditions::now;
use crate::api::foreign_cluster::{
    ForeignCluster, ForeignClusterStatus, PeeringCondition, PeeringConditionStatus,
    PeeringConditionType, PeeringRole,
};
use crate::labels;
use crate::plugin::ClusterIdentity;

/// Label on every tenant namespace (value `true`).
pub const TENANT_NAMESPACE_LABEL: &str = "liqo.io/tenant-namespace";
/// Prefix of tenant namespace names (the API server adds a random suffix).
pub const TENANT_NAMESPACE_PREFIX: &str = "liqo-tenant-";
/// Label on the cluster-scoped objects of a tenant (ClusterRoleBinding, policy binding) and on
/// a ForeignCluster the provider created for an incoming peering: the tenant namespace.
pub const TENANT_LABEL: &str = "liqo.io/tenant";
/// Name of the consumer's ServiceAccount in its tenant namespace.
pub const CONSUMER_SERVICE_ACCOUNT: &str = "liqo-consumer";
/// Name of the consumer's Lease in its tenant namespace.
pub const LEASE_NAME: &str = "liqo-peering";
/// Label on peering Leases (value `true`), so the provider lists them cluster-wide.
pub const PEERING_LEASE_LABEL: &str = "liqo.io/peering-lease";
/// Label on a peering Lease: the provider's cluster id (the destination the policy enforces).
pub const PROVIDER_ID_LABEL: &str = "liqo.io/provider-cluster-id";
/// Annotation on a peering Lease: when the peer command's token expires (RFC 3339). An
/// identity nobody claimed is revoked then.
pub const TOKEN_EXPIRATION_ANNOTATION: &str = "liqo.io/peer-command-expiration";
/// The ClusterRole bound to every consumer (`deploy/peering/clusterrole.yaml`).
pub const CLUSTER_ROLE: &str = "liqo-peering-consumer";
/// The policy narrowing reflection writes to the consumer's own objects
/// (`deploy/peering/policies.yaml`); bound once per tenant with the Lease as parameter.
pub const REFLECTION_POLICY: &str = "liqo-peering-reflection";
/// The policy guarding the Lease and token requests (bound once, cluster-wide).
pub const TENANT_POLICY: &str = "liqo-peering-tenant";
/// How long a renewal keeps the Lease fresh; the consumer renews every 30 seconds.
pub const LEASE_DURATION_SECONDS: i32 = 90;
/// Key of the consumer's credential Secret naming its tenant namespace on the provider. Only
/// credentials made by `liqoctl peer out-of-band` have it; others keep no Lease.
pub const CREDENTIALS_KEY_TENANT: &str = "tenantNamespace";
/// Lifetime the consumer's host asks for when it replaces its token (at most 48 hours, which
/// the tenant policy enforces).
pub const TOKEN_REFRESH_SECONDS: i64 = 24 * 3600;
/// Field manager of tenant objects written by the hosts and liqoctl.
pub const FIELD_MANAGER: &str = "peering.liqo.io";

/// The user name of the consumer's ServiceAccount in `tenant`.
pub fn consumer_username(tenant: &str) -> String {
    format!("system:serviceaccount:{tenant}:{CONSUMER_SERVICE_ACCOUNT}")
}

/// The tenant namespace of a user name, when it is a consumer ServiceAccount.
pub fn tenant_of_username(username: &str) -> Option<&str> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (namespace, account) = rest.split_once(':')?;
    (account == CONSUMER_SERVICE_ACCOUNT && namespace.starts_with(TENANT_NAMESPACE_PREFIX))
        .then_some(namespace)
}

/// The times of a JWT, read without verifying its signature (the API server verifies it; the
/// client only wants to warn early and to renew in time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenTimes {
    /// `iat`, seconds since the epoch.
    pub issued_at: Option<i64>,
    /// `exp`, seconds since the epoch.
    pub expires_at: Option<i64>,
}

/// Decodes the `iat` and `exp` claims of a JWT; `None` when `token` is not a JWT.
pub fn token_times(token: &str) -> Option<TokenTimes> {
    let mut parts = token.trim().split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(TokenTimes {
        issued_at: claims.get("iat").and_then(serde_json::Value::as_i64),
        expires_at: claims.get("exp").and_then(serde_json::Value::as_i64),
    })
}

/// Whether a token should be replaced at `now` (seconds): past half of its lifetime.
pub fn token_needs_refresh(times: TokenTimes, now: i64) -> bool {
    match (times.issued_at, times.expires_at) {
        (Some(iat), Some(exp)) if exp > iat => now >= iat + (exp - iat) / 2,
        (_, Some(exp)) => now >= exp - TOKEN_REFRESH_SECONDS / 2,
        _ => false,
    }
}

fn micro_time(t: Timestamp) -> serde_json::Value {
    // MicroTime is RFC 3339 with exactly six fractional digits.
    json!(t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

/// Claims or renews the consumer's Lease on the provider (through the peering credential):
/// holder `consumer_id`, renewed now. Claiming an identity someone else holds is refused by the
/// provider's tenant policy.
pub async fn renew_lease(peer: &Client, tenant: &str, consumer_id: &str) -> kube::Result<Lease> {
    renew_lease_announcing(peer, tenant, consumer_id, json!({})).await
}

/// Like [`renew_lease`], also writing `annotations` (a JSON merge patch of the Lease's
/// annotations; the tenant policy lets a consumer change only `gateway.liqo.io/*` ones, which
/// announce its gateway, see [`crate::transport`]).
pub async fn renew_lease_announcing(
    peer: &Client,
    tenant: &str,
    consumer_id: &str,
    annotations: serde_json::Value,
) -> kube::Result<Lease> {
    let mut patch = json!({"spec": {
        "holderIdentity": consumer_id,
        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
        "renewTime": micro_time(Timestamp::now()),
    }});
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        patch["metadata"] = json!({"annotations": annotations});
    }
    Api::<Lease>::namespaced(peer.clone(), tenant)
        .patch(LEASE_NAME, &PatchParams::default(), &Patch::Merge(patch))
        .await
}

/// Releases the consumer's Lease (on unpeer): the renew time goes back to the epoch, so the
/// provider sees it expired long ago and revokes the identity at once. (A Lease cannot be
/// deleted by the consumer, and its duration must stay positive.)
pub async fn release_lease(peer: &Client, tenant: &str) -> kube::Result<Lease> {
    Api::<Lease>::namespaced(peer.clone(), tenant)
        .patch(
            LEASE_NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"renewTime": micro_time(Timestamp::UNIX_EPOCH)}})),
        )
        .await
}

/// Asks the API server of `client` for a bound token of the consumer ServiceAccount in
/// `tenant`, valid `seconds`. Used by liqoctl (as admin, on the provider) and by the consumer's
/// host (as the ServiceAccount itself, to replace its token).
pub async fn request_token(client: &Client, tenant: &str, seconds: i64) -> kube::Result<String> {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(seconds),
            bound_object_ref: None,
        },
        ..TokenRequest::default()
    };
    let answer: TokenRequest = Api::<ServiceAccount>::namespaced(client.clone(), tenant)
        .create_subresource(
            "token",
            CONSUMER_SERVICE_ACCOUNT,
            &PostParams::default(),
            &request,
        )
        .await?;
    Ok(answer.status.map(|s| s.token).unwrap_or_default())
}

/// The state of one peering Lease, as the provider sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// Nobody claimed the identity; it is revoked once the peer command expires.
    Unclaimed {
        /// Whether the peer command has expired.
        expired: bool,
    },
    /// Claimed by `consumer` and renewed recently.
    Fresh {
        /// The consumer's cluster id.
        consumer: String,
    },
    /// Claimed, not renewed in time; revoked once `revoke` is true.
    Stale {
        /// The consumer's cluster id.
        consumer: String,
        /// Whether the grace period has passed too.
        revoke: bool,
    },
}

/// Classifies `lease` at `now` (seconds since the epoch) with revocation grace `grace`.
pub fn lease_state(lease: &Lease, now: i64, grace: Duration) -> LeaseState {
    let spec = lease.spec.clone().unwrap_or_default();
    let consumer = spec.holder_identity.unwrap_or_default();
    if consumer.is_empty() {
        let expired = lease
            .annotations()
            .get(TOKEN_EXPIRATION_ANNOTATION)
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_some_and(|t| t.as_second() <= now);
        return LeaseState::Unclaimed { expired };
    }
    let renewed = spec
        .renew_time
        .map(|t| t.0.as_second())
        .or_else(|| spec.acquire_time.map(|t| t.0.as_second()))
        .unwrap_or(0);
    let valid_until = renewed
        + i64::from(
            spec.lease_duration_seconds
                .unwrap_or(LEASE_DURATION_SECONDS),
        );
    if now < valid_until {
        LeaseState::Fresh { consumer }
    } else {
        LeaseState::Stale {
            consumer,
            revoke: now >= valid_until + grace.as_secs() as i64,
        }
    }
}

/// Errors of the provider-side tenant controller.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// An API request failed.
    #[error("tenant {tenant}: {action}: {source}")]
    Kube {
        /// The tenant namespace.
        tenant: String,
        /// What was being done.
        action: String,
        /// The API error.
        source: kube::Error,
    },
}

/// How often the provider looks at the peering Leases.
const PROVIDER_INTERVAL: Duration = Duration::from_secs(3);

/// Runs the provider side until `shutdown` resolves: every few seconds, for each peering Lease,
/// reports the incoming peering on the consumer's ForeignCluster (creating it, role Consumer)
/// and revokes identities that expired (grace `grace` after the Lease), were released, or were
/// never claimed before the peer command expired.
pub async fn run_provider(
    client: Client,
    local: ClusterIdentity,
    grace: Duration,
    transport: Option<crate::transport::Transport>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(PROVIDER_INTERVAL);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        if let Err(err) = provider_pass(&client, &local, grace, transport.as_ref()).await {
            tracing::warn!("{err}");
        }
    }
}

async fn provider_pass(
    client: &Client,
    local: &ClusterIdentity,
    grace: Duration,
    transport: Option<&crate::transport::Transport>,
) -> Result<(), TenantError> {
    let leases = Api::<Lease>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{PEERING_LEASE_LABEL}=true")))
        .await
        .map_err(|source| TenantError::Kube {
            tenant: "*".into(),
            action: "listing peering Leases".into(),
            source,
        })?;
    let now = Timestamp::now().as_second();
    let states: Vec<(String, LeaseState)> = leases
        .items
        .iter()
        .filter(|l| l.name_any() == LEASE_NAME)
        .filter_map(|l| Some((l.namespace()?, lease_state(l, now, grace))))
        .collect();
    let fresh: HashSet<&str> = states
        .iter()
        .filter_map(|(_, s)| match s {
            LeaseState::Fresh { consumer } => Some(consumer.as_str()),
            _ => None,
        })
        .collect();
    // Consumers whose gateway this cluster dials: announced on their fresh Leases.
    let mut gateways = BTreeMap::new();
    // A consumer id is claimed by its first Lease holder; two tenants claiming the same id with
    // gateways would let one receive the other's traffic: neither is dialed then.
    let mut contested = std::collections::BTreeSet::new();
    for lease in leases.items.iter().filter(|l| l.name_any() == LEASE_NAME) {
        let (Some(tenant), LeaseState::Fresh { consumer }) = (
            lease
                .namespace()
                .filter(|ns| ns.starts_with(TENANT_NAMESPACE_PREFIX)),
            lease_state(lease, now, grace),
        ) else {
            continue;
        };
        match crate::transport::import_peer_of(lease.annotations()) {
            Some(Ok(peer)) => {
                let previous = gateways.insert(consumer.clone(), peer);
                contested.extend(previous.map(|_| consumer));
            }
            Some(Err(reason)) => {
                tracing::debug!(%tenant, %consumer, %reason, "unusable gateway announcement")
            }
            None => {}
        }
    }
    for consumer in contested {
        tracing::warn!(%consumer, "several tenants claim this consumer id and announce a gateway: none is dialed");
        gateways.remove(&consumer);
    }
    if let Some(transport) = transport {
        transport.set_import_peers(gateways.clone());
    }
    for (tenant, state) in &states {
        let result = match state {
            LeaseState::Fresh { consumer } => {
                // The consumer's host renews its Lease but its gateway link is down: clients
                // here must not be sent into a path that resets them. (A live consumer marks
                // its endpoints not ready itself; this covers a gateway that cannot.)
                if let Some(transport) = transport
                    && gateways.contains_key(consumer)
                    && !transport.data_path_up(consumer)
                    && let Err(err) =
                        gate_endpoints(client, tenant, consumer, &local.id, GateReason::LinkDown)
                            .await
                {
                    tracing::warn!("{err}");
                }
                let bound = bind_twin_namespaces(client, tenant, consumer, &local.id).await;
                let marked = incoming(
                    client,
                    tenant,
                    consumer,
                    PeeringConditionStatus::Established,
                )
                .await;
                bound.and(marked)
            }
            LeaseState::Stale {
                consumer,
                revoke: false,
            } => {
                if fresh.contains(consumer.as_str()) {
                    Ok(())
                } else {
                    let gated = gate_endpoints(
                        client,
                        tenant,
                        consumer,
                        &local.id,
                        GateReason::LeaseExpired,
                    )
                    .await;
                    let marked =
                        incoming(client, tenant, consumer, PeeringConditionStatus::Error).await;
                    gated.and(marked)
                }
            }
            LeaseState::Stale {
                consumer,
                revoke: true,
            } => {
                // A consumer that peered again through another tenant keeps its namespaces.
                let only = !fresh.contains(consumer.as_str());
                revoke(
                    client,
                    tenant,
                    Some(consumer.as_str()).filter(|_| only),
                    local,
                )
                .await
            }
            LeaseState::Unclaimed { expired: true } => revoke(client, tenant, None, local).await,
            LeaseState::Unclaimed { expired: false } => Ok(()),
        };
        if let Err(err) = result {
            tracing::warn!("{err}");
        }
    }
    Ok(())
}

/// Peer-health gating: while a consumer's Lease is stale (its host stopped renewing it for
/// longer than the Lease duration), every endpoint of the EndpointSlices it reflected here is
/// marked not ready, so this cluster's clients stop being sent to a cluster that may be
/// unreachable. The slices' intent annotation is removed at the same time: when the consumer's
/// host comes back it sees that its intent is missing and re-applies the slices, which restores
/// the endpoints' real readiness. If it never comes back, revocation removes the slices.
/// Returns how many slices were gated by this call.
pub async fn gate_endpoints(
    client: &Client,
    tenant: &str,
    consumer: &str,
    local_id: &str,
    reason: GateReason,
) -> Result<usize, TenantError> {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let err = |action: String| {
        move |source| TenantError::Kube {
            tenant: tenant.to_string(),
            action,
            source,
        }
    };
    let selector = format!(
        "{}={consumer},{}={local_id},{}={}",
        labels::ORIGIN,
        labels::DESTINATION,
        labels::ENDPOINTSLICE_MANAGED_BY,
        labels::ENDPOINTSLICE_MANAGED_BY_REFLECTION
    );
    let slices = Api::<EndpointSlice>::all(client.clone())
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(err("listing the consumer's EndpointSlices".into()))?;
    let mut gated = 0;
    for slice in slices {
        let intent = slice
            .annotations()
            .contains_key(crate::reflect::intent::INTENT_HASH_ANNOTATION);
        let any_ready = slice.endpoints.iter().any(|e| {
            // An endpoint without a ready condition counts as ready (API semantics).
            e.conditions.as_ref().and_then(|c| c.ready) != Some(false)
        });
        // While only the link is down, the live consumer writes its slices not ready itself
        // (with its intent): touching them again would make it re-apply them in a loop.
        if !any_ready && (!intent || reason == GateReason::LinkDown) {
            continue;
        }
        let endpoints: Vec<serde_json::Value> = slice
            .endpoints
            .iter()
            .map(|e| {
                let mut e = serde_json::to_value(e).unwrap_or_default();
                e["conditions"]["ready"] = json!(false);
                e["conditions"]["serving"] = json!(false);
                e
            })
            .collect();
        let namespace = slice.namespace().unwrap_or_default();
        let name = slice.name_any();
        // The resourceVersion makes the patch fail, rather than overwrite, if the consumer
        // wrote the slice meanwhile.
        let patch = json!({
            "metadata": {
                "resourceVersion": slice.resource_version(),
                "annotations": {crate::reflect::intent::INTENT_HASH_ANNOTATION: null},
            },
            "endpoints": endpoints,
        });
        match Api::<EndpointSlice>::namespaced(client.clone(), &namespace)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => gated += 1,
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
            Err(e) => return Err(err(format!("gating EndpointSlice {namespace}/{name}"))(e)),
        }
    }
    if gated > 0 {
        match reason {
            GateReason::LeaseExpired => tracing::warn!(
                %tenant, %consumer, slices = gated,
                "the consumer stopped renewing its peering Lease: its endpoints are marked not ready here until it comes back"
            ),
            GateReason::LinkDown => tracing::warn!(
                %tenant, %consumer, slices = gated,
                "the gateway link to the consumer is down: its endpoints are marked not ready here until it is back"
            ),
        }
    }
    Ok(gated)
}

/// Why a consumer's reflected endpoints are gated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateReason {
    /// Its host stopped renewing the peering Lease.
    LeaseExpired,
    /// The gateway link to it is down (its host may still be alive).
    LinkDown,
}

/// ClusterRole granting the reflected kinds, bound inside each twin namespace of a consumer.
pub const REFLECTED_KINDS_CLUSTER_ROLE: &str = "liqo-peering-reflected-kinds";

/// Gives the tenant's identity the reflected kinds in each namespace its consumer created here
/// (labelled origin = consumer, destination = this cluster), and nowhere else: RBAC cannot
/// follow labels, so the host adds one RoleBinding per twin namespace. Only missing bindings
/// are created, so a steady state makes no writes. Twin namespaces take their bindings with
/// them when deleted.
async fn bind_twin_namespaces(
    client: &Client,
    tenant: &str,
    consumer: &str,
    local_id: &str,
) -> Result<(), TenantError> {
    use k8s_openapi::api::rbac::v1::RoleBinding;
    let err = |action: String| {
        move |source| TenantError::Kube {
            tenant: tenant.to_string(),
            action,
            source,
        }
    };
    let selector = format!(
        "{}={consumer},{}={local_id}",
        crate::labels::ORIGIN,
        crate::labels::DESTINATION
    );
    let twins = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(err("listing twin namespaces".into()))?;
    let existing = Api::<RoleBinding>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{TENANT_LABEL}={tenant}")))
        .await
        .map_err(err("listing RoleBindings".into()))?;
    for ns in twins.items {
        let namespace = ns.name_any();
        if ns.metadata.deletion_timestamp.is_some()
            || existing
                .items
                .iter()
                .any(|rb| rb.namespace().as_deref() == Some(namespace.as_str()))
        {
            continue;
        }
        let binding: RoleBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": tenant, "namespace": namespace, "labels": tenant_labels(tenant)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": REFLECTED_KINDS_CLUSTER_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": CONSUMER_SERVICE_ACCOUNT,
                          "namespace": tenant}],
        }))
        .map_err(|e| TenantError::Kube {
            tenant: tenant.to_string(),
            action: "building a RoleBinding".into(),
            source: kube::Error::SerdeError(e),
        })?;
        match Api::<RoleBinding>::namespaced(client.clone(), &namespace)
            .create(&PostParams::default(), &binding)
            .await
        {
            Ok(_) => {
                tracing::info!(%tenant, %namespace, "reflected kinds granted in twin namespace")
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(err(format!("binding reflected kinds in {namespace}"))(e)),
        }
    }
    Ok(())
}

/// Writes the IncomingPeering condition of the ForeignCluster of `consumer`, creating it (role
/// Consumer, no credential) when there is none.
async fn incoming(
    client: &Client,
    tenant: &str,
    consumer: &str,
    state: PeeringConditionStatus,
) -> Result<(), TenantError> {
    let err = |action: &str| {
        let action = action.to_string();
        move |source| TenantError::Kube {
            tenant: tenant.to_string(),
            action,
            source,
        }
    };
    let api: Api<ForeignCluster> = Api::all(client.clone());
    let all = api
        .list(&ListParams::default())
        .await
        .map_err(err("listing ForeignClusters"))?;
    let fc = match all
        .items
        .into_iter()
        .find(|f| f.spec.cluster_id == consumer)
    {
        Some(fc) => fc,
        None => {
            if state != PeeringConditionStatus::Established {
                return Ok(());
            }
            let fc: ForeignCluster = serde_json::from_value(json!({
                "apiVersion": "core.liqo.io/v1beta1", "kind": "ForeignCluster",
                "metadata": {"name": consumer, "labels": {TENANT_LABEL: tenant}},
                "spec": {"clusterID": consumer},
            }))
            .expect("a valid ForeignCluster");
            tracing::info!(%consumer, %tenant, "incoming peering: ForeignCluster created");
            api.create(&PostParams::default(), &fc)
                .await
                .map_err(err("creating the consumer's ForeignCluster"))?
        }
    };
    let mut status = fc.status.clone().unwrap_or_default();
    let t = now();
    status.ensure_all_conditions(t.clone());
    let condition = match state {
        PeeringConditionStatus::Established => PeeringCondition::new(
            PeeringConditionType::IncomingPeering,
            PeeringConditionStatus::Established,
        )
        .with_reason(
            "ConsumerLeaseFresh",
            format!("{consumer} reflects objects into this cluster (tenant {tenant})"),
        ),
        other => PeeringCondition::new(PeeringConditionType::IncomingPeering, other).with_reason(
            "ConsumerLeaseExpired",
            format!(
                "{consumer} stopped renewing its Lease in {tenant}; its identity will be revoked"
            ),
        ),
    };
    status.set_condition(condition, t.clone());
    // Without an outgoing credential the authentication column is about the consumer's identity.
    if fc.spec.credentials_secret_ref.is_none() {
        status.set_condition(
            PeeringCondition::new(PeeringConditionType::AuthenticationStatus, state).with_reason(
                "ConsumerIdentity",
                format!("{consumer} authenticates as {}", consumer_username(tenant)),
            ),
            t,
        );
    }
    status.role = role(&status);
    write_status(client, &fc, status)
        .await
        .map_err(err("writing the ForeignCluster status"))
}

/// The role of a peer from the two peering conditions.
pub fn role(status: &ForeignClusterStatus) -> PeeringRole {
    let out = status.condition_status(PeeringConditionType::OutgoingPeering)
        == PeeringConditionStatus::Established;
    let inc = status.condition_status(PeeringConditionType::IncomingPeering)
        == PeeringConditionStatus::Established;
    match (out, inc) {
        (true, true) => PeeringRole::ConsumerAndProvider,
        (true, false) => PeeringRole::Provider,
        (false, true) => PeeringRole::Consumer,
        (false, false) => PeeringRole::Unknown,
    }
}

async fn write_status(
    client: &Client,
    fc: &ForeignCluster,
    status: ForeignClusterStatus,
) -> kube::Result<()> {
    let unchanged = fc.status.as_ref().is_some_and(|old| {
        old.role == status.role
            && PeeringConditionType::ALL
                .iter()
                .all(|t| old.condition(*t) == status.condition(*t))
    });
    if unchanged {
        return Ok(());
    }
    Api::<ForeignCluster>::all(client.clone())
        .patch_status(
            &fc.name_any(),
            &PatchParams::apply(labels::FIELD_MANAGER).force(),
            &Patch::Apply(json!({
                "apiVersion": "core.liqo.io/v1beta1",
                "kind": "ForeignCluster",
                "status": status,
            })),
        )
        .await
        .map(drop)
}

/// Ignores "not found": revocation is idempotent.
fn gone<T>(result: kube::Result<T>) -> kube::Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Revokes the identity of `tenant`: first the ServiceAccount (its tokens stop working at
/// once), then — when `consumer` is given — the twin namespaces it created here and its
/// ForeignCluster, and last the tenant namespace. The ClusterRoleBinding and the policy binding
/// named after the tenant are owned by its namespace, so the garbage collector removes them; the
/// host needs no permission on bindings. (Should the binding's Lease go first, the binding
/// denies every write of the identity: it fails closed.)
pub async fn revoke(
    client: &Client,
    tenant: &str,
    consumer: Option<&str>,
    local: &ClusterIdentity,
) -> Result<(), TenantError> {
    let err = |action: String| {
        move |source| TenantError::Kube {
            tenant: tenant.to_string(),
            action,
            source,
        }
    };
    let dp = DeleteParams::default();
    gone(
        Api::<ServiceAccount>::namespaced(client.clone(), tenant)
            .delete(CONSUMER_SERVICE_ACCOUNT, &dp)
            .await,
    )
    .map_err(err("deleting the ServiceAccount".into()))?;
    if let Some(consumer) = consumer {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let selector = format!(
            "{}={consumer},{}={}",
            labels::ORIGIN,
            labels::DESTINATION,
            local.id
        );
        let twins = namespaces
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(err("listing twin namespaces".into()))?;
        for ns in twins.items {
            let name = ns.name_any();
            if ns.metadata.deletion_timestamp.is_none() {
                tracing::info!(%consumer, namespace = %name, "revocation: twin namespace deleted");
                gone(namespaces.delete(&name, &dp).await)
                    .map_err(err(format!("deleting twin namespace {name}")))?;
            }
        }
        let fcs: Api<ForeignCluster> = Api::all(client.clone());
        let all = fcs
            .list(&ListParams::default())
            .await
            .map_err(err("listing ForeignClusters".into()))?;
        for fc in all.items.iter().filter(|f| f.spec.cluster_id == consumer) {
            if fc.spec.credentials_secret_ref.is_none() {
                gone(fcs.delete(&fc.name_any(), &dp).await)
                    .map_err(err(format!("deleting ForeignCluster {}", fc.name_any())))?;
            } else {
                // This cluster also peers towards the consumer: keep that, clear the incoming side.
                let mut status = fc.status.clone().unwrap_or_default();
                status.set_condition(
                    PeeringCondition::new(
                        PeeringConditionType::IncomingPeering,
                        PeeringConditionStatus::None,
                    )
                    .with_reason("IdentityRevoked", "the consumer's identity was revoked"),
                    now(),
                );
                status.role = role(&status);
                write_status(client, fc, status)
                    .await
                    .map_err(err("writing the ForeignCluster status".into()))?;
            }
        }
    }
    gone(
        Api::<Namespace>::all(client.clone())
            .delete(tenant, &dp)
            .await,
    )
    .map_err(err("deleting the tenant namespace".into()))?;
    tracing::info!(%tenant, consumer = consumer.unwrap_or("<unclaimed>"), "peering identity revoked");
    Ok(())
}

/// Labels of the objects `liqoctl generate peer-command` creates for `tenant`.
pub fn tenant_labels(tenant: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(TENANT_LABEL.to_string(), tenant.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn jwt(claims: serde_json::Value) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            e.encode(br#"{"alg":"RS256"}"#),
            e.encode(claims.to_string())
        )
    }

    #[test]
    fn reads_token_times_without_verifying() {
        let t = token_times(&jwt(json!({"iat": 100, "exp": 200}))).unwrap();
        assert_eq!(t.issued_at, Some(100));
        assert_eq!(t.expires_at, Some(200));
        assert!(!token_needs_refresh(t, 149));
        assert!(token_needs_refresh(t, 150));
        assert!(token_times("not-a-jwt").is_none());
        assert!(token_times("a.!!!.c").is_none());
    }

    #[test]
    fn usernames() {
        assert_eq!(
            tenant_of_username(&consumer_username("liqo-tenant-abc")),
            Some("liqo-tenant-abc")
        );
        assert_eq!(
            tenant_of_username("system:serviceaccount:default:liqo-consumer"),
            None
        );
        assert_eq!(tenant_of_username("kubernetes-admin"), None);
    }

    fn lease(holder: Option<&str>, renewed: Option<i64>) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                lease_duration_seconds: Some(90),
                renew_time: renewed.map(|s| MicroTime(Timestamp::from_second(s).unwrap())),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn lease_states() {
        let grace = Duration::from_secs(60);
        let fresh = lease(Some("london"), Some(1000));
        assert_eq!(
            lease_state(&fresh, 1089, grace),
            LeaseState::Fresh {
                consumer: "london".into()
            }
        );
        assert_eq!(
            lease_state(&fresh, 1090, grace),
            LeaseState::Stale {
                consumer: "london".into(),
                revoke: false
            }
        );
        assert_eq!(
            lease_state(&fresh, 1150, grace),
            LeaseState::Stale {
                consumer: "london".into(),
                revoke: true
            }
        );
        // Released: renew time at the epoch.
        assert!(matches!(
            lease_state(&lease(Some("london"), Some(0)), 1000, grace),
            LeaseState::Stale { revoke: true, .. }
        ));
        let mut unclaimed = lease(None, None);
        assert_eq!(
            lease_state(&unclaimed, 1000, grace),
            LeaseState::Unclaimed { expired: false }
        );
        unclaimed.metadata.annotations = Some(BTreeMap::from([(
            TOKEN_EXPIRATION_ANNOTATION.to_string(),
            Timestamp::from_second(999).unwrap().to_string(),
        )]));
        assert_eq!(
            lease_state(&unclaimed, 1000, grace),
            LeaseState::Unclaimed { expired: true }
        );
    }

    #[test]
    fn micro_time_has_six_digits() {
        let v = micro_time(Timestamp::UNIX_EPOCH);
        assert_eq!(v, json!("1970-01-01T00:00:00.000000Z"));
    }
}
