//! Peering: ForeignCluster objects become peers of the reflection engine.
//!
//! For each ForeignCluster the controller builds a client from the credential Secret it
//! references, checks that the peer's API server answers, registers the peer with the engine
//! and keeps the ForeignCluster's conditions (the `kubectl get foreignclusters` columns) honest.
//! A finalizer removes the peer from the engine when the ForeignCluster is deleted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::conditions::now;
use crate::api::foreign_cluster::{
    AddressTranslation, CREDENTIALS_KEY_CA, CREDENTIALS_KEY_KUBECONFIG, CREDENTIALS_KEY_SERVER,
    CREDENTIALS_KEY_TOKEN, ForeignCluster, ForeignClusterStatus, PeeringCondition,
    PeeringConditionStatus, PeeringConditionType, PeeringRole,
};
use crate::labels;
use crate::plugin::{AddressTranslator, CidrRemap, ClusterIdentity, IdentityTranslation};
use crate::reflect::{Engine, EngineMetrics, PeerHandle};

/// Finalizer the host puts on ForeignClusters so a peer is always removed from the engine.
pub const PEERING_FINALIZER: &str = "liqo.io/peering";

/// How often a peer's API server is probed.
const PROBE_INTERVAL: Duration = Duration::from_secs(30);

/// A peer as the offloading controller needs it.
#[derive(Clone)]
pub struct Peer {
    /// The peer's identity.
    pub identity: ClusterIdentity,
    /// Client authenticated with the peering credential.
    pub client: Client,
    /// The ForeignCluster's labels (matched by `clusterSelector`).
    pub labels: BTreeMap<String, String>,
    /// Name of the ForeignCluster.
    pub foreign_cluster: String,
}

/// The established peers, shared by the peering and offloading controllers.
#[derive(Clone, Default)]
pub struct Peers {
    inner: Arc<RwLock<HashMap<String, (Peer, String)>>>,
}

impl Peers {
    /// Every established peer.
    pub fn list(&self) -> Vec<Peer> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// The peer with cluster id `id`.
    pub fn get(&self, id: &str) -> Option<Peer> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|(p, _)| p.clone())
    }

    fn fingerprint(&self, id: &str) -> Option<String> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|(_, f)| f.clone())
    }

    fn insert(&self, peer: Peer, fingerprint: String) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer.identity.id.clone(), (peer, fingerprint));
    }

    fn remove(&self, id: &str) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// Errors of the peering controller; messages name the ForeignCluster and the fix.
#[derive(Debug, thiserror::Error)]
pub enum PeeringError {
    /// The ForeignCluster has no credential reference.
    #[error("ForeignCluster {0} has no spec.credentialsSecretRef; peer again with liqoctl peer")]
    NoCredential(String),
    /// The credential Secret is missing or unusable.
    #[error("ForeignCluster {name}: credential Secret {secret}: {reason}")]
    Credential {
        /// ForeignCluster name.
        name: String,
        /// `namespace/name` of the Secret.
        secret: String,
        /// What is wrong.
        reason: String,
    },
    /// The translation rules are invalid.
    #[error("ForeignCluster {name}: spec.networking: {reason}")]
    Networking {
        /// ForeignCluster name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing the status or the finalizer failed.
    #[error("ForeignCluster {name}: {source}")]
    Kube {
        /// ForeignCluster name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
}

struct Context {
    client: Client,
    engine: Engine,
    peers: Peers,
    metrics: EngineMetrics,
}

/// Runs the peering controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    engine: Engine,
    peers: Peers,
    metrics: EngineMetrics,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<ForeignCluster> = Api::all(client.clone());
    let ctx = Arc::new(Context {
        client,
        engine,
        peers,
        metrics,
    });
    Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(%err, "peering reconcile");
            }
        })
        .await;
}

fn error_policy(
    fc: Arc<ForeignCluster>,
    err: &finalizer::Error<PeeringError>,
    _: Arc<Context>,
) -> Action {
    tracing::warn!(foreign_cluster = %fc.name_any(), "{err}");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(
    fc: Arc<ForeignCluster>,
    ctx: Arc<Context>,
) -> Result<Action, finalizer::Error<PeeringError>> {
    let api: Api<ForeignCluster> = Api::all(ctx.client.clone());
    finalizer::finalizer(&api, PEERING_FINALIZER, fc, |event| async {
        match event {
            FinalizerEvent::Apply(fc) => apply(&fc, &ctx).await,
            FinalizerEvent::Cleanup(fc) => {
                let id = fc.spec.cluster_id.clone();
                ctx.engine.remove_peer(&id);
                ctx.peers.remove(&id);
                tracing::info!(peer = %id, "peer removed");
                Ok(Action::await_change())
            }
        }
    })
    .await
}

async fn apply(fc: &ForeignCluster, ctx: &Context) -> Result<Action, PeeringError> {
    let name = fc.name_any();
    let id = fc.spec.cluster_id.clone();
    let mut status = fc.status.clone().unwrap_or_default();
    let established = match connect(fc, ctx).await {
        Ok((client, fingerprint, translator)) => {
            let version = client.apiserver_version().await;
            match version {
                Ok(_) => {
                    if ctx.peers.fingerprint(&id).as_deref() != Some(fingerprint.as_str()) {
                        let identity = ClusterIdentity {
                            id: id.clone(),
                            name: fc.spec.cluster_name.clone().unwrap_or_else(|| name.clone()),
                        };
                        ctx.engine.add_peer(PeerHandle {
                            identity: identity.clone(),
                            client: client.clone(),
                            translator,
                        });
                        ctx.peers.insert(
                            Peer {
                                identity,
                                client,
                                labels: fc.labels().clone(),
                                foreign_cluster: name.clone(),
                            },
                            fingerprint,
                        );
                        tracing::info!(peer = %id, "peer established");
                    }
                    Ok(())
                }
                Err(err) => Err(format!("the API server of {name} does not answer: {err}")),
            }
        }
        Err(err) => Err(err.to_string()),
    };

    let t = now();
    status.ensure_all_conditions(t.clone());
    status.role = PeeringRole::Provider;
    let (peering, api) = match &established {
        Ok(()) => (
            PeeringCondition::new(
                PeeringConditionType::OutgoingPeering,
                PeeringConditionStatus::Established,
            )
            .with_reason(
                "PeeringEstablished",
                "reflection towards this cluster is running",
            ),
            PeeringCondition::new(
                PeeringConditionType::ApiServerStatus,
                PeeringConditionStatus::Established,
            )
            .with_reason("APIServerReady", "the API server answers"),
        ),
        Err(message) => (
            PeeringCondition::new(
                PeeringConditionType::OutgoingPeering,
                PeeringConditionStatus::Error,
            )
            .with_reason("PeeringFailed", message.clone()),
            PeeringCondition::new(
                PeeringConditionType::ApiServerStatus,
                PeeringConditionStatus::Error,
            )
            .with_reason("APIServerUnreachable", message.clone()),
        ),
    };
    status.set_condition(peering, t.clone());
    status.set_condition(api, t.clone());
    let auth = if established.is_ok() {
        PeeringCondition::new(
            PeeringConditionType::AuthenticationStatus,
            PeeringConditionStatus::Established,
        )
        .with_reason("CredentialAccepted", "the peering credential is accepted")
    } else {
        PeeringCondition::new(
            PeeringConditionType::AuthenticationStatus,
            PeeringConditionStatus::Error,
        )
        .with_reason("CredentialRejected", "see OutgoingPeering for the error")
    };
    status.set_condition(auth, t.clone());
    // No data path exists yet: the truthful value is None.
    status.set_condition(
        PeeringCondition::new(
            PeeringConditionType::NetworkStatus,
            PeeringConditionStatus::None,
        )
        .with_reason("NoDataPath", "no cross-cluster data path is configured"),
        t,
    );
    status.observed_generation = fc.metadata.generation;
    write_status(fc, status, ctx).await?;
    Ok(Action::requeue(PROBE_INTERVAL))
}

async fn write_status(
    fc: &ForeignCluster,
    status: ForeignClusterStatus,
    ctx: &Context,
) -> Result<(), PeeringError> {
    let unchanged = fc
        .status
        .as_ref()
        .is_some_and(|old| same_status(old, &status));
    if unchanged {
        return Ok(());
    }
    let api: Api<ForeignCluster> = Api::all(ctx.client.clone());
    ctx.metrics.write("local", "status");
    api.patch_status(
        &fc.name_any(),
        &PatchParams::apply(labels::FIELD_MANAGER).force(),
        &Patch::Apply(json!({
            "apiVersion": "core.liqo.io/v1beta1",
            "kind": "ForeignCluster",
            "status": status,
        })),
    )
    .await
    .map_err(|source| PeeringError::Kube {
        name: fc.name_any(),
        source,
    })?;
    Ok(())
}

/// Status equality ignoring transition times (kept when statuses do not change).
fn same_status(a: &ForeignClusterStatus, b: &ForeignClusterStatus) -> bool {
    let strip = |s: &ForeignClusterStatus| {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        if let Some(conds) = v
            .get_mut("peeringConditions")
            .and_then(|c| c.as_array_mut())
        {
            for c in conds {
                if let Some(o) = c.as_object_mut() {
                    o.remove("lastTransitionTime");
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}

type Connection = (Client, String, Arc<dyn AddressTranslator>);

async fn connect(fc: &ForeignCluster, ctx: &Context) -> Result<Connection, PeeringError> {
    let name = fc.name_any();
    let reference = fc
        .spec
        .credentials_secret_ref
        .as_ref()
        .ok_or_else(|| PeeringError::NoCredential(name.clone()))?;
    let secret_name = format!("{}/{}", reference.namespace, reference.name);
    let cred_err = |reason: String| PeeringError::Credential {
        name: name.clone(),
        secret: secret_name.clone(),
        reason,
    };
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &reference.namespace)
        .get_opt(&reference.name)
        .await
        .map_err(|e| cred_err(e.to_string()))?
        .ok_or_else(|| cred_err("not found".into()))?;
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| {
        data.get(key)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    let kubeconfig_yaml = match text(CREDENTIALS_KEY_KUBECONFIG) {
        Some(k) => k,
        None => {
            let (token, ca, server) = match (
                text(CREDENTIALS_KEY_TOKEN),
                data.get(CREDENTIALS_KEY_CA),
                text(CREDENTIALS_KEY_SERVER),
            ) {
                (Some(t), Some(c), Some(s)) => (t, c, s),
                _ => {
                    return Err(cred_err(format!(
                        "needs key {CREDENTIALS_KEY_KUBECONFIG}, or keys {CREDENTIALS_KEY_TOKEN}, \
                         {CREDENTIALS_KEY_CA} and {CREDENTIALS_KEY_SERVER}"
                    )));
                }
            };
            kubeconfig_from_token(&server, &ca.0, &token)
        }
    };
    let kubeconfig = Kubeconfig::from_yaml(&kubeconfig_yaml)
        .map_err(|e| cred_err(format!("invalid kubeconfig: {e}")))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| cred_err(format!("invalid kubeconfig: {e}")))?;
    let client = Client::try_from(config).map_err(|e| cred_err(e.to_string()))?;
    let translator = translator(fc).map_err(|reason| PeeringError::Networking {
        name: name.clone(),
        reason,
    })?;
    // Re-register the peer when the credential or the networking spec changes.
    let fingerprint = format!(
        "{}/{}",
        secret.metadata.resource_version.unwrap_or_default(),
        fc.metadata.generation.unwrap_or_default()
    );
    Ok((client, fingerprint, translator))
}

fn kubeconfig_from_token(server: &str, ca: &[u8], token: &str) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    serde_json::to_string(&json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "peer", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "peer", "user": {"token": token}}],
        "contexts": [{"name": "peer", "context": {"cluster": "peer", "user": "peer"}}],
        "current-context": "peer",
    }))
    .unwrap_or_default()
}

fn translator(fc: &ForeignCluster) -> Result<Arc<dyn AddressTranslator>, String> {
    let Some(net) = &fc.spec.networking else {
        return Ok(Arc::new(IdentityTranslation));
    };
    match net.address_translation {
        AddressTranslation::Identity => Ok(Arc::new(IdentityTranslation)),
        AddressTranslation::CidrRemap => {
            let spec = net
                .remapping
                .iter()
                .map(|m| format!("{}={}", m.local_cidr, m.remote_cidr))
                .collect::<Vec<_>>()
                .join(",");
            Ok(Arc::new(CidrRemap::parse(&spec)?))
        }
    }
}
