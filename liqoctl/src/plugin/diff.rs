//! `liqoctl plugin diff PLUGIN.wasm --peer NAME --namespace NS`: what a plugin would change in
//! a peer, object by object, without writing anything.
//!
//! For every live object of the plugin's kinds in the offloaded namespace, the plugin is called
//! as the host would (same runtime, limits and invariants), the remote copy is read from the
//! peer with the peering credential, and the two are compared on the fields the plugin sets,
//! plus all labels and annotations. Fields the API server owns or fills in (uid,
//! resourceVersion, managedFields, defaults, allocated addresses) are ignored because the
//! plugin's output does not set them; so is the host's `reflection.liqo.io/intent-hash`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use liqo_host::api::foreign_cluster::credential_kubeconfig;
use liqo_host::api::identity::{
    CLUSTER_IDENTITY_CONFIGMAP, CLUSTER_IDENTITY_NAMESPACE, ClusterIdentityConfig,
};
use liqo_host::api::namespace_offloading::{
    NAMESPACE_OFFLOADING_NAME, NamespaceOffloading, RemoteNamespaceConditionType,
};
use liqo_host::api::ownership::{OwnershipLabels, managed_by_required};
use liqo_host::api::{ConditionStatus, ForeignCluster};
use liqo_host::plugin::{
    AddressTranslator, CallServices, ClusterIdentity, KindRef, Outcome, PluginLimits, ReflectCall,
};
use serde::Serialize;
use serde_json::{Value, json};

use super::ReflectorPlugin;
use super::fielddiff::{self, Change};
use super::test::ObjectList;
use crate::context::GlobalArgs;
use crate::output::{self, OutputFormat};

/// The annotation the host stamps on every object it applies (a hash of the intent).
pub use liqo_host::api::wire::INTENT_HASH_ANNOTATION;

/// Flags of `liqoctl plugin diff`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The plugin component (.wasm).
    pub plugin: PathBuf,
    /// The peer, by ForeignCluster name (kubectl get foreignclusters).
    #[arg(long, value_name = "NAME")]
    pub peer: String,
    /// The local namespace; it must be offloaded to the peer (liqoctl offload namespace).
    #[arg(long, short = 'n', value_name = "NS")]
    pub namespace: String,
    #[command(flatten)]
    pub config: super::ConfigArgs,
    /// This cluster's id, as the host knows it (default: CLUSTER_ID of the ConfigMap
    /// liqo/liqo-clusterid-configmap written by liqoctl install).
    #[arg(long, value_name = "ID")]
    pub cluster_id: Option<String>,
    /// CPU budget of one call in milliseconds.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub cpu_ms: u64,
    /// Memory cap of the plugin in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=512))]
    pub memory_mib: u64,
    /// Exit with status 1 when something would change (like git diff --exit-code).
    #[arg(long)]
    pub exit_code: bool,
    /// Print the report as YAML or JSON instead of text.
    #[arg(short, long, value_enum)]
    pub output: Option<OutputFormat>,
}

/// What would happen to one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// The remote copy already has what the plugin would write.
    UpToDate,
    /// The remote copy would change.
    Changed,
    /// There is no remote copy: it would be created.
    Created,
    /// The plugin skips the object and a remote copy exists: it would be deleted.
    Deleted,
    /// The plugin skips the object and there is no remote copy: nothing to do.
    Skipped,
    /// A remote object with the same name exists and is not ours: the host leaves it alone.
    Conflict,
    /// The plugin call failed: the host would write nothing and report the error.
    Failed,
}

/// The diff of one object.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectDiff {
    /// `Kind namespace/name` of the local object (or of the remote one, for orphans).
    pub object: String,
    /// What would happen.
    pub verdict: Verdict,
    /// The skip reason, the error, or why a delete happens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The field changes, from the remote copy to what the host would write.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
}

/// Counts for the summary line.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Objects compared.
    pub objects: usize,
    /// Objects whose remote copy would change.
    pub changed: usize,
    /// Objects that would be created.
    pub created: usize,
    /// Remote copies that would be deleted.
    pub deleted: usize,
    /// Objects left alone because a foreign remote object has their name.
    pub conflicts: usize,
    /// Objects the plugin failed on.
    pub failed: usize,
}

impl Summary {
    /// Counts the verdicts.
    pub fn of(diffs: &[ObjectDiff]) -> Self {
        let count = |v: Verdict| diffs.iter().filter(|d| d.verdict == v).count();
        Self {
            objects: diffs.len(),
            changed: count(Verdict::Changed),
            created: count(Verdict::Created),
            deleted: count(Verdict::Deleted),
            conflicts: count(Verdict::Conflict),
            failed: count(Verdict::Failed),
        }
    }

    /// Whether anything would be written or deleted.
    pub fn has_differences(&self) -> bool {
        self.changed + self.created + self.deleted > 0
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} object{}, {} would change, {} would be created, {} would be deleted",
            self.objects,
            if self.objects == 1 { "" } else { "s" },
            self.changed,
            self.created,
            self.deleted
        )?;
        if self.conflicts > 0 {
            write!(f, ", {} in conflict", self.conflicts)?;
        }
        if self.failed > 0 {
            write!(f, ", {} failed", self.failed)?;
        }
        Ok(())
    }
}

/// The `-o json|yaml` document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The ForeignCluster name.
    pub peer: String,
    /// The local namespace.
    pub namespace: String,
    /// The twin namespace in the peer.
    pub remote_namespace: String,
    /// One entry per object.
    pub objects: Vec<ObjectDiff>,
    /// Counts.
    pub summary: Summary,
}

/// Returned to `main` to end with an exit status and no message (`--exit-code`).
#[derive(Debug)]
pub struct ExitStatus(pub i32);

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for ExitStatus {}

/// Compares what the host would write for one local object (`outcome`) with its remote copy;
/// `managed_by_required` is the kind's ownership rule ([`managed_by_required`]).
pub fn compare(
    object: String,
    outcome: Result<Outcome, String>,
    remote: Option<&Value>,
    origin: &str,
    destination: &str,
    managed_by_required: bool,
) -> ObjectDiff {
    let owned =
        |r: &Value| {
            OwnershipLabels::from_json(r.pointer("/metadata/labels").and_then(Value::as_object))
                .prove(origin, destination, managed_by_required)
        };
    let (verdict, reason, changes) = match outcome {
        Err(message) => (Verdict::Failed, Some(message), Vec::new()),
        Ok(Outcome::Skip(reason)) => match remote {
            Some(r) if owned(r) => (
                Verdict::Deleted,
                Some(format!("skip: {reason}")),
                Vec::new(),
            ),
            _ => (
                Verdict::Skipped,
                Some(format!("skip: {reason}")),
                Vec::new(),
            ),
        },
        Ok(Outcome::Apply(desired)) => match remote {
            None => (
                Verdict::Created,
                None,
                fielddiff::diff(&json!({}), &comparable(&desired)),
            ),
            Some(r) if !owned(r) => (
                Verdict::Conflict,
                Some(
                    "a remote object with this name exists and is not managed by this peering: \
                     the host leaves it alone"
                        .into(),
                ),
                Vec::new(),
            ),
            Some(r) => {
                let changes = remote_changes(r, &desired);
                let verdict = if changes.is_empty() {
                    Verdict::UpToDate
                } else {
                    Verdict::Changed
                };
                (verdict, None, changes)
            }
        },
    };
    ObjectDiff {
        object,
        verdict,
        reason,
        changes,
    }
}

/// The changes from `remote` to `desired`, on the fields `desired` sets plus every label and
/// annotation (except the host's intent hash).
pub fn remote_changes(remote: &Value, desired: &Value) -> Vec<Change> {
    let desired = comparable(desired);
    let mut actual = fielddiff::project(remote, &desired);
    for key in ["labels", "annotations"] {
        let full = remote
            .pointer(&format!("/metadata/{key}"))
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(meta) = actual.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert(key.into(), full);
        }
    }
    fielddiff::diff(&comparable(&actual), &desired)
}

/// Drops what never counts: the intent hash, and empty or missing labels and annotations.
fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove(INTENT_HASH_ANNOTATION);
        }
        for key in ["labels", "annotations"] {
            let empty = meta
                .get(key)
                .is_some_and(|v| v.is_null() || v.as_object().is_some_and(|m| m.is_empty()));
            if empty {
                meta.remove(key);
            }
        }
    }
    object
}

/// Runs `liqoctl plugin diff`.
pub async fn run(global: &GlobalArgs, args: DiffArgs) -> Result<()> {
    let config = args.config.json()?;
    let bytes = super::read_component(&args.plugin)?;
    let runtime = super::runtime()?;
    let limits = PluginLimits::new(args.cpu_ms, args.memory_mib as usize);
    let plugin = super::load(&runtime, &args.plugin, &bytes, limits, &config)?;

    let client = global.client().await?;
    let local = local_identity(&client, args.cluster_id.as_deref()).await?;
    let (fc, remote) = read_peer(&client, &args.peer).await?;
    let remote_namespace =
        remote_namespace(&client, &args.namespace, &args.peer, &remote.id).await?;
    let peer = peer_client(&client, &fc).await?;
    let translator = translator(&fc)?;

    // host.get-object reads the local cache of the declared kinds: list them once.
    let mut cached = Vec::new();
    for kind in &plugin.manifest().reads {
        cached.extend(list(&client, kind, &args.namespace, "this cluster").await?);
    }
    let services = CallServices {
        reader: Arc::new(ObjectList(cached)),
        translator,
    };

    let scope = DiffScope {
        client: &client,
        peer: &peer,
        peer_name: &args.peer,
        namespace: &args.namespace,
        call: ReflectCall {
            local_cluster: &local,
            remote_cluster: &remote,
            remote_namespace: &remote_namespace,
            services: &services,
        },
    };
    let mut diffs = Vec::new();
    for kind in &plugin.manifest().reflects {
        diffs.extend(diff_kind(&scope, &plugin, kind).await?);
    }
    report(&args, plugin.name(), &remote_namespace, diffs)
}

/// The peer's ForeignCluster, and the peer's identity as the plugin sees it (its name defaults
/// to the ForeignCluster's).
async fn read_peer(client: &Client, peer: &str) -> Result<(ForeignCluster, ClusterIdentity)> {
    let fc = Api::<ForeignCluster>::all(client.clone())
        .get_opt(peer)
        .await
        .with_context(|| format!("reading ForeignCluster {peer}"))?
        .ok_or_else(|| {
            anyhow!("ForeignCluster {peer} not found: kubectl get foreignclusters lists the peers")
        })?;
    let remote = ClusterIdentity {
        id: fc.spec.cluster_id.clone(),
        name: fc
            .spec
            .cluster_name
            .clone()
            .unwrap_or_else(|| peer.to_string()),
    };
    Ok((fc, remote))
}

/// What a diff compares: the namespace here and its twin in the peer, and the call the host
/// would make for each object.
struct DiffScope<'a> {
    client: &'a Client,
    /// A client of the peer, with the peering credential.
    peer: &'a Client,
    /// The peer's ForeignCluster name.
    peer_name: &'a str,
    /// The local namespace.
    namespace: &'a str,
    call: ReflectCall<'a>,
}

/// The diffs of every object of `kind`: each local object against its remote copy, then the
/// remote copies the host would delete.
async fn diff_kind(
    scope: &DiffScope<'_>,
    plugin: &ReflectorPlugin,
    kind: &KindRef,
) -> Result<Vec<ObjectDiff>> {
    let local = scope.call.local_cluster;
    let remote = scope.call.remote_cluster;
    let managed_by = managed_by_required(&kind.group, &kind.kind);
    let mut diffs = Vec::new();
    let locals = list(scope.client, kind, scope.namespace, "this cluster").await?;
    let mut remotes: BTreeMap<String, Value> = list(
        scope.peer,
        kind,
        scope.call.remote_namespace,
        &format!("peer {}", scope.peer_name),
    )
    .await?
    .into_iter()
    .map(|o| {
        (
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            o,
        )
    })
    .collect();
    for object in locals {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let outcome = plugin
            .reflect(&scope.call, &object)
            .map_err(|e| e.to_string());
        let remote_copy = remotes.remove(&name);
        diffs.push(compare(
            format!("{} {}/{name}", kind.kind, scope.namespace),
            outcome,
            remote_copy.as_ref(),
            &local.id,
            &remote.id,
            managed_by,
        ));
    }
    // Remote copies without a local object: the host deletes the ones it owns.
    for (name, object) in remotes {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        if OwnershipLabels::from_json(labels).prove(&local.id, &remote.id, managed_by) {
            diffs.push(ObjectDiff {
                object: format!("{} {}/{name}", kind.kind, scope.namespace),
                verdict: Verdict::Deleted,
                reason: Some("no local object".into()),
                changes: Vec::new(),
            });
        }
    }
    Ok(diffs)
}

/// Prints the report (text, or `-o yaml|json`); fails when the plugin failed on an object, and
/// with exit status 1 under `--exit-code` when something would change.
fn report(
    args: &DiffArgs,
    plugin_name: &str,
    remote_namespace: &str,
    diffs: Vec<ObjectDiff>,
) -> Result<()> {
    let summary = Summary::of(&diffs);
    match args.output {
        Some(format) => output::print(
            &Report {
                peer: args.peer.clone(),
                namespace: args.namespace.clone(),
                remote_namespace: remote_namespace.to_string(),
                objects: diffs,
                summary: summary.clone(),
            },
            format,
        )?,
        None => {
            println!(
                "Plugin {} on namespace {} -> {} in peer {} (from the remote copy to what the \
                 host would write):",
                plugin_name, args.namespace, remote_namespace, args.peer,
            );
            print!("{}", render(&diffs));
            println!("{summary}");
        }
    }
    if summary.failed > 0 {
        bail!(
            "the plugin failed on {} object{} (see above)",
            summary.failed,
            if summary.failed == 1 { "" } else { "s" }
        );
    }
    if args.exit_code && summary.has_differences() {
        return Err(ExitStatus(1).into());
    }
    Ok(())
}

/// The text report: one line per object, then its field changes.
pub fn render(diffs: &[ObjectDiff]) -> String {
    let mut out = String::new();
    for d in diffs {
        let what = match d.verdict {
            Verdict::UpToDate => "up to date".to_string(),
            Verdict::Changed => format!(
                "would change ({} field{})",
                d.changes.len(),
                if d.changes.len() == 1 { "" } else { "s" }
            ),
            Verdict::Created => "would be created".to_string(),
            Verdict::Deleted => "would be deleted".to_string(),
            Verdict::Skipped => "not reflected".to_string(),
            Verdict::Conflict => "conflict".to_string(),
            Verdict::Failed => "error".to_string(),
        };
        match &d.reason {
            Some(reason) => out.push_str(&format!("{}: {what} ({reason})\n", d.object)),
            None => out.push_str(&format!("{}: {what}\n", d.object)),
        }
        out.push_str(&fielddiff::render(&d.changes, "    "));
    }
    out
}

/// This cluster's identity: `--cluster-id`, or the ConfigMap the host reads.
async fn local_identity(client: &Client, cluster_id: Option<&str>) -> Result<ClusterIdentity> {
    if let Some(id) = cluster_id {
        return Ok(ClusterIdentity {
            id: id.to_string(),
            name: id.to_string(),
        });
    }
    let cm = Api::<ConfigMap>::namespaced(client.clone(), CLUSTER_IDENTITY_NAMESPACE)
        .get_opt(CLUSTER_IDENTITY_CONFIGMAP)
        .await
        .with_context(|| {
            format!("reading ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{CLUSTER_IDENTITY_CONFIGMAP}")
        })?
        .ok_or_else(|| {
            anyhow!(
                "ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{CLUSTER_IDENTITY_CONFIGMAP} not found: \
                 this cluster has no liqo identity; run liqoctl install, or pass --cluster-id"
            )
        })?;
    let config = ClusterIdentityConfig::from_config_map(&cm)?;
    Ok(ClusterIdentity {
        id: config.cluster_id,
        name: config.cluster_name,
    })
}

/// The twin namespace of `namespace` in the peer, from its NamespaceOffloading status.
async fn remote_namespace(
    client: &Client,
    namespace: &str,
    peer: &str,
    peer_id: &str,
) -> Result<String> {
    let nso = Api::<NamespaceOffloading>::namespaced(client.clone(), namespace)
        .get_opt(NAMESPACE_OFFLOADING_NAME)
        .await
        .with_context(|| format!("reading NamespaceOffloading {namespace}/offloading"))?
        .ok_or_else(|| {
            anyhow!(
                "namespace {namespace} is not offloaded (it has no NamespaceOffloading): run \
                 liqoctl offload namespace {namespace}"
            )
        })?;
    let status = nso.status.unwrap_or_default();
    let Some(remote) = status.remote_namespace_name.filter(|n| !n.is_empty()) else {
        bail!(
            "namespace {namespace} has no twin namespace yet (status.remoteNamespaceName of its \
             NamespaceOffloading is empty): is liqo-host running? (liqoctl info)"
        );
    };
    let Some(conditions) = status.remote_namespaces_conditions.get(peer_id) else {
        let peers: Vec<&String> = status.remote_namespaces_conditions.keys().collect();
        bail!(
            "namespace {namespace} is not offloaded to {peer} (cluster id {peer_id}): its \
             NamespaceOffloading selects {}",
            if peers.is_empty() {
                "no peer".to_string()
            } else {
                peers
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    };
    let ready = conditions.iter().any(|c| {
        c.type_ == RemoteNamespaceConditionType::Ready && c.status == ConditionStatus::True
    });
    if !ready {
        eprintln!(
            "Warning: the twin namespace {remote} in {peer} is not Ready; remote objects may be \
             missing"
        );
    }
    Ok(remote)
}

/// A client for the peer, authenticated with the peering credential as the host's is.
pub(crate) async fn peer_client(client: &Client, fc: &ForeignCluster) -> Result<Client> {
    let name = fc.name_any();
    let reference = fc.spec.credentials_secret_ref.as_ref().ok_or_else(|| {
        anyhow!(
            "ForeignCluster {name} has no spec.credentialsSecretRef: this cluster has no \
             credential for the peer (peer with liqoctl peer)"
        )
    })?;
    let secret_name = format!("{}/{}", reference.namespace, reference.name);
    let secret = Api::<Secret>::namespaced(client.clone(), &reference.namespace)
        .get_opt(&reference.name)
        .await
        .with_context(|| format!("reading the credential Secret {secret_name} of {name}"))?
        .ok_or_else(|| {
            anyhow!("ForeignCluster {name}: credential Secret {secret_name} not found")
        })?;
    let kubeconfig = credential_kubeconfig(&secret.data.unwrap_or_default())
        .map_err(|e| anyhow!("ForeignCluster {name}: credential Secret {secret_name}: {e}"))?;
    // The parser's messages could quote the credential: never relay them.
    let invalid = || {
        anyhow!(
            "ForeignCluster {name}: credential Secret {secret_name} holds an invalid kubeconfig"
        )
    };
    let kubeconfig = Kubeconfig::from_yaml(&kubeconfig).map_err(|_| invalid())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|_| invalid())?;
    Client::try_from(config).with_context(|| format!("creating a client for peer {name}"))
}

/// The peer's address translation, exactly as the host configures it from the ForeignCluster.
fn translator(fc: &ForeignCluster) -> Result<Arc<dyn AddressTranslator>> {
    liqo_host::protocol::networking::translator(fc)
        .map_err(|e| anyhow!("ForeignCluster {}: spec.networking: {e}", fc.name_any()))
}

/// Every object of `kind` in `namespace`, as JSON with `apiVersion` and `kind` set (list
/// responses leave them out of the items).
async fn list(
    client: &Client,
    kind: &KindRef,
    namespace: &str,
    cluster: &str,
) -> Result<Vec<Value>> {
    let resource = ApiResource {
        group: kind.group.clone(),
        version: kind.version.clone(),
        api_version: kind.api_version(),
        kind: kind.kind.clone(),
        plural: kind.plural.clone(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let list = api.list(&ListParams::default()).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 403 => anyhow!(
            "{cluster} refuses to list {} in namespace {namespace}: {}{}",
            kind.plural,
            s.message,
            if cluster.starts_with("peer") {
                " (the peering credential must be allowed to manage this kind in the twin namespace)"
            } else {
                ""
            }
        ),
        kube::Error::Api(s) if s.code == 404 => anyhow!(
            "{cluster} does not serve {kind} ({}): is the kind (or its CRD) installed there?",
            kind.plural
        ),
        other => anyhow::Error::new(other)
            .context(format!("listing {} in namespace {namespace} of {cluster}", kind.plural)),
    })?;
    let mut objects = Vec::new();
    for item in list.items {
        let mut value = serde_json::to_value(&item).context("serializing an object")?;
        value["apiVersion"] = json!(kind.api_version());
        value["kind"] = json!(kind.kind);
        objects.push(value);
    }
    objects.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "offloading.liqo.io/origin";
    const DESTINATION: &str = "offloading.liqo.io/destination";

    fn desired() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "demo",
                         "labels": {"app": "web", ORIGIN: "london", DESTINATION: "newyork"}},
            "spec": {"type": "ClusterIP", "selector": {"app": "web"},
                     "ports": [{"port": 80, "protocol": "TCP"}]}
        })
    }

    /// The remote copy as the peer's API server serves it after the host applied `desired`.
    fn remote() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "demo", "uid": "u-1",
                         "resourceVersion": "812", "creationTimestamp": "2024-01-01T00:00:00Z",
                         "managedFields": [{"manager": "reflection.liqo.io"}],
                         "labels": {"app": "web", ORIGIN: "london", DESTINATION: "newyork"},
                         "annotations": {INTENT_HASH_ANNOTATION: "abc123"}},
            "spec": {"type": "ClusterIP", "selector": {"app": "web"},
                     "clusterIP": "10.97.0.12", "clusterIPs": ["10.97.0.12"],
                     "ipFamilies": ["IPv4"], "sessionAffinity": "None",
                     "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]},
            "status": {"loadBalancer": {}}
        })
    }

    fn lines(d: &ObjectDiff) -> Vec<String> {
        d.changes.iter().map(ToString::to_string).collect()
    }

    fn cmp(outcome: Result<Outcome, String>, remote: Option<&Value>) -> ObjectDiff {
        compare(
            "Service demo/web".into(),
            outcome,
            remote,
            "london",
            "newyork",
            false,
        )
    }

    #[test]
    fn server_owned_fields_and_the_intent_hash_are_ignored() {
        let d = cmp(Ok(Outcome::Apply(desired())), Some(&remote()));
        assert_eq!(d.verdict, Verdict::UpToDate, "{:?}", lines(&d));
    }

    #[test]
    fn changed_fields_and_labels_are_reported_with_paths() {
        let mut want = desired();
        want["spec"]["ports"][0]["port"] = json!(8080);
        want["metadata"]["labels"]["tier"] = json!("front");
        let mut r = remote();
        r["metadata"]["labels"]["stale"] = json!("x");
        r["metadata"]["annotations"]["note"] = json!("old");
        let d = cmp(Ok(Outcome::Apply(want)), Some(&r));
        assert_eq!(d.verdict, Verdict::Changed);
        assert_eq!(
            lines(&d),
            [
                r#"- .metadata.annotations: {"note":"old"}"#,
                r#"- .metadata.labels.stale: "x""#,
                r#"+ .metadata.labels.tier: "front""#,
                "  .spec.ports[0].port: 80 -> 8080",
            ]
        );
        let text = render(&[d]);
        assert!(
            text.starts_with("Service demo/web: would change (4 fields)\n"),
            "{text}"
        );
        assert!(
            text.contains("\n      .spec.ports[0].port: 80 -> 8080\n"),
            "{text}"
        );
    }

    #[test]
    fn created_deleted_skipped_conflict_and_failed() {
        let created = cmp(Ok(Outcome::Apply(desired())), None);
        assert_eq!(created.verdict, Verdict::Created);
        assert!(lines(&created).contains(&r#"+ .spec: {"ports":[{"port":80,"protocol":"TCP"}],"selector":{"app":"web"},"type":"ClusterIP"}"#.to_string()), "{:?}", lines(&created));

        let skip = || Ok(Outcome::Skip("annotated".into()));
        assert_eq!(cmp(skip(), Some(&remote())).verdict, Verdict::Deleted);
        assert_eq!(cmp(skip(), None).verdict, Verdict::Skipped);

        let mut foreign = remote();
        foreign["metadata"]["labels"][ORIGIN] = json!("paris");
        assert_eq!(
            cmp(skip(), Some(&foreign)).verdict,
            Verdict::Skipped,
            "not ours: kept"
        );
        let conflict = cmp(Ok(Outcome::Apply(desired())), Some(&foreign));
        assert_eq!(conflict.verdict, Verdict::Conflict);

        let failed = cmp(Err("plugin x rejected it".into()), Some(&remote()));
        assert_eq!(failed.verdict, Verdict::Failed);
        assert_eq!(failed.reason.as_deref(), Some("plugin x rejected it"));
    }

    #[test]
    fn empty_maps_and_missing_ones_are_equal() {
        let mut want = desired();
        want["spec"]["selector"] = json!({});
        want["metadata"]["annotations"] = json!({});
        let mut r = remote();
        r["spec"].as_object_mut().unwrap().remove("selector");
        let d = cmp(Ok(Outcome::Apply(want)), Some(&r));
        assert_eq!(d.verdict, Verdict::UpToDate, "{:?}", lines(&d));
    }

    #[test]
    fn summary_line() {
        let diffs = vec![
            cmp(Ok(Outcome::Apply(desired())), Some(&remote())),
            cmp(Ok(Outcome::Apply(desired())), None),
            cmp(Ok(Outcome::Skip("s".into())), Some(&remote())),
            cmp(Err("e".into()), None),
        ];
        let summary = Summary::of(&diffs);
        assert_eq!(
            summary.to_string(),
            "4 objects, 0 would change, 1 would be created, 1 would be deleted, 1 failed"
        );
        assert!(summary.has_differences());
        assert!(!Summary::of(&diffs[..1]).has_differences());
    }
}
