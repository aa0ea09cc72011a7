//! `liqoctl offload namespace` and `liqoctl unoffload namespace`.
//!
//! Both write the NamespaceOffloading object the host acts on and wait, with a spinner, for the
//! host's answer in its status: `offload` until the phase says whether the twin namespaces exist,
//! `unoffload` until the object is gone (the host removes its finalizer only once the twin
//! namespaces are deleted).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Subcommand, ValueEnum};
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::ListParams;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use liqo_gateway::duration::parse_duration;
use liqo_host::api::cluster_selector::{self, ClusterSelector, ClusterSelectorTerm};
use liqo_host::api::namespace_offloading::{
    NAMESPACE_OFFLOADING_NAME, NamespaceOffloading, OffloadingPhase,
};
use liqo_host::api::wire::LIQOCTL_FIELD_MANAGER;
use serde_json::{Value, json};

use crate::context::GlobalArgs;
use crate::output::{self, OutputFormat};
use crate::progress::Spinner;

/// `liqoctl offload ...`.
#[derive(Subcommand, Debug)]
pub enum OffloadCommand {
    /// Offload namespaces: their Services and EndpointSlices are reflected into a twin
    /// namespace in every selected peered cluster (pods stay in this cluster).
    ///
    /// Examples:
    ///   liqoctl offload namespace liqo-demo --namespace-mapping-strategy EnforceSameName \
    ///       --pod-offloading-strategy Local
    ///   # Only to the providers installed with --cluster-labels topology.liqo.io/region=south:
    ///   liqoctl offload namespace liqo-demo --selector 'topology.liqo.io/region=south'
    ///   # To the south, or to any cluster with a gpu label (each --selector is an alternative):
    ///   liqoctl offload namespace liqo-demo -l 'topology.liqo.io/region=south' -l gpu
    ///   # Every namespace labelled team=web:
    ///   liqoctl offload namespace --namespace-selector team=web
    #[command(verbatim_doc_comment)]
    Namespace {
        #[command(flatten)]
        targets: NamespaceTargets,
        /// How the twin namespace is named: EnforceSameName (same name, so DNS names work
        /// unchanged), DefaultName (`<namespace>-<local cluster id>`) or SelectedName
        /// (`--remote-namespace-name`). Cannot change once offloaded.
        #[arg(long, value_enum, default_value_t = MappingStrategy::DefaultName)]
        namespace_mapping_strategy: MappingStrategy,
        /// The twin namespace name; only with `--namespace-mapping-strategy SelectedName` and
        /// a single namespace.
        #[arg(long)]
        remote_namespace_name: Option<String>,
        /// Where pods run. Only Local (pods stay in this cluster) is supported.
        #[arg(long, value_enum, default_value_t = PodStrategy::Local)]
        pod_offloading_strategy: PodStrategy,
        /// Offload only to the peered clusters whose labels match (those of their
        /// ForeignCluster, which carry each provider's `liqoctl install --cluster-labels`).
        /// Liqo's syntax: `key=value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`, `key`,
        /// `!key`, `key>N`, `key<N`; commas AND them. Repeat the flag for alternatives (ORed).
        /// Default: every peered cluster, present and future.
        #[arg(short = 'l', long = "selector", value_name = "EXPR", value_parser = parse_selector_term)]
        selectors: Vec<ClusterSelectorTerm>,
        /// How long to wait for the host to create the twin namespaces (per namespace).
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        timeout: Duration,
        /// Print the NamespaceOffloadings instead of applying them (Liqo v1, for GitOps):
        /// nothing is changed; `| kubectl apply -f -` offloads with them.
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
}

fn parse_selector_term(text: &str) -> Result<ClusterSelectorTerm, String> {
    cluster_selector::parse_term(text)
}

/// `liqoctl unoffload ...`.
#[derive(Subcommand, Debug)]
pub enum UnoffloadCommand {
    /// Stop offloading namespaces. Destructive: the twin namespaces, and everything in them,
    /// are deleted in the peers.
    Namespace {
        #[command(flatten)]
        targets: NamespaceTargets,
        /// How long to wait for the twin namespaces to be deleted (per namespace).
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        timeout: Duration,
    },
}

/// The namespaces a command acts on: named, or chosen by a label query (Liqo v1).
#[derive(clap::Args, Debug)]
pub struct NamespaceTargets {
    /// The namespaces (or --namespace-selector).
    #[arg(
        value_name = "NAMESPACE",
        required_unless_present = "namespace_selector",
        conflicts_with = "namespace_selector"
    )]
    namespaces: Vec<String>,
    /// Every namespace whose labels match this label query instead (Liqo v1's --ns-selector),
    /// e.g. `team=web` or `env in (prod,staging)`.
    #[arg(long, visible_alias = "ns-selector", value_name = "QUERY")]
    namespace_selector: Option<String>,
}

/// Namespace mapping strategies, spelled as in Liqo.
#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "verbatim")]
#[allow(
    clippy::enum_variant_names,
    reason = "the variants are Liqo's flag values"
)]
pub enum MappingStrategy {
    /// The twin namespace has the same name.
    EnforceSameName,
    /// `<namespace>-<local cluster id>`.
    DefaultName,
    /// `--remote-namespace-name`.
    SelectedName,
}

/// Pod offloading strategies, spelled as in Liqo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "verbatim")]
pub enum PodStrategy {
    /// Pods stay in this cluster.
    Local,
    /// Pods run in the peers (not supported).
    Remote,
    /// Pods run in both (not supported).
    LocalAndRemote,
}

/// Runs `liqoctl offload ...`.
pub async fn offload(global: &GlobalArgs, cmd: OffloadCommand) -> Result<()> {
    let OffloadCommand::Namespace {
        targets:
            NamespaceTargets {
                namespaces,
                namespace_selector,
            },
        namespace_mapping_strategy,
        remote_namespace_name,
        pod_offloading_strategy,
        selectors,
        timeout,
        output,
    } = cmd;
    check_offload_flags(
        pod_offloading_strategy,
        &namespaces,
        namespace_mapping_strategy,
        remote_namespace_name.as_deref(),
    )?;
    let spec = offloading_spec(
        namespace_mapping_strategy,
        remote_namespace_name.as_deref(),
        selectors,
    )?;
    let manifest = |namespace: &str| {
        json!({
            "apiVersion": "offloading.liqo.io/v1beta1",
            "kind": "NamespaceOffloading",
            "metadata": {"name": NAMESPACE_OFFLOADING_NAME, "namespace": namespace},
            "spec": spec,
        })
    };

    let client = match (&namespace_selector, output) {
        // Printing named namespaces needs no cluster at all.
        (None, Some(_)) => None,
        _ => Some(global.client().await?),
    };
    let namespaces = match (&namespace_selector, &client) {
        (Some(query), Some(client)) => selected_namespaces(client, query).await?,
        _ => namespaces,
    };
    if let Some(format) = output {
        let manifests: Vec<Value> = namespaces.iter().map(|ns| manifest(ns)).collect();
        return match manifests.as_slice() {
            [one] => output::print(one, format),
            _ => output::print_list(&manifests, format),
        };
    }
    let client = client.context("a client is made unless printing")?;
    let mut failures = Vec::new();
    for namespace in &namespaces {
        if let Err(err) = offload_one(&client, namespace, &manifest(namespace), timeout).await {
            if namespaces.len() == 1 {
                return Err(err);
            }
            eprintln!("error: {err:#}");
            failures.push(namespace.clone());
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} namespaces were not offloaded ({}); see the errors above",
            failures.len(),
            namespaces.len(),
            failures.join(", ")
        );
    }
    Ok(())
}

/// Refuses, before any request, flags that cannot work together: a pod strategy other than
/// Local, malformed namespace names, and a remote name without SelectedName (or the reverse).
fn check_offload_flags(
    pod_offloading_strategy: PodStrategy,
    namespaces: &[String],
    namespace_mapping_strategy: MappingStrategy,
    remote_namespace_name: Option<&str>,
) -> Result<()> {
    if pod_offloading_strategy != PodStrategy::Local {
        bail!(
            "--pod-offloading-strategy {pod_offloading_strategy:?} is not supported: pods always \
             stay in this cluster; use --pod-offloading-strategy Local"
        );
    }
    // Checked before any request, so a typo gets its own sentence rather than "does not
    // exist" (a name kubectl could never create) or the API server's schema error.
    for namespace in namespaces {
        check_namespace_name("namespace", namespace)?;
    }
    if let Some(name) = remote_namespace_name {
        check_namespace_name("--remote-namespace-name", name)?;
        if namespaces.len() != 1 {
            bail!(
                "--remote-namespace-name names the twin of one namespace: offload a single \
                 namespace with it (two namespaces cannot share a twin)"
            );
        }
    }
    match (namespace_mapping_strategy, remote_namespace_name) {
        (MappingStrategy::SelectedName, None) => {
            bail!("--namespace-mapping-strategy SelectedName needs --remote-namespace-name")
        }
        (MappingStrategy::EnforceSameName | MappingStrategy::DefaultName, Some(_)) => bail!(
            "--remote-namespace-name goes only with --namespace-mapping-strategy SelectedName"
        ),
        _ => {}
    }
    Ok(())
}

/// The `spec` of the NamespaceOffloading the flags ask for.
fn offloading_spec(
    namespace_mapping_strategy: MappingStrategy,
    remote_namespace_name: Option<&str>,
    selectors: Vec<ClusterSelectorTerm>,
) -> Result<Value> {
    let mut spec = json!({
        "namespaceMappingStrategy": format!("{namespace_mapping_strategy:?}"),
        "podOffloadingStrategy": "Local",
    });
    if let Some(name) = remote_namespace_name {
        spec["remoteNamespaceName"] = json!(name);
    }
    if !selectors.is_empty() {
        spec["clusterSelector"] = serde_json::to_value(ClusterSelector::from_terms(selectors))?;
    }
    Ok(spec)
}

/// The namespaces matching `query` (sorted), refusing a malformed query or one that matches
/// nothing.
async fn selected_namespaces(client: &kube::Client, query: &str) -> Result<Vec<String>> {
    let list = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default().labels(query))
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 400 => anyhow::anyhow!(
                "--namespace-selector {query:?} is not a label query ({}): write for example \
                 team=web or 'env in (prod,staging)'",
                s.message
            ),
            other => anyhow::Error::new(other).context("listing namespaces"),
        })?;
    let mut names: Vec<String> = list.items.iter().map(|n| n.name_any()).collect();
    names.sort();
    if names.is_empty() {
        bail!("no namespace matches --namespace-selector {query:?}: nothing to do");
    }
    Ok(names)
}

/// Applies `manifest` (unless the namespace is already offloaded with this spec) and waits
/// for the host's answer.
async fn offload_one(
    client: &kube::Client,
    namespace: &str,
    manifest: &Value,
    timeout: Duration,
) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces
        .get_opt(namespace)
        .await
        .with_context(|| format!("reading namespace {namespace}"))?
        .is_none()
    {
        bail!(
            "namespace {namespace} does not exist: create it first (kubectl create namespace {namespace})"
        );
    }

    let api: Api<NamespaceOffloading> = Api::namespaced(client.clone(), namespace);
    let applied = apply_offloading(&api, namespace, manifest).await?;
    let generation = applied.metadata.generation.unwrap_or_default();

    let spinner = Spinner::start(format!("Offloading namespace {namespace}"));
    let Some((object, phase)) =
        wait_settled(&api, namespace, generation, timeout, &spinner).await?
    else {
        spinner.fail(format!("Offloading namespace {namespace}"));
        bail!(
            "timed out after {}s waiting for the host to offload {namespace}: is liqo-host \
             running? (liqoctl info)",
            timeout.as_secs()
        );
    };
    report_offloaded(spinner, namespace, &object, phase)
}

/// Applies the NamespaceOffloading of `namespace`, unless it exists with this spec; returns it
/// as it is now. Refuses a change of an immutable field.
async fn apply_offloading(
    api: &Api<NamespaceOffloading>,
    namespace: &str,
    manifest: &Value,
) -> Result<NamespaceOffloading> {
    // Already offloaded with this spec (by liqoctl, or applied from `-o yaml` by kubectl or a
    // GitOps tool): nothing to write, and no field-ownership conflict with that manager. A
    // change of an immutable field is refused here, whoever manages the object.
    let current = api.get_opt(NAMESPACE_OFFLOADING_NAME).await.ok().flatten();
    let mut existing = None;
    if let Some(o) = current {
        let spec = serde_json::to_value(&o.spec).unwrap_or_default();
        let wanted = &manifest["spec"];
        for field in ["namespaceMappingStrategy", "remoteNamespaceName"] {
            let (now, asked) = (&spec[field], &wanted[field]);
            if now != asked {
                bail!(
                    "namespace {namespace} is offloaded with {field} {now}, and {field} is \
                     immutable: unoffload the namespace (liqoctl unoffload namespace {namespace}) \
                     and offload it again to change it"
                );
            }
        }
        if &spec == wanted {
            existing = Some(o);
        }
    }
    let applied = match existing {
        Some(o) => Ok(o),
        None => {
            api.patch(
                NAMESPACE_OFFLOADING_NAME,
                &PatchParams::apply(LIQOCTL_FIELD_MANAGER),
                &Patch::Apply(manifest),
            )
            .await
        }
    };
    applied.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 409 => anyhow::anyhow!(
            "the NamespaceOffloading of {namespace} is managed by someone else, and liqoctl \
                 would change it ({}): change it where it is managed (for example with kubectl \
                 or your GitOps repository), or unoffload and offload again",
            s.message
        ),
        kube::Error::Api(s) if s.code == 422 => anyhow::anyhow!(
            "the API server refused the NamespaceOffloading of {namespace}: {}",
            s.message
        ),
        kube::Error::Api(s) if s.code == 404 => anyhow::anyhow!(
            "the NamespaceOffloading kind is not installed in this cluster: run liqoctl install"
        ),
        other => anyhow::Error::new(other).context(format!("offloading namespace {namespace}")),
    })
}

/// Waits until the host has seen `generation` and left the InProgress phase, showing the phase
/// on the spinner; `None` after `timeout`.
async fn wait_settled(
    api: &Api<NamespaceOffloading>,
    namespace: &str,
    generation: i64,
    timeout: Duration,
    spinner: &Spinner,
) -> Result<Option<(NamespaceOffloading, OffloadingPhase)>> {
    let started = Instant::now();
    loop {
        let current = api.get_opt(NAMESPACE_OFFLOADING_NAME).await?;
        if let Some(phase) = current
            .as_ref()
            .and_then(|o| o.status.as_ref())
            .and_then(|s| s.offloading_phase)
        {
            spinner.set_message(format!(
                "Offloading namespace {namespace} ({})",
                phase.as_str()
            ));
        }
        if let Some(o) = &current
            && let Some(status) = &o.status
            && status.observed_generation.unwrap_or_default() >= generation
            && let Some(phase) = status.offloading_phase
            && phase != OffloadingPhase::InProgress
        {
            return Ok(Some((o.clone(), phase)));
        }
        if started.elapsed() > timeout {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Ends the spinner with the host's answer: offloaded (to which peers), offloaded with no peer
/// selected yet, or the failure.
fn report_offloaded(
    spinner: Spinner,
    namespace: &str,
    object: &NamespaceOffloading,
    phase: OffloadingPhase,
) -> Result<()> {
    let status = object.status.clone().unwrap_or_default();
    let remote = status.remote_namespace_name.clone().unwrap_or_default();
    let selected: Vec<&str> = status
        .remote_namespaces_conditions
        .iter()
        .filter(|(_, conds)| {
            conds.iter().any(|c| {
                c.type_ == liqo_host::api::namespace_offloading::RemoteNamespaceConditionType::OffloadingRequired
                    && c.status == liqo_host::api::ConditionStatus::True
            })
        })
        .map(|(id, _)| id.as_str())
        .collect();
    match phase {
        OffloadingPhase::Ready => spinner.success(format!(
            "Namespace {namespace} offloaded to its twin {remote} in {}",
            selected.join(", ")
        )),
        OffloadingPhase::NoClusterSelected => spinner.success(format!(
            "Namespace {namespace} is offloaded, but no peered cluster is selected yet{}",
            object
                .spec
                .cluster_selector
                .as_ref()
                .map(|s| format!(" (selector: {})", s.describe()))
                .unwrap_or_default()
        )),
        _ => {
            spinner.fail(format!("Offloading namespace {namespace}"));
            bail!(
                "offloading {namespace} is {}: {}",
                phase.as_str(),
                status.message.unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Refuses a name that is not a Kubernetes namespace name (an RFC 1123 label: at most 63
/// characters, lowercase letters, digits and `-`, starting and ending with a letter or digit),
/// saying which rule it breaks. `what` names the argument in the message.
fn check_namespace_name(what: &str, name: &str) -> Result<()> {
    let rule = "a namespace name is at most 63 characters of lowercase letters, digits and '-', \
                starting and ending with a letter or digit";
    if name.is_empty() {
        bail!("{what} is empty: {rule}");
    }
    if name.len() > 63 {
        bail!(
            "{what} {name:?} is {} characters long, over the limit of 63: {rule}",
            name.len()
        );
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        bail!("{what} {name:?} is not a valid namespace name ({c:?} is not allowed): {rule}");
    }
    if name.starts_with('-') || name.ends_with('-') {
        bail!("{what} {name:?} is not a valid namespace name (it starts or ends with '-'): {rule}");
    }
    Ok(())
}

/// Runs `liqoctl unoffload ...`.
pub async fn unoffload(global: &GlobalArgs, cmd: UnoffloadCommand) -> Result<()> {
    let UnoffloadCommand::Namespace {
        targets:
            NamespaceTargets {
                namespaces,
                namespace_selector,
            },
        timeout,
    } = cmd;
    for namespace in &namespaces {
        check_namespace_name("namespace", namespace)?;
    }
    let client = global.client().await?;
    let namespaces = match &namespace_selector {
        Some(query) => selected_namespaces(&client, query).await?,
        None => namespaces,
    };
    crate::context::confirm(
        global,
        &format!(
            "Stop offloading {} (their twin namespaces in the peers are deleted)?",
            namespaces.join(", ")
        ),
    )?;
    let mut failures = Vec::new();
    for namespace in &namespaces {
        let result = match unoffload_one(&client, namespace, timeout).await {
            // A namespace the selector matched but nobody offloaded is not an error.
            Ok(false) if namespace_selector.is_some() => Ok(()),
            Ok(false) => Err(anyhow::anyhow!(
                "namespace {namespace} is not offloaded (no NamespaceOffloading in it)"
            )),
            Ok(true) => Ok(()),
            Err(err) => Err(err),
        };
        match result {
            Err(err) if namespaces.len() == 1 => return Err(err),
            Err(err) => {
                eprintln!("error: {err:#}");
                failures.push(namespace.clone());
            }
            Ok(()) => {}
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} namespaces were not unoffloaded ({}); see the errors above",
            failures.len(),
            namespaces.len(),
            failures.join(", ")
        );
    }
    Ok(())
}

/// Deletes the NamespaceOffloading of `namespace` and waits until the host removed the twin
/// namespaces (it drops its finalizer then). `false` when the namespace was not offloaded.
async fn unoffload_one(client: &kube::Client, namespace: &str, timeout: Duration) -> Result<bool> {
    let api: Api<NamespaceOffloading> = Api::namespaced(client.clone(), namespace);
    match api
        .delete(NAMESPACE_OFFLOADING_NAME, &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
        Err(e) => return Err(e).context(format!("unoffloading namespace {namespace}")),
    }
    let spinner = Spinner::start(format!(
        "Unoffloading namespace {namespace}: deleting its twin namespaces"
    ));
    let started = Instant::now();
    loop {
        if api.get_opt(NAMESPACE_OFFLOADING_NAME).await?.is_none() {
            spinner.success("Unoffloading completed successfully");
            return Ok(true);
        }
        if started.elapsed() > timeout {
            spinner.fail(format!("Unoffloading namespace {namespace}"));
            bail!(
                "timed out after {}s waiting for the twin namespaces of {namespace} to be \
                 deleted: is liqo-host running? (liqoctl info)",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names() {
        assert!(check_namespace_name("namespace", "liqo-demo").is_ok());
        assert!(check_namespace_name("namespace", &"a".repeat(63)).is_ok());
        let long = check_namespace_name("--remote-namespace-name", &"a".repeat(64)).unwrap_err();
        assert!(long.to_string().contains("64 characters long"), "{long}");
        for bad in ["", "Liqo", "a_b", "-a", "a-", "é"] {
            assert!(check_namespace_name("namespace", bad).is_err(), "{bad:?}");
        }
    }
}
