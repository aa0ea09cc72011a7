//! `liqoctl install` and `liqoctl uninstall`.
//!
//! `install` server-side applies (field manager `liqoctl`) the CRDs, the namespace `liqo`, the
//! host's RBAC, this cluster's identity ConfigMap and, unless `--skip-deployment`, the host
//! Deployment. The host manifests are `deploy/host/`, embedded at build time ([`manifests`]),
//! so `kubectl apply -k deploy/` and `liqoctl install` install the same thing. It is idempotent:
//! a re-install keeps the cluster id and refuses to change it.
//!
//! It also creates the gateway identity, the Secret `liqo/liqo-gateway-identity` (a self-signed
//! certificate and its key, see [`liqo_gateway::Identity`]), once: a re-install keeps it, because
//! peers pin its certificate's fingerprint and a new one would break their peerings. Only the
//! fingerprint is ever printed.
//!
//! `uninstall` refuses while peerings or offloaded namespaces exist (as Liqo's pre-uninstall
//! checks do: removing the host under them would strand reflected objects in the peers), then
//! removes what `install` created; `--purge` also removes the CRDs and tenant namespaces.
//!

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::Kubeconfig;
use kube::{Client, ResourceExt};
use liqo_gateway::{Fingerprint, Identity};
use liqo_host::api::gateway::{
    GATEWAY_IDENTITY_CERT_KEY, GATEWAY_IDENTITY_KEY_KEY, GATEWAY_IDENTITY_SECRET,
    GATEWAY_IDENTITY_SECRET_TYPE,
};
use liqo_host::api::identity::{
    CLUSTER_IDENTITY_CONFIGMAP, CLUSTER_IDENTITY_NAMESPACE, ClusterIdentityConfig,
};
use liqo_host::api::wire::LIQOCTL_FIELD_MANAGER;
use liqo_host::api::wire::TENANT_NAMESPACE_LABEL;
use liqo_host::api::{ForeignCluster, NamespaceOffloading, PeeringRole};

pub mod manifests;

use crate::context::GlobalArgs;
use crate::progress::Spinner;
use liqo_gateway::duration::parse_duration;
use manifests::{HOST_NAME, HOST_NAMESPACE, POLL};

/// Flags of `liqoctl install`.
#[derive(Args, Debug)]
pub struct InstallArgs {
    /// This cluster's id, the value of the `offloading.liqo.io/origin` label on everything it
    /// reflects (default: the kubeconfig context name with a random suffix; a re-install keeps
    /// the existing id and refuses a different one).
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// This cluster's display name (default: the existing name on a re-install, else the id).
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// Do not deploy the host (run it as a local process instead: `liqo-host run`).
    #[arg(long)]
    pub skip_deployment: bool,
    /// Image of the host Deployment (default: the image in deploy/host/deployment.yaml).
    #[arg(long)]
    pub image: Option<String>,
    /// How long to wait for the CRDs to be established and the host to become available
    /// (90s, 2m, 1h).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// As a provider: how many twin namespaces each consumer may have here. A consumer that
    /// asks for more sees the request refused (NamespaceOffloading Ready=False, reason
    /// NamespaceLimit, and a warning in this cluster's host log).
    #[arg(long, value_name = "N", default_value_t = liqo_host::protocol::limits::PeerLimits::default().max_namespaces)]
    pub peer_namespace_limit: usize,
    /// As a provider: the ResourceQuota (`spec.hard`) of every twin namespace, bounding what a
    /// consumer creates there, e.g. `count/services=100,count/endpointslices.discovery.k8s.io=200`.
    /// Default: count/services=1000, count/endpointslices.discovery.k8s.io=2000,
    /// services.loadbalancers=0, services.nodeports=20 (node ports are shared by the whole
    /// cluster). `none`: no ResourceQuota (only for clusters that bound
    /// consumers otherwise).
    #[arg(long, value_name = "RESOURCE=QUANTITY,...", value_parser = parse_peer_quota)]
    pub peer_quota: Option<std::collections::BTreeMap<String, String>>,
    /// As a provider: the Service types consumers may reflect here (ClusterIP, NodePort,
    /// ExternalName, LoadBalancer; headless Services are ClusterIP). Default:
    /// ClusterIP,NodePort,ExternalName.
    #[arg(long, value_name = "TYPE,...", value_parser = parse_service_types)]
    pub peer_service_types: Option<Vec<String>>,
    /// This cluster's labels, as in Liqo (`topology.liqo.io/region=south,...`). Consumers see
    /// them on their ForeignCluster for this cluster and offload to it by them (`liqoctl
    /// offload namespace NS --selector topology.liqo.io/region=south`). Running install again
    /// with other labels updates every consumer within seconds; without the flag the labels
    /// stay as they are; `--cluster-labels ''` removes them. Keys under liqo.io/ prefixes
    /// other than topology.liqo.io/ are reserved.
    #[arg(long, value_name = "KEY=VALUE,...", value_parser = parse_cluster_labels)]
    pub cluster_labels: Option<std::collections::BTreeMap<String, String>>,
}

fn parse_cluster_labels(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    liqo_host::protocol::cluster_labels::parse(text)
}

fn parse_peer_quota(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    liqo_host::protocol::limits::parse_quota(text)
}

fn parse_service_types(text: &str) -> Result<Vec<String>, String> {
    liqo_host::protocol::limits::parse_service_types(text)
}

/// Flags of `liqoctl uninstall`.
#[derive(Args, Debug)]
pub struct UninstallArgs {
    /// Also remove the CRDs (with every object of their kinds) and the tenant namespaces.
    #[arg(long)]
    pub purge: bool,
    /// How long to wait for the namespaces and CRDs to be gone (90s, 2m, 1h).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Runs `liqoctl install`.
pub async fn install(global: &GlobalArgs, args: InstallArgs) -> Result<()> {
    if let Some(id) = &args.cluster_id {
        validate_cluster_id(id)?;
    }
    let client = global.client().await?;

    // Decide the identity before changing anything, so a conflicting --cluster-id leaves the
    // cluster untouched.
    let (identity, kept) = decide_identity(global, &args, &client).await?;
    let cluster_labels = match &args.cluster_labels {
        Some(labels) => labels.clone(),
        None => liqo_host::protocol::cluster_labels::read_own(&client)
            .await
            .map_err(|e| anyhow::anyhow!("{e} (nothing was changed)"))?,
    };
    let image = match &args.image {
        Some(image) => image.clone(),
        None => manifests::default_image()?,
    };
    let deadline = Instant::now() + args.timeout;

    // 1. The API: CRDs first, so the host never starts without its kinds.
    let crd_names = apply_crds(&client, deadline, args.timeout).await?;

    // 2. Namespace, RBAC and the identity, which the host reads at startup.
    let host = manifests::host_manifests(!args.skip_deployment, Some(&image))?;
    let (deployment, rest): (Vec<_>, Vec<_>) =
        host.into_iter().partition(|m| m.gvk.kind == "Deployment");
    for manifest in &rest {
        manifests::apply(&client, manifest).await?;
    }
    apply_identity_config_map(&client, &identity, &cluster_labels).await?;
    let limits = apply_peer_limits(&client, &args).await?;
    let gateway = create_gateway_identity(&client, &identity).await?;

    // 3. The host itself.
    for manifest in &deployment {
        manifests::apply(&client, manifest).await?;
    }
    if !deployment.is_empty() {
        wait_available(&client, &image, deadline, args.timeout).await?;
    }

    let summary = InstallSummary {
        identity,
        kept,
        cluster_labels,
        crd_names,
        limits,
        gateway,
        image,
    };
    print_install_summary(global, &args, &client, &summary).await
}

/// The identity to install: the existing one (its name updated by `--cluster-name`), or a new
/// one from `--cluster-id` or generated; `true` when the existing one was kept. Fails, before
/// anything is changed, when `--cluster-id` conflicts with the installed id or when the
/// installed identity is unusable and no id is given.
async fn decide_identity(
    global: &GlobalArgs,
    args: &InstallArgs,
    client: &Client,
) -> Result<(ClusterIdentityConfig, bool)> {
    let existing = read_identity(client).await?;
    Ok(match (existing, &args.cluster_id) {
        (Some(Ok(existing)), Some(requested)) if &existing.cluster_id != requested => bail!(
            "this cluster is already installed with cluster id {:?} (ConfigMap \
             {CLUSTER_IDENTITY_NAMESPACE}/{CLUSTER_IDENTITY_CONFIGMAP}), not {requested:?}: \
             drop --cluster-id to keep it, or run `liqoctl uninstall` first to change it; \
             nothing was changed",
            existing.cluster_id
        ),
        (Some(Ok(existing)), _) => {
            let name = args
                .cluster_name
                .clone()
                .unwrap_or(existing.cluster_name.clone());
            (
                ClusterIdentityConfig {
                    cluster_id: existing.cluster_id,
                    cluster_name: name,
                },
                true,
            )
        }
        (Some(Err(err)), None) => {
            bail!("{err}; pass --cluster-id to write a valid identity (nothing was changed)")
        }
        (Some(Err(_)), Some(id)) | (None, Some(id)) => (new_identity(id.clone(), args), false),
        (None, None) => {
            let id = generated_cluster_id(global)?;
            (new_identity(id, args), false)
        }
    })
}

/// Applies this project's CRDs and waits until they are established; returns their names.
async fn apply_crds(client: &Client, deadline: Instant, timeout: Duration) -> Result<Vec<String>> {
    let crds = liqo_host::api::crds();
    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(LIQOCTL_FIELD_MANAGER).force();
    for crd in &crds {
        let name = crd.name_any();
        crd_api
            .patch(&name, &params, &Patch::Apply(crd))
            .await
            .with_context(|| format!("applying CustomResourceDefinition {name}"))?;
    }
    let crd_names: Vec<String> = crds.iter().map(ResourceExt::name_any).collect();
    wait_established(&crd_api, &crd_names, deadline, timeout).await?;
    Ok(crd_names)
}

/// Applies the identity ConfigMap, which carries this cluster's id, name and labels.
async fn apply_identity_config_map(
    client: &Client,
    identity: &ClusterIdentityConfig,
    cluster_labels: &BTreeMap<String, String>,
) -> Result<()> {
    let params = PatchParams::apply(LIQOCTL_FIELD_MANAGER).force();
    let mut cm = identity.to_config_map();
    cm.labels_mut()
        .insert("app.kubernetes.io/part-of".into(), "liqo".into());
    cm.data.get_or_insert_default().insert(
        liqo_host::api::wire::CLUSTER_LABELS_KEY.into(),
        liqo_host::protocol::cluster_labels::render(cluster_labels),
    );
    Api::<ConfigMap>::namespaced(client.clone(), CLUSTER_IDENTITY_NAMESPACE)
        .patch(CLUSTER_IDENTITY_CONFIGMAP, &params, &Patch::Apply(&cm))
        .await
        .with_context(|| {
            format!("applying ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{CLUSTER_IDENTITY_CONFIGMAP}")
        })?;
    Ok(())
}

/// Applies the ConfigMap of what each consumer may do here as a provider (the `--peer-*`
/// flags over the defaults); returns the limits applied.
async fn apply_peer_limits(
    client: &Client,
    args: &InstallArgs,
) -> Result<liqo_host::protocol::limits::PeerLimits> {
    let params = PatchParams::apply(LIQOCTL_FIELD_MANAGER).force();
    let mut limits = liqo_host::protocol::limits::PeerLimits {
        max_namespaces: args.peer_namespace_limit,
        ..liqo_host::protocol::limits::PeerLimits::default()
    };
    if let Some(quota) = &args.peer_quota {
        limits.quota = quota.clone();
    }
    if let Some(types) = &args.peer_service_types {
        limits.service_types = types.clone();
    }
    let limits_cm = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": liqo_host::api::wire::LIMITS_CONFIGMAP,
                     "namespace": CLUSTER_IDENTITY_NAMESPACE,
                     "labels": {"app.kubernetes.io/part-of": "liqo"}},
        "data": limits.to_data(),
    });
    Api::<ConfigMap>::namespaced(client.clone(), CLUSTER_IDENTITY_NAMESPACE)
        .patch(
            liqo_host::api::wire::LIMITS_CONFIGMAP,
            &params,
            &Patch::Apply(&limits_cm),
        )
        .await
        .with_context(|| {
            format!(
                "applying ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{}",
                liqo_host::api::wire::LIMITS_CONFIGMAP
            )
        })?;
    Ok(limits)
}

/// [`ensure_gateway_identity`] behind a spinner that says whether it was created or kept.
async fn create_gateway_identity(
    client: &Client,
    identity: &ClusterIdentityConfig,
) -> Result<GatewayIdentity> {
    let spinner = Spinner::start("creating the gateway identity");
    let gateway = match ensure_gateway_identity(client, identity).await {
        Ok(gateway) => gateway,
        Err(err) => {
            spinner.fail("gateway identity not usable");
            return Err(err);
        }
    };
    spinner.success(format!(
        "gateway identity: Secret {CLUSTER_IDENTITY_NAMESPACE}/{GATEWAY_IDENTITY_SECRET} {} \
         (certificate fingerprint {})",
        if gateway.created { "created" } else { "kept" },
        gateway.fingerprint
    ));
    Ok(gateway)
}

/// What `install` did, for its summary.
struct InstallSummary {
    identity: ClusterIdentityConfig,
    /// The identity was kept from an existing installation.
    kept: bool,
    cluster_labels: BTreeMap<String, String>,
    crd_names: Vec<String>,
    limits: liqo_host::protocol::limits::PeerLimits,
    gateway: GatewayIdentity,
    image: String,
}

/// Prints the summary of `install` and the next steps on stdout (the spinners went to stderr).
async fn print_install_summary(
    global: &GlobalArgs,
    args: &InstallArgs,
    client: &Client,
    summary: &InstallSummary,
) -> Result<()> {
    let InstallSummary {
        identity,
        kept,
        cluster_labels,
        crd_names,
        limits,
        gateway,
        image,
    } = summary;
    // Summary on stdout (the spinners went to stderr).
    let id_note = if *kept {
        " (kept from the existing installation)"
    } else {
        ""
    };
    println!("liqo installed:");
    println!("  cluster id:    {}{id_note}", identity.cluster_id);
    println!("  cluster name:  {}", identity.cluster_name);
    println!(
        "  cluster labels: {}",
        if cluster_labels.is_empty() {
            "none (--cluster-labels)".to_string()
        } else {
            liqo_host::protocol::cluster_labels::render(cluster_labels)
        }
    );
    println!("  CRDs:          {} (established)", crd_names.join(", "));
    println!(
        "  peer limits:   {} twin namespaces per consumer; quota {}; Service types {}",
        limits.max_namespaces,
        limits.to_data()[liqo_host::api::wire::LIMITS_KEY_QUOTA],
        limits.service_types.join(",")
    );
    println!(
        "  namespace:     {HOST_NAMESPACE} (ConfigMap {CLUSTER_IDENTITY_CONFIGMAP}, RBAC for \
         ServiceAccount {HOST_NAME})"
    );
    println!(
        "  gateway:       Secret {CLUSTER_IDENTITY_NAMESPACE}/{GATEWAY_IDENTITY_SECRET}{}, \
         certificate fingerprint {}",
        if gateway.created {
            ""
        } else {
            " (kept from the existing installation)"
        },
        gateway.fingerprint
    );
    if args.skip_deployment {
        print_next_steps_without_host(global, client).await?;
    } else {
        println!("  host:          Deployment {HOST_NAMESPACE}/{HOST_NAME} available ({image})");
        println!();
        println!("Next step:");
        println!(
            "  peer: run `liqoctl generate peer-command` on the provider, then the command it \
             prints here"
        );
    }
    println!("`liqoctl info` shows this cluster's identity, the host and the peerings.");
    Ok(())
}

/// The end of the summary with `--skip-deployment`: a note about a Deployment left by an earlier
/// install, and how to run the host outside the cluster.
async fn print_next_steps_without_host(global: &GlobalArgs, client: &Client) -> Result<()> {
    println!("  host:          not deployed (--skip-deployment)");
    let deployed = Api::<Deployment>::namespaced(client.clone(), HOST_NAMESPACE)
        .get_opt(HOST_NAME)
        .await
        .with_context(|| format!("reading Deployment {HOST_NAMESPACE}/{HOST_NAME}"))?
        .is_some();
    if deployed {
        println!(
            "                 note: Deployment {HOST_NAMESPACE}/{HOST_NAME} from an earlier \
             install is still there; the Lease {HOST_NAMESPACE}/{HOST_NAME} lets only one \
             host lead"
        );
    }
    let kubeconfig = global
        .kubeconfig
        .as_deref()
        .map(|k| format!(" --kubeconfig {k}"))
        .unwrap_or_default();
    println!();
    println!("Next steps:");
    println!("  1. run the host next to the cluster: liqo-host run{kubeconfig}");
    println!(
        "  2. peer: run `liqoctl generate peer-command` on the provider, then the command it \
         prints here"
    );
    Ok(())
}

/// Runs `liqoctl uninstall`.
pub async fn uninstall(global: &GlobalArgs, args: UninstallArgs) -> Result<()> {
    let client = global.client().await?;
    ensure_nothing_active(&client).await?;
    crate::context::confirm(
        global,
        if args.purge {
            "Remove liqo from this cluster, its CRDs and every object of their kinds included?"
        } else {
            "Remove liqo's host from this cluster (its CRDs stay)?"
        },
    )?;
    let deadline = Instant::now() + args.timeout;
    let mut removed = Vec::new();

    // A host running outside the cluster would lose its namespace under it: say so.
    let lease = Api::<Lease>::namespaced(client.clone(), HOST_NAMESPACE)
        .get_opt(HOST_NAME)
        .await
        .ok()
        .flatten();

    remove_host_objects(&client, &mut removed).await?;

    // Tenant namespaces hold the identities this cluster gave consumers as a provider (see
    // liqo_host::protocol); each has a ClusterRoleBinding and a policy binding of its name.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let tenants = tenant_namespaces(&namespaces).await?;
    let mut doomed = vec![HOST_NAMESPACE.to_string()];
    if args.purge {
        doomed.extend(purge_tenants(&client, &tenants, &mut removed).await?);
    }
    for ns in &doomed {
        if delete_namespace(&namespaces, ns, deadline).await? {
            removed.push(format!("Namespace {ns}"));
        }
    }
    wait_gone(&namespaces, "Namespace", &doomed, deadline, args.timeout).await?;
    if args.purge {
        // The shared peering policies go last: the API server's policy caches lag a little, and
        // a policy deleted while a binding of it is still cached denies namespace writes.
        for manifest in manifests::peering_manifests()?.iter().rev() {
            if manifests::delete(&client, manifest).await? {
                removed.push(manifest.describe());
            }
        }
    }

    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let kept_crds: Vec<String> = if args.purge {
        purge_crds(&client, &crd_api, deadline, args.timeout, &mut removed).await?;
        Vec::new()
    } else {
        our_crds(&crd_api).await?
    };

    print_uninstall_summary(&args, &removed, &kept_crds, &tenants, lease);
    Ok(())
}

/// Deletes what `install` created outside the namespaces (in reverse apply order: the host
/// stops before its permissions go), the ClusterRoles of accepted kinds, the identity ConfigMap
/// and the gateway identity; adds what existed to `removed`.
async fn remove_host_objects(client: &Client, removed: &mut Vec<String>) -> Result<()> {
    // Reverse apply order: the host stops before its permissions go.
    let host = manifests::host_manifests(true, None)?;
    for manifest in host.iter().rev().filter(|m| m.gvk.kind != "Namespace") {
        if manifests::delete(client, manifest).await? {
            removed.push(manifest.describe());
        }
    }
    // Kinds this cluster accepted from consumers (`liqoctl plugin accept`).
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(client.clone());
    let accepted = roles
        .list(&ListParams::default().labels(&format!(
            "{}=true,app.kubernetes.io/managed-by=liqoctl",
            crate::plugin::accept::AGGREGATE_TO_PEERING_LABEL
        )))
        .await
        .context("listing the ClusterRoles of accepted kinds")?;
    for role in accepted {
        let name = role.name_any();
        if manifests::delete_if_present(&roles, &name)
            .await
            .with_context(|| format!("deleting ClusterRole {name}"))?
        {
            removed.push(format!("ClusterRole {name}"));
        }
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), CLUSTER_IDENTITY_NAMESPACE);
    if manifests::delete_if_present(&cms, CLUSTER_IDENTITY_CONFIGMAP)
        .await
        .with_context(|| {
            format!("deleting ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{CLUSTER_IDENTITY_CONFIGMAP}")
        })?
    {
        removed.push(format!(
            "ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{CLUSTER_IDENTITY_CONFIGMAP}"
        ));
    }
    // The namespace goes below anyway; deleting the identity by name says so in the summary.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), CLUSTER_IDENTITY_NAMESPACE);
    if manifests::delete_if_present(&secrets, GATEWAY_IDENTITY_SECRET)
        .await
        .with_context(|| {
            format!("deleting Secret {CLUSTER_IDENTITY_NAMESPACE}/{GATEWAY_IDENTITY_SECRET}")
        })?
    {
        removed.push(format!(
            "Secret {CLUSTER_IDENTITY_NAMESPACE}/{GATEWAY_IDENTITY_SECRET} (gateway identity)"
        ));
    }
    Ok(())
}

/// The names of the tenant namespaces, the identities this cluster gave consumers.
async fn tenant_namespaces(namespaces: &Api<Namespace>) -> Result<Vec<String>> {
    // The same marker the host trusts: a label only a holder of namespace rights can set.
    let tenants: Vec<String> = namespaces
        .list(&ListParams::default().labels(&format!("{TENANT_NAMESPACE_LABEL}=true")))
        .await
        .context("listing tenant namespaces")?
        .items
        .iter()
        .filter(|ns| liqo_host::protocol::identity::is_tenant_namespace(ns))
        .map(ResourceExt::name_any)
        .collect();
    Ok(tenants)
}

/// For `--purge`: deletes each tenant's ClusterRoleBinding and policy binding (adding what
/// existed to `removed`); returns the namespaces to delete with them, the tenants' twin
/// namespaces and the tenant namespaces themselves.
async fn purge_tenants(
    client: &Client,
    tenants: &[String],
    removed: &mut Vec<String>,
) -> Result<Vec<String>> {
    let mut doomed = Vec::new();
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let policy_bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    for tenant in tenants {
        if manifests::delete_if_present(&bindings, tenant)
            .await
            .with_context(|| format!("deleting ClusterRoleBinding {tenant}"))?
        {
            removed.push(format!("ClusterRoleBinding {tenant}"));
        }
        if manifests::delete_if_present(&policy_bindings, tenant)
            .await
            .with_context(|| format!("deleting ValidatingAdmissionPolicyBinding {tenant}"))?
        {
            removed.push(format!("ValidatingAdmissionPolicyBinding {tenant}"));
        }
    }
    // The twin namespaces this cluster's host made for each tenant (label liqo.io/tenant,
    // set by the host only).
    for tenant in tenants {
        let twins = liqo_host::protocol::twin_namespaces(client, tenant)
            .await
            .with_context(|| format!("listing the twin namespaces of tenant {tenant}"))?;
        doomed.extend(twins);
    }
    doomed.extend(tenants.iter().cloned());
    Ok(doomed)
}

/// For `--purge`: deletes this project's CRDs (with every object of their kinds) and waits until
/// they are gone; adds what existed to `removed`.
async fn purge_crds(
    client: &Client,
    crd_api: &Api<CustomResourceDefinition>,
    deadline: Instant,
    timeout: Duration,
    removed: &mut Vec<String>,
) -> Result<()> {
    let names = our_crds(crd_api).await?;
    for name in &names {
        wait_crd_storage(client, crd_api, name, deadline).await;
        if manifests::delete_if_present(crd_api, name)
            .await
            .with_context(|| format!("deleting CustomResourceDefinition {name}"))?
        {
            removed.push(format!("CustomResourceDefinition {name}"));
        }
    }
    let nudger = tokio::spawn(nudge_terminating_crds(crd_api.clone(), names.clone()));
    let gone = wait_gone(
        crd_api,
        "CustomResourceDefinition",
        &names,
        deadline,
        timeout,
    )
    .await;
    nudger.abort();
    gone
}

/// Prints what `uninstall` removed and what it kept, and warns about a host still leading from
/// outside the cluster.
fn print_uninstall_summary(
    args: &UninstallArgs,
    removed: &[String],
    kept_crds: &[String],
    tenants: &[String],
    lease: Option<Lease>,
) {
    if removed.is_empty() {
        println!("liqo is not installed in this cluster: nothing to remove");
    } else {
        println!("liqo uninstalled; removed:");
        for item in removed {
            println!("  {item}");
        }
    }
    if !kept_crds.is_empty() {
        println!(
            "CRDs kept (run `liqoctl uninstall --purge` to remove them): {}",
            kept_crds.join(", ")
        );
    }
    if !args.purge && !tenants.is_empty() {
        println!(
            "Tenant namespaces kept (identities given to consumers; their tokens stay valid \
             until they expire; `liqoctl uninstall --purge` removes them): {}",
            tenants.join(", ")
        );
    }
    if let Some(lease) = lease
        && crate::info::lease_is_fresh(&lease)
    {
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default();
        println!(
            "note: a host outside the cluster was leading ({holder}); stop it, it has no \
             namespace {HOST_NAMESPACE} any more"
        );
    }
}

/// Deletes a namespace; returns whether it existed. An admission policy may deny the request
/// for a moment after its bindings changed (the API server's policy caches lag), so such a
/// denial is retried until `deadline`.
async fn delete_namespace(api: &Api<Namespace>, name: &str, deadline: Instant) -> Result<bool> {
    loop {
        match manifests::delete_if_present(api, name).await {
            Ok(existed) => return Ok(existed),
            Err(kube::Error::Api(status))
                if status.message.contains("ValidatingAdmissionPolicy")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(POLL).await;
            }
            Err(err) => return Err(err).with_context(|| format!("deleting Namespace {name}")),
        }
    }
}

/// Fails, listing what to remove and how, while a ForeignCluster or a NamespaceOffloading
/// exists. A missing CRD means there are none of its kind.
async fn ensure_nothing_active(client: &Client) -> Result<()> {
    let peerings = manifests::list_if_installed(
        &Api::<ForeignCluster>::all(client.clone()),
        "ForeignClusters",
    )
    .await?;
    let offloadings = manifests::list_if_installed(
        &Api::<NamespaceOffloading>::all(client.clone()),
        "NamespaceOffloadings",
    )
    .await?;
    let plugins = manifests::list_if_installed(
        &Api::<liqo_host::api::reflection_plugin::ReflectionPlugin>::all(client.clone()),
        "ReflectionPlugins",
    )
    .await?;
    if peerings.is_empty() && offloadings.is_empty() && plugins.is_empty() {
        return Ok(());
    }
    let plugins: BTreeSet<String> = plugins.iter().map(ResourceExt::name_any).collect();
    let namespaces: BTreeSet<String> = offloadings.iter().filter_map(|o| o.namespace()).collect();
    let peers: BTreeSet<String> = peerings.iter().map(ResourceExt::name_any).collect();
    // This cluster's name, as consumers know it (the name in their `peer out-of-band`).
    let local_name = match read_identity(client).await {
        Ok(Some(Ok(identity))) => identity.cluster_name,
        _ => "<this cluster>".to_string(),
    };
    let mut what = Vec::new();
    if !namespaces.is_empty() {
        what.push(counted(
            &namespaces,
            "offloaded namespace",
            "offloaded namespaces",
        ));
    }
    if !peers.is_empty() {
        what.push(counted(
            &peers,
            "peering (ForeignCluster)",
            "peerings (ForeignClusters)",
        ));
    }
    if !plugins.is_empty() {
        what.push(counted(
            &plugins,
            "plugin (ReflectionPlugin)",
            "plugins (ReflectionPlugins)",
        ));
    }
    let fixes = removal_commands(&plugins, &namespaces, &peerings, &local_name);
    bail!(
        "cannot uninstall: liqo is still in use by {} (nothing was changed); remove that \
         first, in this order:{fixes}",
        what.join(" and ")
    )
}

/// The commands that remove the plugins, offloadings and peerings that hold liqo in use, one
/// per line, in the order they must run.
fn removal_commands(
    plugins: &BTreeSet<String>,
    namespaces: &BTreeSet<String>,
    peerings: &[ForeignCluster],
    local_name: &str,
) -> String {
    // Unoffload before unpeering: the offloading's finalizer needs the peering to delete the
    // twin namespaces in the peer.
    let mut fixes = String::new();
    // Plugins first: the host removes the remote copies they made while the peering exists.
    for plugin in plugins {
        fixes.push_str(&format!("\n  liqoctl plugin uninstall {plugin}"));
    }
    for ns in namespaces {
        fixes.push_str(&format!("\n  liqoctl unoffload namespace {ns}"));
    }
    for fc in peerings {
        let role = fc.status.as_ref().map(|s| s.role).unwrap_or_default();
        // An incoming peering is removed from the consumer's side; this cluster (the provider)
        // then revokes the identity by itself.
        if matches!(
            role,
            PeeringRole::Consumer | PeeringRole::ConsumerAndProvider
        ) {
            fixes.push_str(&format!(
                "\n  liqoctl unpeer out-of-band {local_name}   # against the consumer {}",
                fc.spec.cluster_id
            ));
        }
        if role != PeeringRole::Consumer {
            fixes.push_str(&format!("\n  liqoctl unpeer out-of-band {}", fc.name_any()));
        }
    }
    fixes
}

/// `1 peering (ForeignCluster) newyork` or `2 peerings (ForeignClusters) a, b`.
fn counted(names: &BTreeSet<String>, one: &str, many: &str) -> String {
    let list = names.iter().cloned().collect::<Vec<_>>().join(", ");
    match names.len() {
        1 => format!("1 {one} {list}"),
        n => format!("{n} {many} {list}"),
    }
}

/// Waits (best effort, up to 30 s) until the API server serves lists of a CRD's objects.
///
/// Deleting a CRD whose storage is still initializing (seconds after it was created, on a busy
/// API server) makes the API server's CRD finalizer fail with "storage is (re)initializing"
/// and retry with a growing backoff, which can leave the CRD terminating for many minutes.
async fn wait_crd_storage(
    client: &Client,
    api: &Api<CustomResourceDefinition>,
    name: &str,
    deadline: Instant,
) {
    let Ok(Some(crd)) = api.get_opt(name).await else {
        return;
    };
    let Some(version) = crd.spec.versions.iter().find(|v| v.served) else {
        return;
    };
    let resource = kube::discovery::ApiResource {
        group: crd.spec.group.clone(),
        version: version.name.clone(),
        api_version: format!("{}/{}", crd.spec.group, version.name),
        kind: crd.spec.names.kind.clone(),
        plural: crd.spec.names.plural.clone(),
    };
    let objects: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &resource);
    let limit = (Instant::now() + Duration::from_secs(30)).min(deadline);
    while Instant::now() < limit {
        if objects.list(&ListParams::default().limit(1)).await.is_ok() {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// While our CRDs terminate, touches any whose finalizer reported a failure: an update event
/// makes the API server's CRD finalizer retry at once instead of after its (growing) backoff.
async fn nudge_terminating_crds(api: Api<CustomResourceDefinition>, names: Vec<String>) {
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        for name in &names {
            let Ok(Some(crd)) = api.get_opt(name).await else {
                continue;
            };
            let failed = crd
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.type_ == "Terminating"
                            && c.reason.as_deref() == Some("InstanceDeletionFailed")
                    })
                });
            if failed {
                let stamp = format!("{:?}", std::time::SystemTime::now());
                let patch = serde_json::json!({"metadata": {"annotations": {"liqo.io/cleanup-retry": stamp}}});
                let _ = api
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
            }
        }
    }
}

/// The names of the CRDs in the API groups of this project (found by group, so kinds of an
/// older version are removed too).
async fn our_crds(api: &Api<CustomResourceDefinition>) -> Result<Vec<String>> {
    let groups: BTreeSet<String> = liqo_host::api::crds()
        .into_iter()
        .map(|crd| crd.spec.group)
        .collect();
    let list = api
        .list(&ListParams::default())
        .await
        .context("listing CustomResourceDefinitions")?;
    Ok(list
        .items
        .into_iter()
        .filter(|crd| groups.contains(&crd.spec.group))
        .map(|crd| crd.name_any())
        .collect())
}

/// Reads the identity ConfigMap: `None` when absent, `Some(Err)` when present but unusable.
async fn read_identity(
    client: &Client,
) -> Result<Option<Result<ClusterIdentityConfig, liqo_host::api::IdentityError>>> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), CLUSTER_IDENTITY_NAMESPACE)
        .get_opt(CLUSTER_IDENTITY_CONFIGMAP)
        .await
        .with_context(|| {
            format!("reading ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{CLUSTER_IDENTITY_CONFIGMAP}")
        })?;
    Ok(cm.map(|cm| ClusterIdentityConfig::from_config_map(&cm)))
}

/// The gateway identity after `install`: its certificate's fingerprint, and whether it was
/// created now (else an existing one was kept).
struct GatewayIdentity {
    fingerprint: Fingerprint,
    created: bool,
}

/// Creates the gateway identity Secret unless it exists. An existing Secret is never
/// overwritten (peers pin its fingerprint), only checked.
async fn ensure_gateway_identity(
    client: &Client,
    identity: &ClusterIdentityConfig,
) -> Result<GatewayIdentity> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), CLUSTER_IDENTITY_NAMESPACE);
    let what = format!("Secret {CLUSTER_IDENTITY_NAMESPACE}/{GATEWAY_IDENTITY_SECRET}");
    let kept = |secret: &Secret| -> Result<GatewayIdentity> {
        let fingerprint = existing_gateway_fingerprint(secret).map_err(|problem| {
            anyhow::anyhow!(
                "{what} exists but is not a gateway identity ({problem}); it is kept as it is: \
                 delete it (`kubectl -n {CLUSTER_IDENTITY_NAMESPACE} delete secret \
                 {GATEWAY_IDENTITY_SECRET}`) and run `liqoctl install` again for a new one, then \
                 re-peer (peers pin the certificate)"
            )
        })?;
        Ok(GatewayIdentity {
            fingerprint,
            created: false,
        })
    };
    if let Some(secret) = secrets
        .get_opt(GATEWAY_IDENTITY_SECRET)
        .await
        .with_context(|| format!("reading {what}"))?
    {
        return kept(&secret);
    }
    let generated = Identity::generate(&certificate_name(identity))
        .context("generating the gateway identity")?;
    let params = PostParams {
        field_manager: Some(LIQOCTL_FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    // Create, never apply: if another install created it in the meantime, that one stays.
    match secrets
        .create(&params, &gateway_identity_secret(&generated))
        .await
    {
        Ok(_) => Ok(GatewayIdentity {
            fingerprint: generated.fingerprint(),
            created: true,
        }),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let secret = secrets
                .get(GATEWAY_IDENTITY_SECRET)
                .await
                .with_context(|| format!("reading {what}"))?;
            kept(&secret)
        }
        Err(err) => Err(err).with_context(|| format!("creating {what}")),
    }
}

/// The Secret holding `identity`, labelled like the other objects of the installation.
fn gateway_identity_secret(identity: &Identity) -> Secret {
    let mut secret = Secret {
        type_: Some(GATEWAY_IDENTITY_SECRET_TYPE.to_string()),
        data: Some(BTreeMap::from([
            (
                GATEWAY_IDENTITY_CERT_KEY.to_string(),
                ByteString(identity.cert_pem().as_bytes().to_vec()),
            ),
            (
                GATEWAY_IDENTITY_KEY_KEY.to_string(),
                ByteString(identity.key_pem().as_bytes().to_vec()),
            ),
        ])),
        ..Secret::default()
    };
    secret.metadata.name = Some(GATEWAY_IDENTITY_SECRET.to_string());
    secret.metadata.namespace = Some(CLUSTER_IDENTITY_NAMESPACE.to_string());
    secret.metadata.labels = Some(BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "liqo-gateway".to_string(),
        ),
        ("app.kubernetes.io/part-of".to_string(), "liqo".to_string()),
    ]));
    secret
}

/// The fingerprint of an existing gateway identity Secret, or what is wrong with it. The key is
/// parsed to check it, but no part of it goes into the message.
fn existing_gateway_fingerprint(secret: &Secret) -> Result<Fingerprint, String> {
    if secret.type_.as_deref() != Some(GATEWAY_IDENTITY_SECRET_TYPE) {
        return Err(format!(
            "its type is {:?}, not {GATEWAY_IDENTITY_SECRET_TYPE}",
            secret.type_.as_deref().unwrap_or("Opaque")
        ));
    }
    let text = |key: &str| -> Result<String, String> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .ok_or_else(|| format!("it has no key {key}"))?;
        String::from_utf8(bytes.0.clone()).map_err(|_| format!("its {key} is not PEM text"))
    };
    let cert = text(GATEWAY_IDENTITY_CERT_KEY)?;
    let key = text(GATEWAY_IDENTITY_KEY_KEY)?;
    Identity::from_pem(&cert, &key)
        .map(|identity| identity.fingerprint())
        .map_err(|err| match err {
            liqo_gateway::IdentityError::Pem { what, .. } => format!("its {what} is not valid PEM"),
            _ => "its certificate or key cannot be read".to_string(),
        })
}

/// The name in the gateway's certificate (only for humans reading it: peers pin the
/// fingerprint): the cluster name when it is a DNS label, else the cluster id, else `liqo`.
fn certificate_name(identity: &ClusterIdentityConfig) -> String {
    [&identity.cluster_name, &identity.cluster_id]
        .into_iter()
        .find(|name| validate_cluster_id(name).is_ok())
        .cloned()
        .unwrap_or_else(|| "liqo".to_string())
}

fn new_identity(cluster_id: String, args: &InstallArgs) -> ClusterIdentityConfig {
    ClusterIdentityConfig {
        cluster_name: args.cluster_name.clone().unwrap_or(cluster_id.clone()),
        cluster_id,
    }
}

/// Cluster ids must be DNS-1123 labels: besides label values (the ownership labels), they end
/// up in namespace names (`DefaultName` remote namespaces) and object names.
fn validate_cluster_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if !ok {
        bail!(
            "--cluster-id {id:?} is not valid: use at most 63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit (it becomes part of labels and namespace \
             names)"
        );
    }
    Ok(())
}

/// A new cluster id: the kubeconfig context's name made DNS-safe, plus a random suffix so two
/// clusters whose contexts share a name (every `kind-kind`) never share an id.
fn generated_cluster_id(global: &GlobalArgs) -> Result<String> {
    let base = match &global.context {
        Some(context) => context.clone(),
        None => {
            let kubeconfig = match &global.kubeconfig {
                Some(path) => Kubeconfig::read_from(path),
                None => Kubeconfig::read(),
            };
            kubeconfig
                .ok()
                .and_then(|k| k.current_context)
                .unwrap_or_default()
        }
    };
    Ok(cluster_id_from(&base, random_suffix()))
}

/// `base` lowercased, with runs of other characters than letters and digits turned into one
/// '-', cut so that `-suffix` fits in 63 characters; `cluster` when nothing is left.
fn cluster_id_from(base: &str, suffix: String) -> String {
    let mut out = String::new();
    for c in base.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(63 - suffix.len() - 1);
    let mut out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        out = "cluster".to_string();
    }
    format!("{out}-{suffix}")
}

/// Six random hex digits. `RandomState` is seeded from the OS's randomness, which is all a name
/// suffix needs (no dependency on a random number crate).
fn random_suffix() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:06x}", hasher.finish() & 0xff_ffff)
}

/// Waits until every CRD in `names` has the condition `Established=True`.
async fn wait_established(
    api: &Api<CustomResourceDefinition>,
    names: &[String],
    deadline: Instant,
    timeout: Duration,
) -> Result<()> {
    let spinner = Spinner::start("waiting for the CRDs to be established");
    loop {
        let mut pending = Vec::new();
        for name in names {
            let crd = api
                .get(name)
                .await
                .with_context(|| format!("reading CustomResourceDefinition {name}"))?;
            let established = crd
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if !established {
                pending.push(name.clone());
            }
        }
        if pending.is_empty() {
            spinner.success(format!("{} CRDs established", names.len()));
            return Ok(());
        }
        if Instant::now() >= deadline {
            spinner.fail("CRDs not established");
            bail!(
                "CustomResourceDefinitions {} not established after {}s: see `kubectl describe \
                 crd {}`",
                pending.join(", "),
                timeout.as_secs(),
                pending[0]
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the host Deployment has rolled out and is available.
async fn wait_available(
    client: &Client,
    image: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), HOST_NAMESPACE);
    let spinner = Spinner::start(format!(
        "waiting for Deployment {HOST_NAMESPACE}/{HOST_NAME} to be available"
    ));
    loop {
        let deployment = api
            .get(HOST_NAME)
            .await
            .with_context(|| format!("reading Deployment {HOST_NAMESPACE}/{HOST_NAME}"))?;
        if deployment_available(&deployment) {
            spinner.success(format!("Deployment {HOST_NAMESPACE}/{HOST_NAME} available"));
            return Ok(());
        }
        if Instant::now() >= deadline {
            spinner.fail(format!(
                "Deployment {HOST_NAMESPACE}/{HOST_NAME} not available"
            ));
            bail!(
                "Deployment {HOST_NAMESPACE}/{HOST_NAME} not available after {}s: see `kubectl \
                 -n {HOST_NAMESPACE} describe deployment {HOST_NAME}` (can the cluster pull \
                 image {image}? set another with --image, or run the host locally with \
                 --skip-deployment)",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether the Deployment's latest spec is rolled out and every replica is available.
pub fn deployment_available(deployment: &Deployment) -> bool {
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let Some(status) = &deployment.status else {
        return false;
    };
    status.observed_generation >= deployment.metadata.generation
        && status.updated_replicas.unwrap_or(0) >= wanted
        && status.available_replicas.unwrap_or(0) >= wanted
}

/// Waits until none of `names` exists any more.
async fn wait_gone<K>(
    api: &Api<K>,
    kind: &str,
    names: &[String],
    deadline: Instant,
    timeout: Duration,
) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if names.is_empty() {
        return Ok(());
    }
    let spinner = Spinner::start(format!(
        "waiting for {kind} {} to be gone",
        names.join(", ")
    ));
    loop {
        let mut left = BTreeMap::new();
        for name in names {
            if let Some(object) = api
                .get_opt(name)
                .await
                .with_context(|| format!("reading {kind} {name}"))?
            {
                left.insert(name.clone(), object);
            }
        }
        if left.is_empty() {
            spinner.success(format!("{kind} {} deleted", names.join(", ")));
            return Ok(());
        }
        if Instant::now() >= deadline {
            spinner.fail(format!("{kind} still present"));
            let left: Vec<_> = left.keys().cloned().collect();
            bail!(
                "{kind} {} still present after {}s: see `kubectl get {} -o yaml` for what blocks \
                 the deletion (finalizers, remaining objects), then run `liqoctl uninstall` again",
                left.join(", "),
                timeout.as_secs(),
                kind.to_lowercase()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_dns_labels() {
        assert_eq!(cluster_id_from("london", "abc123".into()), "london-abc123");
        assert_eq!(
            cluster_id_from("kind-Kind_Test.local", "abc123".into()),
            "kind-kind-test-local-abc123"
        );
        assert_eq!(cluster_id_from("", "abc123".into()), "cluster-abc123");
        assert_eq!(cluster_id_from("@@@", "abc123".into()), "cluster-abc123");
        let long = cluster_id_from(&"a-".repeat(60), "abc123".into());
        assert!(long.len() <= 63, "{long}");
        for id in [long, cluster_id_from("x", random_suffix())] {
            validate_cluster_id(&id).unwrap();
        }
        assert_ne!(random_suffix(), random_suffix());
    }

    #[test]
    fn gateway_identity_secret_round_trips() {
        let identity = Identity::generate("london").unwrap();
        let secret = gateway_identity_secret(&identity);
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("liqo-gateway-identity")
        );
        assert_eq!(secret.metadata.namespace.as_deref(), Some("liqo"));
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let labels = secret.metadata.labels.clone().unwrap();
        assert_eq!(labels["app.kubernetes.io/part-of"], "liqo");
        let data = secret.data.clone().unwrap();
        assert_eq!(
            data.keys().map(String::as_str).collect::<Vec<_>>(),
            ["tls.crt", "tls.key"]
        );
        // What a re-install reads back is the same certificate: peers' pins stay valid.
        assert_eq!(
            existing_gateway_fingerprint(&secret),
            Ok(identity.fingerprint())
        );
    }

    #[test]
    fn a_broken_gateway_identity_is_reported_without_its_key() {
        let identity = Identity::generate("london").unwrap();
        let mut opaque = gateway_identity_secret(&identity);
        opaque.type_ = Some("Opaque".into());
        let err = existing_gateway_fingerprint(&opaque).unwrap_err();
        assert!(err.contains("Opaque"), "{err}");

        let mut no_key = gateway_identity_secret(&identity);
        no_key.data.as_mut().unwrap().remove("tls.key");
        assert_eq!(
            existing_gateway_fingerprint(&no_key),
            Err("it has no key tls.key".into())
        );

        // A key whose PEM is broken: the message names the part, never its content.
        let mut bad_key = gateway_identity_secret(&identity);
        let broken = identity.key_pem().replace("-----BEGIN", "-----BEGUN");
        bad_key
            .data
            .as_mut()
            .unwrap()
            .insert("tls.key".into(), ByteString(broken.clone().into_bytes()));
        let err = existing_gateway_fingerprint(&bad_key).unwrap_err();
        assert!(err.contains("private key"), "{err}");
        for line in broken.lines().filter(|l| l.len() > 8) {
            assert!(!err.contains(line), "the error shows the key: {err}");
        }
    }

    #[test]
    fn certificate_names_are_dns_labels() {
        let id = |name: &str, id: &str| ClusterIdentityConfig {
            cluster_id: id.into(),
            cluster_name: name.into(),
        };
        assert_eq!(certificate_name(&id("london", "london-abc123")), "london");
        assert_eq!(certificate_name(&id("New York", "newyork-1")), "newyork-1");
        assert_eq!(certificate_name(&id("New York", "NY_1")), "liqo");
        Identity::generate(&certificate_name(&id("New York", "newyork-1"))).unwrap();
    }

    #[test]
    fn cluster_id_validation() {
        validate_cluster_id("london").unwrap();
        validate_cluster_id("a1-b2").unwrap();
        for bad in ["", "London", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
            let err = validate_cluster_id(bad).unwrap_err().to_string();
            assert!(err.contains("--cluster-id"), "{err}");
        }
    }
}
