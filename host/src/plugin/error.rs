//! Typed errors of the plugin runtime. Every message names the plugin, and call errors name
//! the object and the limit, because they end up in Events users read.

use crate::invariants::InvalidOutput;

/// A component could not be loaded as a plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a WebAssembly component (a core module, or not wasm at all).
    #[error(
        "plugin {plugin}: not a WebAssembly component ({reason}); build it for wasm32-wasip2 with wit-bindgen"
    )]
    NotAComponent {
        /// Plugin name or source.
        plugin: String,
        /// What wasmtime said.
        reason: String,
    },
    /// The component targets another version of the WIT package.
    #[error(
        "plugin {plugin}: built against {found}, but this host implements {expected}; rebuild it against wit/ of this host"
    )]
    WrongVersion {
        /// Plugin name or source.
        plugin: String,
        /// The package and version the component uses.
        found: String,
        /// The package and version this host implements.
        expected: String,
    },
    /// The component does not implement the expected world (missing export, extra import).
    #[error("plugin {plugin}: does not implement world {world}: {reason}")]
    WrongWorld {
        /// Plugin name or source.
        plugin: String,
        /// The world the host expected.
        world: &'static str,
        /// What is missing or extra.
        reason: String,
    },
    /// The manifest the plugin returned is unusable.
    #[error("plugin {plugin}: invalid manifest: {reason}")]
    InvalidManifest {
        /// Plugin name or source.
        plugin: String,
        /// What is wrong.
        reason: String,
    },
    /// The plugin configuration is not valid JSON.
    #[error("plugin {plugin}: configuration is not valid JSON: {reason}")]
    InvalidConfig {
        /// Plugin name or source.
        plugin: String,
        /// The parser's message.
        reason: String,
    },
    /// Instantiating or calling `manifest` failed.
    #[error("plugin {plugin}: could not be started: {reason}")]
    Start {
        /// Plugin name or source.
        plugin: String,
        /// What failed.
        reason: String,
    },
    /// The plugin's memory budget (all its instances together) does not fit in what the
    /// host's container memory limit leaves for it.
    #[error(
        "plugin {plugin}: memory budget {budget_mib} MiB ({max_instances} instances × \
         {memory_mib} MiB) does not fit in the host's memory: the container memory limit is \
         {limit_mib} MiB, {reserve_mib} MiB of it is kept for the host and {others_mib} MiB is \
         budgeted to the other plugins ({others}), so {available_mib} MiB are left; lower \
         spec.limits.maxInstances or spec.limits.memoryMiB, remove another plugin, or raise the \
         memory limit of the liqo-host container"
    )]
    MemoryBudget {
        /// Plugin name or source.
        plugin: String,
        /// `max_instances × memory_mib`.
        budget_mib: u64,
        /// Instances the plugin may have.
        max_instances: usize,
        /// Memory cap of one instance.
        memory_mib: usize,
        /// The container memory limit.
        limit_mib: u64,
        /// Memory kept for the host itself.
        reserve_mib: u64,
        /// Budgets of the plugins loaded already, together.
        others_mib: u64,
        /// Those plugins with their budgets, for the message.
        others: String,
        /// What is left for this plugin.
        available_mib: u64,
    },
    /// The runtime itself could not be set up.
    #[error("plugin runtime: {0}")]
    Runtime(String),
}

/// A single plugin call failed. Nothing is written when a call fails.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    /// The call ran past its CPU budget and was interrupted.
    #[error("plugin {plugin} exceeded its CPU limit of {limit_ms} ms per call on {object}")]
    CpuLimit {
        /// Plugin name.
        plugin: String,
        /// The object being processed.
        object: String,
        /// The limit that was hit.
        limit_ms: u128,
    },
    /// The call tried to grow linear memory past the cap.
    #[error("plugin {plugin} exceeded its memory limit of {limit_mib} MiB on {object}")]
    MemoryLimit {
        /// Plugin name.
        plugin: String,
        /// The object being processed.
        object: String,
        /// The limit that was hit.
        limit_mib: usize,
    },
    /// The guest trapped (panic, unreachable, out-of-bounds access).
    #[error("plugin {plugin} crashed on {object}: {message}")]
    Trap {
        /// Plugin name.
        plugin: String,
        /// The object being processed.
        object: String,
        /// The trap description.
        message: String,
    },
    /// The plugin returned an error for this object.
    #[error("plugin {plugin} rejected {object}: {message}")]
    Rejected {
        /// Plugin name.
        plugin: String,
        /// The object being processed.
        object: String,
        /// The plugin's message.
        message: String,
    },
    /// The plugin's output breaks an invariant the host cannot repair.
    #[error("plugin {plugin} returned an invalid object for {object}: {source}")]
    InvalidOutput {
        /// Plugin name.
        plugin: String,
        /// The object being processed.
        object: String,
        /// What is wrong.
        source: InvalidOutput,
    },
    /// No instance could be created for the call (for example the instance pool is full), or
    /// the call could not be run (the host is shutting down).
    #[error("plugin {plugin} could not be instantiated for {object}: {message}")]
    Unavailable {
        /// Plugin name.
        plugin: String,
        /// The object being processed.
        object: String,
        /// Why.
        message: String,
    },
}

impl PluginError {
    /// A short, stable reason for metrics labels and Event reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::CpuLimit { .. } => "cpu_limit",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::Trap { .. } => "trap",
            Self::Rejected { .. } => "rejected",
            Self::InvalidOutput { .. } => "invalid_output",
            Self::Unavailable { .. } => "unavailable",
        }
    }
}
