//! The files of a new plugin crate (`liqoctl plugin new`), embedded in liqoctl.
//!
//! The templates are plain text with `{{placeholder}}` markers, filled by [`render`]. The WIT
//! file is the host's own `wit/reflection.wit`, embedded at build time, so a scaffolded plugin
//! always targets the contract of the liqoctl (and host) that created it.

use serde_json::{Value, json};

use super::kind::KindSpec;

/// The host's WIT contract, copied into every new crate as `wit/reflection.wit`.
pub const WIT: &str = include_str!("../../../../wit/reflection.wit");

const CARGO_TOML: &str = include_str!("Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("lib.rs.tmpl");
const TRANSFORM_RS: &str = include_str!("transform.rs.tmpl");
const GOLDEN_RS: &str = include_str!("golden.rs.tmpl");
const MAKEFILE: &str = include_str!("Makefile.tmpl");
const README_MD: &str = include_str!("README.md.tmpl");
const GITIGNORE: &str = include_str!("gitignore.tmpl");

/// What a new crate is made from.
#[derive(Debug, Clone)]
pub struct Scaffold {
    /// Plugin name (manifest name, default ReflectionPlugin name): a DNS-1123 label.
    pub name: String,
    /// The reflected kind.
    pub kind: KindSpec,
    /// Its plural resource name.
    pub plural: String,
}

impl Scaffold {
    /// The Cargo package name: `liqo-plugin-<name>` (kept as it is when it already starts so).
    pub fn crate_name(&self) -> String {
        if self.name.starts_with("liqo-plugin-") {
            self.name.clone()
        } else {
            format!("liqo-plugin-{}", self.name)
        }
    }

    /// The library name, which is also the `.wasm` file stem.
    pub fn lib_name(&self) -> String {
        self.crate_name().replace('-', "_")
    }

    /// The top-level field holding the sample content: `data` for ConfigMaps and Secrets,
    /// `spec` for everything else.
    fn content_field(&self) -> &'static str {
        match (self.kind.group.as_str(), self.kind.kind.as_str()) {
            ("", "ConfigMap") | ("", "Secret") => "data",
            _ => "spec",
        }
    }

    /// The sample value in the content (Secret data is base64).
    fn greeting(&self) -> &'static str {
        if self.kind.group.is_empty() && self.kind.kind == "Secret" {
            "aGVsbG8="
        } else {
            "hello"
        }
    }

    fn render(&self, template: &str) -> String {
        render(
            template,
            &[
                ("name", &self.name),
                ("crate", &self.crate_name()),
                ("lib", &self.lib_name()),
                ("group", &self.kind.group),
                ("version", &self.kind.version),
                ("kind", &self.kind.kind),
                ("plural", &self.plural),
                ("api_version", &self.kind.api_version()),
                ("kind_spec", &self.kind.to_string()),
                ("content_field", self.content_field()),
                ("greeting", self.greeting()),
                ("wit_version", liqo_host::plugin::WIT_VERSION),
                ("liqoctl_version", env!("CARGO_PKG_VERSION")),
            ],
        )
    }

    /// A local object of the kind, as the API server would serve it.
    fn sample(&self, name: &str, annotations: Value) -> Value {
        let mut object = json!({
            "apiVersion": self.kind.api_version(),
            "kind": self.kind.kind,
            "metadata": {
                "name": name,
                "namespace": "default",
                "uid": "6b1c8a4e-0000-4000-8000-000000000001",
                "resourceVersion": "4242",
                "creationTimestamp": "2024-01-01T00:00:00Z",
                "labels": {"app": "example"},
                "annotations": annotations,
            },
        });
        object[self.content_field()] = json!({"greeting": self.greeting()});
        if self.kind.group.is_empty() && self.kind.kind == "Secret" {
            object["type"] = json!("Opaque");
        }
        object
    }

    /// The golden cases: (file name, content).
    fn testdata(&self) -> Vec<(String, String)> {
        let basic = self.sample(
            "example",
            json!({
                "team": "payments",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"note\":\"not copied\"}"
            }),
        );
        let mut expected = json!({
            "apiVersion": self.kind.api_version(),
            "kind": self.kind.kind,
            "metadata": {
                "name": "example",
                "labels": {"app": "example"},
                "annotations": {"team": "payments"},
            },
        });
        expected[self.content_field()] = basic[self.content_field()].clone();
        if let Some(t) = basic.get("type") {
            expected["type"] = t.clone();
        }
        let mut with_config = expected.clone();
        with_config["metadata"]["labels"]["reflected-by"] = json!(self.name);
        let skipped = self.sample("skipped", json!({"liqo.io/skip-reflection": "true"}));
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
        vec![
            ("basic.input.json".into(), pretty(&basic)),
            ("basic.expected.json".into(), pretty(&expected)),
            ("extra-labels.input.json".into(), pretty(&basic)),
            (
                "extra-labels.context.json".into(),
                pretty(&json!({"config": {"extraLabels": {"reflected-by": self.name}}})),
            ),
            ("extra-labels.expected.json".into(), pretty(&with_config)),
            ("skip-annotated.input.json".into(), pretty(&skipped)),
            (
                "skip-annotated.expected.json".into(),
                pretty(&json!({
                    "skip": format!("the {} is annotated liqo.io/skip-reflection", self.kind.kind)
                })),
            ),
        ]
    }

    /// Every file of the crate as (path relative to the crate root, content), in the order
    /// they are written.
    pub fn files(&self) -> Vec<(String, String)> {
        let mut files = vec![
            ("Cargo.toml".to_string(), self.render(CARGO_TOML)),
            (".gitignore".to_string(), self.render(GITIGNORE)),
            ("Makefile".to_string(), self.render(MAKEFILE)),
            ("README.md".to_string(), self.render(README_MD)),
            ("wit/reflection.wit".to_string(), WIT.to_string()),
            ("src/lib.rs".to_string(), self.render(LIB_RS)),
            ("src/transform.rs".to_string(), self.render(TRANSFORM_RS)),
            ("tests/golden.rs".to_string(), self.render(GOLDEN_RS)),
        ];
        files.extend(
            self.testdata()
                .into_iter()
                .map(|(name, content)| (format!("testdata/{name}"), content)),
        );
        files
    }
}

/// Replaces every `{{key}}` of `template` with its value.
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (key, value) in values {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaffold(kind: &str) -> Scaffold {
        let kind = KindSpec::parse(kind).unwrap();
        Scaffold {
            name: "demo".into(),
            plural: kind.default_plural(),
            kind,
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        for kind in ["v1/ConfigMap", "v1/Secret", "example.com/v1alpha1/Widget"] {
            for (path, content) in scaffold(kind).files() {
                if path == "wit/reflection.wit" {
                    continue;
                }
                assert!(
                    !content.contains("{{"),
                    "{kind}: {path} keeps a placeholder"
                );
            }
        }
    }

    #[test]
    fn names_and_kind_reach_the_files() {
        let s = scaffold("example.com/v1alpha1/Widget");
        assert_eq!(s.crate_name(), "liqo-plugin-demo");
        assert_eq!(s.lib_name(), "liqo_plugin_demo");
        let files: std::collections::BTreeMap<_, _> = s.files().into_iter().collect();
        let cargo = &files["Cargo.toml"];
        assert!(cargo.contains("name = \"liqo-plugin-demo\""), "{cargo}");
        assert!(cargo.contains("\n[workspace]\n"), "standalone: {cargo}");
        assert!(
            cargo.contains("crate-type = [\"cdylib\", \"rlib\"]"),
            "{cargo}"
        );
        let transform = &files["src/transform.rs"];
        assert!(transform.contains("pub const API_VERSION: &str = \"example.com/v1alpha1\";"));
        assert!(
            transform.contains("plural: \"widgets\".to_owned()"),
            "{transform}"
        );
        assert!(files["tests/golden.rs"].contains("use liqo_plugin_demo::transform"));
        assert_eq!(files["wit/reflection.wit"], WIT);
        assert!(WIT.contains(&format!(
            "package liqo:reflection@{};",
            liqo_host::plugin::WIT_VERSION
        )));
        let input: Value = serde_json::from_str(&files["testdata/basic.input.json"]).unwrap();
        assert_eq!(input["apiVersion"], "example.com/v1alpha1");
        assert_eq!(input["spec"]["greeting"], "hello");
        let prefixed = Scaffold {
            name: "liqo-plugin-x".into(),
            ..scaffold("v1/ConfigMap")
        };
        assert_eq!(prefixed.crate_name(), "liqo-plugin-x");
    }

    #[test]
    fn config_maps_and_secrets_carry_data() {
        let files: std::collections::BTreeMap<_, _> =
            scaffold("v1/Secret").files().into_iter().collect();
        let expected: Value = serde_json::from_str(&files["testdata/basic.expected.json"]).unwrap();
        assert_eq!(expected["data"]["greeting"], "aGVsbG8=");
        assert_eq!(expected["type"], "Opaque");
        assert!(expected.get("spec").is_none());
    }

    #[test]
    fn render_replaces_all_occurrences() {
        assert_eq!(
            render("{{a}}-{{b}}-{{a}}", &[("a", "x"), ("b", "y")]),
            "x-y-x"
        );
    }
}
