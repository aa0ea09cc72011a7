//! The loaded namespace mapper plugin.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::bindings::mapper_world::{
    NamespaceMapperPlugin as MapperBindings, NamespaceMapperPluginPre,
};
use super::calls::{self, CallSlot, PluginSlots};
use super::capabilities::address::IdentityTranslation;
use super::capabilities::cache::NoObjects;
use super::error::PluginError;
use super::limits::PluginLimits;
use super::memory::Reservation;
use super::pool::{self, InstancePool, Pooled};
use super::runtime::RuntimeShared;
use super::store::{self, CallScope, StoreState};
use super::types::{ClusterIdentity, NamespaceMapping};
use crate::invariants;

/// The plugin that maps local namespaces to their remote twins. From async code call
/// [`map_namespace_async`](Self::map_namespace_async), which runs the guest off the async
/// workers, as [`ReflectorPlugin`](super::ReflectorPlugin) does.
pub struct NamespaceMapperPlugin {
    shared: Arc<RuntimeShared>,
    name: Arc<str>,
    digest: String,
    limits: PluginLimits,
    pre: NamespaceMapperPluginPre<StoreState>,
    pool: InstancePool<MapperBindings>,
    slots: PluginSlots,
    _memory: Reservation,
}

impl std::fmt::Debug for NamespaceMapperPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceMapperPlugin")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl NamespaceMapperPlugin {
    pub(crate) fn new(
        shared: Arc<RuntimeShared>,
        source: &str,
        pre: NamespaceMapperPluginPre<StoreState>,
        digest: String,
        limits: PluginLimits,
        memory: Reservation,
    ) -> Arc<Self> {
        Arc::new(Self {
            pool: InstancePool::new(shared.idle_for(&limits)),
            slots: PluginSlots::new(shared.slots_for(&limits)),
            shared,
            name: Arc::from(source),
            digest,
            limits,
            pre,
            _memory: memory,
        })
    }

    /// The name the plugin was loaded under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 of the component bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// [`map_namespace`](Self::map_namespace) on tokio's blocking pool: waits for a call slot
    /// and a runtime permit without holding a thread, and keeps the async worker free while
    /// the guest runs. Must run inside a tokio runtime.
    pub async fn map_namespace_async(
        self: &Arc<Self>,
        local: &ClusterIdentity,
        remote: &ClusterIdentity,
        namespace: &str,
        spec: &Value,
    ) -> Result<NamespaceMapping, PluginError> {
        let slot = self.slots.take().await;
        let plugin = self.clone();
        let (local, remote) = (local.clone(), remote.clone());
        let (namespace, spec) = (namespace.to_string(), spec.clone());
        let label = format!("Namespace {namespace}");
        calls::run_blocking(&self.shared.calls, &self.name, &label, move || {
            let result = plugin.map_in_slot(&slot, &local, &remote, &namespace, &spec);
            drop(slot);
            result
        })
        .await
    }

    /// Maps `namespace` for the peering `local` → `remote`. `spec` is the NamespaceOffloading
    /// spec. The host validates the remote name and adds the ownership labels.
    ///
    /// Runs the guest on the calling thread (after waiting, blocking, for a call slot): from
    /// async code use [`map_namespace_async`](Self::map_namespace_async).
    pub fn map_namespace(
        &self,
        local: &ClusterIdentity,
        remote: &ClusterIdentity,
        namespace: &str,
        spec: &Value,
    ) -> Result<NamespaceMapping, PluginError> {
        let slot = self.slots.take_blocking();
        self.map_in_slot(&slot, local, remote, namespace, spec)
    }

    fn map_in_slot(
        &self,
        _slot: &CallSlot,
        local: &ClusterIdentity,
        remote: &ClusterIdentity,
        namespace: &str,
        spec: &Value,
    ) -> Result<NamespaceMapping, PluginError> {
        let started = Instant::now();
        let result = self.call(local, remote, namespace, spec);
        let error = result.as_ref().err().map(PluginError::reason);
        self.shared
            .metrics
            .record(&self.name, started.elapsed(), error);
        result
    }

    fn call(
        &self,
        local: &ClusterIdentity,
        remote: &ClusterIdentity,
        namespace: &str,
        spec: &Value,
    ) -> Result<NamespaceMapping, PluginError> {
        let object = format!("Namespace {namespace}");
        let mut instance = match self.pool.take() {
            Some(i) => i,
            None => self.instantiate(&object)?,
        };
        {
            let state = instance.store.data_mut();
            state.scope = Some(CallScope {
                reader: Arc::new(NoObjects),
                translator: Arc::new(IdentityTranslation),
                local_namespace: namespace.to_string(),
            });
            state.limiter.hit = false;
        }
        instance
            .store
            .set_epoch_deadline(pool::deadline_ticks(&self.limits, self.shared.epoch_tick));
        let result = instance
            .bindings
            .liqo_reflection_namespace_mapper()
            .call_map_namespace(
                &mut instance.store,
                &local.into(),
                &remote.into(),
                namespace,
                &spec.to_string(),
            );
        instance.store.data_mut().scope = None;
        let mapping = match result {
            Ok(Ok(mapping)) => {
                self.pool.give(instance);
                mapping
            }
            Ok(Err(message)) => {
                self.pool.give(instance);
                return Err(PluginError::Rejected {
                    plugin: self.name.to_string(),
                    object,
                    message,
                });
            }
            Err(err) => {
                return Err(pool::classify(
                    err,
                    &instance.store,
                    &self.name,
                    &object,
                    &self.limits,
                ));
            }
        };
        let invalid = |source| PluginError::InvalidOutput {
            plugin: self.name.to_string(),
            object: object.clone(),
            source,
        };
        let value = invariants::enforce_namespace(
            &mapping.namespace_object,
            &mapping.remote_name,
            &local.id,
            &remote.id,
        )
        .map_err(invalid)?;
        Ok(NamespaceMapping {
            remote_name: mapping.remote_name,
            namespace_object: value,
        })
    }

    fn instantiate(&self, object: &str) -> Result<Pooled<MapperBindings>, PluginError> {
        let mut store = store::new_store(
            &self.shared.engine,
            StoreState::new(self.name.clone(), Arc::from([]), self.limits.memory_bytes),
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
}
