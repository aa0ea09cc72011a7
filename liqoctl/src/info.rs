//! `liqoctl info`: this cluster's identity, whether the host is installed and running, and the
//! state of each peering.
//!
//! Credentials are never printed: a peering shows at most a fingerprint of its credential (the
//! first 12 hex digits of the SHA-256 of the Secret's token or kubeconfig), enough to tell two
//! credentials apart and useless to an attacker. The gateway shows its certificate's
//! fingerprint, which is public (peers pin it); its key is never read.

use anyhow::{Context as _, Result};
use clap::Args;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::{Client, ResourceExt};
use liqo_gateway::Fingerprint;
use liqo_host::api::foreign_cluster::{
    AddressTranslation, CREDENTIALS_KEY_KUBECONFIG, CREDENTIALS_KEY_TOKEN, GatewaySpec,
};
use liqo_host::api::gateway::{
    GATEWAY_CONFIGMAP, GATEWAY_CONFIGMAP_ENDPOINT_KEY, GATEWAY_CONFIGMAP_FINGERPRINT_KEY,
    GATEWAY_IDENTITY_CERT_KEY, GATEWAY_IDENTITY_SECRET,
};
use liqo_host::api::identity::{
    CLUSTER_IDENTITY_CONFIGMAP, CLUSTER_IDENTITY_NAMESPACE, ClusterIdentityConfig,
};
use liqo_host::api::wire;
use liqo_host::api::{ForeignCluster, PeeringConditionStatus, PeeringConditionType};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::context::GlobalArgs;
use crate::install::deployment_available;
use crate::install::manifests::{self, HOST_NAME, HOST_NAMESPACE};
use crate::output::{OutputFormat, print};

mod peer;

/// Flags of `liqoctl info`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct InfoArgs {
    #[command(subcommand)]
    pub command: Option<InfoCommand>,
    /// Output format (default: a human summary).
    #[arg(short, long, value_enum)]
    pub output: Option<OutputFormat>,
    /// Print one field of the report, by its dotted path (for example `host.status`,
    /// `clusterIdentity.clusterID`, `peerings.0.health`).
    #[arg(long, value_name = "PATH")]
    pub get: Option<String>,
}

/// `liqoctl info ...`.
#[derive(clap::Subcommand, Debug)]
pub enum InfoCommand {
    /// Report on peerings (Liqo v1): role, health, address translation, offloaded namespaces,
    /// objects reflected each way.
    Peer(peer::InfoPeerArgs),
}

/// Everything `liqoctl info` reports (the `-o json|yaml` document).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    /// This cluster's identity, absent when `liqoctl install` has not run.
    pub cluster_identity: Option<Identity>,
    /// The host: installed, deployed, running.
    pub host: HostInfo,
    /// This cluster's gateway: its identity and what the host announces.
    pub gateway: GatewayInfo,
    /// One entry per ForeignCluster, by name.
    pub peerings: Vec<PeeringInfo>,
    /// As a provider: what this cluster allows each consumer (`liqoctl install --peer-*`).
    pub peer_limits: PeerLimitsInfo,
    /// As a provider: one entry per peering identity (tenant namespace) made here.
    pub consumers: Vec<ConsumerInfo>,
}

/// What this cluster allows each consumer.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PeerLimitsInfo {
    /// Twin namespaces per consumer.
    pub max_namespaces_per_peer: usize,
    /// The ResourceQuota of every twin namespace.
    pub quota: std::collections::BTreeMap<String, String>,
    /// The Service types consumers may reflect here.
    pub service_types: Vec<String>,
}

/// One peering identity made by `liqoctl generate peer-command` on this cluster.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerInfo {
    /// The tenant namespace.
    pub tenant: String,
    /// The consumer cluster id that claimed it (empty: not claimed yet).
    #[serde(rename = "consumerID")]
    pub consumer_id: String,
    /// The twin namespaces made for it here.
    pub twin_namespaces: Vec<String>,
    /// Requests this cluster refused (`NAMESPACE: REASON: message`), e.g. over the limit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
    /// Where its EndpointSlices may point: the ranges it declared that this cluster accepted
    /// (a gateway peering points at this cluster's gateway instead).
    pub endpoint_ranges: Vec<String>,
    /// Declared ranges this cluster refused, each `CIDR: why`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused_endpoint_ranges: Vec<String>,
}

/// This cluster's gateway.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct GatewayInfo {
    /// SHA-256 fingerprint of the certificate in the Secret `liqo/liqo-gateway-identity`, when
    /// the Secret exists and is readable.
    pub identity_fingerprint: Option<String>,
    /// What the host announces in the ConfigMap `liqo/liqo-gateway` (absent: no gateway runs),
    /// as `generate peer-command` copies it into the peer command.
    pub announced: Option<AnnouncedGateway>,
}

/// The `data` of the ConfigMap `liqo/liqo-gateway`.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct AnnouncedGateway {
    /// The certificate fingerprint the host announces.
    pub fingerprint: String,
    /// `IP:PORT` where this cluster's clients reach the gateway.
    pub service_endpoint: String,
}

/// This cluster's identity, from the ConfigMap `liqo/liqo-clusterid-configmap`.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// The cluster id.
    #[serde(rename = "clusterID")]
    pub cluster_id: String,
    /// The display name.
    pub cluster_name: String,
}

/// Whether the host is installed and where it runs.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct HostInfo {
    /// Whether the CRDs and the identity ConfigMap are present.
    pub installed: bool,
    /// A one-line summary: `running in the cluster`, `running outside the cluster`, ...
    pub status: String,
    /// The host Deployment, when present.
    pub deployment: Option<DeploymentInfo>,
    /// The leader election Lease, when present.
    pub leader: Option<LeaderInfo>,
}

/// The host Deployment `liqo/liqo-host`.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentInfo {
    /// Desired replicas.
    pub replicas: i32,
    /// Ready replicas (only the leader is ready).
    pub ready_replicas: i32,
    /// Whether the latest spec is rolled out and available.
    pub available: bool,
}

/// The Lease `liqo/liqo-host`.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct LeaderInfo {
    /// The leading replica (a pod name, or host name and pid outside the cluster).
    pub holder: String,
    /// Seconds since the last renewal.
    pub renewed_seconds_ago: Option<i64>,
    /// Whether the lease is still valid (renewed within its duration).
    pub fresh: bool,
}

/// One peering.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PeeringInfo {
    /// The ForeignCluster's name.
    pub name: String,
    /// The peer's cluster id.
    #[serde(rename = "clusterID")]
    pub cluster_id: String,
    /// `OutgoingPeering` condition (this cluster reflects to the peer).
    pub outgoing_peering: String,
    /// `IncomingPeering` condition.
    pub incoming_peering: String,
    /// `NetworkStatus` condition.
    pub networking: String,
    /// `AuthenticationStatus` condition.
    pub authentication: String,
    /// `healthy`, `pending`, `unhealthy` or `inactive` (see [`health`]).
    pub health: String,
    /// Messages of the conditions that are not fine, to say why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Age of the ForeignCluster, like kubectl's AGE column.
    pub age: String,
    /// `sha256:<12 hex digits>` of the credential, when its Secret is readable.
    pub credential_fingerprint: Option<String>,
    /// With address translation `Gateway`: the peer's gateway this cluster pins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewaySpec>,
}

/// Runs `liqoctl info`.
pub async fn info(global: &GlobalArgs, args: InfoArgs) -> Result<()> {
    if let Some(InfoCommand::Peer(args)) = args.command {
        return peer::info_peer(global, args).await;
    }
    let client = global.client().await?;
    let info = collect(&client).await?;
    if let Some(path) = &args.get {
        let value = serde_json::to_value(&info)?;
        return crate::output::print_field(&value, path, args.output, "the report of liqoctl info");
    }
    match args.output {
        Some(format) => print(&info, format),
        None => {
            print_human(&info);
            Ok(())
        }
    }
}

/// Gathers the report. Missing objects (or a missing CRD) are reported, not errors.
async fn collect(client: &Client) -> Result<Info> {
    let cluster_identity = read_cluster_identity(client).await?;
    let crds_present = crds_present(client).await?;
    let deployment = host_deployment(client).await?;
    let leader = host_leader(client).await?;
    let installed = crds_present && cluster_identity.is_some();
    let status = host_status(installed, deployment.as_ref(), leader.as_ref());
    let gateway = gateway_info(client).await?;

    let fcs = manifests::list_if_installed(
        &Api::<ForeignCluster>::all(client.clone()),
        "ForeignClusters",
    )
    .await?;
    let mut peerings = Vec::new();
    for fc in &fcs {
        peerings.push(peering_info(client, fc).await);
    }
    let peer_limits = peer_limits(client).await?;
    let consumers = consumers(client).await?;

    Ok(Info {
        cluster_identity,
        host: HostInfo {
            installed,
            status,
            deployment,
            leader,
        },
        gateway,
        peerings,
        peer_limits,
        consumers,
    })
}

/// This cluster's identity, from its ConfigMap; `None` when there is none.
async fn read_cluster_identity(client: &Client) -> Result<Option<Identity>> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), CLUSTER_IDENTITY_NAMESPACE)
        .get_opt(CLUSTER_IDENTITY_CONFIGMAP)
        .await
        .with_context(|| {
            format!("reading ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{CLUSTER_IDENTITY_CONFIGMAP}")
        })?;
    let cluster_identity = match cm {
        Some(cm) => {
            let id = ClusterIdentityConfig::from_config_map(&cm)?;
            Some(Identity {
                cluster_id: id.cluster_id,
                cluster_name: id.cluster_name,
            })
        }
        None => None,
    };
    Ok(cluster_identity)
}

/// Whether every CRD of this project is present.
async fn crds_present(client: &Client) -> Result<bool> {
    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut crds_present = true;
    for crd in liqo_host::api::crds() {
        let name = crd.name_any();
        if crd_api
            .get_opt(&name)
            .await
            .with_context(|| format!("reading CustomResourceDefinition {name}"))?
            .is_none()
        {
            crds_present = false;
        }
    }
    Ok(crds_present)
}

/// The host Deployment's replicas and availability, when it exists.
async fn host_deployment(client: &Client) -> Result<Option<DeploymentInfo>> {
    Ok(
        Api::<Deployment>::namespaced(client.clone(), HOST_NAMESPACE)
            .get_opt(HOST_NAME)
            .await
            .with_context(|| format!("reading Deployment {HOST_NAMESPACE}/{HOST_NAME}"))?
            .map(|d| DeploymentInfo {
                replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                ready_replicas: d
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0),
                available: deployment_available(&d),
            }),
    )
}

/// The host's leader election Lease: who holds it and how fresh it is, when it exists.
async fn host_leader(client: &Client) -> Result<Option<LeaderInfo>> {
    Ok(Api::<Lease>::namespaced(client.clone(), HOST_NAMESPACE)
        .get_opt(HOST_NAME)
        .await
        .with_context(|| format!("reading Lease {HOST_NAMESPACE}/{HOST_NAME}"))?
        .map(|lease| LeaderInfo {
            fresh: lease_is_fresh(&lease),
            holder: lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default(),
            renewed_seconds_ago: lease
                .spec
                .as_ref()
                .and_then(|s| s.renew_time.as_ref())
                .map(|t| now_seconds() - t.0.as_second()),
        }))
}

/// What each consumer may do here as a provider, from the limits ConfigMap (the defaults when
/// it is absent).
async fn peer_limits(client: &Client) -> Result<PeerLimitsInfo> {
    let limits_cm = Api::<ConfigMap>::namespaced(client.clone(), CLUSTER_IDENTITY_NAMESPACE)
        .get_opt(liqo_host::api::wire::LIMITS_CONFIGMAP)
        .await
        .with_context(|| {
            format!(
                "reading ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{}",
                liqo_host::api::wire::LIMITS_CONFIGMAP
            )
        })?;
    let limits =
        liqo_host::protocol::limits::PeerLimits::from_data(limits_cm.and_then(|c| c.data).as_ref())
            .map_err(|e| {
                anyhow::anyhow!(
                    "ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{}: {e}; run `liqoctl install` again",
                    liqo_host::api::wire::LIMITS_CONFIGMAP
                )
            })?;
    Ok(PeerLimitsInfo {
        max_namespaces_per_peer: limits.max_namespaces,
        quota: limits.quota,
        service_types: limits.service_types,
    })
}

/// The peering identities made here, with their twin namespaces and refused requests.
async fn consumers(client: &Client) -> Result<Vec<ConsumerInfo>> {
    use liqo_host::api::namespace_map::{MappingPhase, NAMESPACE_MAP_NAME, NamespaceMap};
    use liqo_host::protocol::{self, identity};
    let tenants = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .list(
            &kube::api::ListParams::default()
                .labels(&format!("{}=true", wire::TENANT_NAMESPACE_LABEL)),
        )
        .await
        .context("listing tenant namespaces")?;
    let mut out = Vec::new();
    for ns in tenants
        .items
        .iter()
        .filter(|ns| identity::is_tenant_namespace(ns))
    {
        let name = ns.name_any();
        let consumer_id = Api::<Lease>::namespaced(client.clone(), &name)
            .get_opt(wire::LEASE_NAME)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .unwrap_or_default();
        let twin_namespaces = protocol::twin_namespaces(client, &name)
            .await
            .with_context(|| format!("listing the twin namespaces of {name}"))?;
        let refused = Api::<NamespaceMap>::namespaced(client.clone(), &name)
            .get_opt(NAMESPACE_MAP_NAME)
            .await
            .ok()
            .flatten()
            .and_then(|m| m.status)
            .map(|s| {
                s.current_mapping
                    .into_iter()
                    .filter(|(_, e)| e.phase == MappingPhase::CreationLoopBackOff)
                    .map(|(local, e)| {
                        format!(
                            "{local} -> {}: {}: {}",
                            e.remote_namespace, e.reason, e.message
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let recorded = |key: &str, separator: &str| -> Vec<String> {
            ns.annotations()
                .get(key)
                .map(|v| {
                    v.split(separator)
                        .map(str::trim)
                        .filter(|r| !r.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        out.push(ConsumerInfo {
            tenant: name,
            consumer_id,
            twin_namespaces,
            refused,
            endpoint_ranges: recorded(wire::RECORDED_RANGES_ANNOTATION, ","),
            refused_endpoint_ranges: recorded(wire::REFUSED_RANGES_ANNOTATION, ";"),
        });
    }
    Ok(out)
}

/// The gateway identity's fingerprint (best effort: info must work for users who may not read
/// Secrets) and the host's announcement.
async fn gateway_info(client: &Client) -> Result<GatewayInfo> {
    let identity_fingerprint =
        Api::<Secret>::namespaced(client.clone(), CLUSTER_IDENTITY_NAMESPACE)
            .get_opt(GATEWAY_IDENTITY_SECRET)
            .await
            .ok()
            .flatten()
            .and_then(|secret| certificate_fingerprint(&secret))
            .map(|f| f.to_string());
    let announced = Api::<ConfigMap>::namespaced(client.clone(), CLUSTER_IDENTITY_NAMESPACE)
        .get_opt(GATEWAY_CONFIGMAP)
        .await
        .with_context(|| {
            format!("reading ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{GATEWAY_CONFIGMAP}")
        })?
        .map(|cm| {
            let data = cm.data.unwrap_or_default();
            let get = |key: &str| data.get(key).cloned().unwrap_or_default();
            AnnouncedGateway {
                fingerprint: get(GATEWAY_CONFIGMAP_FINGERPRINT_KEY),
                service_endpoint: get(GATEWAY_CONFIGMAP_ENDPOINT_KEY),
            }
        });
    Ok(GatewayInfo {
        identity_fingerprint,
        announced,
    })
}

/// The fingerprint of the first certificate in a gateway identity Secret's `tls.crt`.
fn certificate_fingerprint(secret: &Secret) -> Option<Fingerprint> {
    let pem = secret.data.as_ref()?.get(GATEWAY_IDENTITY_CERT_KEY)?;
    let ders = crate::peer::input::pem_certificates(&String::from_utf8_lossy(&pem.0));
    ders.first().map(|der| Fingerprint::of_der(der))
}

fn host_status(
    installed: bool,
    deployment: Option<&DeploymentInfo>,
    leader: Option<&LeaderInfo>,
) -> String {
    let leading = leader.filter(|l| l.fresh && !l.holder.is_empty());
    match (deployment, leading) {
        (Some(d), _) if d.ready_replicas > 0 => format!(
            "running in the cluster (Deployment {HOST_NAMESPACE}/{HOST_NAME}, {}/{} ready)",
            d.ready_replicas, d.replicas
        ),
        // A leader that is not a ready pod of the Deployment runs elsewhere (`liqo-host run`).
        (_, Some(l)) => format!(
            "running outside the cluster (Lease {HOST_NAMESPACE}/{HOST_NAME} held by {})",
            l.holder
        ),
        (Some(d), None) => format!(
            "deployed, not ready (Deployment {HOST_NAMESPACE}/{HOST_NAME}, 0/{} ready): see \
             `kubectl -n {HOST_NAMESPACE} describe deployment {HOST_NAME}`",
            d.replicas
        ),
        (None, None) if installed => {
            "not running: deploy it with `liqoctl install`, or run `liqo-host run`".to_string()
        }
        (None, None) => "not installed: run `liqoctl install`".to_string(),
    }
}

/// Whether `lease` was renewed within its duration, i.e. a host leads right now.
pub fn lease_is_fresh(lease: &Lease) -> bool {
    let Some(spec) = &lease.spec else {
        return false;
    };
    match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(renewed), Some(duration)) => {
            renewed.0.as_second() + i64::from(duration) >= now_seconds()
        }
        _ => false,
    }
}

fn now_seconds() -> i64 {
    Timestamp::now().as_second()
}

async fn peering_info(client: &Client, fc: &ForeignCluster) -> PeeringInfo {
    let status = fc.status.clone().unwrap_or_default();
    let get = |t| status.condition_status(t);
    let mut problems = Vec::new();
    for condition in &status.peering_conditions {
        if matches!(
            condition.status,
            PeeringConditionStatus::Error | PeeringConditionStatus::Denied
        ) && !condition.message.is_empty()
        {
            problems.push(format!(
                "{}: {}",
                condition.type_.as_str(),
                condition.message
            ));
        }
    }
    let statuses: Vec<_> = PeeringConditionType::ALL.into_iter().map(get).collect();
    PeeringInfo {
        name: fc.name_any(),
        cluster_id: fc.spec.cluster_id.clone(),
        outgoing_peering: get(PeeringConditionType::OutgoingPeering)
            .as_str()
            .to_string(),
        incoming_peering: get(PeeringConditionType::IncomingPeering)
            .as_str()
            .to_string(),
        networking: get(PeeringConditionType::NetworkStatus)
            .as_str()
            .to_string(),
        authentication: get(PeeringConditionType::AuthenticationStatus)
            .as_str()
            .to_string(),
        health: health(&statuses).to_string(),
        problems,
        age: fc
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| age(now_seconds() - t.0.as_second()))
            .unwrap_or_default(),
        credential_fingerprint: fingerprint(client, fc).await,
        gateway: fc
            .spec
            .networking
            .as_ref()
            .filter(|n| n.address_translation == AddressTranslation::Gateway)
            .and_then(|n| n.gateway.clone()),
    }
}

/// The health of a peering from its condition statuses: `unhealthy` if any part failed or was
/// denied, `pending` while any part is being set up or torn down, `healthy` when objects flow
/// in a direction, `inactive` otherwise (for example the host has not looked at it yet).
pub fn health(statuses: &[PeeringConditionStatus]) -> &'static str {
    use PeeringConditionStatus as S;
    if statuses.iter().any(|s| matches!(s, S::Error | S::Denied)) {
        "unhealthy"
    } else if statuses
        .iter()
        .any(|s| matches!(s, S::Pending | S::Disconnecting))
    {
        "pending"
    } else if statuses.contains(&S::Established) {
        "healthy"
    } else {
        "inactive"
    }
}

/// `sha256:<12 hex>` of the credential the ForeignCluster's Secret holds (the token, else the
/// kubeconfig). `None` when there is no reference or the Secret cannot be read: info must work
/// for users who may not read Secrets.
async fn fingerprint(client: &Client, fc: &ForeignCluster) -> Option<String> {
    let reference = fc.spec.credentials_secret_ref.as_ref()?;
    let secret = Api::<Secret>::namespaced(client.clone(), &reference.namespace)
        .get_opt(&reference.name)
        .await
        .ok()??;
    let data = secret.data?;
    let credential = data
        .get(CREDENTIALS_KEY_TOKEN)
        .or_else(|| data.get(CREDENTIALS_KEY_KUBECONFIG))?;
    Some(fingerprint_of(&credential.0))
}

/// `sha256:` and the first 12 hex digits of the SHA-256 of `bytes`.
pub fn fingerprint_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("sha256:{}", &hex::encode(digest)[..12])
}

/// A duration in seconds the way kubectl's AGE column shows it (`45s`, `3m12s`, `5h`, `12d`).
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        format!("{m}m{}s", s % 60)
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        format!("{h}h{}m", m % 60)
    } else if h < 48 {
        format!("{h}h")
    } else {
        format!("{d}d")
    }
}

/// Prints the report for people: the cluster, the host, the gateway, the consumers and the
/// peerings.
fn print_human(info: &Info) {
    println!("Cluster");
    match &info.cluster_identity {
        Some(id) => {
            println!("  ID:    {}", id.cluster_id);
            println!("  Name:  {}", id.cluster_name);
        }
        None => println!(
            "  no identity (ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{CLUSTER_IDENTITY_CONFIGMAP} \
             not found): run `liqoctl install`"
        ),
    }
    println!("Host");
    println!(
        "  Installed:  {}",
        if info.host.installed { "yes" } else { "no" }
    );
    println!("  Status:     {}", info.host.status);
    println!("Gateway");
    for line in gateway_lines(&info.gateway) {
        println!("  {line}");
    }
    print_consumers(&info.consumers, &info.peer_limits);
    print_peerings(&info.peerings);
}

/// The consumers section: the limits, then each peering identity made here.
fn print_consumers(consumers: &[ConsumerInfo], limits: &PeerLimitsInfo) {
    println!("Consumers (peering identities made here)");
    println!(
        "  limits: {} twin namespaces each; quota {}; Service types {}",
        limits.max_namespaces_per_peer,
        limits
            .quota
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        limits.service_types.join(",")
    );
    if consumers.is_empty() {
        println!("  none");
    }
    for c in consumers {
        let who = if c.consumer_id.is_empty() {
            "not claimed yet".to_string()
        } else {
            format!("consumer {}", c.consumer_id)
        };
        println!(
            "  {}: {who}, {}/{} twin namespaces{}",
            c.tenant,
            c.twin_namespaces.len(),
            limits.max_namespaces_per_peer,
            if c.twin_namespaces.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.twin_namespaces.join(", "))
            }
        );
        if !c.consumer_id.is_empty() {
            println!(
                "    endpoint ranges: {}",
                if c.endpoint_ranges.is_empty() {
                    "none declared or accepted (its EndpointSlices may point nowhere, unless \
                     through the gateways)"
                        .to_string()
                } else {
                    c.endpoint_ranges.join(", ")
                }
            );
        }
        for r in &c.refused_endpoint_ranges {
            println!("    refused endpoint range: {r}");
        }
        for r in &c.refused {
            println!("    refused: {r}");
        }
    }
}

/// The peerings section: a table like kubectl's, then each peering's gateway and problems.
fn print_peerings(peerings: &[PeeringInfo]) {
    println!("Peerings");
    if peerings.is_empty() {
        println!(
            "  none: on a provider run `liqoctl generate peer-command`, then run its output here"
        );
        return;
    }
    let header = [
        "NAME",
        "CLUSTER ID",
        "OUTGOING PEERING",
        "INCOMING PEERING",
        "NETWORKING",
        "AUTHENTICATION",
        "AGE",
        "HEALTH",
        "CREDENTIAL",
    ];
    let rows: Vec<[String; 9]> = peerings
        .iter()
        .map(|p| {
            [
                p.name.clone(),
                p.cluster_id.clone(),
                p.outgoing_peering.clone(),
                p.incoming_peering.clone(),
                p.networking.clone(),
                p.authentication.clone(),
                p.age.clone(),
                p.health.clone(),
                p.credential_fingerprint
                    .clone()
                    .unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("  {}", padded.join("   ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    for p in peerings {
        if let Some(gateway) = &p.gateway {
            println!(
                "  {}: through the gateways ({}'s at {}, certificate fingerprint {})",
                p.name, p.name, gateway.endpoint, gateway.fingerprint
            );
        }
        for problem in &p.problems {
            println!("  {}: {problem}", p.name);
        }
    }
}

/// The human lines of the gateway section.
fn gateway_lines(gateway: &GatewayInfo) -> Vec<String> {
    let mut lines = vec![match &gateway.identity_fingerprint {
        Some(f) => format!(
            "Identity:   Secret {CLUSTER_IDENTITY_NAMESPACE}/{GATEWAY_IDENTITY_SECRET}, certificate \
             fingerprint {f}"
        ),
        None => format!(
            "Identity:   none readable (Secret {CLUSTER_IDENTITY_NAMESPACE}/\
             {GATEWAY_IDENTITY_SECRET}): `liqoctl install` creates it"
        ),
    }];
    match &gateway.announced {
        Some(a) => {
            lines.push(format!(
                "Announced:  {} (ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{GATEWAY_CONFIGMAP}), \
                 fingerprint {}",
                a.service_endpoint, a.fingerprint
            ));
            // The host announces what it loaded; a Secret replaced since then is not in use yet.
            let announced = a.fingerprint.parse::<Fingerprint>().ok();
            if let Some(f) = &gateway.identity_fingerprint
                && announced.map(|a| a.to_string()).as_ref() != Some(f)
            {
                lines.push(
                    "note: the announced fingerprint is not the identity Secret's: the host has \
                     not loaded the current Secret (restart it; peers that pinned the old \
                     fingerprint must peer again)"
                        .to_string(),
                );
            }
        }
        None => lines.push(format!(
            "Announced:  no (ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{GATEWAY_CONFIGMAP} not found: \
             no gateway runs here); peer commands from this cluster use address translation Identity"
        )),
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use PeeringConditionStatus as S;

    #[test]
    fn health_from_conditions() {
        assert_eq!(health(&[S::None; 5]), "inactive");
        assert_eq!(
            health(&[
                S::Established,
                S::None,
                S::None,
                S::Established,
                S::Established
            ]),
            "healthy"
        );
        assert_eq!(health(&[S::Pending, S::None]), "pending");
        assert_eq!(health(&[S::Established, S::Denied]), "unhealthy");
    }

    #[test]
    fn ages_like_kubectl() {
        assert_eq!(age(-3), "0s");
        assert_eq!(age(45), "45s");
        assert_eq!(age(192), "3m12s");
        assert_eq!(age(1500), "25m");
        assert_eq!(age(4 * 3600 + 120), "4h2m");
        assert_eq!(age(20 * 3600), "20h");
        assert_eq!(age(5 * 86400), "5d");
    }

    #[test]
    fn fingerprints_hide_the_credential() {
        let f = fingerprint_of(b"secret-token");
        assert!(f.starts_with("sha256:"));
        assert_eq!(f.len(), "sha256:".len() + 12);
        assert!(!f.contains("secret"));
        assert_eq!(f, fingerprint_of(b"secret-token"));
        assert_ne!(f, fingerprint_of(b"other-token"));
    }

    #[test]
    fn gateway_section() {
        let fp = "ab".repeat(32);
        let lines = gateway_lines(&GatewayInfo {
            identity_fingerprint: None,
            announced: None,
        });
        assert!(lines[0].contains("liqoctl install"), "{lines:?}");
        assert!(lines[1].contains("Identity"), "{lines:?}");
        let same = gateway_lines(&GatewayInfo {
            identity_fingerprint: Some(fp.clone()),
            announced: Some(AnnouncedGateway {
                fingerprint: fp.to_uppercase(),
                service_endpoint: "10.96.0.50:7901".into(),
            }),
        });
        assert_eq!(same.len(), 2, "{same:?}");
        assert!(same[1].contains("10.96.0.50:7901"), "{same:?}");
        let other = gateway_lines(&GatewayInfo {
            identity_fingerprint: Some(fp),
            announced: Some(AnnouncedGateway {
                fingerprint: "cd".repeat(32),
                service_endpoint: "10.96.0.50:7901".into(),
            }),
        });
        assert!(other[2].contains("restart"), "{other:?}");
    }

    #[test]
    fn the_identity_fingerprint_is_the_certificates() {
        use k8s_openapi::ByteString;
        let identity = liqo_gateway::Identity::generate("london").unwrap();
        let secret = Secret {
            data: Some(
                [(
                    "tls.crt".to_string(),
                    ByteString(identity.cert_pem().as_bytes().to_vec()),
                )]
                .into(),
            ),
            ..Secret::default()
        };
        assert_eq!(
            certificate_fingerprint(&secret),
            Some(identity.fingerprint())
        );
        assert_eq!(certificate_fingerprint(&Secret::default()), None);
    }

    #[test]
    fn host_status_prefers_a_ready_deployment() {
        let ready = DeploymentInfo {
            replicas: 1,
            ready_replicas: 1,
            available: true,
        };
        let fresh = LeaderInfo {
            holder: "laptop-42".into(),
            renewed_seconds_ago: Some(1),
            fresh: true,
        };
        assert!(host_status(true, Some(&ready), Some(&fresh)).starts_with("running in the"));
        assert!(host_status(true, None, Some(&fresh)).contains("outside the cluster"));
        assert!(host_status(true, None, None).starts_with("not running"));
        assert!(host_status(false, None, None).starts_with("not installed"));
    }
}
