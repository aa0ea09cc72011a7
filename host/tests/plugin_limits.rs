//! The runtime against guests that misbehave on purpose: every limit and output check must
//! hold, fail only the offending call, and leave the runtime serving other calls and plugins.

use std::sync::Arc;
use std::time::{Duration, Instant};

use liqo_host::api::wire;
use liqo_host::invariants::{InvalidOutput, SERVER_OWNED_METADATA};
use liqo_host::plugin::{
    CallServices, ClusterIdentity, IdentityTranslation, LoadError, NoObjects, ObjectRef, Outcome,
    PluginError, PluginLimits, PluginMetrics, PluginRuntime, ReflectCall, ReflectorPlugin,
    RuntimeConfig, builtin,
};
use serde_json::{Value, json};

const MISBEHAVING: &str = env!("LIQO_TEST_PLUGIN_MISBEHAVING");

/// Tests share a compile cache (keyed by digest and engine settings, so always safe to reuse):
/// Cranelift runs once per component, not once per test.
fn runtime() -> PluginRuntime {
    runtime_with(|_| {})
}

fn runtime_with(adjust: impl FnOnce(&mut RuntimeConfig)) -> PluginRuntime {
    let mut config = RuntimeConfig {
        cache_dir: Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compile-cache")),
        // This machine's own memory limit must not decide these tests.
        container_memory_limit: None,
        ..RuntimeConfig::default()
    };
    adjust(&mut config);
    PluginRuntime::new(config, PluginMetrics::default()).expect("runtime")
}

fn misbehaving(rt: &PluginRuntime, limits: PluginLimits) -> Arc<ReflectorPlugin> {
    let bytes = std::fs::read(MISBEHAVING).expect("test plugin built by build.rs");
    rt.load_reflector("test:misbehaving", &bytes, limits, "{}")
        .expect("load misbehaving plugin")
}

fn service_plugin(rt: &PluginRuntime) -> Arc<ReflectorPlugin> {
    rt.load_reflector(
        "builtin:service",
        builtin::SERVICE,
        PluginLimits::builtin(),
        "{}",
    )
    .expect("service plugin")
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
    assert_eq!(out["metadata"]["labels"][wire::ORIGIN], "london");
    assert_eq!(out["metadata"]["labels"][wire::DESTINATION], "newyork");
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

/// Worst lateness of a 10 ms timer on the current async thread until `until` resolves. Ticks
/// are due on a fixed schedule from the start, so a thread held before the timer is first
/// polled counts too.
async fn timer_lateness_until<T>(until: impl std::future::Future<Output = T>) -> (T, Duration) {
    let done = std::sync::atomic::AtomicBool::new(false);
    let start = tokio::time::Instant::now();
    let timer = async {
        let mut worst = Duration::ZERO;
        let mut due = start;
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            due += Duration::from_millis(10);
            tokio::time::sleep_until(due).await;
            worst = worst.max(due.elapsed());
        }
        worst
    };
    let work = async {
        let out = until.await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        out
    };
    tokio::join!(work, timer)
}

/// The single async thread of this test (as on a one-CPU host) stays free while a guest spins
/// to its CPU limit: a timer keeps firing on time and another plugin's call completes in the
/// middle of the spin. Were the guest run on the async thread, the timer would be a whole
/// second late and the other call would wait for the spin.
#[tokio::test(flavor = "current_thread")]
async fn a_spinning_call_leaves_the_async_thread_free() {
    let rt = runtime();
    let spinner = misbehaving(&rt, PluginLimits::new(1_000, 64));
    let svc = service_plugin(&rt);
    let peering = Peering::new();
    let started = Instant::now();
    let spin = async {
        let slot = spinner.call_slot().await;
        let object = config_map("loop");
        let object_ref = ObjectRef::from_object(&object).unwrap();
        spinner
            .reflect_json_async(slot, &peering.call(), &object_ref, object.to_string())
            .await
    };
    let meanwhile = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let asked = Instant::now();
        let out = svc.reflect_async(&peering.call(), &service()).await;
        (out, asked.elapsed(), started.elapsed())
    };
    let ((spun, (served, took, at)), worst) =
        timer_lateness_until(async { tokio::join!(spin, meanwhile) }).await;
    let elapsed = started.elapsed();
    eprintln!("spin {elapsed:?}; timer late by at most {worst:?}; other call took {took:?}");
    assert!(
        matches!(spun, Err(PluginError::CpuLimit { limit_ms: 1000, .. })),
        "{spun:?}"
    );
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    assert!(matches!(served, Ok(Outcome::Apply(_))), "{served:?}");
    assert!(
        at < Duration::from_millis(900),
        "the other call finished at {at:?}, after the spin"
    );
    assert!(
        took < Duration::from_millis(500),
        "the other call took {took:?}"
    );
    assert!(
        worst < Duration::from_millis(250),
        "the async thread was held for {worst:?}"
    );
    assert_eq!(rt.metrics().errors("misbehaving", "cpu_limit"), 1);
}

/// A plugin runs at most `max_instances` calls at once, and never takes every call permit of
/// the runtime: with 3 permits, a spinning plugin that asks for 16 instances gets 2 slots, and
/// another plugin's calls still run at once.
#[tokio::test(flavor = "current_thread")]
async fn a_spinning_plugin_cannot_take_every_call_permit() {
    let rt = runtime_with(|c| c.max_concurrent_calls = 3);
    let spinner = misbehaving(&rt, PluginLimits::new(800, 16).with_max_instances(16));
    let svc = service_plugin(&rt);
    assert_eq!(
        spinner.free_slots(),
        2,
        "one less than the runtime's permits"
    );
    let peering = Peering::new();
    let spins = (0..4).map(|_| async {
        let object = config_map("loop");
        spinner.reflect_async(&peering.call(), &object).await
    });
    let others = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(spinner.try_call_slot().is_none(), "both slots spinning");
        let asked = Instant::now();
        for _ in 0..20 {
            let out = svc.reflect_async(&peering.call(), &service()).await;
            assert!(matches!(out, Ok(Outcome::Apply(_))), "{out:?}");
        }
        asked.elapsed()
    };
    let started = Instant::now();
    let (spun, others_took) = tokio::join!(futures::future::join_all(spins), others);
    let elapsed = started.elapsed();
    eprintln!(
        "4 spins of 800 ms on 2 slots: {elapsed:?}; 20 other calls meanwhile: {others_took:?}"
    );
    for s in spun {
        assert!(matches!(s, Err(PluginError::CpuLimit { .. })), "{s:?}");
    }
    // Two at a time: two rounds.
    assert!(elapsed >= Duration::from_millis(1600), "{elapsed:?}");
    assert!(
        others_took < Duration::from_millis(600),
        "other calls waited {others_took:?}"
    );
    assert!(spinner.idle_instances() <= 2);
}

/// Synchronous callers share the same slots: with one instance, calls from three threads run
/// one after the other, and never more than one instance exists.
#[test]
fn one_instance_means_one_call_at_a_time() {
    let rt = runtime();
    let plugin = misbehaving(&rt, PluginLimits::new(150, 16).with_max_instances(1));
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..3 {
            let plugin = &plugin;
            s.spawn(move || {
                let peering = Peering::new();
                let err = plugin
                    .reflect(&peering.call(), &config_map("loop"))
                    .unwrap_err();
                assert!(matches!(err, PluginError::CpuLimit { .. }), "{err}");
            });
        }
    });
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(450),
        "overlapped: {elapsed:?}"
    );
    let peering = Peering::new();
    plugin
        .reflect(&peering.call(), &config_map("echo"))
        .unwrap();
    assert_eq!(plugin.idle_instances(), 1);
}

/// The memory budget of a plugin (all its instances together) must fit in the container's
/// memory limit next to the other plugins, or the plugin is not loaded; the error names the
/// plugin, its budget, the limit and the fix. Dropping a plugin frees its budget.
#[test]
fn a_memory_budget_that_does_not_fit_is_refused_at_load() {
    // The Deployment's 512 MiB, 192 MiB of it kept for the host.
    let rt = runtime_with(|c| c.container_memory_limit = Some(512 << 20));
    assert_eq!(rt.memory_limit(), Some(512 << 20));
    let svc = service_plugin(&rt); // 2 × 32 MiB
    let bytes = std::fs::read(MISBEHAVING).unwrap();
    let err = rt
        .load_reflector(
            "ReflectionPlugin hog",
            &bytes,
            PluginLimits::new(100, 256).with_max_instances(2),
            "{}",
        )
        .unwrap_err();
    assert!(matches!(err, LoadError::MemoryBudget { .. }), "{err}");
    let msg = err.to_string();
    for part in [
        "plugin ReflectionPlugin hog",
        "memory budget 512 MiB (2 instances × 256 MiB)",
        "container memory limit is 512 MiB",
        "192 MiB of it is kept for the host",
        "64 MiB is budgeted to the other plugins (builtin:service 64 MiB)",
        "256 MiB are left",
        "lower spec.limits.maxInstances or spec.limits.memoryMiB",
        "raise the memory limit of the liqo-host container",
    ] {
        assert!(msg.contains(part), "{part:?} not in: {msg}");
    }
    // What fits loads: 2 × 128 MiB is exactly what is left.
    let fits = rt
        .load_reflector(
            "ReflectionPlugin hog",
            &bytes,
            PluginLimits::new(100, 128).with_max_instances(2),
            "{}",
        )
        .expect("256 MiB fit");
    assert_eq!(rt.memory_budgeted(), 320 << 20);
    // Nothing is left for another plugin, until one goes.
    let err = rt
        .load_reflector(
            "ReflectionPlugin more",
            &bytes,
            PluginLimits::new(100, 1).with_max_instances(1),
            "{}",
        )
        .unwrap_err();
    assert!(err.to_string().contains("0 MiB are left"), "{err}");
    drop(fits);
    assert_eq!(rt.memory_budgeted(), 64 << 20);
    rt.load_reflector(
        "ReflectionPlugin more",
        &bytes,
        PluginLimits::default(),
        "{}",
    )
    .expect("fits once hog is gone");
    drop(svc);
}

/// The built-in plugins handle the largest objects within their 32 MiB per instance: a Service
/// with 256 KiB of annotations (the API server's limit) is reflected.
#[test]
fn built_in_limits_fit_the_largest_objects() {
    let rt = runtime();
    let svc = service_plugin(&rt);
    let peering = Peering::new();
    let mut big = service();
    big["metadata"]["annotations"] = json!({"big": "x".repeat(255 * 1024)});
    let out = svc.reflect(&peering.call(), &big).expect("reflected");
    assert!(matches!(out, Outcome::Apply(_)));
}

/// A call in flight on the blocking pool outlives its caller: when the caller's future, the
/// plugin runtime and the tokio runtime are all dropped mid-spin (the host shutting down), the
/// call still ends at its CPU limit, and the tokio runtime's shutdown (which waits for its
/// blocking threads) completes. Before the epoch ticker was kept alive by the plugins, it
/// stopped with the last `PluginRuntime` and the guest spun forever.
#[test]
fn a_spinning_call_still_ends_when_everything_else_is_dropped() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let tokio_rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio_rt.block_on(async {
            let rt = runtime();
            let spinner = misbehaving(&rt, PluginLimits::new(300, 16));
            let call = async move {
                let peering = Peering::new();
                spinner
                    .reflect_async(&peering.call(), &config_map("loop"))
                    .await
            };
            // The guest is spinning on a blocking thread when its caller gives up.
            let gave_up = tokio::time::timeout(Duration::from_millis(100), call).await;
            assert!(gave_up.is_err(), "the call should still be spinning");
            drop(rt);
        });
        let shutting_down = Instant::now();
        drop(tokio_rt);
        let _ = done_tx.send(shutting_down.elapsed());
    });
    let shutdown = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the tokio runtime never shut down: the dropped call spins forever");
    assert!(
        shutdown < Duration::from_secs(2),
        "shutdown took {shutdown:?}"
    );
}
