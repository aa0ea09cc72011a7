//! An in-memory [`HostApi`] for native tests and benchmarks.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::Value;

use crate::cidr::CidrMap;
use crate::host::{HostApi, LogLevel};
use crate::object;
use crate::types::KindRef;

/// Cache key of an object: API group, kind, namespace, name. The version is deliberately not part
/// of it: all versions of a kind are views of the same stored object.
type ObjectKey = (String, String, String, String);

type TranslateFn = Box<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// How [`FakeHost`] answers `translate_address`.
enum Translation {
    /// Every address translates to itself.
    Identity,
    /// CIDR remapping; addresses outside every mapping are unchanged.
    Cidr(CidrMap),
    /// A test-provided function.
    Custom(TranslateFn),
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
        }
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
