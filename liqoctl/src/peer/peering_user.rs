//! `liqoctl generate peering-user --consumer-cluster-id ID` (Liqo v1): the peering identity as
//! a kubeconfig, for a consumer admin who has no credential of the provider.
//!
//! The identity is the one `generate peer-command` makes (see [`super::make_identity`]), bound
//! to the consumer's id. The kubeconfig carries the provider's API server, CA and the token,
//! with the tenant namespace as the context's namespace and, in a context extension named
//! [`EXTENSION`], the public facts the peer command would carry as flags (the provider's
//! cluster id, its gateway). `liqoctl peer --remote-kubeconfig FILE` recognises it by that
//! extension and peers through `peer out-of-band` with exactly those values.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
    NamedExtension,
};
use serde::{Deserialize, Serialize};

use super::{MadeIdentity, OutOfBandArgs};

/// Name of the context extension that marks a peering-user kubeconfig.
pub const EXTENSION: &str = "liqo.io/peering-user";

/// The public facts in [`EXTENSION`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PeeringUserFacts {
    /// The provider's cluster id.
    #[serde(rename = "clusterID")]
    pub cluster_id: String,
    /// The consumer cluster id the identity is bound to.
    #[serde(rename = "consumerClusterID")]
    pub consumer_cluster_id: String,
    /// SHA-256 fingerprint of the provider gateway's certificate, when it runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_fingerprint: Option<String>,
    /// `IP:PORT` of the provider's gateway, when it runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_endpoint: Option<String>,
}

/// The kubeconfig of the identity `made` for consumer `consumer`.
pub fn kubeconfig(made: &MadeIdentity, consumer: &str) -> Result<Kubeconfig> {
    let facts = PeeringUserFacts {
        cluster_id: made.identity.cluster_id.clone(),
        consumer_cluster_id: consumer.to_string(),
        gateway_fingerprint: made.gateway.as_ref().map(|g| g.fingerprint.to_string()),
        gateway_endpoint: made.gateway.as_ref().map(|g| g.endpoint.to_string()),
    };
    let user = format!("liqo-peering-{consumer}");
    Ok(Kubeconfig {
        clusters: vec![NamedCluster {
            name: made.name.clone(),
            cluster: Some(Cluster {
                server: Some(made.url.clone()),
                certificate_authority_data: Some(
                    base64::engine::general_purpose::STANDARD.encode(&made.ca_pem),
                ),
                ..Cluster::default()
            }),
            other: Default::default(),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: user.clone(),
            auth_info: Some(AuthInfo {
                token: Some(made.token.clone().into()),
                ..AuthInfo::default()
            }),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: made.name.clone(),
            context: Some(Context {
                cluster: made.name.clone(),
                user: Some(user),
                namespace: Some(made.tenant.clone()),
                extensions: Some(vec![NamedExtension {
                    name: EXTENSION.to_string(),
                    extension: serde_json::to_value(&facts)?,
                }]),
                ..Context::default()
            }),
            other: Default::default(),
        }],
        current_context: Some(made.name.clone()),
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        ..Kubeconfig::default()
    })
}

/// When the kubeconfig at `path` (context `context`, default its current one) is a peering
/// user's: its facts and the `peer out-of-band` flags it stands for. `None` for any other
/// kubeconfig (an admin's, used to make an identity).
pub fn peering_user(
    path: &str,
    context: Option<&str>,
    timeout: Duration,
) -> Result<Option<(PeeringUserFacts, OutOfBandArgs)>> {
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("reading --remote-kubeconfig {path}"))?;
    let Some(context_name) = context
        .map(String::from)
        .or_else(|| kubeconfig.current_context.clone())
    else {
        return Ok(None);
    };
    let Some(ctx) = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
    else {
        return Ok(None);
    };
    let Some(extension) = ctx
        .extensions
        .iter()
        .flatten()
        .find(|e| e.name == EXTENSION)
    else {
        return Ok(None);
    };
    let broken = |what: &str| {
        anyhow!(
            "{path} is a peering-user kubeconfig without {what}: generate it again with `liqoctl \
             generate peering-user` on the provider"
        )
    };
    let facts: PeeringUserFacts = serde_json::from_value(extension.extension.clone())
        .map_err(|_| broken("valid peering facts"))?;
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| broken("its cluster"))?;
    let token = ctx
        .user
        .as_ref()
        .and_then(|u| kubeconfig.auth_infos.iter().find(|a| &a.name == u))
        .and_then(|a| a.auth_info.as_ref())
        .and_then(|a| a.token.as_ref())
        .ok_or_else(|| broken("a token"))?;
    use secrecy::ExposeSecret as _;
    let args = OutOfBandArgs {
        name: ctx.cluster.clone(),
        api_server_url: cluster.server.clone().ok_or_else(|| broken("a server"))?,
        ca_data: cluster
            .certificate_authority_data
            .clone()
            .ok_or_else(|| broken("certificate-authority-data"))?,
        cluster_id: facts.cluster_id.clone(),
        token: token.expose_secret().to_string(),
        gateway_fingerprint: facts.gateway_fingerprint.clone(),
        gateway_endpoint: facts.gateway_endpoint.clone(),
        timeout,
    };
    Ok(Some((facts, args)))
}

/// Checks that the peering user of `facts` is meant for the cluster `local_id`.
pub fn check_consumer(path: &str, facts: &PeeringUserFacts, local_id: &str) -> Result<()> {
    if facts.consumer_cluster_id != local_id {
        bail!(
            "{path} is the peering user of consumer {}, not of this cluster ({local_id}): run \
             `liqoctl generate peering-user --consumer-cluster-id {local_id}` on {}",
            facts.consumer_cluster_id,
            facts.cluster_id
        );
    }
    Ok(())
}
