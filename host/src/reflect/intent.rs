//! Deciding whether a write is needed, without remembering anything between restarts.
//!
//! Every applied object carries an annotation with a hash of the intent (the object the host
//! applies, before the annotation is added). A write is needed when the hash on the remote copy
//! differs (the intent changed: fields added, changed or removed) or when the remote copy no
//! longer contains the intent (someone edited it: drift). Otherwise the host does nothing, so at
//! steady state, and after a restart, it makes no writes.

use crate::api::wire::INTENT_HASH_ANNOTATION;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// A stable hash of an object (serde_json maps are ordered, so serialization is canonical).
pub fn intent_hash(intent: &Value) -> String {
    let digest = Sha256::digest(intent.to_string().as_bytes());
    hex::encode(&digest[..12])
}

/// Adds the hash annotation to the intent; returns the hash.
pub fn stamp(intent: &mut Value) -> String {
    let hash = intent_hash(intent);
    if let Some(meta) = intent.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(INTENT_HASH_ANNOTATION.into(), Value::String(hash.clone()));
        }
    }
    hash
}

/// True when the remote copy already reflects the stamped intent: same hash annotation, and
/// every field of the intent present with the same value.
pub fn up_to_date(stamped_intent: &Value, remote: &Value) -> bool {
    let want = stamped_intent.pointer("/metadata/annotations/reflection.liqo.io~1intent-hash");
    let have = remote.pointer("/metadata/annotations/reflection.liqo.io~1intent-hash");
    want.is_some() && want == have && contains(remote, stamped_intent)
}

/// True when `actual` contains `wanted`: objects recursively (extra keys in `actual` are
/// defaults or other managers' fields), arrays element by element with equal lengths,
/// scalars equal. Integers compare by value (the API may return `80` for `80.0`).
pub fn contains(actual: &Value, wanted: &Value) -> bool {
    match (actual, wanted) {
        (Value::Object(a), Value::Object(w)) => w.iter().all(|(k, wv)| match a.get(k) {
            Some(av) => contains(av, wv),
            // The API server omits empty lists and maps (omitempty): wanting one is satisfied.
            None => is_empty(wv),
        }),
        (Value::Null, w) => is_empty(w),
        (Value::Array(a), Value::Array(w)) => {
            a.len() == w.len() && a.iter().zip(w).all(|(av, wv)| contains(av, wv))
        }
        (Value::Number(a), Value::Number(w)) => a.as_f64() == w.as_f64(),
        (a, w) => a == w,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn intent() -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "s", "labels": {"a": "1"}},
               "spec": {"ports": [{"port": 80, "protocol": "TCP"}], "selector": {"run": "x"}}})
    }

    #[test]
    fn stamped_remote_with_defaults_is_up_to_date() {
        let mut i = intent();
        stamp(&mut i);
        let mut remote = i.clone();
        remote["metadata"]["uid"] = json!("u");
        remote["spec"]["clusterIP"] = json!("10.96.0.1");
        remote["spec"]["ports"][0]["targetPort"] = json!(80);
        assert!(up_to_date(&i, &remote));
    }

    #[test]
    fn drift_is_detected() {
        let mut i = intent();
        stamp(&mut i);
        let mut remote = i.clone();
        remote["spec"]["selector"]["run"] = json!("y");
        assert!(!up_to_date(&i, &remote));
        let mut remote = i.clone();
        remote["spec"]["ports"]
            .as_array_mut()
            .unwrap()
            .push(json!({"port": 81}));
        assert!(!up_to_date(&i, &remote));
    }

    #[test]
    fn a_removed_field_changes_the_hash() {
        let mut old = intent();
        stamp(&mut old);
        let mut new = intent();
        new["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("a");
        // The remote still has the old label, so it contains the new intent: only the hash
        // tells that a write (which removes the label) is needed.
        assert!(contains(&old, &new));
        stamp(&mut new);
        assert!(!up_to_date(&new, &old));
    }

    #[test]
    fn empty_lists_match_omitted_fields() {
        assert!(contains(
            &json!({"a": 1}),
            &json!({"a": 1, "endpoints": []})
        ));
        assert!(contains(
            &json!({"endpoints": null}),
            &json!({"endpoints": []})
        ));
        assert!(!contains(
            &json!({"a": 1}),
            &json!({"endpoints": [{"x": 1}]})
        ));
    }

    #[test]
    fn unstamped_remote_is_never_up_to_date() {
        let mut i = intent();
        stamp(&mut i);
        assert!(!up_to_date(&i, &intent()));
    }

    #[test]
    fn hash_ignores_nothing_but_is_stable() {
        assert_eq!(intent_hash(&intent()), intent_hash(&intent()));
        let mut other = intent();
        other["spec"]["selector"]["run"] = json!("z");
        assert_ne!(intent_hash(&intent()), intent_hash(&other));
    }
}
