//! Golden cases: for every `testdata/<case>.input.json` (a local object as the API server
//! serves it), `testdata/<case>.expected.json` is what the plugin returns, before the host's
//! invariants: the remote object, `{"skip": "<reason>"}` or `{"error": "<message>"}`.
//!
//! An optional `testdata/<case>.context.json` sets the call's context, every key optional:
//! `{"localCluster": "london", "remoteCluster": "newyork", "localNamespace": "default",
//! "remoteNamespace": "default", "config": {...}}` (namespaces default to the object's).
//!
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the expected files from the output.

use std::fs;
use std::path::{Path, PathBuf};

use liqo_plugin_widget::transform::{self, Context, Decision};
use serde_json::{Value, json};

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path);
    let text = text.unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

fn context(path: &Path, input: &Value) -> Context {
    let given = if path.exists() {
        read_json(path)
    } else {
        json!({})
    };
    let text = |key: &str, default: &str| {
        given
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    let namespace = input
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let local_namespace = text("localNamespace", namespace);
    Context {
        local_cluster_id: text("localCluster", "london"),
        remote_cluster_id: text("remoteCluster", "newyork"),
        remote_namespace: text("remoteNamespace", &local_namespace),
        local_namespace,
        config: given.get("config").cloned().unwrap_or_else(|| json!({})),
    }
}

fn outcome(result: Result<Decision, String>) -> Value {
    match result {
        Ok(Decision::Apply(object)) => object,
        Ok(Decision::Skip(reason)) => json!({ "skip": reason }),
        Err(message) => json!({ "error": message }),
    }
}

#[test]
fn golden_cases() {
    let dir = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("testdata");
    let mut inputs: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.to_string_lossy().ends_with(".input.json"))
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no *.input.json in {}", dir.display());

    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for input_path in &inputs {
        let case = input_path.to_string_lossy().replace(".input.json", "");
        let input = read_json(input_path);
        let ctx = context(Path::new(&format!("{case}.context.json")), &input);
        let actual = outcome(transform::reflect(&ctx, &input));
        let expected_path = PathBuf::from(format!("{case}.expected.json"));
        if update {
            let text = serde_json::to_string_pretty(&actual).expect("JSON serializes") + "\n";
            fs::write(&expected_path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", expected_path.display()));
            continue;
        }
        if !expected_path.exists() {
            failures.push(format!(
                "{}: missing; run UPDATE_GOLDEN=1 cargo test --test golden",
                expected_path.display()
            ));
            continue;
        }
        let expected = read_json(&expected_path);
        if expected != actual {
            failures.push(format!(
                "{}:\n  expected: {expected}\n  actual:   {actual}",
                expected_path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
