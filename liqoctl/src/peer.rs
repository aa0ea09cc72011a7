//! `liqoctl generate peer-command`, `liqoctl peer out-of-band`, `liqoctl unpeer out-of-band`.
//!
//! - `generate peer-command` runs against the provider. It creates a least-privilege identity
//!   for a future consumer (see [`liqo_host::protocol`] and `deploy/peering/`): a tenant namespace
//!   with a ServiceAccount, its Lease, its bindings, and a bound token that expires (`--ttl`).
//!   It prints the command the consumer runs; the token appears nowhere else. When the
//!   provider's host announces a gateway (ConfigMap `liqo/liqo-gateway`), the command also
//!   carries the gateway's certificate fingerprint and service endpoint (public, not secret).
//! - `peer out-of-band` runs against the consumer. It checks everything it can before writing
//!   (input, then the provider answering with that CA and token), claims the identity on the
//!   provider, creates the credential Secret and the ForeignCluster (with the provider's gateway
//!   in `spec.networking` when the command carries one), and waits for the host.
//! - `unpeer out-of-band` runs against the consumer: it refuses while namespaces are offloaded
//!   to the peer (unless `--force`), deletes the ForeignCluster (the host releases the Lease, so
//!   the provider revokes the identity) and the credential Secret.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Subcommand;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use liqo_host::api::foreign_cluster::{
    AddressTranslation, CREDENTIALS_KEY_CA, CREDENTIALS_KEY_SERVER, CREDENTIALS_KEY_TOKEN,
    ForeignCluster, GatewaySpec, NetworkingSpec, PeeringConditionStatus, PeeringConditionType,
};
use liqo_host::api::gateway::GATEWAY_CONFIGMAP;
use liqo_host::api::identity::{
    CLUSTER_IDENTITY_CONFIGMAP, CLUSTER_IDENTITY_NAMESPACE, ClusterIdentityConfig, IdentityError,
};
use liqo_host::api::namespace_offloading::{NamespaceOffloading, RemoteNamespaceConditionType};
use liqo_host::api::wire;
use liqo_host::api::wire::LIQOCTL_FIELD_MANAGER;
use liqo_host::protocol::endpoint_ranges;
use liqo_host::protocol::{self, identity, lease};
use serde::Deserialize as _;
use serde_json::json;

use crate::context::GlobalArgs;
use crate::install::manifests::is_not_found;
use crate::progress::Spinner;
use liqo_gateway::duration::parse_duration;

pub(crate) mod input;
pub(crate) mod peering_user;
pub(crate) mod remote;
use input as peering;

/// Label on the credential Secrets liqoctl creates (value `true`), so unpeer deletes only those.
const CREDENTIALS_LABEL: &str = "liqo.io/peering-credentials";
/// Label on a credential Secret: the provider's cluster id.
const REMOTE_ID_LABEL: &str = "liqo.io/remote-cluster-id";
/// Key of the cluster-scoped peering manifests, applied by `generate peer-command`.
const MANIFESTS: [(&str, &str); 2] = [
    (
        "deploy/peering/clusterrole.yaml",
        include_str!("../../deploy/peering/clusterrole.yaml"),
    ),
    (
        "deploy/peering/policies.yaml",
        include_str!("../../deploy/peering/policies.yaml"),
    ),
];
/// The API server refuses bound tokens shorter than 10 minutes.
const MIN_TTL: Duration = Duration::from_secs(600);

/// `liqoctl generate ...`.
#[derive(Subcommand, Debug)]
pub enum GenerateCommand {
    /// Print the command a consumer runs to peer with this (provider) cluster.
    ///
    /// Creates, in this cluster, a least-privilege identity for the consumer: a tenant namespace
    /// `liqo-tenant-*` with a ServiceAccount that holds no cluster-wide right. It may renew its
    /// Lease, ask for twin namespaces through its NamespaceMap (this cluster's host creates them,
    /// within --peer-namespace-limit, each with a ResourceQuota) and write the reflected kinds
    /// inside them only (RBAC in deploy/peering/clusterrole.yaml, narrowed by the
    /// ValidatingAdmissionPolicies in deploy/peering/policies.yaml, both applied here; see
    /// docs/security.md). The printed command carries a token of that identity: treat it as a
    /// secret. It expires after --ttl unless used; once used, the
    /// consumer's host keeps the identity alive, and this cluster's host revokes it when the
    /// consumer stops (see `liqo-host run --peering-revocation-grace`).
    ///
    /// When this cluster's host runs a gateway, it announces it in ConfigMap liqo/liqo-gateway,
    /// and the command also carries --gateway-fingerprint (SHA-256 of the gateway's certificate)
    /// and --gateway-endpoint (IP:PORT where this cluster's clients reach the gateway): traffic
    /// to the consumer's Services then goes through the gateways. Both are public. Without that
    /// ConfigMap the peering uses address translation Identity (a note says so on stderr).
    #[command(verbatim_doc_comment)]
    PeerCommand {
        /// Print only the command, so `echo "$PEER" | bash` works.
        #[arg(long)]
        only_command: bool,
        /// How long the command can be used (at least 10m): `24h`, `90m`, ...
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        ttl: Duration,
        /// The consumer's cluster id, if known: only that cluster can then use the command, and
        /// no other peer command can claim that id. Without it, the first cluster that runs the
        /// command owns the identity (an id another peering holds is refused).
        #[arg(long)]
        consumer: Option<String>,
        /// The API server URL the consumer should use (default: the server of the kubeconfig).
        #[arg(long)]
        api_server_url: Option<String>,
        /// IP:PORT where this cluster's clients reach its gateway (default: the serviceEndpoint
        /// the host announces in ConfigMap liqo/liqo-gateway). Reflected EndpointSlices point
        /// there, so it must be reachable from this cluster's pods.
        #[arg(long, value_name = "IP:PORT")]
        gateway_endpoint: Option<String>,
    },
    /// Print a kubeconfig of a peering identity for one consumer (Liqo v1).
    ///
    /// Makes the same least-privilege identity as `peer-command`, bound to
    /// --consumer-cluster-id (no other cluster can claim it), and prints it as a kubeconfig:
    /// this cluster's API server, its CA, the identity's token, and (in a context extension)
    /// this cluster's id and gateway. The consumer's admin peers with it:
    ///
    ///   liqoctl generate peering-user --consumer-cluster-id london > peering-user.yaml
    ///   liqoctl peer --remote-kubeconfig peering-user.yaml      # against london
    ///
    /// It carries a credential: share it only with the consumer's administrator.
    #[command(verbatim_doc_comment)]
    PeeringUser {
        /// The consumer's cluster id (required: the identity is bound to it).
        #[arg(long, value_name = "ID")]
        consumer_cluster_id: String,
        /// How long the token can be used (at least 10m); once used, the consumer's host
        /// replaces it before it expires.
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        ttl: Duration,
        /// The API server URL the consumer should use (default: the server of the kubeconfig).
        #[arg(long)]
        api_server_url: Option<String>,
    },
}

/// `liqoctl peer ...`: Liqo v1's form (`--remote-kubeconfig`, see [`remote`]) or v0's
/// `out-of-band` subcommand.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PeerArgs {
    #[command(subcommand)]
    pub out_of_band: Option<PeerCommand>,
    #[command(flatten)]
    pub remote: remote::RemotePeerArgs,
}

/// `liqoctl peer out-of-band ...`.
#[derive(Subcommand, Debug)]
pub enum PeerCommand {
    /// Peer using the credentials printed by `liqoctl generate peer-command`.
    ///
    /// Claims the peering identity on the provider, declaring where this cluster's endpoints
    /// are (its Nodes' pod ranges; nothing through the gateways): the provider lets the
    /// reflected EndpointSlices point nowhere else. The host keeps the declaration current
    /// (new nodes; with spec.networking.addressTranslation CidrRemap, the remoteCIDRs).
    OutOfBand(OutOfBandArgs),
}

/// The flags of `liqoctl peer out-of-band`: what `liqoctl generate peer-command` prints.
#[derive(clap::Args, Debug)]
pub struct OutOfBandArgs {
    /// Name of the provider cluster (names the ForeignCluster).
    pub name: String,
    /// URL of the provider's API server.
    #[arg(long)]
    pub api_server_url: String,
    /// Base64 CA bundle of the provider's API server.
    #[arg(long)]
    pub ca_data: String,
    /// The provider's cluster id.
    #[arg(long)]
    pub cluster_id: String,
    /// The peering token.
    #[arg(long)]
    pub token: String,
    /// SHA-256 fingerprint of the provider gateway's certificate (64 hex digits): the only
    /// certificate this cluster's gateway accepts from it. Needs --gateway-endpoint.
    #[arg(long, value_name = "HEX")]
    pub gateway_fingerprint: Option<String>,
    /// IP:PORT inside the provider where its gateway accepts connections for the Services
    /// reflected there. Needs --gateway-fingerprint. With both, traffic to this cluster's
    /// Services goes through the gateways (spec.networking.addressTranslation Gateway);
    /// without them, addresses are used unchanged (Identity).
    #[arg(long, value_name = "IP:PORT")]
    pub gateway_endpoint: Option<String>,
    /// How long to wait for the host to establish the peering.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `liqoctl unpeer ...`: Liqo v1's form (`--remote-kubeconfig`, see [`remote`]) or v0's
/// `out-of-band` subcommand.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct UnpeerArgs {
    #[command(subcommand)]
    pub out_of_band: Option<UnpeerCommand>,
    #[command(flatten)]
    pub remote: remote::RemoteUnpeerArgs,
}

/// `liqoctl unpeer out-of-band ...`.
#[derive(Subcommand, Debug)]
pub enum UnpeerCommand {
    /// Remove an out-of-band peering.
    OutOfBand(UnpeerOutOfBandArgs),
}

/// The flags of `liqoctl unpeer out-of-band`.
#[derive(clap::Args, Debug)]
pub struct UnpeerOutOfBandArgs {
    /// Name of the provider cluster.
    pub name: String,
    /// Unpeer even while namespaces are offloaded to the provider (their twin namespaces
    /// there are deleted when the provider revokes the identity).
    #[arg(long)]
    pub force: bool,
    /// How long to wait for the host to remove the peering.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Runs `liqoctl generate ...`.
pub async fn generate(global: &GlobalArgs, cmd: GenerateCommand) -> Result<()> {
    let (only_command, ttl, consumer, api_server_url, gateway_endpoint) = match cmd {
        GenerateCommand::PeerCommand {
            only_command,
            ttl,
            consumer,
            api_server_url,
            gateway_endpoint,
        } => (
            only_command,
            ttl,
            consumer,
            api_server_url,
            gateway_endpoint,
        ),
        GenerateCommand::PeeringUser {
            consumer_cluster_id,
            ttl,
            api_server_url,
        } => return generate_peering_user(global, consumer_cluster_id, ttl, api_server_url).await,
    };
    if ttl < MIN_TTL {
        bail!("--ttl {ttl:?} is too short: the API server issues tokens for at least 10m");
    }
    if let Some(id) = &consumer {
        peering::check_cluster_id(id).map_err(|_| {
            anyhow!("--consumer {id:?} is not a valid cluster id (a label value, e.g. london)")
        })?;
    }
    let endpoint_override = gateway_endpoint
        .as_deref()
        .map(peering::check_gateway_endpoint)
        .transpose()?;
    let config = global.config().await?;
    let client = global.client().await?;
    let made = make_identity(
        &client,
        &config,
        consumer.as_deref(),
        ttl,
        api_server_url,
        endpoint_override,
    )
    .await?;
    print_peer_command(made, only_command);
    Ok(())
}

/// Prints the peer command for `made` (with `only_command`, nothing else on stdout), and a note
/// on stderr when no gateway is announced.
fn print_peer_command(made: MadeIdentity, only_command: bool) {
    let MadeIdentity {
        identity,
        name,
        url,
        ca_pem: ca,
        token,
        gateway,
        tenant,
        expires,
    } = made;
    let command = peering::peer_command(
        &name,
        &url,
        &ca,
        &identity.cluster_id,
        &token,
        gateway.as_ref(),
    );
    // A note, not part of the command: on stderr, so `--only-command | bash` still works.
    if gateway.is_none() {
        eprintln!(
            "note: this cluster announces no gateway (ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/\
             {GATEWAY_CONFIGMAP} not found: no gateway runs here), so the peering will use \
             address translation Identity"
        );
    }
    if only_command {
        println!("{command}");
    } else {
        println!(
            "Run this command against the consumer cluster to peer it with {name} (cluster id {}).\n\
             It carries a credential: share it only with the consumer's administrator.\n\
             It can be used until {expires}; the identity lives in namespace {tenant} of this cluster.",
            identity.cluster_id
        );
        if let Some(gateway) = &gateway {
            println!(
                "Traffic to the consumer's Services will go through this cluster's gateway at {} \
                 (certificate fingerprint {}).",
                gateway.endpoint, gateway.fingerprint
            );
        }
        println!();
        println!("{command}");
    }
}

/// Runs `liqoctl generate peering-user`.
async fn generate_peering_user(
    global: &GlobalArgs,
    consumer: String,
    ttl: Duration,
    api_server_url: Option<String>,
) -> Result<()> {
    if ttl < MIN_TTL {
        bail!("--ttl {ttl:?} is too short: the API server issues tokens for at least 10m");
    }
    peering::check_cluster_id(&consumer).map_err(|_| {
        anyhow!(
            "--consumer-cluster-id {consumer:?} is not a valid cluster id (a label value, e.g. london)"
        )
    })?;
    let config = global.config().await?;
    let client = global.client().await?;
    let made = make_identity(&client, &config, Some(&consumer), ttl, api_server_url, None).await?;
    let kubeconfig = peering_user::kubeconfig(&made, &consumer)?;
    eprintln!(
        "note: this kubeconfig carries a credential of {consumer}'s peering identity (tenant \
         namespace {}, usable until {}): share it only with {consumer}'s administrator",
        made.tenant, made.expires
    );
    print!("{}", serde_yaml_ng::to_string(&kubeconfig)?);
    Ok(())
}

/// A peering identity made on a provider: what a peer command carries.
pub(crate) struct MadeIdentity {
    /// The provider's identity.
    pub identity: ClusterIdentityConfig,
    /// The name the consumer gives the provider's ForeignCluster.
    pub name: String,
    /// The provider's API server URL, as the consumer uses it.
    pub url: String,
    /// The provider's CA bundle (PEM).
    pub ca_pem: String,
    /// The identity's token (a secret).
    pub token: String,
    /// The provider's gateway, when it runs one.
    pub gateway: Option<peering::GatewayFlags>,
    /// The tenant namespace of the identity.
    pub tenant: String,
    /// Until when the token can be used.
    pub expires: Timestamp,
}

/// Makes a peering identity on the provider `client` (`config` is its client configuration,
/// for the URL and CA the consumer will use): applies the peering RBAC and policies, then the
/// tenant (see [`tenant::provision`]), bound to `consumer` when given.
pub(crate) async fn make_identity(
    client: &Client,
    config: &kube::Config,
    consumer: Option<&str>,
    ttl: Duration,
    api_server_url: Option<String>,
    endpoint_override: Option<std::net::SocketAddr>,
) -> Result<MadeIdentity> {
    let identity = local_identity(client).await?;
    // Before anything is created: a gateway that cannot be announced fails the command.
    let gateway = local_gateway(client, endpoint_override).await?;
    let url = match api_server_url {
        Some(url) => peering::check_url(&url)?,
        None => peering::check_url(&config.cluster_url.to_string()).with_context(
            || "the kubeconfig's server cannot be used by a consumer; pass --api-server-url",
        )?,
    };
    let ca_pem = match &config.root_cert {
        Some(ders) if !ders.is_empty() => peering::der_to_pem(ders),
        _ => bail!(
            "the kubeconfig has no certificate-authority for this cluster, and the peer command \
             must carry one: use a kubeconfig with certificate-authority-data"
        ),
    };

    apply_manifests(client).await?;
    let expires =
        Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(ttl.as_secs() as i64);
    if let Some(id) = consumer {
        ensure_id_unbound(client, id).await?;
    }
    let endpoint = gateway.as_ref().map(|g| g.endpoint.to_string());
    let protocol::Provisioned { tenant, token } = protocol::provision(
        client,
        &identity.cluster_id,
        consumer,
        ttl,
        endpoint.as_deref(),
    )
    .await?;
    let name = peering::peering_name(&identity.cluster_name, &identity.cluster_id);
    Ok(MadeIdentity {
        identity,
        name,
        url,
        ca_pem,
        token,
        gateway,
        tenant,
        expires,
    })
}

/// What the peer command announces about this cluster's gateway: the host's ConfigMap, with
/// its endpoint replaced by `--gateway-endpoint`. `None` when no gateway runs here.
async fn local_gateway(
    client: &Client,
    endpoint_override: Option<std::net::SocketAddr>,
) -> Result<Option<peering::GatewayFlags>> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), CLUSTER_IDENTITY_NAMESPACE)
        .get_opt(GATEWAY_CONFIGMAP)
        .await
        .with_context(|| {
            format!("reading ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{GATEWAY_CONFIGMAP}")
        })?;
    let data = cm.map(|cm| cm.data.unwrap_or_default());
    Ok(peering::gateway_announcement(
        data.as_ref(),
        endpoint_override,
    )?)
}

/// Runs `liqoctl peer ...`.
pub async fn peer(global: &GlobalArgs, args: PeerArgs) -> Result<()> {
    match args.out_of_band {
        Some(PeerCommand::OutOfBand(args)) => peer_out_of_band(global, args).await,
        None => remote::peer(global, args.remote).await,
    }
}

/// Runs `liqoctl peer out-of-band ...` (also the last step of the v1 form).
pub(crate) async fn peer_out_of_band(global: &GlobalArgs, args: OutOfBandArgs) -> Result<()> {
    let CheckedPeerCommand {
        name,
        cluster_id,
        url,
        ca_pem,
        token,
        gateway,
        timeout,
    } = check_peer_command(args)?;

    let client = global.client().await?;
    let local = local_identity(&client).await?;
    let repeer = check_local_cluster(&client, &local, &name, &cluster_id).await?;

    // The provider must answer with this CA and token before anything is written.
    let spinner = Spinner::start(format!("Checking the provider at {url}"));
    let (provider, tenant) =
        match reach_provider(&url, &ca_pem, &token, &name, &local.cluster_id).await {
            Ok(reached) => reached,
            Err((failure, err)) => {
                spinner.fail(failure);
                return Err(err);
            }
        };
    spinner.set_message(format!("Claiming the peering identity on {name}"));
    let claimed = claim_identity(
        &client,
        &provider,
        &tenant,
        &local.cluster_id,
        gateway.is_some(),
    )
    .await;
    if let Err(err) = claimed {
        spinner.fail("the provider refused the claim");
        return Err(anyhow!(
            "{name} refused to let this cluster ({}) claim the peering identity in {tenant}: {err}",
            local.cluster_id
        ));
    }

    spinner.set_message(format!("Creating ForeignCluster {name}"));
    let secret_name = format!("liqo-peering-{name}");
    if let Err(err) = create_peering(
        &client,
        &name,
        &cluster_id,
        &secret_name,
        [
            (CREDENTIALS_KEY_TOKEN, token.as_str()),
            (CREDENTIALS_KEY_CA, ca_pem.as_str()),
            (CREDENTIALS_KEY_SERVER, url.as_str()),
            (wire::CREDENTIALS_KEY_TENANT, tenant.as_str()),
        ],
        gateway.as_ref(),
        repeer,
    )
    .await
    {
        spinner.fail("could not create the peering");
        rollback(&client, &name, &secret_name, repeer).await;
        return Err(err);
    }

    spinner.set_message(format!(
        "Waiting for the host to establish the peering with {name}"
    ));
    let fcs: Api<ForeignCluster> = Api::all(client.clone());
    match wait_established(&fcs, &name, timeout).await {
        Ok(()) => {
            spinner.success(format!("Peered with {name} (cluster id {cluster_id})"));
            print_peered(&name, gateway.as_ref());
            Ok(())
        }
        Err(err) => {
            spinner.fail(format!("the peering with {name} was not established"));
            rollback(&client, &name, &secret_name, repeer).await;
            Err(err)
        }
    }
}

/// The flags of `peer out-of-band`, checked.
struct CheckedPeerCommand {
    name: String,
    cluster_id: String,
    url: String,
    ca_pem: String,
    token: String,
    gateway: Option<peering::GatewayFlags>,
    timeout: Duration,
}

/// Checks the input of `peer out-of-band` first: nothing is contacted with a malformed command.
fn check_peer_command(args: OutOfBandArgs) -> Result<CheckedPeerCommand> {
    let OutOfBandArgs {
        name,
        api_server_url,
        ca_data,
        cluster_id,
        token,
        gateway_fingerprint,
        gateway_endpoint,
        timeout,
    } = args;
    peering::check_name(&name)?;
    peering::check_cluster_id(&cluster_id)?;
    let url = peering::check_url(&api_server_url)?;
    let (ca_pem, _) = peering::decode_ca(&ca_data)?;
    let token = token.trim().to_string();
    peering::check_token(&token, Timestamp::now().as_second())?;
    let gateway =
        peering::check_gateway(gateway_fingerprint.as_deref(), gateway_endpoint.as_deref())?;
    Ok(CheckedPeerCommand {
        name,
        cluster_id,
        url,
        ca_pem,
        token,
        gateway,
        timeout,
    })
}

/// Reaches the provider with the command's CA and token and checks that it accepts this
/// peering; returns the provider's client and the tenant namespace, or the spinner's failure
/// line with the error.
async fn reach_provider(
    url: &str,
    ca_pem: &str,
    token: &str,
    name: &str,
    local_id: &str,
) -> Result<(Client, String), (&'static str, anyhow::Error)> {
    let provider = provider_client(url, ca_pem, token)
        .await
        .map_err(|err| ("the provider cannot be used", err))?;
    let tenant = check_provider(&provider, url, name, local_id)
        .await
        .map_err(|err| ("the provider refused the peering", err))?;
    Ok((provider, tenant))
}

/// Checks this (consumer) cluster before the provider is contacted: the id is not its own, the
/// name and the id are not peered under another id or name, and liqo is installed. Returns
/// whether this is a re-peering (a ForeignCluster of this name and id exists).
async fn check_local_cluster(
    client: &Client,
    local: &ClusterIdentityConfig,
    name: &str,
    cluster_id: &str,
) -> Result<bool> {
    if cluster_id == local.cluster_id {
        bail!(
            "--cluster-id {cluster_id} is this cluster's own id: run the peer command against the \
             consumer cluster, not the provider"
        );
    }
    let fcs: Api<ForeignCluster> = Api::all(client.clone());
    let existing = fcs
        .list(&ListParams::default())
        .await
        .context("listing ForeignClusters (are the liqo CRDs installed? run `liqoctl install`)")?;
    if let Some(other) = existing
        .items
        .iter()
        .find(|f| f.name_any() == name && f.spec.cluster_id != cluster_id)
    {
        bail!(
            "ForeignCluster {name} already exists for cluster id {}: choose another name, or run \
             `liqoctl unpeer out-of-band {name}` first",
            other.spec.cluster_id
        );
    }
    if let Some(other) = existing
        .items
        .iter()
        .find(|f| f.name_any() != name && f.spec.cluster_id == cluster_id)
    {
        bail!(
            "cluster {cluster_id} is already peered as ForeignCluster {}: run `liqoctl unpeer \
             out-of-band {}` first, or peer again under that name",
            other.name_any(),
            other.name_any()
        );
    }
    let repeer = existing.items.iter().any(|f| f.name_any() == name);
    if Api::<Namespace>::all(client.clone())
        .get_opt(CLUSTER_IDENTITY_NAMESPACE)
        .await?
        .is_none()
    {
        bail!(
            "namespace {CLUSTER_IDENTITY_NAMESPACE} not found in this cluster: run `liqoctl install`"
        );
    }
    Ok(repeer)
}

/// Claims the peering identity in `tenant` on the provider (its Lease), declaring this
/// cluster's pod ranges when no gateway is used.
async fn claim_identity(
    client: &Client,
    provider: &Client,
    tenant: &str,
    local_cluster_id: &str,
    through_gateway: bool,
) -> kube::Result<Lease> {
    // The claim declares where this cluster's endpoints are (its pod ranges; nothing through
    // the gateways): the provider lets its EndpointSlices point nowhere else. The host keeps
    // the declaration current at every renewal (a new node's range, a CidrRemap edit).
    let declared = if through_gateway {
        None
    } else {
        // Not fatal: the host declares them at its first renewal (and says why it cannot).
        endpoint_ranges::local_pod_ranges(client)
            .await
            .ok()
            .and_then(|pods| endpoint_ranges::declaration(None, &pods))
    };
    let declared = declared.filter(|d| d.len() <= endpoint_ranges::MAX_DECLARATION_LEN);
    match declared {
        Some(ranges) => {
            match lease::renew_lease_announcing(
                provider,
                tenant,
                local_cluster_id,
                endpoint_ranges::lease_annotation(Some(&ranges)),
            )
            .await
            {
                // A provider older than declarations refuses the annotation (and does not
                // need it): claim without it.
                Err(kube::Error::Api(s))
                    if s.code == 422 && s.message.contains(lease::LEASE_ANNOTATIONS_REFUSED) =>
                {
                    lease::renew_lease(provider, tenant, local_cluster_id).await
                }
                other => other,
            }
        }
        None => lease::renew_lease(provider, tenant, local_cluster_id).await,
    }
}

/// What to know and do after a peering is established, on stdout.
fn print_peered(name: &str, gateway: Option<&peering::GatewayFlags>) {
    if let Some(gateway) = gateway {
        println!(
            "Traffic from {name} to this cluster's Services goes through the gateways \
             ({name}'s at {}, certificate fingerprint {}).",
            gateway.endpoint, gateway.fingerprint
        );
    }
    println!(
        "Check the peering with `kubectl get foreignclusters {name}`; offload a namespace \
         with `liqoctl offload namespace NAMESPACE`."
    );
}

/// Runs `liqoctl unpeer ...`.
pub async fn unpeer(global: &GlobalArgs, args: UnpeerArgs) -> Result<()> {
    match args.out_of_band {
        Some(UnpeerCommand::OutOfBand(args)) => {
            let client = global.client().await?;
            crate::context::confirm(
                global,
                &format!(
                    "Remove the peering with {} (its twin namespaces there are deleted)?",
                    args.name
                ),
            )?;
            unpeer_out_of_band(&client, args).await
        }
        None => remote::unpeer(global, args.remote).await,
    }
}

/// Runs `liqoctl unpeer out-of-band ...` against the consumer `client` (also the first step of
/// the v1 form).
pub(crate) async fn unpeer_out_of_band(client: &Client, args: UnpeerOutOfBandArgs) -> Result<()> {
    let UnpeerOutOfBandArgs {
        name,
        force,
        timeout,
    } = args;
    let client = client.clone();
    let fcs: Api<ForeignCluster> = Api::all(client.clone());
    let fc = fcs
        .get_opt(&name)
        .await
        .with_context(|| format!("reading ForeignCluster {name}"))?
        .ok_or_else(|| {
            anyhow!("ForeignCluster {name} not found: nothing to unpeer (`kubectl get foreignclusters` lists the peerings)")
        })?;
    let id = fc.spec.cluster_id.clone();
    refuse_while_offloaded(&client, &id, &name, force).await?;
    let spinner = Spinner::start(format!("Removing the peering with {name}"));
    if let Err(err) = fcs.delete(&name, &DeleteParams::default()).await
        && !is_not_found(&err)
    {
        spinner.fail("could not delete the ForeignCluster");
        return Err(err).with_context(|| format!("deleting ForeignCluster {name}"));
    }
    let deadline = Instant::now() + timeout;
    loop {
        match fcs.get_opt(&name).await {
            Ok(None) => break,
            Ok(Some(_)) | Err(_) if Instant::now() >= deadline => {
                spinner.fail(format!("ForeignCluster {name} is still there"));
                bail!(
                    "ForeignCluster {name} was not removed within {timeout:?}: its finalizer {} is \
                     removed by the host; is liqo-host running? see `liqoctl info`",
                    liqo_host::api::wire::PEERING_FINALIZER
                );
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    if let Some(reference) = &fc.spec.credentials_secret_ref {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &reference.namespace);
        // Only Secrets liqoctl made: a hand-made credential belongs to its author.
        let ours = secrets
            .get_opt(&reference.name)
            .await?
            .is_some_and(|s| s.labels().get(CREDENTIALS_LABEL).map(String::as_str) == Some("true"));
        if ours
            && let Err(err) = secrets
                .delete(&reference.name, &DeleteParams::default())
                .await
            && !is_not_found(&err)
        {
            spinner.fail("could not delete the credential Secret");
            return Err(err).with_context(|| {
                format!("deleting Secret {}/{}", reference.namespace, reference.name)
            });
        }
    }
    spinner.success(format!("Unpeered from {name}"));
    Ok(())
}

/// Fails, naming the commands to run first, while namespaces are offloaded to the peer `id`
/// (ForeignCluster `name`), unless `force`.
async fn refuse_while_offloaded(client: &Client, id: &str, name: &str, force: bool) -> Result<()> {
    let offloaded = offloadings_towards(client, id).await?;
    if !offloaded.is_empty() && !force {
        let fixes: Vec<String> = offloaded
            .iter()
            .map(|ns| format!("`liqoctl unoffload namespace {ns}`"))
            .collect();
        bail!(
            "namespaces {} are offloaded to {name}: run {} first, or pass --force (their twin \
             namespaces in {name} are then deleted when it revokes this peering)",
            offloaded.join(", "),
            fixes.join(", ")
        );
    }
    Ok(())
}

// ---- provider side ---------------------------------------------------------------------------

pub(crate) async fn local_identity(client: &Client) -> Result<ClusterIdentityConfig> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), CLUSTER_IDENTITY_NAMESPACE)
        .get_opt(CLUSTER_IDENTITY_CONFIGMAP)
        .await
        .with_context(|| {
            format!("reading ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{CLUSTER_IDENTITY_CONFIGMAP}")
        })?
        .ok_or(IdentityError::NotFound)?;
    Ok(ClusterIdentityConfig::from_config_map(&cm)?)
}

/// The cluster-wide grants of releases before twin namespaces were asked through the
/// NamespaceMap: the ClusterRole that let peering identities create and delete namespaces, its
/// per-tenant ClusterRoleBindings, and the per-tenant bindings of the reflection policy (it
/// takes no parameter any more). Removed so an upgraded provider keeps no such grant.
async fn remove_legacy_grants(client: &Client) -> Result<()> {
    const LEGACY_CLUSTER_ROLE: &str = "liqo-peering-consumer";
    let dp = DeleteParams::default();
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    for crb in bindings
        .list(&ListParams::default().labels(wire::TENANT_LABEL))
        .await
        .context("listing ClusterRoleBindings")?
    {
        if crb.role_ref.name == LEGACY_CLUSTER_ROLE {
            let name = crb.name_any();
            if let Err(err) = bindings.delete(&name, &dp).await
                && !is_not_found(&err)
            {
                return Err(err).with_context(|| format!("deleting ClusterRoleBinding {name}"));
            }
        }
    }
    let policy_bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    for b in policy_bindings
        .list(&ListParams::default().labels(wire::TENANT_LABEL))
        .await
        .context("listing ValidatingAdmissionPolicyBindings")?
    {
        let name = b.name_any();
        if let Err(err) = policy_bindings.delete(&name, &dp).await
            && !is_not_found(&err)
        {
            return Err(err)
                .with_context(|| format!("deleting ValidatingAdmissionPolicyBinding {name}"));
        }
    }
    if let Err(err) = Api::<ClusterRole>::all(client.clone())
        .delete(LEGACY_CLUSTER_ROLE, &dp)
        .await
        && !is_not_found(&err)
    {
        return Err(err).with_context(|| format!("deleting ClusterRole {LEGACY_CLUSTER_ROLE}"));
    }
    Ok(())
}

/// Applies the ClusterRole and the admission policies (idempotent, server-side apply).
async fn apply_manifests(client: &Client) -> Result<()> {
    remove_legacy_grants(client).await?;
    let params = PatchParams::apply(LIQOCTL_FIELD_MANAGER).force();
    for (file, text) in MANIFESTS {
        for doc in serde_yaml_ng::Deserializer::from_str(text) {
            let value =
                serde_json::Value::deserialize(doc).with_context(|| format!("parsing {file}"))?;
            if value.is_null() {
                continue;
            }
            let kind = value["kind"].as_str().unwrap_or_default().to_string();
            let name = value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let patch = Patch::Apply(&value);
            let result = match kind.as_str() {
                "ClusterRole" => Api::<ClusterRole>::all(client.clone())
                    .patch(&name, &params, &patch)
                    .await
                    .map(drop),
                "ValidatingAdmissionPolicy" => {
                    Api::<ValidatingAdmissionPolicy>::all(client.clone())
                        .patch(&name, &params, &patch)
                        .await
                        .map(drop)
                }
                "ValidatingAdmissionPolicyBinding" => {
                    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
                        .patch(&name, &params, &patch)
                        .await
                        .map(drop)
                }
                other => bail!("{file}: unexpected kind {other:?}"),
            };
            result.with_context(|| {
                format!(
                    "applying {kind} {name} from {file} (liqoctl needs cluster-admin on the provider)"
                )
            })?;
        }
    }
    Ok(())
}

/// Refuses `--consumer ID` when a live tenant of this cluster is already bound to that id (the
/// admission policy would refuse its claim anyway; saying so now loses nothing).
async fn ensure_id_unbound(client: &Client, id: &str) -> Result<()> {
    let bound = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default().labels(&format!(
            "{}=true,{}={id}",
            wire::TENANT_NAMESPACE_LABEL,
            wire::CONSUMER_ID_LABEL
        )))
        .await
        .context("listing tenant namespaces")?;
    if let Some(ns) = bound
        .items
        .iter()
        .find(|ns| ns.metadata.deletion_timestamp.is_none())
    {
        bail!(
            "consumer {id} already has a peering identity here (tenant namespace {}): one consumer \
             id, one peering. Unpeer it first (`liqoctl unpeer out-of-band` on {id}), or delete \
             that namespace to revoke it",
            ns.name_any()
        );
    }
    Ok(())
}

// ---- consumer side ---------------------------------------------------------------------------

/// A client for the provider authenticated with the peering token (not yet contacted).
async fn provider_client(url: &str, ca_pem: &str, token: &str) -> Result<Client> {
    use base64::Engine as _;
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "provider", "cluster": {
            "server": url,
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(ca_pem),
        }}],
        "users": [{"name": "peering", "user": {"token": token}}],
        "contexts": [{"name": "provider", "context": {"cluster": "provider", "user": "peering"}}],
        "current-context": "provider",
    });
    let kubeconfig = Kubeconfig::from_yaml(&kubeconfig.to_string())
        .context("building the provider's client configuration")?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .context("building the provider's client configuration")?;
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(20));
    Client::try_from(config).context("creating the provider's client")
}

/// Asks the provider who the token is; returns the tenant namespace. Also checks the identity
/// was not claimed by another consumer.
async fn check_provider(
    provider: &Client,
    url: &str,
    name: &str,
    local_id: &str,
) -> Result<String> {
    let review: SelfSubjectReview = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
    }))?;
    let answer = Api::<SelfSubjectReview>::all(provider.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|err| anyhow!(peering::explain_connection_error(url, &err)))?;
    let username = answer
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_default();
    let Some(tenant) = identity::tenant_of_username(&username) else {
        bail!(
            "the token authenticates as {username:?} on {name}, not as a peering identity made by \
             `liqoctl generate peer-command`: run that command on the provider and use its output"
        );
    };
    let lease = Api::<Lease>::namespaced(provider.clone(), tenant)
        .get(wire::LEASE_NAME)
        .await
        .with_context(|| {
            format!(
                "reading the peering Lease {tenant}/{} on {name}",
                wire::LEASE_NAME
            )
        })?;
    let holder = lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    if !holder.is_empty() && holder != local_id {
        bail!(
            "this peer command belongs to cluster {holder}, not to this cluster ({local_id}): \
             run `liqoctl generate peer-command` on {name} again for this cluster"
        );
    }
    Ok(tenant.to_string())
}

/// Creates (or, when re-peering, updates) the credential Secret and the ForeignCluster.
async fn create_peering(
    client: &Client,
    name: &str,
    cluster_id: &str,
    secret_name: &str,
    data: [(&str, &str); 4],
    gateway: Option<&peering::GatewayFlags>,
    repeer: bool,
) -> Result<()> {
    let string_data: BTreeMap<&str, &str> = data.into_iter().collect();
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": secret_name,
            "namespace": CLUSTER_IDENTITY_NAMESPACE,
            "labels": {CREDENTIALS_LABEL: "true", REMOTE_ID_LABEL: cluster_id},
        },
        "type": "Opaque",
        "stringData": string_data,
    });
    let secrets: Api<Secret> = Api::namespaced(client.clone(), CLUSTER_IDENTITY_NAMESPACE);
    if repeer {
        secrets
            .patch(
                secret_name,
                &PatchParams::apply(LIQOCTL_FIELD_MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await
            .with_context(|| {
                format!("updating Secret {CLUSTER_IDENTITY_NAMESPACE}/{secret_name}")
            })?;
    } else {
        secrets
            .create(&PostParams::default(), &serde_json::from_value(secret)?)
            .await
            .with_context(|| {
                format!(
                    "creating Secret {CLUSTER_IDENTITY_NAMESPACE}/{secret_name} (if it is left \
                     over from an earlier peering, delete it)"
                )
            })?;
    }
    let mut fc = json!({
        "apiVersion": "core.liqo.io/v1beta1", "kind": "ForeignCluster",
        "metadata": {"name": name},
        "spec": {
            "clusterID": cluster_id,
            "clusterName": name,
            "credentialsSecretRef": {"name": secret_name, "namespace": CLUSTER_IDENTITY_NAMESPACE},
        },
    });
    // Server-side apply: a re-peer without gateway flags drops the networking liqoctl wrote
    // before (back to Identity), and one with other values replaces them.
    if let Some(networking) = gateway_networking(gateway) {
        fc["spec"]["networking"] = serde_json::to_value(networking)?;
    }
    Api::<ForeignCluster>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply(LIQOCTL_FIELD_MANAGER).force(),
            &Patch::Apply(&fc),
        )
        .await
        .with_context(|| format!("creating ForeignCluster {name}"))?;
    Ok(())
}

/// `spec.networking` of a ForeignCluster whose peer announced `gateway` (`None`: leave it
/// absent, which means Identity).
fn gateway_networking(gateway: Option<&peering::GatewayFlags>) -> Option<NetworkingSpec> {
    gateway.map(|gateway| NetworkingSpec {
        address_translation: AddressTranslation::Gateway,
        remapping: Vec::new(),
        gateway: Some(GatewaySpec {
            fingerprint: gateway.fingerprint.to_string(),
            endpoint: gateway.endpoint.to_string(),
        }),
    })
}

/// Deletes what `peer` created (nothing when re-peering: those objects existed before).
async fn rollback(client: &Client, name: &str, secret_name: &str, repeer: bool) {
    if repeer {
        return;
    }
    let dp = DeleteParams::default();
    if let Err(err) = Api::<ForeignCluster>::all(client.clone())
        .delete(name, &dp)
        .await
        && !is_not_found(&err)
    {
        eprintln!("warning: could not roll back ForeignCluster {name}: {err}");
    }
    // The ForeignCluster's finalizer is the host's; without a host, remove it so nothing stays.
    let fcs: Api<ForeignCluster> = Api::all(client.clone());
    for _ in 0..20 {
        match fcs.get_opt(name).await {
            Ok(Some(_)) => {
                let _ = fcs
                    .patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => break,
        }
    }
    if let Err(err) = Api::<Secret>::namespaced(client.clone(), CLUSTER_IDENTITY_NAMESPACE)
        .delete(secret_name, &dp)
        .await
        && !is_not_found(&err)
    {
        eprintln!(
            "warning: could not roll back Secret {CLUSTER_IDENTITY_NAMESPACE}/{secret_name}: {err}"
        );
    }
}

async fn wait_established(fcs: &Api<ForeignCluster>, name: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        if let Ok(Some(fc)) = fcs.get_opt(name).await
            && let Some(status) = fc.status
            && let Some(c) = status.condition(PeeringConditionType::OutgoingPeering)
        {
            if c.status == PeeringConditionStatus::Established {
                return Ok(());
            }
            if !c.message.is_empty() {
                last = c.message.clone();
            }
        }
        if Instant::now() >= deadline {
            if last.is_empty() {
                bail!(
                    "the peering with {name} was not established within {timeout:?} and was rolled \
                     back: no host answered; is liqo-host running? see `liqoctl info`"
                );
            }
            bail!(
                "the peering with {name} was not established within {timeout:?} and was rolled \
                 back: {last}"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Namespaces whose NamespaceOffloading targets the peer `id`: the host reports a condition for
/// it, or no cluster selector restricts it (it selects every peer).
async fn offloadings_towards(client: &Client, id: &str) -> Result<Vec<String>> {
    let list = Api::<NamespaceOffloading>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing NamespaceOffloadings")?;
    let mut namespaces: Vec<String> = list
        .items
        .iter()
        .filter(|o| {
            // Selected for this peer: a peer the selector leaves out also gets a condition
            // (OffloadingRequired False), and has no twin to lose.
            let selected = o
                .status
                .as_ref()
                .and_then(|s| s.remote_namespaces_conditions.get(id))
                .is_some_and(|conds| {
                    conds.iter().any(|c| {
                        c.type_ == RemoteNamespaceConditionType::OffloadingRequired
                            && c.status == liqo_host::api::ConditionStatus::True
                    })
                });
            let unrestricted =
                liqo_host::api::cluster_selector::ClusterSelector::selects_every_peer(
                    o.spec.cluster_selector.as_ref(),
                );
            selected || unrestricted
        })
        .filter_map(|o| o.namespace())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    Ok(namespaces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_foreign_cluster_pins_the_announced_gateway() {
        assert_eq!(gateway_networking(None), None);
        let fingerprint = "0123456789abcdef".repeat(4);
        let flags = peering::check_gateway(Some(&fingerprint), Some("[fd00::5]:7901"))
            .unwrap()
            .unwrap();
        let networking = gateway_networking(Some(&flags)).unwrap();
        assert_eq!(
            serde_json::to_value(&networking).unwrap(),
            json!({
                "addressTranslation": "Gateway",
                "gateway": {"fingerprint": fingerprint, "endpoint": "[fd00::5]:7901"},
            })
        );
    }
}
