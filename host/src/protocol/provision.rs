//! Peering identities ("tenants"): what a provider grants a consumer, how it is made, kept
//! alive and revoked.
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
//! - `spec.renewTime` is kept fresh by the consumer's host ([`super::lease::renew_lease`]).
//!   The provider's host ([`crate::tenant::run_provider`]) shows the peering as
//!   `IncomingPeering Established` while it is fresh and revokes the identity when it has been
//!   stale for longer than a grace period, or at once when the consumer released it
//!   ([`super::lease::release_lease`], on `liqoctl unpeer`).
//!
//! The bound token of the peer command expires (`--ttl`); the consumer's host replaces it with a
//! fresh token before it does ([`super::identity::request_token`]), so a peering lives as long
//! as its Lease.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::identity::{request_token, tenant_labels};
use super::lease::LEASE_DURATION_SECONDS;
use crate::api::conditions::now;
use crate::api::foreign_cluster::{
    ForeignCluster, ForeignClusterStatus, PeeringCondition, PeeringConditionStatus,
    PeeringConditionType, PeeringRole,
};
use crate::api::wire::{
    CONSUMER_ID_LABEL, CONSUMER_SERVICE_ACCOUNT, GATEWAY_ENDPOINT_ANNOTATION, LEASE_NAME,
    PEERING_LEASE_LABEL, PROVIDER_ID_LABEL, TENANT_LABEL, TENANT_NAMESPACE_LABEL,
    TENANT_NAMESPACE_PREFIX, TOKEN_EXPIRATION_ANNOTATION,
};

/// Errors of provisioning, revoking and the provider-side tenant controller.
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

/// Creates, in the tenant namespace made by [`provision`], the objects of the identity (see
/// [`identity_objects`]) and returns the consumer's token, valid `ttl`.
async fn provision_inside(
    client: &Client,
    tenant: &str,
    provider_id: &str,
    ttl: Duration,
) -> Result<String, TenantError> {
    let expires =
        Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(ttl.as_secs() as i64);
    let objects = identity_objects(tenant, provider_id, expires);
    create_in_tenant::<Lease>(client, tenant, objects.lease, "peering Lease").await?;
    create_in_tenant::<crate::api::namespace_map::NamespaceMap>(
        client,
        tenant,
        objects.namespace_map,
        "NamespaceMap (are the liqo CRDs installed? run liqoctl install)",
    )
    .await?;
    create_in_tenant::<ServiceAccount>(
        client,
        tenant,
        objects.service_account,
        "consumer ServiceAccount",
    )
    .await?;
    create_in_tenant::<k8s_openapi::api::rbac::v1::Role>(
        client,
        tenant,
        objects.role,
        "tenant Role",
    )
    .await?;
    create_in_tenant::<k8s_openapi::api::rbac::v1::RoleBinding>(
        client,
        tenant,
        objects.role_binding,
        "tenant RoleBinding",
    )
    .await?;
    request_token(client, tenant, ttl.as_secs() as i64)
        .await
        .map_err(|source| TenantError::Kube {
            tenant: tenant.to_string(),
            action: "requesting the consumer's token (TokenRequest)".into(),
            source,
        })
}

/// The objects of a peering identity inside its tenant namespace, in creation order.
struct IdentityObjects {
    lease: serde_json::Value,
    namespace_map: serde_json::Value,
    service_account: serde_json::Value,
    role: serde_json::Value,
    role_binding: serde_json::Value,
}

/// Builds the identity's objects: the peering Lease (unclaimed, expiring with the peer command
/// at `expires`), the empty NamespaceMap through which the consumer asks for twin namespaces,
/// the consumer ServiceAccount, and the Role (with its binding) that lets the identity renew
/// the Lease, write the NamespaceMap's spec and replace its own token, nothing else.
fn identity_objects(tenant: &str, provider_id: &str, expires: Timestamp) -> IdentityObjects {
    use crate::api::namespace_map::NAMESPACE_MAP_NAME;
    let labels = tenant_labels(tenant);
    IdentityObjects {
        lease: json!({
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
        namespace_map: json!({
            "apiVersion": "virtualkubelet.liqo.io/v1beta1", "kind": "NamespaceMap",
            "metadata": {"name": NAMESPACE_MAP_NAME, "labels": labels},
            "spec": {"desiredMapping": {}},
        }),
        service_account: json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": CONSUMER_SERVICE_ACCOUNT, "labels": labels},
        }),
        // Everything the identity may do outside its twin namespaces, by name.
        role: json!({
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
        role_binding: json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": CONSUMER_SERVICE_ACCOUNT, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": CONSUMER_SERVICE_ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": CONSUMER_SERVICE_ACCOUNT,
                          "namespace": tenant}],
        }),
    }
}

/// Creates `object` (of kind `K`) in the tenant namespace; `what` names it in the error.
async fn create_in_tenant<K>(
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
    let object: K = serde_json::from_value(object).map_err(|e| fail(kube::Error::SerdeError(e)))?;
    Api::<K>::namespaced(client.clone(), tenant)
        .create(&PostParams::default(), &object)
        .await
        .map(drop)
        .map_err(fail)
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
                status.role = PeeringRole::of(&status);
                write_peering_status(client, fc, status)
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

/// Writes `status` on the ForeignCluster `fc` unless its role and peering conditions are the
/// current ones (shared by revocation here and the provider's tenant controller).
pub(crate) async fn write_peering_status(
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
