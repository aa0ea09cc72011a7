//! The loaded namespace mapper plugin.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::bindings::mapper_world::{
    NamespaceMapperPlugin as MapperBindings, NamespaceMapperPluginPre,
};
use super::capabilities::address::IdentityTranslation;
use super::capabilities::cache::NoObjects;
use super::error::PluginError;
use super::limits::PluginLimits;
use super::pool::{self, InstancePool, Pooled};
use super::runtime::RuntimeShared;
use super::store::{self, CallScope, StoreState};
use super::types::{ClusterIdentity, NamespaceMapping};
use crate::invariants;

/// The plugin that maps local namespaces to their remote twins.
pub struct NamespaceMapperPlugin {
    shared: Arc<RuntimeShared>,
    name: Arc<str>,
    digest: String,
    limits: PluginLimits,
    pre: NamespaceMapperPluginPre<StoreState>,
    pool: InstancePool<MapperBindings>,
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
    ) -> Arc<Self> {
        let max_idle = shared.max_idle_instances;
        Arc::new(Self {
            shared,
            name: Arc::from(source),
            digest,
            limits,
            pre,
            pool: InstancePool::new(max_idle),
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

    /// Maps `namespace` for the peering `local` → `remote`. `spec` is the NamespaceOffloading
    /// spec. The host validates the remote name and adds the ownership labels.
    pub fn map_namespace(
        &self,
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
