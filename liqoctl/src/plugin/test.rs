//! `liqoctl plugin test PLUGIN.wasm --input OBJ.yaml`: runs a plugin on objects through the
//! host's runtime and invariants, prints what the host would write, and compares it with a
//! golden file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::Args;
use liqo_host::plugin::{
    AddressTranslator, CallServices, CidrRemap, ClusterIdentity, IdentityTranslation, KindRef,
    ObjectReader, Outcome, PluginLimits, ReflectCall, ReflectorPlugin,
};
use serde_json::{Value, json};

use super::docs;
use super::fielddiff;
use crate::output::OutputFormat;

/// Flags of `liqoctl plugin test`.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// The plugin component (.wasm), as built by `liqoctl plugin build`.
    pub plugin: PathBuf,
    /// The local objects: a YAML file (several documents separated by ---, or a kind: List as
    /// printed by kubectl get -o yaml) or JSON; `-` reads standard input. Each object is
    /// reflected in turn. Objects without metadata.namespace are taken to be in `default`.
    #[arg(long, short = 'i', value_name = "FILE")]
    pub input: PathBuf,
    #[command(flatten)]
    pub config: super::ConfigArgs,
    /// The twin namespace in the peer (default: the object's namespace, as with
    /// EnforceSameName).
    #[arg(long, value_name = "NAMESPACE")]
    pub remote_namespace: Option<String>,
    /// This cluster's id (the value of the offloading.liqo.io/origin label).
    #[arg(long, value_name = "ID", default_value = "local-cluster")]
    pub local_cluster: String,
    /// The peer's id (the value of the offloading.liqo.io/destination label).
    #[arg(long, value_name = "ID", default_value = "remote-cluster")]
    pub remote_cluster: String,
    /// Objects the plugin may read with host.get-object (kinds it declares in `reads`), in a
    /// YAML or JSON file like --input. Objects without a namespace match any namespace.
    #[arg(long, value_name = "FILE")]
    pub objects: Option<PathBuf>,
    /// Address translation for host.translate-address, as FROM=TO CIDR pairs
    /// (10.200.0.0/16=10.201.0.0/16,...); default: addresses are unchanged.
    #[arg(long, value_name = "FROM=TO,...")]
    pub address_translation: Option<String>,
    /// CPU budget of one call in milliseconds, as the ReflectionPlugin's
    /// spec.limits.cpuMillisPerCall.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub cpu_ms: u64,
    /// Memory cap of the plugin in MiB, as spec.limits.memoryMiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=512))]
    pub memory_mib: u64,
    /// A golden file (YAML or JSON) with the expected results, one document per input object:
    /// the remote object, `skip: <reason>` or `error: <message>`. Differences are printed field
    /// by field and the exit status is 1.
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,
    /// Output format of the results (default yaml; several results are a YAML stream, or a
    /// JSON array).
    #[arg(short, long, value_enum)]
    pub output: Option<OutputFormat>,
}

/// What the host would do with one object.
#[derive(Debug, Clone, PartialEq)]
pub enum CallResult {
    /// Apply this object (invariants enforced).
    Apply(Value),
    /// Skip, with the plugin's reason.
    Skip(String),
    /// The call failed (error, trap, limit, invalid output).
    Error(String),
}

impl CallResult {
    /// The result as a golden-file document: the object, `{skip: ...}` or `{error: ...}`.
    pub fn to_value(&self) -> Value {
        match self {
            Self::Apply(object) => object.clone(),
            Self::Skip(reason) => json!({ "skip": reason }),
            Self::Error(message) => json!({ "error": message }),
        }
    }
}

/// A fixed set of objects served to `host.get-object`: `--objects` of `plugin test`, or the
/// objects `plugin diff` listed from the cluster.
pub struct ObjectList(pub Vec<Value>);

impl ObjectReader for ObjectList {
    fn get(&self, kind: &KindRef, namespace: &str, name: &str) -> Result<Option<String>, String> {
        let api_version = kind.api_version();
        Ok(self
            .0
            .iter()
            .find(|o| {
                let s = |p: &str| o.pointer(p).and_then(Value::as_str);
                s("/apiVersion") == Some(api_version.as_str())
                    && s("/kind") == Some(kind.kind.as_str())
                    && s("/metadata/name") == Some(name)
                    && s("/metadata/namespace").is_none_or(|ns| ns == namespace)
            })
            .map(ToString::to_string))
    }
}

/// Reflects every object with `plugin`, as the host's engine would.
pub fn reflect_all(
    plugin: &ReflectorPlugin,
    objects: &[Value],
    local: &ClusterIdentity,
    remote: &ClusterIdentity,
    remote_namespace: Option<&str>,
    services: &CallServices,
) -> Vec<CallResult> {
    objects
        .iter()
        .map(|object| {
            let namespace = object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default");
            let call = ReflectCall {
                local_cluster: local,
                remote_cluster: remote,
                remote_namespace: remote_namespace.unwrap_or(namespace),
                services,
            };
            match plugin.reflect(&call, object) {
                Ok(Outcome::Apply(remote)) => CallResult::Apply(remote),
                Ok(Outcome::Skip(reason)) => CallResult::Skip(reason),
                Err(err) => CallResult::Error(err.to_string()),
            }
        })
        .collect()
}

/// Refuses objects of kinds the plugin does not reflect: the host never calls it with them.
pub fn check_kinds(plugin: &ReflectorPlugin, objects: &[Value], file: &Path) -> Result<()> {
    for (index, object) in objects.iter().enumerate() {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let reflected = plugin
            .manifest()
            .reflects
            .iter()
            .any(|k| k.api_version() == api_version && k.kind == kind);
        if !reflected {
            bail!(
                "{}: object {} ({}) is a {api_version}/{kind}, but plugin {} reflects only {}: \
                 the host never calls it with other kinds",
                file.display(),
                index + 1,
                docs::describe(object),
                plugin.name(),
                super::kinds_of(plugin).join(", ")
            );
        }
    }
    Ok(())
}

/// The objects of the input file, each in namespace `default` unless it names one; fails when
/// there is none.
fn objects_to_reflect(input: &Path) -> Result<Vec<Value>> {
    let mut objects = docs::read_objects(input)?;
    if objects.is_empty() {
        bail!("{}: no object to reflect", input.display());
    }
    for object in &mut objects {
        if object.pointer("/metadata/namespace").is_none() {
            object["metadata"]["namespace"] = json!("default");
        }
    }
    Ok(objects)
}

/// The address translation of `--address-translation` (a CidrRemap), else Identity.
fn translator(address_translation: Option<&str>) -> Result<Arc<dyn AddressTranslator>> {
    Ok(match address_translation {
        Some(spec) => Arc::new(
            CidrRemap::parse(spec).map_err(|e| anyhow::anyhow!("--address-translation: {e}"))?,
        ),
        None => Arc::new(IdentityTranslation),
    })
}

/// Runs `liqoctl plugin test`.
pub fn run(args: TestArgs) -> Result<()> {
    // Everything that can be wrong in the input is checked before the plugin runs.
    let objects = objects_to_reflect(&args.input)?;
    let config = args.config.json()?;
    let cached = match &args.objects {
        Some(path) => docs::read_objects(path)?,
        None => Vec::new(),
    };
    let translator = translator(args.address_translation.as_deref())?;
    let expected = match &args.expect {
        Some(path) => Some(docs::read_documents(path)?),
        None => None,
    };

    let bytes = super::read_component(&args.plugin)?;
    let runtime = super::runtime()?;
    let limits = PluginLimits::new(args.cpu_ms, args.memory_mib as usize);
    let plugin = super::load(&runtime, &args.plugin, &bytes, limits, &config)?;
    check_kinds(&plugin, &objects, &args.input)?;

    let services = CallServices {
        reader: Arc::new(ObjectList(cached)),
        translator,
    };
    let local = ClusterIdentity {
        id: args.local_cluster.clone(),
        name: args.local_cluster.clone(),
    };
    let remote = ClusterIdentity {
        id: args.remote_cluster.clone(),
        name: args.remote_cluster.clone(),
    };
    let results = reflect_all(
        &plugin,
        &objects,
        &local,
        &remote,
        args.remote_namespace.as_deref(),
        &services,
    );
    let actual: Vec<Value> = results.iter().map(CallResult::to_value).collect();

    if let (Some(expected), Some(path)) = (expected, &args.expect) {
        return compare(path, expected, &actual, &objects);
    }

    print!(
        "{}",
        render(&actual, args.output.unwrap_or(OutputFormat::Yaml))
    );
    let failed = results
        .iter()
        .filter(|r| matches!(r, CallResult::Error(_)))
        .count();
    if failed > 0 {
        bail!(
            "the plugin failed on {failed} of {} objects (see the error: documents above)",
            results.len()
        );
    }
    Ok(())
}

/// Results as a YAML stream (`---` between documents) or JSON (an array when there are several).
pub fn render(values: &[Value], format: OutputFormat) -> String {
    match format {
        OutputFormat::Yaml => values
            .iter()
            .map(docs::to_yaml)
            .collect::<Vec<_>>()
            .join("---\n"),
        OutputFormat::Json => {
            let value = match values {
                [one] => one.clone(),
                many => Value::Array(many.to_vec()),
            };
            serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
        }
    }
}

/// Compares results with a golden file, prints the differences, and fails when there are any.
fn compare(path: &Path, expected: Vec<Value>, actual: &[Value], objects: &[Value]) -> Result<()> {
    let expected = match expected.as_slice() {
        // A JSON golden file for several objects is one array.
        [Value::Array(items)] if actual.len() > 1 => items.clone(),
        _ => expected,
    };
    if expected.len() != actual.len() {
        bail!(
            "{} has {} documents, but the input has {} objects: the golden file needs one \
             result per object, in order",
            path.display(),
            expected.len(),
            actual.len()
        );
    }
    let mut report = String::new();
    let mut different = 0;
    let mut fields = 0;
    for (index, (want, got)) in expected.iter().zip(actual).enumerate() {
        let changes = fielddiff::diff(want, got);
        if changes.is_empty() {
            continue;
        }
        different += 1;
        fields += changes.len();
        report.push_str(&format!(
            "object {} ({}): {} difference{}\n",
            index + 1,
            docs::describe(&objects[index]),
            changes.len(),
            if changes.len() == 1 { "" } else { "s" }
        ));
        report.push_str(&fielddiff::render(&changes, "  "));
    }
    if different == 0 {
        println!(
            "✔ {} object{} match {}",
            actual.len(),
            if actual.len() == 1 { "" } else { "s" },
            path.display()
        );
        return Ok(());
    }
    println!("--- {} (expected)", path.display());
    println!("+++ plugin output");
    print!("{report}");
    bail!(
        "the output differs from {}: {fields} field{} in {different} of {} objects",
        path.display(),
        if fields == 1 { "" } else { "s" },
        actual.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_as_golden_documents() {
        assert_eq!(
            CallResult::Skip("why".into()).to_value(),
            json!({"skip": "why"})
        );
        assert_eq!(
            CallResult::Error("bad".into()).to_value(),
            json!({"error": "bad"})
        );
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
        assert_eq!(CallResult::Apply(obj.clone()).to_value(), obj);
    }

    #[test]
    fn renders_streams_and_arrays() {
        let values = vec![json!({"skip": "a"}), json!({"error": "b"})];
        assert_eq!(
            render(&values, OutputFormat::Yaml),
            "skip: a\n---\nerror: b\n"
        );
        let json: Value = serde_json::from_str(&render(&values, OutputFormat::Json)).unwrap();
        assert_eq!(json, Value::Array(values.clone()));
        let one: Value = serde_json::from_str(&render(&values[..1], OutputFormat::Json)).unwrap();
        assert_eq!(one, values[0]);
    }

    #[test]
    fn golden_comparison_is_semantic() {
        let objects =
            vec![json!({"kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n"}})];
        let actual = vec![json!({"data": {"k": "v"}, "metadata": {"name": "a"}})];
        // Same content written in another order and as YAML: equal.
        let golden = docs::parse_documents("metadata:\n  name: a\ndata:\n  k: v\n").unwrap();
        assert!(compare(Path::new("g.yaml"), golden, &actual, &objects).is_ok());
        // One field differs: an error naming the file and the count.
        let golden = docs::parse_documents("metadata:\n  name: a\ndata:\n  k: w\n").unwrap();
        let err = compare(Path::new("g.yaml"), golden, &actual, &objects).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the output differs from g.yaml: 1 field in 1 of 1 objects"
        );
        // A wrong number of documents.
        let err = compare(Path::new("g.yaml"), vec![], &actual, &objects).unwrap_err();
        assert!(err.to_string().contains("has 0 documents"), "{err}");
        // A JSON array stands for several documents.
        let two = vec![json!({"skip": "x"}), json!({"skip": "y"})];
        let objects2 = vec![objects[0].clone(), objects[0].clone()];
        let golden = vec![Value::Array(two.clone())];
        assert!(compare(Path::new("g.json"), golden, &two, &objects2).is_ok());
    }

    #[test]
    fn file_objects_match_kind_namespace_and_name() {
        let kind = KindRef {
            group: String::new(),
            version: "v1".into(),
            kind: "Secret".into(),
            plural: "secrets".into(),
            namespaced: true,
        };
        let reader = ObjectList(vec![
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "a"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "any"}}),
        ]);
        assert!(reader.get(&kind, "a", "s").unwrap().is_some());
        assert!(reader.get(&kind, "b", "s").unwrap().is_none());
        assert!(reader.get(&kind, "b", "any").unwrap().is_some());
        let other = KindRef {
            kind: "ConfigMap".into(),
            ..kind
        };
        assert!(reader.get(&other, "a", "s").unwrap().is_none());
    }
}
