//! Offloading: NamespaceOffloading objects become twin namespaces in the selected peers and
//! reflection of the namespace towards them.
//!
//! For each NamespaceOffloading and each selected peer the controller asks the namespace plugin
//! for the remote name and Namespace object, creates the namespace in the peer (never adopting
//! one it did not create), starts reflection, and reports per-peer conditions and a phase. A
//! finalizer stops reflection and deletes the twin namespaces that are ours on deletion.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::ConditionStatus;
use crate::api::cluster_selector::ClusterSelector;
use crate::api::conditions::{self, now, upsert_condition};
use crate::api::foreign_cluster::ForeignCluster;
use crate::api::namespace_offloading::{
    NamespaceOffloading, NamespaceOffloadingStatus, OffloadingPhase, PodOffloadingStrategy,
    RemoteNamespaceCondition, RemoteNamespaceConditionType,
};
use crate::api::wire;
use crate::api::wire::OFFLOADING_FINALIZER;
use crate::peers::{Peer, Peers};
use crate::plugin::{ClusterIdentity, NamespaceMapperPlugin};
use crate::reflect::{Engine, EngineMetrics};

/// Reason of a peer's `Ready=False` condition when the twin namespace name is taken in the peer
/// by a namespace this peering did not create (another consumer's, or the provider's own).
pub const REASON_NAMESPACE_CONFLICT: &str = "RemoteNamespaceConflict";

/// Everything the controller needs.
pub struct OffloadingContext {
    /// Client of this cluster.
    pub client: Client,
    /// This cluster's identity.
    pub local: ClusterIdentity,
    /// The reflection engine.
    pub engine: Engine,
    /// Established peers.
    pub peers: Peers,
    /// The namespace mapper plugin.
    pub mapper: Arc<NamespaceMapperPlugin>,
    /// Write counters.
    pub metrics: EngineMetrics,
}

/// Errors of one reconcile; messages name the object.
#[derive(Debug, thiserror::Error)]
pub enum OffloadingError {
    /// Twin namespaces are still being deleted; the finalizer stays until they are gone.
    #[error(
        "NamespaceOffloading {namespace}/offloading: waiting for twin namespaces to be deleted: {twins}"
    )]
    Terminating {
        /// The offloaded namespace.
        namespace: String,
        /// The twin namespaces still present.
        twins: String,
    },
    /// An API request failed.
    #[error("NamespaceOffloading {namespace}/offloading: {source}")]
    Kube {
        /// The offloaded namespace.
        namespace: String,
        /// The API error.
        source: kube::Error,
    },
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    ctx: OffloadingContext,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<NamespaceOffloading> = Api::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let store = controller.store();
    // A peer that appears, changes or goes re-evaluates every offloaded namespace.
    let controller = controller.watches(
        Api::<ForeignCluster>::all(ctx.client.clone()),
        watcher::Config::default(),
        move |_| {
            store
                .state()
                .iter()
                .map(|o| ObjectRef::from_obj(o.as_ref()))
                .collect::<Vec<_>>()
        },
    );
    // A change in reflection conflicts re-evaluates the NamespaceOffloadings, so the
    // ReflectionConflicts condition follows without polling. (Targeting only the namespace
    // concerned needs kube-runtime's unstable `reconcile_on`; there are few offloadings.)
    let changes = ctx.engine.conflict_changes();
    let conflicts = futures::stream::unfold(changes, |mut rx| async move {
        rx.recv().await?;
        Some(((), rx))
    });
    // So does a peer that connects or goes (after a restart its ForeignCluster may not change).
    let peers = futures::stream::unfold(ctx.peers.subscribe(), |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    });
    let triggers = futures::stream::select(conflicts, peers);
    controller
        .reconcile_all_on(triggers)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(%err, "offloading reconcile");
            }
        })
        .await;
}

fn error_policy(
    o: Arc<NamespaceOffloading>,
    err: &finalizer::Error<OffloadingError>,
    _: Arc<OffloadingContext>,
) -> Action {
    if let finalizer::Error::CleanupFailed(OffloadingError::Terminating { .. }) = err {
        tracing::debug!(namespace = %o.namespace().unwrap_or_default(), "{err}");
        return Action::requeue(Duration::from_secs(1));
    }
    tracing::warn!(namespace = %o.namespace().unwrap_or_default(), "{err}");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(
    o: Arc<NamespaceOffloading>,
    ctx: Arc<OffloadingContext>,
) -> Result<Action, finalizer::Error<OffloadingError>> {
    let namespace = o.namespace().unwrap_or_default();
    let api: Api<NamespaceOffloading> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer::finalizer(&api, OFFLOADING_FINALIZER, o, |event| async {
        match event {
            FinalizerEvent::Apply(o) => apply(&o, &ctx).await,
            FinalizerEvent::Cleanup(o) => cleanup(&o, &ctx).await,
        }
    })
    .await
}

/// The result of ensuring the twin namespace in one peer.
struct PeerOutcome {
    ready: bool,
    reason: &'static str,
    message: String,
}

async fn apply(
    o: &NamespaceOffloading,
    ctx: &OffloadingContext,
) -> Result<Action, OffloadingError> {
    let namespace = o.namespace().unwrap_or_default();
    let mut status = o.status.clone().unwrap_or_default();
    status.observed_generation = o.metadata.generation;

    if o.spec.pod_offloading_strategy != PodOffloadingStrategy::Local {
        for peer in ctx.peers.list() {
            ctx.engine.unoffload(&peer.identity.id, &namespace);
        }
        status.offloading_phase = Some(OffloadingPhase::AllFailed);
        status.message = Some(format!(
            "podOffloadingStrategy {} is not supported: only Local (pods stay in this cluster) is. \
             Run `liqoctl unoffload namespace {namespace}` and offload again with \
             --pod-offloading-strategy Local",
            o.spec.pod_offloading_strategy.as_str()
        ));
        write_status(o, status, ctx).await?;
        return Ok(Action::await_change());
    }

    // A selector the host cannot evaluate sends the namespace nowhere (never everywhere).
    let selector = o.spec.cluster_selector.as_ref();
    if let Err(invalid) = selector.map(ClusterSelector::check).transpose() {
        let mut withdrawing = false;
        for peer in ctx.peers.list() {
            withdrawing |= withdraw(o, &peer, status.remote_namespace_name.as_deref(), ctx).await?;
        }
        status.offloading_phase = Some(OffloadingPhase::AllFailed);
        status.message = Some(format!(
            "{invalid}; the namespace is offloaded to no peer until the selector is fixed \
             (kubectl edit namespaceoffloading offloading -n {namespace}, or liqoctl offload \
             namespace {namespace} --selector KEY=VALUE)"
        ));
        write_status(o, status, ctx).await?;
        return Ok(if withdrawing {
            Action::requeue(Duration::from_secs(1))
        } else {
            Action::await_change()
        });
    }
    let wanted = selector.map_or_else(|| "every peer".to_string(), ClusterSelector::describe);

    let spec_json = serde_json::to_value(&o.spec).unwrap_or_default();
    let mut outcomes: BTreeMap<String, PeerOutcome> = BTreeMap::new();
    let mut selected = 0;
    let mut withdrawing = false;
    let mut remote_name: Option<String> = None;
    for peer in ctx.peers.list() {
        let id = peer.identity.id.clone();
        let labels = render_labels(&peer.labels);
        if !ClusterSelector::selects(selector, &peer.labels).unwrap_or(false) {
            // A peer that stopped matching loses its twin namespace (and the copies in it);
            // the other peers keep theirs.
            let terminating =
                withdraw(o, &peer, status.remote_namespace_name.as_deref(), ctx).await?;
            withdrawing |= terminating;
            let conds = status
                .remote_namespaces_conditions
                .entry(id.clone())
                .or_default();
            conds.retain(|c| c.type_ == RemoteNamespaceConditionType::OffloadingRequired);
            upsert_condition(
                conds,
                RemoteNamespaceCondition::new(
                    RemoteNamespaceConditionType::OffloadingRequired,
                    ConditionStatus::False,
                    conditions::REASON_CLUSTER_NOT_SELECTED,
                    format!(
                        "the cluster selector ({wanted}) does not match this peer's labels \
                         ({labels}){}",
                        if terminating {
                            "; its twin namespace is being deleted"
                        } else {
                            ""
                        }
                    ),
                ),
                now(),
            );
            continue;
        }
        selected += 1;
        let conds = status
            .remote_namespaces_conditions
            .entry(id.clone())
            .or_default();
        upsert_condition(
            conds,
            RemoteNamespaceCondition::new(
                RemoteNamespaceConditionType::OffloadingRequired,
                ConditionStatus::True,
                conditions::REASON_CLUSTER_SELECTED,
                format!("the cluster selector ({wanted}) matches this peer's labels ({labels})"),
            ),
            now(),
        );
        // Off the async workers (like every plugin call): see `plugin::calls`.
        let mapped = ctx
            .mapper
            .map_namespace_async(&ctx.local, &peer.identity, &namespace, &spec_json)
            .await;
        let outcome = match mapped {
            Err(err) => PeerOutcome {
                ready: false,
                reason: "InvalidMapping",
                message: err.to_string(),
            },
            Ok(mapping) => {
                remote_name = Some(mapping.remote_name.clone());
                let outcome = match &peer.tenant {
                    Some(tenant) => {
                        request_twin(&peer, tenant, &namespace, &mapping.remote_name, ctx).await
                    }
                    None => {
                        ensure_twin(&peer, &mapping.remote_name, &mapping.namespace_object, ctx)
                            .await
                    }
                };
                if outcome.ready {
                    ctx.engine.offload(&id, &namespace, &mapping.remote_name);
                } else {
                    ctx.engine.unoffload(&id, &namespace);
                }
                outcome
            }
        };
        outcomes.insert(id, outcome);
    }
    // Peers that are gone keep no condition.
    let known: Vec<String> = ctx
        .peers
        .list()
        .into_iter()
        .map(|p| p.identity.id)
        .collect();
    status
        .remote_namespaces_conditions
        .retain(|id, _| known.contains(id));

    for (id, outcome) in &outcomes {
        let conflicts = ctx.engine.conflicts(id, &namespace);
        let conds = status
            .remote_namespaces_conditions
            .entry(id.clone())
            .or_default();
        let (conflict_status, conflict_reason, conflict_message) = if conflicts.is_empty() {
            (ConditionStatus::False, "NoConflicts", String::new())
        } else {
            let shown: Vec<&str> = conflicts.iter().take(5).map(String::as_str).collect();
            let more = conflicts.len().saturating_sub(shown.len());
            (
                ConditionStatus::True,
                "ForeignObjectsExist",
                format!(
                    "{} exist in the twin namespace and are not managed by this peering{}; they \
                     are left untouched and reflected once removed",
                    shown.join(", "),
                    if more > 0 {
                        format!(" (and {more} more)")
                    } else {
                        String::new()
                    }
                ),
            )
        };
        upsert_condition(
            conds,
            RemoteNamespaceCondition::new(
                RemoteNamespaceConditionType::ReflectionConflicts,
                conflict_status,
                conflict_reason,
                conflict_message,
            ),
            now(),
        );
        upsert_condition(
            conds,
            RemoteNamespaceCondition::new(
                RemoteNamespaceConditionType::Ready,
                if outcome.ready {
                    ConditionStatus::True
                } else {
                    ConditionStatus::False
                },
                outcome.reason,
                outcome.message.clone(),
            ),
            now(),
        );
    }
    let ready = outcomes.values().filter(|o| o.ready).count();
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|(_, o)| !o.ready)
        .map(|(id, o)| format!("{id}: {}", o.message))
        .collect();
    // Twin namespaces the providers are still creating (they answer within a second) are
    // progress, not failure: liqoctl offload keeps waiting while the phase is InProgress.
    let in_progress = outcomes
        .values()
        .filter(|o| !o.ready)
        .all(|o| o.reason == conditions::REASON_CREATING);
    status.offloading_phase = Some(if selected == 0 {
        OffloadingPhase::NoClusterSelected
    } else if ready == selected {
        OffloadingPhase::Ready
    } else if in_progress {
        OffloadingPhase::InProgress
    } else if ready == 0 && failed.len() == selected {
        if selected == 1 {
            OffloadingPhase::SomeFailed
        } else {
            OffloadingPhase::AllFailed
        }
    } else {
        OffloadingPhase::SomeFailed
    });
    status.remote_namespace_name = remote_name.or(status.remote_namespace_name);
    status.message = if failed.is_empty() {
        None
    } else {
        Some(failed.join("; "))
    };
    let creating = outcomes
        .values()
        .any(|o| !o.ready && o.reason == conditions::REASON_CREATING);
    write_status(o, status, ctx).await?;
    // Failures are retried until they clear (for example a foreign namespace is removed); a
    // twin namespace the provider is creating, or one being deleted in a peer that is no
    // longer selected, is looked at again soon (providers answer at once).
    Ok(if withdrawing {
        Action::requeue(Duration::from_secs(1))
    } else if failed.is_empty() {
        Action::requeue(Duration::from_secs(300))
    } else if creating {
        Action::requeue(Duration::from_millis(300))
    } else {
        Action::requeue(Duration::from_secs(2))
    })
}

/// Asks the provider for the twin namespace through the tenant's NamespaceMap (the peering
/// identity cannot create namespaces): ready once the provider reports it `Accepted`, which it
/// does only after binding the identity inside it.
async fn request_twin(
    peer: &Peer,
    tenant: &str,
    local_name: &str,
    remote_name: &str,
    ctx: &OffloadingContext,
) -> PeerOutcome {
    use crate::api::namespace_map::MappingPhase;
    ctx.metrics.write(&peer.identity.id, "apply");
    match crate::tenant::request_twin(&peer.client, tenant, local_name, remote_name).await {
        Err(err) => PeerOutcome {
            ready: false,
            reason: conditions::REASON_CREATION_LOOP_BACKOFF,
            message: format!(
                "cannot ask {} for namespace {remote_name} (NamespaceMap in {tenant}): {err}",
                peer.identity.name
            ),
        },
        Ok(None) => PeerOutcome {
            ready: false,
            reason: conditions::REASON_CREATING,
            message: format!(
                "namespace {remote_name} is being created in {}",
                peer.identity.name
            ),
        },
        Ok(Some(answer)) => match answer.phase {
            MappingPhase::Accepted => PeerOutcome {
                ready: true,
                reason: conditions::REASON_NAMESPACE_CREATED,
                message: format!("namespace {remote_name} is ready in {}", peer.identity.name),
            },
            MappingPhase::Terminating => PeerOutcome {
                ready: false,
                reason: conditions::REASON_CREATING,
                message: format!(
                    "namespace {remote_name} in {} is still terminating",
                    peer.identity.name
                ),
            },
            // The provider's conflict message names the namespace, the owner and the fix.
            MappingPhase::CreationLoopBackOff
                if answer.reason == crate::api::namespace_map::reasons::CONFLICT =>
            {
                PeerOutcome {
                    ready: false,
                    reason: REASON_NAMESPACE_CONFLICT,
                    message: answer.message,
                }
            }
            MappingPhase::CreationLoopBackOff => PeerOutcome {
                ready: false,
                reason: conditions::REASON_CREATION_LOOP_BACKOFF,
                message: format!(
                    "{} refused namespace {remote_name} ({}): {}",
                    peer.identity.name, answer.reason, answer.message
                ),
            },
        },
    }
}

/// Creates the twin namespace in `peer` unless it exists; never adopts one that is not ours.
async fn ensure_twin(
    peer: &Peer,
    remote_name: &str,
    object: &serde_json::Value,
    ctx: &OffloadingContext,
) -> PeerOutcome {
    let api: Api<Namespace> = Api::all(peer.client.clone());
    match api.get_opt(remote_name).await {
        Err(err) => PeerOutcome {
            ready: false,
            reason: conditions::REASON_CREATION_LOOP_BACKOFF,
            message: format!(
                "cannot read namespace {remote_name} in {}: {err}",
                peer.identity.name
            ),
        },
        Ok(Some(existing)) => {
            if !owned(&existing, &ctx.local.id, &peer.identity.id) {
                return not_ours(&existing, remote_name, peer, &ctx.local.id);
            }
            if existing.metadata.deletion_timestamp.is_some() {
                return PeerOutcome {
                    ready: false,
                    reason: conditions::REASON_CREATING,
                    message: format!(
                        "namespace {remote_name} in {} is still terminating",
                        peer.identity.name
                    ),
                };
            }
            PeerOutcome {
                ready: true,
                reason: conditions::REASON_NAMESPACE_CREATED,
                message: format!("namespace {remote_name} is ready in {}", peer.identity.name),
            }
        }
        Ok(None) => {
            ctx.metrics.write(&peer.identity.id, "apply");
            // A plain create, not a server-side apply: if another consumer created the namespace
            // since the read above, apply would try to take over its labels (refused by the
            // provider's admission policy with a bare Forbidden), while create fails with
            // AlreadyExists and never modifies what is there.
            let namespace: Namespace = match serde_json::from_value(object.clone()) {
                Ok(ns) => ns,
                Err(err) => {
                    return PeerOutcome {
                        ready: false,
                        reason: conditions::REASON_CREATION_LOOP_BACKOFF,
                        message: format!(
                            "the namespace plugin returned an invalid Namespace for {remote_name}: {err}"
                        ),
                    };
                }
            };
            let params = PostParams {
                field_manager: Some(wire::REFLECTION_FIELD_MANAGER.to_string()),
                ..PostParams::default()
            };
            match api.create(&params, &namespace).await {
                Ok(_) => PeerOutcome {
                    ready: true,
                    reason: conditions::REASON_NAMESPACE_CREATED,
                    message: format!("namespace {remote_name} created in {}", peer.identity.name),
                },
                Err(kube::Error::Api(s)) if s.code == 409 => match api.get_opt(remote_name).await {
                    Ok(Some(existing)) if !owned(&existing, &ctx.local.id, &peer.identity.id) => {
                        not_ours(&existing, remote_name, peer, &ctx.local.id)
                    }
                    // Ours after all (an earlier create went through unseen): the next
                    // reconcile, two seconds later, finds it and reports it ready.
                    _ => PeerOutcome {
                        ready: false,
                        reason: conditions::REASON_CREATING,
                        message: format!(
                            "namespace {remote_name} is being created in {}",
                            peer.identity.name
                        ),
                    },
                },
                Err(err) => PeerOutcome {
                    ready: false,
                    reason: conditions::REASON_CREATION_LOOP_BACKOFF,
                    message: format!(
                        "cannot create namespace {remote_name} in {}: {err}",
                        peer.identity.name
                    ),
                },
            }
        }
    }
}

/// The outcome for a twin namespace name that is taken in `peer` by a namespace this peering
/// did not create. It is never adopted, changed or deleted; the message names who owns it (the
/// consumer in its origin label) so the user knows which way to resolve the conflict.
fn not_ours(existing: &Namespace, remote_name: &str, peer: &Peer, local: &str) -> PeerOutcome {
    let origin = existing
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(wire::ORIGIN))
        .filter(|origin| origin.as_str() != local);
    PeerOutcome {
        ready: false,
        reason: REASON_NAMESPACE_CONFLICT,
        message: crate::twins::conflict_message(
            remote_name,
            origin.map(String::as_str),
            &peer.identity.name,
        ),
    }
}

fn owned(ns: &Namespace, local: &str, peer: &str) -> bool {
    let l = ns.metadata.labels.as_ref();
    l.and_then(|l| l.get(wire::ORIGIN)).map(String::as_str) == Some(local)
        && l.and_then(|l| l.get(wire::DESTINATION)).map(String::as_str) == Some(peer)
}

/// `k=v,...` of a peer's labels, for condition messages (`no labels` when it has none).
fn render_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "no labels".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn cleanup(
    o: &NamespaceOffloading,
    ctx: &OffloadingContext,
) -> Result<Action, OffloadingError> {
    let namespace = o.namespace().unwrap_or_default();
    let mut status = o.status.clone().unwrap_or_default();
    if status.offloading_phase != Some(OffloadingPhase::Terminating) {
        status.offloading_phase = Some(OffloadingPhase::Terminating);
        // The finalizer is removed right after; a failed status write must not block it.
        let _ = write_status(o, status.clone(), ctx).await;
    }
    let mut terminating = Vec::new();
    for peer in ctx.peers.list() {
        let remote_name = status.remote_namespace_name.as_deref();
        if withdraw(o, &peer, remote_name, ctx).await? {
            terminating.push(format!(
                "{} in {}",
                remote_name.unwrap_or_default(),
                peer.identity.name
            ));
        }
    }
    // The finalizer stays until the twin namespaces are gone, so `liqoctl unoffload` (which
    // waits for the NamespaceOffloading to disappear) returns only when nothing is left.
    if !terminating.is_empty() {
        return Err(OffloadingError::Terminating {
            namespace,
            twins: terminating.join(", "),
        });
    }
    Ok(Action::await_change())
}

/// Stops reflecting `o`'s namespace to `peer` and deletes its twin namespace there (the copies
/// go with it): through the tenant's NamespaceMap, or directly when this cluster created it.
/// `true` while the twin namespace still exists (terminating).
async fn withdraw(
    o: &NamespaceOffloading,
    peer: &Peer,
    remote_name: Option<&str>,
    ctx: &OffloadingContext,
) -> Result<bool, OffloadingError> {
    let namespace = o.namespace().unwrap_or_default();
    ctx.engine.unoffload(&peer.identity.id, &namespace);
    let Some(remote_name) = remote_name else {
        return Ok(false);
    };
    let kube_err = |source| OffloadingError::Kube {
        namespace: namespace.clone(),
        source,
    };
    if let Some(tenant) = &peer.tenant {
        // No write when the NamespaceMap has no entry for this namespace.
        return crate::tenant::withdraw_twin(&peer.client, tenant, &namespace)
            .await
            .map_err(kube_err);
    }
    let api: Api<Namespace> = Api::all(peer.client.clone());
    let Ok(Some(existing)) = api.get_opt(remote_name).await else {
        return Ok(false);
    };
    if !owned(&existing, &ctx.local.id, &peer.identity.id) {
        return Ok(false);
    }
    if existing.metadata.deletion_timestamp.is_none() {
        ctx.metrics.write(&peer.identity.id, "delete");
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: existing.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        api.delete(remote_name, &params).await.map_err(kube_err)?;
        tracing::info!(peer = %peer.identity.id, %remote_name, "twin namespace deleted");
    }
    Ok(true)
}

async fn write_status(
    o: &NamespaceOffloading,
    status: NamespaceOffloadingStatus,
    ctx: &OffloadingContext,
) -> Result<(), OffloadingError> {
    let namespace = o.namespace().unwrap_or_default();
    if o.status
        .as_ref()
        .is_some_and(|old| same_status(old, &status))
    {
        return Ok(());
    }
    ctx.metrics.write("local", "status");
    Api::<NamespaceOffloading>::namespaced(ctx.client.clone(), &namespace)
        .patch_status(
            &o.name_any(),
            &PatchParams::apply(wire::REFLECTION_FIELD_MANAGER).force(),
            &Patch::Apply(json!({
                "apiVersion": "offloading.liqo.io/v1beta1",
                "kind": "NamespaceOffloading",
                "status": status,
            })),
        )
        .await
        .map_err(|source| OffloadingError::Kube { namespace, source })?;
    Ok(())
}

fn same_status(a: &NamespaceOffloadingStatus, b: &NamespaceOffloadingStatus) -> bool {
    let strip = |s: &NamespaceOffloadingStatus| {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        if let Some(map) = v
            .get_mut("remoteNamespacesConditions")
            .and_then(|m| m.as_object_mut())
        {
            for conds in map.values_mut() {
                for c in conds.as_array_mut().into_iter().flatten() {
                    if let Some(o) = c.as_object_mut() {
                        o.remove("lastTransitionTime");
                    }
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}
