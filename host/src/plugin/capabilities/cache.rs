//! `host.get-object`: read access to the host's local cache, limited to the kinds a plugin
//! declared in its manifest and to the namespace of the object being reflected.

use super::super::types::KindRef;

/// A read-only view of the origin cluster's objects, provided by the reflection engine
/// (backed by its shared informer caches) or by tests and `liqoctl plugin test`.
pub trait ObjectReader: Send + Sync {
    /// Returns the object as JSON text, or `None` if it does not exist.
    fn get(&self, kind: &KindRef, namespace: &str, name: &str) -> Result<Option<String>, String>;
}

/// A reader that holds nothing, for calls that provide no cache.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObjects;

impl ObjectReader for NoObjects {
    fn get(&self, _: &KindRef, _: &str, _: &str) -> Result<Option<String>, String> {
        Ok(None)
    }
}

/// Checks a guest read against the manifest and the call, then performs it.
pub fn read(
    reader: &dyn ObjectReader,
    declared: &[KindRef],
    call_namespace: &str,
    kind: &KindRef,
    namespace: &str,
    name: &str,
) -> Result<Option<String>, String> {
    if !declared.iter().any(|d| d.same_kind(kind)) {
        return Err(format!(
            "reading {kind} is not allowed: the plugin manifest does not declare it in `reads`"
        ));
    }
    if namespace != call_namespace {
        return Err(format!(
            "reading from namespace {namespace:?} is not allowed: plugins may only read the \
             namespace of the object being reflected ({call_namespace:?})"
        ));
    }
    reader.get(kind, namespace, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service_kind() -> KindRef {
        KindRef {
            group: String::new(),
            version: "v1".into(),
            kind: "Service".into(),
            plural: "services".into(),
            namespaced: true,
        }
    }

    struct One;
    impl ObjectReader for One {
        fn get(&self, _: &KindRef, ns: &str, name: &str) -> Result<Option<String>, String> {
            Ok(Some(format!("{ns}/{name}")))
        }
    }

    #[test]
    fn allows_declared_kind_in_call_namespace() {
        let got = read(
            &One,
            &[service_kind()],
            "demo",
            &service_kind(),
            "demo",
            "svc",
        );
        assert_eq!(got, Ok(Some("demo/svc".into())));
    }

    #[test]
    fn refuses_undeclared_kind() {
        let err = read(&One, &[], "demo", &service_kind(), "demo", "svc").unwrap_err();
        assert!(err.contains("does not declare"), "{err}");
    }

    #[test]
    fn refuses_other_namespaces() {
        let err = read(
            &One,
            &[service_kind()],
            "demo",
            &service_kind(),
            "kube-system",
            "x",
        )
        .unwrap_err();
        assert!(err.contains("kube-system"), "{err}");
    }
}
