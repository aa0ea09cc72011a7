//! `liqoctl info peer [NAME...]` (Liqo v1): one report per peering — its role, health, address
//! translation and gateway, the namespaces offloaded through it, and how many objects were
//! reflected each way, counted where they are (in the peer with this cluster's peering
//! credential, here with this cluster's own). `-o yaml|json` prints the reports; `--get PATH`
//! one field of one report.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use clap::Args;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use liqo_host::api::ForeignCluster;
use liqo_host::api::conditions::ConditionStatus;
use liqo_host::api::namespace_offloading::{NamespaceOffloading, RemoteNamespaceConditionType};
use liqo_host::api::wire::{
    DESTINATION, ENDPOINTSLICE_MANAGED_BY, ENDPOINTSLICE_MANAGED_BY_REFLECTION, ORIGIN,
};
use serde::Serialize;

use super::{PeeringInfo, peering_info};
use crate::context::GlobalArgs;
use crate::install::manifests;
use crate::output::{OutputFormat, print, print_field};

/// Flags of `liqoctl info peer`.
#[derive(Args, Debug)]
pub struct InfoPeerArgs {
    /// ForeignCluster names (default: every peering).
    pub names: Vec<String>,
    /// Output format (default: a human summary).
    #[arg(short, long, value_enum)]
    pub output: Option<OutputFormat>,
    /// Print one field of one peer's report, by its dotted path (for example `role`,
    /// `health`, `reflected.Service`, `offloadedNamespaces.0.namespace`).
    #[arg(long, value_name = "PATH")]
    pub get: Option<String>,
}

/// One peering, as `liqoctl info peer` reports it.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PeerReport {
    /// Identity, conditions, health, credential fingerprint, gateway (as in `liqoctl info`).
    #[serde(flatten)]
    pub peering: PeeringInfo,
    /// The peer's role for this cluster: `Provider`, `Consumer`, `ConsumerAndProvider`,
    /// `Unknown`.
    pub role: String,
    /// `Identity`, `CidrRemap` or `Gateway`.
    pub address_translation: String,
    /// The provider's cluster labels (its `liqoctl install --cluster-labels`), as its
    /// ForeignCluster here carries them for `--selector`.
    pub cluster_labels: BTreeMap<String, String>,
    /// As a consumer: this cluster's namespaces offloaded to the peer.
    pub offloaded_namespaces: Vec<OffloadedNamespace>,
    /// As a provider: the twin namespaces the peer has in this cluster.
    pub incoming_namespaces: Vec<String>,
    /// Objects this cluster reflected into the peer, by kind (counted in the peer).
    pub reflected: BTreeMap<String, usize>,
    /// Objects the peer reflected into this cluster, by kind.
    pub reflected_here: BTreeMap<String, usize>,
    /// Why a count could not be made (the peer unreachable, its credential refused).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub count_errors: Vec<String>,
}

/// A namespace of this cluster offloaded to the peer.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct OffloadedNamespace {
    /// The namespace here.
    pub namespace: String,
    /// Its twin in the peer.
    pub remote_namespace: String,
    /// The `Ready` condition of that twin (`True`, `False`, `Unknown`).
    pub ready: String,
}

/// Runs `liqoctl info peer`.
pub async fn info_peer(global: &GlobalArgs, args: InfoPeerArgs) -> Result<()> {
    let client = global.client().await?;
    let local_id = crate::peer::local_identity(&client).await?.cluster_id;
    let all = manifests::list_if_installed(
        &Api::<ForeignCluster>::all(client.clone()),
        "ForeignClusters",
    )
    .await?;
    let mut selected = Vec::new();
    for name in &args.names {
        match all.iter().find(|fc| &fc.name_any() == name) {
            Some(fc) => selected.push(fc),
            None => bail!(
                "ForeignCluster {name} not found: `kubectl get foreignclusters` lists the peerings"
            ),
        }
    }
    if args.names.is_empty() {
        selected = all.iter().collect();
    }
    if args.get.is_some() && selected.len() != 1 {
        bail!(
            "--get reads one peer's report, and {} peerings are selected: name one \
             (`liqoctl info peer NAME --get PATH`)",
            selected.len()
        );
    }
    // Read once for every report: each picks the offloadings that report on its peer.
    let offloadings = manifests::list_if_installed(
        &Api::<NamespaceOffloading>::all(client.clone()),
        "NamespaceOffloadings",
    )
    .await?;
    let mut reports = Vec::new();
    for fc in selected {
        reports.push(report(&client, &local_id, fc, &offloadings).await?);
    }
    if let Some(path) = &args.get {
        let value = serde_json::to_value(&reports[0])?;
        return print_field(&value, path, args.output, &reports[0].peering.name);
    }
    match args.output {
        Some(format) => print(&reports, format),
        None => {
            if reports.is_empty() {
                println!(
                    "No peerings: on a provider run `liqoctl generate peer-command`, then run its \
                     output here (or `liqoctl peer --remote-kubeconfig ...`)"
                );
            }
            for r in &reports {
                print_human(r);
            }
            Ok(())
        }
    }
}

/// The report of the peering `fc`: its conditions, role, labels, and what was offloaded and
/// reflected each way (a count that cannot be made is reported, not an error).
async fn report(
    client: &Client,
    local_id: &str,
    fc: &ForeignCluster,
    offloadings: &[NamespaceOffloading],
) -> Result<PeerReport> {
    let peering = peering_info(client, fc).await;
    let peer_id = fc.spec.cluster_id.clone();
    let role = fc
        .status
        .as_ref()
        .map(|s| format!("{:?}", s.role))
        .unwrap_or_else(|| "Unknown".into());
    let address_translation = format!(
        "{:?}",
        fc.spec
            .networking
            .as_ref()
            .map(|n| n.address_translation)
            .unwrap_or_default()
    );
    let mut count_errors = Vec::new();

    // Outgoing: the namespaces offloaded to the peer, and their copies there.
    let offloaded_namespaces = offloaded_to(offloadings, &peer_id);
    let mut reflected = BTreeMap::new();
    if !offloaded_namespaces.is_empty() {
        count_in_peer(
            client,
            fc,
            &offloaded_namespaces,
            local_id,
            &mut reflected,
            &mut count_errors,
        )
        .await;
    }

    // Incoming: the twin namespaces the peer has here, and what it wrote in them.
    let incoming_namespaces: Vec<String> = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default().labels(&format!(
            "{},{ORIGIN}={peer_id}",
            liqo_host::api::wire::TENANT_LABEL
        )))
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let mut reflected_here = BTreeMap::new();
    let twins: Vec<&str> = incoming_namespaces.iter().map(String::as_str).collect();
    if let Err(e) = count(client, &twins, &peer_id, local_id, &mut reflected_here).await {
        count_errors.push(format!("counting here: {e}"));
    }
    Ok(PeerReport {
        peering,
        role,
        address_translation,
        cluster_labels: cluster_labels(fc),
        offloaded_namespaces,
        incoming_namespaces,
        reflected,
        reflected_here,
        count_errors,
    })
}

/// This cluster's namespaces offloaded to the peer `peer_id`, with their twins there.
fn offloaded_to(offloadings: &[NamespaceOffloading], peer_id: &str) -> Vec<OffloadedNamespace> {
    let mut offloaded_namespaces = Vec::new();
    for o in offloadings {
        let Some(status) = &o.status else { continue };
        let Some(conditions) = status.remote_namespaces_conditions.get(peer_id) else {
            continue;
        };
        let ready = conditions
            .iter()
            .find(|c| c.type_ == RemoteNamespaceConditionType::Ready)
            .map(|c| c.status)
            .unwrap_or(ConditionStatus::Unknown);
        offloaded_namespaces.push(OffloadedNamespace {
            namespace: o.namespace().unwrap_or_default(),
            remote_namespace: status.remote_namespace_name.clone().unwrap_or_default(),
            ready: format!("{ready:?}"),
        });
    }
    offloaded_namespaces
}

/// Adds to `reflected` what this cluster reflected into the twins of `offloaded` in the peer
/// `fc` (read with the peering credential); a count that cannot be made goes to `errors`.
async fn count_in_peer(
    client: &Client,
    fc: &ForeignCluster,
    offloaded: &[OffloadedNamespace],
    local_id: &str,
    reflected: &mut BTreeMap<String, usize>,
    errors: &mut Vec<String>,
) {
    let peer_id = &fc.spec.cluster_id;
    match crate::plugin::diff::peer_client(client, fc).await {
        Ok(peer) => {
            let twins: Vec<&str> = offloaded
                .iter()
                .map(|n| n.remote_namespace.as_str())
                .filter(|n| !n.is_empty())
                .collect();
            if let Err(e) = count(&peer, &twins, local_id, peer_id, reflected).await {
                errors.push(format!("counting in {}: {e}", fc.name_any()));
            }
        }
        Err(e) => errors.push(format!("{e:#}")),
    }
}

/// The peer's cluster labels: those of its ForeignCluster's labels that the cluster-labels
/// annotation names.
fn cluster_labels(fc: &ForeignCluster) -> BTreeMap<String, String> {
    let managed = fc
        .annotations()
        .get(liqo_host::api::wire::CLUSTER_LABELS_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    managed
        .split(',')
        .filter_map(|k| fc.labels().get(k).map(|v| (k.to_string(), v.clone())))
        .collect()
}

/// Adds to `counts` the Services and EndpointSlices in `namespaces` of `client`'s cluster
/// that cluster `origin` reflected for cluster `destination` (their ownership labels).
async fn count(
    client: &Client,
    namespaces: &[&str],
    origin: &str,
    destination: &str,
    counts: &mut BTreeMap<String, usize>,
) -> kube::Result<()> {
    let owned = format!("{ORIGIN}={origin},{DESTINATION}={destination}");
    let params = ListParams::default().labels(&owned);
    // The peer's own EndpointSlice controller copies a reflected Service's labels onto the
    // (empty) slice it keeps for it: only the reflected slices carry this managed-by value.
    let slice_params = ListParams::default().labels(&format!(
        "{owned},{ENDPOINTSLICE_MANAGED_BY}={ENDPOINTSLICE_MANAGED_BY_REFLECTION}"
    ));
    for ns in namespaces {
        let services = Api::<Service>::namespaced(client.clone(), ns)
            .list_metadata(&params)
            .await?
            .items
            .len();
        let slices = Api::<EndpointSlice>::namespaced(client.clone(), ns)
            .list_metadata(&slice_params)
            .await?
            .items
            .len();
        *counts.entry("Service".into()).or_default() += services;
        *counts.entry("EndpointSlice".into()).or_default() += slices;
    }
    Ok(())
}

fn print_human(r: &PeerReport) {
    let p = &r.peering;
    println!("{} (cluster id {})", p.name, p.cluster_id);
    println!(
        "  role: {}, health: {} (outgoing {}, incoming {}, networking {}, authentication {}), age {}",
        r.role,
        p.health,
        p.outgoing_peering,
        p.incoming_peering,
        p.networking,
        p.authentication,
        p.age
    );
    match &p.gateway {
        Some(g) => println!(
            "  address translation: {} ({}'s gateway at {}, certificate fingerprint {})",
            r.address_translation, p.name, g.endpoint, g.fingerprint
        ),
        None => println!("  address translation: {}", r.address_translation),
    }
    if !r.cluster_labels.is_empty() {
        println!(
            "  cluster labels: {}",
            liqo_host::protocol::cluster_labels::render(&r.cluster_labels)
        );
    }
    let counts = |c: &BTreeMap<String, usize>| {
        c.iter()
            .map(|(kind, n)| format!("{n} {kind}{}", if *n == 1 { "" } else { "s" }))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !r.offloaded_namespaces.is_empty() {
        let list: Vec<String> = r
            .offloaded_namespaces
            .iter()
            .map(|n| {
                format!(
                    "{} -> {} (Ready {})",
                    n.namespace, n.remote_namespace, n.ready
                )
            })
            .collect();
        println!("  offloaded namespaces: {}", list.join(", "));
        println!("  reflected there: {}", counts(&r.reflected));
    }
    if !r.incoming_namespaces.is_empty() {
        println!(
            "  its namespaces here: {}; reflected here: {}",
            r.incoming_namespaces.join(", "),
            counts(&r.reflected_here)
        );
    }
    for problem in p.problems.iter().chain(&r.count_errors) {
        println!("  problem: {problem}");
    }
}
