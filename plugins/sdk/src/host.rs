//! The functions the host gives to plugins (`interface host`), as a trait.
//!
//! Plugin logic takes a `&dyn HostApi` so the same code runs natively against [`crate::FakeHost`]
//! (tests, benchmarks) and inside the component against the imported host functions.

use serde_json::Value;

use crate::types::KindRef;

/// Severity of a log line (`host.log-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin worked around.
    Warn,
    /// Something failed.
    Error,
}

/// What a plugin can ask of the host.
pub trait HostApi {
    /// Reads one object of a kind declared in the manifest's `reads` from the host's cache of
    /// the local cluster. `Ok(None)` when it does not exist; `Err` when the kind is not declared
    /// or the cache is unavailable.
    fn get_object(
        &self,
        kind: &KindRef,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, String>;

    /// Translates a local IP address into the address the remote cluster must use.
    fn translate_address(&self, address: &str) -> Result<String, String>;

    /// Writes a structured log line through the host's logger. The default does nothing.
    fn log(&self, level: LogLevel, message: &str, fields: &[(&str, &str)]) {
        let _ = (level, message, fields);
    }
}
