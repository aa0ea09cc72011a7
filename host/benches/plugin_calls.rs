//! Plugin call cost: each built-in transform run natively and through the wasm runtime in the
//! same process, on the same inputs, with the same post-processing (host invariants).
//!
//! Method: for each case, warm up, then time every call individually with `Instant` and report
//! the median, p99 and mean per call, and the ratio wasm / native of the medians. The wasm path
//! reuses a pooled instance (the production path), so it measures the call, not instantiation;
//! instantiation is measured separately. Output: a table on stdout and JSON in
//! `$BENCH_OUT` (default `target/bench/plugin_calls.json`). `BENCH_ITERATIONS` sets the number
//! of timed calls per case (default 20000; `make test` does not run this).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use liqo_host::invariants::{self, Expectation};
use liqo_host::plugin::{
    CallServices, CidrRemap, ClusterIdentity, KindRef, ObjectReader, ObjectRef, PluginLimits,
    PluginMetrics, PluginRuntime, ReflectCall, RuntimeConfig, builtin,
};
use liqo_plugin_sdk::{CidrMap, DecisionJson, FakeHost, HostApi, ReflectContext};
use serde_json::{Value, json};

struct Stats {
    median: Duration,
    p99: Duration,
    mean: Duration,
}

fn measure(iterations: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..(iterations / 10).max(100) {
        f();
    }
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort();
    let total: Duration = samples.iter().sum();
    Stats {
        median: samples[samples.len() / 2],
        p99: samples[(samples.len() * 99 / 100).min(samples.len() - 1)],
        mean: total / samples.len() as u32,
    }
}

fn service() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/service/tests/golden/clusterip-kubectl-applied.input.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("golden service")).unwrap()
}

fn endpoint_slice(endpoints: usize) -> Value {
    let eps: Vec<Value> = (0..endpoints)
        .map(|i| {
            json!({
                "addresses": [format!("10.200.{}.{}", i / 250, i % 250 + 1)],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": "london-node",
                "targetRef": {"kind": "Pod", "namespace": "liqo-demo", "name": format!("flights-{i}"), "uid": format!("uid-{i}")},
                "zone": "eu-west-1a",
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "flights-service-x7k2p",
            "namespace": "liqo-demo",
            "uid": "3f9b",
            "resourceVersion": "812",
            "generateName": "flights-service-",
            "labels": {
                "kubernetes.io/service-name": "flights-service",
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "flights-service", "uid": "1", "controller": true, "blockOwnerDeletion": true}],
        },
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [{"name": "http", "port": 7999, "protocol": "TCP"}],
    })
}

struct Objects(Vec<Value>);
impl ObjectReader for Objects {
    fn get(&self, kind: &KindRef, ns: &str, name: &str) -> Result<Option<String>, String> {
        Ok(self
            .0
            .iter()
            .find(|o| {
                o["kind"] == kind.kind.as_str()
                    && o["metadata"]["namespace"] == ns
                    && o["metadata"]["name"] == name
            })
            .map(Value::to_string))
    }
}

type Native = fn(&dyn HostApi, &ReflectContext, &str) -> Result<DecisionJson, String>;

struct Case {
    name: &'static str,
    source: &'static str,
    bytes: &'static [u8],
    native: Native,
    object: Value,
}

fn main() {
    let iterations: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let out_path = std::env::var("BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench/plugin_calls.json")
        });

    let rt = PluginRuntime::new(
        RuntimeConfig {
            cache_dir: None,
            ..RuntimeConfig::default()
        },
        PluginMetrics::default(),
    )
    .expect("runtime");
    let london = ClusterIdentity {
        id: "london".into(),
        name: "london".into(),
    };
    let newyork = ClusterIdentity {
        id: "newyork".into(),
        name: "newyork".into(),
    };
    let svc = service();
    let services = CallServices {
        reader: Arc::new(Objects(vec![svc.clone()])),
        translator: Arc::new(CidrRemap::parse("10.200.0.0/16=10.201.0.0/16").unwrap()),
    };
    let call = ReflectCall {
        local_cluster: &london,
        remote_cluster: &newyork,
        remote_namespace: "liqo-demo",
        services: &services,
    };
    let native_host = FakeHost::new()
        .with_object(svc.clone())
        .with_cidr_map(CidrMap::from_pairs([("10.200.0.0/16", "10.201.0.0/16")]).unwrap());
    let native_ctx = ReflectContext {
        local_cluster: liqo_plugin_sdk::ClusterIdentity::new("london", "london"),
        remote_cluster: liqo_plugin_sdk::ClusterIdentity::new("newyork", "newyork"),
        local_namespace: "liqo-demo".into(),
        remote_namespace: "liqo-demo".into(),
        config: "{}".into(),
    };

    let cases = [
        Case {
            name: "service (kubectl-applied ClusterIP)",
            source: "builtin:service",
            bytes: builtin::SERVICE,
            native: liqo_plugin_service::reflect_json,
            object: svc.clone(),
        },
        Case {
            name: "endpointslice (100 endpoints)",
            source: "builtin:endpointslice",
            bytes: builtin::ENDPOINTSLICE,
            native: liqo_plugin_endpointslice::reflect_json,
            object: endpoint_slice(100),
        },
    ];

    println!(
        "plugin call cost, {iterations} timed calls per case (warm instance, same inputs, host invariants included)\n"
    );
    println!(
        "{:<38} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>8}",
        "case",
        "native p50",
        "native p99",
        "native mean",
        "wasm p50",
        "wasm p99",
        "wasm mean",
        "ratio"
    );
    let mut results = Vec::new();
    for case in &cases {
        let plugin = rt
            .load_reflector(case.source, case.bytes, PluginLimits::default(), "{}")
            .expect("load plugin");
        let text = case.object.to_string();
        let object = ObjectRef::from_object(&case.object).unwrap();
        let expect = Expectation {
            api_version: &object.api_version,
            kind: &object.kind,
            name: &object.name,
            remote_namespace: "liqo-demo",
            origin_cluster_id: "london",
            destination_cluster_id: "newyork",
            reflect_status: false,
        };
        // Sanity: both paths must produce the same object, or the comparison means nothing.
        let wasm_out = plugin
            .reflect_json(&call, &object, &text)
            .expect("wasm call");
        let native_out = match (case.native)(&native_host, &native_ctx, &text).unwrap() {
            DecisionJson::Apply(s) => invariants::enforce(&s, &expect).unwrap().0,
            DecisionJson::Skip(r) => panic!("native skipped: {r}"),
        };
        assert_eq!(
            wasm_out,
            liqo_host::plugin::Outcome::Apply(native_out),
            "{}: paths differ",
            case.name
        );

        let native = measure(iterations, || {
            let out = (case.native)(&native_host, &native_ctx, &text).unwrap();
            if let DecisionJson::Apply(s) = out {
                std::hint::black_box(invariants::enforce(&s, &expect).unwrap());
            }
        });
        let wasm = measure(iterations, || {
            std::hint::black_box(plugin.reflect_json(&call, &object, &text).unwrap());
        });
        let ratio = wasm.median.as_secs_f64() / native.median.as_secs_f64();
        println!(
            "{:<38} {:>12.2?} {:>12.2?} {:>12.2?} {:>12.2?} {:>12.2?} {:>12.2?} {:>7.2}x",
            case.name,
            native.median,
            native.p99,
            native.mean,
            wasm.median,
            wasm.p99,
            wasm.mean,
            ratio
        );
        results.push(json!({
            "case": case.name,
            "plugin": plugin.name(),
            "componentBytes": case.bytes.len(),
            "inputBytes": text.len(),
            "iterations": iterations,
            "nativeNs": {"p50": native.median.as_nanos() as u64, "p99": native.p99.as_nanos() as u64, "mean": native.mean.as_nanos() as u64},
            "wasmNs": {"p50": wasm.median.as_nanos() as u64, "p99": wasm.p99.as_nanos() as u64, "mean": wasm.mean.as_nanos() as u64},
            "ratioP50": ratio,
        }));
    }

    // Cold costs: compiling a component (no cache) and instantiating one.
    let started = Instant::now();
    let fresh = rt
        .load_reflector(
            "builtin:service",
            builtin::SERVICE,
            PluginLimits::default(),
            "{}",
        )
        .unwrap();
    let load = started.elapsed();
    let fresh_call = {
        let object = ObjectRef::from_object(&svc).unwrap();
        let t = Instant::now();
        fresh
            .reflect_json(&call, &object, &svc.to_string())
            .unwrap();
        t.elapsed()
    };
    println!(
        "\ncold: compile+load service component {load:.2?}; first call (instantiation included) {fresh_call:.2?}"
    );

    let report = json!({
        "benchmark": "plugin_calls",
        "cases": results,
        "cold": {"loadNs": load.as_nanos() as u64, "firstCallNs": fresh_call.as_nanos() as u64},
    });
    if let Some(dir) = out_path.parent() {
        std::fs::create_dir_all(dir).expect("bench output dir");
    }
    std::fs::write(&out_path, serde_json::to_string_pretty(&report).unwrap()).expect("write json");
    println!("wrote {}", out_path.display());
}
