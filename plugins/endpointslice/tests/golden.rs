//! Golden cases: `tests/golden/<case>.input.json` → `<case>.expected.json` (format in
//! plugins/README.md). `UPDATE_GOLDEN=1 cargo test -p liqo-plugin-endpointslice --test golden`
//! rewrites the expected files.

use liqo_plugin_endpointslice::{manifest, reflect, reflect_json};
use liqo_plugin_sdk::{Decision, DecisionJson, golden};

#[test]
fn golden_cases() {
    // Read at run time (cargo sets it for tests): a test binary reused from a shared target
    // directory may have been compiled in another checkout.
    let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap())
        .join("tests/golden");
    golden::run_cases(dir, |case| {
        let host = case.context.fake_host(manifest().reads)?;
        let ctx = case.context.reflect_context();
        let outcome = reflect(&host, &ctx, &case.input);
        // The JSON entry point (what the component runs) must agree with the Value one.
        let from_text =
            reflect_json(&host, &ctx, &case.input.to_string()).map(|decision| match decision {
                DecisionJson::Apply(text) => {
                    Decision::Apply(serde_json::from_str(&text).expect("plugin output is JSON"))
                }
                DecisionJson::Skip(reason) => Decision::Skip(reason),
            });
        assert_eq!(
            from_text, outcome,
            "case {}: reflect_json and reflect disagree",
            case.name
        );
        Ok(golden::reflect_outcome(&outcome))
    });
}
