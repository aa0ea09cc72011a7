//! An in-memory [`HostApi`] for native tests and benchmarks.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use serde_json::Value;

use crate::cidr::CidrMap;
use crate::host::{HostApi, LogLevel, TranslatedEndpoint, endpoint_label};
use crate::object;
use crate::types::KindRef;

/// Cache key of an object: API group, kind, namespace, name. The version is deliberately not part
/// of it: all versions of a kind are views of the same stored object.
type ObjectKey = (String, String, String, String);

type TranslateFn = Box<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// How [`FakeHost`] answers `translate_address` and `translate_endpoint`.
enum Translation {
    /// Every address translates to itself.
    Identity,
    /// CIDR remapping; addresses outside every mapping are unchanged.
    Cidr(CidrMap),
    /// A test-provided function.
    Custom(TranslateFn),
    /// Gateway mode: every IP address becomes the gateway's, every endpoint the gateway's
    /// address and port (like the real host's `GatewayTranslation`).
    Gateway(SocketAddr),
}

/// One line written through [`HostApi::log`], recorded by [`FakeHost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Severity.
    pub level: LogLevel,
    /// Message.
    pub message: String,
    /// Key/value fields.
    pub fields: Vec<(String, String)>,
}

/// A fake host: a map of cached objects, an address translation (identity by default), an
/// optional list of readable kinds (like the real host's manifest `reads` check), and a record of
/// log lines.
pub struct FakeHost {
    objects: BTreeMap<ObjectKey, Value>,
    translation: Translation,
    allowed_reads: Option<Vec<KindRef>>,
    logs: Mutex<Vec<LogRecord>>,
}

impl Default for FakeHost {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeHost {
    /// An empty cache, identity translation, every kind readable.
    pub fn new() -> Self {
        Self {
            objects: BTreeMap::new(),
            translation: Translation::Identity,
            allowed_reads: None,
            logs: Mutex::new(Vec::new()),
        }
    }

    /// Adds an object to the cache. Its key comes from its `apiVersion`, `kind`,
    /// `metadata.namespace` and `metadata.name`; an object lacking `apiVersion`, `kind` or `name`
    /// is an error.
    pub fn insert_object(&mut self, object: Value) -> Result<(), String> {
        let api_version =
            object::str_at(&object, &["apiVersion"]).ok_or("cached object has no apiVersion")?;
        let kind = object::str_at(&object, &["kind"]).ok_or("cached object has no kind")?;
        let name = object::str_at(&object, &["metadata", "name"])
            .ok_or("cached object has no metadata.name")?;
        let namespace = object::str_at(&object, &["metadata", "namespace"]).unwrap_or_default();
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        let key = (
            group.to_owned(),
            kind.to_owned(),
            namespace.to_owned(),
            name.to_owned(),
        );
        self.objects.insert(key, object);
        Ok(())
    }

    /// Builder form of [`FakeHost::insert_object`]. Panics on an object without identity, which
    /// is a bug in the test that builds it.
    pub fn with_object(mut self, object: Value) -> Self {
        if let Err(error) = self.insert_object(object) {
            panic!("FakeHost::with_object: {error}");
        }
        self
    }

    /// Translates addresses with a CIDR map.
    pub fn with_cidr_map(mut self, map: CidrMap) -> Self {
        self.translation = Translation::Cidr(map);
        self
    }

    /// Translates addresses with a function (for example one that fails on purpose).
    pub fn with_translation(
        mut self,
        translate: impl Fn(&str) -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        self.translation = Translation::Custom(Box::new(translate));
        self
    }

    /// Gateway mode: every address translates to the gateway's IP and every endpoint to the
    /// gateway's IP and port, as the real host does when the peer reaches this cluster through
    /// its gateway. `endpoint` is `IP:PORT` (`[IPv6]:PORT`); panics otherwise, which is a bug in
    /// the test that builds it (see [`FakeHost::with_gateway_addr`]).
    pub fn with_gateway(self, endpoint: &str) -> Self {
        match endpoint.parse::<SocketAddr>() {
            Ok(endpoint) => self.with_gateway_addr(endpoint),
            Err(_) => panic!("FakeHost::with_gateway: {endpoint:?} is not IP:PORT"),
        }
    }

    /// [`FakeHost::with_gateway`] with a parsed endpoint.
    pub fn with_gateway_addr(mut self, endpoint: SocketAddr) -> Self {
        self.translation = Translation::Gateway(endpoint);
        self
    }

    /// Refuses `get_object` for kinds other than these, as the real host does for kinds missing
    /// from the manifest's `reads`.
    pub fn with_allowed_reads(mut self, kinds: Vec<KindRef>) -> Self {
        self.allowed_reads = Some(kinds);
        self
    }

    /// The log lines written so far.
    pub fn logs(&self) -> Vec<LogRecord> {
        self.logs
            .lock()
            .map(|logs| logs.clone())
            .unwrap_or_default()
    }
}

impl HostApi for FakeHost {
    fn get_object(
        &self,
        kind: &KindRef,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, String> {
        if let Some(allowed) = &self.allowed_reads {
            let declared = allowed
                .iter()
                .any(|candidate| candidate.group == kind.group && candidate.kind == kind.kind);
            if !declared {
                return Err(format!(
                    "kind {}/{} is not declared in the plugin manifest's reads",
                    kind.api_version(),
                    kind.kind
                ));
            }
        }
        let key = (
            kind.group.clone(),
            kind.kind.clone(),
            namespace.to_owned(),
            name.to_owned(),
        );
        Ok(self.objects.get(&key).cloned())
    }

    fn translate_address(&self, address: &str) -> Result<String, String> {
        match &self.translation {
            Translation::Identity => Ok(address.to_owned()),
            Translation::Cidr(map) => map.translate(address),
            Translation::Custom(translate) => translate(address),
            Translation::Gateway(gateway) => {
                address
                    .parse::<IpAddr>()
                    .map_err(|_| format!("{address:?} is not an IP address"))?;
                Ok(gateway.ip().to_string())
            }
        }
    }

    fn translate_endpoint(
        &self,
        service_namespace: &str,
        service_name: &str,
        address: &str,
        port: u16,
        protocol: &str,
    ) -> Result<TranslatedEndpoint, String> {
        let Translation::Gateway(gateway) = &self.translation else {
            return Ok(TranslatedEndpoint {
                address: self.translate_address(address).map_err(|error| {
                    let endpoint =
                        endpoint_label(service_namespace, service_name, address, port, protocol);
                    format!("cannot translate endpoint {endpoint}: {error}")
                })?,
                port,
            });
        };
        // Same text as the real host's gateway translation, so golden cases agree through wasm.
        if address.parse::<IpAddr>().is_err() {
            let endpoint = endpoint_label(service_namespace, service_name, address, port, protocol);
            return Err(format!(
                "cannot translate endpoint {endpoint} through the gateway {gateway}: {address:?} is not an IP address"
            ));
        }
        Ok(TranslatedEndpoint {
            address: gateway.ip().to_string(),
            port: gateway.port(),
        })
    }

    fn log(&self, level: LogLevel, message: &str, fields: &[(&str, &str)]) {
        let record = LogRecord {
            level,
            message: message.to_owned(),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        if let Ok(mut logs) = self.logs.lock() {
            logs.push(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::types::kinds;

    fn service(namespace: &str, name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}})
    }

    #[test]
    fn returns_cached_objects_by_kind_namespace_and_name() {
        let host = FakeHost::new().with_object(service("demo", "web"));
        assert_eq!(
            host.get_object(&kinds::service(), "demo", "web").unwrap(),
            Some(service("demo", "web"))
        );
        assert_eq!(
            host.get_object(&kinds::service(), "other", "web").unwrap(),
            None
        );
        assert_eq!(
            host.get_object(&kinds::endpoint_slice(), "demo", "web")
                .unwrap(),
            None
        );
    }

    #[test]
    fn refuses_undeclared_reads() {
        let host = FakeHost::new().with_allowed_reads(vec![kinds::service()]);
        assert!(host.get_object(&kinds::service(), "demo", "web").is_ok());
        let error = host
            .get_object(&kinds::endpoint_slice(), "demo", "web")
            .unwrap_err();
        assert!(error.contains("not declared"), "{error}");
    }

    #[test]
    fn translation_modes() {
        assert_eq!(
            FakeHost::new().translate_address("10.0.0.1").unwrap(),
            "10.0.0.1"
        );
        let cidr = FakeHost::new()
            .with_cidr_map(CidrMap::from_pairs([("10.0.0.0/8", "11.0.0.0/8")]).unwrap());
        assert_eq!(cidr.translate_address("10.0.0.1").unwrap(), "11.0.0.1");
        let failing =
            FakeHost::new().with_translation(|address| Err(format!("no route for {address}")));
        assert_eq!(
            failing.translate_address("10.0.0.1").unwrap_err(),
            "no route for 10.0.0.1"
        );
    }

    #[test]
    fn endpoint_translation_modes() {
        let endpoint = |host: &FakeHost, address: &str, port: u16| {
            host.translate_endpoint("liqo-demo", "flights", address, port, "TCP")
        };
        let at = |address: &str, port: u16| TranslatedEndpoint {
            address: address.to_owned(),
            port,
        };
        // Identity and CIDR: the address as translate_address gives it, the same port.
        assert_eq!(
            endpoint(&FakeHost::new(), "10.0.0.1", 8080).unwrap(),
            at("10.0.0.1", 8080)
        );
        let cidr = FakeHost::new()
            .with_cidr_map(CidrMap::from_pairs([("10.0.0.0/8", "11.0.0.0/8")]).unwrap());
        assert_eq!(
            endpoint(&cidr, "10.0.0.1", 8080).unwrap(),
            at("11.0.0.1", 8080)
        );
        let failing =
            FakeHost::new().with_translation(|address| Err(format!("no route for {address}")));
        assert_eq!(
            endpoint(&failing, "10.0.0.1", 8080).unwrap_err(),
            "cannot translate endpoint liqo-demo/flights 10.0.0.1:8080/TCP: no route for 10.0.0.1"
        );
        // Gateway: every endpoint is the gateway's address and port.
        let gateway = FakeHost::new().with_gateway("10.96.0.50:7901");
        assert_eq!(
            endpoint(&gateway, "10.0.0.1", 8080).unwrap(),
            at("10.96.0.50", 7901)
        );
        assert_eq!(
            endpoint(&gateway, "10.0.0.2", 9090).unwrap(),
            at("10.96.0.50", 7901)
        );
        assert_eq!(gateway.translate_address("10.0.0.1").unwrap(), "10.96.0.50");
        assert_eq!(
            endpoint(&gateway, "pod-a", 8080).unwrap_err(),
            "cannot translate endpoint liqo-demo/flights pod-a:8080/TCP through the gateway \
             10.96.0.50:7901: \"pod-a\" is not an IP address"
        );
        let v6 = FakeHost::new().with_gateway("[fd00::50]:7901");
        assert_eq!(
            endpoint(&v6, "fd00:1::5", 80).unwrap(),
            at("fd00::50", 7901)
        );
    }

    #[test]
    #[should_panic(expected = "is not IP:PORT")]
    fn gateway_must_be_ip_and_port() {
        let _ = FakeHost::new().with_gateway("10.96.0.50");
    }

    #[test]
    fn records_logs() {
        let host = FakeHost::new();
        host.log(LogLevel::Info, "hello", &[("k", "v")]);
        assert_eq!(
            host.logs(),
            vec![LogRecord {
                level: LogLevel::Info,
                message: "hello".into(),
                fields: vec![("k".into(), "v".into())]
            }]
        );
    }
}
