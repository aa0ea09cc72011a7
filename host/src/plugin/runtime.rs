//! The wasmtime engine, its linkers and the loading of components as plugins.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{mapper_world, reflector_world};
use super::compile_cache::{self, CompileCache};
use super::error::LoadError;
use super::limits::PluginLimits;
use super::mapper::NamespaceMapperPlugin;
use super::memory::{DEFAULT_HOST_MEMORY_RESERVE, MemoryLedger, container_memory_limit};
use super::metrics::PluginMetrics;
use super::reflector::ReflectorPlugin;
use super::store::StoreState;
use super::{WIT_PACKAGE, WIT_VERSION};

/// Settings of a [`PluginRuntime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Directory of the compile cache; `None` compiles in memory every time.
    pub cache_dir: Option<PathBuf>,
    /// Warm instances kept per plugin between calls (about the number of concurrent workers);
    /// never more than the plugin's own `max_instances`.
    pub max_idle_instances: usize,
    /// Granularity of CPU limits: the epoch advances once per tick.
    pub epoch_tick: Duration,
    /// Plugin calls (of all plugins together) that may run at once on the blocking pool (at
    /// least 2; see `plugin/calls.rs`). One plugin gets at most one less.
    pub max_concurrent_calls: usize,
    /// The memory limit of the host's container, which the plugins' memory budgets must fit
    /// in; `None`: no limit, budgets are not checked. Default: read from the cgroup
    /// ([`container_memory_limit`]).
    pub container_memory_limit: Option<u64>,
    /// Bytes of the container limit kept for the host itself, never budgeted to plugins.
    pub host_memory_reserve: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: default_cache_dir(),
            max_idle_instances: 8,
            epoch_tick: Duration::from_millis(5),
            max_concurrent_calls: 8,
            container_memory_limit: container_memory_limit(),
            host_memory_reserve: DEFAULT_HOST_MEMORY_RESERVE,
        }
    }
}

/// `$XDG_CACHE_HOME/liqo/components`, else `~/.cache/liqo/components`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("liqo").join("components"))
}

/// Shared by every plugin the runtime loaded.
pub(crate) struct RuntimeShared {
    pub engine: Engine,
    pub metrics: PluginMetrics,
    pub epoch_tick: Duration,
    pub max_idle_instances: usize,
    /// Calls running on the blocking pool, all plugins together (see `plugin/calls.rs`).
    pub calls: Arc<Semaphore>,
    pub max_concurrent_calls: usize,
    /// The plugins' memory budgets against the container limit.
    pub memory: Arc<MemoryLedger>,
    /// Held here, not by [`PluginRuntime`]: a call on the blocking pool holds its plugin, and
    /// so this, until it ends. Were the ticker stopped with the last `PluginRuntime` (the host
    /// shutting down), a guest spinning at that moment would never be interrupted, and the
    /// tokio runtime's shutdown would wait for its thread forever.
    _ticker: EpochTicker,
}

impl RuntimeShared {
    /// Calls a plugin with `limits` may run at once: its instances, but always one less than
    /// the runtime's permits, so that a plugin stuck at its CPU limit never holds them all.
    pub fn slots_for(&self, limits: &PluginLimits) -> usize {
        limits
            .max_instances
            .min(self.max_concurrent_calls.saturating_sub(1))
            .max(1)
    }

    /// Warm instances a plugin with `limits` keeps.
    pub fn idle_for(&self, limits: &PluginLimits) -> usize {
        self.max_idle_instances.min(self.slots_for(limits)).max(1)
    }
}

/// Owns the engine and loads plugins. Cheap to clone; plugins keep the engine alive.
#[derive(Clone)]
pub struct PluginRuntime {
    shared: Arc<RuntimeShared>,
    reflector_linker: Arc<Linker<StoreState>>,
    mapper_linker: Arc<Linker<StoreState>>,
    cache: Option<CompileCache>,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// Advances the engine's epoch on a background thread; stops when the runtime and every plugin
/// it loaded (so every call in flight) are dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> Result<Self, LoadError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| LoadError::Runtime(format!("cannot start the epoch thread: {e}")))?;
        Ok(Self { stop })
    }
}

fn engine_config() -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(256)
        .total_core_instances(1024)
        .total_memories(256)
        .total_tables(1024)
        .max_memory_size(PluginLimits::MAX_MEMORY_BYTES);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

impl PluginRuntime {
    /// Creates the engine, the linkers and the epoch thread.
    pub fn new(config: RuntimeConfig, metrics: PluginMetrics) -> Result<Self, LoadError> {
        let engine = Engine::new(&engine_config())
            .map_err(|e| LoadError::Runtime(format!("cannot create the wasm engine: {e:#}")))?;

        let mut reflector_linker = Linker::<StoreState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut reflector_linker)
            .and_then(|_| {
                reflector_world::KindReflector::add_to_linker::<_, HasSelf<_>>(
                    &mut reflector_linker,
                    |s| s,
                )
            })
            .map_err(|e| LoadError::Runtime(format!("cannot link host imports: {e:#}")))?;

        let mut mapper_linker = Linker::<StoreState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut mapper_linker)
            .and_then(|_| {
                mapper_world::NamespaceMapperPlugin::add_to_linker::<_, HasSelf<_>>(
                    &mut mapper_linker,
                    |s| s,
                )
            })
            .map_err(|e| LoadError::Runtime(format!("cannot link host imports: {e:#}")))?;

        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)?;
        let max_concurrent_calls = config.max_concurrent_calls.max(2);
        Ok(Self {
            shared: Arc::new(RuntimeShared {
                engine,
                metrics,
                epoch_tick: config.epoch_tick,
                max_idle_instances: config.max_idle_instances.max(1),
                calls: Arc::new(Semaphore::new(max_concurrent_calls)),
                max_concurrent_calls,
                memory: MemoryLedger::new(
                    config.container_memory_limit,
                    config.host_memory_reserve,
                ),
                _ticker: ticker,
            }),
            reflector_linker: Arc::new(reflector_linker),
            mapper_linker: Arc::new(mapper_linker),
            cache: config.cache_dir.map(CompileCache::new),
        })
    }

    /// The metrics every plugin of this runtime records into.
    pub fn metrics(&self) -> &PluginMetrics {
        &self.shared.metrics
    }

    /// The container memory limit the plugins' budgets are checked against (`None`: none).
    pub fn memory_limit(&self) -> Option<u64> {
        self.shared.memory.limit()
    }

    /// Bytes budgeted to the plugins loaded now (each plugin's `max_instances × memory`).
    pub fn memory_budgeted(&self) -> u64 {
        self.shared.memory.budgeted()
    }

    /// Loads a reflector plugin from component bytes. `source` names where it came from (for
    /// errors before the manifest is known); `config` is the JSON passed to every call.
    ///
    /// The plugin's memory budget is reserved first (before compiling): a plugin whose budget
    /// does not fit fails with [`LoadError::MemoryBudget`]. Versions loaded from the same
    /// `source` share one budget.
    pub fn load_reflector(
        &self,
        source: &str,
        bytes: &[u8],
        limits: PluginLimits,
        config: &str,
    ) -> Result<Arc<ReflectorPlugin>, LoadError> {
        let memory = self.shared.memory.reserve(source, &limits)?;
        let digest = compile_cache::digest(bytes);
        let component = self.compile(source, bytes, &digest)?;
        let pre = self
            .reflector_linker
            .instantiate_pre(&component)
            .map_err(|e| wrong_world(source, "kind-reflector", e))?;
        let pre = reflector_world::KindReflectorPre::new(pre)
            .map_err(|e| wrong_world(source, "kind-reflector", e))?;
        ReflectorPlugin::start(
            self.shared.clone(),
            source,
            pre,
            digest,
            limits,
            config_json(source, config)?,
            memory,
        )
    }

    /// Loads the namespace mapper plugin from component bytes, with its memory budget
    /// reserved as for [`load_reflector`](Self::load_reflector).
    pub fn load_namespace_mapper(
        &self,
        source: &str,
        bytes: &[u8],
        limits: PluginLimits,
    ) -> Result<Arc<NamespaceMapperPlugin>, LoadError> {
        let memory = self.shared.memory.reserve(source, &limits)?;
        let digest = compile_cache::digest(bytes);
        let component = self.compile(source, bytes, &digest)?;
        let pre = self
            .mapper_linker
            .instantiate_pre(&component)
            .map_err(|e| wrong_world(source, "namespace-mapper-plugin", e))?;
        let pre = mapper_world::NamespaceMapperPluginPre::new(pre)
            .map_err(|e| wrong_world(source, "namespace-mapper-plugin", e))?;
        Ok(NamespaceMapperPlugin::new(
            self.shared.clone(),
            source,
            pre,
            digest,
            limits,
            memory,
        ))
    }

    fn compile(&self, source: &str, bytes: &[u8], digest: &str) -> Result<Component, LoadError> {
        let engine = &self.shared.engine;
        let compiled = match &self.cache {
            Some(cache) => cache.load_or_compile(engine, bytes, digest),
            None => Component::new(engine, bytes),
        };
        let component = compiled.map_err(|e| LoadError::NotAComponent {
            plugin: source.to_string(),
            reason: format!("{:#}", e)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        })?;
        check_wit_version(engine, source, &component)?;
        Ok(component)
    }
}

fn config_json(source: &str, config: &str) -> Result<String, LoadError> {
    let config = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    serde_json::from_str::<serde_json::Value>(config).map_err(|e| LoadError::InvalidConfig {
        plugin: source.to_string(),
        reason: e.to_string(),
    })?;
    Ok(config.to_string())
}

fn wrong_world(source: &str, world: &'static str, err: wasmtime::Error) -> LoadError {
    LoadError::WrongWorld {
        plugin: source.to_string(),
        world,
        reason: format!("{err:#}"),
    }
}

/// Refuses components that import or export our package at another version, with a message
/// naming both versions (the linker's own error would only say an import is missing).
fn check_wit_version(
    engine: &Engine,
    source: &str,
    component: &Component,
) -> Result<(), LoadError> {
    let ty = component.component_type();
    let names = ty
        .imports(engine)
        .map(|(n, _)| n)
        .chain(ty.exports(engine).map(|(n, _)| n));
    for name in names {
        let Some(rest) = name
            .strip_prefix(WIT_PACKAGE)
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        let version = rest
            .split_once('@')
            .map(|(_, v)| v)
            .unwrap_or("(unversioned)");
        if version != WIT_VERSION {
            return Err(LoadError::WrongVersion {
                plugin: source.to_string(),
                found: format!("{WIT_PACKAGE}@{version}"),
                expected: format!("{WIT_PACKAGE}@{WIT_VERSION}"),
            });
        }
    }
    Ok(())
}
