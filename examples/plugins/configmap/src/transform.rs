//! What a local ConfigMap becomes in the peered cluster: plain Rust over `serde_json::Value`.
//!
//! The host calls [`reflect`] for every ConfigMap in an offloaded namespace, and again whenever
//! it changes. On [`Decision::Apply`] the host then enforces its invariants, whatever the plugin
//! returned: `metadata.namespace` becomes the twin namespace, the ownership labels
//! `offloading.liqo.io/origin` and `offloading.liqo.io/destination` are set, server-owned
//! metadata (uid, resourceVersion, ownerReferences, finalizers, ...) is removed, and so is
//! `status` unless the manifest sets `reflect_status`. `apiVersion`, `kind` and `metadata.name`
//! must stay those of the local object. On [`Decision::Skip`] the host deletes the remote copy,
//! if any. An `Err` is reported as a `FailedReflection` Event and retried; nothing is written.

use serde_json::{Map, Value};

/// `apiVersion` of the reflected kind.
pub const API_VERSION: &str = "v1";
/// The reflected kind.
pub const KIND: &str = "ConfigMap";
/// Objects annotated with this key, with any value but `false`, are not reflected (as in Liqo).
pub const SKIP_ANNOTATION: &str = "liqo.io/skip-reflection";
/// Annotations that describe the local object only; they are not copied.
pub const LOCAL_ONLY_ANNOTATIONS: &[&str] = &["kubectl.kubernetes.io/last-applied-configuration"];
/// ConfigMaps every namespace gets from its own cluster (the cluster's CA bundle): never
/// reflected, the peer has its own.
pub const NEVER_REFLECTED: &[&str] = &["kube-root-ca.crt"];
/// Top-level fields that are not content: the rest (`spec`, `data`, ...) is copied as it is.
const NOT_CONTENT: &[&str] = &["apiVersion", "kind", "metadata", "status"];

/// A Kubernetes kind, as the manifest declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    /// API group; empty for the core group.
    pub group: String,
    /// API version, for example `v1`.
    pub version: String,
    /// Kind, for example `ConfigMap`.
    pub kind: String,
    /// Plural resource name, for example `configmaps`.
    pub plural: String,
    /// Whether objects of the kind live in a namespace (reflected kinds must).
    pub namespaced: bool,
}

/// What the plugin declares to the host, read once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Plugin name, unique per host: lower-case letters, digits and '-'.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// One line for humans.
    pub description: String,
    /// The kinds this plugin reflects (namespaced only).
    pub reflects: Vec<Kind>,
    /// Kinds whose changes re-evaluate this plugin's objects in the same namespace.
    pub triggers: Vec<Kind>,
    /// Kinds the plugin may read with the host's `get_object`.
    pub reads: Vec<Kind>,
    /// Whether `status` is reflected too.
    pub reflect_status: bool,
}

/// The plugin's manifest.
pub fn manifest() -> Manifest {
    Manifest {
        name: "configmap".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        description:
            "Reflects ConfigMaps without the keys matching dropKeys, never kube-root-ca.crt"
                .to_owned(),
        reflects: vec![Kind {
            group: "".to_owned(),
            version: "v1".to_owned(),
            kind: KIND.to_owned(),
            plural: "configmaps".to_owned(),
            namespaced: true,
        }],
        triggers: Vec::new(),
        reads: Vec::new(),
        reflect_status: false,
    }
}

/// Everything the host says about a call besides the object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// Id of this cluster (the object's origin).
    pub local_cluster_id: String,
    /// Id of the peer the object is reflected to.
    pub remote_cluster_id: String,
    /// Namespace of the local object.
    pub local_namespace: String,
    /// The twin namespace in the peer (the host sets it on the output anyway).
    pub remote_namespace: String,
    /// The plugin configuration: `spec.config` of the ReflectionPlugin (`{}` when none).
    pub config: Value,
}

/// The plugin configuration. Every key is optional; unknown keys are an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// `extraLabels`: labels added to every remote object.
    pub extra_labels: Map<String, Value>,
    /// `dropKeys`: patterns of `data`/`binaryData` keys that stay local (`*` matches any run of
    /// characters: `password*`, `*.key`).
    pub drop_keys: Vec<String>,
}

/// Whether `key` matches `pattern`, where `*` matches any run of characters.
pub fn matches(pattern: &str, key: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = key.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole key must be the pattern.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

impl Config {
    /// Parses the configuration object; errors say which key is wrong and what is expected.
    pub fn parse(config: &Value) -> Result<Self, String> {
        let mut parsed = Self::default();
        let Some(map) = config.as_object() else {
            if config.is_null() {
                return Ok(parsed);
            }
            return Err("the configuration must be a JSON object".to_owned());
        };
        for (key, value) in map {
            match key.as_str() {
                "dropKeys" => {
                    let patterns = value
                        .as_array()
                        .filter(|p| p.iter().all(Value::is_string))
                        .ok_or("dropKeys must be a list of key patterns (strings)")?;
                    parsed.drop_keys = patterns
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect();
                }
                "extraLabels" => {
                    let labels = value
                        .as_object()
                        .filter(|labels| labels.values().all(Value::is_string))
                        .ok_or("extraLabels must be an object of string values")?;
                    parsed.extra_labels = labels.clone();
                }
                other => {
                    return Err(format!(
                        "unknown configuration key {other:?}: the valid keys are \"dropKeys\" and \"extraLabels\""
                    ));
                }
            }
        }
        Ok(parsed)
    }
}

/// What to do with one local object.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Write this object to the peer (after the host's invariants).
    Apply(Value),
    /// Do not reflect the object, and delete its remote copy; the reason is for humans.
    Skip(String),
}

/// Decides what the local ConfigMap becomes in the peer.
///
/// Skips objects annotated `liqo.io/skip-reflection` (any value but `false`). Otherwise returns
/// `apiVersion`, `kind`, `metadata` with the name, labels (plus `extraLabels` from the
/// configuration) and annotations (without [`LOCAL_ONLY_ANNOTATIONS`]), and every other
/// top-level field but `status` unchanged. Errors: an object of another kind or without a
/// name, an invalid configuration.
pub fn reflect(ctx: &Context, object: &Value) -> Result<Decision, String> {
    let text = |key: &str| object.get(key).and_then(Value::as_str).unwrap_or_default();
    if text("apiVersion") != API_VERSION || text("kind") != KIND {
        return Err(format!(
            "expected a {API_VERSION} {KIND}, got {:?} {:?}",
            text("apiVersion"),
            text("kind")
        ));
    }
    let config = Config::parse(&ctx.config)?;
    let metadata = object
        .get("metadata")
        .and_then(Value::as_object)
        .ok_or("the object has no metadata")?;
    let name = metadata
        .get("name")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .ok_or("the object has no metadata.name")?;
    if NEVER_REFLECTED.contains(&name) {
        return Ok(Decision::Skip(format!(
            "{name} belongs to its own cluster: every cluster has its own"
        )));
    }
    let mut annotations = metadata
        .get("annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(value) = annotations.get(SKIP_ANNOTATION).and_then(Value::as_str)
        && !value.eq_ignore_ascii_case("false")
    {
        return Ok(Decision::Skip(format!(
            "the {KIND} is annotated {SKIP_ANNOTATION}"
        )));
    }

    let mut labels = metadata
        .get("labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    labels.extend(config.extra_labels);
    for key in LOCAL_ONLY_ANNOTATIONS {
        annotations.remove(*key);
    }

    let mut remote_metadata = Map::new();
    remote_metadata.insert("name".to_owned(), Value::String(name.to_owned()));
    if !labels.is_empty() {
        remote_metadata.insert("labels".to_owned(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        remote_metadata.insert("annotations".to_owned(), Value::Object(annotations));
    }

    let mut remote = Map::new();
    remote.insert(
        "apiVersion".to_owned(),
        Value::String(API_VERSION.to_owned()),
    );
    remote.insert("kind".to_owned(), Value::String(KIND.to_owned()));
    remote.insert("metadata".to_owned(), Value::Object(remote_metadata));
    if let Some(fields) = object.as_object() {
        for (key, value) in fields {
            if !NOT_CONTENT.contains(&key.as_str()) {
                remote.insert(key.clone(), value.clone());
            }
        }
    }
    for field in ["data", "binaryData"] {
        if let Some(entries) = remote.get_mut(field).and_then(Value::as_object_mut) {
            entries.retain(|key, _| !config.drop_keys.iter().any(|p| matches(p, key)));
        }
    }
    Ok(Decision::Apply(Value::Object(remote)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(config: Value) -> Context {
        Context {
            local_cluster_id: "london".to_owned(),
            remote_cluster_id: "newyork".to_owned(),
            local_namespace: "default".to_owned(),
            remote_namespace: "default".to_owned(),
            config,
        }
    }

    /// A local object as the API server serves it.
    fn local(annotations: Value) -> Value {
        json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {
                "name": "example",
                "namespace": "default",
                "uid": "6b1c8a4e-0000-4000-8000-000000000001",
                "resourceVersion": "4242",
                "creationTimestamp": "2024-01-01T00:00:00Z",
                "labels": {"app": "example"},
                "annotations": annotations,
            },
            "data": {"greeting": "hello"},
            "status": {"observed": true},
        })
    }

    struct Case {
        name: &'static str,
        object: Value,
        config: Value,
        want: Result<Decision, String>,
    }

    #[test]
    fn decisions() {
        let copied = json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": "example", "labels": {"app": "example"}, "annotations": {"team": "a"}},
            "data": {"greeting": "hello"},
        });
        let cases = [
            Case {
                name: "copies name, labels, annotations and content; drops the rest",
                object: local(
                    json!({"team": "a", "kubectl.kubernetes.io/last-applied-configuration": "{}"}),
                ),
                config: json!({}),
                want: Ok(Decision::Apply(copied.clone())),
            },
            Case {
                name: "skip annotation",
                object: local(json!({"team": "a", "liqo.io/skip-reflection": "true"})),
                config: json!({}),
                want: Ok(Decision::Skip(format!(
                    "the {KIND} is annotated liqo.io/skip-reflection"
                ))),
            },
            Case {
                name: "skip annotation with an empty value",
                object: local(json!({"liqo.io/skip-reflection": ""})),
                config: json!({}),
                want: Ok(Decision::Skip(format!(
                    "the {KIND} is annotated liqo.io/skip-reflection"
                ))),
            },
            Case {
                name: "skip annotation set to false",
                object: local(json!({"team": "a", "liqo.io/skip-reflection": "False"})),
                config: json!({}),
                want: Ok(Decision::Apply({
                    let mut want = copied.clone();
                    want["metadata"]["annotations"]["liqo.io/skip-reflection"] = json!("False");
                    want
                })),
            },
            Case {
                name: "extra labels from the configuration",
                object: local(json!({"team": "a"})),
                config: json!({"extraLabels": {"reflected": "yes"}}),
                want: Ok(Decision::Apply({
                    let mut want = copied.clone();
                    want["metadata"]["labels"]["reflected"] = json!("yes");
                    want
                })),
            },
            Case {
                name: "unknown configuration key",
                object: local(json!({})),
                config: json!({"extraLabel": {}}),
                want: Err(
                    "unknown configuration key \"extraLabel\": the valid keys are \"dropKeys\" and \"extraLabels\""
                        .to_owned(),
                ),
            },
            Case {
                name: "extra labels that are not strings",
                object: local(json!({})),
                config: json!({"extraLabels": {"n": 1}}),
                want: Err("extraLabels must be an object of string values".to_owned()),
            },
            Case {
                name: "keys matching dropKeys stay local, in data and binaryData",
                object: {
                    let mut o = local(json!({"team": "a"}));
                    o["data"] = json!({"greeting": "hello", "password": "x", "db.password": "y", "tls.key": "z"});
                    o["binaryData"] = json!({"cert.key": "AAAA", "logo.png": "iVBO"});
                    o
                },
                config: json!({"dropKeys": ["password", "*.password", "*.key"]}),
                want: Ok(Decision::Apply({
                    let mut want = copied.clone();
                    want["binaryData"] = json!({"logo.png": "iVBO"});
                    want
                })),
            },
            Case {
                name: "dropKeys must be strings",
                object: local(json!({})),
                config: json!({"dropKeys": "password"}),
                want: Err("dropKeys must be a list of key patterns (strings)".to_owned()),
            },
            Case {
                name: "the cluster's CA bundle is never reflected",
                object: {
                    let mut o = local(json!({}));
                    o["metadata"]["name"] = json!("kube-root-ca.crt");
                    o
                },
                config: json!({}),
                want: Ok(Decision::Skip(
                    "kube-root-ca.crt belongs to its own cluster: every cluster has its own"
                        .to_owned(),
                )),
            },
            Case {
                name: "another kind",
                object: json!({"apiVersion": "v1", "kind": "NotThisKind", "metadata": {"name": "x"}}),
                config: json!({}),
                want: Err(format!(
                    "expected a {API_VERSION} {KIND}, got \"v1\" \"NotThisKind\""
                )),
            },
            Case {
                name: "no name",
                object: json!({"apiVersion": API_VERSION, "kind": KIND, "metadata": {}}),
                config: json!({}),
                want: Err("the object has no metadata.name".to_owned()),
            },
        ];
        for case in cases {
            assert_eq!(
                reflect(&ctx(case.config), &case.object),
                case.want,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn key_patterns() {
        for (pattern, key, want) in [
            ("password", "password", true),
            ("password", "password2", false),
            ("password*", "password2", true),
            ("*.key", "tls.key", true),
            ("*.key", "tls.keys", false),
            ("*", "anything", true),
            ("a*b*c", "a-x-b-y-c", true),
            ("a*b*c", "a-x-c", false),
            ("db.*.password", "db.main.password", true),
        ] {
            assert_eq!(matches(pattern, key), want, "{pattern} vs {key}");
        }
    }

    #[test]
    fn manifest_declares_one_namespaced_kind() {
        let manifest = manifest();
        assert_eq!(manifest.name, "configmap");
        assert_eq!(manifest.reflects.len(), 1);
        let kind = &manifest.reflects[0];
        assert_eq!(kind.group, "");
        assert_eq!(kind.version, "v1");
        assert_eq!(kind.kind, KIND);
        assert_eq!(kind.plural, "configmaps");
        assert!(kind.namespaced);
        assert!(!manifest.reflect_status);
    }
}
