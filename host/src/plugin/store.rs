//! Per-instance state: WASI context (with nothing granted), the memory limiter, and the
//! per-call scope through which host imports reach the engine's cache and translator.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{wit, wit_host};
use super::capabilities::{self, AddressTranslatorRef, ObjectReaderRef};
use super::types::KindRef;

/// What host imports may touch during one call. Set before the call, cleared after, so a
/// pooled instance never keeps a reference to a previous call's services.
pub(crate) struct CallScope {
    pub reader: ObjectReaderRef,
    pub translator: AddressTranslatorRef,
    pub local_namespace: String,
}

/// The data of one instance's store.
pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub plugin: Arc<str>,
    pub reads: Arc<[KindRef]>,
    pub scope: Option<CallScope>,
}

impl StoreState {
    pub fn new(plugin: Arc<str>, reads: Arc<[KindRef]>, memory_bytes: usize) -> Self {
        // No preopened directories, no environment, no arguments, no network, stdio to the
        // void: a plugin gets what Rust's std needs to start and nothing else.
        let wasi = WasiCtxBuilder::new()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_bytes),
            plugin,
            reads,
            scope: None,
        }
    }
}

/// Creates a store with the memory limiter installed.
pub(crate) fn new_store(engine: &wasmtime::Engine, state: StoreState) -> Store<StoreState> {
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Marker error raised inside the guest's `memory.grow` when the cap is hit, so the call's
/// error can be classified without parsing messages.
#[derive(Debug)]
pub(crate) struct MemoryCapExceeded;

impl std::fmt::Display for MemoryCapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("linear memory cap exceeded")
    }
}

impl std::error::Error for MemoryCapExceeded {}

/// Caps the total linear memory of one instance: all the memories of its store together (a
/// component may have several core instances with a memory each), so that the plugin's budget
/// (`max_instances × cap`) really bounds what its instances hold.
pub(crate) struct MemoryLimiter {
    cap: usize,
    /// Bytes of all the store's memories. wasmtime reports each memory's creation (from 0)
    /// and growth here, and linear memories never shrink, so this is exact.
    used: usize,
    /// Set when a growth was refused; read after a failed call.
    pub hit: bool,
}

impl MemoryLimiter {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            used: 0,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let used = self.used.saturating_sub(current).saturating_add(desired);
        if used > self.cap {
            self.hit = true;
            // Trapping (instead of returning -1 to the guest) makes the failure immediate and
            // typed; Rust guests would abort on allocation failure anyway.
            return Err(MemoryCapExceeded.into());
        }
        if maximum.is_some_and(|max| desired > max) {
            // Past the memory's own maximum wasmtime refuses the growth (`memory.grow` returns
            // -1): nothing to count.
            return Ok(false);
        }
        self.used = used;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl wit::Host for StoreState {}

impl wit_host::Host for StoreState {
    fn log(&mut self, level: wit_host::LogLevel, message: String, fields: Vec<(String, String)>) {
        capabilities::log::emit(&self.plugin, level, &message, &fields);
    }

    fn get_object(
        &mut self,
        kind: wit::KindRef,
        namespace: String,
        name: String,
    ) -> Result<Option<String>, String> {
        let scope = self
            .scope
            .as_ref()
            .ok_or_else(|| "get-object is only available during reflect".to_string())?;
        capabilities::cache::read(
            scope.reader.as_ref(),
            &self.reads,
            &scope.local_namespace,
            &KindRef::from(kind),
            &namespace,
            &name,
        )
    }

    fn translate_address(&mut self, address: String) -> Result<String, String> {
        let scope = self
            .scope
            .as_ref()
            .ok_or_else(|| "translate-address is only available during reflect".to_string())?;
        scope.translator.translate(&address)
    }

    fn translate_endpoint(
        &mut self,
        service_namespace: String,
        service_name: String,
        address: String,
        port: u16,
        protocol: String,
    ) -> Result<wit_host::TranslatedEndpoint, String> {
        let scope = self
            .scope
            .as_ref()
            .ok_or_else(|| "translate-endpoint is only available during reflect".to_string())?;
        let translated =
            scope
                .translator
                .translate_endpoint(&capabilities::address::EndpointRef {
                    namespace: &service_namespace,
                    service: &service_name,
                    address: &address,
                    port,
                    protocol: &protocol,
                })?;
        Ok(wit_host::TranslatedEndpoint {
            address: translated.address,
            port: translated.port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn the_cap_covers_every_memory_of_the_instance() {
        let mut limiter = MemoryLimiter::new(16 * MIB);
        // Two memories created at 6 MiB each: 12 MiB in all.
        assert!(limiter.memory_growing(0, 6 * MIB, None).unwrap());
        assert!(limiter.memory_growing(0, 6 * MIB, None).unwrap());
        // The first grows by 4 MiB: 16 MiB, at the cap.
        assert!(limiter.memory_growing(6 * MIB, 10 * MIB, None).unwrap());
        assert!(!limiter.hit);
        // The second cannot grow any more, although it alone is far below the cap.
        assert!(limiter.memory_growing(6 * MIB, 7 * MIB, None).is_err());
        assert!(limiter.hit);
        assert_eq!(limiter.used, 16 * MIB);
    }

    #[test]
    fn growth_past_a_memory_maximum_is_not_counted() {
        let mut limiter = MemoryLimiter::new(16 * MIB);
        assert!(!limiter.memory_growing(0, 2 * MIB, Some(MIB)).unwrap());
        assert_eq!(limiter.used, 0);
        assert!(!limiter.hit);
    }
}
