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

use std::collections::{BTreeMap, BTreeSet, HashSet};
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
use crate::api::wire;
use crate::api::wire::CONSUMER_ID_LABEL;
use crate::api::wire::CONSUMER_SERVICE_ACCOUNT;
use crate::api::wire::GATEWAY_ENDPOINT_ANNOTATION;
use crate::api::wire::LEASE_NAME;
use crate::api::wire::PEERING_LEASE_LABEL;
use crate::api::wire::PROVIDER_ID_LABEL;
use crate::api::wire::TENANT_LABEL;
use crate::api::wire::TENANT_NAMESPACE_LABEL;
use crate::api::wire::TENANT_NAMESPACE_PREFIX;
use crate::api::wire::TOKEN_EXPIRATION_ANNOTATION;
use crate::plugin::ClusterIdentity;

/// How long a renewal keeps the Lease fresh; the consumer renews every 10 seconds.
pub const LEASE_DURATION_SECONDS: i32 = 90;
/// Lifetime the consumer's host asks for when it replaces its token (at most 48 hours, which
/// the tenant policy enforces).
pub const TOKEN_REFRESH_SECONDS: i64 = 24 * 3600;

/// The user name of the consumer's ServiceAccount in `tenant`.
pub fn consumer_username(tenant: &str) -> String {
    format!("system:serviceaccount:{tenant}:{CONSUMER_SERVICE_ACCOUNT}")
}

/// Whether `ns` is a tenant namespace made by `liqoctl generate peer-command`: its name has
/// [`TENANT_NAMESPACE_PREFIX`] and it carries [`TENANT_NAMESPACE_LABEL`]. A namespace admin can
/// create neither (namespaces are cluster-scoped), nor can a peer (it has no namespace rights),
/// so only these namespaces' Leases and NamespaceMaps are trusted.
pub fn is_tenant_namespace(ns: &Namespace) -> bool {
    ns.name_any().starts_with(TENANT_NAMESPACE_PREFIX)
        && ns.labels().get(TENANT_NAMESPACE_LABEL).map(String::as_str) == Some("true")
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
/// annotations; the tenant policy lets a consumer change only its announcements: the two
/// `gateway.liqo.io/*` ones, see [`crate::transport`], and its declared endpoint ranges, see
/// [`crate::endpoint_ranges`]).
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

/// How the tenant admission policy (`deploy/peering/policies.yaml`) begins its refusal of a
/// Lease annotation: a provider older than an announcement refuses it with these words.
pub const LEASE_ANNOTATIONS_REFUSED: &str =
    "the annotations of a peering Lease belong to the provider";

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

/// A peering identity made by [`provision`].
#[derive(Debug)]
pub struct Provisioned {
    /// The tenant namespace.
    pub tenant: String,
    /// The consumer's bound token (a secret: print it only in the peer command).
    pub token: String,
}

/// Makes, on the provider `client` (an admin), the peering identity of a future consumer:
/// a tenant namespace [`TENANT_NAMESPACE_PREFIX`]`*` (labelled [`TENANT_NAMESPACE_LABEL`], and
/// [`CONSUMER_ID_LABEL`] when `consumer` binds the id now), its Lease, the ServiceAccount
/// [`CONSUMER_SERVICE_ACCOUNT`], the empty NamespaceMap through which the consumer asks for
/// twin namespaces, and a Role that lets the identity renew the Lease, write the NamespaceMap's
/// spec and replace its own token, nothing else. Returns the tenant and a token valid `ttl`.
/// On failure nothing is left: everything lives in the tenant namespace, which is deleted.
/// (The cluster-wide ClusterRole and admission policies of `deploy/peering/` are applied by
/// liqoctl before this.)
pub async fn provision(
    client: &Client,
    provider_id: &str,
    consumer: Option<&str>,
    ttl: Duration,
    gateway_endpoint: Option<&str>,
) -> Result<Provisioned, TenantError> {
    let mut ns_labels = BTreeMap::from([
        (TENANT_NAMESPACE_LABEL.to_string(), "true".to_string()),
        (PROVIDER_ID_LABEL.to_string(), provider_id.to_string()),
    ]);
    if let Some(id) = consumer {
        ns_labels.insert(CONSUMER_ID_LABEL.to_string(), id.to_string());
    }
    let mut ns = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"generateName": TENANT_NAMESPACE_PREFIX, "labels": ns_labels},
    });
    if let Some(endpoint) = gateway_endpoint {
        ns["metadata"]["annotations"] = json!({GATEWAY_ENDPOINT_ANNOTATION: endpoint});
    }
    let ns: Namespace = serde_json::from_value(ns).map_err(|e| TenantError::Kube {
        tenant: TENANT_NAMESPACE_PREFIX.into(),
        action: "building the tenant namespace".into(),
        source: kube::Error::SerdeError(e),
    })?;
    let created = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .map_err(|source| TenantError::Kube {
            tenant: TENANT_NAMESPACE_PREFIX.into(),
            action: "creating the tenant namespace (this needs cluster-admin on the provider)"
                .into(),
            source,
        })?;
    let tenant = created.name_any();
    match provision_inside(client, &tenant, provider_id, ttl).await {
        Ok(token) => Ok(Provisioned { tenant, token }),
        Err(err) => {
            if let Err(cleanup) = gone(
                Api::<Namespace>::all(client.clone())
                    .delete(&tenant, &DeleteParams::default())
                    .await,
            ) {
                tracing::warn!(%tenant, %cleanup, "could not roll back the tenant namespace");
            }
            Err(err)
        }
    }
}

async fn provision_inside(
    client: &Client,
    tenant: &str,
    provider_id: &str,
    ttl: Duration,
) -> Result<String, TenantError> {
    use crate::api::namespace_map::{NAMESPACE_MAP_NAME, NamespaceMap};
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let err = |action: &str| {
        let action = action.to_string();
        move |source| TenantError::Kube {
            tenant: tenant.to_string(),
            action,
            source,
        }
    };
    // Every object below lives in the tenant namespace: one way to build and create each.
    async fn create<K>(
        client: &Client,
        tenant: &str,
        object: serde_json::Value,
        what: &str,
    ) -> Result<(), TenantError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::Serialize
            + serde::de::DeserializeOwned,
        K::DynamicType: Default,
    {
        let fail = |source| TenantError::Kube {
            tenant: tenant.to_string(),
            action: format!("creating the {what}"),
            source,
        };
        let object: K =
            serde_json::from_value(object).map_err(|e| fail(kube::Error::SerdeError(e)))?;
        Api::<K>::namespaced(client.clone(), tenant)
            .create(&PostParams::default(), &object)
            .await
            .map(drop)
            .map_err(fail)
    }
    let expires =
        Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(ttl.as_secs() as i64);
    let labels = tenant_labels(tenant);
    create::<Lease>(
        client,
        tenant,
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {
                "name": LEASE_NAME,
                "labels": {PEERING_LEASE_LABEL: "true", PROVIDER_ID_LABEL: provider_id},
                "annotations": {TOKEN_EXPIRATION_ANNOTATION: expires.to_string()},
            },
            // Unclaimed even when `consumer` binds the id: the tenant namespace's label pins it
            // (the tenant policy refuses any other claim), and a holder without renewals would be
            // a stale Lease to revoke.
            "spec": {"leaseDurationSeconds": LEASE_DURATION_SECONDS},
        }),
        "peering Lease",
    )
    .await?;
    create::<NamespaceMap>(
        client,
        tenant,
        json!({
            "apiVersion": "virtualkubelet.liqo.io/v1beta1", "kind": "NamespaceMap",
            "metadata": {"name": NAMESPACE_MAP_NAME, "labels": labels},
            "spec": {"desiredMapping": {}},
        }),
        "NamespaceMap (are the liqo CRDs installed? run liqoctl install)",
    )
    .await?;
    create::<ServiceAccount>(
        client,
        tenant,
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": CONSUMER_SERVICE_ACCOUNT, "labels": labels},
        }),
        "consumer ServiceAccount",
    )
    .await?;
    // Everything the identity may do outside its twin namespaces, by name.
    create::<Role>(
        client,
        tenant,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": CONSUMER_SERVICE_ACCOUNT, "labels": labels},
            "rules": [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                 "resourceNames": [LEASE_NAME], "verbs": ["get", "update", "patch"]},
                {"apiGroups": ["virtualkubelet.liqo.io"], "resources": ["namespacemaps"],
                 "resourceNames": [NAMESPACE_MAP_NAME], "verbs": ["get", "update", "patch"]},
                {"apiGroups": [""], "resources": ["serviceaccounts/token"],
                 "resourceNames": [CONSUMER_SERVICE_ACCOUNT], "verbs": ["create"]},
            ],
        }),
        "tenant Role",
    )
    .await?;
    create::<RoleBinding>(
        client,
        tenant,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": CONSUMER_SERVICE_ACCOUNT, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": CONSUMER_SERVICE_ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": CONSUMER_SERVICE_ACCOUNT,
                          "namespace": tenant}],
        }),
        "tenant RoleBinding",
    )
    .await?;
    request_token(client, tenant, ttl.as_secs() as i64)
        .await
        .map_err(err("requesting the consumer's token (TokenRequest)"))
}

/// Sets (`Some`) or removes (`None`) the entry of `local` in the tenant's NamespaceMap, through
/// the peering `peer` client; returns the map as the provider has it (unchanged when the entry
/// is already so: a steady state writes nothing).
async fn set_twin_request(
    peer: &Client,
    tenant: &str,
    local: &str,
    remote: Option<&str>,
) -> kube::Result<crate::api::namespace_map::NamespaceMap> {
    use crate::api::namespace_map::{NAMESPACE_MAP_NAME, NamespaceMap};
    let api = Api::<NamespaceMap>::namespaced(peer.clone(), tenant);
    let map = api.get(NAMESPACE_MAP_NAME).await?;
    if map.spec.desired_mapping.get(local).map(String::as_str) == remote {
        return Ok(map);
    }
    api.patch(
        NAMESPACE_MAP_NAME,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"desiredMapping": {local: remote}}})),
    )
    .await
}

/// Asks the provider (through the peering `peer` client) for the twin namespace `remote` of
/// the local namespace `local`: adds the entry to the tenant's NamespaceMap. Returns the
/// provider's answer so far (`None`: not looked at yet).
pub async fn request_twin(
    peer: &Client,
    tenant: &str,
    local: &str,
    remote: &str,
) -> kube::Result<Option<crate::api::namespace_map::RemoteNamespaceStatus>> {
    let map = set_twin_request(peer, tenant, local, Some(remote)).await?;
    Ok(map
        .status
        .and_then(|s| s.current_mapping.get(local).cloned())
        .filter(|s| s.remote_namespace == remote))
}

/// Withdraws the request of [`request_twin`]; returns whether the provider still reports the
/// twin namespace (it is deleted, then its entry goes).
pub async fn withdraw_twin(peer: &Client, tenant: &str, local: &str) -> kube::Result<bool> {
    let map = set_twin_request(peer, tenant, local, None).await?;
    Ok(map
        .status
        .is_some_and(|s| s.current_mapping.contains_key(local)))
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

/// When the provider saw each tenant's Lease renewed, by its own clock: a consumer writes the
/// renew time, so a renew time in the future (or one that never changes) must not keep a
/// Lease fresh. A renewal counts from when a new renew time was first seen here, or from the
/// renew time itself when that is earlier (after a restart of this host, a Lease renewed
/// before is not taken as renewed now).
#[derive(Debug, Default)]
pub struct RenewalClock {
    seen: std::collections::HashMap<String, (Option<i64>, i64)>,
}

impl RenewalClock {
    /// The time (seconds) `tenant`'s Lease counts as renewed at, given its renew time now.
    pub fn renewed_at(&mut self, tenant: &str, renew_time: Option<i64>, now: i64) -> i64 {
        let first_seen = match self.seen.get(tenant) {
            Some((value, at)) if *value == renew_time => *at,
            _ => {
                self.seen.insert(tenant.to_string(), (renew_time, now));
                now
            }
        };
        renew_time.map_or(0, |t| t.min(first_seen))
    }

    /// Forgets tenants that are gone.
    pub fn retain(&mut self, tenants: &HashSet<String>) {
        self.seen.retain(|t, _| tenants.contains(t));
    }
}

/// Classifies `lease` at `now` (seconds since the epoch) with revocation grace `grace`, the
/// Lease counting as renewed at `renewed` (see [`RenewalClock`]). The duration is always
/// [`LEASE_DURATION_SECONDS`]: the consumer cannot lengthen it.
pub fn lease_state(lease: &Lease, renewed: i64, now: i64, grace: Duration) -> LeaseState {
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
    let valid_until = renewed + i64::from(LEASE_DURATION_SECONDS);
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

/// Runs the provider side until `shutdown` resolves: every few seconds, for each peering Lease
/// of a tenant namespace this cluster made, reports the incoming peering on the consumer's
/// ForeignCluster (creating it, role Consumer), binds each claimed consumer id to one tenant,
/// and revokes identities that expired (grace `grace` after the Lease), were released, claimed
/// an id another tenant holds, or were never claimed before the peer command expired.
pub async fn run_provider(
    client: Client,
    local: ClusterIdentity,
    grace: Duration,
    transport: Option<crate::transport::Transport>,
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
            provider_pass(&client, &local, grace, transport.as_ref(), &mut clock).await
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
    transport: Option<&crate::transport::Transport>,
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
) -> BTreeMap<String, crate::transport::ImportPeer> {
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
        match crate::transport::import_peer_of(lease.annotations()) {
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
    transport: Option<&'a crate::transport::Transport>,
    /// Consumers with a fresh Lease in some tenant.
    fresh: HashSet<&'a str>,
    /// Consumers whose gateway this cluster dials.
    gateways: BTreeMap<String, crate::transport::ImportPeer>,
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

/// Writes `status` unless its role and peering conditions are the current ones.
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
    crate::api::conditions::apply_status(
        &Api::<ForeignCluster>::all(client.clone()),
        &fc.name_any(),
        &status,
    )
    .await
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
/// once), then the twin namespaces made for it here, then — when `consumer` is given — its
/// ForeignCluster, and last the tenant namespace.
pub async fn revoke(
    client: &Client,
    tenant: &str,
    consumer: Option<&str>,
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
    // The twin namespaces made for this tenant (by the provider's host, label liqo.io/tenant),
    // whoever claimed it.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in twin_namespaces(client, tenant)
        .await
        .map_err(err("listing twin namespaces".into()))?
    {
        tracing::info!(%tenant, namespace = %name, "revocation: twin namespace deleted");
        gone(namespaces.delete(&name, &dp).await)
            .map_err(err(format!("deleting twin namespace {name}")))?;
    }
    if let Some(consumer) = consumer {
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

/// The (not yet terminating) twin namespaces made for `tenant` by [`crate::twins`].
pub async fn twin_namespaces(client: &Client, tenant: &str) -> kube::Result<Vec<String>> {
    Ok(Api::<Namespace>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{TENANT_LABEL}={tenant}")))
        .await?
        .items
        .into_iter()
        .filter(|ns| ns.metadata.deletion_timestamp.is_none())
        .map(|ns| ns.name_any())
        .collect())
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

    #[test]
    fn the_policy_refuses_lease_annotations_in_the_words_the_host_recognises() {
        let policies = include_str!("../../deploy/peering/policies.yaml");
        // The message is a folded YAML scalar: compare with the line breaks as spaces.
        let folded = policies.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            folded.contains(LEASE_ANNOTATIONS_REFUSED),
            "deploy/peering/policies.yaml no longer says {LEASE_ANNOTATIONS_REFUSED:?}"
        );
    }

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
            lease_state(&fresh, 1000, 1089, grace),
            LeaseState::Fresh {
                consumer: "london".into()
            }
        );
        assert_eq!(
            lease_state(&fresh, 1000, 1090, grace),
            LeaseState::Stale {
                consumer: "london".into(),
                revoke: false
            }
        );
        assert_eq!(
            lease_state(&fresh, 1000, 1150, grace),
            LeaseState::Stale {
                consumer: "london".into(),
                revoke: true
            }
        );
        // A lease duration the consumer lengthened is not honoured.
        let mut long = lease(Some("london"), Some(1000));
        long.spec.as_mut().unwrap().lease_duration_seconds = Some(1_000_000);
        assert!(matches!(
            lease_state(&long, 1000, 1150, grace),
            LeaseState::Stale { revoke: true, .. }
        ));
        // Released: renew time at the epoch.
        assert!(matches!(
            lease_state(&lease(Some("london"), Some(0)), 0, 1000, grace),
            LeaseState::Stale { revoke: true, .. }
        ));
        let mut unclaimed = lease(None, None);
        assert_eq!(
            lease_state(&unclaimed, 0, 1000, grace),
            LeaseState::Unclaimed { expired: false }
        );
        unclaimed.metadata.annotations = Some(BTreeMap::from([(
            TOKEN_EXPIRATION_ANNOTATION.to_string(),
            Timestamp::from_second(999).unwrap().to_string(),
        )]));
        assert_eq!(
            lease_state(&unclaimed, 0, 1000, grace),
            LeaseState::Unclaimed { expired: true }
        );
    }

    #[test]
    fn renewals_count_by_the_providers_clock() {
        let mut clock = RenewalClock::default();
        // A renewal seen now counts from its own time when that is earlier...
        assert_eq!(clock.renewed_at("t", Some(990), 1000), 990);
        // ...and unchanged, stays at it.
        assert_eq!(clock.renewed_at("t", Some(990), 1100), 990);
        // A renew time in 2099 counts from when it was first seen, and does not move on.
        let future = 4_070_908_800;
        assert_eq!(clock.renewed_at("t", Some(future), 1200), 1200);
        assert_eq!(clock.renewed_at("t", Some(future), 5000), 1200);
        // A new value is a new renewal.
        assert_eq!(clock.renewed_at("t", Some(future + 1), 5000), 5000);
        // Released, or never renewed.
        assert_eq!(clock.renewed_at("t", Some(0), 6000), 0);
        assert_eq!(clock.renewed_at("u", None, 6000), 0);
        clock.retain(&HashSet::from(["u".to_string()]));
        assert_eq!(clock.renewed_at("t", Some(5500), 7000), 5500);
    }

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

    #[test]
    fn micro_time_has_six_digits() {
        let v = micro_time(Timestamp::UNIX_EPOCH);
        assert_eq!(v, json!("1970-01-01T00:00:00.000000Z"));
    }
}
