//! The configuration keys shared by the built-in reflector plugins.
//!
//! ```json
//! {
//!   "reflectionPolicy": "DenyList",
//!   "labelsNotReflected": ["example.com/internal-*"],
//!   "annotationsNotReflected": ["cloud.google.com/neg", "metallb.universe.tf/*"]
//! }
//! ```
//!
//! Every key is optional. A list, when given, replaces its default (as Liqo's Helm values
//! `reflection.skip.labels` / `reflection.skip.annotations` do). Unknown keys are an error, so a
//! typo does not silently do nothing.

use serde_json::{Map, Value};

use crate::filter::KeyFilter;
use crate::keys::LAST_APPLIED_ANNOTATION;
use crate::object;
use crate::policy::ReflectionPolicy;

/// Config key: `"DenyList"` (default) or `"AllowList"`.
pub const REFLECTION_POLICY_KEY: &str = "reflectionPolicy";
/// Config key: list of label key patterns not copied to remote objects.
pub const LABELS_NOT_REFLECTED_KEY: &str = "labelsNotReflected";
/// Config key: list of annotation key patterns not copied to remote objects.
pub const ANNOTATIONS_NOT_REFLECTED_KEY: &str = "annotationsNotReflected";

/// Annotations not reflected by default: state written by cloud and bare-metal load-balancer
/// controllers about *their* cluster's resources (Liqo's default `reflection.skip.annotations`,
/// with the MetalLB keys generalised to patterns and MetalLB ≥ 0.14's `metallb.io/*` added).
pub const DEFAULT_ANNOTATIONS_NOT_REFLECTED: &[&str] = &[
    "cloud.google.com/neg",
    "cloud.google.com/neg-status",
    "kubernetes.digitalocean.com/load-balancer-id",
    "ingress.kubernetes.io/backends",
    "ingress.kubernetes.io/forwarding-rule",
    "ingress.kubernetes.io/target-proxy",
    "ingress.kubernetes.io/url-map",
    "loadbalancer.openstack.org/load-balancer-id",
    "metallb.universe.tf/*",
    "metallb.io/*",
];

/// Labels not reflected by default: none (as in Liqo).
pub const DEFAULT_LABELS_NOT_REFLECTED: &[&str] = &[];

/// Parsed configuration of a reflector plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReflectionConfig {
    /// Which objects are reflected.
    pub policy: ReflectionPolicy,
    /// Label keys not copied.
    pub labels_not_reflected: KeyFilter,
    /// Annotation keys not copied (`kubectl.kubernetes.io/last-applied-configuration` is never
    /// copied, whatever this says).
    pub annotations_not_reflected: KeyFilter,
}

impl Default for ReflectionConfig {
    fn default() -> Self {
        Self {
            policy: ReflectionPolicy::default(),
            labels_not_reflected: KeyFilter::from_static(DEFAULT_LABELS_NOT_REFLECTED),
            annotations_not_reflected: KeyFilter::from_static(DEFAULT_ANNOTATIONS_NOT_REFLECTED),
        }
    }
}

const VALID_KEYS: &[&str] = &[
    REFLECTION_POLICY_KEY,
    LABELS_NOT_REFLECTED_KEY,
    ANNOTATIONS_NOT_REFLECTED_KEY,
];

fn string_list(value: &Value, key: &str) -> Result<Vec<String>, String> {
    let not_a_list = || format!("config {key} must be a list of strings, e.g. [\"example.com/*\"]");
    value
        .as_array()
        .ok_or_else(not_a_list)?
        .iter()
        .map(|item| item.as_str().map(str::to_owned).ok_or_else(not_a_list))
        .collect()
}

impl ReflectionConfig {
    /// Parses the configuration JSON text (`""` and `"{}"` give the defaults).
    pub fn parse(config: &str) -> Result<Self, String> {
        // The host passes `{}` when no config was given: skip the JSON parser on that hot path.
        if matches!(config.trim(), "" | "{}") {
            return Ok(Self::default());
        }
        match object::parse_object(config, "the plugin config")? {
            Value::Object(fields) => Self::from_fields(&fields),
            _ => Err("the plugin config must be a JSON object".to_owned()),
        }
    }

    fn from_fields(fields: &Map<String, Value>) -> Result<Self, String> {
        if let Some(unknown) = fields
            .keys()
            .find(|key| !VALID_KEYS.contains(&key.as_str()))
        {
            return Err(format!(
                "unknown config key \"{unknown}\": valid keys are {}",
                VALID_KEYS.join(", ")
            ));
        }
        let mut config = Self::default();
        if let Some(policy) = fields.get(REFLECTION_POLICY_KEY) {
            let text = policy.as_str().ok_or_else(|| {
                format!(
                    "config {REFLECTION_POLICY_KEY} must be a string: \"DenyList\" or \"AllowList\""
                )
            })?;
            config.policy = ReflectionPolicy::parse(text)?;
        }
        if let Some(labels) = fields.get(LABELS_NOT_REFLECTED_KEY) {
            config.labels_not_reflected =
                KeyFilter::new(string_list(labels, LABELS_NOT_REFLECTED_KEY)?);
        }
        if let Some(annotations) = fields.get(ANNOTATIONS_NOT_REFLECTED_KEY) {
            config.annotations_not_reflected =
                KeyFilter::new(string_list(annotations, ANNOTATIONS_NOT_REFLECTED_KEY)?);
        }
        Ok(config)
    }

    /// Whether a label key is copied to remote objects.
    pub fn reflects_label(&self, key: &str) -> bool {
        !self.labels_not_reflected.matches(key)
    }

    /// Whether an annotation key is copied to remote objects.
    pub fn reflects_annotation(&self, key: &str) -> bool {
        key != LAST_APPLIED_ANNOTATION && !self.annotations_not_reflected.matches(key)
    }

    /// The remote object's `metadata`: `{name, labels, annotations}`, with the labels and
    /// annotations not reflected filtered out and empty maps omitted. Everything else (namespace,
    /// uid, ownerReferences, finalizers, managedFields, ...) is left out on purpose: the host sets
    /// the namespace and the ownership labels, and the rest describes the local object.
    ///
    /// Labels and annotations are *moved* out of `object` (no copy): evaluate the reflection
    /// policy before calling this.
    pub fn take_remote_metadata(&self, object: &mut Value) -> Result<Map<String, Value>, String> {
        let name = object::name(object)?.to_owned();
        let labels = object::keep_keys(
            object::take_map_at(object, &["metadata", "labels"]),
            |key| self.reflects_label(key),
        );
        let annotations = object::keep_keys(
            object::take_map_at(object, &["metadata", "annotations"]),
            |key| self.reflects_annotation(key),
        );
        let mut metadata = Map::new();
        metadata.insert("name".to_owned(), Value::String(name));
        if !labels.is_empty() {
            metadata.insert("labels".to_owned(), Value::Object(labels));
        }
        if !annotations.is_empty() {
            metadata.insert("annotations".to_owned(), Value::Object(annotations));
        }
        Ok(metadata)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn empty_config_gives_defaults() {
        assert_eq!(
            ReflectionConfig::parse("").unwrap(),
            ReflectionConfig::default()
        );
        assert_eq!(
            ReflectionConfig::parse("{}").unwrap(),
            ReflectionConfig::default()
        );
    }

    #[test]
    fn lists_replace_defaults() {
        let config = ReflectionConfig::parse(
            r#"{"annotationsNotReflected": ["a/*"], "labelsNotReflected": ["l"]}"#,
        )
        .unwrap();
        assert_eq!(config.annotations_not_reflected.patterns(), ["a/*"]);
        assert_eq!(config.labels_not_reflected.patterns(), ["l"]);
    }

    #[test]
    fn errors_say_what_to_fix() {
        let unknown = ReflectionConfig::parse(r#"{"labelNotReflected": []}"#).unwrap_err();
        assert!(
            unknown.contains("labelNotReflected") && unknown.contains("labelsNotReflected"),
            "{unknown}"
        );
        let policy = ReflectionConfig::parse(r#"{"reflectionPolicy": "Allow"}"#).unwrap_err();
        assert!(policy.contains("AllowList"), "{policy}");
        let list = ReflectionConfig::parse(r#"{"labelsNotReflected": "x"}"#).unwrap_err();
        assert!(list.contains("list of strings"), "{list}");
        assert!(
            ReflectionConfig::parse("[1]")
                .unwrap_err()
                .contains("JSON object")
        );
        assert!(
            ReflectionConfig::parse("{")
                .unwrap_err()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn metadata_keeps_name_labels_annotations_only() {
        let mut object = json!({"metadata": {
            "name": "web", "namespace": "demo", "uid": "u", "resourceVersion": "1",
            "labels": {"app": "web"}, "annotations": {"metallb.universe.tf/address-pool": "p"},
            "ownerReferences": [{"kind": "X"}], "finalizers": ["f"], "managedFields": []
        }});
        let metadata = ReflectionConfig::default()
            .take_remote_metadata(&mut object)
            .unwrap();
        assert_eq!(
            Value::Object(metadata),
            json!({"name": "web", "labels": {"app": "web"}})
        );
        assert!(
            ReflectionConfig::default()
                .take_remote_metadata(&mut json!({}))
                .is_err()
        );
    }

    #[test]
    fn last_applied_is_never_reflected() {
        let config = ReflectionConfig::parse(r#"{"annotationsNotReflected": []}"#).unwrap();
        let mut object = json!({"metadata": {"name": "x", "annotations": {LAST_APPLIED_ANNOTATION: "{}", "keep": "x"}}});
        let metadata = config.take_remote_metadata(&mut object).unwrap();
        assert_eq!(
            Value::Object(metadata),
            json!({"name": "x", "annotations": {"keep": "x"}})
        );
    }
}
