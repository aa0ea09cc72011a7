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
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use liqo_host::api::namespace_offloading::{
    NAMESPACE_OFFLOADING_NAME, NamespaceOffloading, OffloadingPhase,
};
use serde_json::{Value, json};

use crate::context::GlobalArgs;
use crate::output::{self, OutputFormat};
use crate::progress::Spinner;

/// Field manager of liqoctl's writes.
const FIELD_MANAGER: &str = "liqoctl";

/// `liqoctl offload ...`.
#[derive(Subcommand, Debug)]
pub enum OffloadCommand {
    /// Offload a namespace: its Services and EndpointSlices are reflected into a twin namespace
    /// in every peered cluster (pods stay in this cluster).
    ///
    /// Example:
    ///   liqoctl offload namespace liqo-demo --namespace-mapping-strategy EnforceSameName \
    ///       --pod-offloading-strategy Local
    #[command(verbatim_doc_comment)]
    Namespace {
        /// The namespace to offload.
        namespace: String,
        /// How the twin namespace is named: EnforceSameName (same name, so DNS names work
        /// unchanged), DefaultName (`<namespace>-<local cluster id>`) or SelectedName
        /// (`--remote-namespace-name`). Cannot change once offloaded.
        #[arg(long, value_enum, default_value_t = MappingStrategy::DefaultName)]
        namespace_mapping_strategy: MappingStrategy,
        /// The twin namespace name; only with `--namespace-mapping-strategy SelectedName`.
        #[arg(long)]
        remote_namespace_name: Option<String>,
        /// Where pods run. Only Local (pods stay in this cluster) is supported.
        #[arg(long, value_enum, default_value_t = PodStrategy::Local)]
        pod_offloading_strategy: PodStrategy,
        /// How long to wait for the host to create the twin namespaces.
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        timeout: Duration,
        /// Print the NamespaceOffloading instead of applying it (Liqo v1, for GitOps): nothing
        /// is contacted or changed; `| kubectl apply -f -` offloads with it.
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
}

/// `liqoctl unoffload ...`.
#[derive(Subcommand, Debug)]
pub enum UnoffloadCommand {
    /// Stop offloading a namespace. Destructive: the twin namespaces, and everything in them,
    /// are deleted in the peers.
    Namespace {
        /// The namespace.
        namespace: String,
        /// How long to wait for the twin namespaces to be deleted.
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        timeout: Duration,
    },
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

/// Parses `90s`, `2m`, `1h` or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (examples: 90s, 2m, 1h)"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => {
            return Err(format!(
                "{text:?} is not a duration (examples: 90s, 2m, 1h)"
            ));
        }
    };
    Ok(Duration::from_secs(seconds))
}

/// Runs `liqoctl offload ...`.
pub async fn offload(global: &GlobalArgs, cmd: OffloadCommand) -> Result<()> {
    let OffloadCommand::Namespace {
        namespace,
        namespace_mapping_strategy,
        remote_namespace_name,
        pod_offloading_strategy,
        timeout,
        output,
    } = cmd;
    if pod_offloading_strategy != PodStrategy::Local {
        bail!(
            "--pod-offloading-strategy {pod_offloading_strategy:?} is not supported: pods always \
             stay in this cluster; use --pod-offloading-strategy Local"
        );
    }
    // Checked before any request, so a typo gets its own sentence rather than "does not
    // exist" (a name kubectl could never create) or the API server's schema error.
    check_namespace_name("namespace", &namespace)?;
    if let Some(name) = &remote_namespace_name {
        check_namespace_name("--remote-namespace-name", name)?;
    }
    match (namespace_mapping_strategy, &remote_namespace_name) {
        (MappingStrategy::SelectedName, None) => {
            bail!("--namespace-mapping-strategy SelectedName needs --remote-namespace-name")
        }
        (MappingStrategy::EnforceSameName | MappingStrategy::DefaultName, Some(_)) => bail!(
            "--remote-namespace-name goes only with --namespace-mapping-strategy SelectedName"
        ),
        _ => {}
    }

    let mut spec = json!({
        "namespaceMappingStrategy": format!("{namespace_mapping_strategy:?}"),
        "podOffloadingStrategy": "Local",
    });
    if let Some(name) = &remote_namespace_name {
        spec["remoteNamespaceName"] = json!(name);
    }
    let manifest = json!({
        "apiVersion": "offloading.liqo.io/v1beta1",
        "kind": "NamespaceOffloading",
        "metadata": {"name": NAMESPACE_OFFLOADING_NAME, "namespace": namespace},
        "spec": spec,
    });
    if let Some(format) = output {
        return output::print(&manifest, format);
    }

    let client = global.client().await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces
        .get_opt(&namespace)
        .await
        .with_context(|| format!("reading namespace {namespace}"))?
        .is_none()
    {
        bail!(
            "namespace {namespace} does not exist: create it first (kubectl create namespace {namespace})"
        );
    }

    let api: Api<NamespaceOffloading> = Api::namespaced(client, &namespace);
    // Already offloaded with this spec (by liqoctl, or applied from `-o yaml` by kubectl or a
    // GitOps tool): nothing to write, and no field-ownership conflict with that manager. A
    // change of an immutable field is refused here, whoever manages the object.
    let current = api.get_opt(NAMESPACE_OFFLOADING_NAME).await.ok().flatten();
    let mut existing = None;
    if let Some(o) = current {
        let spec = serde_json::to_value(&o.spec).unwrap_or_default();
        let wanted = manifest["spec"].as_object().cloned().unwrap_or_default();
        for field in ["namespaceMappingStrategy", "remoteNamespaceName"] {
            let (now, asked) = (&spec[field], wanted.get(field).unwrap_or(&Value::Null));
            if now != asked {
                bail!(
                    "namespace {namespace} is offloaded with {field} {now}, and {field} is \
                     immutable: unoffload the namespace (liqoctl unoffload namespace {namespace}) \
                     and offload it again to change it"
                );
            }
        }
        if wanted.iter().all(|(k, v)| &spec[k] == v) {
            existing = Some(o);
        }
    }
    let applied = match existing {
        Some(o) => Ok(o),
        None => {
            api.patch(
                NAMESPACE_OFFLOADING_NAME,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&manifest),
            )
            .await
        }
    };
    let applied = applied.map_err(|e| match e {
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
    })?;
    let generation = applied.metadata.generation.unwrap_or_default();

    let spinner = Spinner::start(format!("Offloading namespace {namespace}"));
    let started = Instant::now();
    let done = loop {
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
            break (o.clone(), phase);
        }
        if started.elapsed() > timeout {
            spinner.fail(format!("Offloading namespace {namespace}"));
            bail!(
                "timed out after {}s waiting for the host to offload {namespace}: is liqo-host \
                 running? (liqoctl info)",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (object, phase) = done;
    let status = object.status.clone().unwrap_or_default();
    let remote = status.remote_namespace_name.clone().unwrap_or_default();
    match phase {
        OffloadingPhase::Ready => spinner.success(format!(
            "Namespace {namespace} offloaded to its twin {remote} in every selected cluster"
        )),
        OffloadingPhase::NoClusterSelected => spinner.success(format!(
            "Namespace {namespace} is offloaded, but no peered cluster is selected yet"
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
    let UnoffloadCommand::Namespace { namespace, timeout } = cmd;
    check_namespace_name("namespace", &namespace)?;
    let client = global.client().await?;
    crate::context::confirm(
        global,
        &format!("Stop offloading {namespace} (its twin namespaces in the peers are deleted)?"),
    )?;
    let api: Api<NamespaceOffloading> = Api::namespaced(client, &namespace);
    match api
        .delete(NAMESPACE_OFFLOADING_NAME, &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {
            bail!("namespace {namespace} is not offloaded (no NamespaceOffloading in it)")
        }
        Err(e) => return Err(e).context(format!("unoffloading namespace {namespace}")),
    }
    let spinner = Spinner::start(format!(
        "Unoffloading namespace {namespace}: deleting its twin namespaces"
    ));
    let started = Instant::now();
    loop {
        if api.get_opt(NAMESPACE_OFFLOADING_NAME).await?.is_none() {
            spinner.success("Unoffloading completed successfully");
            return Ok(());
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
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }

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
