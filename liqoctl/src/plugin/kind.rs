//! `GROUP/VERSION/KIND` arguments (`--kind`, `--reads`): parsing, plural names, and the kinds
//! known to be cluster-scoped (the engine reflects namespaced objects only).

use std::fmt;

/// A kind as written on the command line: `apps/v1/Deployment`, `example.com/v1alpha1/Widget`,
/// and for the core group `v1/ConfigMap` or `/v1/ConfigMap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindSpec {
    /// API group; empty for the core group.
    pub group: String,
    /// API version, for example `v1` or `v1beta2`.
    pub version: String,
    /// Kind, for example `ConfigMap`.
    pub kind: String,
}

impl KindSpec {
    /// Parses `GROUP/VERSION/KIND`, `/VERSION/KIND` or `VERSION/KIND` (core group). The error is
    /// a sentence naming what is wrong and showing the accepted forms.
    pub fn parse(text: &str) -> Result<Self, String> {
        let forms = "use GROUP/VERSION/KIND, for example apps/v1/Deployment, or v1/ConfigMap \
                     (also /v1/ConfigMap) for the core group";
        let parts: Vec<&str> = text.trim().split('/').collect();
        let (group, version, kind) = match parts.as_slice() {
            [version, kind] => ("", *version, *kind),
            [group, version, kind] => (*group, *version, *kind),
            _ => return Err(format!("{text:?} is not a kind: {forms}")),
        };
        if !group.is_empty() && !is_dns_subdomain(group) {
            return Err(format!(
                "{text:?}: {group:?} is not an API group (lower-case DNS name such as apps or \
                 example.com); {forms}"
            ));
        }
        if !is_api_version(version) {
            return Err(format!(
                "{text:?}: {version:?} is not an API version (v1, v1beta1, v2alpha3, ...); {forms}"
            ));
        }
        if !is_kind_name(kind) {
            return Err(format!(
                "{text:?}: {kind:?} is not a kind name (CamelCase letters and digits, starting \
                 with an upper-case letter, such as ConfigMap); {forms}"
            ));
        }
        Ok(Self {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
        })
    }

    /// `apiVersion` as written in objects: `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The plural resource name Kubernetes would derive for this kind (lower-case, English
    /// rules as in `kubectl` / controller-gen): `ConfigMap` -> `configmaps`, `Ingress` ->
    /// `ingresses`, `NetworkPolicy` -> `networkpolicies`, `Endpoints` -> `endpoints`.
    pub fn default_plural(&self) -> String {
        let lower = self.kind.to_ascii_lowercase();
        // Kinds whose name is already plural.
        if matches!(lower.as_str(), "endpoints" | "componentstatus") {
            return if lower == "componentstatus" {
                "componentstatuses".into()
            } else {
                lower
            };
        }
        if lower.ends_with('s')
            || lower.ends_with('x')
            || lower.ends_with('z')
            || lower.ends_with("ch")
            || lower.ends_with("sh")
        {
            return format!("{lower}es");
        }
        if let Some(stem) = lower.strip_suffix('y')
            && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
        {
            return format!("{stem}ies");
        }
        format!("{lower}s")
    }

    /// `Some(reason)` when this is a kind Kubernetes (or liqo) defines as cluster-scoped: such
    /// objects have no namespace and cannot be reflected into a twin namespace.
    pub fn cluster_scoped_reason(&self) -> Option<String> {
        let known = CLUSTER_SCOPED
            .iter()
            .any(|(group, kind)| *group == self.group && *kind == self.kind);
        known.then(|| {
            format!(
                "{self} is cluster-scoped: the reflection engine reflects namespaced objects \
                 only, into the twin namespace of their namespace"
            )
        })
    }
}

impl fmt::Display for KindSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.api_version(), self.kind)
    }
}

/// Cluster-scoped kinds of Kubernetes and liqo, as (group, kind).
const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("", "ComponentStatus"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("storage.k8s.io", "VolumeAttributesClass"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "MutatingAdmissionPolicyBinding",
    ),
    ("scheduling.k8s.io", "PriorityClass"),
    ("node.k8s.io", "RuntimeClass"),
    ("networking.k8s.io", "IngressClass"),
    ("networking.k8s.io", "IPAddress"),
    ("networking.k8s.io", "ServiceCIDR"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("certificates.k8s.io", "ClusterTrustBundle"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("resource.k8s.io", "DeviceClass"),
    ("resource.k8s.io", "ResourceSlice"),
    ("core.liqo.io", "ForeignCluster"),
    ("plugins.liqo.io", "ReflectionPlugin"),
];

/// A DNS-1123 subdomain: dot-separated labels of lower-case letters, digits and '-', at most
/// 253 characters.
pub fn is_dns_subdomain(text: &str) -> bool {
    !text.is_empty() && text.len() <= 253 && text.split('.').all(is_dns_label)
}

/// A DNS-1123 label: at most 63 lower-case letters, digits and '-', starting and ending with a
/// letter or digit.
pub fn is_dns_label(text: &str) -> bool {
    liqo_host::api::names::validate_dns1123_label(text).is_ok()
}

/// `v1`, `v1beta1`, `v2alpha3`: Kubernetes API version names.
fn is_api_version(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('v') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || rest.starts_with('0') {
        return false;
    }
    let rest = &rest[digits..];
    if rest.is_empty() {
        return true;
    }
    let Some(n) = rest
        .strip_prefix("alpha")
        .or_else(|| rest.strip_prefix("beta"))
    else {
        return false;
    };
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0')
}

/// An upper-case ASCII letter followed by ASCII letters and digits, at most 63 characters.
fn is_kind_name(text: &str) -> bool {
    text.len() <= 63
        && text.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
        && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(group: &str, version: &str, kind: &str) -> KindSpec {
        KindSpec {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
        }
    }

    #[test]
    fn parses_every_accepted_form() {
        assert_eq!(
            KindSpec::parse("v1/ConfigMap").unwrap(),
            k("", "v1", "ConfigMap")
        );
        assert_eq!(
            KindSpec::parse("/v1/ConfigMap").unwrap(),
            k("", "v1", "ConfigMap")
        );
        assert_eq!(
            KindSpec::parse("apps/v1/Deployment").unwrap(),
            k("apps", "v1", "Deployment")
        );
        assert_eq!(
            KindSpec::parse("example.com/v1alpha1/Widget").unwrap(),
            k("example.com", "v1alpha1", "Widget")
        );
        assert_eq!(
            KindSpec::parse(" batch/v1/CronJob ").unwrap(),
            k("batch", "v1", "CronJob")
        );
    }

    #[test]
    fn rejects_malformed_kinds_with_the_accepted_forms() {
        for bad in [
            "",
            "ConfigMap",
            "a/b/c/d",
            "v1/configMap",
            "v1/",
            "/ConfigMap",
            "Apps/v1/Deployment",
            "apps/1/Deployment",
            "apps/v01/Deployment",
            "apps/v1gamma1/Deployment",
            "apps/v1beta/Deployment",
            "apps/v1/Deploy-ment",
            "-apps/v1/Deployment",
        ] {
            let err = KindSpec::parse(bad).unwrap_err();
            assert!(err.contains("GROUP/VERSION/KIND"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn api_version_and_display() {
        assert_eq!(k("", "v1", "ConfigMap").api_version(), "v1");
        assert_eq!(k("apps", "v1", "Deployment").api_version(), "apps/v1");
        assert_eq!(
            k("apps", "v1", "Deployment").to_string(),
            "apps/v1/Deployment"
        );
        assert_eq!(k("", "v1", "Secret").to_string(), "v1/Secret");
    }

    #[test]
    fn plurals_follow_kubernetes() {
        for (kind, plural) in [
            ("ConfigMap", "configmaps"),
            ("Secret", "secrets"),
            ("Ingress", "ingresses"),
            ("NetworkPolicy", "networkpolicies"),
            ("Gateway", "gateways"),
            ("Endpoints", "endpoints"),
            ("EndpointSlice", "endpointslices"),
            ("Box", "boxes"),
            ("Batch", "batches"),
            ("Mesh", "meshes"),
            ("Quiz", "quizes"),
        ] {
            assert_eq!(k("", "v1", kind).default_plural(), plural, "{kind}");
        }
    }

    #[test]
    fn knows_cluster_scoped_kinds() {
        let ns = k("", "v1", "Namespace").cluster_scoped_reason().unwrap();
        assert!(ns.contains("v1/Namespace is cluster-scoped"), "{ns}");
        assert!(
            k("rbac.authorization.k8s.io", "v1", "ClusterRole")
                .cluster_scoped_reason()
                .is_some()
        );
        assert!(k("", "v1", "ConfigMap").cluster_scoped_reason().is_none());
        assert!(
            k("example.com", "v1", "Namespace")
                .cluster_scoped_reason()
                .is_none(),
            "only the core Namespace"
        );
    }
}
