//! Golden-file cases shared by the plugins' native tests and the host's wasm tests.
//!
//! A case named `<case>` in a directory is made of:
//!
//! - `<case>.input.json`: the local object, exactly as the API server serves it;
//! - `<case>.expected.json`: what the plugin returns *before* the host's post-processing: the
//!   remote object, `{"skip": "<reason>"}` for a skip, or `{"error": "<message>"}` for an error
//!   (the namespace plugin returns `{"remoteName": ..., "namespaceObject": {...}}`);
//! - `<case>.context.json` (optional): the call's context, every field optional:
//!
//! ```json
//! {
//!   "localNamespace": "liqo-demo",
//!   "remoteNamespace": "liqo-demo",
//!   "localCluster": {"id": "london", "name": "london"},
//!   "remoteCluster": {"id": "newyork", "name": "newyork"},
//!   "config": {"reflectionPolicy": "DenyList"},
//!   "objects": [{"apiVersion": "v1", "kind": "Service", "metadata": {...}}],
//!   "translate": {"10.200.0.0/16": "10.201.0.0/16"}
//! }
//! ```
//!
//! or, instead of `translate`, `"gateway": "10.96.0.50:7901"`: gateway mode, every address
//! becomes the gateway's IP and every endpoint the gateway's IP and port.
//!
//! Defaults: `localNamespace` = the input's `metadata.namespace` (else `default`),
//! `remoteNamespace` = `localNamespace`, clusters `london`/`newyork` (id = name), `config` `{}`
//! (a JSON string is passed through verbatim, to test invalid config text), no cached objects,
//! identity translation (addresses outside every CIDR are unchanged), no gateway.
//!
//! Comparison is semantic (JSON value equality). With `UPDATE_GOLDEN=1` the expected files are
//! rewritten from the actual output, pretty-printed with sorted keys and a final newline.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cidr::CidrMap;
use crate::fake_host::FakeHost;
use crate::object;
use crate::types::{ClusterIdentity, Decision, KindRef, NamespaceMapping, ReflectContext};

/// Environment variable that makes [`check_case`] rewrite expected files instead of comparing.
pub const UPDATE_ENV: &str = "UPDATE_GOLDEN";

/// The parsed `<case>.context.json` (with defaults applied).
#[derive(Debug, Clone, PartialEq)]
pub struct GoldenContext {
    /// Namespace of the local object.
    pub local_namespace: String,
    /// Namespace of the remote object.
    pub remote_namespace: String,
    /// The consumer cluster.
    pub local_cluster: ClusterIdentity,
    /// The provider cluster.
    pub remote_cluster: ClusterIdentity,
    /// Plugin configuration as JSON text.
    pub config: String,
    /// Objects in the host cache, readable with `get_object`.
    pub objects: Vec<Value>,
    /// CIDR translation pairs `(from, to)`.
    pub translate: Vec<(String, String)>,
    /// Gateway mode (`"gateway": "IP:PORT"`): every address and endpoint translates to this
    /// gateway. Exclusive with `translate`.
    pub gateway: Option<SocketAddr>,
}

/// One golden case.
#[derive(Debug, Clone, PartialEq)]
pub struct GoldenCase {
    /// The case name (file name without `.input.json`).
    pub name: String,
    /// The local object.
    pub input: Value,
    /// The call context.
    pub context: GoldenContext,
    /// The expected output, `None` if the expected file does not exist yet.
    pub expected: Option<Value>,
    /// Where the expected output lives (written with `UPDATE_GOLDEN=1`).
    pub expected_path: PathBuf,
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|error| format!("{} is not valid JSON: {error}", path.display()))
}

fn cluster(value: Option<&Value>, default: &str, field: &str) -> Result<ClusterIdentity, String> {
    let Some(value) = value else {
        return Ok(ClusterIdentity::new(default, default));
    };
    let id = object::str_at(value, &["id"])
        .ok_or_else(|| format!("context {field}.id must be a string"))?;
    let name = object::str_at(value, &["name"]).unwrap_or(id);
    Ok(ClusterIdentity::new(id, name))
}

impl GoldenContext {
    /// Parses a context document; `input` supplies the default local namespace.
    pub fn parse(context: &Value, input: &Value) -> Result<Self, String> {
        let text = |key: &str| object::str_at(context, &[key]).map(str::to_owned);
        let local_namespace = text("localNamespace")
            .or_else(|| object::str_at(input, &["metadata", "namespace"]).map(str::to_owned))
            .unwrap_or_else(|| "default".to_owned());
        let remote_namespace = text("remoteNamespace").unwrap_or_else(|| local_namespace.clone());
        let config = match context.get("config") {
            None | Some(Value::Null) => "{}".to_owned(),
            Some(Value::String(raw)) => raw.clone(),
            Some(other) => other.to_string(),
        };
        let objects = match context.get("objects") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.clone(),
            Some(_) => return Err("context objects must be a list of objects".to_owned()),
        };
        let translate = match context.get("translate") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(pairs)) => pairs
                .iter()
                .map(|(from, to)| {
                    to.as_str()
                        .map(|to| (from.clone(), to.to_owned()))
                        .ok_or_else(|| format!("context translate[{from:?}] must be a CIDR string"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(
                    "context translate must be an object {\"from/len\": \"to/len\"}".to_owned(),
                );
            }
        };
        let gateway = match context.get("gateway") {
            None | Some(Value::Null) => None,
            Some(Value::String(endpoint)) => {
                Some(endpoint.parse::<SocketAddr>().map_err(|_| {
                    format!("context gateway {endpoint:?} must be IP:PORT (e.g. 10.96.0.50:7901)")
                })?)
            }
            Some(_) => return Err("context gateway must be a string IP:PORT".to_owned()),
        };
        if gateway.is_some() && !translate.is_empty() {
            // A peering has one translation policy: a case must not pretend to have two.
            return Err("context gateway and translate cannot be combined".to_owned());
        }
        Ok(Self {
            local_namespace,
            remote_namespace,
            local_cluster: cluster(context.get("localCluster"), "london", "localCluster")?,
            remote_cluster: cluster(context.get("remoteCluster"), "newyork", "remoteCluster")?,
            config,
            objects,
            translate,
            gateway,
        })
    }

    /// The reflect context of the call.
    pub fn reflect_context(&self) -> ReflectContext {
        ReflectContext {
            local_cluster: self.local_cluster.clone(),
            remote_cluster: self.remote_cluster.clone(),
            local_namespace: self.local_namespace.clone(),
            remote_namespace: self.remote_namespace.clone(),
            config: self.config.clone(),
        }
    }

    /// The CIDR translation of the case.
    pub fn cidr_map(&self) -> Result<CidrMap, String> {
        CidrMap::from_pairs(
            self.translate
                .iter()
                .map(|(from, to)| (from.as_str(), to.as_str())),
        )
    }

    /// A [`FakeHost`] holding the case's objects and translation (the gateway when set, else
    /// the CIDR map), refusing reads of kinds not in `reads` (pass the plugin manifest's
    /// `reads`).
    pub fn fake_host(&self, reads: Vec<KindRef>) -> Result<FakeHost, String> {
        let host = match self.gateway {
            Some(gateway) => FakeHost::new().with_gateway_addr(gateway),
            None => FakeHost::new().with_cidr_map(self.cidr_map()?),
        };
        let mut host = host.with_allowed_reads(reads);
        for object in &self.objects {
            host.insert_object(object.clone())?;
        }
        Ok(host)
    }
}

/// Loads every case (`*.input.json`) in `dir`, sorted by name.
pub fn load_cases(dir: impl AsRef<Path>) -> Result<Vec<GoldenCase>, String> {
    let dir = dir.as_ref();
    let entries =
        fs::read_dir(dir).map_err(|error| format!("cannot list {}: {error}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(|f| f.strip_suffix(".input.json"))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let input = read_json(&dir.join(format!("{name}.input.json")))?;
            let context_path = dir.join(format!("{name}.context.json"));
            let context_doc = if context_path.exists() {
                read_json(&context_path)?
            } else {
                Value::Object(Default::default())
            };
            let context = GoldenContext::parse(&context_doc, &input)
                .map_err(|error| format!("case {name}: {error}"))?;
            let expected_path = dir.join(format!("{name}.expected.json"));
            let expected = if expected_path.exists() {
                Some(read_json(&expected_path)?)
            } else {
                None
            };
            Ok(GoldenCase {
                name,
                input,
                context,
                expected,
                expected_path,
            })
        })
        .collect()
}

/// The golden form of a reflect outcome: the object, `{"skip": reason}` or `{"error": message}`.
pub fn reflect_outcome(outcome: &Result<Decision, String>) -> Value {
    match outcome {
        Ok(decision) => decision.to_golden(),
        Err(message) => serde_json::json!({ "error": message }),
    }
}

/// The golden form of a namespace mapping outcome.
pub fn mapping_outcome(outcome: &Result<NamespaceMapping, String>) -> Value {
    match outcome {
        Ok(mapping) => mapping.to_golden(),
        Err(message) => serde_json::json!({ "error": message }),
    }
}

/// Pretty-printed JSON with sorted keys and a final newline: the on-disk form of expected files.
pub fn canonical_json(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(&sorted(value)).unwrap_or_default();
    text.push('\n');
    text
}

/// `value` with every object's keys in sorted order. serde_json's map is already sorted unless
/// another crate in the build enables its `preserve_order` feature; sorting explicitly keeps the
/// files stable either way.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(fields) => {
            let mut entries: Vec<(&String, &Value)> = fields.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key.clone(), sorted(value)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Whether `UPDATE_GOLDEN=1` is set.
pub fn update_requested() -> bool {
    std::env::var(UPDATE_ENV).is_ok_and(|value| value == "1")
}

/// Compares `actual` with the case's expected output, or rewrites the expected file when
/// `UPDATE_GOLDEN=1`. The error shows both documents.
pub fn check_case(case: &GoldenCase, actual: &Value) -> Result<(), String> {
    if update_requested() {
        return fs::write(&case.expected_path, canonical_json(actual))
            .map_err(|error| format!("cannot write {}: {error}", case.expected_path.display()));
    }
    match &case.expected {
        None => Err(format!(
            "case {}: {} is missing; run with {UPDATE_ENV}=1 to create it. Actual:\n{}",
            case.name,
            case.expected_path.display(),
            canonical_json(actual)
        )),
        Some(expected) if expected == actual => Ok(()),
        Some(expected) => Err(format!(
            "case {}: output differs from {}\n--- expected\n{}--- actual\n{}",
            case.name,
            case.expected_path.display(),
            canonical_json(expected),
            canonical_json(actual)
        )),
    }
}

/// Runs every case in `dir` through `run` and panics with every failure at once.
/// Also fails if `dir` holds no case (a moved directory must not pass silently).
pub fn run_cases(
    dir: impl AsRef<Path>,
    run: impl Fn(&GoldenCase) -> Result<Value, String>,
) -> usize {
    let cases = load_cases(dir).unwrap_or_else(|error| panic!("{error}"));
    assert!(!cases.is_empty(), "no golden cases found");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            run(case)
                .map_err(|error| format!("case {}: cannot run: {error}", case.name))
                .and_then(|actual| check_case(case, &actual))
                .err()
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} golden case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    cases.len()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::host::HostApi;
    use crate::types::kinds;

    #[test]
    fn context_defaults() {
        let input = json!({"metadata": {"name": "web", "namespace": "shop"}});
        let context = GoldenContext::parse(&json!({}), &input).unwrap();
        assert_eq!(context.local_namespace, "shop");
        assert_eq!(context.remote_namespace, "shop");
        assert_eq!(
            context.local_cluster,
            ClusterIdentity::new("london", "london")
        );
        assert_eq!(
            context.remote_cluster,
            ClusterIdentity::new("newyork", "newyork")
        );
        assert_eq!(context.config, "{}");
        assert!(context.objects.is_empty() && context.translate.is_empty());
        assert_eq!(context.gateway, None);
        let no_namespace = GoldenContext::parse(&json!({}), &json!({})).unwrap();
        assert_eq!(no_namespace.local_namespace, "default");
    }

    #[test]
    fn context_fields() {
        let context = GoldenContext::parse(
            &json!({
                "localNamespace": "a", "remoteNamespace": "b",
                "localCluster": {"id": "id-1", "name": "one"}, "remoteCluster": {"id": "id-2"},
                "config": {"reflectionPolicy": "AllowList"},
                "objects": [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "a"}}],
                "translate": {"10.0.0.0/8": "11.0.0.0/8"}
            }),
            &json!({}),
        )
        .unwrap();
        let ctx = context.reflect_context();
        assert_eq!(
            (ctx.local_namespace.as_str(), ctx.remote_namespace.as_str()),
            ("a", "b")
        );
        assert_eq!(ctx.remote_cluster, ClusterIdentity::new("id-2", "id-2"));
        assert_eq!(ctx.config, r#"{"reflectionPolicy":"AllowList"}"#);
        let host = context.fake_host(vec![kinds::service()]).unwrap();
        assert!(
            host.get_object(&kinds::service(), "a", "s")
                .unwrap()
                .is_some()
        );
        assert_eq!(host.translate_address("10.1.2.3").unwrap(), "11.1.2.3");
        // A string config is passed through verbatim (to test invalid config text).
        let raw = GoldenContext::parse(&json!({"config": "{oops"}), &json!({})).unwrap();
        assert_eq!(raw.config, "{oops");
    }

    #[test]
    fn context_gateway() {
        let context =
            GoldenContext::parse(&json!({"gateway": "10.96.0.50:7901"}), &json!({})).unwrap();
        assert_eq!(context.gateway, Some("10.96.0.50:7901".parse().unwrap()));
        let host = context.fake_host(vec![]).unwrap();
        assert_eq!(
            host.translate_endpoint("a", "s", "10.1.2.3", 8080, "TCP")
                .unwrap(),
            crate::TranslatedEndpoint {
                address: "10.96.0.50".into(),
                port: 7901
            }
        );
        for bad in [
            json!({"gateway": "10.96.0.50"}),
            json!({"gateway": 7901}),
            json!({"gateway": "10.96.0.50:7901", "translate": {"10.0.0.0/8": "11.0.0.0/8"}}),
        ] {
            assert!(
                GoldenContext::parse(&bad, &json!({})).is_err(),
                "accepted {bad}"
            );
        }
    }

    #[test]
    fn outcomes_and_canonical_form() {
        assert_eq!(
            reflect_outcome(&Ok(Decision::Skip("why".into()))),
            json!({"skip": "why"})
        );
        assert_eq!(reflect_outcome(&Err("bad".into())), json!({"error": "bad"}));
        assert_eq!(
            canonical_json(&json!({"b": 1, "a": [true]})),
            "{\n  \"a\": [\n    true\n  ],\n  \"b\": 1\n}\n"
        );
    }
}
