//! The runtime against guests that misbehave on purpose: every limit and output check must
//! hold, fail only the offending call, and leave the runtime serving other calls and plugins.

use std::sync::Arc;
use std::time::{Duration, Instant};

use liqo_host::invariants::{InvalidOutput, SERVER_OWNED_METADATA};
use liqo_host::labels;
use liqo_host::plugin::{
    CallServices, ClusterIdentity, IdentityTranslation, LoadError, NoObjects, Outcome, PluginError,
    PluginLimits, PluginMetrics, PluginRuntime, ReflectCall, ReflectorPlugin, RuntimeConfig,
    builtin,
};
use serde_json::{Value, json};

const MISBEHAVING: &str = env!("LIQO_TEST_PLUGIN_MISBEHAVING");

/// Tests share a compile cache (keyed by digest and engine settings, so always safe to reuse):
/// Cranelift runs once per component, not once per test.
fn runtime() -> PluginRuntime {
    let config = RuntimeConfig {
        cache_dir: Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compile-cache")),
        ..RuntimeConfig::default()
    };
    PluginRuntime::new(config, PluginMetrics::default()).expect("runtime")
}

fn misbehaving(rt: &PluginRuntime, limits: PluginLimits) -> Arc<ReflectorPlugin> {
    let bytes = std::fs::read(MISBEHAVING).expect("test plugin built by build.rs");
    rt.load_reflector("test:misbehaving", &bytes, limits, "{}")
        .expect("load misbehaving plugin")
}

struct Peering {
    london: ClusterIdentity,
    newyork: ClusterIdentity,
    services: CallServices,
}

impl Peering {
    fn new() -> Self {
        Self {
            london: ClusterIdentity {
                id: "london".into(),
                name: "london".into(),
            },
            newyork: ClusterIdentity {
                id: "newyork".into(),
                name: "newyork".into(),
            },
            services: CallServices {
                reader: Arc::new(NoObjects),
                translator: Arc::new(IdentityTranslation),
            },
        }
    }

    fn call(&self) -> ReflectCall<'_> {
        ReflectCall {
            local_cluster: &self.london,
            remote_cluster: &self.newyork,
            remote_namespace: "demo-remote",
            services: &self.services,
        }
    }
}

fn config_map(mode: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": format!("cm-{mode}"),
            "namespace": "demo",
            "uid": "5f1c",
            "resourceVersion": "17",
            "annotations": {"test.liqo.io/mode": mode},
        },
        "data": {"k": "v"},
    })
}

fn service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "flights-service", "namespace": "demo"},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.0.10",
            "selector": {"run": "flights-service"},
            "ports": [{"port": 7999, "protocol": "TCP", "targetPort": 7999}],
        },
    })
}

/// After any failure, the same plugin and another plugin must keep working.
fn assert_still_serving(rt: &PluginRuntime, plugin: &ReflectorPlugin, peering: &Peering) {
    let echoed = plugin
        .reflect(&peering.call(), &config_map("echo"))
        .expect("echo after failure");
    assert!(matches!(echoed, Outcome::Apply(_)));
    let service_plugin = rt
        .load_reflector(
            "builtin:service",
            builtin::SERVICE,
            PluginLimits::default(),
            "{}",
        )
        .expect("service plugin");
    let out = service_plugin
        .reflect(&peering.call(), &service())
        .expect("service plugin still serves");
    assert!(matches!(out, Outcome::Apply(_)));
}

#[test]
fn an_infinite_loop_is_stopped_by_the_cpu_limit() {
    let rt = runtime();
    let plugin = misbehaving(&rt, PluginLimits::new(100, 64));
    let peering = Peering::new();
    let started = Instant::now();
    let err = plugin
        .reflect(&peering.call(), &config_map("loop"))
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, PluginError::CpuLimit { limit_ms: 100, .. }),
        "{err}"
    );
    assert!(
        elapsed >= Duration::from_millis(100),
        "stopped early: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("misbehaving")
            && msg.contains("ConfigMap demo/cm-loop")
            && msg.contains("100 ms"),
        "{msg}"
    );
    assert_still_serving(&rt, &plugin, &peering);
}

#[test]
fn a_trap_fails_only_that_call() {
    let rt = runtime();
    let plugin = misbehaving(&rt, PluginLimits::default());
    let peering = Peering::new();
    let err = plugin
        .reflect(&peering.call(), &config_map("trap"))
        .unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
    assert_still_serving(&rt, &plugin, &peering);
    assert_eq!(rt.metrics().errors("misbehaving", "trap"), 1);
}

#[test]
fn allocation_past_the_memory_cap_is_a_memory_limit_error() {
    let rt = runtime();
    let plugin = misbehaving(&rt, PluginLimits::new(5_000, 16));
    let peering = Peering::new();
    let err = plugin
        .reflect(&peering.call(), &config_map("oom"))
        .unwrap_err();
    assert!(
        matches!(err, PluginError::MemoryLimit { limit_mib: 16, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("16 MiB"), "{err}");
    assert_still_serving(&rt, &plugin, &peering);
}

#[test]
fn invalid_outputs_are_never_written() {
    let rt = runtime();
    let plugin = misbehaving(&rt, PluginLimits::default());
    let peering = Peering::new();
    let expect_invalid = |mode: &str, check: fn(&InvalidOutput) -> bool| match plugin
        .reflect(&peering.call(), &config_map(mode))
    {
        Err(PluginError::InvalidOutput { source, object, .. }) => {
            assert!(check(&source), "{mode}: {source}");
            assert!(object.contains(&format!("cm-{mode}")), "{object}");
        }
        other => panic!("{mode}: expected invalid output, got {other:?}"),
    };
    expect_invalid("garbage", |e| matches!(e, InvalidOutput::NotJson(_)));
    expect_invalid("wrong-kind", |e| {
        matches!(e, InvalidOutput::WrongKind { .. })
    });
    expect_invalid("no-name", |e| matches!(e, InvalidOutput::WrongName { .. }));
    assert_eq!(rt.metrics().errors("misbehaving", "invalid_output"), 3);
    assert_still_serving(&rt, &plugin, &peering);
}

#[test]
fn the_host_corrects_namespace_ownership_and_server_fields() {
    let rt = runtime();
    let plugin = misbehaving(&rt, PluginLimits::default());
    let peering = Peering::new();
    let Outcome::Apply(out) = plugin
        .reflect(&peering.call(), &config_map("other-namespace"))
        .unwrap()
    else {
        panic!("expected apply")
    };
    assert_eq!(out["metadata"]["namespace"], "demo-remote");

    let Outcome::Apply(out) = plugin
        .reflect(&peering.call(), &config_map("server-fields"))
        .unwrap()
    else {
        panic!("expected apply")
    };
    for field in SERVER_OWNED_METADATA {
        assert!(out["metadata"].get(*field).is_none(), "{field} kept");
    }
    assert!(out.get("status").is_none());
    assert_eq!(out["metadata"]["labels"][labels::ORIGIN], "london");
    assert_eq!(out["metadata"]["labels"][labels::DESTINATION], "newyork");
}

#[test]
fn plugin_errors_and_skips_are_reported() {
    let rt = runtime();
    let plugin = misbehaving(&rt, PluginLimits::default());
    let peering = Peering::new();
    let err = plugin
        .reflect(&peering.call(), &config_map("error"))
        .unwrap_err();
    assert!(matches!(err, PluginError::Rejected { .. }));
    assert!(err.to_string().contains("refuses"), "{err}");
    let skip = plugin
        .reflect(&peering.call(), &config_map("skip"))
        .unwrap();
    assert_eq!(skip, Outcome::Skip("skipped on request".into()));
}

#[test]
fn reads_of_undeclared_kinds_are_refused() {
    let rt = runtime();
    let plugin = misbehaving(&rt, PluginLimits::default());
    let peering = Peering::new();
    let Outcome::Skip(reason) = plugin
        .reflect(&peering.call(), &config_map("read"))
        .unwrap()
    else {
        panic!("expected skip")
    };
    assert!(reason.contains("does not declare"), "{reason}");
}

#[test]
fn guests_get_no_environment_filesystem_or_network() {
    // The test process has PATH, HOME, CARGO_* ...: none of it may reach the guest.
    assert!(std::env::vars().count() > 0);
    let rt = runtime();
    let plugin = misbehaving(&rt, PluginLimits::default());
    let peering = Peering::new();
    let outcome = plugin
        .reflect(&peering.call(), &config_map("sandbox"))
        .unwrap();
    assert_eq!(
        outcome,
        Outcome::Skip("env=0 args=0 fs=false net=false".into()),
        "a plugin reaches nothing outside its sandbox"
    );
}

#[test]
fn loading_refuses_what_is_not_a_plugin() {
    let rt = runtime();
    let err = rt
        .load_reflector("junk", b"hello", PluginLimits::default(), "{}")
        .unwrap_err();
    assert!(matches!(err, LoadError::NotAComponent { .. }), "{err}");

    // A valid core module is still not a component.
    let core_module = b"\0asm\x01\0\0\0";
    let err = rt
        .load_reflector("core", core_module, PluginLimits::default(), "{}")
        .unwrap_err();
    assert!(matches!(err, LoadError::NotAComponent { .. }), "{err}");

    // The namespace mapper implements another world.
    let err = rt
        .load_reflector(
            "builtin:namespace",
            builtin::NAMESPACE,
            PluginLimits::default(),
            "{}",
        )
        .unwrap_err();
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err}");

    let err = rt
        .load_reflector(
            "builtin:service",
            builtin::SERVICE,
            PluginLimits::default(),
            "{not json",
        )
        .unwrap_err();
    assert!(matches!(err, LoadError::InvalidConfig { .. }), "{err}");
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let dir = std::env::temp_dir().join(format!("liqo-compile-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = RuntimeConfig {
        cache_dir: Some(dir.clone()),
        ..RuntimeConfig::default()
    };
    let rt = PluginRuntime::new(config.clone(), PluginMetrics::default()).unwrap();
    let first = Instant::now();
    let plugin = rt
        .load_reflector(
            "builtin:service",
            builtin::SERVICE,
            PluginLimits::default(),
            "{}",
        )
        .unwrap();
    let cold = first.elapsed();
    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(entries.len(), 1, "one cache entry per component");
    let name = entries[0].as_ref().unwrap().file_name();
    assert!(
        name.to_string_lossy().starts_with(plugin.digest()),
        "entry {name:?} is keyed by the digest"
    );

    let rt2 = PluginRuntime::new(config, PluginMetrics::default()).unwrap();
    let second = Instant::now();
    let again = rt2
        .load_reflector(
            "builtin:service",
            builtin::SERVICE,
            PluginLimits::default(),
            "{}",
        )
        .unwrap();
    let warm = second.elapsed();
    assert_eq!(again.manifest(), plugin.manifest());
    eprintln!("compile cache: cold load {cold:?}, warm load {warm:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn concurrent_calls_share_the_instance_pool() {
    let rt = runtime();
    let plugin = rt
        .load_reflector(
            "builtin:service",
            builtin::SERVICE,
            PluginLimits::default(),
            "{}",
        )
        .unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let plugin = &plugin;
            s.spawn(move || {
                let peering = Peering::new();
                for _ in 0..50 {
                    let out = plugin.reflect(&peering.call(), &service()).unwrap();
                    assert!(matches!(out, Outcome::Apply(_)));
                }
            });
        }
    });
    assert_eq!(rt.metrics().calls("service"), 200);
    assert!(plugin.idle_instances() >= 1 && plugin.idle_instances() <= 4);
}
