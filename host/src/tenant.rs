//! The provider's controller of peering identities ("tenants"): every few seconds it reads the
//! peering Lease of each tenant namespace, reports the incoming peering on the consumer's
//! ForeignCluster, gates a stale consumer's endpoints, and revokes identities that went stale,
//! were released, or were never claimed. What an identity is, and the operations on it, are
//! the peering protocol's: see [`crate::protocol`].

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::conditions::now;
use crate::api::foreign_cluster::{
    ForeignCluster, PeeringCondition, PeeringConditionStatus, PeeringConditionType, PeeringRole,
};
use crate::api::wire;
use crate::api::wire::CONSUMER_ID_LABEL;
use crate::api::wire::LEASE_NAME;
use crate::api::wire::PEERING_LEASE_LABEL;
use crate::api::wire::TENANT_LABEL;
use crate::api::wire::TENANT_NAMESPACE_LABEL;
use crate::plugin::ClusterIdentity;
use crate::protocol::identity::consumer_username;
use crate::protocol::identity::is_tenant_namespace;
use crate::protocol::lease::{LeaseState, RenewalClock, lease_state};
use crate::protocol::provision::write_peering_status;
use crate::protocol::{TenantError, revoke, twin_namespaces};

/// How often the provider looks at the peering Leases.
const PROVIDER_INTERVAL: Duration = Duration::from_secs(3);

/// Runs the provider side until `shutdown` resolves: every few seconds, for each peering Lease
/// of a tenant namespace this cluster made, reports the incoming peering on the consumer's
/// ForeignCluster (creating it, role Consumer), binds each claimed consumer id to one tenant,
/// and revokes identities that expired (grace `grace` after the Lease), were released, claimed
/// an id another tenant holds, or were never claimed before the peer command expired.
pub async fn run_provider(
    client: Client,
    local: ClusterIdentity,
    grace: Duration,
    transport: Option<std::sync::Arc<dyn crate::peers::DataPath>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(PROVIDER_INTERVAL);
    let mut clock = RenewalClock::default();
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        if let Err(err) =
            provider_pass(&client, &local, grace, transport.as_deref(), &mut clock).await
        {
            tracing::warn!("{err}");
        }
    }
}

/// The consumer ids claimed by more than one tenant that has not been bound to it: each such
/// tenant is revoked (a tenant already bound keeps its id). `claims` is (tenant, claimed id,
/// bound id) per tenant.
pub fn contested_claims(claims: &[(String, String, Option<String>)]) -> BTreeSet<String> {
    let mut contested = BTreeSet::new();
    for (tenant, id, bound) in claims {
        if bound.as_deref() == Some(id.as_str()) {
            continue;
        }
        if bound.is_some() {
            // Bound to another id than the Lease says: the policy forbids it; never trust it.
            contested.insert(tenant.clone());
            continue;
        }
        let others = claims
            .iter()
            .filter(|(t, i, b)| t != tenant && (i == id || b.as_deref() == Some(id.as_str())))
            .count();
        if others > 0 {
            contested.insert(tenant.clone());
        }
    }
    contested
}

/// One pass of the provider loop: lists the tenants' Leases, settles the claims, judges each
/// Lease's freshness, hands the announced gateways to the transport and acts on each tenant.
async fn provider_pass(
    client: &Client,
    local: &ClusterIdentity,
    grace: Duration,
    transport: Option<&dyn crate::peers::DataPath>,
    clock: &mut RenewalClock,
) -> Result<(), TenantError> {
    let TenantLeases { namespaces, leases } = list_tenant_leases(client).await?;
    let now = Timestamp::now().as_second();
    let alive: HashSet<String> = leases.iter().filter_map(|l| l.namespace()).collect();
    clock.retain(&alive);
    let contested = settle_claims(client, local, &namespaces, &leases).await;
    let states = lease_states(&leases, &contested, clock, now, grace);
    let gateways = announced_gateways(&states, &leases);
    if let Some(transport) = transport {
        transport.set_import_peers(gateways.clone());
    }
    let view = ProviderView {
        client,
        local,
        transport,
        fresh: states
            .iter()
            .filter_map(|(_, s)| match s {
                LeaseState::Fresh { consumer } => Some(consumer.as_str()),
                _ => None,
            })
            .collect(),
        gateways,
    };
    for (tenant, state) in &states {
        if let Err(err) = act_on_lease(&view, tenant, state).await {
            tracing::warn!("{err}");
        }
    }
    Ok(())
}

/// The tenant namespaces this cluster made, by name, and the peering Leases in them.
struct TenantLeases {
    namespaces: BTreeMap<String, Namespace>,
    leases: Vec<Lease>,
}

/// Lists the tenant namespaces and their peering Leases.
async fn list_tenant_leases(client: &Client) -> Result<TenantLeases, TenantError> {
    let err = |action: &str| {
        let action = action.to_string();
        move |source| TenantError::Kube {
            tenant: "*".into(),
            action,
            source,
        }
    };
    // Only namespaces this cluster made are tenants; a Lease anywhere else is ignored.
    let namespaces: BTreeMap<String, Namespace> = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{TENANT_NAMESPACE_LABEL}=true")))
        .await
        .map_err(err("listing tenant namespaces"))?
        .items
        .into_iter()
        .filter(is_tenant_namespace)
        .map(|ns| (ns.name_any(), ns))
        .collect();
    let leases: Vec<Lease> = Api::<Lease>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{PEERING_LEASE_LABEL}=true")))
        .await
        .map_err(err("listing peering Leases"))?
        .items
        .into_iter()
        .filter(|l| l.name_any() == LEASE_NAME)
        .filter(|l| l.namespace().is_some_and(|ns| namespaces.contains_key(&ns)))
        .collect();
    Ok(TenantLeases { namespaces, leases })
}

/// One consumer id, one tenant: binds each new claim to its tenant namespace, or revokes the
/// tenants that contest an id. Returns the contested tenants.
async fn settle_claims(
    client: &Client,
    local: &ClusterIdentity,
    namespaces: &BTreeMap<String, Namespace>,
    leases: &[Lease],
) -> BTreeSet<String> {
    let claims: Vec<(String, String, Option<String>)> = leases
        .iter()
        .filter_map(|l| {
            let tenant = l.namespace()?;
            let id = l
                .spec
                .as_ref()?
                .holder_identity
                .clone()
                .filter(|h| !h.is_empty())?;
            let bound = namespaces[&tenant].labels().get(CONSUMER_ID_LABEL).cloned();
            Some((tenant, id, bound))
        })
        .collect();
    let mut contested = contested_claims(&claims);
    // The provider's own id is never a consumer's (the tenant policy refuses the claim too).
    contested.extend(
        claims
            .iter()
            .filter(|(_, id, _)| id == &local.id)
            .map(|(tenant, _, _)| tenant.clone()),
    );
    for (tenant, id, bound) in &claims {
        if contested.contains(tenant) {
            tracing::warn!(%tenant, consumer = %id, "peering identity revoked: it claims a consumer id another tenant holds or claims");
            if let Err(e) = revoke(client, tenant, None).await {
                tracing::warn!("{e}");
            }
        } else if bound.is_none()
            && let Err(e) = Api::<Namespace>::all(client.clone())
                .patch(
                    tenant,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": {CONSUMER_ID_LABEL: id}}})),
                )
                .await
        {
            tracing::warn!(%tenant, %e, "cannot bind the claimed consumer id to its tenant");
        }
    }
    contested
}

/// The state of each uncontested tenant's Lease, judged by this cluster's clock.
fn lease_states(
    leases: &[Lease],
    contested: &BTreeSet<String>,
    clock: &mut RenewalClock,
    now: i64,
    grace: Duration,
) -> Vec<(String, LeaseState)> {
    leases
        .iter()
        .filter_map(|l| {
            let tenant = l.namespace()?;
            if contested.contains(&tenant) {
                return None;
            }
            let renew = l
                .spec
                .as_ref()
                .and_then(|s| s.renew_time.as_ref())
                .map(|t| t.0.as_second());
            let renewed = clock.renewed_at(&tenant, renew, now);
            Some((tenant, lease_state(l, renewed, now, grace)))
        })
        .collect()
}

/// Consumers whose gateway this cluster dials: announced on their fresh Leases.
fn announced_gateways(
    states: &[(String, LeaseState)],
    leases: &[Lease],
) -> BTreeMap<String, crate::protocol::networking::ImportPeer> {
    let mut gateways = BTreeMap::new();
    for (tenant, state) in states {
        let LeaseState::Fresh { consumer } = state else {
            continue;
        };
        let Some(lease) = leases
            .iter()
            .find(|l| l.namespace().as_deref() == Some(tenant))
        else {
            continue;
        };
        match crate::protocol::networking::import_peer_of(lease.annotations()) {
            Some(Ok(peer)) => {
                gateways.insert(consumer.clone(), peer);
            }
            Some(Err(reason)) => {
                tracing::debug!(%tenant, %consumer, %reason, "unusable gateway announcement")
            }
            None => {}
        }
    }
    gateways
}

/// What acting on one tenant's Lease needs from the whole pass.
struct ProviderView<'a> {
    client: &'a Client,
    local: &'a ClusterIdentity,
    transport: Option<&'a dyn crate::peers::DataPath>,
    /// Consumers with a fresh Lease in some tenant.
    fresh: HashSet<&'a str>,
    /// Consumers whose gateway this cluster dials.
    gateways: BTreeMap<String, crate::protocol::networking::ImportPeer>,
}

/// Acts on one tenant's Lease state: marks the consumer's ForeignCluster, gates its endpoints
/// while it is stale, revokes it after the grace or when its peer command expired unclaimed.
async fn act_on_lease(
    view: &ProviderView<'_>,
    tenant: &str,
    state: &LeaseState,
) -> Result<(), TenantError> {
    let client = view.client;
    match state {
        LeaseState::Fresh { consumer } => keep_fresh(view, tenant, consumer).await,
        LeaseState::Stale {
            consumer,
            revoke: false,
        } => {
            if view.fresh.contains(consumer.as_str()) {
                Ok(())
            } else {
                let gated = gate_endpoints(
                    client,
                    tenant,
                    consumer,
                    &view.local.id,
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
            // The ForeignCluster stays while the consumer peers again through another tenant.
            let only = !view.fresh.contains(consumer.as_str());
            revoke(client, tenant, Some(consumer.as_str()).filter(|_| only)).await
        }
        LeaseState::Unclaimed { expired: true } => revoke(client, tenant, None).await,
        LeaseState::Unclaimed { expired: false } => Ok(()),
    }
}

/// A fresh Lease: the consumer's ForeignCluster shows the incoming peering established, and
/// its endpoints are gated while its gateway link is down.
async fn keep_fresh(
    view: &ProviderView<'_>,
    tenant: &str,
    consumer: &str,
) -> Result<(), TenantError> {
    // The consumer's host renews its Lease but its gateway link is down: clients
    // here must not be sent into a path that resets them. (A live consumer marks
    // its endpoints not ready itself; this covers a gateway that cannot.)
    if let Some(transport) = view.transport
        && view.gateways.contains_key(consumer)
        && !transport.data_path_up(consumer)
        && let Err(err) = gate_endpoints(
            view.client,
            tenant,
            consumer,
            &view.local.id,
            GateReason::LinkDown,
        )
        .await
    {
        tracing::warn!("{err}");
    }
    incoming(
        view.client,
        tenant,
        consumer,
        PeeringConditionStatus::Established,
    )
    .await
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
        wire::ORIGIN,
        wire::DESTINATION,
        wire::ENDPOINTSLICE_MANAGED_BY,
        wire::ENDPOINTSLICE_MANAGED_BY_REFLECTION
    );
    let twins = twin_namespaces(client, tenant)
        .await
        .map_err(err("listing twin namespaces".into()))?;
    let slices = Api::<EndpointSlice>::all(client.clone())
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(err("listing the consumer's EndpointSlices".into()))?;
    let mut gated = 0;
    // Only slices in this tenant's own twin namespaces (the labels are the consumer's to write).
    for slice in slices
        .into_iter()
        .filter(|s| s.namespace().is_some_and(|ns| twins.contains(&ns)))
    {
        let intent = slice
            .annotations()
            .contains_key(crate::api::wire::INTENT_HASH_ANNOTATION);
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
                "annotations": {crate::api::wire::INTENT_HASH_ANNOTATION: null},
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
    status.role = PeeringRole::of(&status);
    write_peering_status(client, &fc, status)
        .await
        .map_err(err("writing the ForeignCluster status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_consumer_id_one_tenant() {
        let c = |t: &str, id: &str, bound: Option<&str>| {
            (t.to_string(), id.to_string(), bound.map(String::from))
        };
        // A bound tenant keeps its id; a second claimant is revoked.
        let contested =
            contested_claims(&[c("a", "london", Some("london")), c("b", "london", None)]);
        assert_eq!(contested, BTreeSet::from(["b".to_string()]));
        // Two new claims of one id: neither is trusted.
        let contested = contested_claims(&[c("a", "london", None), c("b", "london", None)]);
        assert_eq!(contested.len(), 2);
        // Different ids, or one tenant alone: nothing contested.
        assert!(
            contested_claims(&[c("a", "london", None), c("b", "paris", Some("paris"))]).is_empty()
        );
        // A tenant bound to another id than its Lease names is never trusted.
        assert_eq!(
            contested_claims(&[c("a", "london", Some("paris"))]),
            BTreeSet::from(["a".to_string()])
        );
    }
}
