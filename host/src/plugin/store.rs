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

/// Caps the total linear memory of one instance.
pub(crate) struct MemoryLimiter {
    cap: usize,
    /// Set when a growth was refused; read after a failed call.
    pub hit: bool,
}

impl MemoryLimiter {
    fn new(cap: usize) -> Self {
        Self { cap, hit: false }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = true;
            // Trapping (instead of returning -1 to the guest) makes the failure immediate and
            // typed; Rust guests would abort on allocation failure anyway.
            return Err(MemoryCapExceeded.into());
        }
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
