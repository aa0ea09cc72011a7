//! One table row per namespace mapping rule (LIQO-REFERENCE.md §4.1 and plugins/README.md).

use liqo_plugin_namespace::{MappingStrategy, default_name, map_namespace, map_namespace_json};
use liqo_plugin_sdk::{ClusterIdentity, is_dns1123_label};
use serde_json::{Value, json};

fn london() -> ClusterIdentity {
    ClusterIdentity::new("london", "london")
}

fn newyork() -> ClusterIdentity {
    ClusterIdentity::new("newyork", "newyork")
}

fn remote_name(namespace: &str, spec: Value) -> Result<String, String> {
    map_namespace(&london(), &newyork(), namespace, &spec).map(|mapping| mapping.remote_name)
}

/// (rule, namespace, spec, expected remote name or error)
fn rows() -> Vec<(
    &'static str,
    &'static str,
    Value,
    Result<&'static str, &'static str>,
)> {
    vec![
        (
            "EnforceSameName: the local name",
            "liqo-demo",
            json!({"namespaceMappingStrategy": "EnforceSameName"}),
            Ok("liqo-demo"),
        ),
        (
            "EnforceSameName ignores remoteNamespaceName",
            "liqo-demo",
            json!({"namespaceMappingStrategy": "EnforceSameName", "remoteNamespaceName": "other"}),
            Ok("liqo-demo"),
        ),
        (
            "DefaultName: <namespace>-<local cluster id>",
            "liqo-demo",
            json!({"namespaceMappingStrategy": "DefaultName"}),
            Ok("liqo-demo-london"),
        ),
        (
            "no strategy: DefaultName (Liqo's default)",
            "liqo-demo",
            json!({}),
            Ok("liqo-demo-london"),
        ),
        (
            "null strategy: DefaultName",
            "liqo-demo",
            json!({"namespaceMappingStrategy": null}),
            Ok("liqo-demo-london"),
        ),
        (
            "SelectedName: the chosen name",
            "liqo-demo",
            json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": "demo-in-newyork"}),
            Ok("demo-in-newyork"),
        ),
        (
            "SelectedName without remoteNamespaceName: error",
            "liqo-demo",
            json!({"namespaceMappingStrategy": "SelectedName"}),
            Err("remoteNamespaceName is required with SelectedName; set --remote-namespace-name"),
        ),
        (
            "SelectedName with an empty remoteNamespaceName: error",
            "liqo-demo",
            json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": ""}),
            Err("remoteNamespaceName is required with SelectedName; set --remote-namespace-name"),
        ),
        (
            "SelectedName with an upper-case name: error",
            "liqo-demo",
            json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": "Demo"}),
            Err(
                "invalid remoteNamespaceName: \"Demo\" contains 'D'; a DNS-1123 label has only lower-case letters, digits and '-'; set --remote-namespace-name to a valid namespace name",
            ),
        ),
        (
            "SelectedName with a name ending in '-': error",
            "liqo-demo",
            json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": "demo-"}),
            Err(
                "invalid remoteNamespaceName: \"demo-\" must start and end with a lower-case letter or digit; set --remote-namespace-name to a valid namespace name",
            ),
        ),
        (
            "SelectedName with a non-string name: error",
            "liqo-demo",
            json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": 7}),
            Err("remoteNamespaceName must be a string, got 7"),
        ),
        (
            "unknown strategy: error listing the valid values",
            "liqo-demo",
            json!({"namespaceMappingStrategy": "SameName"}),
            Err(
                "unknown namespaceMappingStrategy \"SameName\": valid values are EnforceSameName, DefaultName, SelectedName; set --namespace-mapping-strategy to one of them",
            ),
        ),
        (
            "strategy names are case-sensitive",
            "liqo-demo",
            json!({"namespaceMappingStrategy": "enforcesamename"}),
            Err("unknown namespaceMappingStrategy \"enforcesamename\""),
        ),
        (
            "non-string strategy: error",
            "liqo-demo",
            json!({"namespaceMappingStrategy": true}),
            Err("namespaceMappingStrategy must be a string, got true"),
        ),
        (
            "spec not an object: error",
            "liqo-demo",
            json!("DefaultName"),
            Err("the NamespaceOffloading spec must be a JSON object"),
        ),
        (
            "invalid local namespace: error",
            "Liqo_Demo",
            json!({}),
            Err("invalid local namespace name: \"Liqo_Demo\" contains 'L'"),
        ),
    ]
}

#[test]
fn mapping_rules() {
    for (rule, namespace, spec, expected) in rows() {
        let actual = remote_name(namespace, spec);
        match (expected, actual) {
            (Ok(expected), Ok(actual)) => assert_eq!(actual, expected, "rule: {rule}"),
            (Err(expected), Err(actual)) => {
                assert!(actual.starts_with(expected), "rule: {rule}: {actual}")
            }
            (expected, actual) => panic!("rule: {rule}: expected {expected:?}, got {actual:?}"),
        }
    }
}

#[test]
fn remote_namespace_object() {
    let mapping = map_namespace(
        &london(),
        &newyork(),
        "liqo-demo",
        &json!({"namespaceMappingStrategy": "EnforceSameName"}),
    )
    .unwrap();
    assert_eq!(
        mapping.namespace_object,
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "liqo-demo",
                            "labels": {"offloading.liqo.io/origin": "london", "offloading.liqo.io/destination": "newyork"},
                            "annotations": {"liqo.io/remote-namespace-origin-name": "liqo-demo"}}})
    );
}

#[test]
fn default_name_shortens_long_names_with_a_hash() {
    let namespace = "a-very-long-namespace-name-for-the-payments-team-production-eu"; // 62 characters
    let cluster_id = "8f1e2d3c-4b5a-4697-8877-665544332211";
    let name = default_name(namespace, cluster_id);
    assert!(name.len() <= 63, "{name} is {} characters", name.len());
    assert!(is_dns1123_label(&name), "{name}");
    assert_eq!(name, default_name(namespace, cluster_id), "deterministic");
    let (prefix, hash) = name.rsplit_once('-').unwrap();
    assert_eq!(hash.len(), 8);
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(namespace.starts_with(prefix), "{prefix}");

    // Inputs that share the kept prefix stay distinct.
    let other = default_name(namespace, "9f1e2d3c-4b5a-4697-8877-665544332211");
    assert_ne!(name, other);
    assert_eq!(name.len(), other.len());
}

#[test]
fn default_name_rewrites_invalid_characters_with_a_hash() {
    let upper = default_name("liqo-demo", "London_East");
    assert!(is_dns1123_label(&upper), "{upper}");
    assert!(upper.starts_with("liqo-demo-london-east-"), "{upper}");
    // A valid id that the rewrite would collide with keeps the plain Liqo form and stays distinct.
    assert_eq!(
        default_name("liqo-demo", "london-east"),
        "liqo-demo-london-east"
    );
    assert_ne!(upper, default_name("liqo-demo", "london-east"));
    assert_ne!(upper, default_name("liqo-demo", "London.East"));
}

#[test]
fn default_name_is_always_a_valid_label() {
    let ids = [
        "",
        "-",
        "___",
        "UPPER",
        "ünïcødé",
        "a.b.c",
        &"x".repeat(200),
        "0",
        "cluster-1",
    ];
    let namespaces = ["a", "liqo-demo", &"n".repeat(63)];
    for namespace in namespaces {
        for id in ids {
            let name = default_name(namespace, id);
            assert!(
                is_dns1123_label(&name),
                "default_name({namespace:?}, {id:?}) = {name:?}"
            );
        }
    }
}

#[test]
fn strategies_are_listed_in_user_order() {
    let names: Vec<&str> = MappingStrategy::ALL
        .iter()
        .map(MappingStrategy::as_str)
        .collect();
    assert_eq!(names, ["EnforceSameName", "DefaultName", "SelectedName"]);
}

#[test]
fn map_namespace_json_matches_map_namespace() {
    let spec = json!({"namespaceMappingStrategy": "DefaultName", "podOffloadingStrategy": "Local"});
    let native = map_namespace(&london(), &newyork(), "liqo-demo", &spec).unwrap();
    let text = map_namespace_json(&london(), &newyork(), "liqo-demo", &spec.to_string()).unwrap();
    assert_eq!(text.remote_name, native.remote_name);
    assert_eq!(
        serde_json::from_str::<Value>(&text.namespace_object).unwrap(),
        native.namespace_object
    );
    let error = map_namespace_json(&london(), &newyork(), "liqo-demo", "{").unwrap_err();
    assert!(
        error.starts_with("the NamespaceOffloading spec is not valid JSON"),
        "{error}"
    );
}
