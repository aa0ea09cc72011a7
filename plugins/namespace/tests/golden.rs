//! Golden cases: `tests/golden/<case>.input.json` (a NamespaceOffloading object) →
//! `<case>.expected.json` (`{"remoteName", "namespaceObject"}` or `{"error"}`); format in
//! plugins/README.md. `UPDATE_GOLDEN=1 cargo test -p liqo-plugin-namespace --test golden`
//! rewrites the expected files.

use liqo_plugin_namespace::{map_namespace, map_namespace_json};
use liqo_plugin_sdk::{golden, object};
use serde_json::Value;

#[test]
fn golden_cases() {
    // Read at run time (cargo sets it for tests): a test binary reused from a shared target
    // directory may have been compiled in another checkout.
    let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap())
        .join("tests/golden");
    golden::run_cases(dir, |case| {
        let ctx = &case.context;
        // The local namespace is the NamespaceOffloading's own namespace.
        let namespace =
            object::str_at(&case.input, &["metadata", "namespace"]).unwrap_or(&ctx.local_namespace);
        let spec = case.input.get("spec").cloned().unwrap_or(Value::Null);
        let outcome = map_namespace(&ctx.local_cluster, &ctx.remote_cluster, namespace, &spec);
        let from_text = map_namespace_json(
            &ctx.local_cluster,
            &ctx.remote_cluster,
            namespace,
            &spec.to_string(),
        );
        assert_eq!(
            from_text.map(|m| (
                m.remote_name,
                serde_json::from_str::<Value>(&m.namespace_object).unwrap()
            )),
            outcome.clone().map(|m| (m.remote_name, m.namespace_object)),
            "case {}: map_namespace_json and map_namespace disagree",
            case.name
        );
        Ok(golden::mapping_outcome(&outcome))
    });
}
