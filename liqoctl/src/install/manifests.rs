//! The host's manifests from `deploy/host/`, embedded at build time so that `liqoctl install`
//! applies exactly what the Kustomize base holds (one source of truth, nothing read at run
//! time), and the helpers that apply and delete them.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
};
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt};
use liqo_host::api::wire::LIQOCTL_FIELD_MANAGER;
use serde::Deserialize;

/// Namespace of the host (`deploy/host/namespace.yaml`).
pub const HOST_NAMESPACE: &str = "liqo";
/// Name of the host Deployment and of its ServiceAccount and roles.
pub const HOST_NAME: &str = "liqo-host";

/// `deploy/host/namespace.yaml`.
const NAMESPACE_YAML: &str = include_str!("../../../deploy/host/namespace.yaml");
/// `deploy/host/rbac.yaml`: ServiceAccount, ClusterRole, ClusterRoleBinding, Role, RoleBinding.
const RBAC_YAML: &str = include_str!("../../../deploy/host/rbac.yaml");
/// `deploy/host/deployment.yaml`.
const DEPLOYMENT_YAML: &str = include_str!("../../../deploy/host/deployment.yaml");

/// `deploy/peering/`: the provider-side objects shared by every peering identity, applied by
/// `liqoctl generate peer-command`; `uninstall --purge` removes them.
const PEERING_YAML: [(&str, &str); 2] = [
    (
        "deploy/peering/clusterrole.yaml",
        include_str!("../../../deploy/peering/clusterrole.yaml"),
    ),
    (
        "deploy/peering/policies.yaml",
        include_str!("../../../deploy/peering/policies.yaml"),
    ),
];

/// One object of the embedded manifests.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The object as written in `deploy/host/`.
    pub object: DynamicObject,
    /// Its group, version and kind.
    pub gvk: GroupVersionKind,
}

impl Manifest {
    /// `Kind namespace/name` (or `Kind name` when cluster-scoped), as messages show it.
    pub fn describe(&self) -> String {
        match self.object.namespace() {
            Some(ns) => format!("{} {ns}/{}", self.gvk.kind, self.object.name_any()),
            None => format!("{} {}", self.gvk.kind, self.object.name_any()),
        }
    }
}

/// The host's objects in apply order: the namespace, the RBAC, then (with `deployment`) the
/// Deployment, its image replaced by `image` when given.
pub fn host_manifests(deployment: bool, image: Option<&str>) -> Result<Vec<Manifest>> {
    let mut manifests = parse(NAMESPACE_YAML).context("parsing deploy/host/namespace.yaml")?;
    manifests.extend(parse(RBAC_YAML).context("parsing deploy/host/rbac.yaml")?);
    if deployment {
        let mut objects = parse(DEPLOYMENT_YAML).context("parsing deploy/host/deployment.yaml")?;
        if let Some(image) = image {
            for m in &mut objects {
                set_image(&mut m.object, image)?;
            }
        }
        manifests.extend(objects);
    }
    Ok(manifests)
}

/// The provider-side peering objects of `deploy/peering/` (ClusterRole, admission policies and
/// their shared bindings).
pub fn peering_manifests() -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for (path, text) in PEERING_YAML {
        out.extend(parse(text).with_context(|| format!("parsing {path}"))?);
    }
    Ok(out)
}

/// The image of the embedded Deployment (`liqo-host:dev` unless deploy/host changes).
pub fn default_image() -> Result<String> {
    let objects = parse(DEPLOYMENT_YAML).context("parsing deploy/host/deployment.yaml")?;
    objects
        .first()
        .and_then(|m| {
            m.object
                .data
                .pointer("/spec/template/spec/containers/0/image")
        })
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .context("deploy/host/deployment.yaml has no container image")
}

/// Every YAML document of `text` as an object; empty documents (comments only) are skipped.
fn parse(text: &str) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = serde_yaml_ng::Value::deserialize(document)?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject = serde_yaml_ng::from_value(value)?;
        let Some(types) = &object.types else {
            bail!(
                "an embedded manifest ({}) has no apiVersion/kind",
                object.name_any()
            );
        };
        let gvk = GroupVersionKind::try_from(types)
            .with_context(|| format!("apiVersion {:?} of {}", types.api_version, types.kind))?;
        out.push(Manifest { object, gvk });
    }
    Ok(out)
}

/// Sets the image of the host container.
fn set_image(object: &mut DynamicObject, image: &str) -> Result<()> {
    let containers = object
        .data
        .pointer_mut("/spec/template/spec/containers")
        .and_then(|c| c.as_array_mut())
        .context("the embedded Deployment has no containers")?;
    for container in containers {
        if container.get("name").and_then(|n| n.as_str()) == Some(HOST_NAME) {
            container["image"] = serde_json::Value::String(image.to_string());
            return Ok(());
        }
    }
    bail!("the embedded Deployment has no container named {HOST_NAME}")
}

/// The API of `manifest`'s kind, in its namespace when the kind is namespaced. Discovery tells
/// the plural and the scope, so no table of kinds is kept here.
async fn api_for(client: &Client, manifest: &Manifest) -> Result<Api<DynamicObject>> {
    let (resource, caps): (ApiResource, _) = discovery::pinned_kind(client, &manifest.gvk)
        .await
        .with_context(|| {
            format!(
                "looking up {}/{} {} on the API server",
                manifest.gvk.group, manifest.gvk.version, manifest.gvk.kind
            )
        })?;
    Ok(match (caps.scope, manifest.object.namespace()) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), &ns, &resource),
        (Scope::Namespaced, None) => bail!("{} has no namespace", manifest.describe()),
        (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
    })
}

/// Server-side applies `manifest` as [`LIQOCTL_FIELD_MANAGER`]. `force` takes over fields another
/// manager set (for example a previous `kubectl apply --server-side`): the installer owns
/// these objects.
pub async fn apply(client: &Client, manifest: &Manifest) -> Result<()> {
    let api = api_for(client, manifest).await?;
    let params = PatchParams::apply(LIQOCTL_FIELD_MANAGER).force();
    api.patch(
        &manifest.object.name_any(),
        &params,
        &Patch::Apply(&manifest.object),
    )
    .await
    .with_context(|| format!("applying {}", manifest.describe()))?;
    Ok(())
}

/// Deletes `manifest`'s object; returns whether it existed.
pub async fn delete(client: &Client, manifest: &Manifest) -> Result<bool> {
    let api = api_for(client, manifest).await?;
    delete_if_present(&api, &manifest.object.name_any())
        .await
        .with_context(|| format!("deleting {}", manifest.describe()))
}

/// Deletes `name` through `api`; a missing object is not an error. Returns whether it existed.
pub async fn delete_if_present<K>(api: &Api<K>, name: &str) -> kube::Result<bool>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(err) => Err(err),
    }
}

/// Whether `err` is the API server's 404 (the object, or its whole kind, does not exist).
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

/// Every object of kind `K` in the cluster; none when its CRD is not installed (a 404 means the
/// kind does not exist, so there can be none of it). `what` names the kind in errors.
pub async fn list_if_installed<K>(api: &kube::Api<K>, what: &str) -> anyhow::Result<Vec<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    use anyhow::Context as _;
    match api.list(&kube::api::ListParams::default()).await {
        Ok(list) => Ok(list.items),
        Err(err) if is_not_found(&err) => Ok(Vec::new()),
        Err(err) => Err(err).with_context(|| format!("listing {what}")),
    }
}

/// How often waits poll the API server.
pub const POLL: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_manifests_parse() {
        let all = host_manifests(true, None).unwrap();
        let names: Vec<String> = all.iter().map(Manifest::describe).collect();
        assert_eq!(
            names,
            [
                "Namespace liqo",
                "ServiceAccount liqo/liqo-host",
                "ClusterRole liqo-host",
                "ClusterRoleBinding liqo-host",
                "ClusterRole liqo-host-user-kinds",
                "ClusterRoleBinding liqo-host-user-kinds",
                "Role liqo/liqo-host",
                "RoleBinding liqo/liqo-host",
                "Deployment liqo/liqo-host",
            ]
        );
        assert_eq!(host_manifests(false, None).unwrap().len(), 8);
        assert_eq!(default_image().unwrap(), "liqo-host:dev");
        assert!(!peering_manifests().unwrap().is_empty());
    }

    #[test]
    fn image_is_replaced() {
        let all = host_manifests(true, Some("registry.example/liqo-host:1.2")).unwrap();
        let deployment = &all.last().unwrap().object;
        assert_eq!(
            deployment.data["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.example/liqo-host:1.2"
        );
    }

    #[test]
    fn the_namespace_matches_the_identity_config_map() {
        assert_eq!(
            HOST_NAMESPACE,
            liqo_host::api::identity::CLUSTER_IDENTITY_NAMESPACE
        );
        assert_eq!(HOST_NAMESPACE, liqo_host::api::wire::HOST_NAMESPACE);
        assert_eq!(HOST_NAME, liqo_host::api::wire::HOST_NAME);
    }
}
