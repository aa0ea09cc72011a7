//! Reflection policy: which local objects are reflected, per Liqo's per-object annotations.
//!
//! Same semantics as Liqo's `NamespacedReflector.ShouldSkipReflection`:
//! - `DenyList` (default): reflect unless annotated `liqo.io/skip-reflection` with any value other
//!   than `false` (case-insensitive).
//! - `AllowList`: reflect only if annotated `liqo.io/allow-reflection` with any value other than
//!   `false` (case-insensitive).

use serde_json::Value;

use crate::keys::{ALLOW_REFLECTION_ANNOTATION, SKIP_REFLECTION_ANNOTATION};
use crate::object;

/// Which objects are reflected by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReflectionPolicy {
    /// Everything is reflected except objects annotated `liqo.io/skip-reflection`.
    #[default]
    DenyList,
    /// Only objects annotated `liqo.io/allow-reflection` are reflected.
    AllowList,
}

impl ReflectionPolicy {
    /// Parses `DenyList` or `AllowList` (exact spelling, as in Liqo's Helm values).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "DenyList" => Ok(Self::DenyList),
            "AllowList" => Ok(Self::AllowList),
            other => Err(format!(
                "unknown reflectionPolicy \"{other}\": valid values are \"DenyList\" and \"AllowList\""
            )),
        }
    }

    /// The name as written in configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::DenyList => "DenyList",
            Self::AllowList => "AllowList",
        }
    }

    /// `Some(reason)` if `object` must not be reflected under this policy; `what` names the
    /// object in the reason (for example `Service`).
    pub fn skip_reason(&self, object: &Value, what: &str) -> Option<String> {
        match self {
            Self::DenyList => annotation_is_true(object, SKIP_REFLECTION_ANNOTATION).then(|| {
                format!("the {what} is annotated {SKIP_REFLECTION_ANNOTATION} (reflection policy DenyList)")
            }),
            Self::AllowList => (!annotation_is_true(object, ALLOW_REFLECTION_ANNOTATION)).then(|| {
                format!(
                    "the {what} is not annotated {ALLOW_REFLECTION_ANNOTATION} (reflection policy AllowList)"
                )
            }),
        }
    }
}

/// Whether the annotation is present with a value other than `false` (case-insensitive).
/// An empty value counts as set, like in Liqo (`kubectl annotate svc x liqo.io/skip-reflection=`).
pub fn annotation_is_true(object: &Value, key: &str) -> bool {
    object::annotation(object, key).is_some_and(|value| !value.eq_ignore_ascii_case("false"))
}

/// Whether the Service `namespace/name` is the API server's own `default/kubernetes` Service,
/// which is never reflected (its endpoints are the local control plane).
pub fn is_api_server_service(namespace: &str, name: &str) -> bool {
    namespace == "default" && name == "kubernetes"
}

/// `Some(reason)` if the Service must not be reflected: it is `default/kubernetes`, or the policy
/// skips it. Shared by the Service plugin and the EndpointSlice plugin (slices follow their
/// Service).
pub fn service_skip_reason(
    service: &Value,
    namespace: &str,
    policy: ReflectionPolicy,
) -> Option<String> {
    let name = object::str_at(service, &["metadata", "name"]).unwrap_or_default();
    if is_api_server_service(namespace, name) {
        return Some(
            "default/kubernetes is the API server's own Service and is never reflected".to_owned(),
        );
    }
    policy.skip_reason(service, "Service")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn annotated(key: &str, value: &str) -> Value {
        json!({"metadata": {"name": "web", "annotations": {key: value}}})
    }

    #[test]
    fn deny_list() {
        let policy = ReflectionPolicy::DenyList;
        assert!(
            policy
                .skip_reason(&json!({"metadata": {}}), "Service")
                .is_none()
        );
        assert!(
            policy
                .skip_reason(&annotated(SKIP_REFLECTION_ANNOTATION, "true"), "Service")
                .is_some()
        );
        assert!(
            policy
                .skip_reason(&annotated(SKIP_REFLECTION_ANNOTATION, ""), "Service")
                .is_some()
        );
        assert!(
            policy
                .skip_reason(&annotated(SKIP_REFLECTION_ANNOTATION, "False"), "Service")
                .is_none()
        );
        assert!(
            policy
                .skip_reason(&annotated(ALLOW_REFLECTION_ANNOTATION, "true"), "Service")
                .is_none()
        );
    }

    #[test]
    fn allow_list() {
        let policy = ReflectionPolicy::AllowList;
        assert!(
            policy
                .skip_reason(&json!({"metadata": {}}), "Service")
                .is_some()
        );
        assert!(
            policy
                .skip_reason(&annotated(ALLOW_REFLECTION_ANNOTATION, "true"), "Service")
                .is_none()
        );
        assert!(
            policy
                .skip_reason(&annotated(ALLOW_REFLECTION_ANNOTATION, "FALSE"), "Service")
                .is_some()
        );
        assert!(
            policy
                .skip_reason(&annotated(SKIP_REFLECTION_ANNOTATION, "false"), "Service")
                .is_some()
        );
    }

    #[test]
    fn parses_names() {
        assert_eq!(
            ReflectionPolicy::parse("AllowList").unwrap(),
            ReflectionPolicy::AllowList
        );
        let error = ReflectionPolicy::parse("allowlist").unwrap_err();
        assert!(error.contains("\"DenyList\" and \"AllowList\""), "{error}");
    }

    #[test]
    fn api_server_service_is_never_reflected() {
        let kubernetes = json!({"metadata": {"name": "kubernetes"}});
        assert!(service_skip_reason(&kubernetes, "default", ReflectionPolicy::DenyList).is_some());
        assert!(service_skip_reason(&kubernetes, "demo", ReflectionPolicy::DenyList).is_none());
    }
}
