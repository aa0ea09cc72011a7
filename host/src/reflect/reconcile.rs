//! One reflection pass over one key: read both caches, ask the plugin, write only if needed.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::discovery::ApiResource;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use serde_json::Value;

use super::cached::CachedObject;
use super::engine::{Engine, FailureMode, KindSlot, PeerState, ReflectKey, TwinNamespace};
use super::intent;
use super::kind_rules::KindRules;
use super::reads::TrackingReader;
use super::stores::WatchedCache;
use crate::api::wire;
use crate::plugin::{
    CallServices, ObjectRef as PluginObjectRef, Outcome, PluginError, ReflectCall, ReflectorPlugin,
};

/// How long a pass waits for a free call slot of its plugin before it is deferred: far longer
/// than a normal call (tens of microseconds), far shorter than a call stuck at its CPU limit.
const BUSY_WAIT: Duration = Duration::from_millis(2);

/// Event reasons, identical to Liqo's.
pub mod reasons {
    /// The remote copy was created or updated.
    pub const SUCCESSFUL: &str = "SuccessfulReflection";
    /// The pass failed or the remote object is not ours.
    pub const FAILED: &str = "FailedReflection";
    /// The plugin decided not to reflect the object.
    pub const DISABLED: &str = "ReflectionDisabled";
    /// Deleting the remote copy failed.
    pub const FAILED_DELETION: &str = "FailedDeletion";
}

/// How a pass ended, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PassResult {
    Applied,
    Unchanged,
    Deleted,
    Skipped,
    Conflict,
    NotReady,
    /// The remote watch is failing (not for long enough to report it yet).
    WatchFailing,
    /// The kind's plugin was running as many calls as it has instances: the pass was put
    /// back in the queue (with backoff) instead of waiting.
    Busy,
    Error,
}

impl PassResult {
    fn label(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Unchanged => "unchanged",
            Self::Deleted => "deleted",
            Self::Skipped => "skipped",
            Self::Conflict => "conflict",
            Self::NotReady => "not_ready",
            Self::WatchFailing => "watch_failing",
            Self::Busy => "busy",
            Self::Error => "error",
        }
    }
}

/// Runs one pass and schedules a retry when it fails.
pub(crate) async fn process(engine: &Engine, key: &ReflectKey) {
    let started = Instant::now();
    // The slot is taken once: a plugin swapped meanwhile serves the next pass, not this one.
    let Some(slot) = engine.slot(&key.kind) else {
        // The kind is no longer reflected (its plugin was removed and its copies are gone).
        engine.inner.queue.forget(key);
        return;
    };
    let slot = slot.as_ref();
    let result = pass(engine, key, slot).await;
    if !matches!(
        result,
        Ok(PassResult::NotReady | PassResult::WatchFailing | PassResult::Busy)
    ) {
        let object = format!("{}/{}", slot.kind.kind, key.name);
        let blocked = matches!(result, Ok(PassResult::Conflict));
        engine.set_conflict(&key.peer, &key.namespace, object, blocked);
    }
    let metrics = &engine.inner.metrics;
    let queue = &engine.inner.queue;
    let outcome = match result {
        Ok(r) => {
            // A cache that is not ready yet re-enqueues its whole namespace when its first
            // list completes (`Signal::Synced`), or, for a remote cache, when its watch first
            // fails (`Signal::Failing`), so nothing is polled meanwhile.
            match r {
                PassResult::NotReady => {}
                // A failing watch sends no further signal until it recovers: look again
                // shortly, to report the failure if it lasts.
                PassResult::WatchFailing => queue.add_after(key.clone(), Duration::from_secs(1)),
                // Tried again with the key's backoff (50 ms, doubling): the keys of a plugin
                // stuck at its CPU limit come back ever more rarely, and a success resets it.
                PassResult::Busy => {
                    let delay = queue.retry(key.clone());
                    tracing::debug!(
                        peer = %key.peer, namespace = %key.namespace, kind = %slot.kind.kind,
                        name = %key.name, retry_in = ?delay, "plugin busy: pass deferred"
                    );
                }
                _ => queue.forget(key),
            }
            r
        }
        Err(err) => {
            let delay = queue.retry(key.clone());
            tracing::warn!(
                peer = %key.peer, namespace = %key.namespace, kind = %slot.kind.kind,
                name = %key.name, retry_in = ?delay, "{err}"
            );
            PassResult::Error
        }
    };
    metrics.pass(
        &slot.kind.kind,
        outcome.label(),
        started.elapsed().as_secs_f64(),
    );
}

/// Where one pass works: its key, its kind, the peer and the twin namespace there, and the
/// local and remote caches of the kind.
struct PassTarget<'a> {
    engine: &'a Engine,
    key: &'a ReflectKey,
    slot: &'a KindSlot,
    peer: Arc<PeerState>,
    twin: Arc<TwinNamespace>,
    local_cache: Arc<WatchedCache>,
    remote_cache: Arc<WatchedCache>,
}

/// The local and the remote copy of the key, as the caches hold them.
struct Copies {
    /// The local object, unless it is gone or being deleted.
    live_local: Option<Arc<CachedObject>>,
    remote: Option<Arc<CachedObject>>,
}

/// One pass: reads both copies, asks the plugin, enforces the host's rules, and writes or
/// deletes the remote copy only when it differs from what it should be.
async fn pass(engine: &Engine, key: &ReflectKey, slot: &KindSlot) -> Result<PassResult, String> {
    // What this pass reads is recorded afresh (see `reads`).
    engine.inner.reads.forget(key);
    let target = match locate(engine, key, slot) {
        ControlFlow::Continue(target) => target,
        ControlFlow::Break(result) => return Ok(result),
    };
    if let ControlFlow::Break(result) = check_caches(&target).await? {
        return Ok(result);
    }
    let Copies { live_local, remote } = read_copies(&target);
    if let ControlFlow::Break(result) =
        check_ownership(&target, live_local.as_deref(), remote.as_deref()).await
    {
        return Ok(result);
    }
    let Some(local) = live_local else {
        return delete_remote(&target, remote.as_deref(), None).await;
    };
    let Some(plugin) = &slot.plugin else {
        // The kind's plugin was removed: its remote copies go with it.
        return delete_remote(&target, remote.as_deref(), None).await;
    };
    let desired = match decide(&target, plugin, &local, remote.as_deref()).await? {
        ControlFlow::Continue(desired) => desired,
        ControlFlow::Break(result) => return Ok(result),
    };
    write_if_needed(&target, desired, remote.as_deref(), &local).await
}

/// Finds the peer, the twin namespace and both caches of the key; breaks with how the pass
/// ends when one of them is missing.
fn locate<'a>(
    engine: &'a Engine,
    key: &'a ReflectKey,
    slot: &'a KindSlot,
) -> ControlFlow<PassResult, PassTarget<'a>> {
    let Some(peer) = engine.peer(&key.peer) else {
        return ControlFlow::Break(PassResult::Skipped);
    };
    let Some(twin) = peer
        .twins
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(key.namespace.as_ref())
        .cloned()
    else {
        // The namespace is no longer offloaded to this peer.
        return ControlFlow::Break(PassResult::Skipped);
    };
    let Some(local_cache) = engine.local_cache(&slot.key) else {
        return ControlFlow::Break(PassResult::NotReady);
    };
    let Some(remote_cache) = twin.cache(&slot.key) else {
        return ControlFlow::Break(PassResult::NotReady);
    };
    ControlFlow::Continue(PassTarget {
        engine,
        key,
        slot,
        peer,
        twin,
        local_cache,
        remote_cache,
    })
}

/// Lets the pass go on only when both caches have listed; a remote watch failing for a while
/// is reported on the local object and fails the pass.
async fn check_caches(target: &PassTarget<'_>) -> Result<ControlFlow<PassResult>, String> {
    let PassTarget {
        local_cache,
        remote_cache,
        ..
    } = target;
    if !remote_cache.is_ready()
        && let Some(error) = remote_cache.failing_for(Duration::from_secs(5))
    {
        // Typically the peer does not let this peering read the kind (not accepted there):
        // say so on the object, and back off instead of polling the cache. A few seconds of
        // grace: a new twin namespace gets its RoleBinding from the peer's host shortly after
        // it is created.
        let note = format!(
            "cannot watch {} in namespace {} of cluster {}: {error}",
            target.slot.kind.kind, target.twin.remote, target.peer.identity.name
        );
        if let Some(local) = local_cache
            .store
            .get(&target.object_ref(&target.key.namespace))
        {
            publish(
                target.engine,
                &local,
                &target.slot.resource,
                EventType::Warning,
                reasons::FAILED,
                note.clone(),
            )
            .await;
        }
        return Err(note);
    }
    if !remote_cache.is_ready() && remote_cache.failing_for(Duration::ZERO).is_some() {
        return Ok(ControlFlow::Break(PassResult::WatchFailing));
    }
    if !local_cache.is_ready() || !remote_cache.is_ready() {
        return Ok(ControlFlow::Break(PassResult::NotReady));
    }
    Ok(ControlFlow::Continue(()))
}

/// Reads the local and the remote copy from the caches.
fn read_copies(target: &PassTarget<'_>) -> Copies {
    let local = target
        .local_cache
        .store
        .get(&target.object_ref(&target.key.namespace));
    let remote = target
        .remote_cache
        .store
        .get(&target.object_ref(&target.twin.remote));
    Copies {
        live_local: local.filter(|o| !o.is_deleting()),
        remote,
    }
}

/// Leaves a remote object that is not ours untouched: a conflict (reported on the local
/// object) when a local object wants its name, nothing otherwise.
async fn check_ownership(
    target: &PassTarget<'_>,
    live_local: Option<&CachedObject>,
    remote: Option<&CachedObject>,
) -> ControlFlow<PassResult> {
    let local_id = target.engine.inner.config.local.id.as_str();
    let peer_id = target.peer.identity.id.as_str();
    let Some(remote) = remote else {
        return ControlFlow::Continue(());
    };
    if remote.is_owned(KindRules::of(&target.slot.key), local_id, peer_id) {
        return ControlFlow::Continue(());
    }
    if let Some(local) = live_local {
        let note = format!(
            "{} {}/{} already exists in cluster {} and is not managed by this peering; \
             it is left untouched and reflection resumes when it is removed",
            target.slot.kind.kind, target.twin.remote, target.key.name, target.peer.identity.name
        );
        publish(
            target.engine,
            local,
            &target.slot.resource,
            EventType::Warning,
            reasons::FAILED,
            note,
        )
        .await;
        return ControlFlow::Break(PassResult::Conflict);
    }
    // Nothing local wants that name: the foreign object is simply not ours.
    ControlFlow::Break(PassResult::Unchanged)
}

/// Asks the plugin what the remote copy should be. Continues with the object to write;
/// breaks with how the pass ended when the plugin is busy, skips the object or fails under
/// failurePolicy Ignore.
async fn decide(
    target: &PassTarget<'_>,
    plugin: &Arc<ReflectorPlugin>,
    local: &CachedObject,
    remote: Option<&CachedObject>,
) -> Result<ControlFlow<PassResult, Value>, String> {
    let Some(outcome) = call_plugin(target, plugin, local).await else {
        return Ok(ControlFlow::Break(PassResult::Busy));
    };
    match outcome {
        Err(err) if target.slot.failure == FailureMode::Skip => {
            skip_on_failure(target, err, local, remote).await
        }
        Err(err) => {
            publish(
                target.engine,
                local,
                &target.slot.resource,
                EventType::Warning,
                reasons::FAILED,
                err.to_string(),
            )
            .await;
            Err(err.to_string())
        }
        Ok(Outcome::Skip(reason)) => skip_by_plugin(target, &reason, local, remote).await,
        Ok(Outcome::Apply(desired)) => Ok(ControlFlow::Continue(desired)),
    }
}

/// Calls the kind's plugin on the local object; `None` when no call slot is free soon.
async fn call_plugin(
    target: &PassTarget<'_>,
    plugin: &Arc<ReflectorPlugin>,
    local: &CachedObject,
) -> Option<Result<Outcome, PluginError>> {
    let PassTarget {
        engine, key, slot, ..
    } = target;
    let object = local.json(&slot.resource);
    let services = call_services(target, plugin);
    let call = ReflectCall {
        local_cluster: &engine.inner.config.local,
        remote_cluster: &target.peer.identity,
        remote_namespace: &target.twin.remote,
        services: &services,
    };
    let object_ref = PluginObjectRef {
        api_version: slot.resource.api_version.clone(),
        kind: slot.resource.kind.clone(),
        namespace: key.namespace.to_string(),
        name: key.name.to_string(),
    };
    // The call runs on the blocking pool, not on this worker: a guest may spin up to its CPU
    // limit (10 s at most), and on a one-CPU host the async workers must keep renewing the
    // leader Lease and serving the other kinds meanwhile. The thread hop costs a few
    // microseconds per call. A plugin runs at most as many calls as it has instances: when
    // none is free soon, the pass is deferred, so that the engine's workers do not all end
    // up waiting behind one slow plugin while other kinds' work waits in the queue.
    let call_slot = match plugin.try_call_slot() {
        Some(s) => s,
        None => tokio::time::timeout(BUSY_WAIT, plugin.call_slot())
            .await
            .ok()?,
    };
    Some(
        plugin
            .reflect_json_async(call_slot, &call, &object_ref, object)
            .await,
    )
}

/// The host services a call gets: the peer's, with reads recorded for this key when the
/// plugin declares that it reads other objects.
fn call_services(target: &PassTarget<'_>, plugin: &ReflectorPlugin) -> CallServices {
    let services = &target.peer.services;
    if plugin.manifest().reads.is_empty() {
        services.clone()
    } else {
        CallServices {
            reader: Arc::new(TrackingReader {
                inner: services.reader.clone(),
                index: target.engine.inner.reads.clone(),
                key: target.key.clone(),
            }),
            translator: services.translator.clone(),
        }
    }
}

/// failurePolicy Ignore: a failed call skips the object as if the plugin had said so.
async fn skip_on_failure(
    target: &PassTarget<'_>,
    err: PluginError,
    local: &CachedObject,
    remote: Option<&CachedObject>,
) -> Result<ControlFlow<PassResult, Value>, String> {
    let had_remote = remote.is_some();
    delete_remote(target, remote, Some(local)).await?;
    let note = format!(
        "{err}; failurePolicy Ignore: not reflected to cluster {}{}",
        target.peer.identity.name,
        if had_remote {
            " and its remote copy was removed"
        } else {
            ""
        }
    );
    publish_action(
        target.engine,
        local,
        &target.slot.resource,
        EventType::Warning,
        reasons::FAILED,
        "Skip",
        note,
    )
    .await;
    Ok(ControlFlow::Break(PassResult::Skipped))
}

/// The plugin decided not to reflect the object: its remote copy is removed.
async fn skip_by_plugin(
    target: &PassTarget<'_>,
    reason: &str,
    local: &CachedObject,
    remote: Option<&CachedObject>,
) -> Result<ControlFlow<PassResult, Value>, String> {
    let had_remote = remote.is_some();
    let result = delete_remote(target, remote, Some(local)).await?;
    if had_remote {
        let note = format!(
            "reflection to cluster {} disabled: {reason}",
            target.peer.identity.name
        );
        publish(
            target.engine,
            local,
            &target.slot.resource,
            EventType::Normal,
            reasons::DISABLED,
            note,
        )
        .await;
    }
    Ok(ControlFlow::Break(if result == PassResult::Deleted {
        result
    } else {
        PassResult::Skipped
    }))
}

/// Applies the host's rules to the plugin's output and writes it, unless the remote copy
/// already carries the same intent.
async fn write_if_needed(
    target: &PassTarget<'_>,
    mut desired: Value,
    remote: Option<&CachedObject>,
    local: &CachedObject,
) -> Result<PassResult, String> {
    KindRules::of(&target.slot.key).enforce(
        &mut desired,
        target
            .peer
            .data_path_up
            .load(std::sync::atomic::Ordering::SeqCst),
    );
    intent::stamp(&mut desired);
    if let Some(remote) = remote {
        let remote_json = remote.value(&target.slot.resource);
        if intent::up_to_date(&desired, &remote_json) {
            return Ok(PassResult::Unchanged);
        }
    }
    apply_remote(target, &desired, remote, local).await
}

impl PassTarget<'_> {
    /// The cache reference of the key's object in `namespace`.
    fn object_ref(&self, namespace: &str) -> ObjectRef<CachedObject> {
        ObjectRef::new_with(&self.key.name, self.slot.resource.clone()).within(namespace)
    }
}

/// Server-side applies the remote copy; a change the peer refuses in place replaces our copy.
async fn apply_remote(
    target: &PassTarget<'_>,
    desired: &Value,
    remote: Option<&CachedObject>,
    local: &CachedObject,
) -> Result<PassResult, String> {
    let PassTarget {
        engine, slot, peer, ..
    } = target;
    let namespace = target.twin.remote.as_str();
    let name: &str = &target.key.name;
    let api = Api::<DynamicObject>::namespaced_with(peer.client.clone(), namespace, &slot.resource);
    let params = PatchParams::apply(wire::REFLECTION_FIELD_MANAGER).force();
    engine.inner.metrics.write(&peer.identity.id, "apply");
    tracing::debug!(peer = %peer.identity.id, namespace, kind = %slot.kind.kind, %name, "applying remote copy");
    let applied = match api.patch(name, &params, &Patch::Apply(desired)).await {
        Ok(o) => o,
        Err(kube::Error::Api(status))
            if status.code == 422 && is_immutable(&status.message) && remote.is_some() =>
        {
            // A change the API server refuses in place (ClusterIP <-> headless, for example):
            // the remote copy is ours, so it is replaced. Clients in the peer see a new
            // ClusterIP, exactly as they would if the Service had been re-created locally.
            replace_remote(target, &api, desired, remote).await?
        }
        Err(err) => {
            let note = format!("reflection to cluster {} failed: {err}", peer.identity.name);
            publish(
                engine,
                local,
                &slot.resource,
                EventType::Warning,
                reasons::FAILED,
                note.clone(),
            )
            .await;
            return Err(note);
        }
    };
    let changed = remote.and_then(CachedObject::resource_version)
        != applied.metadata.resource_version.as_deref();
    if changed {
        let note = format!(
            "{} reflected to cluster {} (namespace {namespace})",
            slot.kind.kind, peer.identity.name
        );
        publish(
            engine,
            local,
            &slot.resource,
            EventType::Normal,
            reasons::SUCCESSFUL,
            note,
        )
        .await;
        Ok(PassResult::Applied)
    } else {
        Ok(PassResult::Unchanged)
    }
}

/// Replaces our remote copy, whose change the API server refuses in place: deletes it (UID
/// precondition) and applies `desired` again.
async fn replace_remote(
    target: &PassTarget<'_>,
    api: &Api<DynamicObject>,
    desired: &Value,
    remote: Option<&CachedObject>,
) -> Result<DynamicObject, String> {
    let PassTarget {
        engine, slot, peer, ..
    } = target;
    let namespace = target.twin.remote.as_str();
    let name: &str = &target.key.name;
    let params = PatchParams::apply(wire::REFLECTION_FIELD_MANAGER).force();
    let uid = remote.and_then(|r| r.uid().map(str::to_owned));
    engine.inner.metrics.write(&peer.identity.id, "delete");
    api.delete(
        name,
        &DeleteParams {
            preconditions: Some(Preconditions {
                uid,
                resource_version: None,
            }),
            ..DeleteParams::default()
        },
    )
    .await
    .map_err(|e| {
        format!(
            "replacing {} {namespace}/{name} in {}: delete failed: {e}",
            slot.kind.kind, peer.identity.name
        )
    })?;
    engine.inner.metrics.write(&peer.identity.id, "apply");
    api.patch(name, &params, &Patch::Apply(desired))
        .await
        .map_err(|e| {
            format!(
                "re-creating {} {namespace}/{name} in {}: {e}",
                slot.kind.kind, peer.identity.name
            )
        })
}

/// True when the API server refused a change because the field cannot change in place.
fn is_immutable(message: &str) -> bool {
    message.contains("immutable")
        || message.contains("may not change")
        || message.contains("may not be changed")
}

/// Deletes the remote copy if it exists and is ours, with a UID precondition so a copy
/// re-created meanwhile by someone else is never removed.
async fn delete_remote(
    target: &PassTarget<'_>,
    remote: Option<&CachedObject>,
    local: Option<&CachedObject>,
) -> Result<PassResult, String> {
    let PassTarget {
        engine, slot, peer, ..
    } = target;
    let namespace = target.twin.remote.as_str();
    let Some(remote) = remote else {
        return Ok(PassResult::Unchanged);
    };
    if !remote.is_owned(
        KindRules::of(&slot.key),
        &engine.inner.config.local.id,
        &peer.identity.id,
    ) {
        // Not ours: never deleted.
        return Ok(PassResult::Unchanged);
    }
    if remote.is_deleting() {
        return Ok(PassResult::Unchanged);
    }
    let name = remote.name().to_owned();
    let api = Api::<DynamicObject>::namespaced_with(peer.client.clone(), namespace, &slot.resource);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: remote.uid().map(str::to_owned),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    engine.inner.metrics.write(&peer.identity.id, "delete");
    tracing::debug!(peer = %peer.identity.id, namespace, kind = %slot.kind.kind, %name, "deleting remote copy");
    match api.delete(&name, &params).await {
        Ok(_) => Ok(PassResult::Deleted),
        // Already gone, or replaced by another object (precondition failed): nothing of ours
        // is left to delete.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(PassResult::Unchanged),
        Err(err) => {
            let note = format!(
                "deleting {} {namespace}/{name} in cluster {} failed: {err}",
                slot.kind.kind, peer.identity.name
            );
            if let Some(local) = local {
                publish(
                    engine,
                    local,
                    &slot.resource,
                    EventType::Warning,
                    reasons::FAILED_DELETION,
                    note.clone(),
                )
                .await;
            }
            Err(note)
        }
    }
}

/// Publishes an Event with the pass's usual action, `Reflect`.
async fn publish(
    engine: &Engine,
    object: &CachedObject,
    resource: &ApiResource,
    type_: EventType,
    reason: &str,
    note: String,
) {
    publish_action(engine, object, resource, type_, reason, "Reflect", note).await;
}

/// Publishes an Event. The recorder folds events with the same type, reason, action and object
/// version into one series that keeps the first note, so a different outcome on an unchanged
/// object needs its own action.
async fn publish_action(
    engine: &Engine,
    object: &CachedObject,
    resource: &ApiResource,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let reference = ObjectReference {
        api_version: Some(resource.api_version.clone()),
        kind: Some(resource.kind.clone()),
        name: Some(object.name().to_owned()),
        namespace: object.namespace().map(str::to_owned),
        uid: object.uid().map(str::to_owned),
        resource_version: object.resource_version().map(str::to_owned),
        field_path: None,
    };
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncate(note, 1000)),
        action: action.to_string(),
        secondary: None,
    };
    if engine.inner.events.try_send((event, reference)).is_err() {
        engine.inner.metrics.event_dropped();
        tracing::debug!("event backlog full: event dropped");
    }
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}
