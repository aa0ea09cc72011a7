//! `liqoctl plugin accept`: on a provider, lets consumers reflect one more kind into it.
//!
//! A consumer's peering identity may write only the kinds of the ClusterRole
//! `liqo-peering-reflected-kinds`, which aggregates every ClusterRole labelled
//! `liqo.io/aggregate-to-peering=true` and is bound only inside each consumer's twin
//! namespaces; the admission policy `liqo-peering-reflection` still limits every write to
//! objects carrying the consumer's own origin labels. Accepting a kind adds one such
//! ClusterRole, `liqo-peering-accept-<plural>[.<group>]`.
//!
//! Kinds that would hand consumers power over this cluster are refused before anything is
//! written (see [`refusal`]): workloads, RBAC and the cluster's control kinds, ServiceAccounts,
//! quotas, legacy Endpoints, liqo's own kinds, cluster-scoped kinds, and Secrets unless
//! `--allow-secrets` is given. `--revoke` is never refused, so a kind accepted before can go.

use anyhow::{Context as _, Result, bail};
use clap::Args;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::Client;
use kube::api::{Api, DeleteParams, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Scope, pinned_kind};
use liqo_host::api::wire::LIQOCTL_FIELD_MANAGER;
use serde_json::{Value, json};

use super::install::MANAGED_BY_LABEL;
use super::kind::KindSpec;
use crate::context::GlobalArgs;

/// Label that aggregates a ClusterRole into `liqo-peering-reflected-kinds`.
pub const AGGREGATE_TO_PEERING_LABEL: &str = "liqo.io/aggregate-to-peering";

/// Flags of `liqoctl plugin accept`.
#[derive(Args, Debug)]
pub struct AcceptArgs {
    /// Kinds consumers may reflect into this cluster, as GROUP/VERSION/KIND (v1/ConfigMap for
    /// the core group). The kind must be served here (install its CRD first).
    ///
    /// Kinds that grant power over this cluster are refused, and nothing is written if any
    /// kind given is: Pods and workloads (v1 Pod, ReplicationController, PodTemplate; every
    /// kind of apps and batch), v1 ServiceAccount, ResourceQuota, LimitRange, Namespace,
    /// Endpoints and Secret (see --allow-secrets), every kind of rbac.authorization.k8s.io,
    /// admissionregistration.k8s.io, apiextensions.k8s.io, apiregistration.k8s.io,
    /// certificates.k8s.io, authentication.k8s.io, authorization.k8s.io, policy, node.k8s.io,
    /// scheduling.k8s.io, storage.k8s.io, resource.k8s.io, coordination.k8s.io,
    /// flowcontrol.apiserver.k8s.io and of liqo's own groups (liqo.io, *.liqo.io), and
    /// cluster-scoped kinds. The error names each refused kind and why.
    #[arg(required = true, value_name = "KIND")]
    pub kinds: Vec<String>,
    /// Stop accepting the kinds: delete their ClusterRoles. Consumers' writes of that kind fail
    /// from then on; objects they already reflected stay until they unoffload. Never refused,
    /// so a kind accepted before it was refused can still be revoked.
    #[arg(long)]
    pub revoke: bool,
    /// Accept v1/Secret, refused without this flag: consumers may then write Secrets in their
    /// twin namespaces here, which this cluster's Pods there could mount, and Kubernetes fills
    /// a Secret of type kubernetes.io/service-account-token with a token of the ServiceAccount
    /// it names, which the consumer can then read. A warning saying so is printed on stderr.
    #[arg(long, conflicts_with = "revoke")]
    pub allow_secrets: bool,
}

/// Groups no kind of which is accepted, each with why (a clause read after "is refused: ").
/// Every group listed here is refused whatever the kind, so kinds Kubernetes adds to these
/// groups later are refused too.
const REFUSED_GROUPS: &[(&str, &str)] = &[
    (
        "apps",
        "a consumer that can create Deployments, ReplicaSets, StatefulSets, DaemonSets or the \
         ControllerRevisions they roll back to runs code on this cluster's nodes",
    ),
    (
        "batch",
        "a consumer that can create Jobs or CronJobs runs code on this cluster's nodes",
    ),
    (
        "rbac.authorization.k8s.io",
        "Roles and RoleBindings grant permissions on this cluster",
    ),
    (
        "admissionregistration.k8s.io",
        "admission webhooks and policies see, change or allow every write to this cluster",
    ),
    (
        "apiextensions.k8s.io",
        "CustomResourceDefinitions define this cluster's API",
    ),
    (
        "apiregistration.k8s.io",
        "APIServices send parts of this cluster's API to other servers",
    ),
    (
        "certificates.k8s.io",
        "certificate requests and trust bundles issue and trust this cluster's credentials",
    ),
    (
        "authentication.k8s.io",
        "token reviews and requests deal in this cluster's credentials",
    ),
    (
        "authorization.k8s.io",
        "access reviews disclose who may do what on this cluster",
    ),
    (
        "policy",
        "a PodDisruptionBudget decides whether this cluster may evict Pods, and can block the \
         drain of its nodes",
    ),
    (
        "node.k8s.io",
        "RuntimeClasses choose how this cluster's nodes run containers",
    ),
    (
        "scheduling.k8s.io",
        "PriorityClasses decide which Pods this cluster schedules and which it preempts",
    ),
    (
        "storage.k8s.io",
        "storage classes, attachments and capacities decide this cluster's volumes and where \
         its Pods are scheduled",
    ),
    (
        "resource.k8s.io",
        "resource claims hand this cluster's devices to Pods",
    ),
    (
        "coordination.k8s.io",
        "Leases elect the leaders of this cluster's controllers and record liqo's peerings",
    ),
    (
        "flowcontrol.apiserver.k8s.io",
        "flow schemas and priority levels share out this cluster's API server",
    ),
];

/// Kinds of the core group that are refused, each with why (a clause read after
/// "is refused: "). v1/Secret is refused apart, unless `--allow-secrets` (see [`refusal`]).
/// Accepted on purpose: ConfigMaps, Services (always accepted anyway) and Events (an Event
/// grants nothing, and the admission policy keeps it to origin-labelled objects in twin
/// namespaces like every other accepted kind).
const REFUSED_CORE_KINDS: &[(&str, &str)] = &[
    (
        "Pod",
        "a consumer that can create Pods runs code on this cluster's nodes",
    ),
    (
        "ReplicationController",
        "a consumer that can create ReplicationControllers runs code on this cluster's nodes",
    ),
    (
        "PodTemplate",
        "a PodTemplate is a Pod spec this cluster's controllers may run",
    ),
    (
        "ServiceAccount",
        "a ServiceAccount is an identity of this cluster: whoever writes one controls the \
         permissions bound to its name and the Pods that run as it",
    ),
    (
        "ResourceQuota",
        "ResourceQuotas are the limits this cluster's admin puts on a namespace: a consumer \
         would lift its own",
    ),
    (
        "LimitRange",
        "LimitRanges are the defaults and limits this cluster's admin puts on the Pods of a \
         namespace: a consumer would lift its own",
    ),
    (
        "Namespace",
        "Namespaces are cluster-scoped: consumers get their twin namespaces from the peering, \
         never as a reflected kind",
    ),
    (
        "Endpoints",
        "legacy Endpoints can send a Service's traffic to any address of this cluster's \
         network (CVE-2021-25740); liqo reflects endpoints as discovery.k8s.io EndpointSlices",
    ),
];

/// Why v1/Secret is refused without `--allow-secrets`.
const SECRET_REFUSAL: &str = "Secrets hold credentials this cluster's Pods mount, and Kubernetes \
     fills a Secret of type kubernetes.io/service-account-token with a token of the \
     ServiceAccount it names, which the consumer could then read; pass --allow-secrets to \
     accept them anyway";

/// Printed on stderr when v1/Secret is accepted (`--allow-secrets`).
pub const SECRETS_WARNING: &str = "warning: consumers may now write Secrets in their twin \
     namespaces on this cluster. Pods of this cluster in those namespaces could mount them (as \
     volumes, environment variables or image pull secrets), and Kubernetes fills a Secret of \
     type kubernetes.io/service-account-token with a token of the ServiceAccount it names, \
     which the consumer can then read: it acts as any ServiceAccount of its twin namespaces. \
     Undo with `liqoctl plugin accept v1/Secret --revoke`.";

/// Why a cluster-scoped kind is refused.
const CLUSTER_SCOPED_REFUSAL: &str =
    "it is cluster-scoped, and consumers reflect namespaced kinds only, into their twin namespaces";

/// Why the kinds of liqo's own groups (`liqo.io` and its subdomains) are refused.
const LIQO_REFUSAL: &str = "liqo's own kinds configure peering, offloading and reflection on \
     this cluster (a NamespaceOffloading in a twin namespace would offload it on to this \
     cluster's own providers)";

/// `Some(message)` when consumers may not be allowed to write `spec`: the message names the
/// kind and says why ("v1/Pod is refused: a consumer that can create Pods runs code on this
/// cluster's nodes"). `allow_secrets` (`--allow-secrets`) lets v1/Secret through. Pure, and
/// the whole rule: [`REFUSED_CORE_KINDS`], v1/Secret, [`REFUSED_GROUPS`], liqo's own groups
/// (`liqo.io` and its subdomains), and the kinds [`KindSpec::cluster_scoped_reason`] knows to
/// be cluster-scoped (discovery refuses any other cluster-scoped kind, a CRD's, once resolved).
pub fn refusal(spec: &KindSpec, allow_secrets: bool) -> Option<String> {
    let group = spec.group.to_ascii_lowercase();
    let why = if group.is_empty() {
        if spec.kind.eq_ignore_ascii_case("Secret") {
            (!allow_secrets).then(|| SECRET_REFUSAL.to_string())
        } else {
            REFUSED_CORE_KINDS
                .iter()
                .find(|(kind, _)| kind.eq_ignore_ascii_case(&spec.kind))
                .map(|(_, why)| why.to_string())
        }
    } else {
        REFUSED_GROUPS
            .iter()
            .find(|(g, _)| *g == group)
            .map(|(_, why)| *why)
            .or_else(|| (group == "liqo.io" || group.ends_with(".liqo.io")).then_some(LIQO_REFUSAL))
            .map(|why| format!("{why} (no kind of the {group} group is accepted)"))
    };
    let why = why.or_else(|| {
        spec.cluster_scoped_reason()
            .map(|_| CLUSTER_SCOPED_REFUSAL.to_string())
    })?;
    Some(format!("{spec} is refused: {why}"))
}

/// True for v1/Secret.
fn is_secret(spec: &KindSpec) -> bool {
    spec.group.is_empty() && spec.kind.eq_ignore_ascii_case("Secret")
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
                MANAGED_BY_LABEL: LIQOCTL_FIELD_MANAGER,
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
    // Refuse before any request: when one kind is refused, none is accepted.
    if !args.revoke {
        refuse_any(&specs, args.allow_secrets)?;
    }
    let client = global.client().await?;
    let resolved = resolve_kinds(&client, &specs).await?;
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
                &PatchParams::apply(LIQOCTL_FIELD_MANAGER).force(),
                &Patch::Apply(accept_role(&spec.group, &plural)),
            )
            .await
            .with_context(|| format!("applying ClusterRole {name}"))?;
        println!(
            "✔ consumers may reflect {}/{} into their twin namespaces here (ClusterRole {name})",
            spec.api_version(),
            spec.kind
        );
        if is_secret(spec) {
            eprintln!("{SECRETS_WARNING}");
        }
    }
    Ok(())
}

/// Fails, naming every refused kind and why, when any of `specs` is refused.
fn refuse_any(specs: &[KindSpec], allow_secrets: bool) -> Result<()> {
    let (refused, fine): (Vec<_>, Vec<_>) = specs
        .iter()
        .map(|spec| (spec, refusal(spec, allow_secrets)))
        .partition(|(_, refused)| refused.is_some());
    if !refused.is_empty() {
        let mut message = refused
            .into_iter()
            .filter_map(|(_, why)| why)
            .collect::<Vec<_>>()
            .join("; ");
        if !fine.is_empty() {
            let fine: Vec<String> = fine.iter().map(|(spec, _)| spec.to_string()).collect();
            message.push_str(&format!(
                "; nothing was accepted, not even {}",
                fine.join(", ")
            ));
        }
        bail!(message);
    }
    Ok(())
}

/// Each kind with its plural as this cluster serves it, resolved before anything is written;
/// fails on a kind not served here or cluster-scoped.
async fn resolve_kinds<'a>(
    client: &Client,
    specs: &'a [KindSpec],
) -> Result<Vec<(&'a KindSpec, String)>> {
    let mut resolved = Vec::new();
    for spec in specs {
        let gvk = GroupVersionKind::gvk(&spec.group, &spec.version, &spec.kind);
        let (resource, caps) = pinned_kind(client, &gvk).await.with_context(|| {
            format!(
                "this cluster does not serve {}/{}: install its CustomResourceDefinition here first",
                spec.api_version(),
                spec.kind
            )
        })?;
        if caps.scope != Scope::Namespaced {
            bail!("{spec} is refused: {CLUSTER_SCOPED_REFUSAL}");
        }
        resolved.push((spec, resource.plural));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> KindSpec {
        KindSpec::parse(text).unwrap()
    }

    /// Every refused kind with a part of why, and the kinds accepted.
    #[test]
    fn refuses_kinds_that_grant_power() {
        const RUNS_CODE: &str = "runs code on this cluster's nodes";
        let refused: &[(&str, &str)] = &[
            // Pods and workloads.
            ("v1/Pod", RUNS_CODE),
            ("/v1/Pod", RUNS_CODE),
            ("v1/ReplicationController", RUNS_CODE),
            (
                "v1/PodTemplate",
                "a Pod spec this cluster's controllers may run",
            ),
            ("apps/v1/Deployment", RUNS_CODE),
            ("apps/v1/ReplicaSet", RUNS_CODE),
            ("apps/v1/StatefulSet", RUNS_CODE),
            ("apps/v1/DaemonSet", RUNS_CODE),
            ("apps/v1/ControllerRevision", RUNS_CODE),
            ("apps/v1beta2/Deployment", RUNS_CODE),
            ("batch/v1/Job", RUNS_CODE),
            ("batch/v1/CronJob", RUNS_CODE),
            // Whole groups, whatever the kind or version.
            (
                "rbac.authorization.k8s.io/v1/RoleBinding",
                "grant permissions",
            ),
            ("rbac.authorization.k8s.io/v1/Role", "grant permissions"),
            (
                "rbac.authorization.k8s.io/v1/ClusterRoleBinding",
                "grant permissions",
            ),
            (
                "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",
                "every write to this cluster",
            ),
            (
                "apiextensions.k8s.io/v1/CustomResourceDefinition",
                "define this cluster's API",
            ),
            ("apiregistration.k8s.io/v1/APIService", "other servers"),
            (
                "certificates.k8s.io/v1/CertificateSigningRequest",
                "credentials",
            ),
            (
                "certificates.k8s.io/v1alpha1/PodCertificateRequest",
                "credentials",
            ),
            ("authentication.k8s.io/v1/TokenReview", "credentials"),
            (
                "authorization.k8s.io/v1/LocalSubjectAccessReview",
                "who may do what",
            ),
            (
                "policy/v1/PodDisruptionBudget",
                "block the drain of its nodes",
            ),
            ("node.k8s.io/v1/RuntimeClass", "run containers"),
            ("scheduling.k8s.io/v1/PriorityClass", "preempts"),
            ("storage.k8s.io/v1/CSIStorageCapacity", "scheduled"),
            ("resource.k8s.io/v1/ResourceClaim", "devices"),
            ("coordination.k8s.io/v1/Lease", "leaders"),
            ("flowcontrol.apiserver.k8s.io/v1/FlowSchema", "API server"),
            // Core kinds that are identities, limits, or point anywhere.
            ("v1/ServiceAccount", "identity of this cluster"),
            ("v1/ResourceQuota", "would lift its own"),
            ("v1/LimitRange", "would lift its own"),
            ("v1/Namespace", "twin namespaces from the peering"),
            ("v1/Endpoints", "any address"),
            ("v1/Secret", "--allow-secrets"),
            // liqo's own kinds.
            (
                "offloading.liqo.io/v1beta1/NamespaceOffloading",
                "liqo's own kinds",
            ),
            ("core.liqo.io/v1beta1/ForeignCluster", "liqo's own kinds"),
            ("liqo.io/v1/Anything", "liqo's own kinds"),
            // Cluster-scoped kinds known without asking the cluster.
            ("v1/Node", "cluster-scoped"),
            ("v1/PersistentVolume", "cluster-scoped"),
            ("networking.k8s.io/v1/IngressClass", "cluster-scoped"),
        ];
        for (text, why) in refused {
            let kind = spec(text);
            let message = refusal(&kind, false).unwrap_or_else(|| panic!("{text} accepted"));
            assert!(
                message.starts_with(&format!("{kind} is refused: ")),
                "{text}: {message}"
            );
            assert!(message.contains(why), "{text}: {message}");
            // --allow-secrets lets Secrets through, nothing else.
            if *text != "v1/Secret" {
                assert_eq!(refusal(&kind, true), Some(message), "{text}");
            }
        }
        let pod = refusal(&spec("v1/Pod"), false).unwrap();
        assert_eq!(
            pod,
            "v1/Pod is refused: a consumer that can create Pods runs code on this cluster's nodes"
        );
        let binding = refusal(&spec("rbac.authorization.k8s.io/v1/RoleBinding"), false).unwrap();
        assert!(
            binding.ends_with("(no kind of the rbac.authorization.k8s.io group is accepted)"),
            "{binding}"
        );

        for text in [
            "v1/ConfigMap",
            "v1/Service",
            "v1/Event",
            "events.k8s.io/v1/Event",
            "discovery.k8s.io/v1/EndpointSlice",
            "networking.k8s.io/v1/NetworkPolicy",
            "widgets.example.com/v1/Widget",
            "example.com/v1alpha1/Widget",
            // A CRD kind named like a refused one, in another group.
            "example.com/v1/Pod",
            "example.com/v1/Secret",
            "notliqo.io/v1/Widget",
            "apps.example.com/v1/Deployment",
        ] {
            assert_eq!(refusal(&spec(text), false), None, "{text}");
        }
        assert_eq!(refusal(&spec("v1/Secret"), true), None);
    }

    #[test]
    fn secrets_warning_says_what_it_means() {
        assert!(SECRETS_WARNING.starts_with("warning: "));
        for part in [
            "write Secrets in their twin namespaces",
            "mount them",
            "kubernetes.io/service-account-token",
            "--revoke",
        ] {
            assert!(SECRETS_WARNING.contains(part), "{part}");
        }
        assert!(is_secret(&spec("v1/Secret")));
        assert!(!is_secret(&spec("example.com/v1/Secret")));
    }

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
