//! A loaded reflector plugin: manifest, limits and warm instances.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::bindings::reflector_world::{KindReflector, KindReflectorPre};
use super::bindings::wit;
use super::calls::{self, CallSlot, PluginSlots};
use super::capabilities::{AddressTranslatorRef, ObjectReaderRef};
use super::error::{LoadError, PluginError};
use super::limits::PluginLimits;
use super::memory::Reservation;
use super::pool::{self, InstancePool, Pooled};
use super::runtime::RuntimeShared;
use super::store::{self, CallScope, StoreState};
use super::types::{ClusterIdentity, KindRef, Manifest, ObjectRef, Outcome};
use crate::invariants::{self, Expectation};

/// The services host imports reach during a call, supplied by the caller.
#[derive(Clone)]
pub struct CallServices {
    /// The origin cluster's objects (`host.get-object`).
    pub reader: ObjectReaderRef,
    /// The peering's address mapping (`host.translate-address`).
    pub translator: AddressTranslatorRef,
}

/// Everything about one call except the object itself.
#[derive(Clone, Copy)]
pub struct ReflectCall<'a> {
    /// This cluster.
    pub local_cluster: &'a ClusterIdentity,
    /// The peer.
    pub remote_cluster: &'a ClusterIdentity,
    /// The twin namespace in the peer.
    pub remote_namespace: &'a str,
    /// Cache and translation for host imports.
    pub services: &'a CallServices,
}

impl ReflectCall<'_> {
    fn owned(self) -> OwnedCall {
        OwnedCall {
            local_cluster: self.local_cluster.clone(),
            remote_cluster: self.remote_cluster.clone(),
            remote_namespace: self.remote_namespace.to_string(),
            services: self.services.clone(),
        }
    }
}

/// A [`ReflectCall`] that can move to the thread running the call.
struct OwnedCall {
    local_cluster: ClusterIdentity,
    remote_cluster: ClusterIdentity,
    remote_namespace: String,
    services: CallServices,
}

impl OwnedCall {
    fn borrow(&self) -> ReflectCall<'_> {
        ReflectCall {
            local_cluster: &self.local_cluster,
            remote_cluster: &self.remote_cluster,
            remote_namespace: &self.remote_namespace,
            services: &self.services,
        }
    }
}

/// A reflector plugin ready to be called from many threads.
///
/// From async code call [`reflect_json_async`](Self::reflect_json_async) (or
/// [`reflect_async`](Self::reflect_async)): the guest runs on the blocking pool and the async
/// worker stays free (see `plugin/calls.rs` for why). The synchronous
/// [`reflect_json`](Self::reflect_json) runs the guest on the calling thread, for callers
/// that own their thread (tests, benchmarks, `liqoctl plugin test`).
pub struct ReflectorPlugin {
    shared: Arc<RuntimeShared>,
    name: Arc<str>,
    manifest: Manifest,
    digest: String,
    limits: PluginLimits,
    config: String,
    reads: Arc<[KindRef]>,
    pre: KindReflectorPre<StoreState>,
    pool: InstancePool<KindReflector>,
    /// One per instance: a call holds one while it runs, so instances ≤ slots.
    slots: PluginSlots,
    /// The plugin's share of the host's memory, released when the plugin is dropped.
    _memory: Reservation,
}

impl std::fmt::Debug for ReflectorPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReflectorPlugin")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ReflectorPlugin {
    pub(crate) fn start(
        shared: Arc<RuntimeShared>,
        source: &str,
        pre: KindReflectorPre<StoreState>,
        digest: String,
        limits: PluginLimits,
        config: String,
        memory: Reservation,
    ) -> Result<Arc<Self>, LoadError> {
        // The manifest is read from a throw-away instance: it must not depend on state.
        let start_err = |e: wasmtime::Error| LoadError::Start {
            plugin: source.to_string(),
            reason: format!("{e:#}"),
        };
        let mut store = store::new_store(
            &shared.engine,
            StoreState::new(Arc::from(source), Arc::from([]), limits.memory_bytes),
        );
        store.epoch_deadline_trap();
        store.set_epoch_deadline(pool::deadline_ticks(&limits, shared.epoch_tick));
        let bindings = pre.instantiate(&mut store).map_err(start_err)?;
        let manifest: Manifest = bindings
            .liqo_reflection_reflector()
            .call_manifest(&mut store)
            .map_err(start_err)?
            .into();
        manifest
            .validate()
            .map_err(|reason| LoadError::InvalidManifest {
                plugin: source.to_string(),
                reason,
            })?;
        Ok(Arc::new(Self {
            name: Arc::from(manifest.name.as_str()),
            reads: Arc::from(manifest.reads.clone()),
            manifest,
            digest,
            limits,
            config,
            pre,
            pool: InstancePool::new(shared.idle_for(&limits)),
            slots: PluginSlots::new(shared.slots_for(&limits)),
            _memory: memory,
            shared,
        }))
    }

    /// The plugin's name (from its manifest).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The manifest read at load.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// SHA-256 of the component bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Limits applied to each call.
    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// Number of warm instances waiting for calls.
    pub fn idle_instances(&self) -> usize {
        self.pool.idle()
    }

    /// Calls that may start now without waiting.
    pub fn free_slots(&self) -> usize {
        self.slots.available()
    }

    /// Reserves one of the plugin's call slots without waiting, or `None` when as many calls
    /// as it has instances are running. A caller with other work to do (the engine) defers
    /// the object instead of queueing behind a plugin that is slow or stuck at its CPU limit.
    pub fn try_call_slot(&self) -> Option<CallSlot> {
        self.slots.try_take()
    }

    /// Waits (asynchronously) for one of the plugin's call slots.
    pub async fn call_slot(&self) -> CallSlot {
        self.slots.take().await
    }

    /// True when this plugin reflects `kind`.
    pub fn reflects(&self, kind: &KindRef) -> bool {
        self.manifest.reflects.iter().any(|k| k.same_kind(kind))
    }

    /// The identity of `object`, which the host needs to check the plugin's output.
    fn object_ref(&self, object: &Value) -> Result<ObjectRef, PluginError> {
        ObjectRef::from_object(object).ok_or_else(|| PluginError::Rejected {
            plugin: self.name.to_string(),
            object: "<object without apiVersion, kind or name>".into(),
            message: "the host cannot reflect an object without apiVersion, kind and metadata.name"
                .into(),
        })
    }

    /// Reflects an object given as a parsed value.
    pub fn reflect(&self, call: &ReflectCall<'_>, object: &Value) -> Result<Outcome, PluginError> {
        let object_ref = self.object_ref(object)?;
        self.reflect_json(call, &object_ref, &object.to_string())
    }

    /// Like [`reflect`](Self::reflect), off the async workers (see
    /// [`reflect_json_async`](Self::reflect_json_async)).
    pub async fn reflect_async(
        self: &Arc<Self>,
        call: &ReflectCall<'_>,
        object: &Value,
    ) -> Result<Outcome, PluginError> {
        let object_ref = self.object_ref(object)?;
        let slot = self.call_slot().await;
        self.reflect_json_async(slot, call, &object_ref, object.to_string())
            .await
    }

    /// Reflects an object given as JSON text, in `slot` (one of this plugin's, see
    /// [`try_call_slot`](Self::try_call_slot)): the call, output checks included, runs on
    /// tokio's blocking pool under one of the runtime's call permits, and this future awaits
    /// it, so the async worker serves other tasks meanwhile. Must run inside a tokio runtime.
    ///
    /// Dropping the future does not stop the call: it runs to its end or its CPU limit, and
    /// then frees its slot and permit.
    pub async fn reflect_json_async(
        self: &Arc<Self>,
        slot: CallSlot,
        call: &ReflectCall<'_>,
        object: &ObjectRef,
        json: String,
    ) -> Result<Outcome, PluginError> {
        // A slot of another plugin would not bound this plugin's instances: take our own.
        let slot = if self.slots.owns(&slot) {
            slot
        } else {
            drop(slot);
            self.call_slot().await
        };
        let plugin = self.clone();
        let call = call.owned();
        let object = object.clone();
        let label = object.to_string();
        calls::run_blocking(&self.shared.calls, &self.name, &label, move || {
            let result = plugin.reflect_in_slot(&slot, &call.borrow(), &object, &json);
            drop(slot);
            result
        })
        .await
    }

    /// Reflects an object given as JSON text: calls the guest under its limits, then enforces
    /// the invariants on an `apply` decision.
    ///
    /// Runs the guest on the calling thread, after waiting (blocking) for a call slot: do not
    /// call it from async code, use [`reflect_json_async`](Self::reflect_json_async).
    pub fn reflect_json(
        &self,
        call: &ReflectCall<'_>,
        object: &ObjectRef,
        json: &str,
    ) -> Result<Outcome, PluginError> {
        let slot = self.slots.take_blocking();
        self.reflect_in_slot(&slot, call, object, json)
    }

    fn reflect_in_slot(
        &self,
        _slot: &CallSlot,
        call: &ReflectCall<'_>,
        object: &ObjectRef,
        json: &str,
    ) -> Result<Outcome, PluginError> {
        let started = Instant::now();
        let result = self
            .call_guest(call, object, json)
            .and_then(|decision| self.post_process(call, object, decision));
        let error = result.as_ref().err().map(PluginError::reason);
        self.shared
            .metrics
            .record(&self.name, started.elapsed(), error);
        result
    }

    fn checkout(&self, object: &ObjectRef) -> Result<Pooled<KindReflector>, PluginError> {
        if let Some(instance) = self.pool.take() {
            return Ok(instance);
        }
        let mut store = store::new_store(
            &self.shared.engine,
            StoreState::new(
                self.name.clone(),
                self.reads.clone(),
                self.limits.memory_bytes,
            ),
        );
        store.epoch_deadline_trap();
        store.set_epoch_deadline(pool::deadline_ticks(&self.limits, self.shared.epoch_tick));
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| PluginError::Unavailable {
                plugin: self.name.to_string(),
                object: object.to_string(),
                message: format!("{e:#}"),
            })?;
        Ok(Pooled { store, bindings })
    }

    fn call_guest(
        &self,
        call: &ReflectCall<'_>,
        object: &ObjectRef,
        json: &str,
    ) -> Result<wit::Decision, PluginError> {
        let mut instance = self.checkout(object)?;
        let ctx = wit::ReflectContext {
            local_cluster: call.local_cluster.into(),
            remote_cluster: call.remote_cluster.into(),
            local_namespace: object.namespace.clone(),
            remote_namespace: call.remote_namespace.to_string(),
            config: self.config.clone(),
        };
        {
            let state = instance.store.data_mut();
            state.scope = Some(CallScope {
                reader: call.services.reader.clone(),
                translator: call.services.translator.clone(),
                local_namespace: object.namespace.clone(),
            });
            state.limiter.hit = false;
        }
        instance
            .store
            .set_epoch_deadline(pool::deadline_ticks(&self.limits, self.shared.epoch_tick));
        let result = instance.bindings.liqo_reflection_reflector().call_reflect(
            &mut instance.store,
            &ctx,
            json,
        );
        instance.store.data_mut().scope = None;
        match result {
            Ok(Ok(decision)) => {
                self.pool.give(instance);
                Ok(decision)
            }
            Ok(Err(message)) => {
                self.pool.give(instance);
                Err(PluginError::Rejected {
                    plugin: self.name.to_string(),
                    object: object.to_string(),
                    message,
                })
            }
            // The instance is dropped here: a trapped instance refuses further calls.
            Err(err) => Err(pool::classify(
                err,
                &instance.store,
                &self.name,
                &object.to_string(),
                &self.limits,
            )),
        }
    }

    fn post_process(
        &self,
        call: &ReflectCall<'_>,
        object: &ObjectRef,
        decision: wit::Decision,
    ) -> Result<Outcome, PluginError> {
        let output = match decision {
            wit::Decision::Skip(reason) => return Ok(Outcome::Skip(reason)),
            wit::Decision::Apply(output) => output,
        };
        let expect = Expectation {
            api_version: &object.api_version,
            kind: &object.kind,
            name: &object.name,
            remote_namespace: call.remote_namespace,
            origin_cluster_id: &call.local_cluster.id,
            destination_cluster_id: &call.remote_cluster.id,
            reflect_status: self.manifest.reflect_status,
        };
        let (value, corrections) =
            invariants::enforce(&output, &expect).map_err(|source| PluginError::InvalidOutput {
                plugin: self.name.to_string(),
                object: object.to_string(),
                source,
            })?;
        if corrections.namespace_overridden.is_some() || corrections.ownership_labels_overridden {
            tracing::warn!(
                plugin = %self.name,
                object = %object,
                namespace = ?corrections.namespace_overridden,
                labels = corrections.ownership_labels_overridden,
                "plugin output corrected by the host"
            );
        }
        Ok(Outcome::Apply(value))
    }
}
