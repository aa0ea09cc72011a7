//! `liqoctl plugin accept`: on a provider, lets consumers reflect one more kind into it.
//!
//! A consumer's peering identity may write only the kinds of the ClusterRole
//! `liqo-peering-reflected-kinds`, which aggregates every ClusterRole labelled
//! `liqo.io/aggregate-to-peering=true` and is bound only inside each consumer's twin
//! namespaces; the admission policy `liqo-peering-reflection` still limits every write to
//! objects carrying the consumer's own origin labels. Accepting a kind adds one such
//! ClusterRole, `liqo-peering-accept-<plural>[.<group>]`.

use anyhow::{Context as _, Result, bail};
use clap::Args;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Scope, pinned_kind};
use serde_json::{Value, json};

use super::install::{FIELD_MANAGER, MANAGED_BY_LABEL};
use super::kind::KindSpec;
use crate::context::GlobalArgs;

/// Label that aggregates a ClusterRole into `liqo-peering-reflected-kinds`.
pub const AGGREGATE_TO_PEERING_LABEL: &str = "liqo.io/aggregate-to-peering";

/// Flags of `liqoctl plugin accept`.
#[derive(Args, Debug)]
pub struct AcceptArgs {
    /// Kinds consumers may reflect into this cluster, as GROUP/VERSION/KIND (v1/ConfigMap for
    /// the core group). The kind must be served here (install its CRD first).
    #[arg(required = true, value_name = "KIND")]
    pub kinds: Vec<String>,
    /// Stop accepting the kinds: delete their ClusterRoles. Consumers' writes of that kind fail
    /// from then on; objects they already reflected stay until they unoffload.
    #[arg(long)]
    pub revoke: bool,
}

/// Name of the ClusterRole accepting `plural` in `group`.
pub fn role_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("liqo-peering-accept-{plural}")
    } else {
        format!("liqo-peering-accept-{plural}.{group}")
    }
}

/// The ClusterRole accepting `plural` in `group`.
pub fn accept_role(group: &str, plural: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": role_name(group, plural),
            "labels": {
                AGGREGATE_TO_PEERING_LABEL: "true",
                MANAGED_BY_LABEL: FIELD_MANAGER,
                "app.kubernetes.io/part-of": "liqo",
            },
        },
        "rules": [{
            "apiGroups": [group],
            "resources": [plural],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
        }],
    })
}

/// Runs `liqoctl plugin accept`.
pub async fn run(global: &GlobalArgs, args: AcceptArgs) -> Result<()> {
    let specs = args
        .kinds
        .iter()
        .map(|k| KindSpec::parse(k).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    let client = global.client().await?;
    // Resolve every kind before writing anything.
    let mut resolved = Vec::new();
    for spec in &specs {
        let gvk = GroupVersionKind::gvk(&spec.group, &spec.version, &spec.kind);
        let (resource, caps) = pinned_kind(&client, &gvk).await.with_context(|| {
            format!(
                "this cluster does not serve {}/{}: install its CustomResourceDefinition here first",
                spec.api_version(),
                spec.kind
            )
        })?;
        if caps.scope != Scope::Namespaced {
            bail!(
                "{}/{} is cluster-scoped: consumers reflect namespaced kinds only, into their twin namespaces",
                spec.api_version(),
                spec.kind
            );
        }
        resolved.push((spec, resource.plural));
    }
    let roles: Api<ClusterRole> = Api::all(client);
    for (spec, plural) in resolved {
        let name = role_name(&spec.group, &plural);
        if args.revoke {
            match roles.delete(&name, &DeleteParams::default()).await {
                Ok(_) => println!(
                    "✔ {}/{} no longer accepted from consumers (ClusterRole {name} deleted)",
                    spec.api_version(),
                    spec.kind
                ),
                Err(kube::Error::Api(s)) if s.code == 404 => println!(
                    "{}/{} was not accepted (no ClusterRole {name})",
                    spec.api_version(),
                    spec.kind
                ),
                Err(e) => return Err(e).with_context(|| format!("deleting ClusterRole {name}")),
            }
            continue;
        }
        roles
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(accept_role(&spec.group, &plural)),
            )
            .await
            .with_context(|| format!("applying ClusterRole {name}"))?;
        println!(
            "✔ consumers may reflect {}/{} into their twin namespaces here (ClusterRole {name})",
            spec.api_version(),
            spec.kind
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_and_rules() {
        assert_eq!(
            role_name("", "configmaps"),
            "liqo-peering-accept-configmaps"
        );
        assert_eq!(
            role_name("example.com", "widgets"),
            "liqo-peering-accept-widgets.example.com"
        );
        let role = accept_role("example.com", "widgets");
        assert_eq!(
            role["metadata"]["labels"][AGGREGATE_TO_PEERING_LABEL],
            "true"
        );
        assert_eq!(role["rules"][0]["apiGroups"], json!(["example.com"]));
        assert_eq!(role["rules"][0]["resources"], json!(["widgets"]));
        assert!(
            !role["rules"][0]["verbs"]
                .as_array()
                .unwrap()
                .contains(&json!("*"))
        );
    }
}
