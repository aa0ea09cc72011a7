//! User plugins (ReflectionPlugin objects) on two real control planes: loaded from a file, a
//! ConfigMap or a URL, swapped while the engine runs, failing by their failure policy, and
//! removed with their remote copies.
//!
//! The component is the test-only `misbehaving` plugin: it reflects ConfigMaps and chooses
//! what to do per object (annotation `test.liqo.io/mode`) or per plugin (`config.mode`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Event, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use liqo_host::api::reflection_plugin::ReflectionPlugin;
use liqo_host::api::wire;
use liqo_host::plugin::{
    ClusterIdentity, IdentityTranslation, PluginLimits, PluginMetrics, PluginRuntime,
    RuntimeConfig, builtin,
};
use liqo_host::reflect::{Engine, EngineConfig, EngineMetrics, PeerHandle};
use liqo_host::user_plugins::{self, UserPluginsContext};
use serde_json::{Value, json};
use testsupport::{TestEnv, eventually, unique_name};

const WAIT: Duration = Duration::from_secs(40);
const MISBEHAVING: &str = env!("LIQO_TEST_PLUGIN_MISBEHAVING");
const RUN_LABEL: &str = "test.liqo.io/run";

fn identity(name: &str) -> ClusterIdentity {
    ClusterIdentity {
        id: name.into(),
        name: name.into(),
    }
}

/// An engine for london peered with newyork, one offloaded namespace, and the ReflectionPlugin
/// controller serving the plugins labelled with this test's run id.
struct Setup {
    london: Client,
    newyork: Client,
    engine: Engine,
    namespace: String,
    run: String,
    /// The plugin runtime's metrics (calls and errors per plugin).
    metrics: PluginMetrics,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn setup(prefix: &str) -> Setup {
    setup_with(prefix, None).await
}

/// [`setup`] with a host whose container memory limit is `memory_limit` (the plugins' memory
/// budgets are checked against it).
async fn setup_with(prefix: &str, memory_limit: Option<u64>) -> Setup {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let env = TestEnv::shared();
    let london = env.client("london").await;
    let newyork = env.client("newyork").await;
    testsupport::apply_crds(&london, liqo_host::api::crds()).await;
    let metrics = PluginMetrics::default();
    let runtime = PluginRuntime::new(
        RuntimeConfig {
            cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compile-cache")),
            container_memory_limit: memory_limit,
            ..RuntimeConfig::default()
        },
        metrics.clone(),
    )
    .unwrap();
    let builtins = vec![
        runtime
            .load_reflector(
                "builtin:service",
                builtin::SERVICE,
                PluginLimits::default(),
                "{}",
            )
            .unwrap(),
    ];
    let engine = Engine::start(
        london.clone(),
        EngineConfig {
            local: identity("london"),
            workers: 4,
            backoff: Default::default(),
        },
        builtins,
        EngineMetrics::default(),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait_stop = move || {
        let mut rx = stopped.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    {
        let engine = engine.clone();
        let done = wait_stop();
        tokio::spawn(async move { engine.run(done).await });
    }
    engine.add_peer(PeerHandle {
        identity: identity("newyork"),
        client: newyork.clone(),
        translator: Arc::new(IdentityTranslation),
    });
    let namespace = env.unique_namespace(prefix).await;
    env.create_namespace("newyork", &namespace).await;
    assert!(engine.offload("newyork", &namespace, &namespace));
    let run = unique_name("run");
    let ctx = Arc::new(
        UserPluginsContext::new(london.clone(), runtime, engine.clone())
            .with_selector(format!("{RUN_LABEL}={run}")),
    );
    tokio::spawn(user_plugins::run(ctx, wait_stop()));
    Setup {
        london,
        newyork,
        engine,
        namespace,
        run,
        metrics,
        _stop: stop,
    }
}

impl Setup {
    fn plugins(&self) -> Api<ReflectionPlugin> {
        Api::all(self.london.clone())
    }

    /// Creates (or replaces the spec of) a ReflectionPlugin of this run.
    async fn apply_plugin(&self, name: &str, spec: Value) {
        let object = json!({
            "apiVersion": "plugins.liqo.io/v1alpha1",
            "kind": "ReflectionPlugin",
            "metadata": {"name": name, "labels": {RUN_LABEL: self.run}},
            "spec": spec,
        });
        self.plugins()
            .patch(
                name,
                &PatchParams::apply("liqo-test").force(),
                &Patch::Apply(&object),
            )
            .await
            .unwrap_or_else(|e| panic!("applying ReflectionPlugin {name}: {e}"));
    }

    /// Waits for the `Loaded` condition of the current generation to have `status`; returns
    /// the object.
    async fn wait_loaded(&self, name: &str, status: &str) -> ReflectionPlugin {
        eventually(&format!("{name} Loaded={status}"), WAIT, || async {
            let rp = self.plugins().get(name).await.ok()?;
            let generation = rp.metadata.generation;
            let cond = rp.status.as_ref()?.loaded()?.clone();
            (cond.status == status && cond.observed_generation == generation).then_some(rp)
        })
        .await
    }

    fn config_maps(&self, client: &Client) -> Api<ConfigMap> {
        Api::namespaced(client.clone(), &self.namespace)
    }

    async fn create_config_map(&self, name: &str, data: Value, annotations: Value) {
        let cm: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "annotations": annotations},
            "data": data,
        }))
        .unwrap();
        self.config_maps(&self.london)
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
    }

    async fn patch_config_map(&self, name: &str, patch: Value) {
        self.config_maps(&self.london)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    async fn remote(&self, name: &str) -> Option<ConfigMap> {
        self.config_maps(&self.newyork).get_opt(name).await.unwrap()
    }

    async fn wait_remote(&self, name: &str, check: impl Fn(&ConfigMap) -> bool) -> ConfigMap {
        eventually(&format!("ConfigMap {name} in newyork"), WAIT, || async {
            self.remote(name).await.filter(|c| check(c))
        })
        .await
    }

    async fn wait_remote_gone(&self, name: &str) {
        eventually(
            &format!("ConfigMap {name} gone from newyork"),
            WAIT,
            || async { self.remote(name).await.is_none().then_some(()) },
        )
        .await;
    }

    /// Events on the local ConfigMap `name` with `reason`, as their notes.
    async fn events(&self, name: &str, reason: &str) -> Vec<String> {
        Api::<Event>::namespaced(self.london.clone(), &self.namespace)
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter_map(|e| e.message)
            .collect()
    }

    async fn delete_plugin(&self, name: &str) {
        let _ = self.plugins().delete(name, &DeleteParams::default()).await;
        eventually(&format!("ReflectionPlugin {name} gone"), WAIT, || async {
            self.plugins()
                .get_opt(name)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        })
        .await;
    }
}

fn data(cm: &ConfigMap, key: &str) -> Option<String> {
    cm.data.as_ref()?.get(key).cloned()
}

fn file_source() -> Value {
    json!({"file": {"path": MISBEHAVING}})
}

#[tokio::test]
async fn a_user_plugin_is_loaded_swapped_and_removed_while_the_engine_runs() {
    let s = setup("uplug-life").await;
    s.create_config_map("settings", json!({"color": "blue"}), json!({}))
        .await;
    // No plugin reflects ConfigMaps yet: nothing is written.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(s.remote("settings").await.is_none());

    s.apply_plugin(
        "configmaps",
        json!({"source": file_source(), "config": {"mode": "echo"}}),
    )
    .await;
    let rp = s.wait_loaded("configmaps", "True").await;
    let status = rp.status.unwrap();
    assert_eq!(status.plugin_name.as_deref(), Some("misbehaving"));
    assert_eq!(status.plugin_version.as_deref(), Some("0.0.1"));
    assert_eq!(status.kinds, ["v1/ConfigMap"]);
    let expected_digest = {
        use sha2::Digest;
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(std::fs::read(MISBEHAVING).unwrap()))
        )
    };
    assert_eq!(status.digest.as_deref(), Some(expected_digest.as_str()));
    assert!(
        rp.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&wire::PLUGIN_FINALIZER.to_string())
    );
    assert!(
        s.engine
            .kinds()
            .contains(&("/v1/ConfigMap".to_string(), "misbehaving".to_string()))
    );

    // Existing objects are reflected once the plugin is there, new ones too.
    let remote = s
        .wait_remote("settings", |c| data(c, "color").as_deref() == Some("blue"))
        .await;
    let labels = remote.metadata.labels.unwrap();
    assert_eq!(labels["offloading.liqo.io/origin"], "london");
    assert_eq!(labels["offloading.liqo.io/destination"], "newyork");
    s.create_config_map("other", json!({"a": "1"}), json!({}))
        .await;
    s.wait_remote("other", |_| true).await;

    // A new configuration is a new version: it takes over and every ConfigMap is
    // re-evaluated with it (mode skip removes the remote copies).
    s.apply_plugin(
        "configmaps",
        json!({"source": file_source(), "config": {"mode": "skip"}}),
    )
    .await;
    s.wait_loaded("configmaps", "True").await;
    s.wait_remote_gone("settings").await;
    s.wait_remote_gone("other").await;

    // And back: reflected again, with the current data.
    s.patch_config_map("settings", json!({"data": {"color": "green"}}))
        .await;
    s.apply_plugin(
        "configmaps",
        json!({"source": file_source(), "config": {"mode": "echo"}}),
    )
    .await;
    s.wait_remote("settings", |c| data(c, "color").as_deref() == Some("green"))
        .await;
    s.wait_remote("other", |_| true).await;

    // A version that cannot be loaded never replaces the one serving.
    s.apply_plugin(
        "configmaps",
        json!({"source": {"file": {"path": "/nonexistent/v3.wasm"}}, "config": {"mode": "echo"}}),
    )
    .await;
    let rp = s.wait_loaded("configmaps", "False").await;
    let status = rp.status.unwrap();
    let cond = status.loaded().unwrap();
    assert_eq!(cond.reason, "SourceUnavailable");
    assert!(
        cond.message
            .contains("the previously loaded 0.0.1 (sha256:"),
        "{}",
        cond.message
    );
    assert_eq!(status.digest.as_deref(), Some(expected_digest.as_str()));
    s.patch_config_map("settings", json!({"data": {"color": "red"}}))
        .await;
    s.wait_remote("settings", |c| data(c, "color").as_deref() == Some("red"))
        .await;

    // Removing the plugin removes what it reflected (there is no built-in ConfigMap plugin),
    // then the object goes; a foreign ConfigMap in newyork is never touched.
    let foreign: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "not-ours"}, "data": {"x": "y"}
    }))
    .unwrap();
    s.config_maps(&s.newyork)
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    s.delete_plugin("configmaps").await;
    assert!(s.remote("settings").await.is_none());
    assert!(s.remote("other").await.is_none());
    assert!(s.remote("not-ours").await.is_some());
    assert!(!s.engine.kinds().iter().any(|(k, _)| k == "/v1/ConfigMap"));
    // Local objects are never touched.
    assert!(
        s.config_maps(&s.london)
            .get_opt("settings")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn failure_policy_fail_keeps_the_remote_copy_and_ignore_removes_it() {
    let s = setup("uplug-fail").await;
    s.apply_plugin(
        "configmaps-fail",
        json!({"source": file_source(), "failurePolicy": "Fail", "limits": {"cpuMillisPerCall": 250}}),
    )
    .await;
    s.wait_loaded("configmaps-fail", "True").await;
    s.create_config_map("good", json!({"v": "1"}), json!({}))
        .await;
    s.create_config_map("bad", json!({"v": "1"}), json!({}))
        .await;
    s.wait_remote("good", |_| true).await;
    s.wait_remote("bad", |_| true).await;

    // The plugin now loops on `bad`: its remote copy stays as it was, with an Event that
    // names the plugin and the limit; `good` keeps reflecting.
    s.patch_config_map(
        "bad",
        json!({"metadata": {"annotations": {"test.liqo.io/mode": "loop"}}, "data": {"v": "2"}}),
    )
    .await;
    let note = eventually("a FailedReflection event on bad", WAIT, || async {
        s.events("bad", "FailedReflection").await.into_iter().next()
    })
    .await;
    assert!(note.contains("misbehaving"), "{note}");
    assert!(note.contains("CPU limit of 250 ms"), "{note}");
    s.patch_config_map("good", json!({"data": {"v": "2"}}))
        .await;
    s.wait_remote("good", |c| data(c, "v").as_deref() == Some("2"))
        .await;
    let bad = s.remote("bad").await.expect("the remote copy stays");
    assert_eq!(data(&bad, "v").as_deref(), Some("1"));

    // The other run-time faults, each on its own object: a trap, memory past the cap, output
    // that is not an object. Each gets an Event naming the plugin and the cause; every copy
    // keeps its last state.
    for (name, mode, cause) in [
        ("crashes", "trap", "crashed on"),
        ("hungry", "oom", "exceeded its memory limit of"),
        ("garbled", "garbage", "returned an invalid object"),
    ] {
        s.create_config_map(name, json!({"v": "1"}), json!({}))
            .await;
        s.wait_remote(name, |_| true).await;
        s.patch_config_map(
            name,
            json!({"metadata": {"annotations": {"test.liqo.io/mode": mode}}, "data": {"v": "2"}}),
        )
        .await;
        let note = eventually(
            &format!("a FailedReflection event on {name}"),
            WAIT,
            || async {
                s.events(name, "FailedReflection")
                    .await
                    .into_iter()
                    .find(|n| n.contains(cause))
            },
        )
        .await;
        assert!(note.contains("misbehaving"), "{name}: {note}");
        let copy = s.remote(name).await.expect("the remote copy stays");
        assert_eq!(data(&copy, "v").as_deref(), Some("1"), "{name}");
    }
    // Other kinds keep reflecting meanwhile: a Service (built-in plugin) is reflected.
    let services = |client: &Client| Api::<Service>::namespaced(client.clone(), &s.namespace);
    services(&s.london)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "beside-the-faults"},
                "spec": {"ports": [{"port": 80}]}}))
            .unwrap(),
        )
        .await
        .unwrap();
    eventually(
        "the Service reflected while the ConfigMap plugin fails",
        WAIT,
        || async {
            services(&s.newyork)
                .get_opt("beside-the-faults")
                .await
                .ok()
                .flatten()
        },
    )
    .await;

    // Under Ignore the failing object is skipped: its remote copy goes.
    s.apply_plugin(
        "configmaps-fail",
        json!({"source": file_source(), "failurePolicy": "Ignore", "limits": {"cpuMillisPerCall": 250}}),
    )
    .await;
    s.wait_loaded("configmaps-fail", "True").await;
    s.wait_remote_gone("bad").await;
    assert!(s.remote("good").await.is_some());
    let note = eventually("an Ignore FailedReflection event on bad", WAIT, || async {
        s.events("bad", "FailedReflection")
            .await
            .into_iter()
            .find(|n| n.contains("failurePolicy Ignore"))
    })
    .await;
    assert!(note.contains("remote copy was removed"), "{note}");
    s.delete_plugin("configmaps-fail").await;
    s.wait_remote_gone("good").await;
}

/// Serves `body` over plain HTTP on 127.0.0.1; returns the URL.
async fn serve(body: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/plugin.wasm",
        axum::routing::get(move || {
            let body = body.clone();
            async move { body }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/plugin.wasm")
}

#[tokio::test]
async fn sources_and_bad_plugins_report_a_clear_loaded_condition() {
    let s = setup("uplug-src").await;
    let wasm = std::fs::read(MISBEHAVING).unwrap();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&wasm))
    };

    // URL pinned by digest: loads; a wrong digest is refused and says both digests.
    let url = serve(wasm.clone()).await;
    s.apply_plugin(
        "from-url",
        json!({"source": {"url": {"url": url, "sha256": digest}}}),
    )
    .await;
    s.wait_loaded("from-url", "True").await;
    s.delete_plugin("from-url").await;
    let wrong = "0".repeat(64);
    s.apply_plugin(
        "bad-digest",
        json!({"source": {"url": {"url": url, "sha256": wrong}}}),
    )
    .await;
    let rp = s.wait_loaded("bad-digest", "False").await;
    let cond = rp.status.unwrap().loaded().unwrap().clone();
    assert_eq!(cond.reason, "DigestMismatch");
    assert!(
        cond.message.contains(&digest) && cond.message.contains(&wrong),
        "{}",
        cond.message
    );

    // A ConfigMap holding the component in binaryData.
    let holder: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plugin-holder"},
        "binaryData": {"plugin.wasm": base64_encode(&wasm)}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(s.london.clone(), &s.namespace)
        .create(&PostParams::default(), &holder)
        .await
        .unwrap();
    s.apply_plugin(
        "from-configmap",
        json!({"source": {"configMap": {"name": "plugin-holder", "namespace": s.namespace}}}),
    )
    .await;
    let rp = s.wait_loaded("from-configmap", "True").await;
    assert_eq!(rp.status.unwrap().digest, Some(format!("sha256:{digest}")));

    // A second plugin for the same kind is refused while the first serves it.
    s.apply_plugin("second", json!({"source": file_source()}))
        .await;
    let rp = s.wait_loaded("second", "False").await;
    let cond = rp.status.unwrap().loaded().unwrap().clone();
    assert_eq!(cond.reason, "KindConflict");
    assert!(cond.message.contains("from-configmap"), "{}", cond.message);
    s.delete_plugin("from-configmap").await;
    // ...and takes over once the first is gone.
    s.wait_loaded("second", "True").await;
    s.delete_plugin("second").await;

    // Not a component, a missing file, a missing ConfigMap entry.
    let junk = std::env::temp_dir().join(format!("{}.wasm", unique_name("junk")));
    std::fs::write(&junk, b"\0asm\x01\0\0\0").unwrap();
    let cases = [
        (
            "not-a-component",
            json!({"file": {"path": junk.display().to_string()}}),
            "InvalidPlugin",
            "not a WebAssembly component",
        ),
        (
            "missing-file",
            json!({"file": {"path": "/nonexistent/plugin.wasm"}}),
            "SourceUnavailable",
            "/nonexistent/plugin.wasm",
        ),
        (
            "missing-key",
            json!({"configMap": {"name": "plugin-holder", "namespace": s.namespace, "key": "nope.wasm"}}),
            "SourceUnavailable",
            "has no entry \"nope.wasm\" (it has: plugin.wasm)",
        ),
    ];
    for (name, source, reason, text) in cases {
        s.apply_plugin(name, json!({"source": source})).await;
        let rp = s.wait_loaded(name, "False").await;
        let cond = rp.status.unwrap().loaded().unwrap().clone();
        assert_eq!(cond.reason, reason, "{name}: {}", cond.message);
        assert!(cond.message.contains(text), "{name}: {}", cond.message);
        s.delete_plugin(name).await;
    }
    let _ = std::fs::remove_file(junk);
    s.delete_plugin("bad-digest").await;
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn a_user_plugin_takes_a_kind_from_the_built_in_plugin_and_gives_it_back() {
    use k8s_openapi::api::core::v1::Service;
    let s = setup("uplug-prec").await;
    let services = |client: &Client| Api::<Service>::namespaced(client.clone(), &s.namespace);
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}
    }))
    .unwrap();
    services(&s.london)
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    // The built-in Service plugin (DenyList) reflects it.
    eventually("web reflected by the built-in plugin", WAIT, || async {
        services(&s.newyork).get_opt("web").await.unwrap()
    })
    .await;

    // The same component as a user plugin, configured AllowList: it wins over the built-in
    // one, so the Service, not annotated liqo.io/allow-reflection, is no longer reflected.
    let path = std::env::temp_dir().join(format!("{}.wasm", unique_name("service")));
    std::fs::write(&path, builtin::SERVICE).unwrap();
    s.apply_plugin(
        "services",
        json!({"source": {"file": {"path": path.display().to_string()}},
               "config": {"reflectionPolicy": "AllowList"}}),
    )
    .await;
    s.wait_loaded("services", "True").await;
    assert!(
        s.engine
            .kinds()
            .contains(&("/v1/Service".to_string(), "service".to_string()))
    );
    eventually("web removed by the user plugin", WAIT, || async {
        services(&s.newyork)
            .get_opt("web")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;

    // Deleting the user plugin gives Services back to the built-in plugin: reflected again.
    s.delete_plugin("services").await;
    eventually(
        "web reflected again by the built-in plugin",
        WAIT,
        || async { services(&s.newyork).get_opt("web").await.unwrap() },
    )
    .await;
    let _ = std::fs::remove_file(path);
}

/// The sandbox cannot starve the host. The whole host runs on ONE async worker thread here
/// (this test's current-thread runtime, as on a one-CPU node): the engine, the watches, the
/// ReflectionPlugin controller and a leader election with short terms. A user plugin spins to
/// its CPU limit of 4 s on every ConfigMap, call after call. Meanwhile the async thread must
/// stay responsive (a 50 ms timer is never late by more than a small bound), the Lease must
/// keep being renewed (leadership never lost: it steps down when a renewal is not seen within
/// 1.5 s), and a Service (another kind) must be reflected well within one spin.
///
/// Before plugin calls ran on the blocking pool, each spin held the only async thread for
/// 4 s: the timer was 4 s late, the leader stepped down and the Service waited for the spin.
#[tokio::test(flavor = "current_thread")]
async fn a_plugin_spinning_to_its_cpu_limit_does_not_starve_the_host() {
    use k8s_openapi::api::coordination::v1::Lease;
    use liqo_host::leader::{self, LeaderConfig};
    use std::time::Instant;

    const SPIN: Duration = Duration::from_secs(4);
    // Generous for a busy 2-core machine, far below one spin.
    const TIMER_SLACK: Duration = Duration::from_millis(500);
    const SERVICE_IN: Duration = Duration::from_millis(2500);

    let s = setup("uplug-spin").await;
    let mut leadership = leader::elect(
        s.london.clone(),
        LeaderConfig {
            namespace: s.namespace.clone(),
            lease_name: "liqo-host".into(),
            identity: "spin-test".into(),
            lease_duration: Duration::from_secs(2),
            grace: Duration::from_secs(1),
        },
    )
    .await
    .expect("elect");
    tokio::time::timeout(Duration::from_secs(20), leadership.wait_until_leader())
        .await
        .expect("leads within 20 s")
        .expect("election running");
    let mut changes = leadership.subscribe();
    changes.borrow_and_update();

    s.apply_plugin(
        "spinner",
        json!({"source": file_source(), "config": {"mode": "loop"},
               "limits": {"cpuMillisPerCall": SPIN.as_millis() as u64, "maxInstances": 1}}),
    )
    .await;
    s.wait_loaded("spinner", "True").await;
    for i in 0..3 {
        s.create_config_map(&format!("spin-{i}"), json!({"v": "1"}), json!({}))
            .await;
    }
    // Let the first spin start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let window_start = Instant::now();

    // The async thread stays responsive: a timer due every 50 ms on a fixed schedule, for two
    // and a half spins.
    let timer = async {
        let mut worst = Duration::ZERO;
        let mut due = tokio::time::Instant::from_std(window_start);
        while window_start.elapsed() < SPIN * 5 / 2 {
            due += Duration::from_millis(50);
            tokio::time::sleep_until(due).await;
            worst = worst.max(due.elapsed());
        }
        worst
    };
    // Leadership is never lost meanwhile.
    let leading = async {
        while window_start.elapsed() < SPIN * 5 / 2 {
            if tokio::time::timeout(Duration::from_millis(100), changes.changed())
                .await
                .is_ok()
            {
                assert!(
                    *changes.borrow_and_update(),
                    "leadership lost after {:?} of plugin spinning",
                    window_start.elapsed()
                );
            }
        }
    };
    // Another kind is reflected on time, while the plugin spins.
    let service = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let services = |client: &Client| Api::<Service>::namespaced(client.clone(), &s.namespace);
        let created = Instant::now();
        services(&s.london)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "beside-the-spinner"},
                    "spec": {"ports": [{"port": 80}]}}))
                .unwrap(),
            )
            .await
            .unwrap();
        loop {
            if services(&s.newyork)
                .get_opt("beside-the-spinner")
                .await
                .unwrap()
                .is_some()
            {
                break created.elapsed();
            }
            assert!(
                created.elapsed() < Duration::from_secs(20),
                "the Service was never reflected"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (worst, (), service_after) = tokio::join!(timer, leading, service);
    let spins = s.metrics.errors("misbehaving", "cpu_limit");
    eprintln!(
        "while spinning: timer late by at most {worst:?}, Service reflected after \
         {service_after:?}, {spins} spins ended by the CPU limit"
    );
    assert!(spins >= 2, "the plugin spun {spins} times");
    assert!(
        worst < TIMER_SLACK,
        "the async thread was held for {worst:?}"
    );
    assert!(
        service_after < SERVICE_IN,
        "the Service took {service_after:?} while the plugin spun"
    );
    assert!(leadership.is_leader());
    // And the Lease was really renewed during the spins.
    let lease = Api::<Lease>::namespaced(s.london.clone(), &s.namespace)
        .get("liqo-host")
        .await
        .unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("spin-test"));
    let renewed: std::time::SystemTime = spec.renew_time.unwrap().0.into();
    let age = std::time::SystemTime::now()
        .duration_since(renewed)
        .unwrap_or_default();
    assert!(age < Duration::from_secs(2), "last renewal {age:?} ago");
    // No ConfigMap was written: every call hit the limit.
    assert!(s.remote("spin-0").await.is_none());
    let _ = leadership.release().await;
}

/// A plugin whose memory budget (maxInstances × memoryMiB) does not fit in the host's
/// container memory limit fails to load, with the numbers and the fix in its status; the
/// other kinds, and a plugin that fits, are unaffected.
#[tokio::test]
async fn a_plugin_whose_memory_budget_does_not_fit_is_not_loaded() {
    // 512 MiB, as in deploy/host/deployment.yaml: 192 MiB kept for the host, 128 MiB for the
    // built-in Service plugin of this setup, so 192 MiB are left for user plugins.
    let s = setup_with("uplug-budget", Some(512 << 20)).await;
    s.apply_plugin(
        "hog",
        json!({"source": file_source(), "config": {"mode": "echo"},
               "limits": {"memoryMiB": 128, "maxInstances": 4}}),
    )
    .await;
    let rp = s.wait_loaded("hog", "False").await;
    let cond = rp.status.as_ref().unwrap().loaded().unwrap().clone();
    assert_eq!(cond.reason, "MemoryBudget");
    for part in [
        "ReflectionPlugin hog",
        "memory budget 512 MiB (4 instances × 128 MiB)",
        "container memory limit is 512 MiB",
        "192 MiB of it is kept for the host",
        "192 MiB are left",
        "spec.limits.maxInstances",
    ] {
        assert!(
            cond.message.contains(part),
            "{part:?} not in {}",
            cond.message
        );
    }
    assert!(
        !s.engine.kinds().iter().any(|(k, _)| k == "/v1/ConfigMap"),
        "the plugin serves nothing"
    );

    // Built-in kinds keep reflecting.
    let services = |client: &Client| Api::<Service>::namespaced(client.clone(), &s.namespace);
    services(&s.london)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "beside-the-hog"}, "spec": {"ports": [{"port": 80}]}}))
            .unwrap(),
        )
        .await
        .unwrap();
    eventually("the Service reflected", WAIT, || async {
        services(&s.newyork)
            .get_opt("beside-the-hog")
            .await
            .ok()
            .flatten()
    })
    .await;

    // Following the fix (fewer instances) loads it: 2 × 96 MiB fits in 192.
    s.apply_plugin(
        "hog",
        json!({"source": file_source(), "config": {"mode": "echo"},
               "limits": {"memoryMiB": 96, "maxInstances": 2}}),
    )
    .await;
    s.wait_loaded("hog", "True").await;
    s.create_config_map("fits", json!({"v": "1"}), json!({}))
        .await;
    s.wait_remote("fits", |_| true).await;
    s.delete_plugin("hog").await;
}
