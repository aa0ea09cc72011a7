//! Every golden case of the built-in plugins, run through the wasm runtime: the component must
//! give exactly what the native transform gives (same bytes after the host's invariants), and
//! what the golden file expects.

use std::path::PathBuf;
use std::sync::Arc;

use liqo_host::invariants::{self, Expectation};
use liqo_host::plugin::{
    AddressTranslator, CallServices, CidrRemap, ClusterIdentity, GatewayTranslation, KindRef,
    ObjectReader, ObjectRef, Outcome, PluginError, PluginLimits, PluginMetrics, PluginRuntime,
    ReflectCall, ReflectorPlugin, RuntimeConfig, builtin,
};
use liqo_plugin_sdk::golden::{self, GoldenCase};
use liqo_plugin_sdk::{DecisionJson, ReflectContext};
use serde_json::{Value, json};

fn runtime() -> PluginRuntime {
    let config = RuntimeConfig {
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compile-cache")),
        ..RuntimeConfig::default()
    };
    PluginRuntime::new(config, PluginMetrics::default()).expect("runtime")
}

fn golden_dir(plugin: &str) -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("../plugins")
    .join(plugin)
    .join("tests/golden")
}

/// The host cache of a golden case: the objects listed in its context.
struct CaseObjects(Vec<Value>);

impl ObjectReader for CaseObjects {
    fn get(&self, kind: &KindRef, namespace: &str, name: &str) -> Result<Option<String>, String> {
        Ok(self
            .0
            .iter()
            .find(|o| {
                o["kind"] == kind.kind.as_str()
                    && o["apiVersion"] == kind.api_version().as_str()
                    && o["metadata"]["namespace"].as_str().unwrap_or("") == namespace
                    && o["metadata"]["name"] == name
            })
            .map(Value::to_string))
    }
}

fn identity(c: &liqo_plugin_sdk::ClusterIdentity) -> ClusterIdentity {
    ClusterIdentity {
        id: c.id.clone(),
        name: c.name.clone(),
    }
}

type NativeReflect =
    fn(&dyn liqo_plugin_sdk::HostApi, &ReflectContext, &str) -> Result<DecisionJson, String>;

fn run_reflector_cases(plugin_name: &str, bytes: &[u8], native: NativeReflect) -> usize {
    let rt = runtime();
    let cases = golden::load_cases(golden_dir(plugin_name)).expect("golden cases");
    assert!(!cases.is_empty(), "no golden cases for {plugin_name}");
    let mut plugins: std::collections::HashMap<String, Arc<ReflectorPlugin>> = Default::default();
    for case in &cases {
        let plugin = plugins
            .entry(case.context.config.clone())
            .or_insert_with(|| {
                rt.load_reflector(
                    plugin_name,
                    bytes,
                    PluginLimits::default(),
                    &case.context.config,
                )
                .expect("load plugin")
            })
            .clone();
        check_reflector_case(&plugin, case, native);
    }
    cases.len()
}

fn check_reflector_case(plugin: &ReflectorPlugin, case: &GoldenCase, native: NativeReflect) {
    let ctx = &case.context;
    let local = identity(&ctx.local_cluster);
    let remote = identity(&ctx.remote_cluster);
    let translator: Arc<dyn AddressTranslator> = match ctx.gateway {
        Some(gateway) => Arc::new(GatewayTranslation::new(gateway)),
        None => Arc::new(
            CidrRemap::new(
                ctx.translate
                    .iter()
                    .map(|(f, t)| (f.parse().unwrap(), t.parse().unwrap()))
                    .collect(),
            )
            .expect("translation rules"),
        ),
    };
    let services = CallServices {
        reader: Arc::new(CaseObjects(ctx.objects.clone())),
        translator,
    };
    let call = ReflectCall {
        local_cluster: &local,
        remote_cluster: &remote,
        remote_namespace: &ctx.remote_namespace,
        services: &services,
    };
    let input_text = case.input.to_string();
    let object = ObjectRef {
        api_version: case.input["apiVersion"].as_str().unwrap().to_string(),
        kind: case.input["kind"].as_str().unwrap().to_string(),
        namespace: ctx.local_namespace.clone(),
        name: case.input["metadata"]["name"].as_str().unwrap().to_string(),
    };
    let wasm = plugin.reflect_json(&call, &object, &input_text);

    let expect = Expectation {
        api_version: &object.api_version,
        kind: &object.kind,
        name: &object.name,
        remote_namespace: &ctx.remote_namespace,
        origin_cluster_id: &local.id,
        destination_cluster_id: &remote.id,
        reflect_status: plugin.manifest().reflect_status,
    };

    // Native transform, post-processed by the same host invariants.
    let host = case
        .context
        .fake_host(native_reads(plugin))
        .expect("fake host");
    let native_result = native(&host, &ctx.reflect_context(), &input_text);
    match (&wasm, &native_result) {
        (Ok(Outcome::Apply(w)), Ok(DecisionJson::Apply(n))) => {
            let (n, _) = invariants::enforce(n, &expect).expect("native output valid");
            assert_eq!(
                serde_json::to_string(w).unwrap(),
                serde_json::to_string(&n).unwrap(),
                "case {}: wasm and native differ",
                case.name
            );
        }
        (Ok(Outcome::Skip(w)), Ok(DecisionJson::Skip(n))) => {
            assert_eq!(w, n, "case {}: skip reasons differ", case.name)
        }
        (Err(PluginError::Rejected { message, .. }), Err(n)) => {
            assert_eq!(message, n, "case {}: errors differ", case.name)
        }
        _ => panic!(
            "case {}: wasm gave {wasm:?}, native gave {native_result:?}",
            case.name
        ),
    }

    // And both match the golden file.
    let expected = case
        .expected
        .as_ref()
        .unwrap_or_else(|| panic!("case {} has no expected file", case.name));
    match (&wasm, expected.get("skip"), expected.get("error")) {
        (Ok(Outcome::Skip(reason)), Some(want), _) => {
            assert_eq!(reason, want.as_str().unwrap(), "case {}", case.name)
        }
        (Err(PluginError::Rejected { message, .. }), _, Some(want)) => {
            assert_eq!(message, want.as_str().unwrap(), "case {}", case.name)
        }
        (Ok(Outcome::Apply(got)), None, None) => {
            let (want, _) = invariants::enforce_value(expected.clone(), &expect)
                .expect("expected output valid");
            assert_eq!(
                got, &want,
                "case {}: wasm output differs from golden",
                case.name
            );
        }
        _ => panic!(
            "case {}: wasm gave {wasm:?}, golden expects {expected}",
            case.name
        ),
    }
}

fn native_reads(plugin: &ReflectorPlugin) -> Vec<liqo_plugin_sdk::KindRef> {
    plugin
        .manifest()
        .reads
        .iter()
        .map(|k| {
            liqo_plugin_sdk::KindRef::new(&k.group, &k.version, &k.kind, &k.plural, k.namespaced)
        })
        .collect()
}

#[test]
fn service_golden_cases_match_through_wasm() {
    let n = run_reflector_cases(
        "service",
        builtin::SERVICE,
        liqo_plugin_service::reflect_json,
    );
    eprintln!("service: {n} golden cases");
}

#[test]
fn endpointslice_golden_cases_match_through_wasm() {
    let n = run_reflector_cases(
        "endpointslice",
        builtin::ENDPOINTSLICE,
        liqo_plugin_endpointslice::reflect_json,
    );
    eprintln!("endpointslice: {n} golden cases");
}

#[test]
fn namespace_golden_cases_match_through_wasm() {
    let rt = runtime();
    let mapper = rt
        .load_namespace_mapper(
            builtin::NAMESPACE_SOURCE,
            builtin::NAMESPACE,
            PluginLimits::default(),
        )
        .expect("namespace mapper");
    let cases = golden::load_cases(golden_dir("namespace")).expect("golden cases");
    assert!(!cases.is_empty());
    for case in &cases {
        let ctx = &case.context;
        let (local, remote) = (identity(&ctx.local_cluster), identity(&ctx.remote_cluster));
        let spec = case.input.get("spec").cloned().unwrap_or(json!({}));
        let wasm = mapper.map_namespace(&local, &remote, &ctx.local_namespace, &spec);
        let native = liqo_plugin_namespace::map_namespace(
            &ctx.local_cluster,
            &ctx.remote_cluster,
            &ctx.local_namespace,
            &spec,
        );
        let expected = case.expected.as_ref().expect("expected file");
        match (&wasm, &native) {
            (Ok(w), Ok(n)) => {
                assert_eq!(w.remote_name, n.remote_name, "case {}", case.name);
                let n_obj = invariants::enforce_namespace(
                    &n.namespace_object.to_string(),
                    &n.remote_name,
                    &local.id,
                    &remote.id,
                )
                .unwrap();
                assert_eq!(w.namespace_object, n_obj, "case {}", case.name);
                assert_eq!(
                    expected["remoteName"], w.remote_name,
                    "case {}: golden remote name",
                    case.name
                );
                let want = invariants::enforce_namespace(
                    &expected["namespaceObject"].to_string(),
                    &w.remote_name,
                    &local.id,
                    &remote.id,
                )
                .unwrap();
                assert_eq!(
                    w.namespace_object, want,
                    "case {}: golden object",
                    case.name
                );
            }
            (Err(PluginError::Rejected { message, .. }), Err(n)) => {
                assert_eq!(message, n, "case {}", case.name);
                assert_eq!(expected["error"], message.as_str(), "case {}", case.name);
            }
            _ => panic!("case {}: wasm {wasm:?} vs native {native:?}", case.name),
        }
    }
}

#[test]
fn builtin_manifests_declare_what_the_engine_relies_on() {
    let rt = runtime();
    let load = |name, bytes| {
        rt.load_reflector(name, bytes, PluginLimits::default(), "{}")
            .unwrap()
    };
    let service = load("builtin:service", builtin::SERVICE);
    let m = service.manifest();
    assert_eq!(m.name, "service");
    assert_eq!(m.reflects.len(), 1);
    assert_eq!(
        (
            m.reflects[0].api_version().as_str(),
            m.reflects[0].kind.as_str(),
            m.reflects[0].plural.as_str()
        ),
        ("v1", "Service", "services")
    );
    assert!(!m.reflect_status);

    let slices = load("builtin:endpointslice", builtin::ENDPOINTSLICE);
    let m = slices.manifest();
    assert_eq!(m.name, "endpointslice");
    assert_eq!(m.reflects[0].api_version(), "discovery.k8s.io/v1");
    assert_eq!(m.reflects[0].kind, "EndpointSlice");
    assert!(
        m.triggers.iter().any(|k| k.kind == "Service"),
        "slices depend on Services"
    );
    assert!(
        m.reads.iter().any(|k| k.kind == "Service"),
        "slices read their Service"
    );
}
