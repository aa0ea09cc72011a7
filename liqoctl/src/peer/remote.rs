//! Liqo v1's peering commands, for a user who holds admin kubeconfigs of both clusters:
//! `liqoctl peer --remote-kubeconfig K` and `liqoctl unpeer --remote-kubeconfig K`.
//!
//! - `peer` does in one command what `liqoctl generate peer-command | bash` does: it makes the
//!   least-privilege identity on the provider ([`super::make_identity`]), bound to this
//!   cluster's id so no other cluster can claim it, and peers with it here through the very
//!   path of `peer out-of-band` (same checks, same Secret and ForeignCluster). The provider's
//!   admin credential serves only this command: this cluster keeps only the peering token.
//!   If peering fails, the identity just made is revoked again: nothing is left on either side.
//! - `unpeer` removes the peering here (as `unpeer out-of-band`), then revokes the identity on
//!   the provider (its host would, once it sees the released Lease; this does not wait for it),
//!   and waits until the tenant namespace and the twin namespaces there are gone.

use std::time::{Duration, Instant};

use super::peering_user::PeeringUserFacts;
use super::{MadeIdentity, OutOfBandArgs, UnpeerOutOfBandArgs, peering_user};
use crate::context::GlobalArgs;
use crate::progress::Spinner;
use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use clap::ValueEnum;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use liqo_gateway::duration::parse_duration;
use liqo_host::api::foreign_cluster::ForeignCluster;
use liqo_host::api::wire;
use liqo_host::protocol::{self, identity};

/// How long the token made by `peer --remote-kubeconfig` can be used; the consumer's host
/// replaces it before it expires, as with `generate peer-command`'s default.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Liqo v1's `--gw-server-service-type` values.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayServiceType {
    /// Liqo's default.
    #[value(name = "NodePort")]
    NodePort,
    /// A cloud load balancer.
    #[value(name = "LoadBalancer")]
    LoadBalancer,
    /// Reachable inside the provider only.
    #[value(name = "ClusterIP")]
    ClusterIp,
}

/// The flags of `liqoctl peer` in Liqo v1's form.
#[derive(clap::Args, Debug)]
pub struct RemotePeerArgs {
    /// Kubeconfig of the provider cluster: an admin's (the peering identity is made there, as
    /// by `liqoctl generate peer-command`; that credential is not stored anywhere), or the
    /// peering user's that `liqoctl generate peering-user` printed on the provider.
    #[arg(long, value_name = "PATH")]
    pub remote_kubeconfig: Option<String>,
    /// Context of --remote-kubeconfig (default: its current context).
    #[arg(long, value_name = "NAME", requires = "remote_kubeconfig")]
    pub remote_context: Option<String>,
    /// Liqo v1's type of the provider gateway's Service. Accepted so Liqo v1's commands run
    /// unchanged; here the provider's gateway is the one its host announces (`liqo-host run
    /// --gateway-listen`), and without one the peering uses address translation Identity.
    #[arg(long, value_enum, value_name = "TYPE", requires = "remote_kubeconfig")]
    pub gw_server_service_type: Option<GatewayServiceType>,
    /// How long to wait for the host to establish the peering.
    #[arg(long, default_value = "120s", value_parser = parse_duration, requires = "remote_kubeconfig")]
    pub timeout: Duration,
}

/// The flags of `liqoctl unpeer` in Liqo v1's form.
#[derive(clap::Args, Debug)]
pub struct RemoteUnpeerArgs {
    /// Kubeconfig of the provider cluster: the peering with it is removed here, and its
    /// identity revoked there.
    #[arg(long, value_name = "PATH")]
    pub remote_kubeconfig: Option<String>,
    /// Context of --remote-kubeconfig (default: its current context).
    #[arg(long, value_name = "NAME", requires = "remote_kubeconfig")]
    pub remote_context: Option<String>,
    /// Unpeer even while namespaces are offloaded to the provider (their twin namespaces there
    /// are deleted).
    #[arg(long, requires = "remote_kubeconfig")]
    pub force: bool,
    /// How long to wait for each side to remove the peering.
    #[arg(long, default_value = "120s", value_parser = parse_duration, requires = "remote_kubeconfig")]
    pub timeout: Duration,
}

/// The provider's admin client and cluster id, from `--remote-kubeconfig`/`--remote-context`.
struct Provider {
    client: Client,
    config: kube::Config,
    id: String,
}

async fn provider(
    global: &GlobalArgs,
    kubeconfig: Option<String>,
    context: Option<String>,
    command: &str,
) -> Result<Provider> {
    let Some(path) = kubeconfig else {
        bail!(
            "pass --remote-kubeconfig PATH (the provider's kubeconfig, as in Liqo v1), or use \
             `liqoctl {command} out-of-band NAME ...` (see `liqoctl {command} --help`)"
        );
    };
    let remote = GlobalArgs {
        kubeconfig: Some(path.clone()),
        context,
        skip_confirm: global.skip_confirm,
    };
    let config = remote
        .config()
        .await
        .with_context(|| format!("--remote-kubeconfig {path}"))?;
    let client = remote.client().await?;
    let id = super::local_identity(&client)
        .await
        .with_context(|| format!("the provider of --remote-kubeconfig {path}"))?
        .cluster_id;
    Ok(Provider { client, config, id })
}

/// The ForeignCluster of this cluster for the peer `id`, if any.
async fn foreign_cluster_of(client: &Client, id: &str) -> Result<Option<ForeignCluster>> {
    let list = Api::<ForeignCluster>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing ForeignClusters (are the liqo CRDs installed? run `liqoctl install`)")?;
    Ok(list.items.into_iter().find(|f| f.spec.cluster_id == id))
}

/// Runs `liqoctl peer --remote-kubeconfig ...`.
pub async fn peer(global: &GlobalArgs, args: RemotePeerArgs) -> Result<()> {
    // A peering user's kubeconfig (`generate peering-user`) already is the identity: peer with
    // it exactly as with the peer command it stands for.
    if let Some(path) = &args.remote_kubeconfig
        && let Some((facts, out_of_band)) =
            peering_user::peering_user(path, args.remote_context.as_deref(), args.timeout)?
    {
        return peer_as_peering_user(global, path, &facts, out_of_band).await;
    }
    let provider = provider(global, args.remote_kubeconfig, args.remote_context, "peer").await?;
    let client = global.client().await?;
    let local = super::local_identity(&client).await?;
    if provider.id == local.cluster_id {
        bail!(
            "--remote-kubeconfig points at this same cluster ({}): pass the provider's kubeconfig",
            local.cluster_id
        );
    }
    if let Some(fc) = foreign_cluster_of(&client, &provider.id).await? {
        println!(
            "Already peered with cluster {} (ForeignCluster {}): nothing to do. To peer again, \
             run `liqoctl unpeer --remote-kubeconfig ...` first.",
            provider.id,
            fc.name_any()
        );
        return Ok(());
    }

    let made = make_bound_identity(&provider, &local.cluster_id).await?;
    if args.gw_server_service_type.is_some() {
        note_gateway_service_type(&made);
    }
    let tenant_ns = made.tenant.clone();
    let out_of_band = OutOfBandArgs {
        name: made.name,
        api_server_url: made.url,
        ca_data: base64::engine::general_purpose::STANDARD.encode(&made.ca_pem),
        cluster_id: made.identity.cluster_id,
        token: made.token,
        gateway_fingerprint: made.gateway.as_ref().map(|g| g.fingerprint.to_string()),
        gateway_endpoint: made.gateway.as_ref().map(|g| g.endpoint.to_string()),
        timeout: args.timeout,
    };
    if let Err(err) = super::peer_out_of_band(global, out_of_band).await {
        // peer out-of-band rolled back its side; the identity is of no use to anyone now.
        if let Err(revoke) = protocol::revoke(&provider.client, &tenant_ns, None).await {
            eprintln!(
                "warning: could not revoke the unused identity {tenant_ns} on {}: {revoke}",
                provider.id
            );
        }
        return Err(err);
    }
    Ok(())
}

/// `peer` with a peering user's kubeconfig (at `path`): checks that the identity is this
/// cluster's, then peers as its peer command would (unless already peered).
async fn peer_as_peering_user(
    global: &GlobalArgs,
    path: &str,
    facts: &PeeringUserFacts,
    out_of_band: OutOfBandArgs,
) -> Result<()> {
    let client = global.client().await?;
    let local = super::local_identity(&client).await?;
    peering_user::check_consumer(path, facts, &local.cluster_id)?;
    if let Some(fc) = foreign_cluster_of(&client, &facts.cluster_id).await? {
        println!(
            "Already peered with cluster {} (ForeignCluster {}): nothing to do.",
            facts.cluster_id,
            fc.name_any()
        );
        return Ok(());
    }
    super::peer_out_of_band(global, out_of_band).await
}

/// Makes the peering identity on the provider, behind a spinner.
async fn make_bound_identity(provider: &Provider, local_id: &str) -> Result<MadeIdentity> {
    let spinner = Spinner::start(format!(
        "Creating a peering identity for {} on {}",
        local_id, provider.id
    ));
    // Bound to this cluster's id: the token can be claimed by no other cluster.
    let made = match super::make_identity(
        &provider.client,
        &provider.config,
        Some(local_id),
        TOKEN_TTL,
        None,
        None,
    )
    .await
    {
        Ok(made) => made,
        Err(err) => {
            spinner.fail("the provider did not make the identity");
            return Err(err);
        }
    };
    spinner.success(format!(
        "Peering identity created on {} (tenant namespace {})",
        made.identity.cluster_id, made.tenant
    ));
    Ok(made)
}

/// Says on stderr what stands for Liqo v1's `--gw-server-service-type` here: the provider's
/// announced gateway, or address translation Identity.
fn note_gateway_service_type(made: &MadeIdentity) {
    eprintln!(
        "note: --gw-server-service-type is Liqo v1's; here {}",
        match &made.gateway {
            Some(g) => format!(
                "the gateway {} announces is used ({}), however it is exposed",
                made.identity.cluster_id, g.endpoint
            ),
            None => format!(
                "{} runs no gateway, so the peering uses address translation Identity",
                made.identity.cluster_id
            ),
        }
    );
}

/// Runs `liqoctl unpeer --remote-kubeconfig ...`.
pub async fn unpeer(global: &GlobalArgs, args: RemoteUnpeerArgs) -> Result<()> {
    // With a peering user's kubeconfig this side cannot revoke anything on the provider: it
    // removes the peering here, which releases the Lease, and the provider's host revokes.
    if let Some(path) = &args.remote_kubeconfig
        && let Some((facts, _)) =
            peering_user::peering_user(path, args.remote_context.as_deref(), args.timeout)?
    {
        return unpeer_as_peering_user(global, &facts, &args).await;
    }
    let provider = provider(
        global,
        args.remote_kubeconfig.clone(),
        args.remote_context.clone(),
        "unpeer",
    )
    .await?;
    let client = global.client().await?;
    let local = super::local_identity(&client).await?;
    let fc = foreign_cluster_of(&client, &provider.id).await?;
    let tenants = bound_tenants(&provider.client, &local.cluster_id).await?;
    if fc.is_none() && tenants.is_empty() {
        bail!(
            "this cluster ({}) is not peered with cluster {}: nothing to unpeer \
             (`kubectl get foreignclusters` lists the peerings)",
            local.cluster_id,
            provider.id
        );
    }
    crate::context::confirm(
        global,
        &format!(
            "Remove the peering with {} on both clusters (its twin namespaces there are deleted)?",
            provider.id
        ),
    )?;
    if let Some(fc) = &fc {
        unpeer_here(&client, fc, &args).await?;
    }
    revoke_on_provider(&provider, &local.cluster_id, &tenants, args.timeout).await
}

/// `unpeer` with a peering user's kubeconfig: removes the peering here only; the provider's host
/// revokes the identity when it sees the released Lease.
async fn unpeer_as_peering_user(
    global: &GlobalArgs,
    facts: &PeeringUserFacts,
    args: &RemoteUnpeerArgs,
) -> Result<()> {
    let client = global.client().await?;
    let Some(fc) = foreign_cluster_of(&client, &facts.cluster_id).await? else {
        bail!(
            "this cluster is not peered with cluster {}: nothing to unpeer \
             (`kubectl get foreignclusters` lists the peerings)",
            facts.cluster_id
        );
    };
    crate::context::confirm(
        global,
        &format!(
            "Remove the peering with {} (its twin namespaces there are deleted)?",
            facts.cluster_id
        ),
    )?;
    unpeer_here(&client, &fc, args).await?;
    println!(
        "{} revokes the peering identity when its host sees the released Lease.",
        facts.cluster_id
    );
    Ok(())
}

/// Revokes the identities bound to this cluster (`local_id`) in `tenants` on the provider, and
/// waits, up to `timeout`, until the provider's objects of this peering are gone.
async fn revoke_on_provider(
    provider: &Provider,
    local_id: &str,
    tenants: &[String],
    timeout: Duration,
) -> Result<()> {
    let spinner = Spinner::start(format!(
        "Revoking {}'s peering identity on {}",
        local_id, provider.id
    ));
    for ns in tenants {
        if let Err(err) = protocol::revoke(&provider.client, ns, Some(local_id)).await {
            spinner.fail("could not revoke the identity");
            return Err(err).with_context(|| format!("revoking tenant {ns} on {}", provider.id));
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left = left_on_provider(provider, local_id, tenants).await?;
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            spinner.fail("the provider still holds this peering's objects");
            bail!(
                "{} on {} were not gone within {:?}: `kubectl get` them there to see what \
                 holds them (a finalizer of a host that is not running?)",
                left.join(", "),
                provider.id,
                timeout
            );
        }
        spinner.set_message(format!(
            "Waiting for {} on {} to be deleted",
            left.join(", "),
            provider.id
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    spinner.success(format!("Unpeered from {} on both clusters", provider.id));
    Ok(())
}

/// What of this peering the provider still holds, as `namespace NAME` and
/// `ForeignCluster NAME`.
async fn left_on_provider(
    provider: &Provider,
    local_id: &str,
    tenants: &[String],
) -> Result<Vec<String>> {
    let namespaces: Api<Namespace> = Api::all(provider.client.clone());
    // The tenant and twin namespaces, and the provider's ForeignCluster for this cluster
    // (its host removes its finalizer): gone on both sides when the command returns.
    let mut left = Vec::new();
    for ns in tenants {
        if namespaces.get_opt(ns).await?.is_some() {
            left.push(format!("namespace {ns}"));
        }
        for twin in protocol::twin_namespaces(&provider.client, ns).await? {
            left.push(format!("namespace {twin}"));
        }
    }
    if let Some(fc) = foreign_cluster_of(&provider.client, local_id).await? {
        left.push(format!("ForeignCluster {}", fc.name_any()));
    }
    Ok(left)
}

/// Removes the peering of `fc` in this cluster, as `unpeer out-of-band` does.
async fn unpeer_here(client: &Client, fc: &ForeignCluster, args: &RemoteUnpeerArgs) -> Result<()> {
    super::unpeer_out_of_band(
        client,
        UnpeerOutOfBandArgs {
            name: fc.name_any(),
            force: args.force,
            timeout: args.timeout,
        },
    )
    .await
}

/// The live tenant namespaces of the provider bound to consumer `id`.
async fn bound_tenants(provider: &Client, id: &str) -> Result<Vec<String>> {
    let list = Api::<Namespace>::all(provider.clone())
        .list(&ListParams::default().labels(&format!(
            "{}=true,{}={id}",
            wire::TENANT_NAMESPACE_LABEL,
            wire::CONSUMER_ID_LABEL
        )))
        .await
        .context("listing the provider's tenant namespaces")?;
    Ok(list
        .items
        .iter()
        .filter(|ns| identity::is_tenant_namespace(ns))
        .map(ResourceExt::name_any)
        .collect())
}
