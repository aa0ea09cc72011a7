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

/// An endpoint as the remote cluster must reach it (`host.translated-endpoint`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TranslatedEndpoint {
    /// IP address the remote cluster connects to.
    pub address: String,
    /// Port the remote cluster connects to.
    pub port: u16,
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

    /// Translates an endpoint of the local Service `service_namespace/service_name` (the address
    /// of a backing pod and its target port; protocol `TCP`, `UDP` or `SCTP`) into the endpoint
    /// the remote cluster must use. Through a gateway both the address and the port change.
    ///
    /// The default translates the address with [`HostApi::translate_address`] and keeps the
    /// port (identity and CIDR translation), so a `HostApi` written before this function existed
    /// keeps compiling and behaving as it did.
    fn translate_endpoint(
        &self,
        service_namespace: &str,
        service_name: &str,
        address: &str,
        port: u16,
        protocol: &str,
    ) -> Result<TranslatedEndpoint, String> {
        let address = self.translate_address(address).map_err(|error| {
            let endpoint = endpoint_label(service_namespace, service_name, address, port, protocol);
            format!("cannot translate endpoint {endpoint}: {error}")
        })?;
        Ok(TranslatedEndpoint { address, port })
    }

    /// Writes a structured log line through the host's logger. The default does nothing.
    fn log(&self, level: LogLevel, message: &str, fields: &[(&str, &str)]) {
        let _ = (level, message, fields);
    }
}

/// `namespace/service address:port/protocol` (an IPv6 address in brackets): how translation
/// errors name an endpoint, the same text as the real host's.
pub fn endpoint_label(
    service_namespace: &str,
    service_name: &str,
    address: &str,
    port: u16,
    protocol: &str,
) -> String {
    if address.contains(':') {
        format!("{service_namespace}/{service_name} [{address}]:{port}/{protocol}")
    } else {
        format!("{service_namespace}/{service_name} {address}:{port}/{protocol}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host written before `translate_endpoint` existed: only the required functions.
    struct Prefix;

    impl HostApi for Prefix {
        fn get_object(&self, _: &KindRef, _: &str, _: &str) -> Result<Option<Value>, String> {
            Ok(None)
        }

        fn translate_address(&self, address: &str) -> Result<String, String> {
            match address.strip_prefix("10.200.") {
                Some(rest) => Ok(format!("10.201.{rest}")),
                None => Err(format!("{address} is outside the pod CIDR")),
            }
        }
    }

    #[test]
    fn default_translate_endpoint_translates_the_address_and_keeps_the_port() {
        assert_eq!(
            Prefix
                .translate_endpoint("shop", "web", "10.200.0.9", 8443, "TCP")
                .unwrap(),
            TranslatedEndpoint {
                address: "10.201.0.9".into(),
                port: 8443
            }
        );
        assert_eq!(
            Prefix
                .translate_endpoint("shop", "web", "fd00::1", 53, "UDP")
                .unwrap_err(),
            "cannot translate endpoint shop/web [fd00::1]:53/UDP: fd00::1 is outside the pod CIDR"
        );
    }
}
