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
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

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

/// One pass over a NamespaceOffloading: refuse what cannot be offloaded, then for every peer
/// decide whether it is selected and make its twin namespace exist (or go), then write the
/// per-peer conditions and the phase.
async fn apply(
    o: &NamespaceOffloading,
    ctx: &OffloadingContext,
) -> Result<Action, OffloadingError> {
    let mut status = o.status.clone().unwrap_or_default();
    status.observed_generation = o.metadata.generation;
    if let Some(refusal) = refusal(o) {
        return refuse(o, status, refusal, ctx).await;
    }
    let selector = o.spec.cluster_selector.as_ref();
    let wanted = selector.map_or_else(|| "every peer".to_string(), ClusterSelector::describe);
    // What the namespace plugin maps, the same for every peer.
    let spec_json = serde_json::to_value(&o.spec).unwrap_or_default();

    let mut outcomes: BTreeMap<String, PeerOutcome> = BTreeMap::new();
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
            let deleting = if terminating {
                "; its twin namespace is being deleted"
            } else {
                ""
            };
            set_required(
                conds,
                false,
                format!(
                    "the cluster selector ({wanted}) does not match this peer's labels \
                     ({labels}){deleting}"
                ),
            );
            continue;
        }
        let conds = status
            .remote_namespaces_conditions
            .entry(id.clone())
            .or_default();
        set_required(
            conds,
            true,
            format!("the cluster selector ({wanted}) matches this peer's labels ({labels})"),
        );
        let (outcome, mapped_name) = offload_to(o, &spec_json, &peer, ctx).await;
        remote_name = mapped_name.or(remote_name);
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
    record_outcomes(
        &mut status,
        &outcomes,
        &o.namespace().unwrap_or_default(),
        ctx,
    );

    let (phase, message) = phase_of(&outcomes);
    status.offloading_phase = Some(phase);
    status.message = message;
    status.remote_namespace_name = remote_name.or(status.remote_namespace_name);
    write_status(o, status, ctx).await?;
    // Failures are retried until they clear (for example a foreign namespace is removed); a
    // twin namespace the provider is creating, or one being deleted in a peer that is no
    // longer selected, is looked at again soon (providers answer at once).
    let creating = outcomes
        .values()
        .any(|o| !o.ready && o.reason == conditions::REASON_CREATING);
    let failed = outcomes.values().any(|o| !o.ready);
    Ok(if withdrawing {
        Action::requeue(Duration::from_secs(1))
    } else if !failed {
        Action::requeue(Duration::from_secs(300))
    } else if creating {
        Action::requeue(Duration::from_millis(300))
    } else {
        Action::requeue(Duration::from_secs(2))
    })
}

/// Why `o` cannot be offloaded at all, in a sentence with the fix: a pod offloading strategy
/// other than Local, or a cluster selector the host cannot evaluate (which sends the namespace
/// nowhere, never everywhere).
fn refusal(o: &NamespaceOffloading) -> Option<String> {
    let namespace = o.namespace().unwrap_or_default();
    if o.spec.pod_offloading_strategy != PodOffloadingStrategy::Local {
        return Some(format!(
            "podOffloadingStrategy {} is not supported: only Local (pods stay in this cluster) is. \
             Run `liqoctl unoffload namespace {namespace}` and offload again with \
             --pod-offloading-strategy Local",
            o.spec.pod_offloading_strategy.as_str()
        ));
    }
    let invalid = o.spec.cluster_selector.as_ref()?.check().err()?;
    Some(format!(
        "{invalid}; the namespace is offloaded to no peer until the selector is fixed \
         (kubectl edit namespaceoffloading offloading -n {namespace}, or liqoctl offload \
         namespace {namespace} --selector KEY=VALUE)"
    ))
}

/// Offloads `o` to no peer and says why in its status (phase `AllFailed`). An unsupported pod
/// strategy only stops reflection (the twins stay until the user unoffloads, as the message
/// says); a selector that selects nothing it can evaluate withdraws the twins, as a selector
/// that matches no peer would.
async fn refuse(
    o: &NamespaceOffloading,
    mut status: NamespaceOffloadingStatus,
    why: String,
    ctx: &OffloadingContext,
) -> Result<Action, OffloadingError> {
    let namespace = o.namespace().unwrap_or_default();
    let strategy_refused = o.spec.pod_offloading_strategy != PodOffloadingStrategy::Local;
    let mut withdrawing = false;
    for peer in ctx.peers.list() {
        if strategy_refused {
            ctx.engine.unoffload(&peer.identity.id, &namespace);
        } else {
            withdrawing |= withdraw(o, &peer, status.remote_namespace_name.as_deref(), ctx).await?;
        }
    }
    status.offloading_phase = Some(OffloadingPhase::AllFailed);
    status.message = Some(why);
    write_status(o, status, ctx).await?;
    Ok(if withdrawing {
        Action::requeue(Duration::from_secs(1))
    } else {
        Action::await_change()
    })
}

/// Sets the `OffloadingRequired` condition of one peer.
fn set_required(conds: &mut Vec<RemoteNamespaceCondition>, selected: bool, message: String) {
    let (status, reason) = if selected {
        (ConditionStatus::True, conditions::REASON_CLUSTER_SELECTED)
    } else {
        (
            ConditionStatus::False,
            conditions::REASON_CLUSTER_NOT_SELECTED,
        )
    };
    upsert_condition(
        conds,
        RemoteNamespaceCondition::new(
            RemoteNamespaceConditionType::OffloadingRequired,
            status,
            reason,
            message,
        ),
        now(),
    );
}

/// Maps `o`'s namespace for a selected `peer` (namespace plugin), makes its twin exist there,
/// and starts reflection once it does. Returns the outcome and the twin's name.
async fn offload_to(
    o: &NamespaceOffloading,
    spec_json: &serde_json::Value,
    peer: &Peer,
    ctx: &OffloadingContext,
) -> (PeerOutcome, Option<String>) {
    let namespace = o.namespace().unwrap_or_default();
    // Off the async workers (like every plugin call): see `plugin::calls`.
    let mapped = ctx
        .mapper
        .map_namespace_async(&ctx.local, &peer.identity, &namespace, spec_json)
        .await;
    let mapping = match mapped {
        Ok(mapping) => mapping,
        Err(err) => {
            let outcome = PeerOutcome {
                ready: false,
                reason: "InvalidMapping",
                message: err.to_string(),
            };
            return (outcome, None);
        }
    };
    let outcome = match &peer.tenant {
        Some(tenant) => request_twin(peer, tenant, &namespace, &mapping.remote_name, ctx).await,
        None => ensure_twin(peer, &mapping.remote_name, &mapping.namespace_object, ctx).await,
    };
    let id = &peer.identity.id;
    if outcome.ready {
        ctx.engine.offload(id, &namespace, &mapping.remote_name);
    } else {
        ctx.engine.unoffload(id, &namespace);
    }
    (outcome, Some(mapping.remote_name))
}

/// Writes the `ReflectionConflicts` and `Ready` conditions of every selected peer.
fn record_outcomes(
    status: &mut NamespaceOffloadingStatus,
    outcomes: &BTreeMap<String, PeerOutcome>,
    namespace: &str,
    ctx: &OffloadingContext,
) {
    for (id, outcome) in outcomes {
        let conflicts = ctx.engine.conflicts(id, namespace);
        let conds = status
            .remote_namespaces_conditions
            .entry(id.clone())
            .or_default();
        upsert_condition(conds, conflicts_condition(&conflicts), now());
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
}

/// The `ReflectionConflicts` condition for the objects `conflicts` names (at most five shown).
fn conflicts_condition(conflicts: &[String]) -> RemoteNamespaceCondition {
    let (status, reason, message) = if conflicts.is_empty() {
        (ConditionStatus::False, "NoConflicts", String::new())
    } else {
        let shown: Vec<&str> = conflicts.iter().take(5).map(String::as_str).collect();
        let more = conflicts.len().saturating_sub(shown.len());
        let more = if more > 0 {
            format!(" (and {more} more)")
        } else {
            String::new()
        };
        (
            ConditionStatus::True,
            "ForeignObjectsExist",
            format!(
                "{} exist in the twin namespace and are not managed by this peering{more}; they \
                 are left untouched and reflected once removed",
                shown.join(", ")
            ),
        )
    };
    RemoteNamespaceCondition::new(
        RemoteNamespaceConditionType::ReflectionConflicts,
        status,
        reason,
        message,
    )
}

/// The phase over the selected peers' outcomes (Liqo's names) and the message listing the
/// failures. Twin namespaces the providers are still creating (they answer within a second)
/// are progress, not failure: `liqoctl offload` keeps waiting while the phase is InProgress.
fn phase_of(outcomes: &BTreeMap<String, PeerOutcome>) -> (OffloadingPhase, Option<String>) {
    let selected = outcomes.len();
    let ready = outcomes.values().filter(|o| o.ready).count();
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|(_, o)| !o.ready)
        .map(|(id, o)| format!("{id}: {}", o.message))
        .collect();
    let in_progress = outcomes
        .values()
        .filter(|o| !o.ready)
        .all(|o| o.reason == conditions::REASON_CREATING);
    let phase = if selected == 0 {
        OffloadingPhase::NoClusterSelected
    } else if ready == selected {
        OffloadingPhase::Ready
    } else if in_progress {
        OffloadingPhase::InProgress
    } else if ready == 0 && selected > 1 {
        OffloadingPhase::AllFailed
    } else {
        OffloadingPhase::SomeFailed
    };
    let message = (!failed.is_empty()).then(|| failed.join("; "));
    (phase, message)
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
    match crate::protocol::twin_requests::request_twin(
        &peer.client,
        tenant,
        local_name,
        remote_name,
    )
    .await
    {
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
        message: crate::protocol::twin_requests::conflict_message(
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
        return crate::protocol::twin_requests::withdraw_twin(&peer.client, tenant, &namespace)
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
    // Two local namespaces may map to one twin name: only the twin made for this namespace
    // (its origin-name annotation) is this offloading's to delete.
    let made_for = existing
        .annotations()
        .get(wire::REMOTE_NAMESPACE_ORIGIN_NAME)
        .map(String::as_str);
    if made_for.is_some_and(|local| local != namespace) {
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

/// Writes `status` unless it equals the current one but for transition times.
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
    let api = Api::<NamespaceOffloading>::namespaced(ctx.client.clone(), &namespace);
    crate::api::conditions::apply_status(&api, &o.name_any(), &status)
        .await
        .map_err(|source| OffloadingError::Kube { namespace, source })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(ready: bool, reason: &'static str) -> PeerOutcome {
        PeerOutcome {
            ready,
            reason,
            message: format!("{reason} happened"),
        }
    }

    #[test]
    fn phase_over_the_selected_peers() {
        use OffloadingPhase::*;
        let ok = || outcome(true, conditions::REASON_NAMESPACE_CREATED);
        let creating = || outcome(false, conditions::REASON_CREATING);
        let refused = || outcome(false, conditions::REASON_CREATION_LOOP_BACKOFF);
        let table: Vec<(Vec<PeerOutcome>, OffloadingPhase, Option<&str>)> = vec![
            (vec![], NoClusterSelected, None),
            (vec![ok(), ok()], Ready, None),
            (
                vec![ok(), creating()],
                InProgress,
                Some("p1: Creating happened"),
            ),
            (
                vec![refused()],
                SomeFailed,
                Some("p0: CreationLoopBackOff happened"),
            ),
            (
                vec![ok(), refused()],
                SomeFailed,
                Some("p1: CreationLoopBackOff happened"),
            ),
            (vec![refused(), creating()], AllFailed, None),
            (vec![refused(), refused()], AllFailed, None),
        ];
        for (outcomes, phase, message) in table {
            let outcomes: BTreeMap<String, PeerOutcome> = outcomes
                .into_iter()
                .enumerate()
                .map(|(i, o)| (format!("p{i}"), o))
                .collect();
            let (got, got_message) = phase_of(&outcomes);
            assert_eq!(got, phase, "{:?}", outcomes.keys());
            if let Some(message) = message {
                assert_eq!(got_message.as_deref(), Some(message));
            }
        }
    }

    #[test]
    fn conflicts_show_five_names_and_a_count() {
        assert_eq!(conflicts_condition(&[]).status, ConditionStatus::False);
        let names: Vec<String> = (1..=7).map(|i| format!("Service/s{i}")).collect();
        let c = conflicts_condition(&names);
        assert_eq!(c.status, ConditionStatus::True);
        assert!(
            c.message
                .starts_with("Service/s1, Service/s2, Service/s3, Service/s4, Service/s5 exist")
                && c.message.contains("(and 2 more)"),
            "{}",
            c.message
        );
    }

    #[test]
    fn refusals_say_what_to_do() {
        let mut o = NamespaceOffloading::new(
            "offloading",
            serde_json::from_value(serde_json::json!({"podOffloadingStrategy": "Local"})).unwrap(),
        );
        o.metadata.namespace = Some("demo".into());
        assert_eq!(refusal(&o), None);
        o.spec.cluster_selector = Some(
            serde_json::from_value(serde_json::json!({"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["x"]}]}
            ]}))
            .unwrap(),
        );
        let why = refusal(&o).unwrap();
        assert!(
            why.contains("matchFields: not supported") && why.contains("offloaded to no peer"),
            "{why}"
        );
        o.spec.pod_offloading_strategy = PodOffloadingStrategy::Remote;
        assert!(
            refusal(&o)
                .unwrap()
                .contains("--pod-offloading-strategy Local")
        );
    }
}
