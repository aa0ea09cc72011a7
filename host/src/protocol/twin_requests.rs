//! Twin namespace requests: the consumer asks the provider for a twin namespace by writing
//! `spec.desiredMapping` of the NamespaceMap in its tenant namespace (the only way it gets a
//! namespace there; see [`crate::twins`] for the provider's answer).

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::api::namespace_map::{NAMESPACE_MAP_NAME, NamespaceMap, RemoteNamespaceStatus};
use crate::api::wire;

/// Sets (`Some`) or removes (`None`) the entry of `local` in the tenant's NamespaceMap, through
/// the peering `peer` client; returns the map as the provider has it (unchanged when the entry
/// is already so: a steady state writes nothing).
async fn set_twin_request(
    peer: &Client,
    tenant: &str,
    local: &str,
    remote: Option<&str>,
) -> kube::Result<NamespaceMap> {
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
) -> kube::Result<Option<RemoteNamespaceStatus>> {
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

/// Why `remote` cannot be this consumer's twin namespace: it exists and was not made for it.
/// Names the consumer that holds it (cluster ids are not secret; the user needs to know which
/// way to resolve the conflict), and the fix.
pub fn conflict_message(remote: &str, owner_origin: Option<&str>, provider: &str) -> String {
    // Another consumer's namespace is not the user's to remove: only a different twin name
    // resolves that conflict. A namespace no peering created may be removed by its admin.
    let (owner, fix) = match owner_origin {
        Some(origin) => (
            format!(
                "belongs to another consumer, cluster {origin} (label {}={origin})",
                wire::ORIGIN
            ),
            "",
        ),
        None => (
            "was not created by a peering".to_string(),
            "remove it there, or ",
        ),
    };
    format!(
        "conflict: namespace {remote} already exists in cluster {provider} and {owner}; it is \
         never adopted or overwritten: {fix}unoffload and offload again with \
         --namespace-mapping-strategy DefaultName (or SelectedName with --remote-namespace-name)"
    )
}
